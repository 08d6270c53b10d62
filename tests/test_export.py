"""tfdc.export: real Keras models, the real TFLite converter, the real LiteRT
interpreter; packed files must run bit-identically to the plain export."""

import os
import warnings

import keras
import numpy as np
import pytest
from keras import layers

import tfdc
from tfdc.models import lenet_300_100
from tfdc.exporter import altered_kernels, convert, export, export_tflite


def compress_weights(model, kept=0.1, codebook_size=16, seed=0):
    """Give every kernel a synthetic pruned + clustered value: `kept` of its
    entries from a `codebook_size`-entry codebook, the rest exactly 0.
    Biases get small random values so that they are not folded away."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
        elif len(shape) >= 2:
            codebook = rng.normal(0, 0.3, codebook_size).astype("float32")
            values = codebook[rng.integers(0, codebook_size, shape)]
            mask = rng.random(shape) < kept
            variable.assign(np.where(mask, values, 0).astype("float32"))
        else:
            variable.assign(rng.normal(0, 0.1, shape).astype("float32"))
    return model


def run(model_bytes, inputs, **kwargs):
    interpreter = tfdc.load_interpreter(model_bytes, **kwargs)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    for detail, x in zip(details, inputs):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def assert_bit_identical(a_outputs, b_outputs):
    assert len(a_outputs) == len(b_outputs)
    for a, b in zip(a_outputs, b_outputs):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def mlp():
    return keras.Sequential([keras.Input((20,)), layers.Dense(64, activation="relu", name="fc1"),
                             layers.Dense(32, activation="relu", name="fc2"),
                             layers.Dense(4, name="out")], name="mlp")


def test_export_runs_bit_identically_to_plain_tflite(tmp_path, mnist_small):
    model = compress_weights(lenet_300_100(), kept=0.08, codebook_size=32)
    plain = convert(model)
    path = tmp_path / "lenet.tflite"
    report = export(model, path)
    packed = path.read_bytes()

    assert tfdc.is_packed(packed) and not tfdc.is_packed(plain)
    assert report.packed_bytes == len(packed) < len(plain) / 10
    assert report.plain_bytes == len(plain)
    assert report.dense_bytes == 4 * model.count_params()
    assert {layer.name for layer in report.layers} >= {"fc1", "fc2"}
    x = mnist_small[1][0][:1]
    assert_bit_identical(run(packed, [x]), run(plain, [x]))
    np.testing.assert_allclose(run(packed, [x])[0], model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_fixed_batch_is_smaller_and_bit_identical(tmp_path, mnist_small):
    model = compress_weights(lenet_300_100(), kept=0.08, codebook_size=32)
    dynamic = export(model, tmp_path / "dynamic.tflite", strip_debug=False)
    stripped = export(model, tmp_path / "stripped.tflite")
    fixed = export(model, tmp_path / "fixed.tflite", batch_size=1)
    # Each option only removes flatbuffer overhead; the weight records are equal.
    assert fixed.packed_bytes < stripped.packed_bytes < dynamic.packed_bytes
    x = mnist_small[1][0][:1]
    expected = run(convert(model), [x])
    for name in ("dynamic", "stripped", "fixed"):
        assert_bit_identical(run(str(tmp_path / f"{name}.tflite"), [x]), expected)
    with pytest.raises(ValueError, match="batch_size"):
        export(model, tmp_path / "bad.tflite", batch_size=0)


def test_converter_keeps_every_kernel_value_exactly():
    """No default optimisations: the converter only transposes kernels."""
    model = compress_weights(lenet_300_100())
    plain = convert(model)
    assert altered_kernels(model, plain) == []
    from tfdc.runtime import interpreter_class
    interpreter = interpreter_class()(model_content=plain)
    tensors = {d["name"]: interpreter.get_tensor(d["index"])
               for d in interpreter.get_tensor_details() if d["name"].endswith("MatMul")}
    fc1 = next(v for k, v in tensors.items() if "/fc1" in k)
    np.testing.assert_array_equal(fc1.view(np.uint32),
                                  model.get_layer("fc1").kernel.numpy().T.view(np.uint32))


def _conv2d():
    inp = keras.Input((10, 10, 3))
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(5, name="head")(x), name="convnet"), \
        [np.random.default_rng(1).normal(size=(1, 10, 10, 3)).astype("float32")]


def _conv1d():
    inp = keras.Input((24, 4))
    x = layers.Conv1D(16, 5, activation="relu", name="conv1d")(inp)
    x = layers.Flatten()(x)
    return keras.Model(inp, layers.Dense(3, name="head")(x), name="conv1dnet"), \
        [np.random.default_rng(2).normal(size=(1, 24, 4)).astype("float32")]


def _embedding():
    inp = keras.Input((6,), dtype="int32")
    x = layers.Embedding(100, 16, name="embed")(inp)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, layers.Dense(3, name="head")(x), name="embednet"), \
        [np.array([[1, 5, 99, 0, 42, 7]], dtype="int32")]


def _attention():
    inp = keras.Input((8, 16))
    x = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(inp, inp)
    x = layers.LayerNormalization(name="norm")(x + inp)
    x = layers.Dense(32, activation="relu", name="ffn")(x)
    return keras.Model(inp, x, name="attention"), \
        [np.random.default_rng(3).normal(size=(1, 8, 16)).astype("float32")]


@pytest.mark.parametrize("build", [_conv2d, _conv1d, _embedding, _attention],
                         ids=["conv2d+depthwise", "conv1d", "embedding", "multi-head-attention"])
def test_layer_kinds_pack_and_run_bit_identically(tmp_path, build):
    model, inputs = build()
    compress_weights(model, kept=0.3, codebook_size=8)
    plain = convert(model)
    assert altered_kernels(model, plain) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "kernel altered" warning
        report = export(model, tmp_path / "m.tflite")
    assert report.layers, "nothing was packed"
    packed = (tmp_path / "m.tflite").read_bytes()
    assert_bit_identical(run(packed, inputs), run(plain, inputs))
    expected = keras.ops.convert_to_numpy(model(*inputs))
    np.testing.assert_allclose(run(packed, inputs)[0], expected, rtol=1e-4, atol=1e-4)


def test_unfolded_batchnorm_is_reported_and_folded_model_is_clean(tmp_path):
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, use_bias=False, name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, layers.Flatten()(x))
    compress_weights(model, kept=0.5, codebook_size=4)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32")
    # The converter folds BN into the kernel: the values change, we warn.
    with pytest.warns(UserWarning, match="conv/kernel"):
        export(model, tmp_path / "bn.tflite")
    packed = (tmp_path / "bn.tflite").read_bytes()
    assert_bit_identical(run(packed, [x]), run(convert(model), [x]))
    try:
        fold = tfdc.fold_batchnorm
    except (ImportError, AttributeError):
        pytest.skip("tfdc.batchnorm not available")
    folded = fold(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export(folded, tmp_path / "folded.tflite")
    np.testing.assert_allclose(run((tmp_path / "folded.tflite").read_bytes(), [x])[0],
                               run(packed, [x])[0], rtol=1e-4, atol=1e-5)


class TimesTwo(keras.constraints.Constraint):
    def __call__(self, w):
        return 2 * w


def test_strip_removes_tfdc_constraints_and_keeps_the_users(tmp_path):
    from tfdc.prune import MaskConstraint, find_mask, install_mask
    model = compress_weights(mlp())
    fc1, fc2 = model.get_layer("fc1").kernel, model.get_layer("fc2").kernel
    fc1.constraint = TimesTwo()
    install_mask(fc1)
    install_mask(fc2)
    assert isinstance(fc1.constraint, MaskConstraint)

    # A custom constraint on a variable does not stop the converter.
    report = export(model, tmp_path / "kept.tflite", strip=False)
    assert report.layers and find_mask(fc1) is not None

    tfdc.strip(model)
    assert isinstance(fc1.constraint, TimesTwo)
    assert fc2.constraint is None
    x = np.random.default_rng(0).normal(size=(1, 20)).astype("float32")
    export(model, tmp_path / "stripped.tflite")
    assert_bit_identical(run((tmp_path / "stripped.tflite").read_bytes(), [x]),
                         run((tmp_path / "kept.tflite").read_bytes(), [x]))


def test_failed_export_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old contents")
    import tensorflow as tf
    with pytest.raises(ValueError, match="signatures"):
        export(tf.Module(), path)
    with pytest.raises(TypeError):
        export(object(), path)
    # A select that is neither a function nor a valid regular expression:
    # refused before converting (a str failed after, as "'str' object is not
    # callable").
    with pytest.raises(ValueError, match=r"select 'fc1\[' is not a valid regular expression"):
        export(mlp(), path, select="fc1[")
    with pytest.raises(TypeError, match=r"select must be a callable .* or a regular "
                       r"expression \(a str\), got int"):
        export(mlp(), path, select=1)
    # So are the packer's options: min_bytes=None converted, warned that the
    # kernels could not be checked, and only then was refused.
    import tfdc.exporter

    def never(*args, **kwargs):
        raise AssertionError("converted")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("error")
        patch.setattr(tfdc.exporter, "convert", never)
        for option, message in (({"min_bytes": None}, "min_bytes must be an integer"),
                                ({"block": 2.5}, "block must be an integer"),
                                ({"gap_alphabet": 16.0}, "gap_alphabet must be a power of two")):
            with pytest.raises(ValueError, match=message):
                export(mlp(), path, **option)
    assert path.read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]


def test_bad_representative_dataset_fails_before_conversion(tmp_path):
    model = mlp()
    path = tmp_path / "int8.tflite"
    x = np.zeros((4,) + tuple(model.inputs[0].shape[1:]), np.float32)
    with pytest.raises(ValueError, match="weights='int8' stores a float model's clustered "
                       "kernels as int8 codes; with a representative_dataset"):
        export(model, path, weights="int8", representative_dataset=lambda: iter([[x[:1]]]))
    for rep, error, message in [
            ([x[:1]], TypeError, "representative_dataset must be a callable .* got list"),
            (lambda: iter([]), ValueError, "representative_dataset yields no sample"),
            (lambda: iter([[x[:1, :5]]]), ValueError,
             r"a sample for input .* has shape \(1, 5\); the model takes \('batch', "),
            (lambda: iter([[x[:1], x[:1]]]), ValueError, "holds 2 arrays, the model has 1"),
            # Every sample is checked, not only the first.
            (lambda: iter([[x[:1]], [x[:1]], [x[:1, :5]]]), ValueError, r"has shape \(1, 5\)"),
            # All NaN gave a float model without a word; one inf crashed the
            # process in the converter (a segmentation fault).
            (lambda: ([np.full_like(x[:1], np.nan)] for _ in range(8)), ValueError,
             "sample 0 for input .* holds NaN or inf"),
            (lambda: ([x[:1] + (np.inf if i == 5 else 0)] for i in range(8)), ValueError,
             "sample 5 for input .* holds NaN or inf"),
            # A dict keyed otherwise was a bare KeyError from the converter.
            (lambda: iter([{"pixels": x[:1], "label": x[:1]}]), ValueError,
             r"a sample is a dict keyed \['label', 'pixels'\]; the model's inputs are named "),
            (lambda: iter([{model.inputs[0].name: x[:1], "label": x[:1]}]), ValueError,
             r"a sample is a dict keyed .*'label'.*; the model's inputs are named "),
            # One iterator made beforehand: empty when the converter calls
            # again, which silently wrote a float model.
            (lambda once=iter([[x[:1]]] * 4): once, ValueError,
             "yielded 4 samples once and none when called again: it must return a new "
             "iterator on each call"),
    ]:
        with pytest.raises(error, match=message):
            export(model, path, representative_dataset=rep)
    assert os.listdir(tmp_path) == []


def test_calibration_samples_of_zeros_only_are_warned_about(tmp_path):
    # np.zeros as placeholder calibration data: every activation range was
    # calibrated to nothing, and the file written without a word.
    model = mlp()
    zeros = np.zeros((1,) + tuple(model.inputs[0].shape[1:]), np.float32)
    with pytest.warns(UserWarning, match=r"^representative_dataset: every calibration sample "
                      r"for input '.*' is all zeros; the int8 activation ranges") as caught:
        export(model, tmp_path / "z.tflite", representative_dataset=lambda: [[zeros]] * 8)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():  # real inputs: no such warning
        warnings.filterwarnings("error", message=".*all zeros")
        export(model, tmp_path / "r.tflite", representative_dataset=lambda: [[zeros + 0.5]] * 8)


def test_calibration_samples_like_raw_pixels_are_warned_about(tmp_path):
    # 0-255 samples for a model trained on [0, 1], through tfdc.export:
    # a 91 % error int8 file, written without a word (compress, which has
    # the training data to compare with, warned).
    from tfdc.exporter import calibration_scale_checked
    model = mlp()
    rng = np.random.default_rng(0)
    pixels = (rng.random((16, 20)) * 255).astype(np.float32)
    with pytest.warns(UserWarning, match=r"^representative_dataset: the calibration samples for "
                      r"input '.*' reach magnitude 25\d(\.\d+)?, and the model has no Rescaling "
                      r"or Normalization layer: if it was trained on scaled inputs") as caught:
        export(model, tmp_path / "a.tflite",
               representative_dataset=lambda: ([pixels[i:i + 1]] for i in range(16)))
    assert [w.filename for w in caught if "magnitude" in str(w.message)] == [__file__]
    # The same pixels as camera frames come, uint8 (or int32): they were
    # not looked at (84 % error, no word).
    for dtype in (np.uint8, np.int32):
        frames = pixels.astype(dtype)
        with pytest.warns(UserWarning, match=r"reach magnitude 25\d, and the model has no "
                          "Rescaling"):
            export(model, tmp_path / "a.tflite",
                   representative_dataset=lambda: ([frames[i:i + 1]] for i in range(16)))
    rescaled = keras.Sequential([keras.Input((20,)), layers.Rescaling(1 / 255), *model.layers])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # A model that rescales its own inputs, samples in [0, 1], or a
        # caller that compared them with the training data: no warning.
        export(rescaled, tmp_path / "b.tflite",
               representative_dataset=lambda: ([pixels[i:i + 1]] for i in range(16)))
        export(model, tmp_path / "c.tflite",
               representative_dataset=lambda: ([pixels[i:i + 1] / 255] for i in range(16)))
        with calibration_scale_checked():
            export(model, tmp_path / "d.tflite",
                   representative_dataset=lambda: ([pixels[i:i + 1]] for i in range(16)))


def test_calibration_samples_scaled_for_a_model_that_rescales_itself_are_warned_about(tmp_path):
    # The reverse mistake: a model with its own Rescaling(1 / 255), samples
    # already in [0, 1]. The input's int8 range is calibrated to [0, 1], and
    # real 0-255 frames saturate it: a 91 % error file on MNIST, no word.
    model = mlp()
    rescaled = keras.Sequential([keras.Input((20,)), layers.Rescaling(1 / 255), *model.layers])
    pixels = (np.random.default_rng(0).random((16, 20)) * 255).astype(np.float32)
    with pytest.warns(UserWarning, match=r"^representative_dataset: the model rescales input "
                      r"'.*' by 0\.003922 itself \(layer 'rescaling.*'\), and its calibration "
                      r"samples reach magnitude only 0\.9\d*: they look scaled already") as caught:
        export(rescaled, tmp_path / "a.tflite",
               representative_dataset=lambda: ([pixels[i:i + 1] / 255] for i in range(16)))
    assert [w.filename for w in caught if "rescales" in str(w.message)] == [__file__]
    # A Rescaling that does not divide by 100 or more (x / 2 - 1), or one
    # not on the input, says nothing about the samples' scale.
    for scale, first in ((0.5, True), (1 / 255, False)):
        head = [layers.Rescaling(scale)] if first else [model.layers[0], layers.Rescaling(scale)]
        tail = model.layers[1:] if not first else model.layers
        other = keras.Sequential([keras.Input((20,)), *head, *tail])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            export(other, tmp_path / "b.tflite",
                   representative_dataset=lambda: ([pixels[i:i + 1] / 255] for i in range(16)))


def test_calibration_samples_an_integer_input_cannot_hold_are_refused(tmp_path):
    # x / 255 for a model of uint8 pixels: cast to uint8 as the converter
    # takes them, every sample became zeros and ones, and compress kept a
    # 74 % error file with no word of why.
    model = keras.Sequential([keras.Input((20,), dtype="uint8"), layers.Rescaling(1 / 255),
                              *mlp().layers])
    pixels = np.random.default_rng(0).integers(0, 256, (8, 20))
    for samples, words in ((pixels / 255, r"with a fraction, in \[0\.\d+, 0\.\d+\] \(x / 255 "
                                          r"for 0-255 pixels\?\)"),
                           (pixels + 100.0, r"out of its range, in \[\d+, \d+\]"),
                           (pixels - 128, r"out of its range, in \[-\d+, \d+\]")):
        with pytest.raises(ValueError, match=r"^representative_dataset: sample 0 for input '.*', "
                           rf"which the model takes as uint8, holds values {words}: cast to uint8 "
                           r"they are not what it calibrates on; give the inputs as the model "
                           r"takes them$"):
            export(model, tmp_path / "a.tflite",
                   representative_dataset=lambda s=samples: ([s[i:i + 1]] for i in range(8)))
    assert not (tmp_path / "a.tflite").exists()
    # Whole numbers in range, in any dtype, are what the model takes (its
    # uint8 input is cast to float in the file, as the warning says).
    from tfdc.quantize import FloatOpsWarning
    for samples in (pixels.astype(np.float32), pixels.astype(np.int64), pixels.astype(np.uint8)):
        with pytest.warns(FloatOpsWarning, match=r"1 op\(s\) compute in float32 \(CAST\)"):
            export(model, tmp_path / "b.tflite",
                   representative_dataset=lambda s=samples: ([s[i:i + 1]] for i in range(8)))


def test_calibration_on_a_handful_of_examples_is_warned_about(tmp_path):
    # One sample calibrated every int8 range without a word (the docs ask
    # for a few hundred); examples count by rows, a batch of 16 is 16.
    from tfdc.exporter import MIN_CALIBRATION_EXAMPLES, check_calibration
    model = mlp()
    x = np.random.default_rng(0).random((MIN_CALIBRATION_EXAMPLES, 20)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"^full_integer: 1 calibration example; the int8 "
                      r"activation ranges are calibrated from them alone"):
        check_calibration(model, lambda: iter([[x[:1]]]), "full_integer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_calibration(model, lambda: iter([[x]]), "full_integer")
        check_calibration(model, lambda: ([x[i:i + 1]] for i in range(len(x))), "full_integer")


def test_calibration_on_another_scale_than_the_training_data_warns():
    # 0-255 pixels for a model trained on [0, 1]: every int8 activation
    # range would be calibrated 255x too wide, and nothing said why.
    from tfdc.exporter import check_calibration
    model = mlp()
    rng = np.random.default_rng(0)
    train = rng.random((16,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    for scale in (255.0, 1 / 255):
        with pytest.warns(UserWarning, match=r"full_integer: the calibration samples for input "
                          r"'.*' reach magnitude .*, the training data 0\.9.*: are they "
                          "preprocessed as the training data is"):
            check_calibration(model, lambda: ([train[i:i + 1] * scale] for i in range(16)),
                              "full_integer", reference=train)
    # Negative where the training data never is ([-1, 1] for [0, 1]; -x gave 88 % error).
    with pytest.warns(UserWarning, match=r"go down to -0\.9.*, where the training data is "
                      "never negative"):
        check_calibration(model, lambda: ([train[i:i + 1] * 2 - 1] for i in range(16)),
                          "full_integer", reference=train)
    # uint8 training pixels that the model rescales itself, and samples
    # already in [0, 1] (it was not checked: 82.7 % error, no warning).
    pixels = (train * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"reach magnitude 0\.9.*, the training data 25\d"):
        check_calibration(model, lambda: ([train[i:i + 1]] for i in range(16)),
                          "full_integer", reference=pixels)
    # uint8 samples of 0-255 for a model trained on [0, 1] (they were not
    # looked at: only float samples were).
    with pytest.warns(UserWarning, match=r"reach magnitude 25\d, the training data 0\.9"):
        check_calibration(model, lambda: ([pixels[i:i + 1]] for i in range(16)),
                          "full_integer", reference=train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The same scale, or no reference: no warning.
        check_calibration(model, lambda: ([train[i:i + 1] * 3] for i in range(16)),
                          "full_integer", reference=train)
        check_calibration(model, lambda: ([pixels[i:i + 1]] for i in range(16)),
                          "full_integer", reference=pixels)
        check_calibration(model, lambda: ([train[i:i + 1] * 255] for i in range(16)))
        check_calibration(model, lambda: ([pixels[i:i + 1].astype(np.float32)] for i in range(16)),
                          "full_integer", reference=pixels)


def test_failed_write_leaves_no_partial_file(tmp_path):
    # The target is a directory: os.replace fails after the data was written
    # to the temporary file, which must then be removed.
    target = tmp_path / "taken"
    target.mkdir()
    model = compress_weights(mlp())
    with pytest.raises(OSError):
        export(model, target)
    assert sorted(os.listdir(tmp_path)) == ["taken"]
    assert os.listdir(target) == []
    with pytest.raises(OSError):
        export(model, tmp_path / "missing_dir" / "m.tflite")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_atomic_writes_keep_the_mode_and_take_the_longest_names(tmp_path):
    from tfdc.exporter import write_atomically
    # A 0640 file became 0644 (world-readable) when replaced.
    private = tmp_path / "private.tflite"
    private.write_bytes(b"old")
    private.chmod(0o640)
    write_atomically(private, b"new")
    assert private.read_bytes() == b"new" and private.stat().st_mode & 0o777 == 0o640
    # Names of 242 to 255 bytes were refused: ".NAME.XXXXXXXX.tmp" was too long.
    for name in ("c" * 248 + ".tflite", "\u6a21" * 82 + ".tflite"):  # 255 and 253 bytes
        write_atomically(tmp_path / name, b"data")
        assert (tmp_path / name).read_bytes() == b"data"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_export_tflite_packs_an_existing_file(tmp_path):
    model = compress_weights(mlp())
    plain = convert(model)
    (tmp_path / "plain.tflite").write_bytes(plain)
    from_path = export_tflite(tmp_path / "plain.tflite", tmp_path / "a.tflite")
    from_bytes = export_tflite(plain, tmp_path / "b.tflite")
    # Deterministic: same input, same bytes.
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
    assert from_path.packed_bytes == from_bytes.packed_bytes
    # Its report's baseline is inspect's (it was None, with no ratio).
    written = tfdc.inspect(tmp_path / "a.tflite")
    assert from_path.dense_bytes == written.dense_bytes > 0
    assert from_path.ratio == written.ratio
    with pytest.raises(ValueError, match="already"):
        export_tflite(tmp_path / "a.tflite", tmp_path / "c.tflite")
    with pytest.raises(ValueError, match="TFL3"):
        export_tflite(b"not a model at all", tmp_path / "c.tflite")
    # Report options of the wrong type: an AttributeError from the report
    # ("'list' object has no attribute 'get'"), and a ratio of -1 B.
    with pytest.raises(TypeError, match=r"buffer_names must be a dict \{buffer index: layer "
                       r"name\} or None, got list"):
        export_tflite(plain, tmp_path / "c.tflite", buffer_names=["fc1"])
    with pytest.raises(ValueError, match="dense_bytes must be an integer >= 0 or None, got -1"):
        export_tflite(plain, tmp_path / "c.tflite", dense_bytes=-1)
    with pytest.raises(TypeError, match="configure must be a function that takes the "
                       "TFLiteConverter, got int"):
        tfdc.export(model, tmp_path / "c.tflite", configure=5)
    assert not (tmp_path / "c.tflite").exists()
    # Packing a file onto itself would lose the plain file (tfdc pack refuses it too).
    link = tmp_path / "link.tflite"
    link.symlink_to(tmp_path / "plain.tflite")
    for out in (tmp_path / "plain.tflite", link):
        with pytest.raises(ValueError, match="path is the input file"):
            export_tflite(tmp_path / "plain.tflite", out)
    assert (tmp_path / "plain.tflite").read_bytes() == plain


def test_select_is_one_rule_for_export_and_export_tflite(tmp_path):
    # A regular expression means the same to export, export_tflite and
    # `tfdc pack --select`: only the matching tensors are packed.
    model = compress_weights(mlp())
    by_regex = export(model, tmp_path / "a.tflite", select="fc1")
    by_function = export_tflite(convert(model), tmp_path / "b.tflite",
                                select=lambda name, index: "fc1" in name)
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
    assert [layer.name for layer in by_regex.layers] == ["fc1"]
    assert by_regex.packed_bytes == by_function.packed_bytes


def test_a_keras_model_file_name_is_warned_about(tmp_path):
    # "model.keras" got a packed .tflite file without a word.
    with pytest.warns(UserWarning, match=r"m\.keras: tfdc writes a packed \.tflite model "
                      r"there, not a Keras model .* model\.save\(\)"):
        export(compress_weights(mlp()), tmp_path / "m.keras")
    assert tfdc.is_packed(tmp_path / "m.keras")


def test_export_tflite_never_writes_a_larger_file(tmp_path):
    # Incompressible bytes in a tiny model, debug names kept: packing only
    # adds the stub and the section, so the input is written unchanged and
    # the report says so.
    from tfdc.tflite_schema import constant_model
    plain = constant_model([np.random.default_rng(0).integers(0, 256, 1024, dtype=np.uint8)])
    with pytest.warns(UserWarning, match="not smaller than the input's .* unchanged"):
        report = export_tflite(plain, tmp_path / "m.tflite", strip_debug=False)
    assert (tmp_path / "m.tflite").read_bytes() == plain
    assert report.layers == [] and report.section_bytes == 0
    assert report.packed_bytes == report.plain_bytes == len(plain)
    # A real model compressed: packed, smaller, no warning, runs identically.
    model = compress_weights(mlp())
    plain = convert(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = export_tflite(plain, tmp_path / "c.tflite", strip_debug=False)
    assert report.layers and report.packed_bytes < report.plain_bytes
    x = np.random.default_rng(0).normal(size=(1, 20)).astype("float32")
    assert_bit_identical(run((tmp_path / "c.tflite").read_bytes(), [x]), run(plain, [x]))


def test_export_tflite_refuses_a_damaged_file(tmp_path):
    plain = convert(mlp())
    for bad in (plain[:len(plain) // 2], plain[:40]):
        with pytest.raises(tfdc.FormatError, match="flatbuffer"):
            export_tflite(bad, tmp_path / "m.tflite")
    assert not os.listdir(tmp_path)


def test_module_with_several_signatures(tmp_path):
    import tensorflow as tf

    class Codec(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            w = rng.normal(size=(64, 32)).astype("float32")
            w[rng.random(w.shape) < 0.8] = 0
            self.w = tf.Variable(w)

        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
        def encode(self, x):
            return {"code": tf.matmul(x, self.w)}

        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
        def decode(self, code):
            return {"x": tf.matmul(code, self.w, transpose_b=True)}

    module = Codec()
    report = export(module, tmp_path / "codec.tflite", signatures=[module.encode, module.decode])
    assert report.layers
    interpreter = tfdc.load_interpreter(tmp_path / "codec.tflite")
    assert set(interpreter.get_signature_list()) == {"encode", "decode"}
    x = np.random.default_rng(1).normal(size=(1, 64)).astype("float32")
    code = interpreter.get_signature_runner("encode")(x=x)["code"]
    np.testing.assert_allclose(code, x @ module.w.numpy(), rtol=1e-5, atol=1e-5)
    back = interpreter.get_signature_runner("decode")(code=code)["x"]
    np.testing.assert_allclose(back, code @ module.w.numpy().T, rtol=1e-4, atol=1e-4)


def test_keras_model_with_signatures_computes_what_keras_does(tmp_path):
    """Functions that call a Keras model, alone or in a tf.Module holding it,
    each a signature named after its function (one alone too). Before, the
    converter's from_concrete_functions wrote inf / NaN outputs for these,
    with no error."""
    import tensorflow as tf
    model = compress_weights(mlp())

    @tf.function(input_signature=[tf.TensorSpec([1, 20], tf.float32, name="x")])
    def logits(x):
        return {"logits": model(x)}

    @tf.function(input_signature=[tf.TensorSpec([2, 20], tf.float32, name="x")])
    def doubled(x):
        return {"twice": 2.0 * model(x)}

    class Holder(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([1, 20], tf.float32, name="x")])
        def probs(self, x):
            return {"probs": self.model(x)}

    holder = Holder(model)
    x = np.random.default_rng(0).random((2, 20)).astype("float32")
    for owner, functions in ((model, [logits, doubled]), (model, [logits]),
                             (holder, [holder.probs])):
        path = tmp_path / "signed.tflite"
        export(owner, path, signatures=functions)
        interpreter = tfdc.load_interpreter(path)
        assert set(interpreter.get_signature_list()) == {f.__name__ for f in functions}
        for f in functions:
            runner = interpreter.get_signature_runner(f.__name__)
            batch = x[:runner.get_input_details()["x"]["shape"][0]]
            (key, got), = runner(x=batch).items()
            np.testing.assert_allclose(got, f(batch)[key].numpy(), rtol=1e-5, atol=1e-6)


def test_int8_weights_keep_the_codebook_and_run_bit_exactly(tmp_path):
    """weights="int8": one symmetric scale per tensor, so a 16-value codebook
    stays at most 16 int8 codes, and the model computes exactly what the
    float model with weights `code * scale` computes."""
    inp = keras.Input((10, 10, 3))
    x = layers.Conv2D(32, 3, activation="relu", name="conv")(inp)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(40, name="head")(x))
    inputs = [np.random.default_rng(1).normal(size=(1, 10, 10, 3)).astype("float32")]
    compress_weights(model, kept=0.3, codebook_size=16)
    float_report = export(model, tmp_path / "float.tflite")
    report = export(model, tmp_path / "int8.tflite", weights="int8")
    # The packed file barely changes (a codebook entry costs 1 byte instead
    # of 4, the DEQUANTIZE ops cost a few hundred bytes); what int8 buys is a
    # decoded model with 1-byte weights in memory.
    assert report.decoded_bytes < float_report.decoded_bytes * 0.6
    int8_records = [layer for layer in report.layers if layer.elem_size == 1]
    assert {l.name for l in int8_records} == {"conv", "depthwise", "head"}
    for layer in int8_records:
        assert layer.codebook_size <= 16 + 1  # the zero, when coded densely

    decoded = tfdc.decode((tmp_path / "int8.tflite").read_bytes())
    from tfdc.runtime import interpreter_class
    interpreter = interpreter_class()(model_content=decoded)
    int8_tensors = [d for d in interpreter.get_tensor_details() if d["dtype"] == np.int8]
    assert len(int8_tensors) == 3
    for detail in int8_tensors:
        scales = detail["quantization_parameters"]["scales"]
        assert len(scales) == 1  # per tensor, not per channel
        codes = interpreter.get_tensor(detail["index"])
        assert len(np.unique(codes[codes != 0])) <= 16

    for variable in model.weights:  # the reference: float weights code * scale
        w = variable.numpy()
        if w.ndim >= 2:
            scale = np.float32(np.max(np.abs(w)) / 127.0)
            variable.assign(np.clip(np.rint(w / scale), -127, 127).astype(np.float32) * scale)
    assert_bit_identical(run(decoded, inputs), run(convert(model), inputs))

    # A decoded file keeps its weights after the flatbuffer: none of them
    # were candidates ("changed nothing: no float32 kernel ... has at most
    # 256 distinct values", a float32 file written).
    plain = tfdc.decode((tmp_path / "float.tflite").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = tfdc.export_tflite(plain, tmp_path / "again.tflite", weights="int8")
    assert len([layer for layer in again.layers if layer.elem_size == 1]) == 3
    assert_bit_identical(run(tfdc.decode((tmp_path / "again.tflite").read_bytes()), inputs),
                         run(decoded, inputs))


def test_a_kernel_the_converter_changes_is_warned_of_only_when_compressed(tmp_path):
    # The converter folds a BatchNormalization into its Conv's kernel: that
    # loses pruning and weight sharing, and a float model's export warned
    # "their pruning / weight sharing is partly lost" all the same.
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, use_bias=False, name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, layers.Dense(4, name="out")(layers.Flatten()(x)))
    bn = model.get_layer("bn")
    rng = np.random.default_rng(0)  # a scale per channel: no one factor the kernel times
    bn.set_weights([rng.uniform(0.5, 2.0, 16).astype("float32"), np.zeros(16, "float32"),
                    np.full(16, 0.1, "float32"), rng.uniform(0.5, 4.0, 16).astype("float32")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        export(model, tmp_path / "float.tflite")
    kernel = model.get_layer("conv").kernel
    kernel.assign(np.where(np.abs(kernel.numpy()) < 0.1, 0.0, kernel.numpy()))
    with pytest.warns(UserWarning, match=r"changed the values of conv/kernel .* partly lost"):
        export(model, tmp_path / "pruned.tflite")
    # Kernels of zeros (zeros-initialized, untrained): the converter folds
    # the constant layers away, and export warned their pruning was lost.
    zeros = keras.Sequential([keras.Input((64,)),
                              layers.Dense(128, activation="relu", kernel_initializer="zeros"),
                              layers.Dense(64, activation="relu", kernel_initializer="zeros"),
                              layers.Dense(10, kernel_initializer="zeros")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        export(zeros, tmp_path / "zeros.tflite")


def test_unknown_weights_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="weights"):
        export(compress_weights(mlp()), tmp_path / "m.tflite", weights="int4")
    assert not (tmp_path / "m.tflite").exists()


# ------------------------------------------------ inputs, outputs, signatures

def _two_inputs_two_outputs():
    """Two inputs through one shared Dense (its kernel is one tensor) and two
    outputs: the converter lists both in its own order (here `beta` first,
    and the second output first)."""
    alpha, beta = keras.Input((6,), name="alpha"), keras.Input((6,), name="beta")
    shared = layers.Dense(64, name="shared")
    joined = layers.Concatenate()([shared(alpha), 2.0 * shared(beta)])
    main = layers.Dense(2, name="main")(joined)
    aux = layers.Dense(3, name="aux")(shared(beta))
    return keras.Model([alpha, beta], [main, aux])


@pytest.mark.parametrize("batch_size", [None, 1], ids=["dynamic", "batch1"])
def test_inputs_outputs_and_signature_survive_in_keras_order(tmp_path, batch_size):
    model = compress_weights(_two_inputs_two_outputs(), kept=0.2, codebook_size=8)
    report = export(model, tmp_path / "m.tflite", batch_size=batch_size)  # strip_debug=True
    assert report.layers
    rng = np.random.default_rng(0)
    xa, xb = (rng.normal(size=(1, 6)).astype("float32") for _ in range(2))
    expected = [keras.ops.convert_to_numpy(y) for y in model([xa, xb])]

    interpreter = tfdc.load_interpreter(tmp_path / "m.tflite")
    # The signature is kept (also with a fixed batch) and binds by the Keras
    # input and output names.
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["alpha", "beta"], "outputs": ["aux", "main"]}}
    by_name = interpreter.get_signature_runner("serving_default")(alpha=xa, beta=xb)
    for got, want in zip((by_name["main"], by_name["aux"]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Input and output names are kept, listed in the Keras model's order:
    # feeding inputs by position, in model order, gives the model's outputs.
    names = [d["name"] for d in interpreter.get_input_details()]
    assert "alpha" in names[0] and "beta" in names[1]
    assert all(d["name"] for d in interpreter.get_output_details())
    for got, want in zip(run(tmp_path / "m.tflite", [xa, xb]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("structure", ["dict", "nested"])
def test_dict_and_nested_outputs_export_flat_in_keras_order(tmp_path, structure):
    """A model returning a dict (keys unlike its layers' names) or a list
    holding a dict: the signature is one flat dict of tensors, named by the
    dict's keys (else the output layers'), listed as `model.outputs`."""
    base = _two_inputs_two_outputs()
    main, aux = base.outputs
    outputs = {"zeta": main, "aux_out": aux} if structure == "dict" else [main, {"k": aux}]
    model = compress_weights(keras.Model(base.inputs, outputs), kept=0.2, codebook_size=8)
    export(model, tmp_path / "m.tflite", batch_size=1)
    rng = np.random.default_rng(0)
    xa, xb = (rng.normal(size=(1, 6)).astype("float32") for _ in range(2))
    keras_outputs = model([xa, xb])
    interpreter = tfdc.load_interpreter(tmp_path / "m.tflite")
    names = ["aux_out", "zeta"] if structure == "dict" else ["main", "aux"]
    assert interpreter.get_signature_list()["serving_default"]["outputs"] == sorted(names)
    by_name = interpreter.get_signature_runner("serving_default")(alpha=xa, beta=xb)
    for name, want in zip(names, keras.tree.flatten(keras_outputs)):
        np.testing.assert_allclose(by_name[name], want, rtol=1e-5, atol=1e-5)
    for got, want in zip(run(tmp_path / "m.tflite", [xa, xb]), keras.tree.flatten(keras_outputs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if structure == "dict":
        np.testing.assert_allclose(by_name["zeta"], keras_outputs["zeta"], rtol=1e-5, atol=1e-5)


def test_dict_inputs_export_in_keras_order(tmp_path):
    """A model taking a dict of inputs: the signature binds them by name,
    and by position they are listed as `model.inputs` (key order)."""
    zz, aa = keras.Input((6,), name="zz"), keras.Input((4,), name="aa")
    joined = layers.Concatenate()([layers.Dense(32, name="dz")(zz),
                                   layers.Dense(32, name="da")(aa)])
    outputs = layers.Dense(3, name="out")(joined)
    model = compress_weights(keras.Model({"zz": zz, "aa": aa}, outputs), kept=0.2,
                             codebook_size=8)
    export(model, tmp_path / "m.tflite", batch_size=1)
    rng = np.random.default_rng(0)
    x = {"zz": rng.normal(size=(1, 6)).astype("float32"),
         "aa": rng.normal(size=(1, 4)).astype("float32")}
    want = keras.ops.convert_to_numpy(model(x))
    interpreter = tfdc.load_interpreter(tmp_path / "m.tflite")
    assert interpreter.get_signature_list()["serving_default"]["inputs"] == ["aa", "zz"]
    got = interpreter.get_signature_runner("serving_default")(**x)["out"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    (positional,) = run(tmp_path / "m.tflite", [x["aa"], x["zz"]])
    np.testing.assert_allclose(positional, want, rtol=1e-5, atol=1e-5)


def test_export_prints_nothing(tmp_path, capfd):
    model = compress_weights(mlp())
    capfd.readouterr()
    export(model, tmp_path / "m.tflite")
    export(model, tmp_path / "b.tflite", batch_size=1)
    out, err = capfd.readouterr()
    assert out == ""  # Keras's "Saved artifact at ..." endpoint listing is gone
    assert "deprecated" not in err and "Saved artifact" not in err


# ------------------------------------------------------------- paths

def test_unwritable_paths_fail_before_converting_and_name_the_path(tmp_path):
    from tfdc.prune import find_mask, install_mask
    model = compress_weights(mlp())
    install_mask(model.get_layer("fc1").kernel)
    missing = tmp_path / "no_such_folder" / "m.tflite"
    with pytest.raises(FileNotFoundError, match=f"{missing}: folder .*no_such_folder does not"):
        export(model, missing)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=f"{folder}: is a directory") as error:
        export(model, folder)
    assert ".tmp" not in str(error.value)
    # Checked first: the model was not even stripped of its constraints.
    assert find_mask(model.get_layer("fc1").kernel) is not None
    with pytest.raises(IsADirectoryError, match="is a directory"):
        export_tflite(convert(model), folder)
    # A folder that does not exist yet, written as one: it became a file
    # named "new", and the returned path pointed at nothing.
    with pytest.raises(IsADirectoryError, match=r"new/: names a folder \(it ends with '/'\)"):
        export_tflite(convert(model), f"{tmp_path}/new/")
    # A file written as a folder, and a path through a file (model.tflite/../x:
    # realpath made it x, which was written, over the input when x was it).
    (tmp_path / "f.tflite").write_bytes(b"old")
    with pytest.raises(NotADirectoryError, match=r"f.tflite/: names a folder .* but it is a "
                       r"file"):
        export_tflite(convert(model), f"{tmp_path}/f.tflite/")
    with pytest.raises(NotADirectoryError, match=r"f.tflite/\.\. is not a folder \(part of it "
                       r"is a file\)"):
        export_tflite(convert(model), f"{tmp_path}/f.tflite/../f.tflite")
    assert (tmp_path / "f.tflite").read_bytes() == b"old"
    (tmp_path / "f.tflite").unlink()
    assert sorted(os.listdir(tmp_path)) == ["a_folder"] and os.listdir(folder) == []
    # A folder no file can be created in, where access() says yes to root:
    # tfdc compress failed there after its work, naming its own temporary
    # folder.
    if os.path.isdir("/proc/self"):
        with pytest.raises(PermissionError, match=r"/proc/m.tflite: (cannot create a file in "
                                                  r"folder /proc \(|folder /proc is not "
                                                  r"writable)"):  # root, or not
            export(model, "/proc/m.tflite")


def test_an_immutable_output_is_not_called_read_only(tmp_path):
    # chattr +i: the advice was "make it writable (chmod u+w)", which does
    # not help (root, where chattr works, may write any mode).
    import shutil
    import subprocess
    immutable = tmp_path / "immutable.tflite"
    immutable.write_bytes(b"old")
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", immutable],
                                                    capture_output=True).returncode:
        pytest.skip("chattr +i needs root and a file system with attributes")
    try:
        with pytest.raises(PermissionError, match=r"immutable.tflite: the file cannot be "
                                                  r"written, though its mode allows it"):
            export(compress_weights(mlp()), immutable)
    finally:
        subprocess.run(["chattr", "-i", immutable], check=True)
    assert immutable.read_bytes() == b"old"


# ------------------------------------------------ recurrent, mixed precision

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_kernels_are_clustered_and_exported(tmp_path, kind):
    model = keras.Sequential([keras.Input((5, 4)), getattr(layers, kind)(16, name="rnn"),
                              layers.Dense(3, name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 5, 4)).astype("float32"), rng.integers(0, 3, 64)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[tfdc.GradualPruning({"rnn": 0.6}, end_step=4, frequency=1),
                         tfdc.ClusteredFineTuning(bits={"rnn": 3})])
    for name, book in tfdc.codebooks(model, targets={"rnn": True}).items():
        assert book["centroids"].size <= 8 and book["zeros"] == round(0.6 * book["size"]), name

    # The converter cannot lower the recurrent loop with a dynamic batch: one line.
    with pytest.raises(ValueError) as error:
        export(model, tmp_path / "dynamic.tflite")
    message = str(error.value)
    assert f"'rnn' ({kind})" in message and "batch_size=1" in message and "\n" not in message
    assert not (tmp_path / "dynamic.tflite").exists()

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # loop-body kernels found: not "altered"
        report = export(model, tmp_path / "m.tflite", batch_size=1)
    packed = {layer.name: layer for layer in report.layers}
    recurrent = [layer for layer in report.layers if layer.codebook_size and
                 layer.weights in (4 * 16 * report_gates(kind), 16 * 16 * report_gates(kind))]
    assert len(recurrent) == 2, packed
    # Named by kernel (they were "rnn#1" and "rnn#2"), the bias beside them.
    assert {"rnn/kernel", "rnn/recurrent_kernel"} <= set(packed), packed
    assert all(layer.codebook_size <= 9 for layer in recurrent)  # 8 values (+ the zero if dense)
    # The loop's all-zero initial states are no weights: not rows, not in
    # the total (a stacked LSTM's table counted more weights than parameters).
    assert report.weights <= model.count_params()
    assert report.constants and all(s.nnz == 0 for s in report.constants)
    assert not any("TensorArray" in name or "zeros" in name for name in packed), packed
    assert "all-zero loop state" in str(report) and report.to_dict()["constants"]
    np.testing.assert_allclose(run(tmp_path / "m.tflite", [x[:1]])[0],
                               model.predict(x[:1], verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.RNN(layers.LSTMCell(16), name="rnn"), (5, 4)),
    (lambda: layers.ConvLSTM2D(8, 3, name="rnn"), (3, 6, 6, 2)),
], ids=["RNN(LSTMCell)", "ConvLSTM2D"])
def test_other_recurrent_layers_are_pruned_clustered_and_exported(tmp_path, make, shape):
    # RNN(LSTMCell) and ConvLSTM2D derive from RNN but were not registered:
    # left dense and unclustered without a word. ConvLSTM2D's kernels are
    # split into gates by the converter: found, not warned as "changed".
    model = keras.Sequential([keras.Input(shape), make(), layers.Flatten(),
                              layers.Dense(3, name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64,) + shape).astype("float32"), rng.integers(0, 3, 64)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[tfdc.GradualPruning(0.6, end_step=4, frequency=1),
                         tfdc.ClusteredFineTuning(bits=3)])
    report = tfdc.sparsity(model)
    assert {"rnn/kernel", "rnn/recurrent_kernel"} <= set(report)
    assert report["rnn/kernel"].sparsity == pytest.approx(0.6, abs=0.01)
    for book in tfdc.codebooks(model, targets={"rnn": True}).values():
        assert book["centroids"].size <= 8
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        packed = export(model, tmp_path / "m.tflite", batch_size=1)
    assert any(layer.name.startswith("rnn/recurrent_kernel") for layer in packed.layers)
    np.testing.assert_allclose(run(tmp_path / "m.tflite", [x[:1]])[0],
                               model.predict(x[:1], verbose=0), rtol=1e-4, atol=1e-5)


def report_gates(kind):
    return {"LSTM": 4, "GRU": 3}[kind]


def test_a_float64_model_is_told_its_dtype_not_missing_ops(tmp_path):
    # "no builtin kernel for BiasAdd, MatMul: replace those ops" sent the
    # user after ops that are builtin in float32.
    model = keras.Sequential([keras.Input((10,), dtype="float64"),
                              keras.layers.Dense(8, dtype="float64", name="wide"),
                              keras.layers.Dense(3, name="out")])
    with pytest.raises(ValueError, match=r"in float64, and this model computes in float64 "
                                         r"\(input '\w+', layer 'wide'\): LiteRT's builtin ops "
                                         r"are float32; build the model in float32"):
        export(model, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()
    half = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, dtype="bfloat16",
                                                                    name="half")])
    with pytest.raises(ValueError, match=r"in bfloat16, and this model computes in bfloat16 "
                                         r"\(layer 'half'\)"):
        export(half, tmp_path / "m.tflite")


@pytest.mark.parametrize("who", ["GradualPruning", "ClusteredFineTuning", "StructuredPruning",
                                 "tfdc.compress", "tfdc.plan", "tfdc.sensitivity"])
def test_kernels_of_another_float_type_are_refused_before_training(who):
    # The callbacks warned that such kernels were "left as they are", pruned
    # and clustered them anyway, and export then refused the model;
    # compress said the model had "no compressible layer".
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, dtype="float64",
                                                                     name="wide"),
                              keras.layers.Dense(4, dtype="float16", name="half"),
                              keras.layers.Dense(3, name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((64, 10)), np.arange(64) % 3
    calls = {
        "GradualPruning": lambda: model.fit(x, y, verbose=0,
                                            callbacks=[tfdc.GradualPruning(0.5)]),
        "ClusteredFineTuning": lambda: model.fit(x, y, verbose=0,
                                                 callbacks=[tfdc.ClusteredFineTuning()]),
        "StructuredPruning": lambda: model.fit(x, y, verbose=0,
                                               callbacks=[tfdc.StructuredPruning(0.5)]),
        "tfdc.compress": lambda: tfdc.compress(model, (x, y), (x, y), target_bytes=500,
                                               verbose=0),
        "tfdc.plan": lambda: tfdc.plan(model, (x, y), target_bytes=500),
        "tfdc.sensitivity": lambda: tfdc.sensitivity(model, (x, y)),
    }
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=rf"^{who}: model '\w+' has float64 / float16 kernels "
                                         r"\(layers 'wide', 'half'\), and tfdc exports to LiteRT, "
                                         r"whose builtin ops compute in float32: build the model "
                                         r"in float32"):
        calls[who]()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mixed_float16_model_is_clustered_and_exported(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((20,)),
                                  layers.Dense(64, activation="relu", name="fc1"),
                                  layers.Dense(4, name="out", dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 20)).astype("float32"), rng.integers(0, 4, 64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[tfdc.ClusteredFineTuning(bits=3)])
    report = export(model, tmp_path / "m.tflite")
    assert model.get_layer("fc1").dtype_policy.name == "mixed_float16"  # restored
    fc1 = next(layer for layer in report.layers if layer.name == "fc1")
    assert fc1.codebook_size <= 8
    # Converted with float32 compute: close to the float16-compute Keras model.
    np.testing.assert_allclose(run(tmp_path / "m.tflite", [x[:1]])[0],
                               model.predict(x[:1], verbose=0), rtol=1e-2, atol=1e-2)


def test_int8_weights_leave_constants_that_are_not_weights_exact():
    # weights="int8" turned every float constant with few distinct values
    # into int8 codes: a table an ADD reads (a detector's anchors, a resource
    # variable's starting value) lost its exact values.
    import tensorflow as tf

    from tfdc.quantize import quantize_codebooks_int8
    rng = np.random.default_rng(0)
    kernel = rng.choice(np.float32([-0.5, -0.1, 0.2, 0.7]), size=(16, 40))
    table = (7 * np.arange(40, dtype=np.float32)).reshape(1, 40)  # 40 distinct values
    # (a MAXIMUM reads it: the converter folds an added or multiplied one
    # into the FULLY_CONNECTED)

    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
    def model(x):
        return tf.maximum(tf.matmul(x, tf.constant(kernel)), tf.constant(table))

    plain = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model).convert()
    rewritten, quantized, _ = quantize_codebooks_int8(plain)
    assert len(quantized) == 1  # the kernel, not the table
    x = rng.normal(size=(1, 16)).astype("float32")
    from tfdc.runtime import interpreter_class
    outputs = []
    for data in (plain, rewritten):
        interpreter = interpreter_class()(model_content=data)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    (scale,) = quantized.values()
    codes = np.clip(np.rint(kernel / np.float32(scale)), -127, 127)
    np.testing.assert_allclose(outputs[1], np.maximum(x @ (codes * np.float32(scale)), table),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weight", ["kernel", "bias"])
def test_nan_or_infinite_weights_are_refused_naming_the_layer(tmp_path, weight):
    # The converter keeps a NaN and drops an infinity without a word; export
    # warned that "the converter changed the values" (a BatchNormalization?).
    model = mlp()
    variable = getattr(model.get_layer("fc2"), weight)
    variable.assign(np.where(np.arange(variable.shape[-1]) % 3, variable.numpy(), np.inf))
    data = (np.zeros((8, 20), "float32"), np.zeros(8, "int64"))
    for who, call in (("tfdc.export", lambda: export(model, tmp_path / "m.tflite")),
                      ("tfdc.sensitivity", lambda: tfdc.sensitivity(model, data)),
                      ("tfdc.plan", lambda: tfdc.plan(model, data, target_bytes=9000))):
        with pytest.raises(ValueError, match=rf"^{who}: model 'mlp' has NaN or infinite weights "
                           rf"in fc2/{weight} \(a training that diverged\?\)"):
            call()
    assert not (tmp_path / "m.tflite").exists()


def test_a_nan_in_a_nested_model_is_named_once_by_its_layer():
    # It read "backbone/kernel, backbone/inner_fc/kernel": the nested model
    # lists its layers' weights too.
    backbone = keras.Sequential([keras.Input((20,)), layers.Dense(8, name="inner_fc")],
                                name="backbone")
    inputs = keras.Input((20,))
    model = keras.Model(inputs, layers.Dense(4, name="out")(backbone(inputs)))
    kernel = backbone.get_layer("inner_fc").kernel
    kernel.assign(np.where(np.eye(20, 8) > 0, np.nan, kernel.numpy()))
    with pytest.raises(ValueError, match=r"has NaN or infinite weights in backbone/inner_fc/"
                       r"kernel \("):
        tfdc.sensitivity(model, (np.zeros((8, 20), "float32"), np.zeros(8, "int64")))


def test_exports_in_two_threads_leave_stdout_and_stderr_where_they_were(tmp_path):
    # Each export captures the converter's log on file descriptors 1 and 2;
    # two at once saved each other's log file as "the terminal" and left the
    # process writing to a deleted file (3 runs in 4).
    import threading

    def where(fd):
        info = os.fstat(fd)
        return info.st_dev, info.st_ino

    before = [where(1), where(2)]
    models = [keras.Sequential([keras.Input((20,)), layers.Dense(h), layers.Dense(10)])
              for h in (32, 48, 64)]
    failed = []

    def run_export(model, path):
        try:
            export(model, path)
        except BaseException as e:  # noqa: BLE001 - reported below
            failed.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=run_export, args=(m, tmp_path / f"m{i}.tflite"))
                   for i, m in enumerate(models)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failed and [where(1), where(2)] == before
    x = np.random.default_rng(0).normal(size=(1, 20)).astype("float32")
    for i, model in enumerate(models):  # and each file is its own model's
        assert_bit_identical(run((tmp_path / f"m{i}.tflite").read_bytes(), [x]),
                             run(convert(model), [x]))


def test_a_read_only_output_file_is_refused_not_replaced(tmp_path):
    # Written by a rename, a chmod 444 file was replaced where a shell
    # redirect is refused. Root passes any permission check: run as root
    # without the capability that overrides them (setpriv), as a user is.
    import shutil
    import subprocess
    import sys
    out = tmp_path / "locked.tflite"
    out.write_bytes(b"keep me")
    out.chmod(0o444)
    command = [sys.executable, "-c", "import sys; from tfdc.exporter import write_atomically; "
               "write_atomically(sys.argv[1], b'new')", str(out)]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: permissions are not enforced")
        command = ["setpriv", "--inh-caps=-all",
                   "--bounding-set=-dac_override,-dac_read_search,-fowner"] + command
    done = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 1
    assert (f"PermissionError: {out}: the file is read-only; make it writable (chmod u+w) or "
            "remove it first") in done.stderr
    assert out.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["locked.tflite"]
