"""tfdc.constraints: one `tfdc.strip` for every tfdc constraint; the exporter
module no longer shadows `tfdc.export`."""

import importlib

import keras
import numpy as np
import pytest

import tfdc
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

    assert tfdc.strip(model) is model
    assert kernel.constraint is user
    assert model.get_layer("out").kernel.constraint is None
    assert not any(isinstance(v.constraint, TfdcConstraint) for v in model.variables)
    assert model.train_function is None
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_strip_warns_of_weights_restored_past_their_masks():
    # EarlyStopping(restore_best_weights=True) restores an epoch from before
    # the pruning schedule ended: silently a denser model than its masks
    # (and tfdc.export writes it so). The score is made best at epoch 1.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    score = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logs.update(score=-float(epoch)))
    stop = keras.callbacks.EarlyStopping("score", mode="max", patience=1,
                                         restore_best_weights=True)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[
        GradualPruning(0.8, end_step=8, frequency=1), score, stop])
    w = model.get_layer("fc1").kernel.numpy()
    assert (w == 0).mean() < 0.8  # restored: epoch 1 ended at step 4, mid-schedule
    with pytest.warns(UserWarning, match=r"weights that the pruning masks zero are not zero "
                      r"\(.*fc1.*\): .*EarlyStopping\(restore_best_weights=True\)"):
        tfdc.strip(model)
    np.testing.assert_array_equal(model.get_layer("fc1").kernel.numpy(), w)  # kept as they are


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
