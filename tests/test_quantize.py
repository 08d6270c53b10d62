"""Tests of tfdc.quantize: full-integer export that keeps the codebooks.

Real converter, real LiteRT interpreter, real packer and decoder; the models
are small with synthetic clustered kernels (no training) to stay fast.
"""

import os
import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import tfdc  # noqa: E402
from tfdc.exporter import convert  # noqa: E402
from tfdc.quantize import (FloatOpsWarning, configure_full_integer, float_ops,  # noqa: E402
                           kernel_codes, snap_to_int8_grid)
from tfdc.runtime import interpreter_class  # noqa: E402


def _clustered(shape, rng, values, kept=0.3):
    """A pruned kernel whose nonzeros take `values` distinct shared values,
    with output channels (last axis) of different ranges as in trained
    kernels: channel c uses only the codebook's n_c smallest magnitudes."""
    codebook = rng.normal(0, 0.2, size=values).astype(np.float32)
    codebook = codebook[np.argsort(np.abs(codebook))]
    channels = shape[-1]
    used = np.linspace(values // 4, values, channels).astype(int)
    used[-1] = values  # every shared value occurs somewhere
    picks = (rng.random(shape) * used).astype(int)  # broadcasts over the last axis
    w = codebook[picks]
    w[rng.random(shape) > kept] = 0.0
    w[(0,) * (len(shape) - 1) + (slice(None),)] = codebook[used - 1]  # each channel's max
    return w


def _model(rng):
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="fc2"),
    ])
    for layer, values in (("conv", 16), ("fc1", 32), ("fc2", 8)):
        kernel, bias = model.get_layer(layer).get_weights()
        # Each output channel's largest |value| differs, so per-channel
        # scales differ and would give each shared value a code per channel.
        model.get_layer(layer).set_weights([_clustered(kernel.shape, rng, values),
                                            rng.normal(0, 0.1, bias.shape)])
    return model


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    model = _model(rng)
    x = rng.random((64, 12, 12, 1), dtype=np.float32)

    def rep():
        for i in range(32):
            yield [x[i:i + 1]]

    return model, x, rep


def _run(tflite, x):
    interpreter = interpreter_class()(model_content=tflite)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def test_full_integer_export_keeps_every_codebook(setup, tmp_path):
    model, x, rep = setup
    path = tmp_path / "int8.tflite"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*int8.*")
        report = tfdc.export(model, path, representative_dataset=rep, strip=False)
    packed = path.read_bytes()
    assert tfdc.is_packed(packed) and report.packed_bytes == len(packed)
    decoded = tfdc.decode(packed)

    # Full integer: int8 weights with ONE scale each, int8 activations,
    # int32 biases.
    kernels = kernel_codes(model, decoded)
    assert [k.name for k in kernels] == ["conv", "fc1", "fc2"]
    for k in kernels:
        assert k.scales == 1, k
        assert k.codes <= k.values, k
        assert k.nonzero_codes <= k.nonzero_values, k
    details = interpreter_class()(model_content=decoded).get_tensor_details()
    quantized = [d["dtype"] for d in details if len(d["quantization_parameters"]["scales"])]
    assert quantized.count(np.int32) == 3  # the biases
    # Only the model's float input and output (and nothing between) are float.
    assert [d["dtype"] for d in details].count(np.float32) == 2
    assert float_ops(decoded) == {}
    assert quantized.count(np.int8) >= 3 + 4  # kernels + input, layer outputs

    # The decoded file computes exactly what the plain conversion does.
    plain = convert(model, representative_dataset=rep)
    out = _run(decoded, x)
    np.testing.assert_array_equal(out.view(np.uint32), _run(plain, x).view(np.uint32))
    assert np.abs(out).sum() > 0



def test_an_embedding_table_with_its_own_zero_point_is_found(tmp_path):
    """The converter gives an Embedding's int8 table a zero point of its own;
    read as 0, no int8 tensor matched the table, and export warned that its
    sharing was "partly lost" when every value kept one code."""
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((7,), dtype="int32"),
                              keras.layers.Embedding(300, 16, name="emb"),
                              keras.layers.Flatten(), keras.layers.Dense(2, name="fc")])
    table = rng.normal(0, 0.05, 16).astype(np.float32)[rng.integers(0, 16, (300, 16))]
    model.get_layer("emb").set_weights([table])
    tokens = rng.integers(0, 300, (32, 7))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*int8.*")
        tfdc.export(model, tmp_path / "text.tflite", batch_size=1,
                    representative_dataset=lambda: ([tokens[i:i + 1]] for i in range(32)))
    (emb,) = [k for k in kernel_codes(model, tfdc.decode((tmp_path / "text.tflite").read_bytes()))
              if k.name == "emb"]
    assert emb.values == 16 and emb.codes == 16

def test_per_channel_scales_multiply_codes_and_export_warns(setup, tmp_path):
    model, x, rep = setup
    with pytest.warns(UserWarning, match=r"fc1 \(33 values -> \d+ codes\)"):
        tfdc.export(model, tmp_path / "pc.tflite", representative_dataset=rep, strip=False,
                    configure=lambda c: configure_full_integer(c, rep, per_channel=True))
    # A warning, not a failure: the file is written and decodes.
    decoded = tfdc.decode((tmp_path / "pc.tflite").read_bytes())
    by_name = {k.name: k for k in kernel_codes(model, decoded)}
    assert by_name["fc1"].scales == 32 and by_name["fc1"].codes > 2 * by_name["fc1"].values


def test_float_model_has_no_int8_kernels(setup):
    model, _, _ = setup
    kernels = kernel_codes(model, convert(model))
    assert [k.codes for k in kernels] == [None, None, None]
    # Shared values + the pruned zero, counted on the Keras kernels.
    assert [k.values for k in kernels] == [np.unique(model.get_layer(name).get_weights()[0]).size
                                           for name in ("conv", "fc1", "fc2")]
    assert kernels[1].values == 33 and kernels[1].nonzero_values == 32


def test_snap_to_int8_grid_makes_the_integer_weights_exact(setup):
    model, _, rep = setup
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    before = {layer.name: layer.get_weights()[0] for layer in clone.layers if layer.weights}
    shifts = snap_to_int8_grid(clone)
    assert set(shifts) == {"conv", "fc1", "fc2"}
    tflite = convert(clone, representative_dataset=rep)
    from tfdc.quantize import _dequantize, _int8_constants
    constants = {name: _dequantize(c, s, z, a) for name, c, s, z, a, _ in _int8_constants(tflite)}
    for k in kernel_codes(clone, tflite):
        after = clone.get_layer(k.name).get_weights()[0]
        # Masks stay exact, and every value moved by at most one grid step.
        np.testing.assert_array_equal(after != 0, before[k.name] != 0)
        step = np.abs(before[k.name]).max() / 127
        assert shifts[k.name] <= step * 1.0001
        # The int8 tensor now holds the Keras values themselves (as a
        # multiset; the converter transposes kernels).
        stored = np.sort(constants[k.tensor], axis=None)
        np.testing.assert_allclose(stored, np.sort(after, axis=None), rtol=0, atol=step * 1e-4)
        assert k.codes == np.unique(after).size


def test_tflite_error_of_integer_io_matches_float_io(tmp_path):
    # One sigmoid unit, full-integer with int8 input and output: the images
    # are quantized and the outputs dequantized before the 0.5 threshold, so
    # the error equals the float-I/O conversion's (the same int8 graph).
    import tensorflow as tf

    from tfdc.demo import tflite_error, tflite_mistakes
    rng = np.random.default_rng(3)
    x = rng.random((300, 12), dtype=np.float32)
    y = (x[:, :6].sum(1) > x[:, 6:].sum(1)).astype(np.int64)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)

    def rep():
        for i in range(64):
            yield [x[i:i + 1]]

    files = {}
    for io in ("float", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        configure_full_integer(converter, rep)
        if io == "int8":
            converter.inference_input_type = converter.inference_output_type = tf.int8
        with warnings.catch_warnings():  # "Statistics for quantized inputs were expected":
            warnings.simplefilter("ignore", UserWarning)  # the calibration gives them
            files[io] = converter.convert()
    out = interpreter_class()(model_content=files["int8"]).get_output_details()[0]
    assert out["dtype"] == np.int8
    wrong = tflite_mistakes(files["int8"], x, y, plain=True)
    np.testing.assert_array_equal(wrong, tflite_mistakes(files["float"], x, y, plain=True))
    keras_error = float(np.mean((model.predict(x, verbose=0)[:, 0] > 0.5) != y))
    assert abs(tflite_error(files["int8"], x, y, plain=True) - keras_error) < 0.02
    assert keras_error < 0.1


@pytest.mark.parametrize("built", ["list", "dict"])
def test_calibration_samples_as_lists_follow_the_keras_input_order(tmp_path, built):
    """Two inputs whose names sort against the model's order: a list sample
    is in Keras's order (as `model.predict` takes a list), a dict sample is
    keyed by name; both calibrate. (The converter feeds a list in its sorted
    names' order: a list sample once failed, resizing the wrong input.)"""
    from tfdc.demo import tflite_outputs
    rng = np.random.default_rng(0)
    z, a = keras.Input((6,), name="z"), keras.Input((3,), name="a")
    out = keras.layers.Dense(8, name="fc")(keras.layers.Concatenate()([z, a]))
    model = keras.Model([z, a] if built == "list" else {"z": z, "a": a}, out)
    x = {"z": rng.random((64, 6), np.float32), "a": rng.random((64, 3), np.float32)}
    order = ["z", "a"] if built == "list" else ["a", "z"]   # a dict model: sorted keys
    reference = model.predict(x, verbose=0)
    for sample in (lambda i: [x[k][i:i + 1] for k in order],
                   lambda i: {k: v[i:i + 1] for k, v in x.items()}):
        path = tmp_path / "two.tflite"
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            tfdc.export(model, path, representative_dataset=lambda: (sample(i) for i in range(64)))
        # The converter's calibration of two inputs made a tf.lite.Interpreter:
        # its deprecation notice showed 8 times in a compress.
        assert not [w for w in seen if "tf.lite.Interpreter is deprecated" in str(w.message)]
        packed = tflite_outputs(str(path), x)
        # int8 activations: within a few quantization steps of the float model.
        assert np.abs(packed - reference).max() < 0.05 * np.abs(reference).max()


def test_float_ops_in_a_full_integer_file_are_named(tmp_path):
    # LayerNormalization has no int8 kernel for its NEG: the converter runs
    # it in float between a DEQUANTIZE and a QUANTIZE, which an NPU
    # delegate cannot take; that went without a word.
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, name="fc1"),
                              keras.layers.LayerNormalization(name="norm"),
                              keras.layers.Dense(4, name="fc2")])
    x = np.random.default_rng(0).random((32, 16)).astype(np.float32)

    def rep():
        return ([x[i:i + 1]] for i in range(32))
    with pytest.warns(FloatOpsWarning, match=r"full-integer export: 1 op\(s\) compute in float32 "
                      r"\(NEG\): .* an NPU delegate .*FloatOpsWarning\) makes it an error"):
        plain = convert(model, representative_dataset=rep)
    assert float_ops(plain) == {"NEG": 1}  # not the DEQUANTIZE that bridges into it
    # The way it gave to make it an error, TensorFlow's int8-only op set,
    # converts the NEG in float all the same: the warning says so.
    import tensorflow as tf
    int8_only = convert(model, representative_dataset=rep, configure=lambda c: setattr(
        c.target_spec, "supported_ops", [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]))
    assert float_ops(int8_only) == {"NEG": 1}
    # Its category made an error: raised before the file is written.
    path = tmp_path / "npu.tflite"
    path.write_bytes(b"the user's file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", tfdc.quantize.FloatOpsWarning)
        with pytest.raises(FloatOpsWarning, match="NEG"):
            tfdc.export(model, path, representative_dataset=rep)
    assert path.read_bytes() == b"the user's file" and os.listdir(tmp_path) == ["npu.tflite"]


def test_a_recurrent_loop_is_refused_not_a_crash(tmp_path):
    """TensorFlow's converter kills the process (SIGSEGV) calibrating an
    LSTM / GRU / SimpleRNN loop: export and compress refuse it first, naming
    the layers and the way out (unroll=True), which converts."""
    x = np.random.default_rng(0).normal(size=(16, 6, 4)).astype(np.float32)

    def rep():
        return ([x[i:i + 1]] for i in range(16))

    def model(unroll):
        inputs = keras.Input((6, 4))
        h = keras.layers.Bidirectional(keras.layers.GRU(4, unroll=unroll), name="bi")(inputs)
        h = keras.layers.Concatenate()(
            [h, keras.layers.LSTM(4, unroll=unroll, name="rnn")(inputs)])
        return keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    looped = model(False)
    with pytest.raises(ValueError, match=r"full-integer export of the recurrent layers "
                       r"bi, rnn: TensorFlow's converter crashes .* "
                       r"build them with unroll=True"):
        tfdc.export(looped, tmp_path / "loop.tflite", representative_dataset=rep, batch_size=1)
    with pytest.raises(ValueError, match="full-integer export of the recurrent layers"):
        tfdc.compress(looped, (x, np.zeros(16, np.int64)), (x, np.zeros(16, np.int64)),
                      target_bytes=1000, path=tmp_path / "c.tflite", full_integer=True,
                      verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    tfdc.export(model(True), tmp_path / "unrolled.tflite", representative_dataset=rep,
                batch_size=1)
    assert tfdc.is_packed((tmp_path / "unrolled.tflite").read_bytes())


def test_calibration_samples_are_cast_split_and_listed_as_the_model_takes_them(tmp_path):
    # float64 images (what x / 255.0 gives), a batch of 16 examples for a
    # model exported with a batch of 1, a bare array instead of a list: each
    # failed inside the converter ("Cannot set tensor: Got value of type
    # FLOAT64", "num_input_elements != num_output_elements", a dump of the
    # array); int64 token ids for an int32 Embedding input too.
    from tfdc.demo import tflite_outputs
    rng = np.random.default_rng(0)
    x = rng.random((32, 6, 6, 1))
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(3, name="fc")])
    reference = model.predict(x.astype(np.float32), verbose=0)
    for name, rep in (("float64", lambda: ([x[i:i + 1]] for i in range(32))),
                      ("batched", lambda: ([x[i:i + 16]] for i in (0, 16))),
                      ("bare", lambda: (x[i:i + 1] for i in range(32)))):
        path = tmp_path / f"{name}.tflite"
        tfdc.export(model, path, representative_dataset=rep, batch_size=1)
        packed = tflite_outputs(str(path), x.astype(np.float32))
        assert np.abs(packed - reference).max() < 0.05 * np.abs(reference).max(), name
    tokens = rng.integers(0, 50, (32, 7))  # int64, as NumPy makes them
    text = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(50, 8),
                             keras.layers.Flatten(), keras.layers.Dense(2)])
    tfdc.export(text, tmp_path / "text.tflite", batch_size=1,
                representative_dataset=lambda: ([tokens[i:i + 1]] for i in range(32)))
    assert tfdc.is_packed((tmp_path / "text.tflite").read_bytes())


@pytest.mark.parametrize("clustered", [False, True])
def test_a_folded_kernel_is_warned_of_only_where_its_weights_share_values(tmp_path, clustered):
    # Any unclustered model with a BatchNormalization after a small kernel
    # (every weight its own value) was told its weight sharing is lost.
    layers = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(8, 3, name="c1"),
                              layers.BatchNormalization(name="bn"), layers.Flatten(),
                              layers.Dense(3, name="out")])
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    model.get_layer("bn").set_weights([np.full(8, 2.0, "float32"), np.full(8, 0.1, "float32"),
                                       np.zeros(8, "float32"), np.full(8, 0.5, "float32")])
    if clustered:
        kernel = model.get_layer("c1").kernel.numpy()
        book = np.float32([-0.3, -0.1, 0.1, 0.3])
        model.get_layer("c1").kernel.assign(book[np.abs(kernel[..., None] - book).argmin(-1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfdc.export(model, tmp_path / "m.tflite",
                    representative_dataset=lambda: ([row[None]] for row in x))
    told = [str(w.message) for w in caught if "no int8 tensor" in str(w.message)]
    assert told == ([told[0]] if clustered else []) and (not told or "kernel(s) c1," in told[0])


@pytest.mark.parametrize("first", ["normalization", "rescaling"])
def test_a_kernel_a_preprocessing_layer_folds_into_is_named_with_that_cause(tmp_path, first):
    # A Normalization or Rescaling before a clustered convolution is folded
    # into its kernel: the warning named only a BatchNormalization, and sent
    # the user to tfdc.fold_batchnorm for a model that has none.
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    scaled = (layers.Normalization(mean=0.5, variance=0.04) if first == "normalization"
              else layers.Rescaling(2.0, offset=-1.0))(inputs)
    features = layers.Flatten()(layers.Conv2D(8, 3, name="c1")(scaled))
    model = keras.Model(inputs, layers.Dense(3, name="out")(features))
    kernel = model.get_layer("c1").kernel.numpy()
    book = np.float32([-0.3, -0.1, 0.1, 0.3])
    model.get_layer("c1").kernel.assign(book[np.abs(kernel[..., None] - book).argmin(-1)])
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfdc.export(model, tmp_path / "m.tflite",
                    representative_dataset=lambda: ([row[None]] for row in x))
    told = [str(w.message) for w in caught if "no int8 tensor" in str(w.message)]
    assert len(told) == 1 and "kernel(s) c1," in told[0]
    assert "a Normalization or Rescaling before them folded in" in told[0]
