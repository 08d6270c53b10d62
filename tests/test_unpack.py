"""Tests for tfdc.unpack on format 2 files: the decoded layout, is_packed /
is_decoded, and FormatError (never another exception) for every broken rule
of docs/FORMAT.md — hand-built cases, one rule each, plus truncations, bit
flips and mutations of the meta stream with the container made right again.
Format 1 files: tests/test_unpack_v1.py."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import format2_builder as fb
from tfdc import FormatError, unpack
from tfdc import format as fmt
from tfdc.flatbuf import Reader, read_model
from tfdc.pack import pack_tflite
from tfdc.tflite_schema import constant_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

v = fmt.varint_bytes


@pytest.fixture(scope="module")
def small_packed():
    """A packed file with sparse/column codebook, dense planes, an int4 and
    an all-zero record."""
    rng = np.random.default_rng(5)
    c = rng.normal(size=6).astype(np.float32)
    sparse = np.where(rng.random((20, 12)) < 0.2, c[rng.integers(0, 6, (20, 12))], 0)
    planes = rng.normal(size=40).astype(np.float32)
    nibbles = rng.integers(0, 16, 64).astype(np.uint8)
    int4 = nibbles[0::2] | (nibbles[1::2] << 4)
    zeros = np.zeros(32, np.int8)
    arrays = [sparse.astype(np.float32), planes, (int4, 17, (64,)), zeros]
    packed, info = pack_tflite(constant_model(arrays), min_bytes=0, block=16, _force={
        1: {"position_mode": "sparse", "scan": "column", "value_mode": "codebook"},
        2: {"value_mode": "planes"}, 3: {"elem_bits": 4, "value_mode": "codebook"},
        4: {"position_mode": "sparse"}})
    raw = [a.tobytes() if isinstance(a, np.ndarray) else a[0].tobytes() for a in arrays]
    return packed, info, raw


def _decode(data, **kw):
    return unpack.decode(data, backend="python", **kw)


# ---------------------------------------------------------------- valid files
def test_decoded_file_is_the_inner_flatbuffer_and_the_weights(small_packed):
    packed, info, raw = small_packed
    assert unpack.is_packed(packed) and not unpack.is_decoded(packed)
    decoded = _decode(packed)
    parsed = unpack.parse(packed)
    assert len(decoded) == info.decoded_bytes == parsed.D
    assert decoded[:parsed.F] == parsed.meta[:parsed.F]
    filled = np.zeros(len(decoded), bool)
    filled[:parsed.F] = True
    for r in info.records:
        assert r.out_offset % 16 == 0 and r.out_offset >= parsed.F
        assert decoded[r.out_offset:r.out_offset + r.raw_bytes] == raw[r.buffer_index - 1]
        filled[r.out_offset:r.out_offset + r.raw_bytes] = True
    assert not np.frombuffer(decoded, np.uint8)[~filled].any()  # the rest is zero
    assert {r.kind for r in info.records} == {
        "codebook/sparse/column", "planes/dense", "codebook/dense/int4", "codebook/sparse"}
    # A decoded file is a standard model: not packed, recognisably decoded.
    assert not unpack.is_packed(decoded) and unpack.is_decoded(decoded)
    assert not unpack.has_section_entry(decoded)


def test_a_hand_built_file_decodes_as_the_spec_says():
    data, flat, off = _valid_file()
    decoded = _decode(data)
    assert decoded == flat + bytes(off - len(flat)) + bytes([1, 2, 1, 1, 2, 1, 1, 1])


def test_decode_accepts_a_path(tmp_path, small_packed):
    packed, _, _ = small_packed
    path = tmp_path / "m.tflite"
    path.write_bytes(packed)
    assert unpack.decode(path, backend="python") == unpack.decode(str(path)) == _decode(packed)
    with pytest.raises(TypeError, match="a path or the bytes of a .tflite model"):
        unpack.decode(12345)


def test_not_packed_and_already_decoded(small_packed):
    packed, _, _ = small_packed
    plain = constant_model([np.zeros(10, np.float32)])
    for data, text in ((plain, "not a tfdc-packed"), (_decode(packed), "already decoded")):
        with pytest.raises(FormatError, match=text) as e:
            _decode(data)
        assert e.value.status == "not_packed"
    assert not unpack.is_packed(plain) and not unpack.is_packed(b"garbage")
    assert not unpack.is_decoded(plain)


def test_is_packed_and_is_decoded_take_a_path(small_packed, tmp_path):
    """A pathlib.Path was read as the bytes of its name (False for a packed
    file), a str raised bytes()'s TypeError."""
    packed, _, _ = small_packed
    for name, data in (("packed", packed), ("decoded", _decode(packed))):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        for given in (path, str(path)):
            assert unpack.is_packed(given) == (name == "packed")
            assert unpack.is_decoded(given) == (name == "decoded")
    assert unpack.is_packed(np.frombuffer(packed, np.uint8))  # bytes-like, as documented
    with pytest.raises(TypeError, match="expected a path or the bytes"):
        unpack.is_packed(3.5)


def test_a_damaged_section_key_is_named(small_packed):
    # Its section still ends the file: CORRUPT, in the C decoder too (it
    # said NOT_PACKED, and the Android loader passed the file on as a plain
    # model, cached it, and LiteRT refused it: "schema version 0").
    packed, _, _ = small_packed
    key = packed.index(b"tfdc.v2")
    for i in range(7):
        for bit in (0, 5):
            data = bytearray(packed)
            data[key + i] ^= 1 << bit
            assert unpack.damaged_key(bytes(data))
            with pytest.raises(FormatError, match="damaged tfdc-packed file") as e:
                _decode(bytes(data))
            assert e.value.status == "corrupt"
            with pytest.raises(FormatError) as e:
                unpack.decode(bytes(data), backend="native")
            assert e.value.status == "corrupt"
    # The entry's own offset broken (the Android probe's byte 44): no name
    # to quote, the same status.
    data = bytearray(packed)
    data[key - 28] ^= 1
    with pytest.raises(FormatError) as e:
        unpack.decode(bytes(data), backend="native")
    with pytest.raises(FormatError, match="damaged tfdc-packed file") as python:
        _decode(bytes(data))
    assert e.value.status == python.value.status == "corrupt"
    assert unpack.damaged_key(packed) is None
    assert unpack.damaged_key(constant_model([np.zeros(3, np.float32)])) is None


def test_a_later_major_version_is_a_version_error(small_packed):
    # A format 3 file: a key this decoder does not know, and a section
    # header of version 3 ending the file.
    packed, _, _ = small_packed
    later = bytearray(packed.replace(b"tfdc.v2", b"tfdc.v9"))
    S = bytes(later).rindex(fmt.MAGIC)
    assert later[S + 4] == fmt.VERSION_MAJOR
    later[S + 4] = 3
    for backend in ("python", "native", "auto"):
        with pytest.raises(FormatError, match="format version 3" if backend != "native"
                           else "version") as e:
            unpack.decode(bytes(later), backend=backend)
        assert e.value.status == "version", backend


def test_default_backend_names_unpacked_files_and_paths(tmp_path, small_packed):
    """The default backend (native where it reads the file) leaves files with
    no section key to the Python decoder, which says what they are; given a
    path, the message starts with it."""
    packed, _, _ = small_packed
    damaged = bytearray(packed)
    damaged[packed.index(b"tfdc.v2") + 6] ^= 1
    for name, data, text, status in (
            ("dec.tflite", _decode(packed), "already decoded", "not_packed"),
            ("bad.tflite", bytes(damaged), "damaged tfdc-packed file", "corrupt")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(FormatError, match=text) as e:
            unpack.decode(data)
        assert e.value.status == status
        with pytest.raises(FormatError) as e:
            unpack.decode(str(path))
        assert str(e.value).startswith(f"{path}: {text}") and e.value.status == status


def test_max_size_limits_decoded_and_meta_size(small_packed):
    packed, info, _ = small_packed
    parsed = unpack.parse(packed)
    with pytest.raises(FormatError, match="exceeds the limit") as e:
        _decode(packed, max_size=info.decoded_bytes - 1)
    assert e.value.status == "too_large"
    assert len(_decode(packed, max_size=max(parsed.D, len(parsed.meta)))) == parsed.D
    with pytest.raises(FormatError, match="exceeds the limit"):
        _decode(packed, max_size=len(parsed.meta) - 1 if len(parsed.meta) > parsed.D else 0)


def test_size_bombs_are_refused_before_allocating():
    _, flat, _ = _valid_file()
    for kw in ({"D": 1 << 40}, {"M": 1 << 40}):
        with pytest.raises(FormatError, match="exceeds the limit"):
            _decode(_rebuild(**kw))
    assert fmt.default_limit(10) == 1 << 31 and fmt.default_limit(1 << 22) == 1 << 32


def test_bad_backend_name():
    with pytest.raises(ValueError):
        unpack.decode(b"", backend="gpu")


@pytest.mark.parametrize("max_size", [-1, float("nan"), True, "100000", 1.5, -float("inf")])
@pytest.mark.parametrize("backend", ["auto", "native", "python"])
def test_a_bad_size_limit_is_refused_alike_by_every_backend(small_packed, max_size, backend):
    # NaN turned the Python decoder's limit off, True was a limit of 1 byte,
    # -1 was a FormatError from one decoder and a ValueError from the other.
    if backend == "native" and unpack._native() is None:
        pytest.skip("the C extension is not built")
    with pytest.raises(ValueError, match=r"^max_size must be a non-negative int, inf or None, "
                                         rf"got {re.escape(repr(max_size))}$"):
        unpack.decode(small_packed[0], backend, max_size=max_size)


def test_what_is_no_flatbuffer_has_the_flatbuffer_status_in_every_backend():
    """The Python decoder said "corrupt" where the native one said
    "flatbuffer" (FORMAT.md §2: a flatbuffer read out of range); inspect
    raised a plain ValueError."""
    import tfdc
    backends = ["python"] + (["native"] if unpack._native() is not None else [])
    for data in (b"", b"TFL3", bytes(100)):
        for backend in backends:
            with pytest.raises(FormatError) as error:
                unpack.decode(data, backend=backend)
            assert error.value.status == "flatbuffer", (data, backend)
        with pytest.raises(FormatError, match="not a .tflite file") as error:
            tfdc.inspect(data)
        assert error.value.status == "flatbuffer"



def test_an_inner_flatbuffer_read_out_of_range_is_flatbuffer_in_every_backend():
    # The Python decoder wrapped the reader's "flatbuffer" error as "corrupt"
    # (its message read "inner flatbuffer: flatbuffer: ... is outside the
    # ...-byte file"); the C decoder said "flatbuffer", as FORMAT.md §2 does.
    _, flat, off = _valid_file()
    bad = bytearray(flat)
    bad[0:4] = (len(flat) + 100).to_bytes(4, "little")  # the root table past the end
    data = _rebuild(flat=bytes(bad), D=off + 8)
    for decode in (_decode, _c_decoder().decode):
        with pytest.raises(FormatError) as e:
            decode(data)
        assert e.value.status == "flatbuffer", (decode, str(e.value))


def test_a_range_coded_segment_shorter_than_its_state_is_truncated_in_every_backend():
    # §5.2 and §5.3 say TRUNCATED; both decoders said CORRUPT, from the
    # check of the descriptor's segment lengths, before §5.3's own check.
    seg = fb.rans_segment(RANS_SYMBOLS, **RANS)
    data = _rans_file(segments=[seg[:3]])
    for decode in (_decode, _c_decoder().decode):
        with pytest.raises(FormatError) as e:
            decode(data)
        assert e.value.status == "truncated", (decode, str(e.value))


# --------------------------------------------- damage anywhere: FormatError
def test_every_truncation_is_a_format_error(small_packed):
    packed, _, _ = small_packed
    for n in range(len(packed)):
        with pytest.raises(FormatError):
            _decode(packed[:n])
    with pytest.raises(FormatError):
        _decode(packed + b"\0")


def test_random_bit_flips_are_format_errors(small_packed):
    packed, _, _ = small_packed
    rng = np.random.default_rng(11)
    for _ in range(1500):
        data = bytearray(packed)
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        with pytest.raises(FormatError):  # the CRC covers every byte
            _decode(bytes(data))


def test_mutated_meta_streams_with_a_valid_container(small_packed):
    """Change one byte of the meta stream's descriptors (tables and records),
    re-deflate and re-sign: the decoder's own checks must decide, and every
    outcome is FormatError or a decoded file of the declared size."""
    packed, _, _ = small_packed
    parsed = unpack.parse(packed)
    rejected = 0
    for _, _, data in _meta_mutants(packed, lambda b: (b ^ 1, (b + 0x80) & 255, 0)):
        try:
            out = _decode(data)
        except FormatError:
            rejected += 1
            continue
        assert len(out) == parsed.D
    assert rejected > len(parsed.meta) - parsed.F


def _meta_mutants(packed, values):
    """`(position, new byte, file)` for each descriptor byte of the meta
    stream (after the inner flatbuffer) set to each of `values(old byte)`
    that differs from it, re-deflated and re-signed around the same payload."""
    parsed = unpack.parse(packed)
    meta, F = bytearray(parsed.meta), parsed.F
    payload = packed[parsed.payload_start:-4]
    for pos in range(F, len(meta)):
        for value in values(meta[pos]):
            if value == meta[pos]:
                continue
            m = bytearray(meta)
            m[pos] = value
            yield pos, value, fb.build(bytes(m[:F]), meta=bytes(m), payload=payload, D=parsed.D)


# ----------------------------------------------------- one rule per case
def _layout(*buffers):
    """`(inner flatbuffer, base)`: `buffers` are None (empty), bytes (inline
    data) or `(delta, size)` with offset `base + delta`, `base` the
    flatbuffer's length rounded up to 16."""
    def placed(base, size):
        return fb.inner_flatbuffer([b if b is None or isinstance(b, bytes)
                                    else (base + b[0], size(b[1])) for b in buffers])

    base = (len(placed(1 << 40, lambda n: max(1, n))) + 15) // 16 * 16
    flat = placed(base, lambda n: n)
    assert base >= len(flat)
    return flat, base


def _parts():
    return _layout(None, (0, 8))


def _valid_file():
    """A valid hand-built file: one int8 buffer of 8 elements
    [1, 2, 1, 1, 2, 1, 1, 1], dense, codebook [1, 2], a 1-bit code."""
    flat, off = _parts()
    return _rebuild(flat), flat, off


def _rebuild(flat=None, tables=None, records=None, payload=b"\x48", **kw):
    """The valid file with parts replaced."""
    if flat is None:
        flat, _ = _parts()
    if tables is None:
        tables = [fb.huffman_table([0, 1], [1, 1])]
    if records is None:
        records = [fb.dense_codebook_record(1, 8, [1, 2], 0, [0], 0, 4096, [1])]
    return fb.build(flat, tables, records, payload, **kw)


def _record(head=None, tail=None):
    """The valid record with its leading fields (`head`: buffer, elem_bits,
    transform, value_mode, position_mode, scan_rows) or the rest replaced."""
    head = v(1) + v(8) + v(0) + v(0) + v(0) + v(1) if head is None else head
    tail = (v(0) + v(2) + v(1) + v(0) + fb.stream(0, 4096, [1])) if tail is None else tail
    return head + tail


HEAD_TAIL = v(8) + v(0) + v(0) + v(0) + v(1)  # the head after buffer_index


def _codebook(K=2, key0=1, width=0, deltas=b"", stream=None, expand=0):
    return v(expand) + v(K) + (v(key0) + v(width) + deltas if K else b"") + (
        fb.stream(0, 4096, [1]) if stream is None else stream)


def _sparse(nnz, G, gap_count, gap_stream, values_tail):
    return v(1) + v(8) + v(0) + v(0) + v(1) + v(1) + v(nnz) + v(G) + v(gap_count) + \
        gap_stream + values_tail


# The valid file's values [1, 2, 1, 1, 2, 1, 1, 1] (codebook symbols
# 0 1 0 0 1 0 0 0) coded with a kind 3 table: 2-bit precision, 1-bit
# levels (symbol 1 is -1), lags 1 and 2, two classes (class 1 when both
# neighbours are 0).
RANS = dict(prec=2, width=1, lag1=1, lag2=2, shift=0, classes=[(0, [2, 2]), (0, [3, 1])])
RANS_SYMBOLS = [0, 1, 0, 0, 1, 0, 0, 0]


def _rans_file(table=None, segments=None, flags=fmt.FLAG_RANS, block=4096, K=2, spec=RANS):
    """The valid file with its value stream coded by the kind 3 table
    `spec` (or a kind 4 one: `spec` with `groups`, see `_rans4_file`)."""
    table = fb.rans_table(**spec) if table is None else table
    if segments is None:
        segments = [fb.rans_segment(RANS_SYMBOLS[i:i + block], **spec, start=i)
                    for i in range(0, len(RANS_SYMBOLS), block)]
    stream = fb.stream(0, block, [len(g) for g in segments])
    return _rebuild(tables=[table], records=[_record(tail=_codebook(K=K, width=0,
                                                                    stream=stream))],
                    payload=b"".join(segments), flags=flags,
                    minor=2 if spec.get("groups") else 1)


# The same symbols coded with a kind 4 table (FORMAT.md §5.4's example):
# one class, rows of 4 symbols whose columns 0-1 (group 0) and 2-3 (group
# 1) have their own tables; group 1 holds only symbol 0 and costs no bits.
RANS4_GROUPS = dict(C=1, row_len=4, col_groups=2, col_group=[0, 0, 1, 1], row_groups=1,
                    row_group=[0])
RANS4 = dict(prec=2, width=1, lag1=1, lag2=2, shift=0, classes=[(0, [2, 2]), (0, [4])],
             groups=RANS4_GROUPS)


def _rans4_file(table=None, segments=None, flags=fmt.FLAG_RANS_GROUPED, block=4096, **kw):
    """The valid file with its value stream coded by a kind 4 table (`kw`
    changes RANS4's fields for the table and the segments)."""
    return _rans_file(table, segments, flags, block, spec={**RANS4, **kw})


def _rans4_violations():
    def table(**kw):
        groups = {**RANS4_GROUPS, **kw.pop("groups", {})}
        return fb.rans_table(**{**RANS4, **kw, "groups": groups})

    two = [(0, [2, 2]), (0, [4])]
    return {
        "kind 4 without flags bit 1": _rans4_file(flags=fmt.FLAG_RANS),
        "kind 4 row_len 0": _rans4_file(table(groups=dict(row_len=0, col_group=[]))),
        "kind 4 row_len 65537": _rans4_file(table(groups=dict(
            row_len=65537, col_group=[0] * 65537))),
        "kind 4 col_groups 0": _rans4_file(table(groups=dict(col_groups=0))),
        "kind 4 col_group ≥ col_groups": _rans4_file(table(groups=dict(
            col_group=[0, 0, 1, 2]))),
        "kind 4 row_period 0": _rans4_file(table(groups=dict(row_group=[]))),
        "kind 4 row_period 65537": _rans4_file(table(groups=dict(row_group=[0] * 65537))),
        "kind 4 row_groups 0": _rans4_file(table(groups=dict(row_groups=0))),
        "kind 4 row_group ≥ row_groups": _rans4_file(table(groups=dict(row_group=[1]))),
        "kind 4 more than 256 tables": _rans4_file(table(
            classes=two * 144, groups=dict(C=32, row_groups=3, row_group=[0, 1, 2],
                                           col_groups=3, col_group=[0, 1, 2, 0]))),
        "kind 4 classes 0": _rans4_file(table(groups=dict(C=0), classes=[])),
        "kind 4 one table too few": _rans4_file(table(classes=two[:1])),
        "kind 4 table 1 frequencies sum short": _rans4_file(table(classes=[(0, [2, 2]),
                                                                          (0, [3])])),
        "kind 4 alphabet > K": _rans4_file(table(width=2, classes=[(0, [2, 2]),
                                                                   (0, [2, 1, 1])])),
        # the kind 3 example's segment read with the kind 4 table: other
        # symbols, and not the final state
        "kind 4 wrong final state": _rans4_file(segments=[
            fb.rans_segment(RANS_SYMBOLS, **RANS)]),
        "kind 4 segment runs out": _rans4_file(segments=[(1 << 22).to_bytes(4, "little")]),
    }


def _rans_violations():
    t = dict(RANS)
    seg = fb.rans_segment(RANS_SYMBOLS, **RANS)
    state = int.from_bytes(seg[:4], "little")

    def table(**kw):
        return fb.rans_table(**{**t, **kw})

    return {
        "kind 3 without flags bit 0": _rans_file(flags=0),
        "kind 3 prec 0": _rans_file(table(prec=0)),
        "kind 3 prec 16": _rans_file(table(prec=16)),
        "kind 3 width 0": _rans_file(table(width=0)),
        "kind 3 width 16": _rans_file(table(width=16)),
        "kind 3 lag1 0": _rans_file(table(lag1=0)),
        "kind 3 lag2 65536": _rans_file(table(lag2=65536)),
        "kind 3 shift 17": _rans_file(table(shift=17)),
        "kind 3 no classes": _rans_file(table(classes=[])),
        "kind 3 33 classes": _rans_file(table(classes=[(0, [2, 2])] * 33)),
        "kind 3 m = 0": _rans_file(table(classes=[(0, [2, 2]), (0, [])])),
        "kind 3 first + m > 2^width": _rans_file(table(classes=[(0, [2, 2]), (1, [3, 1])])),
        "kind 3 frequencies sum short": _rans_file(table(classes=[(0, [2, 2]), (0, [2, 1])])),
        "kind 3 frequencies sum over": _rans_file(table(classes=[(0, [2, 2]), (0, [3, 2])])),
        "kind 3 frequency > 2^prec": _rans_file(table(classes=[(0, [2, 2]), (0, [5, 0])])),
        "kind 3 alphabet > K": _rans_file(table(width=2, classes=[(0, [2, 2]),
                                                                   (0, [2, 1, 1])])),
        "kind 3 segment < 4 bytes": _rans_file(segments=[seg[:3]]),
        "kind 3 state below 2^23": _rans_file(segments=[(1 << 22).to_bytes(4, "little")
                                                        + seg[4:]]),
        "kind 3 state ≥ 2^31": _rans_file(segments=[(state | 1 << 31).to_bytes(4, "little")
                                                    + seg[4:]]),
        "kind 3 wrong final state": _rans_file(segments=[(state ^ 1).to_bytes(4, "little")
                                                         + seg[4:]]),
        "kind 3 unread segment byte": _rans_file(segments=[seg + b"\0"]),
        "kind 3 segment runs out": _rans_file(segments=[(1 << 23).to_bytes(4, "little")]),
    }


# Patches (§6.7). The valid file's inner flatbuffer with a third buffer of
# 16 inline zero bytes (its data bytes are not read by the decoder, so a
# patch may fill them), patched with two float32 values [1.0, 2.0] as four
# planes of a fixed-length 8-bit code (table 1).
PATCH_VALUES = b"\x00\x00\x80\x3f\x00\x00\x00\x40"
PATCH_PLANES = bytes([0x3f, 0x40, 0x80, 0, 0, 0, 0, 0])  # plane 0 (top bytes) first


def _plane_fields(table):
    """A patch's fields after its range: two float32 values as four planes
    (dense, row-major, identity transform) coded with `table`."""
    return v(32) + v(0) + v(1) + v(0) + v(1) + fb.stream(table, 4096, [2]) * 4


PATCH_FIELDS = _plane_fields(1)


def _patch_layout(data=bytes(16)):
    """`(flat, data_start)`: `_parts()`'s flatbuffer plus an inline buffer."""
    flat, _ = _layout(None, (0, 8), data)
    return flat, read_model(flat, metadata=False).buffers[2].data_start


def _patch_file(patches=None, flat=None, payload=PATCH_PLANES, flags=fmt.FLAG_PATCHES,
                **kw):
    """The valid file with a patch list (default: one patch filling the
    inline buffer's first 8 bytes with PATCH_VALUES)."""
    layout, start = _patch_layout()
    if patches is None:
        patches = [fb.patch(start, 8, PATCH_FIELDS)]
    return _rebuild(flat=layout if flat is None else flat,
                    tables=[fb.huffman_table([0, 1], [1, 1]), fb.fixed_table(8)],
                    payload=b"\x48" + payload, patches=patches, flags=flags,
                    minor=fmt.header_version(flags), **kw)


def _field_at(flat, table_path):
    """Position of a scalar field: `table_path` = [(field id, deref?)...]
    from the root table."""
    r = Reader(flat)
    pos = r.u32(0)
    for field_id, vector_entry in table_path:
        pos = r.field(pos, field_id)
        if vector_entry is not None:  # a vector of tables: its entry's table
            n, first = r.vector(r.deref(pos, "v"), 4, "v")
            pos = r.deref(first + 4 * vector_entry, "t")
    return pos


def _patch_violations():
    flat, start = _patch_layout()
    F = len(flat)
    one = fb.patch(start, 8, PATCH_FIELDS)
    # Buffer 1's u64 offset field: its high bytes are zero, a patch can
    # make them nonzero (the record would then write elsewhere).
    offset_field = _field_at(flat, [(4, 1), (1, None)])
    high = offset_field + 4
    # The root offset's high bytes: a patch there makes the flatbuffer
    # unreadable.
    one_byte = v(8) + v(0) + v(1) + v(0) + v(1) + fb.stream(1, 4096, [1])
    nonzero = _patch_layout(bytes([0] * 7 + [1] + [0] * 8))[0]
    return {
        "flags bit 2 without a patch list": _rebuild(flags=fmt.FLAG_PATCHES),
        "a patch list without flags bit 2": _patch_file(flags=0),
        "patch out_size 0": _patch_file([fb.patch(start, 0, PATCH_FIELDS)]),
        "patch beyond the flatbuffer": _patch_file([fb.patch(F - 7, 8, PATCH_FIELDS)],
                                                   flat=flat + b""),
        "patches overlap": _patch_file([one, fb.patch(start + 4, 8, PATCH_FIELDS)],
                                       payload=PATCH_PLANES * 2),
        "patches out of order": _patch_file([fb.patch(start + 8, 8, PATCH_FIELDS), one],
                                            payload=PATCH_PLANES * 2),
        "patch over nonzero bytes": _patch_file(flat=nonzero),
        "num_patches over the bound": _patch_file(num_patches=10 ** 6),
        "patch changes a Buffer.offset": _patch_file(
            [fb.patch(high, 1, one_byte)], payload=b"\x01"),
        "patch breaks the flatbuffer": _patch_file([fb.patch(2, 1, one_byte)],
                                                   payload=b"\x01"),
        "patch elem_bits 32 for 6 bytes": _patch_file([fb.patch(start, 6, PATCH_FIELDS)]),
        "patch payload byte unused": _patch_file(payload=PATCH_PLANES + b"\x00"),
        "patch stream runs past the payload": _patch_file(payload=PATCH_PLANES[:-1]),
    }


def test_patches_decode_into_the_inner_flatbuffer():
    flat, start = _patch_layout()
    data = _patch_file()
    out = _decode(data)
    assert out[start:start + 8] == PATCH_VALUES
    # everything else is the unpatched file's bytes
    assert out[:start] + out[start + 8:] == _decode(_rebuild(flat=flat))[:start] + \
        _decode(_rebuild(flat=flat))[start + 8:]
    assert _c_decoder().decode(data) == out
    # an unaligned patch, the last byte of the inline data, and two patches
    # with a codebook record (1-bit code over [0x11, 0x22])
    cb = v(8) + v(0) + v(0) + v(0) + v(1) + v(0) + v(2) + v(0x11) + v(8) + bytes([0x10]) \
        + fb.stream(0, 4096, [1])
    two = _patch_file([fb.patch(start + 1, 8, PATCH_FIELDS), fb.patch(start + 15, 1, cb)],
                      payload=PATCH_PLANES + b"\x80")
    out = _decode(two)
    assert out[start:start + 16] == b"\0" + PATCH_VALUES + b"\0" * 6 + b"\x22"
    assert _c_decoder().decode(two) == out
    # The patched ranges are part of a data vector, never of what the
    # decoder reads: the decoded file's buffers are the inner flatbuffer's.
    assert read_model(out[:len(flat)], metadata=False).buffers == \
        read_model(flat, metadata=False).buffers


def test_patch_statuses():
    # (A patch that makes the flatbuffer unreadable is refused too, as
    # FLATBUFFER or CORRUPT: §2 fixes only the statuses of §7's order.)
    for rule, status in (("patch changes a Buffer.offset", "corrupt"),
                         ("patch over nonzero bytes", "corrupt")):
        for decode in (_decode, _c_decoder().decode):
            with pytest.raises(FormatError) as e:
                decode(_patch_violations()[rule])
            assert e.value.status == status, (rule, decode, str(e.value))


def test_format_md_patch_example_is_current():
    # FORMAT.md §6.7 quotes a patch descriptor and its payload: a file built
    # from those bytes decodes to the values the text states.
    import os
    spec = open(os.path.join(os.path.dirname(__file__), "..", "docs", "FORMAT.md")).read()
    section = spec[spec.index("### 6.7"):spec.index("## 7. Decoding")]
    lines = section.split("```")[1].splitlines()
    head = bytes.fromhex(lines[1].split("out_offset")[0])
    stream = bytes.fromhex(lines[4].split("(")[0])
    payload = bytes.fromhex(section.split("with the payload `")[1].split("`")[0])
    written = bytes.fromhex(section.split("written as `")[1].split("`")[0])
    flat = fb.inner_flatbuffer([None, bytes(300)])
    assert read_model(flat, metadata=False).buffers[1].data_start <= 200
    data = fb.build(flat, [fb.fixed_table(8)], [], payload, patches=[head + stream * 4],
                    flags=fmt.FLAG_PATCHES, minor=3)
    assert head + stream * 4 == fb.patch(200, 8, _plane_fields(0))
    for decode in (_decode, _c_decoder().decode):
        assert decode(data)[200:208] == written == PATCH_VALUES


def _violations():
    flat, off = _parts()
    table = fb.huffman_table([0, 1], [1, 1])
    meta = flat + v(1) + table + v(1) + _record()
    r = lambda **kw: _rebuild(records=[_record(**kw)])  # noqa: E731
    cb = lambda **kw: _rebuild(records=[_record(tail=_codebook(**kw))])  # noqa: E731
    return {
        # container (§3, §4)
        "magic": _rebuild(magic=b"TFDX"),
        "version 3": _rebuild(major=3),
        "flags bit 3": _rebuild(flags=8),
        "crc": _rebuild(bad_crc=True),
        "F < 8": _rebuild(F=7),
        "F > M": _rebuild(F=10 ** 6),
        "D < F": _rebuild(D=len(flat) - 1),
        "D beyond the last record": _rebuild(D=off + 24),
        "D before the end of the last record": _rebuild(D=off + 4),
        "C beyond the section": _rebuild(C=10 ** 5),
        "DEFLATE stream truncated": _rebuild(deflated=fb.deflate(meta)[:-3]),
        "bytes after the DEFLATE stream": _rebuild(C=len(fb.deflate(meta)) + 1,
                                                   extra_after_deflate=b"\0"),
        "M larger than the stream": _rebuild(M=len(meta) + 100),
        "M smaller than the stream": _rebuild(M=len(meta) - 1),
        "M over 1032 C": _rebuild(M=fmt.DEFLATE_MAX_RATIO * len(fb.deflate(meta)) + 1),
        "not DEFLATE": _rebuild(deflated=b"\xff" * 40),
        "unused payload byte": _rebuild(payload=b"\x48\x00"),
        "payload short": _rebuild(payload=b""),
        "no section key": _rebuild(key=b"tfdc.v3"),
        # meta stream (§5)
        "inner flatbuffer not TFL3": _rebuild(flat=b"\0" * len(flat), D=off + 8),
        "trailing meta bytes": _rebuild(meta=meta + b"\0"),
        "num_records too large": _rebuild(num_records=5),
        "non-minimal varint": _rebuild(meta=flat + b"\x81\x00" + table + v(1) + _record()),
        "varint of 11 bytes": _rebuild(meta=flat + b"\x81" + b"\x80" * 9 + b"\x00" + table),
        # tables (§5.1)
        "table kind 2": _rebuild(tables=[v(2) + v(2)]),
        "table m = 1": _rebuild(tables=[v(0) + v(1) + v(0) + b"\x01"]),
        "table m > 32768": _rebuild(tables=[v(0) + v(32769)]),
        "table gap ≥ 32768": _rebuild(tables=[v(0) + v(2) + v(0) + v(32768) + b"\x11"]),
        "table symbol ≥ 32768": _rebuild(tables=[v(0) + v(2) + v(1) + v(32766) + b"\x11"]),
        "table length 0": _rebuild(tables=[v(0) + v(3) + v(0) * 3 + b"\x11\x00"]),
        "table pad nibble": _rebuild(tables=[v(0) + v(3) + v(0) * 3 + b"\x21\x12"]),
        "table incomplete": _rebuild(tables=[v(0) + v(2) + v(0) * 2 + b"\x21"]),
        "table over-full": _rebuild(tables=[v(0) + v(3) + v(0) * 3 + b"\x11\x01"]),
        "kind 1 symbol ≥ 32768": _rebuild(tables=[v(1) + v(32768)]),
        "fixed width 0": _rebuild(tables=[fb.fixed_table(0)]),
        "fixed width 16": _rebuild(tables=[fb.fixed_table(16)]),
        "fixed-length symbol ≥ K": _rebuild(tables=[fb.fixed_table(2)], records=[_record(
            tail=_codebook(stream=fb.stream(0, 4096, [2])))], payload=b"\x18\x00"),
        "fixed-length segment length": _rebuild(tables=[fb.fixed_table(1)], records=[_record(
            tail=_codebook(stream=fb.stream(0, 4096, [2])))], payload=b"\x48\x00"),
        "fixed-length padding bits": _rebuild(tables=[fb.fixed_table(3)], records=[_record(
            tail=_codebook(stream=fb.stream(0, 3, [2, 2, 1])))],
            payload=b"\x04\x00\x04\x00\x01"),
        # kind 3 and 4 tables (§5.3, §5.4)
        **_rans_violations(),
        **_rans4_violations(),
        **_patch_violations(),
        # records (§6)
        "buffer_index out of range": r(head=v(9) + HEAD_TAIL),
        "buffer without offset": r(head=v(0) + HEAD_TAIL),
        "elem_bits 3": r(head=v(1) + v(3) + v(0) * 3 + v(1)),
        "elem_bits 128": r(head=v(1) + v(128) + v(0) * 3 + v(1)),
        "transform 3": r(head=v(1) + v(8) + v(3) + v(0) * 2 + v(1)),
        "value_mode 2": r(head=v(1) + v(8) + v(0) + v(2) + v(0) + v(1)),
        "position_mode 2": r(head=v(1) + v(8) + v(0) * 2 + v(2) + v(1)),
        "scan_rows 0": r(head=v(1) + v(8) + v(0) * 3 + v(0)),
        "scan_rows 3 does not divide 8": r(head=v(1) + v(8) + v(0) * 3 + v(3)),
        "expand 2": cb(expand=2),
        "expand with 8-bit elements": cb(expand=1),
        "K = 0 with values": cb(K=0),
        "K > 32768": _rebuild(records=[_record(tail=v(0) + v(32769))]),
        "value table larger than K": cb(K=1),
        "key_0 ≥ 2^8": cb(key0=256),
        "width > 8": cb(width=9, deltas=b"\0\0"),
        "keys overflow": cb(key0=200, width=8, deltas=b"\x80"),
        "delta padding bits": cb(width=1, deltas=b"\x40"),
        "stream table missing": cb(stream=fb.stream(1, 4096, [1])),
        "block 0": cb(stream=fb.stream(0, 0, [])),
        "block ≥ 2^32": cb(stream=fb.stream(0, 1 << 32, [1])),
        "segment too short": _rebuild(records=[_record(tail=_codebook(
            stream=fb.stream(0, 4, [0, 1])))], payload=b"\x40"),
        "segment length too long": _rebuild(records=[_record(tail=_codebook(
            stream=fb.stream(0, 4, [2, 1])))], payload=b"\x48\x00\x00"),
        "segment padding bits": _rebuild(records=[_record(tail=_codebook(
            stream=fb.stream(0, 3, [1, 1, 1])))], payload=b"\x40\x40\x01"),
        "kind 1 symbol ≥ K": _rebuild(tables=[fb.single_table(2)], records=[_record(
            tail=_codebook(stream=fb.stream(0)))], payload=b""),
        # sparse records (§6, §6.6)
        "nnz > N": _rebuild(records=[_sparse(9, 4, 9, b"", b"")]),
        "G = 1": _rebuild(records=[_sparse(2, 1, 2, b"", b"")]),
        "G = 32769": _rebuild(records=[_sparse(2, 32769, 2, b"", b"")]),
        "gap_count < nnz": _rebuild(records=[_sparse(2, 4, 1, b"", b"")]),
        "gap_count too large": _rebuild(records=[_sparse(2, 2, 9, b"", b"")]),
        "gap_count with nnz = 0": _rebuild(records=[_sparse(0, 4, 1, b"", b"")]),
        "gap stream ends with a filler": _rebuild(
            tables=[fb.huffman_table([0, 3], [1, 1]), fb.single_table(0)],
            records=[_sparse(1, 4, 2, fb.stream(0, 4096, [1]),
                             _codebook(K=1, stream=fb.stream(1)))], payload=b"\x40"),
        "position ≥ N": _rebuild(
            tables=[fb.single_table(2), fb.single_table(0)],
            records=[_sparse(3, 4, 3, fb.stream(0), _codebook(K=1, stream=fb.stream(1)))],
            payload=b""),
        "gap table larger than G": _rebuild(
            tables=[fb.huffman_table([0, 4], [1, 1]), fb.single_table(0)],
            records=[_sparse(1, 4, 1, fb.stream(0, 4096, [1]),
                             _codebook(K=1, stream=fb.stream(1)))], payload=b"\x00"),
        # output ranges (§6.1)
        "offset misaligned": _rebuild(flat=_layout(None, (8, 8))[0]),
        "offset inside the flatbuffer": _rebuild(flat=fb.inner_flatbuffer([None, (16, 8)]),
                                                 D=len(flat)),
        "size 0": _rebuild(flat=_layout(None, (0, 0))[0]),
        "unfilled offset buffer": _rebuild(flat=_layout(None, (0, 8), (16, 8))[0],
                                           D=_layout(None, (0, 8), (16, 8))[1] + 8),
        "overlapping records": _rebuild(
            flat=_layout(None, (0, 8), (0, 8))[0],
            records=[fb.dense_codebook_record(1, 8, [1, 2], 0, [0], 0, 4096, [1]),
                     fb.dense_codebook_record(2, 8, [1, 2], 0, [0], 0, 4096, [1])],
            payload=b"\x48\x48"),
        "records out of order": _rebuild(
            flat=_layout(None, (16, 8), (0, 8))[0],
            records=[fb.dense_codebook_record(1, 8, [1, 2], 0, [0], 0, 4096, [1]),
                     fb.dense_codebook_record(2, 8, [1, 2], 0, [0], 0, 4096, [1])],
            payload=b"\x48\x48"),
        "elem_bits 64 vs 4 bytes": _rebuild(flat=_layout(None, (0, 4))[0],
                                            records=[_record(head=v(1) + v(64) + v(0) * 3
                                                             + v(1))]),
    }


def test_the_hand_built_cases_are_valid_when_unbroken():
    # Controls for the rule cases: the same parts, one rule kept.
    three = _rebuild(records=[_record(tail=_codebook(stream=fb.stream(0, 3, [1, 1, 1])))],
                     payload=b"\x40\x40\x00")
    assert _decode(three) == _decode(_valid_file()[0])
    flat, off = _layout(None, (0, 8), (16, 8))
    two = _rebuild(flat=flat, records=[
        fb.dense_codebook_record(1, 8, [1, 2], 0, [0], 0, 4096, [1]),
        fb.dense_codebook_record(2, 8, [1, 2], 0, [0], 0, 4096, [1])], payload=b"\x48\x48")
    assert _decode(two)[off + 16:] == bytes([1, 2, 1, 1, 2, 1, 1, 1])
    sparse = _rebuild(tables=[fb.single_table(1), fb.single_table(0)],
                      records=[_sparse(3, 4, 3, fb.stream(0), _codebook(K=1,
                                                                       stream=fb.stream(1)))],
                      payload=b"")
    assert _decode(sparse)[_parts()[1]:] == bytes([0, 1, 0, 1, 0, 1, 0, 0])
    # a fixed-length code of 1 bit (kind 2) codes the same values in the same bits
    fixed = _rebuild(tables=[fb.fixed_table(1)])
    assert _decode(fixed) == _decode(_valid_file()[0])
    # ... and of 3 bits: symbols 0,1,0,0,1,0,0,0 = 000 001 000 000 001 000 000 000
    three_bits = _rebuild(tables=[fb.fixed_table(3)], records=[_record(
        tail=_codebook(stream=fb.stream(0, 4096, [3])))], payload=b"\x04\x02\x00")
    assert _decode(three_bits) == _decode(_valid_file()[0])
    # kind 3 (§5.3): one segment, and segments of 3 symbols (contexts restart)
    assert _decode(_rans_file()) == _decode(_valid_file()[0])
    assert _decode(_rans_file(block=3)) == _decode(_valid_file()[0])
    assert _decode(_rans_file(block=1)) == _decode(_valid_file()[0])
    # the largest block: arrays sized by the symbols, not by the block
    assert _decode(_rans_file(block=fmt.MAX_BLOCK)) == _decode(_valid_file()[0])
    # kind 4 (§5.4): segments that start mid-row (block 3, 1), rows that
    # wrap the row map (P = 2 < 4 rows of 2), row and column groups, lags
    # into the previous row
    assert _decode(_rans4_file()) == _decode(_valid_file()[0])
    for block in (1, 3, 5, fmt.MAX_BLOCK):
        assert _decode(_rans4_file(block=block)) == _decode(_valid_file()[0]), block
    wrap = dict(classes=[(0, [1, 3]), (0, [3, 1]), (0, [2, 2]), (0, [4]), (0, [1, 3]),
                         (0, [3, 1]), (0, [2, 2]), (0, [3, 1])],
                groups=dict(C=2, row_len=2, col_groups=2, col_group=[1, 0], row_groups=2,
                            row_group=[1, 0]))
    for block in (2, 3, 4096):
        assert _decode(_rans4_file(block=block, **wrap)) == _decode(_valid_file()[0]), block
    padded = _rebuild(tables=[fb.fixed_table(3)], records=[_record(
        tail=_codebook(stream=fb.stream(0, 3, [2, 2, 1])))], payload=b"\x04\x00\x04\x00\x00")
    assert _decode(padded) == _decode(_valid_file()[0])


VIOLATIONS = sorted(_violations())


@pytest.mark.parametrize("rule", VIOLATIONS)
def test_each_broken_rule_is_a_format_error(rule):
    data = _violations()[rule]
    with pytest.raises(FormatError):
        _decode(data)
        pytest.fail(f"{rule}: accepted")


def test_error_statuses_follow_the_order_of_section_7():
    cases = {"version": _rebuild(major=3), "checksum": _rebuild(bad_crc=True),
             "too_large": _rebuild(D=1 << 40), "truncated": _rebuild(C=10 ** 5)}
    for status, data in cases.items():
        with pytest.raises(FormatError) as e:
            _decode(data)
        assert e.value.status == status, (status, str(e.value))


@pytest.mark.parametrize("field", ["D", "M"])
def test_a_size_past_what_the_machine_holds_is_too_large_with_no_limit(field):
    # max_size=inf let 2**64 - 1 through to an OverflowError in zlib.
    data = _rebuild(**{field: (1 << 64) - 1})
    for backend in ("python", "auto"):
        for limit in (float("inf"), 1 << 70):  # 2**70 was a ValueError from the C decoder
            with pytest.raises(FormatError) as e:
                unpack.decode(data, backend=backend, max_size=limit)
            assert e.value.status == "too_large", (backend, str(e.value))


def test_a_size_this_process_cannot_allocate_is_a_format_error_with_no_limit():
    # 2**62 bytes declared, no limit: the C decoder's allocation failed with a
    # bare MemoryError; the Python decoder says what is wrong before that.
    data = _rebuild(D=1 << 62)
    for backend in ("python", "auto"):
        with pytest.raises(FormatError, match="is not the end of the last record"):
            unpack.decode(data, backend=backend, max_size=float("inf"))


def test_both_section_keys_is_an_error(small_packed):
    packed, _, _ = small_packed
    from tfdc import tflite_schema
    stub = tflite_schema.read(packed[:fmt.STUB_SIZE])
    schema = tflite_schema.get()
    extra = schema.MetadataT()
    extra.name, extra.buffer = "tfdc.v1", 0
    stub.metadata.append(extra)
    with pytest.raises(FormatError, match="more than one"):
        unpack.parse(tflite_schema.build(stub) + packed[fmt.STUB_SIZE:])


# ----------------------------------------------------------- native decoder
def test_native_decoder_agrees_on_format_2(small_packed):
    native = unpack._native()
    if native is None:
        pytest.skip("tfdc._native is not built")
    packed, _, _ = small_packed
    assert unpack.decode(packed, backend="native") == _decode(packed)


def _c_decoder():
    native = unpack._native()
    if native is None or getattr(native, "FORMAT_MAJOR", 1) < 2:
        pytest.skip("tfdc._native (format 2) is not built: python setup.py build_ext --inplace")
    return native


@pytest.mark.parametrize("rule", VIOLATIONS)
def test_the_c_decoder_rejects_each_broken_rule(rule):
    with pytest.raises(FormatError):
        _c_decoder().decode(_violations()[rule])
        pytest.fail(f"{rule}: accepted by the C decoder")


def test_a_meta_size_beyond_what_deflate_gives_is_refused_before_allocating_it(tmp_path):
    # 2 KB claiming a 2**31 - 1 byte meta stream (under the default limit):
    # the C decoder allocated it before inflating, NOMEM where memory is
    # short (armv7, a capped process), CORRUPT elsewhere. Run in a process
    # whose address space is capped at 1 GiB; refused before the malloc.
    _c_decoder()
    path = tmp_path / "huge_meta.tflite"
    path.write_bytes(_rebuild(M=(1 << 31) - 1))
    code = textwrap.dedent(f"""
        import resource, sys
        from tfdc import unpack
        from tfdc.errors import FormatError
        data = open({str(path)!r}, "rb").read()
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        decoders = {{"native": unpack._native().decode,  # the C decoder itself
                     "python": lambda d: unpack.decode(d, backend="python")}}
        for backend, decode in decoders.items():
            try:
                decode(data)
            except FormatError as e:
                print(backend, e.status, e)
            except MemoryError as e:
                print(backend, "MemoryError", e)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    lines = run.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["native", "corrupt"],
                                                   ["python", "corrupt"]], run.stdout + run.stderr
    assert "more than a DEFLATE stream of" in lines[1]


def test_the_c_decoder_reports_the_statuses_of_section_7():
    native = _c_decoder()
    cases = [("version", _rebuild(major=3)), ("checksum", _rebuild(bad_crc=True)),
             ("too_large", _rebuild(D=1 << 40)), ("truncated", _rebuild(C=10 ** 5)),
             ("not_packed", unpack.decode(_valid_file()[0], backend="python")),
             # No key, but a section ends the file (§3.2): a damaged key, or
             # one of a later major version.
             ("corrupt", _rebuild(key=b"tfdc.v3")), ("version", _rebuild(key=b"tfdc.v3", major=3))]
    for status, data in cases:
        with pytest.raises(FormatError) as e:
            native.decode(data)
        assert e.value.status == status, (status, str(e.value))
    with pytest.raises(FormatError) as e:
        native.decode(_valid_file()[0], max_size=10)
    assert e.value.status == "too_large"


def test_c_and_python_agree_on_mutated_meta_streams(small_packed):
    """The mutations of test_mutated_meta_streams_with_a_valid_container, fed
    to both decoders: the same files accepted, with the same bytes."""
    native = _c_decoder()
    packed, _, _ = small_packed
    accepted = rejected = 0
    for pos, value, data in _meta_mutants(
            packed, lambda b: (b ^ 1, (b + 0x80) & 255, 0, b ^ 0x10)):
        try:
            expected = _decode(data)
        except FormatError:
            expected = None
        try:
            got = native.decode(data)
        except FormatError:
            got = None
        assert got == expected, f"meta byte {pos} -> {value:#x}"
        accepted += expected is not None
        rejected += expected is None
    assert accepted and rejected


def test_auto_backend_uses_python_where_native_lacks_the_version(small_packed):
    packed, _, _ = small_packed
    assert unpack.decode(packed) == _decode(packed)
    native = unpack._native()
    if native is not None and getattr(native, "FORMAT_MAJOR", 1) < 2:
        with pytest.raises(ImportError, match="reads format 1 files"):
            unpack.decode(packed, backend="native")


@pytest.mark.parametrize("block", [1, 3, 4096, fmt.MAX_BLOCK])
def test_the_c_decoder_decodes_the_hand_built_kind_3_files(block):
    data = _rans_file(block=block)
    assert _c_decoder().decode(data) == _decode(data) == _decode(_valid_file()[0])


@pytest.mark.parametrize("block", [1, 3, 4096, fmt.MAX_BLOCK])
def test_the_c_decoder_decodes_the_hand_built_kind_4_files(block):
    data = _rans4_file(block=block)
    assert _c_decoder().decode(data) == _decode(data) == _decode(_valid_file()[0])


def test_format_md_kind_4_example_is_current():
    # FORMAT.md §5.4 quotes this file's kind 4 table and segment bytes.
    import os
    spec = open(os.path.join(os.path.dirname(__file__), "..", "docs", "FORMAT.md")).read()
    section = " ".join(spec[spec.index("### 5.4"):spec.index("## 6. Records")].split())
    table = fb.rans_table(**RANS4)
    # header fields, column groups, row groups, table 0, table 1
    for part in (table[:7], table[7:13], table[13:16], table[16:20], table[20:]):
        assert f"`{part.hex(' ')}`" in section
    assert f"`{fb.rans_segment(RANS_SYMBOLS, **RANS4).hex(' ')}`" in section


def test_format_md_kind_3_example_is_current():
    # FORMAT.md §5.3 quotes this file's kind 3 table and segment bytes.
    import os
    spec = open(os.path.join(os.path.dirname(__file__), "..", "docs", "FORMAT.md")).read()
    section = " ".join(spec[spec.index("### 5.3"):spec.index("### 5.4")].split())
    table = fb.rans_table(**RANS)
    for part in (table[:7], table[7:11], table[11:]):  # header, class 0, class 1
        assert f"`{part.hex(' ')}`" in section
    assert f"`{fb.rans_segment(RANS_SYMBOLS, **RANS).hex(' ')}`" in section


def test_kind_3_tables_cost_memory_by_their_bytes_not_their_alphabet():
    # 200 unused kind 3 tables of 32 classes, each listing only symbol
    # 32767 (~160 meta bytes each): dense frequency arrays would be 8 MB
    # apiece. Both decoders read the file holding far less than that.
    import tracemalloc
    big = fb.rans_table(prec=1, width=15, lag1=1, lag2=1, shift=0,
                        classes=[(32767, [2])] * 32)
    stream = fb.stream(0, 4096, [5])
    data = _rebuild(tables=[fb.rans_table(**RANS)] + [big] * 200,
                    records=[_record(tail=_codebook(K=2, width=0, stream=stream))],
                    payload=fb.rans_segment(RANS_SYMBOLS, **RANS), flags=fmt.FLAG_RANS, minor=1)
    tracemalloc.start()
    try:
        assert _decode(data) == _decode(_valid_file()[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20, peak
    assert _c_decoder().decode(data) == _decode(data)
