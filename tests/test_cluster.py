import functools
import json
import os
import textwrap
import warnings
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdc
from conftest import run_python
from manual_step import manual_step_mlp
from tfdc.cluster import ClusterConstraint, ClusteredFineTuning, codebooks, to_binary16
from tfdc.constraints import find_constraint
from tfdc.exporter import altered_kernels, convert


def small_mlp():
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                             keras.layers.Dense(32, activation="relu", name="fc1"),
                             keras.layers.Dense(16, activation="relu", name="fc2"),
                             keras.layers.Dense(10, activation="softmax", name="fc3")])


def prune(model, keep=0.3):
    """One-shot magnitude pruning; returns {layer name: nonzero mask}."""
    masks = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            w = layer.kernel.numpy()
            w[np.abs(w) < np.quantile(np.abs(w), 1 - keep)] = 0
            layer.kernel.assign(w)
            masks[layer.name] = w != 0
    return masks


def assert_codebook(model, masks, bits):
    for name, mask in masks.items():
        w = model.get_layer(name).kernel.numpy()
        assert np.unique(w[w != 0]).size <= 2 ** bits[name], name
        np.testing.assert_array_equal(w != 0, mask, err_msg=f"{name}: zero mask changed")


@pytest.mark.parametrize("optimizer,jit", [("sgd", False), ("adam", False), ("adam", True)])
def test_codebook_and_zeros_hold_after_training(mnist_small, optimizer, jit):
    """Also under jit_compile=True, where XLA cannot compile a sparse matmul
    and the constraint takes its gather / segment-sum path."""
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile(optimizer, "sparse_categorical_crossentropy", jit_compile=jit)
    masks = prune(model)
    cb = ClusteredFineTuning(bits=3)
    quantized = {n: v["centroids"].copy() for n, v in cb.quantize(model).items()}
    history = model.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[cb])
    assert_codebook(model, masks, {n: 3 for n in masks})
    assert max(history.history["distinct_values"]) <= 8
    books = codebooks(model)
    for name, centroids in quantized.items():
        # The centroids moved (training happened) but stayed as many.
        assert books[name]["centroids"].size == centroids.size
        assert not np.array_equal(np.sort(books[name]["centroids"]), np.sort(centroids))
    # Detached at the end of fit: the model carries no tfdc object.
    assert all(not isinstance(v.constraint, ClusterConstraint) for v in model.variables)


@pytest.mark.parametrize("update", ["sum", "mean"])
def test_sgd_update_is_the_papers_shared_gradient(update):
    """One SGD step with centroid_update='sum': dC_k = -lr * sum of the
    members' gradients (Han et al., eq. 3); with 'mean', their mean."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, use_bias=False, name="d")])
    w = model.get_layer("d").kernel
    w.assign(np.where(np.arange(24).reshape(6, 4) % 5 == 0, 0.0, w.numpy()))
    lr = 0.1
    model.compile(keras.optimizers.SGD(lr), "mse")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    cb = ClusteredFineTuning(bits=2, centroid_update=update, centroid_fp16=False)
    book = cb.quantize(model)[w.path]
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x))
    grad = tape.gradient(loss, w.value).numpy().ravel()[book["positions"]]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[cb])
    shared = np.bincount(book["assignment"], weights=grad)
    if update == "mean":
        shared /= book["counts"]
    expected = book["centroids"] - lr * shared
    got = w.numpy().ravel()[book["positions"]]
    np.testing.assert_allclose(got, expected[book["assignment"]], rtol=1e-5, atol=1e-7)
    assert np.count_nonzero(w.numpy()) == book["positions"].size


def _is_binary16(values):
    values = np.asarray(values, np.float32)
    return np.array_equal(values.astype(np.float16).astype(np.float32), values)


def test_to_binary16_rounds_keeps_zeros_and_out_of_range():
    x = np.float32([0.1, -0.3, 0.0, -0.0, 1e-9, -1e-9, 1e6, -np.inf, 65504.0])
    r = to_binary16(x)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r[:2], np.float16(x[:2]).astype(np.float32))
    np.testing.assert_array_equal(np.signbit(r[2:4]), [False, True])
    assert r[2] == 0 and r[3] == 0
    np.testing.assert_array_equal(r[4:6], [2.0 ** -24, -2.0 ** -24])  # nonzero stays nonzero
    np.testing.assert_array_equal(r[6:], x[6:])  # beyond binary16 (1e6, -inf): kept
    assert _is_binary16(r[:6]) and np.array_equal(to_binary16(r), r)  # idempotent


@pytest.mark.parametrize("fp16", [True, False])
def test_centroid_fp16_rounds_the_shared_values_when_fit_ends(mnist_small, fp16):
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    masks = prune(model)
    model.fit(x[:1024], y[:1024], epochs=1, batch_size=128, verbose=0,
              callbacks=[ClusteredFineTuning(bits=4, centroid_fp16=fp16)])
    assert_codebook(model, masks, {n: 4 for n in masks})
    for name in masks:
        w = model.get_layer(name).kernel.numpy()
        assert _is_binary16(w[w != 0]) == fp16, name


def test_a_checkpoint_of_the_last_epoch_is_the_model_fit_returns(mnist_small, tmp_path):
    # The binary16 rounding ran in on_train_end, after ModelCheckpoint had
    # saved the last epoch: the checkpoint's shared values and biases were
    # the unrounded ones (its packed file 2.4 % larger, without a word).
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    prune(model)
    path = tmp_path / "last.weights.h5"
    model.fit(x[:1024], y[:1024], epochs=2, batch_size=128, verbose=0,
              callbacks=[ClusteredFineTuning(bits=4),
                         keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    saved = small_mlp()
    saved.load_weights(path)
    for ours, theirs in zip(model.weights, saved.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    bias = saved.layers[-1].bias.numpy()
    assert _is_binary16(bias[bias != 0])
    # And with the ModelCheckpoint listed first: rounded at the last step,
    # before any epoch end (its file was 2.7 % larger packed).
    model.fit(x[:1024], y[:1024], epochs=2, batch_size=128, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True),
                         ClusteredFineTuning(bits=4)])
    saved.load_weights(path)
    for ours, theirs in zip(model.weights, saved.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    # The same where a callback listed first (EarlyStopping) stops the fit
    # after its first epoch of three.
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", True))
    model.fit(x[:1024], y[:1024], epochs=3, batch_size=128, verbose=0,
              callbacks=[stop, ClusteredFineTuning(bits=3),
                         keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    saved.load_weights(path)
    for ours, theirs in zip(model.weights, saved.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


def test_weights_restored_before_its_end_are_left_as_restored(mnist_small):
    # EarlyStopping(restore_best_weights=True) listed first restores an
    # epoch from before clustering in its on_train_end, which runs before
    # ClusteredFineTuning's: the dense weights restored were rounded to
    # binary16, and export's "no longer clustered" warning was lost (the
    # count it compares with was taken after the restore).
    (x, y), _ = mnist_small
    x, y = x[:1024], y[:1024]
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    steps = len(x) // 128
    best = keras.callbacks.EarlyStopping("loss", mode="max", patience=5,
                                         restore_best_weights=True)  # epoch 1: not clustered
    model.fit(x, y, epochs=3, batch_size=128, verbose=0, callbacks=[
        best, tfdc.GradualPruning(0.5, end_step=2 * steps, frequency=2),
        ClusteredFineTuning(bits=2)])
    for ours, restored in zip(model.get_weights(), best.best_weights):
        np.testing.assert_array_equal(ours, restored)
    assert not _is_binary16(model.get_layer("fc1").bias.numpy())
    with pytest.warns(UserWarning, match=r"kernels are no longer clustered \(\S*fc1/kernel: "
                      r"[\d,]+ values, clustered to 4"):
        tfdc.strip(model)


def test_clustering_again_replaces_a_codebook_left_attached(mnist_small):
    # ClusteredFineTuning(bits=3, detach_at_end=False), then bits=2 in a
    # later fit: the 3-bit constraint was kept under the new one, came back
    # when that fit detached, and the next plain fit put every weight back
    # on the old 8 clusters.
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    prune(model)
    fit = functools.partial(model.fit, x[:1024], y[:1024], epochs=1, batch_size=128, verbose=0)
    fit(callbacks=[ClusteredFineTuning(bits=3, detach_at_end=False)])
    again = ClusteredFineTuning(bits=2, detach_at_end=False)
    fit(callbacks=[again])
    kernel = model.get_layer("fc1").kernel
    assert np.unique(kernel.numpy()[kernel.numpy() != 0]).size <= 4
    assert kernel.constraint.owner is again and not isinstance(kernel.constraint.inner,
                                                               ClusterConstraint)
    again.detach()
    assert find_constraint(kernel, ClusterConstraint) is None


def test_centroid_never_lands_on_zero():
    centroids = keras.Variable(np.array([1.0], "float32"), trainable=False)
    c = ClusterConstraint(np.array([0, 2]), np.array([0, 0]), centroids, np.array([2.0]), 4)
    out = c(tf.constant([0.5, 0.0, -0.5, 0.0])).numpy()  # mean update lands on 0.0
    np.testing.assert_array_equal(out, [1.0, 0.0, 1.0, 0.0])


def test_default_bits_conv_8_dense_5_and_dict_selection(mnist_small):
    (x, y), _ = mnist_small
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(16, 5, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(10, name="fc")])
    cb = ClusteredFineTuning()
    cb.quantize(model)
    assert {s.layer.name: s.value for s in cb.selections} == {"conv": 8, "fc": 5}
    books = codebooks(model)
    assert 32 < books[model.get_layer("conv").kernel.path]["centroids"].size <= 256
    assert books[model.get_layer("fc").kernel.path]["centroids"].size == 32

    mlp = small_mlp()
    ClusteredFineTuning(bits={"fc[12]": 2}).quantize(mlp)
    sizes = {k.split("/")[-2]: v["centroids"].size for k, v in codebooks(mlp).items()}
    assert sizes["fc1"] == 4 and sizes["fc2"] == 4 and sizes["fc3"] > 100


def test_layer_with_fewer_values_than_clusters(mnist_small):
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    k = model.get_layer("fc2").kernel
    values = np.random.default_rng(0).choice([0.0, -0.3, 0.1, 0.2], size=k.shape)
    k.assign(values.astype("float32"))
    cb = ClusteredFineTuning(bits={"fc2": 5})
    book = cb.quantize(model)[k.path]
    # The codebook is those values (rounded to binary16: centroid_fp16).
    np.testing.assert_array_equal(np.sort(book["centroids"]),
                                  to_binary16(np.float32([-0.3, 0.1, 0.2])))
    np.testing.assert_array_equal(k.numpy(), to_binary16(values.astype("float32")))
    model.fit(x[:512], y[:512], epochs=1, verbose=0, callbacks=[cb])
    w = k.numpy()
    assert np.unique(w[w != 0]).size <= 3
    np.testing.assert_array_equal(w != 0, values != 0)


@pytest.mark.parametrize("bits", [0, 9, 2.5, True])
def test_bad_bits_name_the_layer(bits):
    with pytest.raises(ValueError, match="fc1"):
        ClusteredFineTuning(bits={"fc1": bits})
    with pytest.raises(ValueError, match="bits"):
        ClusteredFineTuning(bits=bits)


def test_pattern_matching_nothing_and_bad_options():
    model = small_mlp()
    with pytest.raises(ValueError, match="conv.*matches no layer"):
        ClusteredFineTuning(bits={"conv.*": 4}).quantize(model)
    with pytest.raises(ValueError, match="init"):
        ClusteredFineTuning(init="spectral")
    with pytest.raises(ValueError, match="centroid_update"):
        ClusteredFineTuning(centroid_update="median")
    with pytest.raises(TypeError, match="expected a Keras model or layer, got NoneType"):
        codebooks(None)
    for max_iter in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_iter must be a positive integer"):
            ClusteredFineTuning(max_iter=max_iter)


def test_two_clusterings_of_one_layer_in_one_fit_are_refused(mnist_small):
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="two ClusteredFineTuning callbacks in one fit cluster "
                       "layer 'fc1'"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[ClusteredFineTuning(bits=2), ClusteredFineTuning(bits={"fc1": 5})])


def test_a_train_step_that_skips_constraints_is_told_and_the_codebooks_hold(mnist_small):
    """A train step that assigns the weights itself runs no constraint: a
    warning says so, and each kernel is put back on its codebook (each
    shared value the mean of its members) at each epoch's end (before:
    14,639 distinct values in a 2-bit kernel)."""
    (x, y), _ = mnist_small
    model = manual_step_mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    masks = prune(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=2, batch_size=128, verbose=0,
                            callbacks=[ClusteredFineTuning(bits=2)])
    told = [str(w.message) for w in caught if "more distinct values than their codebooks"
            in str(w.message)]
    assert len(told) == 1 and "does not apply the variables' constraints" in told[0], told
    assert history.history["distinct_values"] == [4, 4]
    assert_codebook(model, masks, {"fc1": 2, "out": 2})


def test_a_train_step_that_never_steps_the_optimizer_gets_no_end_step_advice(mnist_small):
    # optimizer.iterations stays 0: ClusteredFineTuning said "this fit
    # stopped at step 0, as GradualPruning's schedule ended ... Give
    # GradualPruning an end_step before 40", which changes nothing.
    (x, y), _ = mnist_small
    model = manual_step_mlp(counts_steps=False)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[
            tfdc.GradualPruning(0.8, frequency=5, end_step=10), ClusteredFineTuning(bits=3)])
    messages = [str(w.message) for w in caught]
    assert int(model.optimizer.iterations) == 0
    assert any("does not apply the variables' constraints" in m for m in messages), messages
    assert not any("no step left to fine-tune" in m for m in messages), messages


def test_a_retry_of_a_fit_stopped_by_an_exception_while_clustering(mnist_small):
    # The exception skipped on_train_end, so the codebooks stayed attached,
    # and the retry with new callbacks was refused: "still clustered: a
    # ClusteredFineTuning(detach_at_end=False) left its constraint".
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def callbacks():
        return [tfdc.GradualPruning(0.8, frequency=2, end_step=16), ClusteredFineTuning(bits=3)]
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, epochs=4, batch_size=128, verbose=0, callbacks=[*callbacks(), Stop()])
    assert isinstance(model.get_layer("fc1").kernel.constraint, ClusterConstraint)
    with pytest.warns(UserWarning, match=r"GradualPruning: the codebooks of a "
                      r"ClusteredFineTuning whose fit stopped with an exception were still "
                      r"attached \(\S*fc1/kernel, .*\): removed"):
        model.fit(x, y, epochs=4, initial_epoch=2, batch_size=128, verbose=0,
                  callbacks=callbacks())
    for name, book in codebooks(model).items():
        assert book["zeros"] / book["size"] == pytest.approx(0.8, abs=2e-3), name
        assert book["centroids"].size <= 8, name
    assert find_constraint(model.get_layer("fc1").kernel, ClusterConstraint) is None


def test_refuses_a_layer_that_feeds_batchnorm(mnist_small):
    (x, y), _ = mnist_small
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.Flatten(),
                              keras.layers.Dense(10, name="fc")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"'conv' feeds BatchNormalization 'bn'.*fold_batchnorm"):
        model.fit(x[:64, ..., None], y[:64], verbose=0, callbacks=[ClusteredFineTuning(4)])
    folded = tfdc.fold_batchnorm(model)
    folded.compile("adam", "sparse_categorical_crossentropy")
    folded.fit(x[:64, ..., None], y[:64], verbose=0, callbacks=[ClusteredFineTuning(4)])
    assert max(v["centroids"].size for v in codebooks(folded).values()) <= 16
    # After the layer's own ReLU the converter cannot fold it, and the
    # kernel reaches the file as trained: clustered, not refused (it was,
    # after tfdc.compress had scanned, planned and pruned).
    relu = keras.Sequential([keras.Input((28, 28, 1)),
                             keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                             keras.layers.BatchNormalization(name="bn"), keras.layers.Flatten(),
                             keras.layers.Dense(10, name="fc")])
    relu.compile("adam", "sparse_categorical_crossentropy")
    relu.fit(x[:64, ..., None], y[:64], verbose=0, callbacks=[ClusteredFineTuning(4)])
    assert sorted(key.split("/", 1)[1] for key in codebooks(relu)) == ["conv/kernel", "fc/kernel"]
    assert altered_kernels(relu, convert(relu)) == []


class CodebookAtClusterStart(keras.callbacks.Callback):
    """fc1's distinct values when `clusterer` has just started (listed after
    it: it sees the snapped weights before any fine-tuning step), and the
    number of steps run before."""

    def __init__(self, clusterer):
        super().__init__()
        self.clusterer, self.values, self.steps = clusterer, None, 0

    def _look(self):
        if self.values is None and self.clusterer._started:
            w = self.model.get_layer("fc1").kernel.numpy()
            self.values, self.started_after = np.unique(w[w != 0]), self.steps

    def on_train_batch_begin(self, batch, logs=None):
        self._look()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self._look()


@pytest.mark.parametrize("order", ["prune-first", "cluster-first"])
def test_pruning_then_clustering_in_one_fit(mnist_small, order):
    """Both callbacks in one fit: prune along the schedule, then cluster the
    pruned weights once the ramp has ended and fine-tune the shared values."""
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    pruning = tfdc.GradualPruning(0.8, end_step=24, frequency=4)  # 16 steps per epoch
    clustering = ClusteredFineTuning(bits=3)
    recorder = CodebookAtClusterStart(clustering)
    callbacks = [pruning, clustering] if order == "prune-first" else [clustering, pruning]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the ramp ends inside the fit
        model.fit(x, y, epochs=3, batch_size=128, verbose=0, callbacks=callbacks + [recorder])
    assert recorder.started_after == 24  # clustered right after the ramp's last step
    for name in ("fc1", "fc2", "fc3"):
        w = model.get_layer(name).kernel.numpy()
        assert (w == 0).sum() == round(0.8 * w.size), name  # the pruned zeros are kept
        assert 2 <= np.unique(w[w != 0]).size <= 8, name  # 2**bits shared values
    w = model.get_layer("fc1").kernel.numpy()
    final = np.unique(w[w != 0])
    assert final.size == recorder.values.size and not np.array_equal(final, recorder.values)


def test_pruning_to_the_last_step_then_clustering_warns(mnist_small):
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match=r"GradualPruning's schedule ends at the last step of "
                                         r"this fit \(step 32.*e\.g\. end_step=24"):
        model.fit(x, y, epochs=2, batch_size=128, verbose=0,
                  callbacks=[tfdc.GradualPruning(0.8), ClusteredFineTuning(bits=3)])
    w = model.get_layer("fc1").kernel.numpy()  # clustered, not fine-tuned
    assert (w == 0).sum() == round(0.8 * w.size) and np.unique(w[w != 0]).size <= 8
    # An end_step the user gave is not called the default.
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match=r"ends at the last step of this fit \(step 32\), so"):
        model.fit(x, y, epochs=2, batch_size=128, verbose=0,
                  callbacks=[tfdc.GradualPruning(0.8, end_step=32), ClusteredFineTuning(bits=3)])


def test_a_fit_stopped_where_the_ramp_ends_warns(mnist_small):
    # EarlyStopping or stop_training right at end_step: clustered with no
    # step to fine-tune, which was silent when the planned end was later.
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 0))
    with pytest.warns(UserWarning, match=r"this fit stopped at step 16, as GradualPruning's "
                                         r"schedule ended \(stopped early\?\)"):
        model.fit(x, y, epochs=4, batch_size=128, verbose=0,
                  callbacks=[tfdc.GradualPruning(0.8, end_step=16, frequency=4),
                             ClusteredFineTuning(bits=3), stop])
    w = model.get_layer("fc1").kernel.numpy()
    assert (w == 0).sum() == round(0.8 * w.size) and np.unique(w[w != 0]).size <= 8


@pytest.mark.parametrize("order", ["structured-first", "cluster-first"])
def test_structured_pruning_then_clustering_in_one_fit(mnist_small, order):
    # Clustering waits for StructuredPruning's schedule too: it used to
    # cluster at once, and the units it then "removed" kept their shared
    # values (100 of 100 alive while kept_fraction() said 0.5).
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    structured = tfdc.StructuredPruning({"fc1": 0.5}, end_step=24, frequency=4)
    clustering = ClusteredFineTuning(bits=3)
    recorder = CodebookAtClusterStart(clustering)
    callbacks = [structured, clustering] if order == "structured-first" else \
        [clustering, structured]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, epochs=3, batch_size=128, verbose=0, callbacks=callbacks + [recorder])
    assert recorder.started_after == 24
    w = model.get_layer("fc1").kernel.numpy()
    alive = int((np.abs(w).sum(axis=0) > 0).sum())
    assert alive == round(0.5 * w.shape[1]) == round(structured.kept_fraction() * w.shape[1])
    assert np.unique(w[w != 0]).size <= 8
    assert tfdc.shrink(model).get_layer("fc1").units == alive


def test_clustering_waits_for_the_later_of_two_pruning_schedules(mnist_small):
    # Units removed after GradualPruning's end were flagged as "pruned
    # weights not zero ... a custom train_step?": clustering had begun.
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    clustering = ClusteredFineTuning(bits=3)
    recorder = CodebookAtClusterStart(clustering)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # What GradualPruning's sparsity counts here (test_structured).
        warnings.filterwarnings("ignore", "GradualPruning: StructuredPruning removes units")
        model.fit(x, y, epochs=3, batch_size=128, verbose=0, callbacks=[
            tfdc.StructuredPruning({"fc1": 0.5}, end_step=32, frequency=4),
            tfdc.GradualPruning(0.6, end_step=16, frequency=4), clustering, recorder])
    assert recorder.started_after == 32
    w = model.get_layer("fc1").kernel.numpy()
    assert int((np.abs(w).sum(axis=0) > 0).sum()) == round(0.5 * w.shape[1])
    assert np.unique(w[w != 0]).size <= 8


def test_a_ramp_that_ends_after_the_fit_is_refused_before_training(mnist_small):
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    before = model.get_layer("fc1").kernel.numpy()
    with pytest.raises(ValueError, match=r"GradualPruning's schedule has ended \(end_step "
                                         r"10,000\), but this fit ends at step 16"):
        model.fit(x, y, epochs=1, batch_size=128, verbose=0,
                  callbacks=[tfdc.GradualPruning(0.8, begin_step=0, end_step=10000),
                             ClusteredFineTuning(bits=3)])
    np.testing.assert_array_equal(model.get_layer("fc1").kernel.numpy(), before)
    # That aborted fit left no trace: clustering alone runs in the next one.
    model.fit(x, y, epochs=1, batch_size=128, verbose=0, callbacks=[ClusteredFineTuning(bits=3)])
    w = model.get_layer("fc1").kernel.numpy()
    assert np.unique(w).size <= 8


class NeverCalled(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.fc1 = keras.layers.Dense(32, activation="relu", name="fc1")
        self.out = keras.layers.Dense(10, activation="softmax", name="out")

    def call(self, x):
        return self.out(self.fc1(self.flatten(x)))


def test_subclassed_model_built_by_fit_itself(mnist_small):
    (x, y), _ = mnist_small
    model = NeverCalled()
    model.compile("adam", "sparse_categorical_crossentropy")
    assert not model.built  # Keras builds it in the first train step
    model.fit(x, y, epochs=1, batch_size=128, verbose=0, callbacks=[ClusteredFineTuning(bits=2)])
    for layer in (model.fc1, model.out):
        w = layer.kernel.numpy()
        assert np.unique(w[w != 0]).size <= 4, layer.name


def test_resume_from_keras_checkpoint(mnist_small, tmp_path):
    (x, y), _ = mnist_small
    model = small_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    masks = prune(model)
    path = str(tmp_path / "ckpt.keras")
    model.fit(x, y, epochs=1, batch_size=256, verbose=0,
              callbacks=[ClusteredFineTuning(bits=4, detach_at_end=False),
                         keras.callbacks.ModelCheckpoint(path)])  # saved with constraints on
    with zipfile.ZipFile(path) as z:
        assert "tfdc" not in z.read("config.json").decode()
    restored = keras.models.load_model(path)
    before = {k: v["centroids"] for k, v in codebooks(restored).items()}
    weights = {w.path: w.numpy() for w in restored.weights}
    cb = ClusteredFineTuning(bits=4)
    cb.quantize(restored)  # recovers the codebook from the distinct values, in binary16
    clustered = {s.variable.path for s in cb.selections}
    for w in restored.weights:
        expected = to_binary16(weights[w.path]) if w.path in clustered else weights[w.path]
        np.testing.assert_array_equal(w.numpy(), expected)
    assert {k: v["centroids"].size for k, v in codebooks(restored).items()} == {
        k: v.size for k, v in before.items()}
    restored.fit(x, y, epochs=1, batch_size=256, verbose=0, callbacks=[cb])
    assert_codebook(restored, masks, {n: 4 for n in masks})
    after = {k: v["centroids"] for k, v in codebooks(restored).items()}
    assert all(after[k].size == before[k].size for k in before)
    tfdc.strip(model)
    assert all(not isinstance(v.constraint, ClusterConstraint) for v in model.variables)


def test_codebooks_on_any_model():
    model = small_mlp()
    books = codebooks(model)
    fc3 = books[model.get_layer("fc3").kernel.path]
    assert fc3["size"] == 160 and fc3["zeros"] == 0 and fc3["counts"].sum() == 160


MIRRORED = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from tfdc.cluster import ClusteredFineTuning
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, name="fc1"),
                                  keras.layers.Dense(3, name="fc2")])
        model.compile("adam", "sparse_categorical_crossentropy")
    w = model.get_layer("fc1").kernel
    w.assign(np.where(np.abs(w.numpy()) < 0.1, 0, w.numpy()))
    mask = w.numpy() != 0
    x = np.random.default_rng(0).normal(size=(512, 20)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)
    start = w.numpy().copy()
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[ClusteredFineTuning(bits=3)])
    v = w.numpy()
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "distinct": int(np.unique(v[v != 0]).size),
                      "same_mask": bool(np.array_equal(v != 0, mask)),
                      "moved": bool(not np.array_equal(v, start))}))
""")


def test_mirrored_strategy_two_cpu_replicas():
    proc = run_python(MIRRORED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"replicas": 2, "distinct": result["distinct"], "same_mask": True,
                      "moved": True}
    assert 1 <= result["distinct"] <= 8


@pytest.mark.parametrize("update", ["mean", "sum"])
def test_fused_sparse_and_xla_paths_agree(update):
    """The constraint's three implementations (the fused op of
    tfdc.cluster_op, sparse products, and gather / segment sum / lookup under
    jit_compile) give the same kernel and centroids, here run eagerly on one
    moved kernel."""
    from tfdc import cluster_op
    fused = cluster_op.load()
    assert fused is not None, cluster_op.status()
    rng = np.random.default_rng(3)
    size, k = 600, 6
    positions = np.sort(rng.choice(size, 150, replace=False))
    assignment = rng.integers(0, k, positions.size)
    centroids = np.linspace(-1, 1, k).astype("float32")
    counts = np.bincount(assignment, minlength=k).astype("float64")
    w = np.zeros(size, "float32")
    w[positions] = centroids[assignment] + rng.normal(0, 0.01, positions.size).astype("float32")
    w[rng.choice(size, 20)] += 0.5  # pruned positions moved too: they must come back to 0
    results = []
    for path in ("fused", "sparse", "xla"):
        var = keras.Variable(centroids.copy(), trainable=False)
        c = ClusterConstraint(positions, assignment, var, counts, size, update=update)
        c.jit_compile = path == "xla"
        c.fused = fused if path == "fused" else None
        results.append((c(tf.constant(w.reshape(20, 30))).numpy(), var.numpy()))
    # The sums' order differs between paths: equal up to float32 rounding of
    # a sum of ~25 members (which "sum" then subtracts count * old from).
    for other in results[1:]:
        np.testing.assert_allclose(results[0][0], other[0], rtol=1e-6, atol=2e-5)
        np.testing.assert_allclose(results[0][1], other[1], rtol=1e-6, atol=2e-5)
    out = results[0][0].ravel()
    assert np.count_nonzero(out) == positions.size and np.all(out[positions] != 0)
    np.testing.assert_array_equal(out[positions], results[0][1][assignment])


def test_fused_op_runs_in_the_train_step_on_cpu(mnist_small):
    """On CPU the callback hands the fused op to every constraint (and not
    with fused_op=False), and training through it keeps the invariants."""
    (x, y), _ = mnist_small
    for fused_op in (True, False):
        model = small_mlp()
        model.compile("adam", "sparse_categorical_crossentropy")
        masks = prune(model)
        cb = ClusteredFineTuning(bits=4, detach_at_end=False, fused_op=fused_op)
        model.fit(x[:512], y[:512], epochs=1, batch_size=64, verbose=0, callbacks=[cb])
        assert [c.fused is not None for _, c in cb._constraints] == [fused_op] * 3
        assert_codebook(model, masks, {n: 4 for n in masks})
        cb.detach()


def _run(model_bytes, x):
    interpreter = tfdc.load_interpreter(model_bytes)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for row in x:
        interpreter.set_tensor(inp["index"], row[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(results)


def test_biases_rounded_to_binary16_at_the_end_and_packed_smaller(mnist_small, tmp_path):
    """bias_fp16 (default): the clustered layers' biases end on binary16
    values, and the packed file stores them in fewer bytes than the same
    model with float32 biases; each packed file runs bit-identically to the
    plain conversion of its model."""
    (x, y), (x_test, _) = mnist_small
    sizes, biases = {}, {}
    for bias_fp16 in (True, False):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                                  keras.layers.Dense(300, activation="relu", name="fc1"),
                                  keras.layers.Dense(10, activation="softmax", name="fc2")])
        model.compile("adam", "sparse_categorical_crossentropy")
        prune(model)
        model.fit(x, y, epochs=1, batch_size=128, verbose=0,
                  callbacks=[ClusteredFineTuning(bits=4, bias_fp16=bias_fp16)])
        biases[bias_fp16] = model.get_layer("fc1").bias.numpy()
        path = str(tmp_path / f"m{bias_fp16}.tflite")
        tfdc.export(model, path)
        sizes[bias_fp16] = os.path.getsize(path)
        packed = open(path, "rb").read()
        plain = tfdc.exporter.convert(model)
        got, want = _run(packed, x_test[:20]), _run(plain, x_test[:20])
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    rounded = biases[True].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(biases[True], rounded)
    assert (biases[False].astype(np.float16).astype(np.float32) != biases[False]).any()
    assert sizes[True] < sizes[False] - 300, sizes  # 310 biases: about 2 of their 4 bytes


def test_layers_of_one_variable_path_in_two_nested_models(mnist_small, tmp_path):
    # Layers built before the functional models that hold them share a
    # variable path ("fc/kernel"): clustering keyed its books by that path,
    # so both layers got the last one's codebook and mask (branch1's 80 %
    # sparsity came back as 30 %), and codebooks() showed one of them.
    (x, y), _ = mnist_small

    def branch(name):
        inputs = keras.Input((784,))
        return keras.Model(inputs, keras.layers.Dense(32, name="fc")(inputs), name=name)

    inputs = keras.Input((28, 28))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(
        keras.layers.Concatenate()([branch("branch1")(flat), branch("branch2")(flat)])))
    model.compile("adam", "sparse_categorical_crossentropy")
    kernels = [model.get_layer(f"branch{i}").get_layer("fc").kernel for i in (1, 2)]
    assert kernels[0].path == kernels[1].path
    model.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[
        tfdc.GradualPruning({"branch1/fc": 0.8, "branch2/fc": 0.3}, frequency=1)])
    zeros = [k.numpy() == 0 for k in kernels]
    # The path wins over the bare name, whichever comes first in the dict.
    model.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[
        ClusteredFineTuning({"fc": 5, "branch1/fc": 2, "branch2/fc": 3})])
    for k, z, bits in zip(kernels, zeros, (2, 3)):
        w = k.numpy()
        assert np.array_equal(w == 0, z)  # each keeps its own mask
        assert np.unique(w[w != 0]).size == 2 ** bits
    books = codebooks(model, targets={"fc": True})
    assert sorted(books) == ["branch1/fc/kernel", "branch2/fc/kernel"]
    assert [books[f"branch{i}/fc/kernel"]["centroids"].size for i in (1, 2)] == [4, 8]
    # exclude= a nested model: none of the layers inside it.
    model.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[
        tfdc.GradualPruning(0.9, exclude=["branch1", "out"], frequency=1)])
    sparsity = tfdc.sparsity(model)
    assert sparsity["branch1/fc"].sparsity == pytest.approx(0.8, abs=1e-3)
    assert sparsity["branch2/fc"].sparsity == pytest.approx(0.9, abs=1e-3)
    # The export report names the rows by path too, as tfdc.inspect of the
    # same file does (it had "fc#1" / "fc#2"); so does the full-integer one.
    path = tmp_path / "m.tflite"
    rows = [layer.name for layer in tfdc.export(model, path).layers if layer.name != "out"]
    assert rows == [layer.name for layer in tfdc.inspect(path).layers
                    if layer.name != "out"] == ["branch1/fc", "branch2/fc"]
    from tfdc.quantize import kernel_codes
    model.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[ClusteredFineTuning(3)])
    tfdc.strip(model)
    plain = tfdc.exporter.convert(model, representative_dataset=lambda: (
        [x[i:i + 1]] for i in range(8)))
    assert [k.name for k in kernel_codes(model, plain)][:2] == ["branch1/fc", "branch2/fc"]
