"""tfdc.prune: GradualPruning schedule, exact zeros, targets, resume, errors."""

import functools
import textwrap
import warnings
import zipfile

import keras
import numpy as np
import pytest

import tfdc
from conftest import run_python
from manual_step import manual_step_mlp
from tfdc.prune import GradualPruning, MaskConstraint, find_mask, polynomial_sparsity

BATCH = 128  # 2048 training images -> 16 steps per epoch


def mlp(name="mlp", kernel_constraint=None):
    return keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(32, activation="relu", name="fc1", kernel_constraint=kernel_constraint),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ], name=name)


def compile_(model, optimizer="adam", jit_compile=False):
    model.compile(optimizer, "sparse_categorical_crossentropy", jit_compile=jit_compile)
    return model


def zero_mask(model, layer):
    return keras.ops.convert_to_numpy(model.get_layer(layer).kernel) == 0


class MaskRecorder(keras.callbacks.Callback):
    """Zero pattern of fc1 after every epoch."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def on_epoch_end(self, epoch, logs=None):
        self.masks.append(zero_mask(self.model, "fc1"))


# ------------------------------------------------------------------ schedule

def test_polynomial_schedule_values():
    assert polynomial_sparsity(0, 0.0, 0.9, 0, 100) == 0.0
    assert polynomial_sparsity(100, 0.0, 0.9, 0, 100) == pytest.approx(0.9)
    assert polynomial_sparsity(500, 0.0, 0.9, 0, 100) == pytest.approx(0.9)
    assert polynomial_sparsity(5, 0.2, 0.9, 10, 110) == pytest.approx(0.2)
    # Half-way: s_f + (s_i - s_f) (1/2)^3.
    assert polynomial_sparsity(60, 0.2, 0.9, 10, 110) == pytest.approx(0.9 - 0.7 / 8)
    steps = np.arange(0, 101, 10)
    values = polynomial_sparsity(steps, 0.0, 0.8, 0, 100)
    assert values.shape == steps.shape and np.all(np.diff(values) > 0)


def test_sparsity_at_per_layer():
    model = mlp()
    cb = GradualPruning({"fc1": 0.8, "o.t": 0.4}, begin_step=0, end_step=100)
    assert cb.sparsity_at(0, model) == {"fc1": 0.0, "out": 0.0}
    half = cb.sparsity_at(50, model)
    assert half["fc1"] == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert half["out"] == pytest.approx(0.4 * (1 - 0.5 ** 3))
    assert cb.sparsity_at(1000, model) == pytest.approx({"fc1": 0.8, "out": 0.4})
    with pytest.raises(ValueError, match="end_step"):
        GradualPruning(0.5).sparsity_at(10, model)


# ------------------------------------------------------------- exact zeros

@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(1e-2),
    lambda: keras.optimizers.SGD(0.1, momentum=0.9),
], ids=["adam", "sgd_momentum"])
def test_pruned_weights_stay_exactly_zero(mnist_small, optimizer):
    (x, y), _ = mnist_small
    model = compile_(mlp(), optimizer())
    recorder = MaskRecorder()
    cb = GradualPruning(0.8, begin_step=0, end_step=48, frequency=8)
    history = model.fit(x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[cb, recorder])

    # Monotone masks, and after end_step exactly the target for every kernel.
    for before, after in zip(recorder.masks, recorder.masks[1:]):
        assert np.all(after[before])
    report = tfdc.sparsity(model)
    assert report["fc1"].zeros == round(0.8 * 784 * 32)
    assert report["out"].zeros == round(0.8 * 32 * 10)
    assert history.history["sparsity"][-1] == pytest.approx(report.sparsity)
    # Biases are never pruned.
    assert np.count_nonzero(keras.ops.convert_to_numpy(model.get_layer("fc1").bias)) > 28

    # Momentum / Adam moments keep pushing pruned weights; the constraint,
    # still installed, keeps them at 0 in later fits without the callback.
    pruned = zero_mask(model, "fc1")
    kept_before = keras.ops.convert_to_numpy(model.get_layer("fc1").kernel)[~pruned]
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0)
    kernel = keras.ops.convert_to_numpy(model.get_layer("fc1").kernel)
    assert np.all(kernel[pruned] == 0.0)
    # +0.0 exactly, never -0.0: the packed format stores bit patterns, and a
    # -0.0 would count as a nonzero value.
    assert np.all(kernel[pruned].view(np.uint32) == 0)
    assert not np.allclose(kernel[~pruned], kept_before)  # training did happen


@pytest.mark.parametrize("jit_compile", [False, True])
def test_callback_attached_after_an_earlier_fit(mnist_small, jit_compile):
    (x, y), _ = mnist_small
    model = compile_(mlp(), keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=jit_compile)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # traces a train step without masks
    assert model.train_function is not None
    cb = GradualPruning(0.75, frequency=4)
    model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[cb])
    # Default schedule: from this fit's first step to its end.
    assert (cb.begin_step, cb.end_step) == (16, 16 + 3 * 16)
    assert tfdc.sparsity(model)["fc1"].sparsity == pytest.approx(0.75, abs=1e-4)
    pruned = zero_mask(model, "fc1")
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    assert np.all(zero_mask(model, "fc1")[pruned])
    # An end_step counted from this fit instead of the model's first
    # training: the error says where the default begin_step came from.
    with pytest.raises(ValueError, match=r"begin_step \(80\) must be smaller than end_step "
                                         r"\(20\): begin_step defaults to .* has run 80 steps"):
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.8, end_step=20)])


def test_per_layer_targets_and_exclude(mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning({"fc.*": 0.9, "out": 0.3}, frequency=4)])
    report = tfdc.sparsity(model)
    assert report["fc1"].sparsity == pytest.approx(0.9, abs=1e-4)
    assert report["out"].sparsity == pytest.approx(0.3, abs=1e-3)

    model = compile_(mlp())
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.6, exclude=["out"], frequency=4)])
    report = tfdc.sparsity(model)
    assert report["fc1"].sparsity == pytest.approx(0.6, abs=1e-4)
    assert report["out"].zeros == 0
    assert "total" in str(report) and "fc1" in str(report)


def test_magnitude_criterion_prunes_the_smallest_weights(mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp(), keras.optimizers.SGD(0.0))  # lr 0: weights only change by pruning
    before = np.abs(keras.ops.convert_to_numpy(model.get_layer("fc1").kernel))
    model.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning({"fc1": 0.5}, begin_step=0, end_step=1)])
    pruned = zero_mask(model, "fc1")
    assert pruned.sum() == round(0.5 * before.size)
    assert before[pruned].max() <= before[~pruned].min()


def test_std_criterion_approximates_target(mnist_small):
    (x, y), _ = mnist_small
    model = mlp()
    model.get_layer("fc1").kernel.assign(np.random.default_rng(0).normal(0, 0.05, (784, 32)))
    compile_(model, keras.optimizers.SGD(0.0))
    model.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning({"fc1": 0.7}, begin_step=0, end_step=1, criterion="std")])
    # Normal weights: |w| < sqrt(2) erfinv(0.7) std prunes ~70 %.
    assert tfdc.sparsity(model)["fc1"].sparsity == pytest.approx(0.7, abs=0.02)


# ------------------------------------------------------------- model kinds

def functional():
    inputs = keras.Input((28, 28))
    h = keras.layers.Flatten()(inputs)
    a = keras.layers.Dense(32, activation="relu", name="fc1")(h)
    b = keras.layers.Dense(32, activation="relu", name="fc2")(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(a + b))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.body = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(32, activation="relu",
                                                                                 name="fc1")])
        self.shared = keras.layers.Dense(32, activation="relu", name="shared")
        self.head = keras.layers.Dense(10, activation="softmax", name="out")

    def call(self, x):
        return self.head(self.shared(self.shared(self.body(x))))  # shared: called twice


@pytest.mark.parametrize("build", [mlp, functional, Subclassed], ids=["sequential", "functional",
                                                                       "subclassed"])
def test_model_kinds(mnist_small, build):
    (x, y), _ = mnist_small
    model = build()
    model(x[:1])
    compile_(model)
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[GradualPruning(0.5, frequency=4)])
    report = tfdc.sparsity(model)
    assert len(report) == {mlp: 2, functional: 3, Subclassed: 3}[build]
    for name, layer in report.items():
        assert layer.sparsity == pytest.approx(0.5, abs=2e-3), name


def test_subclassed_model_built_by_fit_itself(mnist_small):
    # Never called before fit: Keras builds it in the first train step; the
    # masks are installed right after that step.
    (x, y), _ = mnist_small
    model = compile_(Subclassed())
    assert not model.built
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.5, frequency=4)])
    report = tfdc.sparsity(model)
    assert len(report) == 3
    for name, layer in report.items():
        assert layer.sparsity == pytest.approx(0.5, abs=2e-3), name
    assert find_mask(model.head.kernel) is not None


def test_warns_when_the_ramp_ends_after_the_fit(mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.warns(UserWarning, match=r"training ended at step 16, before the schedule's "
                                         r"end_step 10,000: the selected kernels are 0\.0% sparse, "
                                         r"not the target 80\.0%\. The schedule carries on in the "
                                         r"next fit"):
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.8, begin_step=0, end_step=10000)])
    assert tfdc.sparsity(model).sparsity == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # reached: no warning
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.8, frequency=4)])
    assert tfdc.sparsity(model).sparsity == pytest.approx(0.8, abs=1e-3)
    # Stopped early (as EarlyStopping does) with the default end_step, the
    # end of each fit: the next fit does not carry this schedule on.
    model = compile_(mlp())
    stop = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: setattr(model, "stop_training", batch == 3))
    with pytest.warns(UserWarning, match=r"training ended at step 4, before the schedule's "
                      r"end_step 32: .* not the target 80\.0%\. To reach the target in a fit, "
                      r"give end_step <= 4"):
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.8, frequency=1), stop])
    # Stopped by TerminateOnNaN with NaN weights: an earlier end_step is no
    # cure (the warning said "give end_step <= 4").
    model = compile_(mlp())

    def poison(batch, logs):
        if batch == 3:
            bias = model.get_layer("out").bias
            bias.assign(np.full(bias.shape, np.nan, "float32"))
    with pytest.warns(UserWarning, match=r"training ended at step 5, before the schedule's "
                      r"end_step 32, with NaN or infinite weights \(\S*fc1/kernel, .*\): the "
                      r"training diverged \(stopped by TerminateOnNaN\?\)") as caught:
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[
            keras.callbacks.LambdaCallback(on_train_batch_end=poison),
            GradualPruning(0.8, frequency=1), keras.callbacks.TerminateOnNaN()])
    assert not any("give end_step" in str(w.message) for w in caught)


def test_a_lower_target_than_the_masks_is_told(mnist_small):
    # Masks only grow: a later GradualPruning(0.5) on an 80 %-pruned model
    # left it at 80 % without a word.
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.8, frequency=4)])
    with pytest.warns(UserWarning, match=r"GradualPruning: masks already zero more than the "
                      r"target \(fc1: 80\.0% > 50\.0%.*masks only grow"):
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.5, frequency=4)])
    assert tfdc.sparsity(model)["fc1"].sparsity == pytest.approx(0.8, abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the same target again: nothing to say
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.8, frequency=4)])


def test_a_kernel_still_clustered_is_refused_and_prunes_once_detached(mnist_small):
    # ClusteredFineTuning(detach_at_end=False), then GradualPruning(0.9) in
    # a later fit: the cluster constraint wrote its centroids back into the
    # newly pruned weights, and a plain fit after it was back to 50 % zeros.
    (x, y), _ = mnist_small
    model = compile_(mlp())
    fit = functools.partial(model.fit, x, y, epochs=1, batch_size=BATCH, verbose=0)
    fit(callbacks=[GradualPruning(0.5, frequency=4)])
    clustering = tfdc.ClusteredFineTuning(bits=3, detach_at_end=False)
    fit(callbacks=[clustering])
    with pytest.raises(ValueError, match=r"fc1/kernel is still clustered: a "
                       r"ClusteredFineTuning\(detach_at_end=False\) left its constraint"):
        fit(callbacks=[GradualPruning(0.9, frequency=4)])
    clustering.detach()
    fit(callbacks=[GradualPruning(0.9, frequency=4)])
    fit()
    assert tfdc.sparsity(model)["fc1"].sparsity == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize("per_call, warned", [(8, True), (4, False)])
def test_steps_per_execution_over_frequency_is_warned_of(mnist_small, per_call, warned):
    # Callbacks see one batch per execution: with steps_per_execution=200
    # the ramp was one cut, silently (0.67 test accuracy against 0.83).
    (x, y), _ = mnist_small
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=per_call)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.5, frequency=4)])
    told = [str(w.message) for w in caught if "steps_per_execution" in str(w.message)]
    assert told == ([f"GradualPruning: the model is compiled with steps_per_execution={per_call}, "
                     f"and callbacks see one batch in {per_call}: the masks change every "
                     f"{per_call} steps, not every frequency=4, so the ramp is a few large cuts "
                     "(or one), which costs accuracy. Compile with steps_per_execution <= 4 for "
                     "this fit."] if warned else [])


# --------------------------------------------------------------- save/resume

def test_resume_from_keras_file(mnist_small, tmp_path):
    (x, y), _ = mnist_small
    model = compile_(mlp(kernel_constraint=keras.constraints.NonNeg()))
    with pytest.warns(UserWarning, match="before the schedule's end_step 64"):
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0,
                  callbacks=[GradualPruning(0.8, begin_step=0, end_step=64, frequency=4)])
    mid = tfdc.sparsity(model)["fc1"].sparsity
    assert 0.3 < mid < 0.8
    pruned = zero_mask(model, "fc1")
    path = str(tmp_path / "mid.keras")
    model.save(path)

    loaded = keras.saving.load_model(path)
    kernel = loaded.get_layer("fc1").kernel
    saved = find_mask(kernel)  # the mask constraint is saved with the layer ...
    assert saved is loaded.get_layer("fc1").kernel_constraint
    assert saved.zeros == pruned.sum() and saved.mask is None  # ... as its number of zeros
    assert isinstance(saved.inner, keras.constraints.NonNeg)
    assert int(loaded.optimizer.iterations) == 32  # ... and so is the schedule position
    assert np.array_equal(zero_mask(loaded, "fc1"), pruned)

    recorder = MaskRecorder()
    loaded.fit(x, y, initial_epoch=2, epochs=5, batch_size=BATCH, verbose=0,
               callbacks=[GradualPruning(0.8, begin_step=0, end_step=64, frequency=4), recorder])
    final = zero_mask(loaded, "fc1")
    assert np.all(final[pruned])  # the old zeros are kept
    assert final.mean() == pytest.approx(0.8, abs=1e-4)
    assert np.all(keras.ops.convert_to_numpy(kernel) >= 0)  # the user's constraint still applies


def test_plain_fit_of_a_reloaded_pruned_model_keeps_its_zeros(mnist_small, tmp_path):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.7, frequency=4)])
    pruned = zero_mask(model, "fc1")
    path = str(tmp_path / "pruned.keras")
    model.save(path)

    loaded = keras.saving.load_model(path)
    loaded.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # no tfdc callback
    assert np.array_equal(zero_mask(loaded, "fc1"), pruned)
    before = keras.ops.convert_to_numpy(loaded.get_layer("fc1").kernel)
    assert not np.array_equal(before[~pruned], model.get_layer("fc1").kernel.numpy()[~pruned])

    # Saved again, the recovered mask is saved again; after tfdc.strip the
    # file holds no tfdc object and training no longer keeps the zeros.
    loaded.save(path)
    assert find_mask(keras.saving.load_model(path).get_layer("fc1").kernel).zeros == pruned.sum()
    tfdc.strip(loaded)
    assert loaded.get_layer("fc1").kernel_constraint is None
    loaded.save(path)
    with zipfile.ZipFile(path) as z:
        assert "tfdc" not in z.read("config.json").decode()
    loaded.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    assert zero_mask(loaded, "fc1").sum() < pruned.sum() // 2


def test_a_saved_mask_that_does_not_fit_the_weights_warns_and_is_not_applied(mnist_small,
                                                                             tmp_path):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.7, frequency=4)])
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    fresh = keras.ops.convert_to_numpy(mlp().get_layer("fc1").kernel)  # other weights, no zeros
    loaded.get_layer("fc1").kernel.assign(fresh)
    with pytest.warns(UserWarning, match=r"fc1/kernel: the pruning mask saved with the model has "
                                         r"17,562 pruned weights but the weights have 0 zeros"):
        loaded.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    assert zero_mask(loaded, "fc1").sum() == 0


def test_mask_constraint_serialization_and_strip(mnist_small):
    config = keras.constraints.serialize(MaskConstraint(None, keras.constraints.NonNeg()))
    restored = keras.constraints.deserialize(config)
    assert isinstance(restored, MaskConstraint) and isinstance(restored.inner, keras.constraints.NonNeg)

    (x, y), _ = mnist_small
    model = compile_(mlp(kernel_constraint=keras.constraints.MaxNorm(3.0)))
    model.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.5, frequency=1)])
    assert isinstance(find_mask(model.get_layer("fc1").kernel), MaskConstraint)
    tfdc.strip(model)
    for variable in model.variables:
        assert not isinstance(variable.constraint, MaskConstraint)
    assert isinstance(model.get_layer("fc1").kernel.constraint, keras.constraints.MaxNorm)
    # The train function is traced again, without the masks: pruned weights grow back.
    model.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0)
    assert zero_mask(model, "fc1").mean() < 0.3  # 0.5 pruned; blank MNIST pixels stay 0


def test_sparsity_in_logs(mnist_small, tmp_path):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    csv = tmp_path / "log.csv"
    model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0,
              callbacks=[GradualPruning(0.6, frequency=4), keras.callbacks.CSVLogger(str(csv))])
    header, *rows = csv.read_text().splitlines()
    column = header.split(",").index("sparsity")
    values = [float(r.split(",")[column]) for r in rows]
    assert values == sorted(values) and values[-1] == pytest.approx(0.6, abs=1e-3)


# ------------------------------------------------------------ distribution

def test_mirrored_strategy_two_cpus(tmp_path):
    script = textwrap.dedent("""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np, tfdc
        keras.utils.set_random_seed(0)
        x = np.random.rand(512, 20).astype("float32"); y = np.random.randint(0, 2, 512)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, name="fc1"),
                                      keras.layers.Dense(2, name="out")])
            model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=6, batch_size=64, verbose=0,
                  callbacks=[tfdc.GradualPruning({"fc1": 0.9}, end_step=24, frequency=4)])
        kernel = model.get_layer("fc1").kernel
        for replica_value in kernel.value.values:  # every replica holds the same zeros
            w = replica_value.numpy()
            assert (w == 0).sum() == round(0.9 * w.size), (w == 0).sum()
        print("OK", tfdc.sparsity(model)["fc1"].sparsity)
    """)
    result = run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 0.9" in result.stdout


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs, message", [
    (dict(target_sparsity=1.0), "target_sparsity"),
    (dict(target_sparsity=-0.1), "target_sparsity"),
    (dict(target_sparsity={"fc1": 1.5}), "fc1"),
    (dict(target_sparsity=0.5, initial_sparsity=0.6), "initial_sparsity"),
    (dict(target_sparsity=0.5, begin_step=100, end_step=100), "begin_step"),
    (dict(target_sparsity=0.5, criterion="l1"), "criterion"),
    (dict(target_sparsity=0.5, frequency=0), "frequency"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradualPruning(**kwargs)


def _with_lora(model):
    model.get_layer("fc1").enable_lora(2)
    return model


@pytest.mark.parametrize("model_fn, callback, message", [
    (mlp, lambda: GradualPruning({"conv.*": 0.5}), "conv"),
    (mlp, lambda: GradualPruning(0.5, exclude=["nope"]), "nope"),
    (mlp, lambda: GradualPruning(0.5, exclude=[".*"]),  # said "no selected kernel of the kinds"
     r"nothing to compress: exclude=\['\.\*'\] leaves out every kernel of the model \(fc1, "),
    (mlp, lambda: GradualPruning({"flatten": 0.5}), "flatten"),
    (mlp, lambda: GradualPruning(0.5, begin_step=1000), "begin_step"),
    (lambda: keras.Sequential([keras.Input((28, 28)), keras.layers.BatchNormalization()]),
     lambda: GradualPruning(0.5), "nothing to compress"),
    (lambda: _with_lora(mlp()), lambda: GradualPruning(0.5),
     "layer 'fc1' has LoRA enabled: its kernel is computed"),
    (lambda: keras.Sequential([keras.Input((28, 28)), mlp(name="backbone")]),
     lambda: GradualPruning({"backbone": 0.5}),
     "layer 'backbone' is a nested model \\(Sequential\\): name the layers inside it "
     "\\('fc1', 'out'\\)"),
    (lambda: keras.Sequential([keras.Input((28, 28)), keras.layers.Bidirectional(
        keras.layers.LSTM(4, name="ahead"), backward_layer=keras.layers.LSTM(
            4, go_backwards=True, name="behind"), name="bi")]),
     lambda: GradualPruning({"bi": 0.5}),
     "layer 'bi' \\(Bidirectional\\) holds its kernels in the layers inside it: name those "
     "\\('forward_ahead', 'behind'\\)"),
])
def test_bad_targets_fail_at_fit(mnist_small, model_fn, callback, message):
    (x, y), _ = mnist_small
    model = model_fn()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=message):
        model.fit(x[:128], x[:128] if model_fn is not mlp else y[:128], epochs=1, batch_size=BATCH,
                  verbose=0, callbacks=[callback()])


def test_layers_of_one_name_in_two_nested_models(mnist_small, tmp_path):
    # tfdc.sparsity merged them into one row (the totals short of a kernel),
    # and neither could be named alone.
    (x, y), _ = mnist_small
    inputs = keras.Input((28, 28))
    flat = keras.layers.Flatten()(inputs)
    branches = [keras.Sequential([keras.layers.Dense(16, name="fc")], name=f"branch{i}")(flat)
                for i in (1, 2)]
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(
        keras.layers.Concatenate()(branches)))
    compile_(model).fit(x[:128], y[:128], epochs=1, verbose=0, callbacks=[
        GradualPruning({"branch2/fc": 0.5, "out": 0.25}, frequency=1)])
    report = tfdc.sparsity(model)
    assert list(report) == ["branch1/fc", "branch2/fc", "out"]
    assert [report[n].sparsity for n in report] == pytest.approx([0.0, 0.5, 0.25], abs=1e-3)
    assert report.weights == 2 * 784 * 16 + 32 * 10
    with pytest.raises(ValueError, match="target 'branch3/fc' matches no layer of the model; "
                                         "layers are: branch1, branch1/fc, branch2, branch2/fc"
                                         ) as refused:
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[GradualPruning({"branch3/fc": 0.5})])
    assert "input_layer" not in str(refused.value)  # no layer to name
    # A regular expression with "/" is matched against paths, one without
    # against names only ("branch.*" names the nested models, not their layers).
    targets = {name: s.sparsity for name, s in tfdc.sparsity(model).items()}
    model.fit(x[:128], y[:128], epochs=1, verbose=0, callbacks=[
        GradualPruning({"branch1/.*": 0.75, "out": 0.25}, frequency=1)])
    assert tfdc.sparsity(model)["branch1/fc"].sparsity == pytest.approx(0.75, abs=1e-3)
    with pytest.raises(ValueError, match=r"layer 'branch1' is a nested model"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[GradualPruning({"branch1": 0.9})])
    assert targets["branch2/fc"] == tfdc.sparsity(model)["branch2/fc"].sparsity
    # A scan and a plan key them by path too (they were refused: "give them
    # distinct names"), and the plan's settings are the callbacks' as they are.
    scan = tfdc.sensitivity(model, (x[:64], y[:64]), sparsities=[0.5, 0.9], bits=[4])
    assert scan.layers == ["branch1/fc", "branch2/fc", "out"]
    plan = tfdc.plan(model, (x[:64], y[:64]), target_bytes=6_000, sensitivity=scan)
    assert set(plan.sparsity) == set(plan.bits) == {"branch1/fc", "branch2/fc", "out"}
    from tfdc.bytecost import apply_settings
    apply_settings(model, plan.sparsity, plan.bits)
    assert tfdc.export(model, str(tmp_path / "plan.tflite")).packed_bytes == \
        plan.predicted_bytes


def test_a_frozen_layer_under_every_layer_is_told(mnist_small):
    # A frozen (pretrained) layer was pruned along with the rest, without a
    # word, though training cannot recover what that costs.
    (x, y), _ = mnist_small
    model = compile_(mlp())
    model.get_layer("fc1").trainable = False
    compile_(model)
    with pytest.warns(UserWarning, match=r"GradualPruning: frozen layers \(trainable=False\) "
                                         r"are compressed too, .*: fc1; exclude them"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[GradualPruning(0.5, frequency=1)])
    assert tfdc.sparsity(model)["fc1"].sparsity == pytest.approx(0.5, abs=1e-3)
    with warnings.catch_warnings():  # named, or excluded: the user chose
        warnings.simplefilter("error", UserWarning)
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[GradualPruning({"fc1": 0.6, "out": 0.5}, frequency=1)])
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[GradualPruning(0.7, exclude="fc1", frequency=1)])


def test_keys_that_are_not_names_and_two_prunings_in_one_fit(mnist_small):
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.raises(ValueError, match="target 1 is not a layer name or a regular expression"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0, callbacks=[GradualPruning({1: 0.5})])
    with pytest.raises(ValueError, match="two GradualPruning callbacks in one fit of model 'mlp'"):
        model.fit(x[:128], y[:128], epochs=1, verbose=0,
                  callbacks=[GradualPruning({"fc1": 0.8}), GradualPruning({"fc1": 0.3})])


def test_a_sparsity_that_rounds_to_every_weight_keeps_one():
    """0.99 of the 30 weights of a Dense(3) on 10 inputs rounds to 30: one is
    kept, not a dead layer."""
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, name="out")])
    model.compile("adam", "mse")
    x = np.random.default_rng(0).random((64, 10)).astype("float32")
    model.fit(x, x[:, :3], epochs=1, batch_size=16, verbose=0,
              callbacks=[GradualPruning({"out": 0.99}, frequency=1)])
    assert np.count_nonzero(keras.ops.convert_to_numpy(model.get_layer("out").kernel)) == 1


@pytest.mark.parametrize("counts_steps", [True, False])
def test_a_train_step_that_skips_constraints_is_told_and_the_masks_hold(mnist_small,
                                                                        counts_steps):
    """Such a step trains the pruned weights too: a warning says so, and the
    masks are applied again at each epoch's end (before: 18 % sparse where
    80 % was logged). One that never steps the optimizer has its batches
    counted as steps (an epoch's end must not read the optimizer's 0)."""
    (x, y), _ = mnist_small
    model = compile_(manual_step_mlp(counts_steps), "sgd")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0,
                            callbacks=[GradualPruning(0.8, end_step=2 * 16, frequency=4)])
    told = [str(w.message) for w in caught if "pruned weights were not zero" in str(w.message)]
    assert len(told) == 1 and "does not apply the variables' constraints" in told[0], told
    assert history.history["sparsity"][-1] == pytest.approx(0.8, abs=1e-3)
    report = tfdc.sparsity(model)
    assert report["fc1"].sparsity == pytest.approx(0.8, abs=1e-3)
    assert report["out"].sparsity == pytest.approx(0.8, abs=1e-3)


def _pruned_file(tmp_path):
    """The path of a `.keras` file of a model pruned by GradualPruning, not
    stripped: its layers' configs hold tfdc's MaskConstraint."""
    model = compile_(mlp())
    x = np.random.default_rng(0).random((64, 28, 28)).astype("float32")
    model.fit(x, np.zeros(64), epochs=1, batch_size=32, verbose=0,
              callbacks=[GradualPruning(0.5, frequency=1)])
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    return path


@pytest.mark.parametrize("imports", ["import keras, tfdc", "import tfdc, keras",
                                     "import tfdc; from tensorflow import keras"])
def test_import_tfdc_in_either_order_is_enough_to_load_a_pruned_model(tmp_path, imports):
    # `import tfdc` before Keras registered nothing: loading failed with a
    # page of "Could not interpret constraint identifier ... tfdc>MaskConstraint".
    path = _pruned_file(tmp_path)
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        {imports}
        assert "keras" not in sys.modules or "tfdc.prune" in sys.modules
        model = keras.models.load_model({path!r})
        print("OK", type(model.get_layer("fc1").kernel_constraint).__name__)
    """)
    result = run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK MaskConstraint" in result.stdout


def test_a_failed_keras_import_tried_again_still_registers(tmp_path):
    # KERAS_BACKEND naming a backend that is not installed: `import keras`
    # fails, and tfdc's hook, taken away, registered nothing when the user
    # switched the backend and imported Keras again.
    path = _pruned_file(tmp_path)
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["KERAS_BACKEND"] = "no_such_backend"
        import tfdc
        try:
            import keras
        except Exception:
            pass
        else:
            raise SystemExit("keras imported with no backend")
        for name in [m for m in sys.modules if m == "keras" or m.startswith("keras.")]:
            del sys.modules[name]
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import keras
        model = keras.models.load_model({path!r})
        print("OK", type(model.get_layer("fc1").kernel_constraint).__name__)
    """)
    result = run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK MaskConstraint" in result.stdout


def test_import_tfdc_alone_imports_no_keras():
    # `tfdc inspect` / `tfdc decode` stay quick: Keras (and TensorFlow) load
    # only when the user, or a tfdc function that needs them, imports them.
    script = "import sys, tfdc; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    result = run_python(script)
    assert result.stdout.split() == ["False", "False"], result.stderr[-3000:]


def test_sparsity_of_something_not_a_model_is_a_type_error():
    with pytest.raises(TypeError, match="expected a Keras model or layer, got int"):
        tfdc.sparsity(5)
    # An unbuilt model has no weights: not a table of 0 weights.
    unbuilt = keras.Sequential([keras.layers.Dense(4)], name="unbuilt")
    with pytest.raises(ValueError, match="model 'unbuilt' is not built yet"):
        tfdc.sparsity(unbuilt)


@pytest.mark.parametrize("order", ["backup first", "pruning first"])
def test_a_fit_resumed_by_backup_and_restore_goes_on_with_the_schedule(tmp_path, order):
    # Listed before BackupAndRestore, GradualPruning read the optimizer's
    # step before the backup restored it: the resumed fit restarted the
    # ramp from 0 and ended at 77 % instead of 90 %.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 28, 28)).astype("float32"), rng.integers(0, 10, 128)

    class Preempted(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("preempted")

    def run(*extra):
        keras.utils.set_random_seed(0)
        model = compile_(mlp())
        callbacks = [keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
                     GradualPruning(0.9, frequency=2)]
        if order == "pruning first":
            callbacks.reverse()
        history = model.fit(x, y, epochs=4, batch_size=32, verbose=0,
                            callbacks=callbacks + list(extra))
        return model, history

    with pytest.raises(RuntimeError, match="preempted"):
        run(Preempted())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, history = run()
    assert not [w for w in caught
                if "tfdc" in str(w.filename) or "GradualPruning" in str(w.message)]
    assert history.epoch == [2, 3] and int(model.optimizer.iterations) == 16
    assert history.history["sparsity"][-1] == pytest.approx(0.9, abs=0.01)
    kernel = model.get_layer("fc1").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.9, abs=0.01)


def test_a_fit_resumed_by_backup_and_restore_prunes_at_the_same_steps(tmp_path):
    # Pruning every 3 steps from step 0, 4 steps an epoch: the resumed fit
    # (from the backup of step 8) pruned at 8, 11, 14 where the whole fit
    # pruned at 9, 12, 15, so the two ended with different masks.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 28, 28)).astype("float32"), rng.integers(0, 10, 128)

    class Preempted(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.params and batch == 2 and int(self.model.optimizer.iterations) >= 8:
                raise RuntimeError("preempted")

    def run(backup, *extra):
        keras.utils.set_random_seed(0)
        model = compile_(mlp())
        callbacks = [keras.callbacks.BackupAndRestore(str(tmp_path / backup)),
                     GradualPruning(0.9, frequency=3, end_step=15)]
        history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, shuffle=False,
                            callbacks=callbacks + list(extra))
        return model, history.history["sparsity"]

    whole, sparsity = run("whole")
    with pytest.raises(RuntimeError, match="preempted"):
        run("resumed", Preempted())
    resumed, resumed_sparsity = run("resumed")
    assert resumed_sparsity == sparsity[2:]
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a == 0, b == 0)


def test_steps_are_optimizer_iterations_with_gradient_accumulation(mnist_small):
    # With gradient_accumulation_steps=4, Keras's iterations count one per 4
    # batches; the callback counted batches, 4x ahead of the
    # optimizer.iterations a user takes begin_step / end_step from.
    (x, y), _ = mnist_small
    model = compile_(mlp(), keras.optimizers.Adam(1e-3, gradient_accumulation_steps=4))
    pruning = GradualPruning(0.8, frequency=1)
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[pruning])
    assert int(model.optimizer.iterations) == 8 == pruning.step == pruning.end_step
    assert zero_mask(model, "fc1").mean() == pytest.approx(0.8, abs=1e-3)
    start = int(model.optimizer.iterations)
    again = GradualPruning(0.9, begin_step=start, end_step=start + 4, frequency=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[again])
    assert not [w for w in caught if "GradualPruning" in str(w.message)]
    assert again.step == 12 == int(model.optimizer.iterations)
    assert zero_mask(model, "fc1").mean() == pytest.approx(0.9, abs=1e-3)


def test_steps_are_optimizer_iterations_with_a_partial_last_execution(mnist_small):
    # steps_per_execution=3 over 16 batches an epoch: Keras numbers the
    # last, partial execution (1 batch) as a whole one, and the schedule ran
    # 2 steps ahead of the optimizer each epoch (a ramp that ended early). A
    # dataset of unknown length ends the same way, with no batch count.
    import tensorflow as tf
    (x, y), _ = mnist_small
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda *_: True).batch(BATCH)
    for data in ((x, y), (unknown,)):
        model = mlp()
        model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=3)
        pruning = GradualPruning(0.8, end_step=32, frequency=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # steps_per_execution over frequency=... is told
            model.fit(*data, **({"batch_size": BATCH} if len(data) == 2 else {}), epochs=2,
                      verbose=0, callbacks=[pruning])
        assert pruning.step == int(model.optimizer.iterations) == 32
        assert zero_mask(model, "fc1").mean() == pytest.approx(0.8, abs=1e-3)


def test_a_fit_that_raised_leaves_no_running_fit_behind(tmp_path):
    """A user callback's exception ended the fit without on_train_end: tfdc
    still took the model for one in training, so export kept the
    constraints on (no strip) and strip warned of a running fit."""
    from tfdc.constraints import TfdcConstraint, in_fit

    class Boom(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                raise RuntimeError("boom")

    model = compile_(mlp())
    x = np.random.default_rng(0).random((256, 28, 28)).astype("float32")
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, np.zeros(256), batch_size=32, verbose=0,
                  callbacks=[GradualPruning(0.5, frequency=1), Boom()])
    assert not in_fit(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*during a fit")
        tfdc.export(model, tmp_path / "m.tflite")
    assert not any(isinstance(v.constraint, TfdcConstraint) for v in model.weights)


def test_one_callback_in_two_running_fits_is_refused():
    # Given to a teacher's fit inside the student's, it worked on the wrong
    # model: the student ended under its target, with the teacher's numbers.
    x = np.random.default_rng(0).random((128, 28, 28)).astype("float32")
    teacher, student = compile_(mlp("teacher")), compile_(mlp("student"))
    pruning = GradualPruning(0.5, frequency=1)

    class TeacherFit(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            teacher.fit(x, np.zeros(128), batch_size=32, verbose=0, callbacks=[pruning])

    with pytest.raises(ValueError, match="this GradualPruning is in a running fit of model "
                                         "'student' already: give each fit its own callback"):
        student.fit(x, np.zeros(128), batch_size=32, verbose=0, callbacks=[pruning, TeacherFit()])
    assert pruning.model is student
    # One fit after the other: the same instance is fine.
    teacher.fit(x, np.zeros(128), batch_size=32, verbose=0, callbacks=[pruning])
    assert tfdc.sparsity(teacher).sparsity == pytest.approx(0.5, abs=0.01)


def test_the_default_end_is_the_fits_with_a_new_optimizer_and_initial_epoch():
    # A resume from a weights-only checkpoint: initial_epoch=1 with a fresh
    # optimizer; the default end_step counted the fit from step 0, an epoch
    # late (77 % at its end, with a warning). A fit of no epoch says nothing.
    x = np.random.default_rng(0).random((128, 28, 28)).astype("float32")
    model = compile_(mlp())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*before the schedule's end_step")
        model.fit(x, np.zeros(128), batch_size=32, epochs=3, initial_epoch=1, verbose=0,
                  callbacks=[GradualPruning(0.8, frequency=1)])
        assert tfdc.sparsity(model).sparsity == pytest.approx(0.8, abs=0.01)
        fresh = compile_(mlp())
        fresh.fit(x, np.zeros(128), batch_size=32, epochs=2, initial_epoch=3, verbose=0,
                  callbacks=[GradualPruning(0.8, end_step=10)])


def test_a_ramp_no_longer_than_the_frequency_is_told(mnist_small):
    # A probe's MobileNetV2: a 63-step ramp at the default frequency=100
    # pruned 80 % in one cut, without a word; chance accuracy after.
    (x, y), _ = mnist_small
    model = compile_(mlp())
    with pytest.warns(UserWarning, match=r"GradualPruning: the ramp from step 0 to end_step 3 "
                      r"is 3 steps, no longer than frequency=100: the target is reached in one "
                      r"cut.*\(frequency=1\)"):
        model.fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0,
                  callbacks=[GradualPruning(0.5, end_step=3)])
    with pytest.warns(UserWarning, match=r"StructuredPruning: the ramp .* no longer than "
                      r"frequency=100"):
        model.fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0,
                  callbacks=[tfdc.StructuredPruning({"fc1": 0.25})])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        compile_(mlp()).fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0,
                            callbacks=[GradualPruning(0.5, end_step=3, frequency=1)])


def test_pruning_a_clustered_model_is_warned_of():
    # Pruning after clustering trains the shared values apart: the packed
    # file grew back without a word (the paper prunes, then clusters).
    x = np.random.default_rng(0).normal(size=(256, 32)).astype("float32")
    y = x @ np.ones((32, 8), "float32")

    def fresh():
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, name="fc1"),
                                  keras.layers.Dense(8, name="fc2")])
        model.compile("adam", "mse")
        return model

    model = fresh()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float kernels: nothing to say
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradualPruning(0.5, frequency=1)])
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tfdc.ClusteredFineTuning(bits=3)])
    clustered = keras.models.clone_model(model)
    clustered.set_weights(model.get_weights())
    clustered.compile("adam", "mse")
    clustered_weights = clustered.get_weights()
    with pytest.warns(UserWarning, match=r"GradualPruning: kernels clustered already \(fc1 \(8 "
                      r"shared values\), fc2 \(8 shared values\)\): this fit trains every kept "
                      r"weight.*Prune first, then cluster"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradualPruning(0.8)])
    with pytest.warns(UserWarning, match=r"StructuredPruning: kernels clustered already \(\S*fc1"
                      r"\S*/kernel \(8 shared values\)\): this fit trains every kept weight"):
        clustered.fit(x, y, epochs=1, verbose=0,
                      callbacks=[tfdc.StructuredPruning({"fc1": 0.25})])
    # Not where a ClusteredFineTuning, listed before or after, clusters them
    # again in the same fit (a fit resumed from a checkpoint written while
    # clustering warned of it).
    for pruning in (GradualPruning(0.8, end_step=4, frequency=1),
                    tfdc.StructuredPruning({"fc1": 0.25}, end_step=4, frequency=1)):
        for first in (True, False):
            again = fresh()
            again.set_weights(clustered_weights)
            cft = tfdc.ClusteredFineTuning(bits=3)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                again.fit(x, y, epochs=2, verbose=0,
                          callbacks=[pruning, cft] if first else [cft, pruning])
    from tfdc.values import clustered_values
    assert clustered_values(model.get_layer("fc1").kernel.numpy()) is None  # drifted apart
    assert clustered_values(np.ones((64, 64))) is None           # an initialiser's constant
    assert clustered_values(np.eye(64)) is None                  # 64 nonzeros, 1 value
    assert clustered_values(np.tile([0.5, -0.25, 0.0, 0.125], 64)) == 3
