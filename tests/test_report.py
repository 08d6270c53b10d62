"""ExportReport / tfdc.inspect: the paper's per-layer table, consistent with
the pack info and the file."""

import math
import re

import keras
import numpy as np
import pytest

import tfdc
from tfdc.models import lenet_300_100
from tfdc.exporter import convert
from tfdc.report import ExportReport, short_name


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = lenet_300_100()
    rng = np.random.default_rng(0)
    for variable, kept, k in zip(model.weights[::2], (0.08, 0.09, 0.26), (32, 32, 32)):
        codebook = rng.normal(0, 0.2, k).astype("float32")
        shape = tuple(variable.shape)
        w = np.where(rng.random(shape) < kept, codebook[rng.integers(0, k, shape)], 0)
        variable.assign(w.astype("float32"))
    for variable in model.weights[1::2]:
        variable.assign(rng.normal(0, 0.1, tuple(variable.shape)).astype("float32"))
    path = tmp_path_factory.mktemp("report") / "lenet.tflite"
    report = tfdc.export(model, path)
    return model, path, report


def test_rows_are_the_layers_with_their_shapes(exported):
    model, _, report = exported
    by_name = {layer.name: layer for layer in report.layers}
    assert {"fc1", "fc2", "fc3"} <= set(by_name)
    assert by_name["fc1"].weights == 784 * 300
    assert by_name["fc1"].nnz == int(np.count_nonzero(model.get_layer("fc1").kernel.numpy()))
    assert 0.07 < by_name["fc1"].kept < 0.09
    assert by_name["fc1"].sparse and by_name["fc1"].codebook_size == 32
    assert by_name["fc1"].weight_bits_pq == by_name["fc1"].symbol_bits == 5


def test_totals_are_sums_and_bits_match_the_pack_info(exported):
    _, path, report = exported
    from tfdc.unpack import read_pack_info
    info = read_pack_info(path.read_bytes())
    # One row per record (rows follow the graph order, records the buffers).
    key = ("value_bits", "gap_bits", "record_bytes", "nnz")
    assert sorted(tuple(getattr(l, k) for k in key) for l in report.layers) == \
        sorted(tuple(getattr(r, k) for k in key) for r in info.records)
    assert report.weights == sum(l.weights for l in report.layers)
    assert report.nnz == sum(l.nnz for l in report.layers)
    assert report.coded_bits == sum(l.value_bits + l.gap_bits for l in report.layers)
    assert report.record_bytes <= info.section_bytes
    assert report.packed_bytes == path.stat().st_size == info.total_bytes
    assert report.packed_bytes == info.flatbuffer_bytes + info.section_bytes or \
        report.packed_bytes >= info.flatbuffer_bytes + info.section_bytes
    # Huffman coding is within a bit per symbol of the entropy bound, never below.
    assert 1.0 <= report.coded_over_entropy < 1.1
    for layer in report.layers:
        assert layer.coded_bits >= layer.entropy_bits - 1e-6
        # Huffman bits are at most the fixed-width ones (+ segment padding).
        assert layer.value_bits <= layer.value_count * layer.symbol_bits + 8
        assert layer.weight_bits_pqh <= layer.weight_bits_pq + 0.01
        assert 8 * layer.record_bytes >= layer.coded_bits
        assert math.isclose(layer.rate_pqh, layer.raw_bytes / layer.record_bytes)
    assert report.ratio == pytest.approx(report.dense_bytes / report.packed_bytes)
    # The Total row averages both index columns over the sparse tensors'
    # nonzeros: P+Q+H was over every nonzero, dense biases included (a
    # third of P+Q's on a model of one sparse layer).
    sparse = [l for l in report.layers if l.sparse]
    assert sparse and len(sparse) < len(report.layers)
    nnz = sum(l.nnz for l in sparse)
    total = report.to_text().split("\nTotal")[1].split()
    assert total[4:6] == [f"{sum(l.index_bits_pq * l.nnz for l in sparse) / nnz:.2f}",
                          f"{sum(l.gap_bits for l in sparse) / nnz:.2f}"]


def test_rows_follow_the_graph_order(exported):
    # Biases are coded too (as planes): each follows its layer's kernel.
    _, path, report = exported
    rows = ["fc1", "fc1/bias", "fc2", "fc2/bias", "fc3"]  # fc3's 40-byte bias stays inline
    assert [l.name for l in report.layers] == rows
    assert [l.name for l in tfdc.inspect(path).layers] == rows
    bias = {l.name: l for l in report.layers}["fc1/bias"]
    assert bias.kind == "planes/dense" and bias.weights == 300
    assert bias.record_bytes < bias.raw_bytes and bias.weight_bits_pqh < 32


def test_report_shows_the_parts_of_the_file(exported):
    _, path, report = exported
    parts = report.parts
    assert sum(v for k, v in parts.items() if k != "graph_raw") == report.packed_bytes
    assert parts["stub"] == 120 and parts["graph"] < parts["graph_raw"]
    text = report.to_text()
    assert "graph" in text and "deflated from" in text and "planes/dense" in text
    assert report.to_dict()["sizes"]["parts"] == parts


def test_inspect_reads_the_same_numbers_back(exported):
    _, path, report = exported
    again = tfdc.inspect(path)
    assert [l.name for l in again.layers] == [l.name for l in report.layers]
    assert again.to_dict()["layers"] == report.to_dict()["layers"]
    assert again.packed_bytes == report.packed_bytes
    assert tfdc.inspect(path.read_bytes()).to_dict()["total"] == report.to_dict()["total"]


@pytest.mark.parametrize("names, message", [
    (5, ", got 5"), ("fc1", ", got 'fc1'"), (["fc1", 2], r" \(str\), got 2 in it")])
def test_layer_names_of_another_type_are_a_type_error(exported, tmp_path, names, message):
    # inspect(layer_names=5) said the file was damaged (FormatError
    # "flatbuffer"); a string was read letter by letter.
    model, path, _ = exported
    with pytest.raises(TypeError, match="layer_names must be a list of layer names" + message):
        tfdc.inspect(path, layer_names=names)
    with pytest.raises(TypeError, match="layer_names must be a list of layer names" + message):
        tfdc.export_tflite(convert(model), tmp_path / "m.tflite", layer_names=names)


def test_inspect_of_a_plain_file_reports_what_packing_would_give(exported):
    model, _, report = exported
    plain = convert(model)
    preview = tfdc.inspect(plain)
    assert preview.plain_bytes == len(plain)
    assert preview.packed_bytes == report.packed_bytes
    assert preview.to_dict()["layers"] == report.to_dict()["layers"]
    # JSON says which is a preview, as the text and Markdown do.
    assert preview.to_dict()["preview"] is True and report.to_dict()["preview"] is False


def test_text_markdown_and_dict(exported):
    _, _, report = exported
    text, markdown, data = report.to_text(), report.to_markdown(), report.to_dict()
    assert str(report) == text
    for name in ("fc1", "fc2", "fc3", "Total"):
        assert name in text and name in markdown
    assert "Dense float32 / packed" in text and f"{report.ratio:.1f}x" in text
    assert markdown.splitlines()[0].startswith("| Layer |")
    assert data["total"]["nnz"] == report.nnz
    assert data["sizes"]["packed_bytes"] == report.packed_bytes
    assert "ExportReport" in repr(report)


@pytest.mark.parametrize("tensor, expected", [
    ("lenet_300_100_1/fc1_1/MatMul", "fc1"),
    ("mix_1/c1_1/BiasAdd;mix_1/c1_1/convolution/Squeeze", "c1"),
    ("mix_1/mha_1/query_1/MatMul", "mha/query"),
    ("functional_1/emb_1/GatherV2/ReadVariableOp", "emb"),
    ("mix_1/dw_1/depthwise", "dw"),
    ("arith.constant", "arith.constant"),
])
def test_short_names(tensor, expected):
    assert short_name(tensor) == expected


def test_a_layer_named_like_an_op_is_kept_in_a_nested_path():
    # "conv" in a nested backbone is the layer's scope ("conv_1"), not the
    # op under it ("convolution", "depthwise"): it was cut, leaving every
    # row "backbone#1", "backbone#2".
    known = ["backbone", "conv", "depthwise"]
    assert short_name("functional/backbone_1/conv_1/convolution", known) == "backbone/conv"
    assert short_name("model_1/depthwise_1/depthwise", known) == "depthwise"
    assert short_name("model_1/depthwise_1/depthwise/int8", known) == "depthwise"


def test_short_name_keeps_a_suffix_that_is_part_of_the_layer_name():
    assert short_name("model_1/dense_1_1/MatMul", layer_names=["dense_1"]) == "dense_1"
    assert short_name("model_1/dense_1/MatMul", layer_names=["dense_1"]) == "dense_1"



def test_layer_names_do_not_mislabel_keras_default_names(tmp_path):
    # Keras 3's converted files suffix every scope: layer "dense" is
    # "dense_1", layer "dense_1" is "dense_1_2". Given the exact names,
    # inspect read both as "dense_1" ("dense_1#1", "dense_1#2").
    names = ["dense", "dense_1", "dense_2"]
    assert short_name("functional_1/dense_1/MatMul", names) == "dense"
    assert short_name("functional_1/dense_1_2/MatMul", names) == "dense_1"
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32), keras.layers.Dense(32),
                              keras.layers.Dense(4)])
    rng = np.random.default_rng(0)
    for layer in model.layers:  # clustered: every kernel gets a row
        layer.kernel.assign(rng.choice([-0.5, 0.0, 0.5], tuple(layer.kernel.shape)))
    report = tfdc.export(model, tmp_path / "m.tflite")
    given = tfdc.inspect(tmp_path / "m.tflite", layer_names=[l.name for l in model.layers])
    assert [l.name for l in given.layers] == [l.name for l in report.layers] == [
        l.name for l in model.layers]


def test_report_is_an_export_report(exported):
    assert isinstance(exported[2], ExportReport)
    assert isinstance(tfdc.ExportReport, type)


def test_inspect_dense_baseline_is_close_to_the_parameter_count(exported):
    model, path, report = exported
    packed_view = tfdc.inspect(path)
    plain_view = tfdc.inspect(convert(model))
    assert packed_view.dense_bytes == plain_view.dense_bytes
    # A packed file's gain over the .tflite it decodes to is shown beside
    # the float32 ratio (which overstates it for int8 weights).
    decoded = len(tfdc.decode(open(path, "rb").read()))
    assert (f"Decoded / packed        {decoded / packed_view.packed_bytes:.2f}x (the "
            f"{decoded:,} B .tflite it decodes to)") in packed_view.to_text()
    # every float parameter, plus a few bytes of int32 shape constants
    assert 0 <= packed_view.dense_bytes - report.dense_bytes < 256
    # A full-integer file: 4 bytes per int8 weight, as float32 (it counted 1,
    # and its "Dense float32 / packed" ratio was 4x too low).
    x = np.random.default_rng(0).random((16, 28, 28)).astype("float32")
    int8 = convert(model, representative_dataset=lambda: ([x[i:i + 1]] for i in range(16)))
    assert abs(tfdc.inspect(int8).dense_bytes - report.dense_bytes) < 256


def test_nothing_packed_says_so_and_why(tmp_path):
    # A model whose every weight buffer is under min_bytes (64 B): nothing is
    # tried, only the flatbuffer is compressed.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="fc1"),
                              keras.layers.Dense(3, name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 3)), rng.integers(0, 3, 64), epochs=1, verbose=0)
    report = tfdc.export(model, tmp_path / "m.tflite")
    assert report.layers == []
    # Where the weights went: the graph (they were in no line of the report).
    count, size = report.graph_constants
    kernels = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers)
    assert count >= 2 and size >= 4 * kernels
    assert f"{count} constants ({size:,} B), deflated with it" in report.to_text()
    for text in (report.to_text(), report.to_markdown()):
        assert text.startswith("Nothing was packed: no weight buffer gets smaller when packed")
        assert "tfdc.GradualPruning" in text and "Total" not in text and "inf" not in text
        assert "Packed .tflite" in text  # the sizes are still there
        assert "Records" not in text and "Dense float32 / packed" not in text
    import json
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON
    assert data["nothing_packed"] == report.nothing_packed and data["total"]["rate_pq"] is None

    preview = tfdc.inspect(convert(model))  # a stock .tflite
    assert preview.preview and preview.to_text().startswith(
        "Packing this plain .tflite would pack nothing")


def test_a_string_table_is_no_weight_row(tmp_path):
    # A packed table of strings was a row of 4,582 "weights" (its bytes) at
    # "8.78 weight bits". Random strings of 4 letters: a record codes them
    # smaller than deflate would (2 bits a letter).
    import tensorflow as tf
    rng = np.random.default_rng(0)

    class Table(tf.Module):
        def __init__(self):
            self.table = tf.constant(["".join(rng.choice(list("acgt"), 24)) for _ in range(400)])

        @tf.function(input_signature=[tf.TensorSpec([3], tf.int32)])
        def lookup(self, i):
            return tf.gather(self.table, i)

    table = Table()
    plain = tf.lite.TFLiteConverter.from_concrete_functions(
        [table.lookup.get_concrete_function()], table).convert()
    report = tfdc.export_tflite(plain, tmp_path / "t.tflite")
    assert report.layers == [] and [c.dtype for c in report.constants] == ["bytes"]
    for text in (report.to_text(), tfdc.inspect(tmp_path / "t.tflite").to_text()):
        assert text.startswith("No weight buffer was packed: only tensors that are no weights")
        assert "1 tensor of bytes" in text and "Total" not in text


def test_a_packed_report_has_no_nothing_packed_note(exported):
    _, path, report = exported
    assert report.nothing_packed is None and not report.preview
    assert tfdc.inspect(convert(exported[0])).preview and not tfdc.inspect(path).preview
    preview = tfdc.inspect(convert(exported[0]))
    for text in (preview.to_text(), preview.to_markdown()):
        assert text.startswith("Preview: this file is not packed")
    assert not tfdc.inspect(path).to_text().startswith("Preview")


def test_inspect_refuses_a_damaged_section_key_naming_the_file(exported, tmp_path):
    _, path, _ = exported
    data = bytearray(open(path, "rb").read())
    data[data.index(b"tfdc.v2") + 6] ^= 1
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(tfdc.FormatError) as e:
        tfdc.inspect(str(bad))
    assert str(e.value).startswith(f"{bad}: damaged tfdc-packed file")
    # Truncated: the section's own error names the file too, as tfdc.decode's
    # does (it did not: of many files inspected, which one?).
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(open(path, "rb").read()[:-100])
    with pytest.raises(tfdc.FormatError) as e:
        tfdc.inspect(cut)
    assert str(e.value).startswith(f"{cut}: section [") and e.value.status == "truncated"
    with pytest.raises(tfdc.FormatError) as e:
        tfdc.inspect(cut.read_bytes())
    assert str(e.value).startswith("section [")


def test_a_bias_is_named_after_its_kernel(tmp_path):
    # The converter names a folded bias after the op it fused last (here a
    # ReLU: "re_lu_1"); the report labels it by the kernel the operator
    # reads with it, and inspect reads the same names back.
    layers = keras.layers
    inputs = keras.Input((12, 12, 1))
    h = layers.Conv2D(64, 3, use_bias=False, name="c1")(inputs)
    h = layers.ReLU()(layers.BatchNormalization(name="bn1")(h))
    h = layers.Conv2D(64, 3, strides=4, use_bias=False, name="c2")(h)
    h = layers.ReLU()(layers.BatchNormalization(name="bn2")(h))
    model = keras.Model(inputs, layers.Dense(64, name="head")(layers.Flatten()(h)))
    rng = np.random.default_rng(0)
    for name in ("bn1", "bn2"):  # folded biases of two values: worth coding
        bn = model.get_layer(name)
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma, rng.choice([0.5, 1.0], beta.shape).astype("float32"), mean, var])
    path = tmp_path / "bn.tflite"
    report = tfdc.export(tfdc.fold_batchnorm(model), path)
    names = [layer.name for layer in report.layers]
    biases = [layer.name for layer in report.layers if len(layer.shape) == 1]
    assert len(biases) >= 2 and all(name.endswith("/bias") for name in biases), names
    assert {name[:-len("/bias")] for name in biases} <= {"c1", "c2", "head"}, names
    assert [layer.name for layer in tfdc.inspect(path).layers] == names


def test_recurrent_weights_are_named_by_their_layer(tmp_path):
    # Each bias holds its own count of zeros, so that its row is known by
    # its kept count. Export named a Bidirectional's bias "bi/backward_lstm"
    # (the converter's scope), and two Bidirectional layers' biases each
    # other's (the converter numbers its scopes apart from Keras); an
    # unrolled LSTM's "lstm/kernel/bias"; a GRU's two bias rows alike.
    # Inspect, without the model, named a looped cell's kernels "lstm#1" and
    # "lstm#2".
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((6, 4)),
        layers.Bidirectional(layers.LSTM(8, return_sequences=True, name="a"), name="bi1"),
        layers.Bidirectional(layers.LSTM(8, return_sequences=True, name="b"), name="bi2"),
        layers.LSTM(12, unroll=True, return_sequences=True, name="unrolled"),
        layers.GRU(8, name="gru"), layers.Dense(3, name="out")])
    rng = np.random.default_rng(0)
    n = 0  # zeros in the next bias (row), in the order of model.weights
    for variable in (v for v in model.weights if v.name == "bias"):
        # Three values: a record codes them smaller than the graph holds them.
        value = rng.choice([0.5, 1.0, 1.5], tuple(variable.shape)).astype("float32")
        for row in value.reshape(-1, value.shape[-1]):
            n += 1
            row[:n] = 0.0
        variable.assign(value)
    report = tfdc.export(model, tmp_path / "rnn.tflite", batch_size=1)
    rows = {layer.name: layer for layer in report.layers}
    expected = {"forward_a/bias": 1, "backward_a/bias": 2, "forward_b/bias": 3,
                "backward_b/bias": 4, "unrolled/bias": 5, "gru/bias[0]": 6, "gru/bias[1]": 7}
    for name, n in expected.items():
        assert name in rows and rows[name].weights - rows[name].nnz == n, (name, list(rows))
    inspected = [layer.name for layer in tfdc.inspect(tmp_path / "rnn.tflite").layers]
    for direction in ("forward_a", "backward_a"):
        assert f"bi1/{direction}/kernel" in inspected, inspected
        assert f"bi1/{direction}/recurrent_kernel" in inspected, inspected


def test_a_kernel_whose_tensor_name_lost_its_layer_is_named_by_its_values(tmp_path):
    # The converter names a grouped convolution's kernel "convolution" and a
    # TimeDistributed Dense's "arith.constant1": the export finds each Keras
    # kernel's values in a buffer (tfdc.exporter.kernel_buffers) and names
    # the row by its layer, its bias by the same operator.
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((5, 8, 8)), layers.TimeDistributed(layers.Dense(32, name="inner"), name="td"),
        layers.Reshape((5, 8, 32)), layers.Conv2D(32, 3, groups=4, name="grouped"),
        layers.Flatten(), layers.Dense(4, name="out")])
    names = [layer.name for layer in tfdc.export(model, tmp_path / "m.tflite").layers]
    assert {"inner", "grouped", "out"} <= set(names), names
    assert not any("constant" in n or n.startswith("convolution") for n in names), names


def test_a_bias_whose_kernel_stayed_in_the_graph_is_still_a_bias(tmp_path):
    # Full-integer, an int8 kernel of 256 values the packer leaves in the
    # deflated graph: its int32 bias's row was named "fc" like a kernel.
    rng = np.random.default_rng(0)
    x = rng.random((64, 16), np.float32)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, name="fc"),
                              keras.layers.Dense(2, name="out")])
    fc = model.get_layer("fc")
    fc.set_weights([rng.normal(size=(16, 64)).astype(np.float32),
                    rng.choice([0.25, 0.5], 64).astype(np.float32)])
    report = tfdc.export(model, tmp_path / "int8.tflite", batch_size=1,
                         representative_dataset=lambda: ([x[i:i + 1]] for i in range(64)))
    rows = {layer.name: layer for layer in report.layers}
    assert "fc/bias" in rows and rows["fc/bias"].shape == (64,), sorted(rows)
    assert "fc" not in rows or len(rows["fc"].shape) == 2


@pytest.mark.parametrize("full_integer", [False, True])
def test_keras_automatic_layer_names_name_their_own_rows(tmp_path, full_integer):
    # The converter scopes Keras's first Conv2D ("conv2d") as "conv2d_1":
    # the rows read conv2d_1#1 (144 weights) and conv2d_1#2 (4,608).
    keras.backend.clear_session()  # Keras's names as in a fresh process: conv2d, conv2d_1
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(16, 3),
                              keras.layers.Conv2D(32, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    rng = np.random.default_rng(0)
    model.set_weights([np.where(rng.random(w.shape) < 0.7, 0, np.round(w * 8) / 8)
                       .astype("float32") if w.ndim > 1 else w for w in model.get_weights()])
    x = rng.random((16, 12, 12, 1)).astype("float32")
    options = {"representative_dataset": lambda: ([x[i:i + 1]] for i in range(16))} \
        if full_integer else {}
    report = tfdc.export(model, tmp_path / "m.tflite", batch_size=1, **options)
    rows = {layer.name: layer.weights for layer in report.layers}
    first, second, dense = (layer.name for layer in model.layers if layer.weights)
    assert (rows[first], rows[second], rows[dense]) == (144, 4608, 20480), rows


def test_rows_are_named_and_ordered_alike_in_every_export(tmp_path):
    # weights="int8" put its DEQUANTIZE ops first: its rows came in tensor
    # order, named "ct/conv_transpose/int8", "arith.constant1" (biases);
    # tfdc.inspect named a Conv2DTranspose "ct/conv_transpose".
    from tfdc.bytecost import apply_settings
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(24, 1, name="pw")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", name="ct")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))
    apply_settings(model, {"c1": 0.5, "pw": 0.7, "ct": 0.8, "fc": 0.6},
                   {"c1": 4, "pw": 5, "ct": 2, "fc": 5})
    names = {}
    for weights in ("float32", "int8"):
        path = tmp_path / f"{weights}.tflite"
        names[weights] = [layer.name for layer in tfdc.export(model, path,
                                                              weights=weights).layers]
        names[weights + " inspect"] = [layer.name for layer in tfdc.inspect(path).layers]
    assert names["float32"] == ["c1", "c1/bias", "pw", "pw/bias", "ct", "fc"], names
    assert all(rows == names["float32"] for rows in names.values()), names


def _per_channel_int8(model, x):
    """The converter's own full-integer file (int8 in and out, per-channel
    scales: the vectors the packer patches), calibrated on `x`."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def test_patches_are_named_by_their_tensors_rows(tmp_path):
    # A per-channel int8 file's two scale vectors of fc1 (the kernel's and
    # the bias's, whose tensor the converter names after the layer) were
    # listed as "fc1 scale, fc1 scale".
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu",
                                                                     name="fc1"),
                              keras.layers.Dense(10, name="fc2")])
    x = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    for layer in model.layers:  # nonzero biases, quantized with scales of their own
        layer.bias.assign(np.random.default_rng(1).normal(0, 0.1, layer.bias.shape))

    names = [name for name, _ in tfdc.inspect(_per_channel_int8(model, x)).patches]
    assert "fc1 scale" in names and "fc1/bias scale" in names, names
    assert len(set(names)) == len(names), names


def test_many_patches_are_summed_with_the_largest_named():
    # A MobileNetV2's 90 scale vectors made one "Patches" line of 3,000
    # characters; to_dict (the CLI's --json) had none of them.
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((32,))] + [
        keras.layers.Dense(32 * (i + 1), activation="relu", name=f"d{i}") for i in range(5)])
    x = np.random.default_rng(0).random((16, 32), dtype=np.float32)
    for layer in model.layers:  # nonzero biases, quantized with scales of their own
        layer.bias.assign(np.random.default_rng(1).normal(0, 0.1, layer.bias.shape))
    report = tfdc.inspect(_per_channel_int8(model, x))
    assert len(report.patches) > 6, report.patches
    line = next(l for l in report.to_text().splitlines() if l.startswith("Patches"))
    total = sum(b for _, b in report.patches)
    assert f"{len(report.patches)} quantization vectors of the graph coded as records " \
           f"({total:,} B; the largest: " in line and line.endswith(", ...)")
    largest = max(report.patches, key=lambda p: p[1])
    assert line.split("the largest: ")[1].startswith(f"{largest[0]} {largest[1]:,} B")
    assert line.count(" B, ") == 6 and len(line) < 400
    assert report.to_dict()["patches"] == [{"name": n, "bytes": b} for n, b in report.patches]


def test_times_smaller_says_larger_where_it_is():
    from tfdc.report import times_smaller
    assert times_smaller(1_000, 46_000) == "46.0x smaller than"
    # A tiny model's packed file, larger than its float weights, read
    # "0.1x smaller than 76 B".
    assert times_smaller(611, 76) == "8.0x larger than"


def test_a_densely_coded_kernel_says_its_bits_count_its_zeros(tmp_path):
    # A kernel 40 % kept with 4 shared values, coded densely (zero one of
    # the codebook's 5 entries, no index stream), read "Weight bits P+Q 7.5"
    # beside its sparse neighbours' 2 or 3, with nothing to say why.
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, name="dense40"),
                              keras.layers.Dense(64, name="sparse5")])
    for name, kept in (("dense40", 0.4), ("sparse5", 0.05)):
        kernel = model.get_layer(name).kernel
        values = np.array([-0.3, -0.1, 0.1, 0.3], "float32")[rng.integers(0, 4, (64, 64))]
        kernel.assign(np.where(rng.random((64, 64)) < kept, values, 0).astype("float32"))
    report = tfdc.export(model, tmp_path / "m.tflite")
    rows = {l.name: l for l in report.layers}
    dense, sparse = rows["dense40"], rows["sparse5"]
    assert not dense.sparse and sparse.sparse
    assert dense.weight_bits_pq == pytest.approx(3 * dense.weights / dense.nnz)
    line = [l for l in report.to_text().splitlines() if l.startswith("Coded densely")]
    assert line == ["Coded densely           dense40: every weight coded, zeros too (no index "
                    "stream), so their weight bits per kept weight include the zeros' codes"]
    assert "Coded densely: dense40:" in report.to_markdown()


def test_a_full_integer_file_says_so_with_its_input_and_output_types(tmp_path):
    # Only inspect --json's per-layer dtype told a full-integer file from a
    # float one with int8 weights.
    import tensorflow as tf
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="fc1"),
                              keras.layers.Dense(4, name="out")])
    samples = rng.random((32, 16)).astype(np.float32)

    def calibration():
        return ([samples[i:i + 1]] for i in range(32))

    full = tfdc.export(model, tmp_path / "full.tflite", representative_dataset=calibration)
    assert full.integer_model == ("int8", "float32", "float32")
    assert re.search(r"\nInteger model +int8 activations; inputs float32, outputs float32\n",
                     full.to_text())
    assert tfdc.inspect(tmp_path / "full.tflite").integer_model == full.integer_model
    assert full.to_dict()["integer_model"] == {"activations": "int8", "inputs": "float32",
                                               "outputs": "float32"}
    from tfdc.quantize import configure_full_integer

    def int8_io(converter):
        configure_full_integer(converter, calibration)
        converter.inference_input_type = converter.inference_output_type = tf.int8
    io = tfdc.export(model, tmp_path / "io.tflite", configure=int8_io)
    assert io.integer_model == ("int8", "int8", "int8")
    # Float activations (int8 weights or none): no such line.
    for report in (tfdc.export(model, tmp_path / "float.tflite"),
                   tfdc.inspect(convert(model, configure=lambda c: setattr(
                       c, "optimizations", [tf.lite.Optimize.DEFAULT])))):
        assert report.integer_model is None and "Integer model" not in report.to_text()
