"""tfdc.structured: StructuredPruning removes whole units on schedule, by the chosen
criterion, keeps them removed inside the compiled step, and composes."""

import warnings
import zipfile

import keras
import numpy as np
import pytest

import tfdc
from tfdc.constraints import TfdcConstraint
from tfdc.prune import find_mask
from tfdc.structured import StructuredPruning

BATCH = 128  # 2048 training images -> 16 steps per epoch


def mlp(hidden=(32, 16)):
    return keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(hidden[0], activation="relu", name="fc1"),
        keras.layers.Dense(hidden[1], activation="relu", name="fc2"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])


def compile_(model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def removed_units(model, name):
    layer = model.get_layer(name)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    bias = keras.ops.convert_to_numpy(layer.bias)
    return np.flatnonzero(~np.any(kernel != 0, axis=0) & (bias == 0))


def test_units_removed_on_schedule_and_kept_removed(mnist_small):
    (x, y), (xt, yt) = mnist_small
    model = compile_(mlp(), lr=1e-2)  # 64 steps: a high rate to learn something
    pruner = StructuredPruning({"fc1": 0.75, "fc2": 0.5}, begin_step=0, end_step=32,
                               frequency=8)
    history = model.fit(x, y, epochs=4, batch_size=BATCH, verbose=0, callbacks=[pruner])
    assert len(removed_units(model, "fc1")) == 24
    assert len(removed_units(model, "fc2")) == 8
    assert history.history["units_kept"][-1] == pytest.approx((8 + 8) / 48)
    assert pruner.fraction_at(16) == pytest.approx({"fc1": 0.75 * (1 - 0.5 ** 3),
                                                     "fc2": 0.5 * (1 - 0.5 ** 3)})
    # Masks on the kernel, the bias: the removed units stay removed when the
    # model trains on without the callback (the constraint runs in the step).
    fc1 = model.get_layer("fc1")
    assert find_mask(fc1.kernel) is not None and find_mask(fc1.bias) is not None
    before = removed_units(model, "fc1")
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    np.testing.assert_array_equal(removed_units(model, "fc1"), before)
    # The output layer's units are never removed; its input rows stay.
    assert model.get_layer("out").kernel.shape == (16, 10)
    assert 1 - model.evaluate(xt, yt, verbose=0)[1] < 0.5  # still learns (chance: 0.9)


def test_steps_per_execution_over_frequency_is_warned_of(mnist_small):
    (x, y), _ = mnist_small
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=8)
    with pytest.warns(UserWarning, match=r"StructuredPruning: the model is compiled with "
                                         r"steps_per_execution=8.*not every frequency=2"):
        model.fit(x, y, epochs=1, batch_size=128, verbose=0,
                  callbacks=[StructuredPruning(0.5, frequency=2)])


def test_removed_set_only_grows(mnist_small):
    (x, y), _ = mnist_small

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sets = []

        def on_train_batch_end(self, batch, logs=None):
            self.sets.append(set(removed_units(self.model, "fc1").tolist()))

    record = Record()
    model = compile_(mlp())
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.5}, frequency=2), record])
    for earlier, later in zip(record.sets, record.sets[1:]):
        assert earlier <= later
    assert len(record.sets[-1]) == 16


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norm_criteria_remove_the_smallest_columns(criterion, mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp(), lr=1e-5)  # weights barely move during the test
    fc1 = model.get_layer("fc1")
    kernel = keras.ops.convert_to_numpy(fc1.kernel)
    small = [3, 7, 11, 19, 20, 21, 30, 31]
    kernel[:, small] *= 1e-3
    fc1.kernel.assign(kernel)
    model.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.25}, criterion=criterion, frequency=1)])
    assert removed_units(model, "fc1").tolist() == small


def test_activation_criterion_removes_units_that_never_fire(mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp(), lr=1e-5)
    fc1 = model.get_layer("fc1")
    bias = keras.ops.convert_to_numpy(fc1.bias)
    dead = [0, 5, 9, 13, 22, 27, 28, 29]
    bias[dead] = -100.0  # ReLU output always 0: frequency 0
    fc1.bias.assign(bias)
    kernel = keras.ops.convert_to_numpy(fc1.kernel)
    kernel[:, dead] *= 10  # the largest columns: a norm criterion would keep them
    fc1.kernel.assign(kernel)
    model.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.25}, criterion="activation",
                                           data=x[:512], frequency=1)])
    assert removed_units(model, "fc1").tolist() == dead


def test_activation_data_of_single_examples_is_refused_before_training(mnist_small):
    # A tf.data.Dataset not .batch()ed: Keras's predict failed at the first
    # pruning step, deep inside Keras, the epoch's training before it lost.
    import tensorflow as tf
    (x, y), _ = mnist_small
    model = compile_(mlp())
    before = model.get_weights()
    examples = tf.data.Dataset.from_tensor_slices(x[:64])
    with pytest.raises(ValueError, match=r"StructuredPruning: data= yields single examples "
                       r"\(x of shape \(28, 28\)\), not batches: batch it"):
        model.fit(x[:64], y[:64], epochs=1, batch_size=BATCH, verbose=0, callbacks=[
            StructuredPruning(0.25, criterion="activation", data=examples, frequency=1)])
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)  # refused before any step
    model.fit(x[:64], y[:64], epochs=1, batch_size=BATCH, verbose=0, callbacks=[
        StructuredPruning(0.25, criterion="activation", data=examples.batch(32), frequency=1)])
    assert len(removed_units(model, "fc1")) == model.get_layer("fc1").units // 4


def test_activation_data_that_does_not_fit_the_model_is_refused_before_training(mnist_small):
    # Another width, or a list of examples (a list is one array per input):
    # Keras's predict failed at the first pruning step, naming its copy of
    # the model ("functional_1"), not data= or StructuredPruning.
    (x, y), _ = mnist_small
    model = compile_(mlp())
    before = model.get_weights()
    for data, match in ((x[:64, :, :20], r"data= does not run through the model: "
                         r".*'sequential(_\d+)?'.*expected shape=\(None, 28, 28\)"),
                        (list(x[:64]), r"data= does not run through the model \(a list or "
                         r"tuple is one array per model input, not a list of examples\)")):
        with pytest.raises(ValueError, match=r"^StructuredPruning\(criterion='activation'\): "
                           + match):
            model.fit(x[:64], y[:64], epochs=1, batch_size=BATCH, verbose=0, callbacks=[
                StructuredPruning(0.25, criterion="activation", data=data, frequency=1)])
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)  # refused before any step
    # Channels a conv does not take: Keras's line that says so, not its
    # "Exception encountered when calling Functional.call()".
    conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, name="c1"),
                             keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    conv.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"data= does not run through the model: .*'c1' is "
                       r"incompatible with the layer: expected axis -1 of input shape to have "
                       r"value 1, but received input with shape \(2, 28, 28, 3\)"):
        conv.fit(x[:64, :, :, None], y[:64], epochs=1, verbose=0, callbacks=[StructuredPruning(
            0.25, criterion="activation", data=np.repeat(x[:64, :, :, None], 3, -1))])
    # Arrays of two lengths (a model of two inputs); a list of (a, b) pairs.
    with pytest.raises(ValueError, match=r"data= arrays of one length .*got lengths \[10, 12\]"):
        StructuredPruning(0.5, criterion="activation", data=[x[:10], x[:12]])
    with pytest.raises(ValueError, match=r"needs data= as arrays \(one per model input\)"):
        StructuredPruning(0.5, criterion="activation", data=[(x[0], 1), (x[1], 2)])


def test_a_named_target_that_exclude_leaves_out_is_refused():
    # It was dropped without a word: "nothing to prune ... or every target
    # is 0" when it was the only one, the rest pruned as if not named.
    model = mlp()
    pruner = StructuredPruning({"fc1": 0.5, "fc2": 0.5}, exclude=["fc1"])
    pruner.set_model(model)
    with pytest.raises(ValueError, match=r"^fc1: named in target_fraction and left out by "
                       r"exclude=\['fc1'\]: give each layer in one of them"):
        pruner.on_train_begin()
    # data= without criterion="activation" is not read: said so.
    with pytest.warns(UserWarning, match=r"data= is read by criterion='activation' only; "
                      r"criterion='l2' ranks units by their weights"):
        StructuredPruning(0.5, data=np.zeros((4, 28, 28)))


def test_a_frozen_layer_under_every_layer_is_told(mnist_small):
    # Units of a frozen (pretrained) layer were removed without a word, as
    # GradualPruning and ClusteredFineTuning say of their frozen kernels.
    (x, y), _ = mnist_small
    model = mlp()
    model.get_layer("fc1").trainable = False
    compile_(model)
    with pytest.warns(UserWarning, match=r"StructuredPruning: frozen layers \(trainable=False\) "
                                         r"are pruned of units too, .*: fc1; exclude them"):
        model.fit(x[:128], y[:128], epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[StructuredPruning(0.25, frequency=1)])
    with warnings.catch_warnings():  # named, or excluded: the user chose
        warnings.simplefilter("error", UserWarning)
        for pruning in (StructuredPruning({"fc1": 0.5}, frequency=1),
                        StructuredPruning(0.5, exclude="fc1", frequency=1)):
            model.fit(x[:128], y[:128], epochs=1, batch_size=BATCH, verbose=0,
                      callbacks=[pruning])


def test_batchnorm_and_depthwise_follow_the_removed_channels(mnist_small, tmp_path):
    (x, y), _ = mnist_small
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, use_bias=False, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = compile_(keras.Model(inputs, keras.layers.Dense(10, activation="softmax",
                                                            name="out")(h)))
    model.fit(x[..., None], y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning(0.5, frequency=4)])
    conv = keras.ops.convert_to_numpy(model.get_layer("conv").kernel)
    removed = np.flatnonzero(~np.any(conv.reshape(-1, 8) != 0, axis=0))
    assert len(removed) == 4
    bn, dw = model.get_layer("bn"), model.get_layer("dw")
    for v in (bn.gamma, bn.beta, dw.bias):
        assert np.all(keras.ops.convert_to_numpy(v)[removed] == 0)
    assert np.all(keras.ops.convert_to_numpy(dw.kernel)[:, :, removed] == 0)
    # Removed channels output exactly 0 where the next layer reads them.
    probe = keras.Model(model.inputs, model.get_layer("dw").output)
    assert np.all(probe.predict(x[:64, ..., None], verbose=0)[..., removed] == 0)
    # A .keras file keeps every mask (the layers' own constraints): a plain
    # fit on the loaded model keeps the channels removed (they grew back).
    model.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    loaded.fit(x[:256, ..., None], y[:256], epochs=1, batch_size=64, verbose=0)
    bn, dw = loaded.get_layer("bn"), loaded.get_layer("dw")
    for v, axis in ((loaded.get_layer("conv").kernel, 3), (bn.gamma, 0), (bn.beta, 0),
                    (dw.kernel, 2), (dw.bias, 0)):
        assert np.all(np.take(keras.ops.convert_to_numpy(v), removed, axis) == 0), v.path
    assert not np.all(keras.ops.convert_to_numpy(bn.beta) == model.get_layer("bn").beta.numpy())
    # Stripped, the file names no tfdc class: it loads without tfdc.
    tfdc.strip(model)
    model.save(tmp_path / "stripped.keras")
    with zipfile.ZipFile(tmp_path / "stripped.keras") as archive:
        assert "tfdc" not in archive.read("config.json").decode()


def test_resuming_keeps_the_removed_units(mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.5}, frequency=4)])
    first = set(removed_units(model, "fc1").tolist())
    tfdc.strip(model)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.75}, frequency=4)])
    assert first <= set(removed_units(model, "fc1").tolist())
    assert len(removed_units(model, "fc1")) == 24
    # A lower target cannot bring units back: told, not ignored.
    with pytest.warns(UserWarning, match=r"fc1: 24 of 32 > 25.0%.*never come back"):
        model.fit(x[:BATCH], y[:BATCH], epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[StructuredPruning({"fc1": 0.25}, frequency=4)])
    assert len(removed_units(model, "fc1")) == 24


def _half_pruned():
    """mlp() with half its hidden units removed, on 256 random images: the
    model and `(x, y)`."""
    rng = np.random.default_rng(0)
    x, y = rng.random((256, 28, 28), np.float32), rng.integers(0, 10, 256)
    model = compile_(mlp())
    model.fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[StructuredPruning(0.5, frequency=2)])
    return model, x, y


def test_a_loaded_model_trained_then_pruned_further_removes_more_units(tmp_path):
    """Loaded, a plain fit, then StructuredPruning(0.75): the plain fit's
    traced step held the masks recovered from the file, the new fit kept
    that step, and no unit was removed while kept_fraction() said 0.25."""
    model, x, y = _half_pruned()
    model.save(tmp_path / "half.keras")
    loaded = keras.saving.load_model(tmp_path / "half.keras")
    loaded.fit(x, y, epochs=1, batch_size=32, verbose=0)
    pruner = StructuredPruning(0.75, frequency=2)
    loaded.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[pruner])
    assert (len(removed_units(loaded, "fc1")), len(removed_units(loaded, "fc2"))) == (24, 12)
    assert pruner.kept_fraction() == pytest.approx(0.25)


def test_a_kept_unit_whose_bias_is_zero_keeps_the_saved_masks(tmp_path):
    """A kept unit's bias of exactly 0 (a dead unit's, never updated) made
    the bias's zeros one more than the mask saved: the mask was dropped as
    stale on loading, and a plain fit grew the removed units back."""
    model, x, y = _half_pruned()
    removed = removed_units(model, "fc1")
    bias = model.get_layer("fc1").bias
    kept = np.setdiff1d(np.arange(32), removed)
    bias.assign(np.where(np.arange(32) == kept[0], 0.0, bias.numpy()))
    model.save(tmp_path / "half.keras")
    loaded = keras.saving.load_model(tmp_path / "half.keras")
    with warnings.catch_warnings():
        # No "mask is not applied"; and with warnings made errors, NumPy 2's
        # DeprecationWarning of TensorFlow's __array__ had made reading the
        # weights in the traced step fail: no mask applied in the whole fit.
        warnings.simplefilter("error")
        loaded.fit(x, y, epochs=1, batch_size=32, verbose=0)
    np.testing.assert_array_equal(removed_units(loaded, "fc1"), removed)
    assert loaded.get_layer("fc1").bias.numpy()[kept[0]] != 0  # it trains: not pruned
    # The listed positions are checked: a removed unit's bias made nonzero
    # (other weights) is a stale mask, said so, not applied.
    again = keras.saving.load_model(tmp_path / "half.keras")
    b = again.get_layer("fc1").bias
    b.assign(np.where(np.arange(32) == removed[0], 1.0, b.numpy()))
    with pytest.warns(UserWarning, match=r"fc1/bias: the pruning mask saved with the model has "
                      r"16 pruned weights but 1 of them are not zero"):
        again.fit(x, y, epochs=1, batch_size=32, verbose=0)


def test_units_removed_before_stay_removed_without_their_masks(mnist_small):
    """Stripped (or weights loaded into a fresh model, or BackupAndRestore
    listed first): the masks are gone, the new ones were all ones, and with
    the optimizer's moments the removed units grew back to 32 of 32 while
    units_kept read 0.5."""
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.5}, frequency=4)])
    removed = set(removed_units(model, "fc1").tolist())
    assert len(removed) == 16
    tfdc.strip(model)
    history = model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                        callbacks=[StructuredPruning({"fc1": 0.5}, frequency=4)])
    assert set(removed_units(model, "fc1").tolist()) == removed
    assert history.history["units_kept"] == [0.5]


def test_structured_then_unstructured_then_clustered_then_packed(tmp_path, mnist_small):
    (x, y), (xt, yt) = mnist_small
    model = compile_(mlp(hidden=(48, 24)))
    model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"fc1": 0.5, "fc2": 0.5}, frequency=4)])
    with warnings.catch_warnings():
        # The masks in the configs warned at the first training step.
        warnings.filterwarnings("error", message=".*pruning mask")
        small = compile_(tfdc.shrink(model))
        assert not [l.name for l in small.layers if isinstance(
            getattr(l, "bias_constraint", None) or getattr(l, "kernel_constraint", None),
            TfdcConstraint)]
        small.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0)
    assert small.get_layer("fc1").units == 24 and small.get_layer("fc2").units == 12
    small.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
              callbacks=[tfdc.GradualPruning({"fc1": 0.7, "fc2": 0.5}, frequency=4)])
    compile_(small, 1e-4)
    small.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[tfdc.ClusteredFineTuning(bits=4)])
    assert tfdc.sparsity(small)["fc1"].sparsity == pytest.approx(0.7, abs=0.01)
    path = tmp_path / "small.tflite"
    report = tfdc.export(small, path, batch_size=1)
    assert report.packed_bytes < report.plain_bytes / 4
    interpreter = tfdc.load_interpreter(str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for i in range(4):
        interpreter.set_tensor(inp["index"], xt[i:i + 1])
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(out["index"]),
                                   small(xt[i:i + 1]), atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"target_fraction": 1.0}, r"in \[0, 1\)"),
    ({"target_fraction": {"fc1": -0.1}}, r"target_fraction\['fc1'\]"),
    ({"target_fraction": {}}, "empty dict"),
    ({"target_fraction": 0.5, "criterion": "gradient"}, "criterion must be one of"),
    ({"target_fraction": 0.5, "criterion": "activation"}, "needs data="),
    ({"target_fraction": 0.5, "criterion": "activation", "data": np.zeros((0, 28, 28))},
     r"needs data= with examples; got an array of shape \(0, 28, 28\)"),
    ({"target_fraction": 0.5, "criterion": "activation",
      "data": np.where(np.arange(6)[:, None] == 4, np.nan, np.ones((6, 3)))},
     r"StructuredPruning: data has NaN or infinite values in 1 example \(the first: example 4"),
    ({"target_fraction": 0.5, "criterion": "activation", "data": (x for x in np.ones((4, 3)))},
     "a generator is used up after one read: give arrays, a tf.data.Dataset"),
    ({"target_fraction": 0.5, "criterion": "activation", "data": object()},
     "needs data= as arrays, a tf.data.Dataset or a keras.utils.PyDataset; got a value of type object"),
    ({"target_fraction": 0.5, "frequency": 0}, "frequency"),
    ({"target_fraction": 0.5, "min_units": 0}, "min_units"),
    ({"target_fraction": 0.5, "begin_step": 10, "end_step": 5}, "smaller than end_step"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StructuredPruning(**kwargs)


@pytest.mark.parametrize("target, message", [
    ({"out": 0.5}, "'out' cannot be removed: the group feeds the model output"),
    ({"fc9": 0.5}, "matches no layer"),
    ({"fc1": 0.0}, "nothing to prune"),
    ({"flatten": 0.5}, "'flatten' \\(Flatten\\) has no output units of its own"),
])
def test_targets_that_cannot_be_pruned_are_refused(target, message, mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.raises(ValueError, match=message):
        model.fit(x[:128], y[:128], epochs=1, verbose=0, callbacks=[StructuredPruning(target)])


def test_refusals_name_the_layers_and_exclude(mnist_small):
    # They listed the InputLayer among the layers to name, and exclude=[".*"]
    # read "no Dense / Conv layer has output units that can be removed".
    (x, y), _ = mnist_small
    model = compile_(mlp())
    for pruning, message in (
            (StructuredPruning({"fc9": 0.5}), "target 'fc9' matches no layer of the model; "
                                              "layers are: fc1, "),
            (StructuredPruning(0.5, exclude=["nope"]), "exclude pattern 'nope' matches no layer "
                                                       "of the model; layers are: fc1, "),
            (StructuredPruning(0.5, exclude=[".*"]), r"nothing to prune: exclude=\['\.\*'\] "
                                                     r"leaves out every layer whose units can "
                                                     r"be removed \(fc1")):
        with pytest.raises(ValueError, match=message) as refused:
            model.fit(x[:128], y[:128], epochs=1, verbose=0, callbacks=[pruning])
        assert "input_layer" not in str(refused.value), str(refused.value)


@pytest.mark.parametrize("key", ["inner", "branch/inner"])
def test_a_layer_inside_a_nested_model_is_refused_for_what_it_is(key, mnist_small):
    # "has no output units of its own" for a Dense (its name), "matches no
    # layer" for its path: the reason is the nested model.
    (x, y), _ = mnist_small
    branch = keras.Sequential([keras.layers.Dense(8, name="inner")], name="branch")
    model = compile_(keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), branch,
                                       keras.layers.Dense(10, name="out")]))
    with pytest.raises(ValueError, match=f"layer '{key}' is inside 'branch': tfdc.shrink "
                                         "rebuilds the model's own graph"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[StructuredPruning({key: 0.5})])


def test_min_units_that_keep_every_unit_are_refused_or_told(mnist_small):
    """min_units=100 on a 32-unit layer removed nothing, silently; so did a
    target that rounds to no unit (1 % of 32 units)."""
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.raises(ValueError, match=r"min_units=100 keeps every unit of the selected "
                       r"layers, fc1 \(32\), fc2 \(16\): nothing to remove"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[StructuredPruning(0.5, min_units=100)])
    with pytest.warns(UserWarning, match=r"min_units=20 keeps every unit of fc2 \(16\)"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[StructuredPruning(0.5, min_units=20, frequency=1)])
    assert len(removed_units(model, "fc1")) == 12 and len(removed_units(model, "fc2")) == 0
    with pytest.warns(UserWarning, match=r"StructuredPruning: the target removes no unit of "
                      r"fc1 \(0\.01 of 32 units\): it rounds to 0 units"):
        compile_(mlp()).fit(x[:128], y[:128], epochs=1, verbose=0,
                            callbacks=[StructuredPruning({"fc1": 0.01}, frequency=2)])


def test_a_distillers_student_is_pruned(mnist_small):
    """StructuredPruning on a Distiller acts on its student, as the other
    callbacks do (it refused the Distiller as a subclassed model)."""
    from tfdc.distill import Distiller
    (x, y), _ = mnist_small
    student = compile_(mlp())
    distiller = Distiller(student, Distiller.copy_of(student))
    compile_(distiller)
    distiller.fit(x[:512], y[:512], epochs=2, batch_size=BATCH, verbose=0,
                  callbacks=[StructuredPruning({"fc1": 0.5}, frequency=1)])
    assert len(removed_units(student, "fc1")) == 16
    assert tfdc.shrink(student).get_layer("fc1").units == 16



def test_a_schedule_that_outlasts_the_fit_is_told(mnist_small):
    # 16 steps of a schedule to step 1,000: nothing removed, without a word
    # (GradualPruning says so in the same case).
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.warns(UserWarning, match=r"StructuredPruning: training ended at step 16, before "
                      r"the schedule's end_step 1,000: 0\.0% of the selected units are removed, "
                      r"not the target 50\.0%\. .* end_step <= 16"):
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[StructuredPruning({"fc1": 0.5}, end_step=1000)])


def test_gradual_pruning_in_the_same_fit_says_its_sparsity_counts_removed_units(mnist_small):
    # 80 % of a kernel whose units StructuredPruning halves was 60 % of the
    # weights tfdc.shrink keeps, without a word.
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.warns(UserWarning, match="GradualPruning: StructuredPruning removes units in "
                      "this fit too, and the target sparsity counts the weights of removed "
                      "units as pruned"):
        model.fit(x[:512], y[:512], epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[tfdc.GradualPruning(0.8, frequency=2),
                             StructuredPruning({"fc1": 0.5}, frequency=2)])


@pytest.mark.parametrize("first, message", [
    (lambda: keras.layers.SeparableConv2D(8, 3, name="first"),
     r"layer 'first' \(SeparableConv2D\): tfdc removes the units of Dense, Conv and "
     "ConvTranspose layers"),
    (lambda: keras.layers.Conv2D(8, 3, data_format="channels_first", name="first"),
     r"layer 'first' \(Conv2D\) is channels_first: tfdc removes the channels of channels_last"),
    (lambda: keras.layers.Conv2D(8, 3, groups=2, name="first"),
     r"layer 'first' \(Conv2D\) is a grouped convolution \(groups=2\), whose units tfdc "
     "cannot remove"),
])
def test_a_layer_whose_units_cannot_be_removed_is_named_for_why(first, message):
    # Both read "has no output units of its own to remove", which they have.
    shape = ((1, 12, 12) if "channels_first" in message else
             (12, 12, 2) if "grouped" in message else (12, 12, 1))
    model = keras.Sequential([keras.Input(shape), first(), keras.layers.Flatten(),
                              keras.layers.Dense(3, name="out")])
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=message):
        model.fit(np.ones((4,) + shape), np.ones((4, 3)), verbose=0,
                  callbacks=[StructuredPruning({"first": 0.5})])


def test_a_layer_with_lora_is_refused_and_so_are_the_units_it_reads():
    # Named itself, it crashed in on_train_begin (AttributeError: the
    # computed kernel has no path); named as the layer it reads, pruning
    # went on and tfdc.shrink then failed in Keras's set_weights.
    x, y = np.ones((8, 12)), np.ones((8, 3))

    def model(lora):
        layers = [keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                  keras.layers.Dense(8, activation="relu", name="fc2"),
                  keras.layers.Dense(3, name="out")]
        built = keras.Sequential(layers)
        built.get_layer(lora).enable_lora(2)
        built.compile("adam", "mse")
        return built
    with pytest.raises(ValueError, match=r"layer 'fc1' has LoRA enabled: its kernel is computed"):
        model("fc1").fit(x, y, verbose=0, callbacks=[StructuredPruning({"fc1": 0.5})])
    with pytest.raises(ValueError, match=r"the output units of layer\(s\) 'fc1' cannot be "
                       r"removed: the group is read by layer 'fc2' \(Dense, LoRA enabled\), "
                       "which tfdc cannot shrink"):
        model("fc2").fit(x, y, verbose=0, callbacks=[StructuredPruning({"fc1": 0.5})])
