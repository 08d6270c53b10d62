"""Tests for tfdc.pack: real Keras → TFLite models packed and decoded run
bit-identically in the LiteRT interpreter; record-level property tests over
shapes, sparsity, codebooks, special float values and every encoding option."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfdc import pack, unpack
from tfdc.pack import pack_tflite
from tfdc.tflite_schema import constant_model


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
    """Two small converted models with clustered, pruned weights: an image
    model (Conv2D, DepthwiseConv2D, Dense) and an Embedding model."""
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
                layer.set_weights(weights)
    image_input = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    text_input = rng.integers(0, 300, size=(2, 6)).astype(np.int32)
    return [(_convert(image), image_input), (_convert(text), text_input)]


def _run(model_bytes, x):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
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
        assert info.total_bytes == len(packed) < len(tflite)
        decoded = unpack.decode(packed, backend="python")
        assert len(decoded) == info.decoded_bytes
        expected = _run(tflite, x)
        got = _run(decoded, x)
        assert (expected.view(np.uint32) == got.view(np.uint32)).all()


def test_strip_debug_is_smaller_and_bit_identical(keras_models):
    for tflite, x in keras_models:
        packed, info = pack_tflite(tflite)
        stripped, stripped_info = pack_tflite(tflite, strip_debug=True)
        assert len(stripped) < len(packed)
        assert stripped_info.section_bytes == info.section_bytes  # weights untouched
        assert b"CONVERSION_METADATA" not in stripped
        got = _run(unpack.decode(stripped, backend="python"), x)
        assert (_run(tflite, x).view(np.uint32) == got.view(np.uint32)).all()
        # Weight tensors keep their names, for `tfdc inspect`.
        names = {n for r in unpack.read_pack_info(stripped).records for n in r.tensor_names}
        assert names and all(names)


def test_stock_interpreter_refuses_the_packed_file(keras_models):
    tflite, x = keras_models[0]
    packed, _ = pack_tflite(tflite)
    with pytest.raises(Exception, match="out of range offset"):
        _run(packed, x)


def test_pack_is_deterministic(keras_models):
    tflite, _ = keras_models[1]
    assert pack_tflite(tflite)[0] == pack_tflite(tflite)[0]


def test_pack_info_matches_read_pack_info(keras_models):
    tflite, _ = keras_models[0]
    packed, info = pack_tflite(tflite)
    again = unpack.read_pack_info(packed)
    assert [dataclasses.asdict(r) for r in info.records] == [
        dataclasses.asdict(r) for r in again.records]
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


def test_worked_example_of_the_spec():
    # FORMAT.md §5: [0, 0.5, 0, 0, -1, 0.5, 0, 0], sparse, G = 4, K = 2.
    x = np.array([0, 0.5, 0, 0, -1, 0.5, 0, 0], np.float32)
    packed, info = pack_tflite(constant_model([x]), min_bytes=0, gap_alphabet=4,
                               _force={"position_mode": "sparse", "value_mode": "codebook"})
    section = packed[info.flatbuffer_bytes:]
    tables = bytes.fromhex("00 01 00 00 02 00 00 00 11" "00 02 00 00 03 00 00 00 21 02")
    assert section[48:48 + len(tables)] == tables
    record = section[48 + len(tables):-4]
    assert record[52:60] == bytes.fromhex("00 00 80 bf 00 00 00 3f")  # the codebook
    # Value stream: count 3, table 0, block 4096, one segment of 1 byte: 0xA0.
    assert record[60:81] == bytes.fromhex("0300000000000000 0000 0000 00100000 01000000 a0")
    # Gap stream: count 3, table 1, one segment of 1 byte: 0xB0.
    assert record[81:102] == bytes.fromhex("0300000000000000 0100 0000 00100000 01000000 b0")
    out = unpack.decode(packed, backend="python")
    r = info.records[0]
    assert out[r.out_offset:r.out_offset + 32] == x.tobytes()


SPECIAL = np.array([0x80000000, 0x7FC00001, 0xFFC12345, 0x7F800000, 0xFF800000],
                   np.uint32).view(np.float32)  # −0.0, NaN payloads, ±Inf


def _tensor(seed, shape, sparsity, centroids, specials, dtype):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        c = rng.normal(size=centroids).astype(np.float32)
        if specials:
            c[:min(len(SPECIAL), centroids)] = SPECIAL[:centroids]
    else:
        info = np.iinfo(dtype)
        c = rng.integers(info.min, info.max, size=centroids, endpoint=True).astype(dtype)
    w = c[rng.integers(0, centroids, shape)]
    w[rng.random(shape) < sparsity] = 0
    return w.astype(dtype)


FORCES = [None, {"position_mode": "dense"}, {"position_mode": "sparse"},
          {"position_mode": "sparse", "scan": "column"}, {"value_mode": "raw"}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       sparsity=st.sampled_from([0.0, 0.3, 0.9, 1.0]) | st.floats(0, 1),
       centroids=st.integers(1, 256), specials=st.booleans(),
       dtype=st.sampled_from([np.float32, np.int8, np.int32, np.int16]),
       force=st.sampled_from(FORCES), gap_alphabet=st.sampled_from([None, 2, 16, 32768]),
       block=st.sampled_from([1, 7, 4096]))
def test_records_round_trip_bit_exactly(seed, shape, sparsity, centroids, specials, dtype,
                                        force, gap_alphabet, block):
    w = _tensor(seed, shape, sparsity, centroids, specials, dtype)
    packed, info = pack_tflite(constant_model([w]), min_bytes=0, block=block,
                               gap_alphabet=gap_alphabet, _force=force)
    decoded = unpack.decode(packed, backend="python")
    assert decoded[:len(packed)] == packed
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
        assert r.codebook_encoding == "fp16" and r.codebook_bytes == 2 * r.codebook_size


def test_fp16_codebook_is_skipped_when_binary16_would_overflow():
    w = np.array([0, 1e6, 0, 2.5] * 20, np.float32)
    packed, info = pack_tflite(constant_model([w]), min_bytes=0, codebook_fp16=True)
    r = info.records[0]
    assert r.codebook_encoding == "raw"
    decoded = unpack.decode(packed, backend="python")
    assert decoded[r.out_offset:r.out_offset + w.nbytes] == w.tobytes()


def test_large_sparse_tensor_prefers_sparse_and_chooses_good_gap_alphabet():
    rng = np.random.default_rng(3)
    w = _clustered_pruned(rng, (300, 200), centroids=16, density=0.1)
    packed, info = pack_tflite(constant_model([w]))
    r = info.records[0]
    assert r.position_mode == "sparse" and r.value_mode == "codebook"
    # Geometric gaps with mean 10: a 4- or 8-symbol alphabet is best.
    assert r.gap_alphabet in (8, 16, 32)
    coded = r.value_bits + r.gap_bits
    assert coded / (r.value_entropy_bits + r.gap_entropy_bits) < 1.02
    decoded = unpack.decode(packed, backend="python")
    assert decoded[r.out_offset:r.out_offset + w.nbytes] == w.tobytes()


def test_incompressible_buffers_stay_inline():
    w = np.random.default_rng(0).normal(size=500).astype(np.float32)
    packed, info = pack_tflite(constant_model([w]))
    assert info.records == []
    assert unpack.decode(packed, backend="python")[:len(packed)] == packed


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
    assert r.elem_size == 4 and r.raw_bytes == w.nbytes and r.shape == (64, 32)
    assert r.codebook_size == 12 and r.codebook_bytes == 48


def test_format_md_complete_file_is_current():
    # docs/FORMAT.md §7 is the output of tools/format_example.py.
    import importlib.util
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "format_example", os.path.join(root, "tools", "format_example.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    packed, _ = module.pack_example()
    text = "\n".join(module.annotate(packed))
    doc = open(os.path.join(root, "docs", "FORMAT.md"), encoding="utf-8").read()
    assert "```\n" + text + "\n```" in doc
