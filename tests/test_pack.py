"""Tests for tfdc.pack: real Keras → TFLite models packed and decoded run
bit-identically in the LiteRT interpreter (float, int8, int4 and int2
weights); every record kind round-trips bit-exactly; the packer picks the
smallest encoding and is deterministic."""

import dataclasses

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfdc import format as fmt
from tfdc import pack, rans, tflite_schema, unpack
from tfdc.pack import pack_tflite
from tfdc.flatbuf import read_model
from tfdc.tflite_schema import constant_model

from smooth_weights import smooth_kernel


def _clustered_pruned(rng, shape, centroids=16, density=0.3):
    c = rng.normal(size=centroids).astype(np.float32)
    w = c[rng.integers(0, centroids, shape)]
    # np.where, not a multiplication: `w * 0` is −0.0 for negative w, which the
    # format (rightly) treats as a nonzero bit pattern.
    return np.where(rng.random(shape) < density, w, np.float32(0))


def _convert(model):
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture(scope="module")
def keras_models():
    """Two small converted models with clustered, pruned kernels and trained-
    looking (random) biases: an image model (Conv2D, DepthwiseConv2D, Dense)
    and an Embedding model."""
    import keras
    rng = np.random.default_rng(7)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3)(inp)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    image = keras.Model(inp, keras.layers.Dense(10)(x))
    tokens = keras.Input((6,), dtype="int32")
    y = keras.layers.Embedding(300, 24)(tokens)
    y = keras.layers.Flatten()(y)
    text = keras.Model(tokens, keras.layers.Dense(5)(y))
    for model in (image, text):
        for layer in model.layers:
            weights = layer.get_weights()
            if weights:
                weights[0] = _clustered_pruned(rng, weights[0].shape)
                weights[1:] = [rng.normal(0, 0.1, w.shape).astype(np.float32)
                               for w in weights[1:]]
                layer.set_weights(weights)
    image_input = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    text_input = rng.integers(0, 300, size=(2, 6)).astype(np.int32)
    return [(_convert(image), image_input), (_convert(text), text_input)]


def _run(model_bytes, x=None):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    if x is not None:
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_keras_models_decode_to_bit_identical_outputs(keras_models):
    for tflite, x in keras_models:
        packed, info = pack_tflite(tflite)
        assert info.records, "the clustered weights must be packed"
        assert info.total_bytes == len(packed) < len(tflite) and info.version == 2
        decoded = unpack.decode(packed, backend="python")
        assert len(decoded) == info.decoded_bytes
        expected = _run(tflite, x)
        got = _run(decoded, x)
        assert (expected.view(np.uint32) == got.view(np.uint32)).all()


def test_biases_are_coded_as_planes():
    # A trained bias: 300 distinct float32 values (the size of LeNet's fc1).
    bias = np.random.default_rng(2).normal(0.02, 0.05, 300).astype(np.float32)
    packed, info = pack_tflite(constant_model([bias]))
    r = info.records[0]
    assert r.value_mode == "planes" and r.planes == 4
    # exponent byte entropy-coded, mantissa bytes stored: about 27 of 32 bits
    assert r.payload_bytes < 0.87 * r.raw_bytes
    assert unpack.decode(packed, backend="python")[r.out_offset:][:1200] == bias.tobytes()


def test_an_integer_table_that_deflates_better_stays_in_the_graph():
    # An index table (arange * 3 + 7): its record took 39,816 B where the
    # deflated graph holds it in 28,193 B; the check was made only for
    # records over 3/4 of their raw size, which suits float weights alone.
    table = (np.arange(20_000, dtype=np.int32) * 3 + 7) % 60_000
    packed, info = pack_tflite(constant_model([table]))
    assert not info.records
    assert len(packed) < pack._inline_cost(np.frombuffer(table.tobytes(), np.uint8)) + 1_000
    assert unpack.decode(packed, backend="python").find(table.tobytes()) > 0


def test_gaps_of_a_channel_pruned_kernel_are_range_coded(monkeypatch):
    # Whole units pruned, the rest kept (StructuredPruning before shrink):
    # every kept row is one run of gaps of 1, which Huffman codes at a bit
    # each (xz found 3.5 % of such a file left); the range code, in a
    # fraction of a bit.
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(120, 200)).astype(np.float32)
    kernel[rng.random(120) < 0.4] = 0.0
    nnz = int(np.count_nonzero(kernel))
    packed, info = pack_tflite(constant_model([kernel]))
    # Its gap stream made a chunk of positions at a time: the same file.
    monkeypatch.setattr(pack, "_GAP_CHUNK", 1000)
    assert pack_tflite(constant_model([kernel]))[0] == packed
    record, = info.records
    assert record.position_mode == "sparse" and record.gap_count >= nnz
    assert record.gap_bits < 0.05 * nnz
    huffman_only, _ = pack_tflite(constant_model([kernel]), _force={"codes": "huffman"})
    assert len(packed) < len(huffman_only) - 0.9 * nnz / 8
    for backend in ("python", "native"):
        decoded = unpack.decode(packed, backend=backend)
        assert decoded.find(kernel.tobytes()) > 0, backend


def test_parts_add_up(keras_models):
    for tflite, _ in keras_models:
        packed, info = pack_tflite(tflite)
        assert info.stub_bytes == fmt.STUB_SIZE == info.flatbuffer_bytes
        assert (info.stub_bytes + info.header_bytes + info.meta_bytes + info.payload_bytes
                + info.crc_bytes) == info.total_bytes
        assert info.graph_bytes + info.descriptor_bytes == info.meta_bytes
        assert sum(r.payload_bytes for r in info.records) == info.payload_bytes
        # record_bytes share out the descriptors: they add up to within rounding
        shares = sum(r.record_bytes for r in info.records)
        assert abs(shares - info.payload_bytes - info.descriptor_bytes) <= len(info.records) + 2
    # Nothing to code (random bytes): deflated with the (empty) records the
    # graph came out 3 B smaller than alone, and inspect showed
    # "descriptors -3".
    rng = np.random.default_rng(1)
    w = rng.integers(0, 256, size=100_000).astype(np.uint8)
    _, info = pack_tflite(constant_model([w, rng.normal(size=7).astype(np.float32)]))
    assert not info.records and info.descriptor_bytes >= 0 and info.graph_bytes >= 0
    assert info.graph_bytes + info.descriptor_bytes == info.meta_bytes


def test_strip_debug_is_smaller_and_bit_identical(keras_models):
    for tflite, x in keras_models:
        packed, info = pack_tflite(tflite)
        stripped, stripped_info = pack_tflite(tflite, strip_debug=True)
        assert len(stripped) < len(packed)
        assert stripped_info.payload_bytes == info.payload_bytes  # weights untouched
        assert b"CONVERSION_METADATA" not in unpack.parse(stripped).meta
        got = _run(unpack.decode(stripped, backend="python"), x)
        assert (_run(tflite, x).view(np.uint32) == got.view(np.uint32)).all()
        # Weight tensors keep their names, for `tfdc inspect`.
        names = {n for r in unpack.read_pack_info(stripped).records for n in r.tensor_names}
        assert names and all(names)


def test_stock_interpreter_refuses_the_packed_file(keras_models):
    tflite, x = keras_models[0]
    packed, _ = pack_tflite(tflite)
    with pytest.raises(Exception, match="schema version 0|0th entry"):
        _run(packed, x)


def test_pack_is_deterministic_and_a_decoded_file_repacks_to_the_same_bytes(keras_models):
    for tflite, _ in keras_models:
        packed, _ = pack_tflite(tflite, strip_debug=True)
        assert pack_tflite(tflite, strip_debug=True)[0] == packed
        decoded = unpack.decode(packed, backend="python")
        assert pack_tflite(decoded, strip_debug=True)[0] == packed


def test_pack_info_matches_read_pack_info(keras_models):
    for tflite, _ in keras_models:
        packed, info = pack_tflite(tflite)
        again = unpack.read_pack_info(packed)
        assert [dataclasses.asdict(r) for r in info.records] == [
            dataclasses.asdict(r) for r in again.records]
        for field in ("stub_bytes", "header_bytes", "meta_bytes", "meta_raw_bytes",
                      "graph_bytes", "graph_raw_bytes", "descriptor_bytes", "payload_bytes",
                      "decoded_bytes", "total_bytes", "num_tables"):
            assert getattr(info, field) == getattr(again, field), field
        for r in info.records:
            assert r.record_bytes < r.raw_bytes
            assert r.value_bits >= r.value_entropy_bits - 1e-6
            assert r.dtype == "float32" and r.tensor_names


def test_select_and_min_bytes(keras_models):
    tflite, _ = keras_models[0]
    _, all_info = pack_tflite(tflite)
    chosen = all_info.records[0].buffer_index
    _, info = pack_tflite(tflite, select=lambda name, index: index == chosen)
    assert [r.buffer_index for r in info.records] == [chosen]
    _, info = pack_tflite(tflite, min_bytes=10**9)
    assert info.records == []
    # A regular expression (a str) selects by tensor name, as tfdc pack's --select.
    name = all_info.records[0].tensor_names[0]
    by_name = pack_tflite(tflite, select=re.escape(name))
    assert by_name == pack_tflite(tflite, select=lambda n, index: re.search(re.escape(name), n))
    assert [r.tensor_names for r in by_name[1].records] == [all_info.records[0].tensor_names]
    with pytest.raises(ValueError, match="select '\\(' is not a valid regular expression"):
        pack_tflite(tflite, select="(")
    with pytest.raises(TypeError, match="select must be a callable"):
        pack_tflite(tflite, select=3)
    for bad in (-5, 2.5, None):
        with pytest.raises(ValueError, match="min_bytes must be an integer >= 0"):
            pack_tflite(tflite, min_bytes=bad)
    # block=2.5 packed silently (in 2-symbol segments: a larger file);
    # 4096.0, "4096" and gap_alphabet=16.0 were bare TypeErrors.
    for bad in (0, 2.5, 4096.0, "4096", True, 2 ** 32):
        with pytest.raises(ValueError, match=r"block must be an integer in 1 … 2\^32−1, got "):
            pack_tflite(tflite, block=bad)
    for bad in (3, 16.0, "16", 1, 65536):
        with pytest.raises(ValueError, match="gap_alphabet must be a power of two in 2 … 32768"):
            pack_tflite(tflite, gap_alphabet=bad)
    assert pack_tflite(tflite, block=np.int64(4096), gap_alphabet=np.int32(16))[0] == \
        pack_tflite(tflite, block=4096, gap_alphabet=16)[0]


def test_worked_example_of_the_spec():
    # FORMAT.md §8: [0, 0.5, 0, 0, -1, 0.5, 0, 0], sparse, G = 4, K = 2.
    x = np.array([0, 0.5, 0, 0, -1, 0.5, 0, 0], np.float32)
    packed, info = pack_tflite(constant_model([x]), min_bytes=0, gap_alphabet=4,
                               _force={"position_mode": "sparse", "value_mode": "codebook",
                                       "codes": "huffman", "codebook_encoding": "raw"})
    parsed = unpack.parse(packed)
    assert parsed.meta[parsed.F:] == bytes.fromhex(
        "02" "00 03 00 00 00 21 02" "00 02 00 00 11" "01" "01 20 00 00 01 01" "03 04 03"
        "00 80 20 01" "00 02 80 80 80 f8 03 20 80 7f ff ff" "01 80 20 01")
    assert packed[parsed.payload_start:-4] == bytes.fromhex("b0 40")
    out = unpack.decode(packed, backend="python")
    r = info.records[0]
    assert out[r.out_offset:r.out_offset + 32] == x.tobytes()


# ------------------------------------------------------------ every record kind
def _int_bits(values, bits):
    """Sub-byte values packed as TFLite stores them (first in the low bits)."""
    per = 8 // bits
    v = (np.asarray(values, np.int64) & ((1 << bits) - 1)).reshape(-1, per)
    return sum(v[:, k] << (bits * k) for k in range(per)).astype(np.uint8)


def _tensor_of(bits, kind, rng, n, sparsity, distinct):
    """`(array or (bytes, type, shape), raw bytes)` of n elements."""
    if bits < 8:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        vals = rng.choice(rng.integers(lo, hi + 1, size=max(1, min(distinct, 1 << bits))), n)
        vals[rng.random(n) < sparsity] = 0
        data = _int_bits(vals, bits)
        return (data, {4: 17, 2: 19}[bits], (n,)), data.tobytes()
    dtype = {(8, "int"): np.int8, (16, "int"): np.int16, (32, "int"): np.int32,
             (64, "int"): np.int64, (8, "uint"): np.uint8, (16, "float"): np.float16,
             (32, "float"): np.float32, (64, "float"): np.float64}[(bits, kind)]
    if kind == "float":
        pool = rng.normal(size=distinct).astype(dtype)
    else:
        info = np.iinfo(dtype)
        pool = rng.integers(max(info.min, -1000), min(info.max, 1000), size=distinct,
                            endpoint=True).astype(dtype)
    a = rng.choice(pool, n)
    a[rng.random(n) < sparsity] = 0
    return a.reshape(n // 4, 4), a.tobytes()


KINDS = [(vm, pm, scan) for vm in ("codebook", "planes") for pm in ("dense", "sparse")
         for scan in ("row", "column")]
WIDTHS = [(2, "int"), (4, "int"), (8, "int"), (8, "uint"), (16, "int"), (16, "float"),
          (32, "int"), (32, "float"), (64, "int"), (64, "float")]


def _table_kinds(packed):
    return {t.kind for t in unpack.parse(packed).tables}


@pytest.mark.parametrize("codes", ["order-0", "rans", "rans-grouped"])
@pytest.mark.parametrize("bits,kind", WIDTHS)
@pytest.mark.parametrize("value_mode,position_mode,scan", KINDS)
def test_every_record_kind_round_trips(value_mode, position_mode, scan, bits, kind, codes):
    rng = np.random.default_rng(bits * 7 + len(kind))
    tensor, raw = _tensor_of(bits, kind, rng, 96, 0.6, 12)
    force = {"value_mode": value_mode, "position_mode": position_mode, "scan": scan}
    if codes != "order-0":
        force["codes"] = codes    # every stream of the record with a kind 3 / 4 table
    if bits < 8:
        force["elem_bits"] = bits
        tensor = (tensor[0], tensor[1], (8, 12))
    packed, info = pack_tflite(constant_model([tensor]), min_bytes=0, _force=force)
    r = info.records[0]
    assert (r.value_mode, r.position_mode) == (value_mode, position_mode)
    assert r.scan == scan and r.elem_bits == bits
    decoded = unpack.decode(packed, backend="python")
    assert decoded[r.out_offset:r.out_offset + len(raw)] == raw
    assert (fmt.TABLE_RANS in _table_kinds(packed)) == (codes == "rans")
    assert (fmt.TABLE_RANS_GROUPED in _table_kinds(packed)) == (codes == "rans-grouped")


def _smooth_int8_dense_model(rows=12):
    """A Keras Dense layer on a flattened 28 x 28 image whose kernel columns
    are smooth images, converted with dynamic-range quantization: an int8
    [rows, 784] kernel, as ai-edge-quantizer and the converter write them."""
    import keras
    import tensorflow as tf
    inp = keras.Input((784,))
    model = keras.Model(inp, keras.layers.Dense(rows)(inp))
    kernel = smooth_kernel(rows=rows, bits=8, seed=8).T.astype(np.float32) / 1000
    model.layers[-1].set_weights([kernel, np.zeros(rows, np.float32)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    x = np.random.default_rng(0).normal(size=(4, 784)).astype(np.float32)
    return converter.convert(), x


@pytest.mark.parametrize("bits", [8, 4])
def test_smooth_kernels_get_context_modelled_codes_and_run_bit_identically(bits):
    # A dense kernel after a 28 x 28 image: each weight close to its left
    # and upper neighbours. The packer finds both lags (1 and 28) and codes
    # the kernel with a kind 3 table, smaller than its order-0 code.
    if bits == 8:
        model, x = _smooth_int8_dense_model()
    else:
        vals = smooth_kernel(rows=12, bits=4, seed=4).reshape(-1)
        model, x = _dequantize_model(17, _int_bits(vals, 4), len(vals), scale=0.25), None
    expected = _run(model, x)
    packed, info = pack_tflite(model)
    order0, _ = pack_tflite(model, _force={"codes": "huffman"})
    assert fmt.TABLE_RANS in _table_kinds(packed)
    assert fmt.TABLE_RANS not in _table_kinds(order0)
    assert len(packed) < 0.95 * len(order0)
    assert f"planes/dense{'/int4' if bits == 4 else ''}/context" in [r.kind for r in
                                                                     info.records]
    assert [r.kind for r in unpack.read_pack_info(packed).records] == [r.kind for r in
                                                                        info.records]
    table = next(t for t in unpack.parse(packed).tables if t.kind == fmt.TABLE_RANS)
    model = table.rans_model()
    assert {model.lag1, model.lag2} == {1, 28}
    # version 2.1: flags bit 0 and version_minor 1 (§4, §10)
    _, major, minor = fmt.PREFIX.unpack_from(packed, fmt.STUB_SIZE)
    assert (major, minor, packed[fmt.STUB_SIZE + fmt.PREFIX.size]) == (2, 1, fmt.FLAG_RANS)
    for backend in ("python", "native"):
        if backend == "native" and unpack._native() is None:
            continue
        got = _run(unpack.decode(packed, backend=backend), x)
        assert (got.view(np.uint32) == expected.view(np.uint32)).all(), backend


def test_rows_and_columns_of_different_spreads_get_kind_4_tables_and_run_bit_identically():
    # An int4 kernel whose rows come in two spreads and whose columns'
    # spread follows the position in a block of 16 (a per-channel quantizer
    # and a Hadamard rotation): the packer gives it a kind 4 table of row
    # and column groups, smaller than kind 3; with a kind 3 kernel beside
    # it the file announces both (flags 3, version 2.2).
    from smooth_weights import grouped_kernel
    vals = grouped_kernel(rows=40, row_len=256, bits=4, seed=7)
    model = _dequantize_model(17, _int_bits(vals.reshape(-1), 4), vals.size, scale=0.25,
                              shape=list(vals.shape))
    expected = _run(model)
    packed, info = pack_tflite(model)
    kind3, _ = pack_tflite(model, _force={"codes": "rans"})
    assert _table_kinds(packed) >= {fmt.TABLE_RANS_GROUPED}
    assert fmt.TABLE_RANS not in _table_kinds(packed)
    assert len(packed) < 0.95 * len(kind3)
    assert "planes/dense/int4/context" in [r.kind for r in info.records]
    g = next(t for t in unpack.parse(packed).tables
             if t.kind == fmt.TABLE_RANS_GROUPED).rans_model().groups
    assert (g.row_len, len(g.row_group), g.row_groups) == (256, 40, 2)
    _, major, minor = fmt.PREFIX.unpack_from(packed, fmt.STUB_SIZE)
    assert (major, minor, packed[fmt.STUB_SIZE + fmt.PREFIX.size]) == (
        2, 2, fmt.FLAG_RANS_GROUPED)
    for backend in ("python", "native"):
        if backend == "native" and unpack._native() is None:
            continue
        got = _run(unpack.decode(packed, backend=backend))
        assert (got.view(np.uint32) == expected.view(np.uint32)).all(), backend
    # both kinds in one file
    smooth = smooth_kernel(rows=12, bits=8, seed=8).astype(np.int8)
    both, _ = pack_tflite(constant_model([smooth, (_int_bits(vals.reshape(-1), 4), 17,
                                                   vals.shape)]))
    assert _table_kinds(both) >= {fmt.TABLE_RANS, fmt.TABLE_RANS_GROUPED}
    _, _, minor = fmt.PREFIX.unpack_from(both, fmt.STUB_SIZE)
    assert (minor, both[fmt.STUB_SIZE + fmt.PREFIX.size]) == (
        2, fmt.FLAG_RANS | fmt.FLAG_RANS_GROUPED)
    assert unpack.decode(both, backend="python") == unpack.decode(both)


def test_per_channel_scales_are_patched_and_run_bit_identically():
    # The converter's per-channel int8 kernel keeps its 64 float32 scales in
    # the flatbuffer: the packer codes them as a patch (format 2.3, §6.7),
    # which makes the file smaller, and the decoded file is the one without.
    model, x = _smooth_int8_dense_model(rows=64)
    expected = _run(model, x)
    packed, info = pack_tflite(model)
    unpatched, plain_info = pack_tflite(model, _patches=False)
    assert not plain_info.patches
    assert [(r.dtype, r.num_elements, r.elem_bits) for r in info.patches] == [
        ("float32", 64, 32)]
    assert info.patches[0].tensor_names[0].endswith("(scale)")
    assert len(packed) < len(unpatched)
    _, major, minor = fmt.PREFIX.unpack_from(packed, fmt.STUB_SIZE)
    flags = packed[fmt.STUB_SIZE + fmt.PREFIX.size]
    assert (major, minor) == (2, 3) and flags & fmt.FLAG_PATCHES
    # the patched range is cleared in the meta stream
    parsed = unpack.parse(packed)
    patch = parsed.patches[0]
    assert not any(parsed.meta[patch.out_offset:patch.out_offset + patch.out_size])
    decoded = unpack.decode(unpatched, backend="python")
    assert unpack.decode(packed, backend="python") == decoded
    if unpack._native() is not None:
        assert unpack.decode(packed, backend="native") == decoded
    got = _run(unpack.decode(packed), x)
    assert (got.view(np.uint32) == expected.view(np.uint32)).all()
    again = unpack.read_pack_info(packed)
    assert [dataclasses.asdict(r) for r in again.patches] == [
        dataclasses.asdict(r) for r in info.patches]
    assert [dataclasses.asdict(r) for r in again.records] == [
        dataclasses.asdict(r) for r in info.records]


def test_every_quantization_vector_can_be_patched():
    # Per-channel scales and nonzero int64 zero points, forced into patches
    # however small (`_patches=True`): both decoders give the unpatched file
    # byte for byte. (XNNPACK does not run a per-channel DEQUANTIZE with
    # nonzero zero points, so the model is not run.)
    rng = np.random.default_rng(3)
    vals = rng.integers(-100, 100, (6, 40))
    model = _dequantize_model(9, vals.astype(np.int8).view(np.uint8).reshape(-1), vals.size,
                              shape=[6, 40], scale=rng.uniform(0.01, 0.1, 6),
                              zero_point=rng.integers(-5, 5, 6))
    packed, info = pack_tflite(model, _patches=True)
    unpatched, _ = pack_tflite(model, _patches=False)
    assert sorted((r.dtype, r.elem_bits) for r in info.patches) == [("float32", 32),
                                                                     ("int64", 64)]
    decoded = unpack.decode(unpatched, backend="python")
    assert unpack.decode(packed, backend="python") == decoded
    if unpack._native() is not None:
        assert unpack.decode(packed, backend="native") == decoded
    # Unforced, vectors under min_bytes stay in the flatbuffer.
    _, info = pack_tflite(model)
    assert not info.patches


def test_files_without_kind_3_tables_stay_version_2_0(keras_models):
    for tflite, _ in keras_models:
        packed, _ = pack_tflite(tflite)
        assert fmt.TABLE_RANS not in _table_kinds(packed)
        _, major, minor = fmt.PREFIX.unpack_from(packed, fmt.STUB_SIZE)
        assert (major, minor, packed[fmt.STUB_SIZE + fmt.PREFIX.size]) == (2, 0, 0)


def test_transforms_are_chosen_where_they_pay():
    rng = np.random.default_rng(0)
    ints = rng.integers(-20, 20, 4000).astype(np.int32)          # small signed ints
    floats = rng.normal(0, 0.05, 4000).astype(np.float32)        # trained-bias-like
    _, info = pack_tflite(constant_model([ints, floats]), min_bytes=0,
                          _force={"value_mode": "planes"})
    chosen = {r.dtype: r.transform for r in info.records}
    assert chosen["int32"] == "zigzag"
    assert chosen["float32"] in ("rotate", "identity")
    for r in info.records:
        assert r.payload_bytes < 0.9 * r.raw_bytes


@pytest.mark.parametrize("elem_bits", [16, 32, 64])
def test_plane_histograms_from_the_value_histogram_are_the_planes_own(elem_bits):
    # The packer prices planes of a priced codebook from the values'
    # histogram; it must count what each made plane holds, every transform.
    rng = np.random.default_rng(elem_bits)
    dtype = {16: np.uint16, 32: np.uint32, 64: np.uint64}[elem_bits]
    few = rng.normal(0, 0.05, 40).astype(np.float32).view(np.uint32).astype(dtype)
    for vals in (rng.choice(few, 5000),                                     # a clustered kernel
                 rng.integers(0, 1 << min(elem_bits, 62), 3000, dtype=np.int64).astype(dtype)):
        unique, counts = np.unique(vals, return_counts=True)
        for t in fmt.TRANSFORMS:
            made = [pack._histogram(p) for p in pack._planes(fmt.transform(vals, t, elem_bits),
                                                              elem_bits)]
            summed = [h for _, h in pack._plane_histograms(unique, counts, t, elem_bits)]
            assert len(made) == len(summed) == elem_bits // 8
            for a, b in zip(made, summed):
                assert b.dtype == np.int64
                assert np.array_equal(np.trim_zeros(a, "b"), np.trim_zeros(b, "b"))


def test_sub_byte_tensors_are_coded_as_sub_byte_symbols():
    rng = np.random.default_rng(1)
    for bits, tensor_type in ((4, 17), (2, 19)):
        vals = rng.choice([0, 0, 0, 1, -1], 8000)
        data = _int_bits(vals, bits)
        packed, info = pack_tflite(constant_model([(data, tensor_type, (8000,))]))
        r = info.records[0]
        assert r.dtype == f"int{bits}" and r.elem_bits in (bits, 8)
        assert r.record_bytes < 0.8 * len(data)
        decoded = unpack.decode(packed, backend="python")
        assert decoded[r.out_offset:r.out_offset + len(data)] == data.tobytes()
    # int4 values with no structure beyond their own distribution: 4-bit symbols
    vals = rng.choice([0, 1, -1, 2, -2, 3], 8000, p=[0.5, 0.2, 0.15, 0.08, 0.05, 0.02])
    _, info = pack_tflite(constant_model([(_int_bits(vals, 4), 17, (8000,))]))
    assert info.records[0].elem_bits == 4


def _dequantize_model(tensor_type, data, n, scale=0.5, shape=None, zero_point=0):
    """A runnable model: a constant int4 / int2 tensor of `n` elements
    (`shape`, default `[n]`) through DEQUANTIZE; a `scale` and `zero_point`
    per channel (axis 0) when they are arrays."""
    schema = tflite_schema.get()
    m = schema.ModelT()
    m.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = 6  # DEQUANTIZE
    code.version = 1
    m.operatorCodes = [code]
    m.buffers = [schema.BufferT(), schema.BufferT(), schema.BufferT()]
    m.buffers[1].data = np.asarray(data, np.uint8)
    q, o = schema.TensorT(), schema.TensorT()
    q.shape = o.shape = np.array(shape or [n], np.int32)
    q.type, q.buffer, q.name = tensor_type, 1, "weights"
    q.quantization = schema.QuantizationParametersT()
    q.quantization.scale = np.atleast_1d(scale).astype(np.float32)
    q.quantization.zeroPoint = np.atleast_1d(zero_point).astype(np.int64)
    o.type, o.buffer, o.name = 0, 2, "out"
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = [q, o], [], [1], [op]
    m.subgraphs = [sg]
    return tflite_schema.build(m)


@pytest.mark.parametrize("bits,tensor_type", [(4, 17), (2, 19)])
def test_int4_and_int2_models_run_bit_identically_in_litert(bits, tensor_type):
    rng = np.random.default_rng(bits)
    vals = rng.choice(np.arange(-(1 << (bits - 1)), 1 << (bits - 1)), 4096)
    vals[rng.random(4096) < 0.7] = 0
    model = _dequantize_model(tensor_type, _int_bits(vals, bits), 4096)
    expected = _run(model)
    assert (expected == vals * 0.5).all()  # LiteRT reads the low bits first
    packed, info = pack_tflite(model)
    assert info.records and info.total_bytes < len(model)
    got = _run(unpack.decode(packed, backend="python"))
    assert (got.view(np.uint32) == expected.view(np.uint32)).all()


SPECIAL = np.array([0x80000000, 0x7FC00001, 0xFFC12345, 0x7F800000, 0xFF800000],
                   np.uint32).view(np.float32)  # −0.0, NaN payloads, ±Inf


def _tensor(seed, shape, sparsity, centroids, specials, dtype):
    rng = np.random.default_rng(seed)
    if dtype in (np.float32, np.float64, np.float16):
        c = rng.normal(size=centroids).astype(dtype)
        if specials and dtype == np.float32:
            c[:min(len(SPECIAL), centroids)] = SPECIAL[:centroids]
    else:
        info = np.iinfo(dtype)
        c = rng.integers(info.min, info.max, size=centroids, endpoint=True).astype(dtype)
    w = c[rng.integers(0, centroids, shape)]
    w[rng.random(shape) < sparsity] = 0
    return w.astype(dtype)


FORCES = [None, {"position_mode": "dense"}, {"position_mode": "sparse"},
          {"position_mode": "sparse", "scan": "column"}, {"value_mode": "planes"},
          {"value_mode": "codebook", "position_mode": "dense", "scan": "column"}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       sparsity=st.sampled_from([0.0, 0.3, 0.9, 1.0]) | st.floats(0, 1),
       centroids=st.integers(1, 256), specials=st.booleans(),
       dtype=st.sampled_from([np.float32, np.int8, np.int32, np.int16, np.uint8, np.float16,
                              np.int64, np.float64]),
       force=st.sampled_from(FORCES), gap_alphabet=st.sampled_from([None, 2, 16, 32768]),
       block=st.sampled_from([1, 7, 4096]))
def test_records_round_trip_bit_exactly(seed, shape, sparsity, centroids, specials, dtype,
                                        force, gap_alphabet, block):
    w = _tensor(seed, shape, sparsity, centroids, specials, dtype)
    packed, info = pack_tflite(constant_model([w]), min_bytes=0, block=block,
                               gap_alphabet=gap_alphabet, _force=force)
    decoded = unpack.decode(packed, backend="python")
    for r in info.records:
        assert decoded[r.out_offset:r.out_offset + r.raw_bytes] == w.tobytes()
        if gap_alphabet and r.position_mode == "sparse":
            assert r.gap_alphabet == gap_alphabet
        if force and force.get("position_mode"):
            assert r.position_mode == force["position_mode"]
    if force:
        assert len(info.records) == 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sparsity=st.floats(0, 1), centroids=st.integers(1, 64))
def test_fp16_codebook_decodes_to_rounded_values(seed, sparsity, centroids):
    w = _tensor(seed, (30, 20), sparsity, centroids, False, np.float32) * np.float32(3.3)
    packed, info = pack_tflite(constant_model([w]), min_bytes=0, codebook_fp16=True,
                               _force={"value_mode": "codebook"})
    decoded = unpack.decode(packed, backend="python")
    expected = w.astype(np.float16).astype(np.float32)
    r = info.records[0]
    got = np.frombuffer(decoded, np.float32, w.size, r.out_offset)
    assert (got.view(np.uint32) == expected.reshape(-1).view(np.uint32)).all()
    assert info.fp16_max_abs_change == pytest.approx(float(np.max(np.abs(w - expected))))
    if r.codebook_size:
        assert r.codebook_encoding == "fp16"


def test_fp16_codebook_is_skipped_when_binary16_would_overflow():
    w = np.array([0, 1e6, 0, 2.5] * 20, np.float32)
    packed, info = pack_tflite(constant_model([w]), min_bytes=0, codebook_fp16=True)
    r = info.records[0]
    assert r.codebook_encoding == "raw"
    decoded = unpack.decode(packed, backend="python")
    assert decoded[r.out_offset:r.out_offset + w.nbytes] == w.tobytes()


def test_fp16_rounding_in_chunks_is_rounding_at_once(monkeypatch):
    """Rounding runs in chunks (a whole 192 MB tensor's temporaries peaked at
    2.3 GB): chunks of 7 elements give the same file, the same largest
    change, and the same refusal of a value binary16 cannot hold."""
    rng = np.random.default_rng(5)
    w = (rng.normal(size=(30, 20)) * 3.3).astype(np.float32)
    w[rng.random(w.shape) < 0.5] = 0
    w.flat[[3, 11]] = [np.inf, -np.inf]
    whole = pack_tflite(constant_model([w]), min_bytes=0, codebook_fp16=True)
    monkeypatch.setattr(pack, "_FP16_CHUNK", 7)
    chunked = pack_tflite(constant_model([w]), min_bytes=0, codebook_fp16=True)
    assert chunked[0] == whole[0]
    assert chunked[1].fp16_max_abs_change == whole[1].fp16_max_abs_change > 0
    w.flat[598] = 1e6  # in the last chunk
    assert pack._fp16_round(w.reshape(-1).view(np.uint32)) is None


@pytest.mark.parametrize("chunk, force", [
    ("pack._GAP_CHUNK", {"scan": "row", "position_mode": "sparse"}),
    ("pack._GAP_CHUNK", {"scan": "column", "position_mode": "sparse"}),
    ("rans.CHUNK", {"value_mode": "planes"}),
    ("rans.CHUNK", {"value_mode": "codebook"}),
    ("rans.CHUNK", {"value_mode": "codebook", "position_mode": "sparse"})])
def test_work_done_in_chunks_gives_the_same_file(monkeypatch, chunk, force):
    # The position stream's gaps are counted, and histograms, planes and
    # codebook indices made, a chunk at a time (a large tensor's int64
    # positions were 8 bytes per kept weight, twice over; bincount's int64
    # copy of a 12M-weight plane was 96 MB).
    rng = np.random.default_rng(6)
    w = _clustered_pruned(rng, (60, 50), centroids=8, density=0.2)
    whole = pack_tflite(constant_model([w]), min_bytes=0, _force=force)
    module, name = chunk.split(".")
    monkeypatch.setattr({"pack": pack, "rans": rans}[module], name, 7)
    chunked = pack_tflite(constant_model([w]), min_bytes=0, _force=force)
    assert chunked[0] == whole[0]
    r = chunked[1].records[0]
    assert all(getattr(r, key) == value for key, value in force.items()), r
    decoded = unpack.decode(chunked[0], backend="python")
    assert decoded[r.out_offset:r.out_offset + w.nbytes] == w.tobytes()


def _pack_peak(w):
    """`(packed, info, tracemalloc peak of packing)` of a model holding `w`."""
    import tracemalloc
    data = constant_model([w])
    tracemalloc.start()
    try:
        packed, info = pack_tflite(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    r = info.records[0]
    assert unpack.decode(packed)[r.out_offset:r.out_offset + w.nbytes] == w.tobytes()
    return packed, info, peak


def test_range_coded_gaps_are_made_without_whole_tensor_temporaries():
    # Pricing the range-coded gaps of a 4M-weight int8 kernel doubled the
    # pack's peak (94 -> 190 MB, tools/pack_memory_benchmark.py): its gap
    # symbols came from five int64 arrays of the whole tensor (a 1M-weight
    # one: 31 -> 47 MB).
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=(1000, 1000)), axis=1) / 4
    w = np.clip(np.round(walk), -127, 127).astype(np.int8)
    _, info, peak = _pack_peak(w)
    assert info.records[0].kind.startswith("planes"), info.records[0].kind
    assert peak < 36 * w.nbytes, peak / w.nbytes  # 47x before, 31x now


def test_pack_memory_is_a_few_times_the_tensor():
    # A 16 MB kernel of 5 shared values peaked at 167 MB (10.4x) before the
    # whole-tensor temporaries were made a chunk at a time and the input was
    # no longer copied; now 52 MB (tools/pack_memory_benchmark.py).
    rng = np.random.default_rng(8)
    w = rng.normal(size=5).astype(np.float32)[rng.integers(0, 5, size=(2000, 2000))]
    _, info, peak = _pack_peak(w)
    assert info.records[0].codebook_size == 5
    assert peak < 5 * w.nbytes, f"{peak / 1e6:.0f} MB"


def test_context_model_fit_memory_is_a_few_times_the_tensor():
    # Fitting a kind 3 / 4 table held a dozen int64 arrays of the whole
    # stream: a 0.5 MB int8 kernel peaked at ~110 MB (222x for 1 MB); now
    # the per-symbol arrays are int16 / uint8 and histograms are chunked.
    rng = np.random.default_rng(9)
    walk = np.cumsum(rng.normal(size=(500, 1000)), axis=1) / 4
    w = np.clip(np.round(walk), -127, 127).astype(np.int8)
    _, info, peak = _pack_peak(w)
    assert info.records[0].context_coded
    assert peak < 50 * w.nbytes, f"{peak / 1e6:.0f} MB"


def test_large_sparse_tensor_prefers_sparse_and_chooses_good_gap_alphabet():
    rng = np.random.default_rng(3)
    w = _clustered_pruned(rng, (300, 200), centroids=16, density=0.1)
    packed, info = pack_tflite(constant_model([w]))
    r = info.records[0]
    assert r.position_mode == "sparse" and r.value_mode == "codebook"
    # Geometric gaps with mean 10: an 8- to 32-symbol alphabet is best.
    assert r.gap_alphabet in (8, 16, 32)
    coded = r.value_bits + r.gap_bits
    assert coded / (r.value_entropy_bits + r.gap_entropy_bits) < 1.02
    decoded = unpack.decode(packed, backend="python")
    assert decoded[r.out_offset:r.out_offset + w.nbytes] == w.tobytes()


def test_incompressible_buffers_stay_inline_and_float_noise_gets_planes():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 2000).astype(np.uint8)
    floats = rng.normal(size=500).astype(np.float32)
    packed, info = pack_tflite(constant_model([noise, floats]))
    assert [r.dtype for r in info.records] == ["float32"]
    assert info.records[0].value_mode == "planes"
    decoded = unpack.decode(packed, backend="python")
    r = info.records[0]
    assert decoded[r.out_offset:r.out_offset + r.raw_bytes] == floats.tobytes()
    assert noise.tobytes() in unpack.parse(packed).meta  # inline, in the flatbuffer


def test_rejects_bad_arguments_and_repacking():
    model = constant_model([np.zeros(100, np.float32)])
    with pytest.raises(ValueError):
        pack_tflite(model, gap_alphabet=3)
    with pytest.raises(ValueError):
        pack_tflite(model, block=0)
    with pytest.raises(ValueError):
        pack_tflite(b"not a model at all")
    packed, _ = pack_tflite(model)
    with pytest.raises(ValueError, match="already"):
        pack_tflite(packed)


def test_record_fields_are_consistent():
    w = _tensor(1, (64, 32), 0.8, 12, False, np.float32)
    _, info = pack.pack_tflite(constant_model([w]))
    r = info.records[0]
    assert r.num_elements == w.size and r.nnz == np.count_nonzero(w)
    assert r.elem_size == 4 and r.elem_bits == 32 and r.raw_bytes == w.nbytes
    assert r.shape == (64, 32) and r.codebook_size == 12
    assert 12 * 2 < r.codebook_bytes < 12 * 4  # sorted deltas: less than raw float32


def test_format_md_complete_file_is_current():
    # docs/FORMAT.md §9 is the output of tools/format_example.py.
    import importlib.util
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "format_example", os.path.join(root, "tools", "format_example.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import zlib
    packed, _ = module.pack_example()
    doc = open(os.path.join(root, "docs", "FORMAT.md"), encoding="utf-8").read()
    corpus = open(os.path.join(module.CORPUS, "v2_format_md_example.tflite"), "rb").read()
    section = doc.split("## 9. A complete file")[1].split("\n## ")[0]
    # DEFLATE's bytes depend on the zlib build; the meta stream does not.
    meta = lambda text: text.split("-- meta stream")[1].split("-- payload")[0]  # noqa: E731
    assert meta(module.section_9(packed)) == meta(section)
    assert unpack.parse(corpus).meta == unpack.parse(packed).meta
    if f"zlib {zlib.ZLIB_RUNTIME_VERSION})" in section:
        assert module.section_9(packed).rstrip("\n") in doc
        assert corpus == packed
    # The test vector after the dump: the corpus file, and its decoded bytes
    # with their SHA-256 (zlib-independent).
    import base64
    import hashlib
    import re
    vectors = [base64.b64decode("".join(block.split()))
               for block in re.findall(r"```\n([A-Za-z0-9+/=\n]+)\n```", section)]
    assert vectors == [corpus, unpack.decode(corpus, backend="python")]
    digest = re.search(r"SHA-256 `([0-9a-f]{64})`", section).group(1)
    assert hashlib.sha256(vectors[1]).hexdigest() == digest
    assert unpack.decode(vectors[0], backend="native") == vectors[1]


def test_a_format_1_file_decoded_packs_as_format_2():
    import os
    from tfdc.flatbuf import read_model
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    v1 = open(os.path.join(root, "tests", "data", "v1", "lenet_300_100_demo.tflite"), "rb").read()
    with pytest.raises(ValueError, match="already tfdc-packed"):
        pack_tflite(v1)
    decoded_v1 = unpack.decode(v1, backend="python")
    packed, info = pack_tflite(decoded_v1, strip_debug=True)
    assert info.version == 2 and len(packed) < len(v1)
    decoded = unpack.decode(packed, backend="python")

    def weights(data):
        return sorted(data[b.offset:b.offset + b.size] if b.offset > 1 else
                      data[b.data_start:b.data_start + b.data_len]
                      for b in read_model(data).buffers if b.size > 64 or b.data_len > 64)
    # every weight buffer of the format 1 model, bit for bit (the v1 section
    # buffer itself is gone)
    assert set(weights(decoded)) <= set(weights(decoded_v1))
    assert {len(w) for w in weights(decoded)} >= {940800, 120000, 4000, 1200, 400}


def test_binary16_values_get_16_bit_codebook_keys_losslessly():
    rng = np.random.default_rng(5)
    shared = rng.normal(0, 0.05, 16).astype(np.float32)
    w = np.where(rng.random(4096) < 0.7, 0, shared[rng.integers(0, 16, 4096)]).astype(np.float32)
    half = w.astype(np.float16).astype(np.float32)
    sizes = {}
    for name, values in (("float32", w), ("binary16", half)):
        packed, info = pack_tflite(constant_model([values]))
        (record,) = info.records
        assert record.codebook_encoding == ("fp16" if name == "binary16" else "raw")
        assert record.fp16_max_abs_change == 0.0
        out = unpack.decode(packed, backend="python")
        assert out[record.out_offset:record.out_offset + values.nbytes] == values.tobytes()
        sizes[name] = len(packed)
    assert sizes["binary16"] < sizes["float32"]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_negative_zeros_are_counted_kept_or_stored_as_zero(dtype):
    # A weight of -0.0 is a nonzero bit pattern: "keep" decodes it as it
    # was, "zero" as 0.0 (a mask multiplied into negative weights leaves
    # -0.0: coded as values, they doubled the file); PackInfo counts them
    # per tensor, either way.
    rng = np.random.default_rng(3)
    w = _clustered_pruned(rng, (64, 64), density=0.1).astype(dtype)
    signed = w.copy()
    signed[(w == 0) & (rng.random(w.shape) < 0.5)] = -0.0
    count = int(np.sum(np.signbit(signed) & (signed == 0)))
    kept, kept_info = pack_tflite(constant_model([signed]))
    zeroed, zero_info = pack_tflite(constant_model([signed]), negative_zeros="zero")
    plain, plain_info = pack_tflite(constant_model([w]))
    assert kept_info.negative_zeros == zero_info.negative_zeros == {"w0": count} and count > 1000
    assert plain_info.negative_zeros == {}
    for packed, weights in ((kept, signed), (zeroed, w)):  # bit-exact: the sign bits too
        decoded = unpack.decode(packed)
        b = read_model(decoded).buffers[1]
        assert decoded[b.offset:b.offset + b.size] == weights.tobytes()
    assert zeroed == plain and len(zeroed) < 0.7 * len(kept)
    with pytest.raises(ValueError, match="negative_zeros must be 'keep' or 'zero', got 'drop'"):
        pack_tflite(constant_model([w]), negative_zeros="drop")
