"""tfdc.unpack on format 1.0 files (FORMAT.md appendix A), frozen in
tests/data/v1 and the fuzz corpus: they decode to the same bytes as before,
in the NumPy and the native decoder, and every malformed variant is a
FormatError."""

import glob
import os
import struct
import zlib

import numpy as np
import pytest

from tfdc import FormatError, unpack

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1")
CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfdc",
                      "native", "fuzz", "corpus")


@pytest.fixture(scope="module")
def small_packed():
    """Three records (sparse column-major, dense, raw values) and their arrays."""
    packed = open(os.path.join(DATA, "small_three_records.tflite"), "rb").read()
    with np.load(os.path.join(DATA, "small_three_records.npz")) as z:
        arrays = [z[f"arr_{i}"] for i in range(3)]
    return packed, unpack.read_pack_info(packed), arrays


def v1_files():
    names = sorted(glob.glob(os.path.join(CORPUS, "*.tflite")) +
                   glob.glob(os.path.join(DATA, "*.tflite")))
    return [p for p in names if unpack.section_span(open(p, "rb").read())[0] == 1]


def test_the_frozen_files_are_format_1():
    files = v1_files()
    assert len(files) >= 25
    assert all(open(p, "rb").read()[4:8] == b"TFL3" for p in files)


def test_decode_layout(small_packed):
    packed, info, arrays = small_packed
    assert unpack.is_packed(packed) and info.version == 1
    decoded = unpack.decode(packed, backend="python")
    assert len(decoded) == info.decoded_bytes
    assert decoded[:len(packed)] == packed
    by_index = {r.buffer_index: r for r in info.records}
    for i, a in enumerate(arrays):
        r = by_index[i + 1]
        assert decoded[r.out_offset:r.out_offset + a.nbytes] == a.tobytes()
    assert {r.value_mode for r in info.records} == {"codebook", "raw"}


def test_decoded_file_is_recognised(small_packed):
    packed, _, _ = small_packed
    decoded = unpack.decode(packed, backend="python")
    assert unpack.is_decoded(decoded) and not unpack.is_packed(decoded)
    assert not unpack.is_decoded(packed)
    with pytest.raises(FormatError, match="already decoded") as e:
        unpack.decode(decoded, backend="python")
    assert e.value.status == "not_packed"
    # inspect reads what was packed from the decoded file's packed prefix
    again = unpack.read_pack_info(decoded)
    assert [r.record_bytes for r in again.records] == [
        r.record_bytes for r in unpack.read_pack_info(packed).records]


def test_every_truncation_is_a_format_error(small_packed):
    packed, _, _ = small_packed
    for n in range(len(packed)):
        with pytest.raises(FormatError):
            unpack.decode(packed[:n], backend="python")


def test_random_bit_flips_are_format_errors(small_packed):
    packed, _, _ = small_packed
    rng = np.random.default_rng(11)
    for _ in range(1000):
        data = bytearray(packed)
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
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
    assert unpack.decode(_resign(packed, S, lambda s: None), backend="python")

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
    with pytest.raises(FormatError, match="version 2") as e:
        unpack.decode(_resign(packed, S, lambda s: struct.pack_into("<H", s, 4, 2)),
                      backend="python")
    assert e.value.status == "version"
    with pytest.raises(FormatError, match="magic"):
        unpack.decode(_resign(packed, S, lambda s: s.__setitem__(0, 0x55)), backend="python")


def test_a_damaged_v1_key_is_named(small_packed):
    # A flipped bit in the key left the buffers pointing past the end, and
    # tfdc called the file "a plain .tflite already" (issue 14, point 13).
    packed, _, _ = small_packed
    data = bytearray(packed)
    data[packed.index(b"tfdc.v1") + 6] ^= 0x04
    with pytest.raises(FormatError, match="damaged tfdc-packed file"):
        unpack.decode(bytes(data), backend="python")


def test_max_size_and_the_default_limit(small_packed):
    packed, info, _ = small_packed
    with pytest.raises(FormatError, match="exceeds the limit"):
        unpack.decode(packed, backend="python", max_size=info.decoded_bytes - 1)
    assert len(unpack.decode(packed, backend="python", max_size=info.decoded_bytes)) == \
        info.decoded_bytes
    bomb = _resign(packed, info.flatbuffer_bytes,
                   lambda s: struct.pack_into("<Q", s, 24, 1 << 40))
    for backend in ("python", "auto"):
        with pytest.raises(FormatError, match="exceeds the limit"):
            unpack.decode(bomb, backend=backend)


def test_lenet_demo_file_decodes_to_its_plain_model():
    packed = open(os.path.join(DATA, "lenet_300_100_demo.tflite"), "rb").read()
    info = unpack.read_pack_info(packed)
    decoded = unpack.decode(packed, backend="python")
    assert len(decoded) == info.decoded_bytes == 1089792
    assert sorted(r.nnz for r in info.records) == [250, 2550, 16464]


# ------------------------------------------------------------- native decoder
@pytest.fixture(scope="module")
def native():
    native = unpack._native()
    if native is None:
        pytest.skip("tfdc._native is not built")
    return native


def test_native_decodes_every_v1_file_byte_identically(native):
    for path in v1_files():
        data = open(path, "rb").read()
        assert native.decode(data) == unpack.decode(data, backend="python"), path
        assert unpack.decode(data) == native.decode(data)  # auto uses native for v1


def test_native_and_python_agree_on_resigned_corruptions(native, small_packed):
    """Differential test: corrupt one byte anywhere (flatbuffer or section),
    recompute every CRC so the structural checks must decide, and require
    the two independent decoders to accept and reject the same files and
    to return the same bytes."""
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
