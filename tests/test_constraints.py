"""tfdc.constraints: one `tfdc.strip` for every tfdc constraint; the exporter
module no longer shadows `tfdc.export`."""

import importlib
import re
import warnings

import keras
import numpy as np
import pytest

import tfdc
from conftest import run_python
from tfdc.cluster import ClusterConstraint, ClusteredFineTuning
from tfdc.constraints import TfdcConstraint, find_constraint
from tfdc.prune import GradualPruning, MaskConstraint


class TimesOne(keras.constraints.Constraint):
    def __call__(self, w):
        return w


def mlp():
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, name="fc1"),
                             keras.layers.Dense(3, name="out")])


def test_strip_removes_mask_and_cluster_constraints_and_keeps_the_users():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)
    model = mlp()
    user = TimesOne()
    model.get_layer("fc1").kernel.constraint = user
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[GradualPruning(0.5, frequency=1)])
    with pytest.warns(UserWarning, match=r"the constraints of fc1 \(TimesOne\) are not applied"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0,
                  callbacks=[ClusteredFineTuning(bits=2, detach_at_end=False)])
    kernel = model.get_layer("fc1").kernel
    # Cluster projection outermost, then the mask, then the user's constraint.
    assert isinstance(kernel.constraint, ClusterConstraint)
    assert isinstance(find_constraint(kernel, MaskConstraint), MaskConstraint)
    assert find_constraint(kernel, MaskConstraint).inner is user
    before = [v.numpy().copy() for v in model.weights]
    traced = model.train_function

    assert tfdc.strip(model) is model
    assert kernel.constraint is user
    assert model.get_layer("out").kernel.constraint is None
    assert not any(isinstance(v.constraint, TfdcConstraint) for v in model.variables)
    assert model.train_function is not traced  # a new one, traced without them
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def fit_restoring_epoch_1(patience, *callbacks):
    """`(model, x, y)`: `mlp()` fit on `x, y` for 4 epochs of 4 steps with
    `callbacks`, then EarlyStopping(restore_best_weights=True) listed last
    restoring the weights of epoch 1 (the score is made best there)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    score = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logs.update(score=-float(epoch)))
    stop = keras.callbacks.EarlyStopping("score", mode="max", patience=patience,
                                         restore_best_weights=True)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[*callbacks, score, stop])
    return model, x, y


def test_strip_warns_of_weights_restored_past_their_masks():
    # EarlyStopping(restore_best_weights=True) restores an epoch from before
    # the pruning schedule ended: silently a denser model than its masks
    # (and tfdc.export writes it so). The score is made best at epoch 1.
    model, _, _ = fit_restoring_epoch_1(1, GradualPruning(0.8, end_step=8, frequency=1))
    w = model.get_layer("fc1").kernel.numpy()
    assert (w == 0).mean() < 0.8  # restored: epoch 1 ended at step 4, mid-schedule
    with pytest.warns(UserWarning, match=r"weights that the pruning masks zero are not zero "
                      r"\(.*fc1.*\): .*EarlyStopping\(restore_best_weights=True\)"):
        tfdc.strip(model)
    np.testing.assert_array_equal(model.get_layer("fc1").kernel.numpy(), w)  # kept as they are


def test_export_warns_of_weights_restored_past_their_clustering(tmp_path):
    # The same with ClusteredFineTuning, EarlyStopping listed after it: the
    # restored epoch 1 is from before clustering began (epoch 3), thousands of
    # values per 2-bit kernel, and nothing said so (the file ~10x larger).
    model, x, y = fit_restoring_epoch_1(3, GradualPruning(0.5, end_step=8, frequency=1),
                                        ClusteredFineTuning(bits=2))
    w = model.get_layer("fc1").kernel.numpy()
    assert len(np.unique(w[w != 0])) > 4  # restored from before clustering
    with pytest.warns(UserWarning) as caught:
        tfdc.export(model, tmp_path / "m.tflite")
    messages = [str(w.message) for w in caught]
    assert any(re.match(r"kernels are no longer clustered \(.*fc1/kernel: \d+ values, "
                        r"clustered to 4.*\): .*EarlyStopping\(restore_best_weights", m)
               for m in messages), messages
    assert any("the pruning masks zero are not zero" in m for m in messages)  # and unpruned
    np.testing.assert_array_equal(model.get_layer("fc1").kernel.numpy(), w)
    # Clustered and left alone: no such warning.
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[ClusteredFineTuning(bits=2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tfdc.export(model, tmp_path / "m2.tflite")
    # A plain fit after clustering (no EarlyStopping anywhere): the warning
    # names that fit first, not only EarlyStopping.
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    with pytest.warns(UserWarning, match=r"no longer clustered .*changed after "
                      r"ClusteredFineTuning ended, by a fit without it"):
        tfdc.export(model, tmp_path / "m3.tflite")


def test_clustering_says_it_does_not_apply_the_users_constraint():
    # A MaxNorm(0.5) kernel came out of clustering at norm 0.64, silently.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(
        16, name="fc1", kernel_constraint=keras.constraints.MaxNorm(0.5)),
        keras.layers.Dense(3, name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match=r"ClusteredFineTuning: the constraints of fc1 "
                      r"\(MaxNorm\) are not applied while the weights are shared"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0,
                  callbacks=[ClusteredFineTuning(bits=2)])
    assert isinstance(model.get_layer("fc1").kernel.constraint, keras.constraints.MaxNorm)


def test_tfdc_export_is_the_function_and_the_module_has_its_own_name():
    # Touch the lazy attribute first, then import the module: neither shadows
    # the other (the module used to share the name and needed a callable shim).
    assert callable(tfdc.export) and tfdc.export.__name__ == "export"
    module = importlib.import_module("tfdc.exporter")
    assert module.convert is not None and module.export is tfdc.export
    assert tfdc.strip.__module__ == "tfdc.constraints"


def test_strip_of_something_not_a_model_is_a_type_error():
    """It returned None or a path as it was, as if it had stripped them."""
    for thing in (None, "model.keras"):
        with pytest.raises(TypeError, match="strip expects a Keras model or layer, got"):
            tfdc.strip(thing)


@pytest.mark.parametrize("callback", [
    lambda: GradualPruning(0.5, frequency=1), lambda: ClusteredFineTuning(bits=2),
    lambda: tfdc.StructuredPruning(0.5, frequency=1)])
@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(use_ema=True),
    lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(use_ema=True)),
    lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(use_ema=True)))])
def test_an_optimizer_that_averages_the_weights_is_refused_before_training(callback, optimizer):
    # Keras replaces the weights by their moving averages at the end of fit:
    # a kernel pruned to 80 % ended with no zero, 3-bit clustering with
    # thousands of values, without a word.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)
    model = mlp()
    model.compile(optimizer(), "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    made = callback()
    name = type(made).__name__
    with pytest.raises(ValueError, match=rf"^tfdc\.{name}: the optimizer \(\w+\) has use_ema=True"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[made])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


class Snapshot(keras.callbacks.Callback):
    """A user's callback that writes the model each epoch during fit."""

    def __init__(self, folder, action, x=None):
        super().__init__()
        self.folder, self.action, self.x, self.outputs = folder, action, x, []

    def on_epoch_end(self, epoch, logs=None):
        if self.action == "export":
            tfdc.export(self.model, self.folder / f"epoch{epoch}.tflite")  # strip=True
            self.outputs.append(self.model.predict(self.x, verbose=0))
        else:
            tfdc.strip(self.model)


def test_export_from_a_callback_during_fit_leaves_the_training_on(tmp_path):
    # It stripped the constraints in the middle of fit and cleared the train
    # function, so the next step failed ("'NoneType' object is not callable").
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 12)).astype("float32"), rng.integers(0, 3, 256)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    snapshot = Snapshot(tmp_path, "export", x[:1])
    model.fit(x, y, epochs=3, batch_size=32, verbose=0,
              callbacks=[GradualPruning(0.75, end_step=8, frequency=2),
                         ClusteredFineTuning(bits=2, detach_at_end=False), snapshot])
    kernel = model.get_layer("fc1").kernel.numpy()
    assert np.mean(kernel == 0) == 0.75 and len(np.unique(kernel[kernel != 0])) <= 4
    assert isinstance(model.get_layer("fc1").kernel.constraint, ClusterConstraint)  # not stripped
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"epoch{i}.tflite" for i in range(3)]
    interpreter = tfdc.load_interpreter(str(tmp_path / "epoch2.tflite"))
    runner = interpreter.get_signature_runner()
    (out,) = runner(**{runner.get_input_details().popitem()[0]: x[:1]}).values()
    np.testing.assert_allclose(out, snapshot.outputs[2], atol=1e-5)
    # After the fit, export strips as before.
    tfdc.export(model, tmp_path / "after.tflite")
    assert find_constraint(model.get_layer("fc1").kernel, TfdcConstraint) is None


def test_strip_from_a_callback_during_fit_does_not_break_the_fit():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 12)).astype("float32"), rng.integers(0, 3, 128)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                        callbacks=[Snapshot(None, "strip")])
    assert len(history.history["loss"]) == 2
    # In a fit with tfdc callbacks, it says what it ends.
    with pytest.warns(UserWarning, match="tfdc.strip during a fit that tfdc callbacks are "
                      "training: for the rest of it, pruned weights are no longer kept"):
        model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                  callbacks=[ClusteredFineTuning(bits=2), Snapshot(None, "strip")])


WARNINGS_AS_ERRORS = """
import keras, numpy as np, tfdc
rng = np.random.default_rng(0)
x, y = rng.random((256, 20), np.float32), rng.integers(0, 3, 256)
model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                          keras.layers.Dense(3, activation="softmax", name="out")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[
    tfdc.StructuredPruning({"fc1": 0.5}, frequency=2), tfdc.GradualPruning(0.5, frequency=2)])
model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tfdc.ClusteredFineTuning(bits=3)])
model.fit(x, y, epochs=1, batch_size=32, verbose=0)
print(tfdc.units(tfdc.shrink(model))["fc1"].kept, tfdc.export(model, "m.tflite").packed_bytes > 0)
# compress's learning-rate schedule (Keras's LearningRateScheduler read the
# rate through np.array(variable): it failed at its first epoch).
fresh = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
fresh.compile("adam", "sparse_categorical_crossentropy")
result = tfdc.compress(fresh, (x, y), (x, y), target_bytes=4000, path="c.tflite", epochs=(1, 1),
                       max_trials=1, verbose=0)
print(result.packed_bytes > 0)
"""  # (not model.save: Keras's own saving fails there, in keras.ops.convert_to_numpy)


def test_callbacks_run_where_warnings_are_errors(tmp_path):
    # `python -W error` (or pytest's filterwarnings = error; here for
    # DeprecationWarning, tfdc's own warnings aside): every fit with
    # a tfdc callback died at its first step on NumPy 2's DeprecationWarning
    # for keras.ops.convert_to_numpy of a TensorFlow variable.
    done = run_python(WARNINGS_AS_ERRORS, "-W", "error::DeprecationWarning", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-3:] == ["16", "True", "True"], done.stdout
