"""Tests for tfdc.flatbuf: agreement with the flatbuffers object API, and
FormatError (never another exception, never a long loop) on bad input."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdc import FormatError
from tfdc.flatbuf import read_model
from tfdc.pack import pack_tflite
from tfdc.tflite_schema import constant_model, read as read_model_object


@pytest.fixture(scope="module")
def packed_model():
    rng = np.random.default_rng(0)
    w = rng.choice(np.float32([0, 0, 0, 0.25, -0.5]), size=(40, 30))
    return pack_tflite(constant_model([w, np.arange(7, dtype=np.int8)]), min_bytes=0)[0]


def test_reads_buffers_and_metadata_like_the_object_api(packed_model):
    ref = read_model(packed_model)
    model = read_model_object(packed_model)
    assert len(ref.buffers) == len(model.buffers)
    for mine, theirs in zip(ref.buffers, model.buffers):
        assert mine.offset == theirs.offset and mine.size == theirs.size
        n = 0 if theirs.data is None else len(theirs.data)
        assert mine.data_len == n
        if n:
            assert packed_model[mine.data_start:mine.data_start + n] == bytes(theirs.data)
    assert [(name, b) for name, b in ref.metadata] == [
        (m.name, m.buffer) for m in model.metadata]
    assert ref.metadata[-1][0] == b"tfdc.v2"


def test_rejects_short_files_and_wrong_identifier():
    for data in (b"", b"\0" * 7, b"\x08\0\0\0XXXX" + b"\0" * 16):
        with pytest.raises(FormatError):
            read_model(data)


def test_every_truncation_is_a_format_error(packed_model):
    # Truncating inside the flatbuffer part must fail cleanly.
    end = read_model(packed_model).buffers[-1].offset
    for n in range(0, end, 3):
        try:
            read_model(packed_model[:n])
        except FormatError:
            pass


def test_huge_vector_length_fails_fast():
    # Root table whose buffers vector claims 2^32 − 1 elements.
    data = bytearray(constant_model([np.zeros(4, np.float32)]))
    ref = read_model(bytes(data))
    # Follow root → Model.buffers (field 4) to the vector's length field.
    root = struct.unpack_from("<I", data, 0)[0]
    vt = root - struct.unpack_from("<i", data, root)[0]
    field = root + struct.unpack_from("<H", data, vt + 4 + 2 * 4)[0]
    vec = field + struct.unpack_from("<I", data, field)[0]
    assert struct.unpack_from("<I", data, vec)[0] == len(ref.buffers)
    struct.pack_into("<I", data, vec, 0xFFFFFFFF)
    with pytest.raises(FormatError, match="outside"):
        read_model(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_is_a_format_error(blob):
    for data in (blob, blob[:4] + b"TFL3" + blob[8:]):
        try:
            read_model(data)
        except FormatError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 255))
def test_byte_corruptions_are_format_errors_or_parse(packed_model, seed_pos, value):
    data = bytearray(packed_model)
    data[seed_pos % len(data)] = value
    try:
        read_model(bytes(data))
    except FormatError:
        pass


def test_quantization_vectors_are_where_the_object_api_has_them():
    # Two tensors with per-channel scales, one with zero points, one sharing
    # nothing: every non-empty vector once, at the bytes of its values.
    from tfdc.flatbuf import quantization_vectors
    from tfdc.tflite_schema import with_quantization
    rng = np.random.default_rng(1)
    data = constant_model([np.zeros((5, 3), np.int8), np.zeros((4, 2), np.int8),
                           np.zeros(3, np.float32)])
    for tensor, n, zp in ((0, 5, True), (1, 4, False)):
        data = with_quantization(data, rng.uniform(0.1, 1, n),
                                 rng.integers(1, 9, n) if zp else None, tensor)
    found = quantization_vectors(data)
    assert [(v.tensor_name, v.field, v.count, v.dtype[0]) for v in sorted(
        found, key=lambda v: (v.tensor_name, v.field))] == [
        ("w0", "scale", 5, "float32"), ("w0", "zero_point", 5, "int64"),
        ("w1", "scale", 4, "float32")]
    assert [v.start for v in found] == sorted(v.start for v in found)
    tensors = read_model_object(data).subgraphs[0].tensors
    by_name = {t.name.decode(): t.quantization for t in tensors}
    for v in found:
        values = np.frombuffer(data, v.dtype[0], v.count, v.start)
        q = by_name[v.tensor_name]
        assert (values == (q.scale if v.field == "scale" else q.zeroPoint)).all()
    assert quantization_vectors(constant_model([np.zeros(3, np.float32)])) == []
