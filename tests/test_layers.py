"""tfdc.layers: the one registry of compressible layer kinds."""

import warnings

import keras
import numpy as np
import pytest

import tfdc
from tfdc.layers import KINDS, bias_variable, kernel_name, kernel_variables, kind_of
from tfdc.select import select_kernels


def test_every_registered_class_exists_and_kinds_do_not_overlap():
    seen = set()
    for kind in KINDS:
        assert kind.kernel_attrs
        for name in kind.classes:
            cls = getattr(keras.layers, name)  # a typo would raise here
            assert name not in seen
            seen.add(name)
            assert issubclass(cls, keras.layers.Layer)


@pytest.mark.parametrize("layer, shape, kind, attrs", [
    (keras.layers.Dense(4), (None, 3), "dense", ["kernel"]),
    (keras.layers.Conv2D(4, 3), (None, 8, 8, 2), "conv", ["kernel"]),
    (keras.layers.DepthwiseConv2D(3), (None, 8, 8, 2), "depthwise", ["kernel"]),
    (keras.layers.SeparableConv2D(4, 3), (None, 8, 8, 2), "separable",
     ["depthwise_kernel", "pointwise_kernel"]),
    (keras.layers.Conv2DTranspose(4, 3), (None, 8, 8, 2), "conv_transpose", ["kernel"]),
    (keras.layers.Embedding(10, 4), (None, 5), "embedding", ["embeddings"]),
    (keras.layers.LSTM(4), (None, 5, 3), "recurrent", ["kernel", "recurrent_kernel"]),
    (keras.layers.GRU(4), (None, 5, 3), "recurrent", ["kernel", "recurrent_kernel"]),
    (keras.layers.RNN(keras.layers.LSTMCell(4)), (None, 5, 3), "recurrent",
     ["kernel", "recurrent_kernel"]),
    (keras.layers.ConvLSTM2D(4, 3), (None, 3, 6, 6, 2), "recurrent",
     ["kernel", "recurrent_kernel"]),
])
def test_kind_and_kernels_of_each_layer(layer, shape, kind, attrs):
    layer.build(shape)
    assert kind_of(layer).name == kind
    kernels = kernel_variables(layer)
    assert [a for a, _ in kernels] == attrs
    # Kernels are the layer's own trainable weights, never its bias.
    paths = {w.path for w in layer.trainable_weights}
    assert all(v.path in paths and "bias" not in v.path for _, v in kernels)
    kind_info = kind_of(layer)
    if kind_info.out_axis is not None:  # the output units' axis has `units` entries
        assert kernels[0][1].shape[kind_info.out_axis] in (4, 2)


def test_unknown_layers_have_no_kind():
    assert kind_of(keras.layers.BatchNormalization()) is None
    assert kernel_variables(keras.layers.Flatten()) == []


def test_recurrent_kernels_are_selected_and_pruned():
    model = keras.Sequential([keras.Input((6, 4)), keras.layers.LSTM(8, name="lstm"),
                              keras.layers.Dense(3, name="out")])
    names = [kernel_name(s.layer, s.attr) for s in select_kernels(model, 0.5)]
    assert names == ["lstm/kernel", "lstm/recurrent_kernel", "out"]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6, 4)).astype("float32"), rng.integers(0, 3, 64)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[tfdc.GradualPruning({"lstm": 0.75}, frequency=1)])
    report = tfdc.sparsity(model)
    assert report["lstm/kernel"].sparsity == pytest.approx(0.75, abs=0.01)
    assert report["lstm/recurrent_kernel"].sparsity == pytest.approx(0.75, abs=0.01)
    assert report["out"].sparsity == 0.0
    # Clustered, its bias ends on binary16 values as a Dense's does (it
    # stayed float32: the bias is on the cell).
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[tfdc.ClusteredFineTuning({"lstm": 3})])
    bias = model.get_layer("lstm").cell.bias.numpy()
    assert np.array_equal(bias.astype(np.float16).astype(np.float32), bias)


def test_a_nested_models_layers_come_in_its_own_order():
    # Keras's recursive `_flatten_layers` walks children with `extendleft`:
    # tables and warnings listed a nested model's layers back to front.
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="a"),
                              keras.layers.Dense(5, name="b"), keras.layers.Dense(4, name="c")],
                             name="inner")
    x = keras.Input((8,))
    model = keras.Model(x, keras.layers.Dense(2, name="out")(inner(x)))
    names = [kernel_name(s.layer, s.attr) for s in select_kernels(model, 0.5)]
    assert names == ["a", "b", "c", "out"]
    assert list(tfdc.sparsity(model)) == names


@pytest.mark.parametrize("layer, shape, bias", [
    (keras.layers.Dense(4), (None, 3), "bias"),
    (keras.layers.Dense(4, use_bias=False), (None, 3), None),
    (keras.layers.GRU(4), (None, 5, 3), "cell.bias"),
    (keras.layers.Embedding(10, 4), (None, 5), None),
    (keras.layers.LayerNormalization(), (None, 3), None),
])
def test_bias_variable(layer, shape, bias):
    layer.build(shape)
    owner = layer.cell if bias == "cell.bias" else layer
    assert bias_variable(layer) is (None if bias is None else owner.bias)


@pytest.mark.parametrize("layer, shape", [
    (keras.layers.Dense(4), (None, 3)),
    (keras.layers.DepthwiseConv2D(3), (None, 8, 8, 2)),
    (keras.layers.SeparableConv2D(4, 3), (None, 8, 8, 2)),
    (keras.layers.Embedding(10, 4), (None, 5)),
    (keras.layers.LSTM(4), (None, 5, 3)),
])
def test_constraint_slot_is_what_the_layer_config_saves(layer, shape):
    from tfdc.layers import constraint_slot
    layer.build(shape)
    for attr, variable in kernel_variables(layer):
        owner, name = constraint_slot(layer, attr)
        marker = keras.constraints.NonNeg()
        setattr(owner, name, marker)
        config = layer.get_config()
        saved = [key for key, value in config.items()
                 if isinstance(value, dict) and value.get("class_name") == "NonNeg"]
        assert len(saved) == 1, (attr, name)  # exactly this kernel's constraint entry
        setattr(owner, name, None)


@pytest.mark.parametrize("layer, shape, attrs", [
    (keras.layers.Dense(3), (None, 4), ["bias"]),
    (keras.layers.BatchNormalization(), (None, 4), ["gamma", "beta"]),
])
def test_constraint_slot_of_a_bias_or_normalization_weight(layer, shape, attrs):
    # Where StructuredPruning keeps a removed unit's masks, so that a
    # .keras file saves them.
    from tfdc.layers import constraint_slot
    layer.build(shape)
    for attr in attrs:
        owner, name = constraint_slot(layer, attr)
        assert owner is layer and name == f"{attr}_constraint"
        setattr(owner, name, keras.constraints.NonNeg())
        assert layer.get_config()[name]["class_name"] == "NonNeg"
        setattr(owner, name, None)
    assert constraint_slot(keras.layers.Flatten(), "bias") is None

@pytest.mark.parametrize("layer, rank, role", [
    (keras.layers.BatchNormalization(), 4, "normalization"),
    (keras.layers.BatchNormalization(axis=1), 4, None),  # not the channel axis
    (keras.layers.Add(), 4, "merge"),
    (keras.layers.ReLU(6.0), 4, "channelwise"),
    (keras.layers.MaxPooling2D(), 4, "channelwise"),
    (keras.layers.GlobalAveragePooling2D(), 4, "channelwise"),
    (keras.layers.MaxPooling2D(data_format="channels_first"), 4, None),
    (keras.layers.Concatenate(), 4, None),
    (keras.layers.GaussianNoise(0.1), 2, None),  # turns a zero channel nonzero in training
    (keras.layers.Dense(3), 2, None),
])
def test_channel_role(layer, rank, role):
    from tfdc.layers import channel_role
    assert channel_role(layer, rank) == role


@pytest.mark.parametrize("fn, zero", [
    (None, True), (keras.activations.relu, True), (keras.activations.relu6, True),
    (keras.activations.tanh, True), (keras.activations.gelu, True),
    (keras.activations.sigmoid, False), (keras.activations.softplus, False),
    (keras.activations.softmax, False), (keras.layers.ReLU(), True),
    (keras.layers.ReLU(negative_slope=0.1, threshold=1.0), False),  # maps 0 to 0.1
    (keras.layers.Activation("swish"), True), (keras.layers.Activation("hard_sigmoid"), False),
])
def test_zero_preserving_activation(fn, zero):
    from tfdc.layers import zero_preserving_activation
    assert zero_preserving_activation(fn) is zero


def test_shrinkable_kinds_name_their_unit_count():
    for kind in KINDS:
        if kind.units_key:
            layer_class = getattr(keras.layers, kind.classes[0])
            assert kind.units_key in layer_class.__init__.__code__.co_varnames
            assert kind.out_axis is not None and kind.in_axis is not None


def test_models_with_a_lambda_layer_copy_without_unsafe_deserialization():
    """Keras's safe mode refuses to load a Python lambda back from a config,
    so clone_model alone cannot copy these models; every copy tfdc makes
    (compress's training copies, a distillation teacher, a folded model)
    goes through copy_layer, which keeps the function object."""
    import re
    import textwrap

    from tfdc.compressor import _copy
    from tfdc.distill import Distiller
    from tfdc.layers import copy_layer
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = keras.layers.Lambda(lambda t: 2.0 * t - 1.0, name="scale")(inputs)
    h = keras.layers.Dense(8, use_bias=False, name="fc1")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Lambda(lambda t, k: t * k, arguments={"k": 0.5}, name="half")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc2")(h))
    model.get_layer("bn").set_weights([np.full(8, 1.5, "float32"), np.full(8, 0.1, "float32"),
                                       np.full(8, 0.2, "float32"), np.full(8, 2.0, "float32")])
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    with pytest.raises(Exception, match="safe_mode"):
        keras.models.clone_model(model)  # what copy_layer works around
    for copy in (_copy(model), Distiller.copy_of(model), tfdc.fold_batchnorm(model)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(x, training=False)),
                                   expected, rtol=1e-5, atol=1e-6)
        assert copy.get_layer("half").arguments == {"k": 0.5}
    # The docstring's example prints what its comment says.
    block = textwrap.dedent(re.search(r"```python\n(.*?)```", copy_layer.__doc__,
                                      re.S).group(1))
    names = {}
    exec(block.replace("print(", "names['printed'] = ("), {"names": names})
    assert str(names["printed"]) == re.search(r"# (.*)", block).group(1).strip()


@keras.saving.register_keras_serializable("tfdc_tests")
class _Subclassed(keras.Model):
    """A subclassed model whose config rebuilds it."""

    def __init__(self, units=5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.fc1 = keras.layers.Dense(units, activation="relu", name="fc1")
        self.fc2 = keras.layers.Dense(3, name="fc2")

    def call(self, x):
        return self.fc2(self.fc1(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class _NoConfig(keras.Model):
    """A subclassed model whose __init__ takes none of its config's keys."""

    def __init__(self):
        super().__init__()
        self.fc = keras.layers.Dense(2)

    def call(self, x):
        return self.fc(x)


def test_copy_model_copies_sequential_functional_and_subclassed_models():
    import re
    import textwrap

    from tfdc.layers import copy_model, is_subclassed
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    inputs = keras.Input((6,))
    functional = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    sequential = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    subclassed = _Subclassed(units=7)
    subclassed(x)  # built by its first call
    assert [is_subclassed(m) for m in (functional, sequential, subclassed)] == [False, False,
                                                                                True]
    for model in (functional, sequential, subclassed):
        copy = copy_model(model)
        assert type(copy) is type(model)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(copy(x)),
                                      keras.ops.convert_to_numpy(model(x)))
        mine = {id(v) for v in copy.weights}
        assert mine and not mine & {id(v) for v in model.weights}
        # Its layers named as the original's (a subclassed model's copy had
        # layers Keras named afresh, "dense_4" for "dense").
        assert [layer.name for layer in copy.layers if layer.weights] == \
            [layer.name for layer in model.layers if layer.weights]
        # And its inputs (a Sequential model's copy had "input_layer" for
        # "keras_tensor": x in a dict keyed by the original's, which compress
        # checked, failed in the copy's training).
        assert [x.name for x in getattr(copy, "inputs", None) or []] == \
            [x.name for x in getattr(model, "inputs", None) or []]
    assert copy_model(subclassed).units == 7
    no_config = _NoConfig()
    no_config(x)
    with pytest.raises(ValueError, match=r"(?s)cannot copy model '.*' \(_NoConfig\): .*\. A "
                       r"subclassed model is copied from its config: give it a get_config\(\) "
                       r"whose keys its __init__ takes, or build it as a functional model"):
        copy_model(no_config)
    # The docstring's example prints what its comment says.
    block = textwrap.dedent(re.search(r"```python\n(.*?)```", copy_model.__doc__,
                                      re.S).group(1))
    printed = {}
    exec(block.replace("print(", "printed['value'] = ("), {"printed": printed})
    assert str(printed["value"]) == re.search(r"# (.*)", block).group(1).strip()


def test_copies_keep_an_adapted_normalization():
    # set_weights sets an adapted Normalization's variables, not the
    # constants it computes with: copy_model's copy (what tfdc.compress
    # trains), fold_batchnorm's and shrink's normalized with mean 0 and
    # variance 1, and compress scored a file 8.7 points worse than the
    # float model as within its budget.
    from tfdc.layers import copy_model
    x = np.random.default_rng(0).random((64, 6)).astype("float32") * 100 + 50
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(x)
    model = keras.Sequential([keras.Input((6,)), norm, keras.layers.Dense(8, name="fc"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dense(3, name="out")])
    expected = model.predict(x, verbose=0)
    for copy in (copy_model(model), tfdc.fold_batchnorm(model), tfdc.shrink(model)):
        np.testing.assert_allclose(copy.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_weights_no_kind_covers_are_named_when_every_layer_is_asked_for():
    # A stack of cells is no registered kind: its kernels stayed dense and
    # unclustered without a word.
    model = keras.Sequential([keras.Input((6, 8)), keras.layers.RNN(
        [keras.layers.GRUCell(16, name="a"), keras.layers.GRUCell(16, name="b")], name="rnn"),
        keras.layers.Dense(3, name="out")])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6, 8)).astype("float32"), rng.integers(0, 3, 64)
    model.compile("adam", "sparse_categorical_crossentropy")
    for callback in (tfdc.GradualPruning(0.5, frequency=1), tfdc.ClusteredFineTuning()):
        with pytest.warns(UserWarning, match=rf"{type(callback).__name__}: left as they are: "
                          r"rnn/stacked_rnn_cells/a/recurrent_kernel \(GRUCell, 768 weights\), "
                          r"rnn/stacked_rnn_cells/b/kernel \(GRUCell, 768 weights\), .*, "
                          r"rnn/stacked_rnn_cells/a/kernel \(GRUCell, 384 weights\): a cell "
                          r"of a stack, RNN\(\[cell, ...\]\): tfdc compresses an RNN of one "
                          r"cell, so stack RNN layers instead"):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    assert np.count_nonzero(model.get_layer("rnn").cell.cells[0].kernel.numpy()) == 8 * 48
    # Named targets, or the layers excluded: the user chose, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for callback in (tfdc.GradualPruning({"out": 0.5}, frequency=1),
                         tfdc.GradualPruning(0.5, exclude=["a", "b"], frequency=1)):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])


def test_the_copyable_check_leaves_pythons_random_stream_as_it_was():
    # Building layers to check them drew initializer seeds from Python's
    # random: a seeded tfdc demo then gave another file (16,152 B, 2.72 %
    # instead of 16,115 B, 2.68 %).
    import random

    from tfdc.layers import check_copyable
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(2, name="out")])
    random.seed(7)
    expected = random.random()
    random.seed(7)
    check_copyable(model, "this test")
    assert random.random() == expected
