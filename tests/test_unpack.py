"""Tests for tfdc.unpack: every malformed input is a FormatError (truncations,
bit flips, broken rules with valid CRCs), is_packed, the decoded layout, and
agreement of the NumPy and native decoders."""

import struct
import zlib

import numpy as np
import pytest

from tfdc import FormatError, unpack
from tfdc.pack import pack_tflite
from tfdc.tflite_schema import constant_model


@pytest.fixture(scope="module")
def small_packed():
    """A small packed file with a sparse, a dense and a raw-value record."""
    rng = np.random.default_rng(5)
    c = rng.normal(size=6).astype(np.float32)
    sparse = np.where(rng.random((20, 12)) < 0.2, c[rng.integers(0, 6, (20, 12))], 0)
    dense = rng.integers(-3, 3, size=150).astype(np.int8)
    raw = np.where(rng.random(100) < 0.1, rng.normal(size=100), 0).astype(np.float32)
    arrays = [sparse.astype(np.float32), dense, raw]
    packed, info = pack_tflite(constant_model(arrays), min_bytes=0, block=16,
                               _force={"scan": "column"})
    return packed, info, arrays


def _decode_all_or_error(data):
    try:
        unpack.decode(data, backend="python")
    except FormatError:
        return False
    return True


def test_decode_layout(small_packed):
    packed, info, arrays = small_packed
    assert unpack.is_packed(packed)
    decoded = unpack.decode(packed, backend="python")
    assert len(decoded) == info.decoded_bytes
    assert decoded[:len(packed)] == packed
    assert {r.position_mode for r in info.records} >= {"sparse"}
    by_index = {r.buffer_index: r for r in info.records}
    for i, a in enumerate(arrays):
        r = by_index[i + 1]
        assert r.out_offset % 64 == 0
        assert decoded[r.out_offset:r.out_offset + a.nbytes] == a.tobytes()
    # Bytes between records are zero.
    ends = sorted((r.out_offset, r.out_offset + r.raw_bytes) for r in info.records)
    filled = np.zeros(len(decoded), bool)
    filled[:len(packed)] = True
    for a, b in ends:
        filled[a:b] = True
    assert not np.frombuffer(decoded, np.uint8)[~filled].any()


def test_not_packed_and_already_decoded_are_format_errors(small_packed):
    packed, _, _ = small_packed
    plain = constant_model([np.zeros(10, np.float32)])
    assert not unpack.is_packed(plain) and not unpack.is_packed(b"garbage")
    with pytest.raises(FormatError, match="not a tfdc-packed"):
        unpack.decode(plain, backend="python")
    decoded = unpack.decode(packed, backend="python")
    # The metadata entry is still there, but the section no longer ends the
    # file: a decoded file is a standard model, not a packed one …
    assert not unpack.is_packed(decoded)
    with pytest.raises(FormatError, match="does not end"):  # … and decode refuses it
        unpack.decode(decoded, backend="python")
    try:
        from tfdc import _native
    except ImportError:
        return
    for data in (packed, decoded, plain, b"garbage"):  # the C decoder agrees
        assert _native.is_packed(data) == unpack.is_packed(data)


def test_every_truncation_is_a_format_error(small_packed):
    packed, _, _ = small_packed
    for n in range(len(packed)):
        with pytest.raises(FormatError):
            unpack.decode(packed[:n], backend="python")


def test_random_bit_flips_are_format_errors(small_packed):
    packed, _, _ = small_packed
    rng = np.random.default_rng(11)
    for _ in range(2000):
        data = bytearray(packed)
        pos = int(rng.integers(len(data)))
        data[pos] ^= 1 << int(rng.integers(8))
        # A flip in the flatbuffer's unused bytes may leave a valid file only
        # if the CRC still matches — CRC-32 detects every single-bit error.
        with pytest.raises(FormatError):
            unpack.decode(bytes(data), backend="python")


def _resign(packed, S, patch):
    """Apply `patch(section bytearray)` and recompute every CRC, so that the
    decoder's structural checks (not the checksums) must catch the damage."""
    data = bytearray(packed)
    section = bytearray(data[S:])
    patch(section)
    num_tables, num_records = struct.unpack_from("<II", section, 36)
    pos = 48
    for _ in range(num_tables):
        kind, _, _, n = struct.unpack_from("<BBHI", section, pos)
        pos += 8 + (4 if kind == 1 else (n + 1) // 2)
    for _ in range(num_records):
        size = struct.unpack_from("<I", section, pos)[0]
        struct.pack_into("<I", section, pos + size - 4, zlib.crc32(section[pos:pos + size - 4]))
        pos += size
    struct.pack_into("<I", section, len(section) - 4, zlib.crc32(section[:-4]))
    return bytes(data[:S] + section)


def test_rule_violations_with_valid_checksums(small_packed):
    packed, info, _ = small_packed
    S = info.flatbuffer_bytes
    assert _decode_all_or_error(_resign(packed, S, lambda s: None))

    def record_start(section):
        num_tables = struct.unpack_from("<I", section, 36)[0]
        pos = 48
        for _ in range(num_tables):
            kind, _, _, n = struct.unpack_from("<BBHI", section, pos)
            pos += 8 + (4 if kind == 1 else (n + 1) // 2)
        return pos

    def set_field(fmt, offset_in_record):
        def patch(section):
            p = record_start(section)
            old = struct.unpack_from(fmt, section, p + offset_in_record)[0]
            struct.pack_into(fmt, section, p + offset_in_record, old + 1)
        return patch

    def set_header(fmt, offset, value):
        return lambda section: struct.pack_into(fmt, section, offset, value)

    bad = {
        "version": set_header("<H", 4, 2),
        "flags": set_header("<I", 12, 1),
        "reserved": set_header("<I", 44, 1),
        "decoded_size": set_header("<Q", 24, S),
        "num_records": set_header("<I", 40, 0),
        "buffer_index": set_field("<I", 4),
        "out_offset": set_field("<Q", 8),
        "out_size": set_field("<Q", 16),
        "elem_size": set_field("<B", 24),
        "value_mode": set_field("<B", 25),
        "position_mode": set_field("<B", 26),
        "scan": set_field("<B", 27),
        "scan_rows": set_field("<I", 28),
        "nnz": set_field("<Q", 32),
        "codebook_size": set_field("<I", 40),
        "codebook_encoding": set_field("<B", 44),
        "record_reserved": set_field("<B", 45),
        "gap_alphabet": set_field("<I", 48),
        "table_kind": set_header("<B", 48, 2),
        "table_reserved": set_header("<H", 50, 1),
    }
    for name, patch in bad.items():
        with pytest.raises(FormatError):
            unpack.decode(_resign(packed, S, patch), backend="python")
            pytest.fail(f"{name}: accepted")


def test_version_and_magic_messages(small_packed):
    packed, info, _ = small_packed
    S = info.flatbuffer_bytes
    with pytest.raises(FormatError, match="version 2"):
        unpack.decode(_resign(packed, S, lambda s: struct.pack_into("<H", s, 4, 2)),
                      backend="python")
    with pytest.raises(FormatError, match="magic"):
        unpack.decode(_resign(packed, S, lambda s: s.__setitem__(0, 0x55)), backend="python")


def test_max_size_limits_the_decoded_size(small_packed):
    packed, info, _ = small_packed
    with pytest.raises(FormatError, match="exceeds the limit"):
        unpack.decode(packed, backend="python", max_size=info.decoded_bytes - 1)
    assert len(unpack.decode(packed, backend="python", max_size=info.decoded_bytes)) == \
        info.decoded_bytes


def test_bad_backend_name():
    with pytest.raises(ValueError):
        unpack.decode(b"", backend="gpu")


def test_native_decoder_agrees_when_built(small_packed):
    native = unpack._native()
    if native is None:
        pytest.skip("tfdc._native is not built")
    packed, _, _ = small_packed
    assert unpack.decode(packed, backend="native") == unpack.decode(packed, backend="python")


def test_native_and_python_agree_on_resigned_corruptions(small_packed):
    """Differential test: corrupt one byte anywhere (flatbuffer or section),
    recompute every CRC so the structural checks must decide, and require
    the two independent decoders to accept and reject the same files and
    to return the same bytes."""
    native = unpack._native()
    if native is None:
        pytest.skip("tfdc._native is not built")
    packed, info, _ = small_packed
    parsed = unpack.parse(packed)
    S, Z = parsed.S, parsed.Z
    crc_fields = [(r.record_start, r.record_start + r.record_size - 4) for r in parsed.records]
    skip = {S + 32 + i for i in range(4)} | {S + Z - 4 + i for i in range(4)}
    for _, crc_at in crc_fields:
        skip |= {crc_at + i for i in range(4)}

    def resign(data):
        for start, crc_at in crc_fields:
            struct.pack_into("<I", data, crc_at, zlib.crc32(data[start:crc_at]))
        struct.pack_into("<I", data, S + 32, zlib.crc32(data[:S]))
        struct.pack_into("<I", data, S + Z - 4, zlib.crc32(data[S:S + Z - 4]))
        return bytes(data)

    limit = 1 << 24

    def outcome(decoder, data):
        try:
            if decoder is native.decode and native.decoded_size(data) > limit:
                return "error"
            return decoder(data)
        except FormatError:
            return "error"

    python_decode = lambda d: unpack.decode(d, backend="python", max_size=limit)  # noqa: E731
    rejected = 0
    for pos in range(len(packed)):
        if pos in skip:
            continue
        for value in (packed[pos] ^ 1, (packed[pos] + 0x80) & 255):
            data = bytearray(packed)
            data[pos] = value
            data = resign(data)
            a, b = outcome(python_decode, data), outcome(native.decode, data)
            assert a == b, f"byte {pos} (section offset {pos - S}) = {value}"
            rejected += a == "error"
    assert rejected > 100


def test_default_size_limit_refuses_a_decoded_size_bomb(small_packed):
    # A crafted (correctly checksummed) header claiming 2^40 decoded bytes.
    packed, info, _ = small_packed
    S = info.flatbuffer_bytes
    bomb = _resign(packed, S, lambda s: struct.pack_into("<Q", s, 24, 1 << 40))
    for backend in ("python", "auto"):
        with pytest.raises(FormatError, match="exceeds the limit"):
            unpack.decode(bomb, backend=backend)
