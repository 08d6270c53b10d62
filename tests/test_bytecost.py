"""tfdc.bytecost: the byte-cost model is the packer's real size, exactly."""

import os
import warnings

import keras
import numpy as np
import pytest

import tfdc
from tfdc.bytecost import ByteCost, apply_settings, compress_kernel, restore_settings
from tfdc.cluster import ClusteredFineTuning

from conftest import mlp as mlp_of


def mlp():
    return mlp_of(96, 48)


def small_cnn():
    """Conv, depthwise, pointwise and dense kernels: four TFLite layouts."""
    x = inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu", name="conv")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    y = keras.layers.Conv2D(12, 1, name="pw")(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10, activation="softmax", name="out")(x)
    return keras.Model(inp, x)


def rescaled_cnn():
    """Raw pixels scaled in the graph, before a Conv and (through a Lambda)
    a Dense: the converter multiplies each kernel by the factor."""
    return keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255, name="scale"),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv"),
        keras.layers.Flatten(), keras.layers.Lambda(lambda t: t / -3.0, name="div"),
        keras.layers.Dense(10, activation="softmax", name="out")])


def trained(model, data, epochs=1):
    (x, y), _ = data
    if len(model.input_shape) == 4:
        x = x[..., None]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.mark.parametrize("make,settings,options", [
    (mlp, ({"fc1": 0.92, "fc2": 0.8, "fc3": 0.5}, {"fc1": 4, "fc2": 5, "fc3": 6}), {}),
    (mlp, ({"fc1": 0.6}, {"fc2": 3}), {"batch_size": 1}),
    (small_cnn, ({"conv": 0.5, "dw": 0.3, "pw": 0.7, "out": 0.5},
                 {"conv": 6, "dw": 8, "pw": 4, "out": 5}), {}),
    (rescaled_cnn, ({"conv": 0.5, "out": 0.9}, {"conv": 5, "out": 3}), {}),
])
def test_total_is_the_exported_file_size(mnist_small, tmp_path, make, settings, options):
    """Apply the settings to the Keras weights, export with tfdc.export: the
    file has exactly the bytes ByteCost predicted."""
    model = trained(make(), mnist_small)
    cost = ByteCost(model, **options)
    assert set(cost.layers) == {layer.name for layer in model.layers
                                if getattr(layer, "kernel", None) is not None}
    predicted = cost.total(*settings)
    apply_settings(model, *settings)
    path = str(tmp_path / "m.tflite")
    report = tfdc.export(model, path, **options)
    assert os.path.getsize(path) == report.packed_bytes == predicted


def test_models_of_equal_weights_built_apart_are_priced_apart(tmp_path):
    """A second model with the first one's weights, built apart (its input
    is another keras_tensor_N, a name the file keeps), got the first one's
    cached conversion: 4 B off its exported size."""
    from tfdc.models import lenet_300_100
    first = lenet_300_100()
    ByteCost(first)
    second = lenet_300_100()
    second.set_weights(first.get_weights())
    settings = ({"fc1": 0.9}, {"fc1": 5, "fc2": 5})
    predicted = ByteCost(second).total(*settings)
    apply_settings(second, *settings)
    assert tfdc.export(second, tmp_path / "m.tflite").packed_bytes == predicted


def test_layer_cost_is_its_records(mnist_small):
    """layer() is the record the packer writes for that kernel: its payload
    exactly, and descriptor plus tables (those it shares with earlier
    records count once in the file)."""
    model = trained(mlp(), mnist_small)
    cost = ByteCost(model)
    sparsity, bits = {"fc1": 0.9, "fc2": 0.9}, {"fc1": 5, "fc2": 5}
    packed, info = cost.pack(sparsity, bits)
    assert len(packed) == cost.total(sparsity, bits)
    by_name = {}
    for record in info.records:
        for name in ("fc1", "fc2"):
            if any(name in t for t in record.tensor_names) and record.shape in (
                    (96, 784), (48, 96)):
                by_name[name] = record
    assert set(by_name) == {"fc1", "fc2"}
    for name, record in by_name.items():
        layer = cost.layer(name, sparsity[name], bits[name])
        assert layer >= record.payload_bytes + record.descriptor_bytes
        assert layer - record.payload_bytes < 200  # descriptor, tables, codebook
        assert record.nnz == round((1 - sparsity[name]) * cost.weights[name])
        assert 2 < record.codebook_size <= 2 ** bits[name]
    # More pruning, fewer bits: fewer bytes.
    assert cost.layer("fc1", 0.95, 5) < cost.layer("fc1", 0.9, 5) < cost.layer("fc1", 0.5, 5)
    assert cost.layer("fc1", 0.9, 3) < cost.layer("fc1", 0.9, 5) < cost.layer("fc1", 0.9, 8)


def test_compress_kernel_is_what_clustered_fine_tuning_writes():
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.1, (64, 32)).astype("float32")
    pruned = compress_kernel(w, 0.75)
    assert int((pruned == 0).sum()) == round(0.75 * w.size)
    kept = pruned != 0
    np.testing.assert_array_equal(pruned[kept], w[kept])
    assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, name="d")])
    model.get_layer("d").kernel.assign(pruned)
    ClusteredFineTuning(bits=3).quantize(model)
    np.testing.assert_array_equal(model.get_layer("d").kernel.numpy(),
                                  compress_kernel(w, 0.75, 3))
    assert np.unique(compress_kernel(w, 0.75, 3)[kept]).size == 8


def test_apply_and_restore(mnist_small):
    model = trained(mlp(), mnist_small)
    before = [v.numpy().copy() for v in model.weights]
    saved = apply_settings(model, 0.9, 4)
    assert (model.get_layer("fc1").kernel.numpy() == 0).mean() == pytest.approx(0.9, abs=1e-3)
    restore_settings(model, saved)
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_bad_input_is_named(mnist_small):
    model = trained(mlp(), mnist_small)
    cost = ByteCost(model)
    with pytest.raises(ValueError, match="no plannable layer named 'fc9'"):
        cost.layer("fc9", 0.5, 5)
    with pytest.raises(ValueError, match="sparsity: no plannable layer named 'nope'"):
        cost.total({"nope": 0.5}, None)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1.0"):
        cost.layer("fc1", 1.0, 5)
    with pytest.raises(ValueError, match="layer '\\(compress_kernel\\)': bits must be in 1..8"):
        cost.layer("fc1", 0.5, 9)
    with pytest.raises(ValueError, match="is not built"):
        ByteCost(keras.Sequential([keras.layers.Dense(3)]))


def test_kernel_the_converter_alters_is_left_out(mnist_small):
    """An unfolded BatchNormalization is folded into the conv by the
    converter: that kernel's values are not in the file, so it is left out
    with a warning that says what to do."""
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, activation="softmax", name="out")(x)
    model = trained(keras.Model(inp, x), mnist_small)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cost = ByteCost(model)
    assert cost.layers == ["out"] and cost.missing == ["conv"]
    assert any("'conv'" in str(w.message) and "tfdc.fold_batchnorm" in str(w.message)
               for w in caught)


def test_a_folded_factor_with_an_offset_and_a_per_feature_normalization(tmp_path):
    """A Rescaling before a Dense (the converter's kernel is W * 1/255) was
    "left as it is": plans could not prune the first layer and the smallest
    reachable file was 40x too large. Its offset folds into the bias, which
    then moves with the weights: the total is off by a few bytes, not more.
    A per-feature Normalization stays an op of its own: priced exactly."""
    def model(first):
        return keras.Sequential([keras.Input((64,)), first,
                                 keras.layers.Dense(32, name="fc1"),
                                 keras.layers.Dense(10, name="fc2")])

    settings = ({"fc1": 0.8, "fc2": 0.5}, {"fc1": 3, "fc2": 4})
    offset = model(keras.layers.Rescaling(2.0, offset=-1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = ByteCost(offset)
    assert cost.layers == ["fc1", "fc2"]
    predicted = cost.total(*settings)
    apply_settings(offset, *settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "the converter changed the values" either
        exported = tfdc.export(offset, tmp_path / "m.tflite").packed_bytes
    assert predicted != exported and abs(predicted - exported) <= 4 * 32  # 32 bias floats
    variance = np.linspace(1.0, 4.0, 64, dtype=np.float32)
    per_feature = model(keras.layers.Normalization(mean=np.zeros(64, np.float32),
                                                   variance=variance))
    cost = ByteCost(per_feature)
    assert cost.layers == ["fc1", "fc2"]
    predicted = cost.total(*settings)
    apply_settings(per_feature, *settings)
    assert tfdc.export(per_feature, tmp_path / "n.tflite").packed_bytes == predicted


@pytest.mark.parametrize("cell", [keras.layers.LSTM, keras.layers.GRU])
def test_recurrent_kernels_are_priced_exactly(tmp_path, cell):
    """A recurrent layer's kernel and recurrent kernel (several buffers
    once converted) are planned as one layer, and priced exactly."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 8)), cell(24, name="rnn"),
                              keras.layers.Dense(5, name="out")])
    cost = ByteCost(model, batch_size=1)
    assert cost.layers == ["rnn", "out"] and not cost.missing
    gates = 4 if cell is keras.layers.LSTM else 3
    assert cost.weights["rnn"] == (8 + 24) * 24 * gates   # kernel + recurrent kernel
    settings = ({"rnn": 0.7, "out": 0.5}, {"rnn": 4, "out": 5})
    predicted = cost.total(*settings)
    apply_settings(model, *settings)
    assert tfdc.export(model, str(tmp_path / "r.tflite"), batch_size=1).packed_bytes == predicted
