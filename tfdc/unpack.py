"""Decode a tfdc-packed `.tflite` file back to a standard TFLite model.

`decode` implements docs/FORMAT.md §4 in NumPy (or calls the native C decoder
`tfdc._native` when it is built): it validates the whole file — flatbuffer,
header, both CRCs, every table and record rule — and only then returns the
decoded model, a copy of the packed file followed by the decoded weights at
their `Buffer.offset`. Every malformed input raises `tfdc.FormatError`.

Example:

    import tfdc
    packed = open("model.tfdc.tflite", "rb").read()
    if tfdc.is_packed(packed):
        open("model.tflite", "wb").write(tfdc.decode(packed))
"""

import dataclasses
import zlib

import numpy as np

from tfdc import format as fmt
from tfdc import huffman
from tfdc.errors import FormatError
from tfdc.flatbuf import read_model
from tfdc.format import (HEADER, RECORD_HEADER, STREAM_HEADER, TABLE_HEADER,
                         fp16_to_fp32_bits)

METADATA_NAME = fmt.METADATA_NAME_BYTES
_UINT = fmt.UINT_OF_SIZE


@dataclasses.dataclass
class _Table:
    kind: int
    n: int
    lengths: object = None  # np.uint8 code lengths (kind 0)
    symbol: int = 0         # kind 1
    size: int = 0           # bytes in the section
    _lookup: object = None

    def lookup(self):
        if self._lookup is None:
            self._lookup = huffman.lookup_table(self.lengths)
        return self._lookup


@dataclasses.dataclass
class _Stream:
    count: int
    table: int              # index, or 0xFFFF
    block: int
    seg_bytes: object       # np.uint32, kind 0 only
    data_start: int         # position of the segment data in the file
    data_len: int


@dataclasses.dataclass
class _Record:
    buffer_index: int
    out_offset: int
    out_size: int
    elem_size: int
    value_mode: int
    position_mode: int
    scan: int
    scan_rows: int
    nnz: int
    codebook_size: int
    codebook_encoding: int
    gap_alphabet: int
    codebook_start: int
    raw_values_start: int
    values: object          # _Stream or None
    gaps: object            # _Stream or None
    record_start: int
    record_size: int


@dataclasses.dataclass
class Parsed:
    """A validated packed file: section position and size, decoded size,
    code tables and records."""
    S: int
    Z: int
    D: int
    tables: list
    records: list


class _Cursor:
    """Bounds-checked sequential reads of the section."""

    def __init__(self, data, pos, end, what):
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def take(self, n, what):
        if n < 0 or self.pos + n > self.end:
            raise FormatError(f"{self.what}: truncated while reading {what} "
                              f"(needs {n} bytes at {self.pos}, ends at {self.end})")
        p = self.pos
        self.pos += n
        return p

    def unpack(self, st, what):
        return st.unpack_from(self.data, self.take(st.size, what))


def _locate_section(data):
    """(S, Z, buffer refs, section buffer index) per §2, or FormatError."""
    model = read_model(data)
    found = [b for name, b in model.metadata if name == METADATA_NAME]
    if not found:
        raise FormatError("not a tfdc-packed model: no 'tfdc.v1' metadata entry")
    if len(found) > 1:
        raise FormatError("more than one 'tfdc.v1' metadata entry")
    b = found[0]
    if b >= len(model.buffers):
        raise FormatError(f"'tfdc.v1' metadata names buffer {b}, the model has "
                          f"{len(model.buffers)}")
    ref = model.buffers[b]
    S, Z = ref.offset, ref.size
    if S <= 1 or S % 16:
        raise FormatError(f"section offset {S} is not a multiple of 16 greater than 1")
    if Z < HEADER.size + 4:
        raise FormatError(f"section size {Z} is smaller than header and CRC")
    if S + Z != len(data):
        raise FormatError(f"section [{S}, {S + Z}) does not end the {len(data)}-byte file "
                          "(truncated, or trailing bytes — already decoded?)")
    if ref.data_len:
        raise FormatError("the section's buffer has inline data")
    return S, Z, model.buffers, b


def _parse_tables(cur, num_tables):
    tables = []
    for i in range(num_tables):
        start = cur.pos
        kind, max_len, reserved, n = cur.unpack(TABLE_HEADER, f"table {i}")
        if reserved:
            raise FormatError(f"table {i}: reserved field is {reserved}")
        if not 1 <= n <= huffman.MAX_SYMBOLS:
            raise FormatError(f"table {i}: alphabet size {n} not in 1 … 32768")
        if kind == fmt.TABLE_SINGLE:
            if max_len != 0:
                raise FormatError(f"table {i}: kind 1 with max_len {max_len}")
            (symbol,) = cur.unpack(fmt.TABLE_SYMBOL, f"table {i} symbol")
            if symbol >= n:
                raise FormatError(f"table {i}: symbol {symbol} ≥ alphabet size {n}")
            tables.append(_Table(1, n, symbol=symbol, size=cur.pos - start))
        elif kind == fmt.TABLE_HUFFMAN:
            p = cur.take((n + 1) // 2, f"table {i} code lengths")
            packed = np.frombuffer(cur.data, np.uint8, (n + 1) // 2, p)
            lengths = np.empty(2 * len(packed), np.uint8)
            lengths[0::2] = packed & 15
            lengths[1::2] = packed >> 4
            if n % 2 and lengths[n]:
                raise FormatError(f"table {i}: the unused last nibble is not 0")
            lengths = lengths[:n]
            top = int(lengths.max())
            if top == 0:
                raise FormatError(f"table {i}: no symbol has a code")
            if top != max_len:
                raise FormatError(f"table {i}: max_len is {max_len}, largest length {top}")
            if not huffman.kraft_ok(lengths):
                raise FormatError(f"table {i}: code lengths break the Kraft inequality")
            tables.append(_Table(0, n, lengths=lengths, size=cur.pos - start))
        else:
            raise FormatError(f"table {i}: unknown kind {kind}")
    return tables


def _parse_stream(cur, tables, what, alphabet_limit, exact_count=None, max_count=None):
    count, table, reserved, block = cur.unpack(STREAM_HEADER, what)
    if reserved:
        raise FormatError(f"{what}: reserved field is {reserved}")
    if exact_count is not None and count != exact_count:
        raise FormatError(f"{what}: count {count}, expected {exact_count}")
    if max_count is not None and count > max_count:
        raise FormatError(f"{what}: count {count} exceeds {max_count}")
    if count == 0:
        if table != fmt.NO_TABLE or block != 0:
            raise FormatError(f"{what}: an empty stream must have table 0xFFFF and block 0")
        return _Stream(0, table, 0, None, cur.pos, 0)
    if table >= len(tables):
        raise FormatError(f"{what}: table {table} does not exist ({len(tables)} tables)")
    t = tables[table]
    if t.n > alphabet_limit:
        raise FormatError(f"{what}: table {table} has {t.n} symbols, more than {alphabet_limit}")
    if t.kind == fmt.TABLE_SINGLE:
        if block != 0:
            raise FormatError(f"{what}: block must be 0 with a single-symbol table")
        return _Stream(count, table, 0, None, cur.pos, 0)
    if block < 1:
        raise FormatError(f"{what}: block is 0")
    nseg = -(-count // block)
    p = cur.take(4 * nseg, f"{what} segment lengths")
    seg_bytes = np.frombuffer(cur.data, "<u4", nseg, p).astype(np.int64)
    total = int(seg_bytes.sum())
    start = cur.take(total, f"{what} segment data")
    if count > 8 * total:
        raise FormatError(f"{what}: {count} symbols cannot fit in {total} bytes")
    return _Stream(count, table, block, seg_bytes, start, total)


def _parse_record(data, cur, i, tables, buffers, S, Z, D, prev_end):
    start = cur.pos
    what = f"record {i}"
    if cur.end - start < RECORD_HEADER.size + 4:
        raise FormatError(f"{what}: truncated header")
    (size, buffer_index, out_offset, out_size, elem_size, value_mode, position_mode, scan,
     scan_rows, nnz, K, encoding, reserved, G) = RECORD_HEADER.unpack_from(data, start)
    if size < RECORD_HEADER.size + fmt.CRC.size or start + size > cur.end:
        raise FormatError(f"{what}: record_size {size} does not fit in the section")
    (crc,) = fmt.CRC.unpack_from(data, start + size - fmt.CRC.size)
    if zlib.crc32(memoryview(data)[start:start + size - 4]) != crc:
        raise FormatError(f"{what}: record CRC mismatch")
    rec_cur = _Cursor(data, start, start + size - 4, what)
    rec_cur.take(RECORD_HEADER.size, "header")
    if reserved != b"\0\0\0":
        raise FormatError(f"{what}: reserved bytes are not 0")
    if buffer_index >= len(buffers):
        raise FormatError(f"{what}: buffer_index {buffer_index} ≥ {len(buffers)} buffers")
    if out_size == 0:
        raise FormatError(f"{what}: out_size is 0")
    if elem_size not in fmt.ELEM_SIZES or out_size % elem_size:
        raise FormatError(f"{what}: elem_size {elem_size} invalid for out_size {out_size}")
    N = out_size // elem_size
    if value_mode not in (0, 1) or position_mode not in (0, 1) or scan not in (0, 1):
        raise FormatError(f"{what}: value_mode/position_mode/scan out of range")
    if scan_rows < 1 or N % scan_rows or (scan == fmt.SCAN_ROW and scan_rows != 1):
        raise FormatError(f"{what}: scan_rows {scan_rows} invalid for {N} elements, scan {scan}")
    if (position_mode == 0 and nnz != N) or nnz > N:
        raise FormatError(f"{what}: nnz {nnz} invalid for {N} elements")
    if value_mode == fmt.VALUE_CODEBOOK:
        if K > fmt.MAX_CODEBOOK or (nnz > 0 and K == 0):
            raise FormatError(f"{what}: codebook_size {K} invalid")
    elif K != 0:
        raise FormatError(f"{what}: raw values with codebook_size {K}")
    if encoding not in (fmt.CODEBOOK_RAW, fmt.CODEBOOK_FP16) or (
            encoding == fmt.CODEBOOK_FP16 and elem_size != 4):
        raise FormatError(f"{what}: codebook_encoding {encoding} invalid")
    if position_mode == fmt.POSITION_SPARSE:
        if not fmt.MIN_GAP_ALPHABET <= G <= fmt.MAX_GAP_ALPHABET:
            raise FormatError(f"{what}: gap_alphabet {G} not in 2 … 32768")
    elif G != 0:
        raise FormatError(f"{what}: dense record with gap_alphabet {G}")
    if out_offset % 16 or out_offset < S + Z or out_offset + out_size > D:
        raise FormatError(f"{what}: output range [{out_offset}, +{out_size}) invalid")
    if out_offset < prev_end:
        raise FormatError(f"{what}: output range overlaps or precedes the previous record")
    ref = buffers[buffer_index]
    if ref.offset != out_offset or ref.size != out_size or ref.data_len:
        raise FormatError(f"{what}: Model.buffers[{buffer_index}] does not point at the "
                          "record's output range")
    entry = 2 if encoding == fmt.CODEBOOK_FP16 else elem_size
    codebook_start = rec_cur.take(K * entry, "codebook")
    values = None
    raw_start = 0
    if value_mode == fmt.VALUE_CODEBOOK:
        values = _parse_stream(rec_cur, tables, f"{what} values", K, exact_count=nnz)
    else:
        raw_start = rec_cur.take(nnz * elem_size, "raw values")
    gaps = None
    if position_mode == fmt.POSITION_SPARSE:
        gaps = _parse_stream(rec_cur, tables, f"{what} gaps", G, max_count=nnz + N)
        if nnz == 0 and gaps.count:
            raise FormatError(f"{what}: no values but a nonempty gap stream")
        if nnz > 0 and gaps.count < nnz:
            raise FormatError(f"{what}: gap stream shorter than nnz")
    if rec_cur.pos != rec_cur.end:
        raise FormatError(f"{what}: parts end at {rec_cur.pos - start}, record_size is {size}")
    cur.pos = start + size
    return _Record(buffer_index, out_offset, out_size, elem_size, value_mode, position_mode,
                   scan, scan_rows, nnz, K, encoding, G, codebook_start, raw_start, values,
                   gaps, start, size)


def parse(packed, max_size=None):
    """Validate the container, tables and records of `packed` (§4 steps 1-3).

    Returns `Parsed`; raises `FormatError`. `max_size` limits the decoded size.
    """
    data = bytes(packed) if not isinstance(packed, bytes) else packed
    S, Z, buffers, section_buffer = _locate_section(data)
    (magic, major, _minor, header_size, flags, section_size, D, model_crc, num_tables,
     num_records, reserved) = HEADER.unpack_from(data, S)
    if magic != fmt.MAGIC:
        raise FormatError(f"section magic is {magic!r}, expected b'TFDC'")
    if major != fmt.VERSION_MAJOR:
        raise FormatError(f"unsupported format version {major}.x (this decoder reads "
                          f"{fmt.VERSION_MAJOR}.x)")
    if header_size != HEADER.size or flags or reserved:
        raise FormatError("header_size, flags or reserved field invalid")
    if section_size != Z:
        raise FormatError(f"section_size {section_size} differs from Buffer.size {Z}")
    if D < S + Z:
        raise FormatError(f"decoded_size {D} is smaller than the packed file")
    (section_crc,) = fmt.CRC.unpack_from(data, S + Z - fmt.CRC.size)
    view = memoryview(data)
    if zlib.crc32(view[S:S + Z - 4]) != section_crc:
        raise FormatError("section CRC mismatch (corrupted section)")
    if zlib.crc32(view[:S]) != model_crc:
        raise FormatError("model CRC mismatch (corrupted flatbuffer)")
    if num_tables > fmt.NO_TABLE:
        raise FormatError(f"num_tables {num_tables} > 65535")
    if max_size is not None and D > max_size:
        raise FormatError(f"decoded size {D} exceeds the limit {max_size}")
    cur = _Cursor(data, S + HEADER.size, S + Z - 4, "section")
    tables = _parse_tables(cur, num_tables)
    records = []
    prev_end = 0
    if num_records > (Z - HEADER.size) // (RECORD_HEADER.size + 4):
        raise FormatError(f"num_records {num_records} cannot fit in the section")
    for i in range(num_records):
        rec = _parse_record(data, cur, i, tables, buffers, S, Z, D, prev_end)
        prev_end = rec.out_offset + rec.out_size
        records.append(rec)
    if cur.pos != cur.end:
        raise FormatError(f"records end at {cur.pos - S}, the section's CRC is at {Z - 4}")
    targets = {r.buffer_index for r in records}
    for j, ref in enumerate(buffers):
        if ref.offset > 1 and j != section_buffer and j not in targets:
            raise FormatError(f"Model.buffers[{j}] points at offset {ref.offset} but no "
                              "record fills it")
    return Parsed(S, Z, D, tables, records)


def _stream_symbols(data, stream, tables):
    if stream.count == 0:
        return np.zeros(0, np.uint16)
    t = tables[stream.table]
    if t.kind == fmt.TABLE_SINGLE:
        return np.full(stream.count, t.symbol, np.uint16)
    seg = np.frombuffer(data, np.uint8, stream.data_len, stream.data_start)
    return huffman.decode(seg, stream.seg_bytes, stream.count, stream.block, t.lengths,
                          table=t.lookup())


def _positions(gap_symbols, G, nnz, N, what):
    """Stream indices of the coded values from the gap symbols (§3.4)."""
    if nnz == 0:
        return np.zeros(0, np.int64)
    g = gap_symbols.astype(np.int64)
    filler = g == G - 1
    if filler[-1]:
        raise FormatError(f"{what}: the gap stream ends with a filler")
    steps = np.where(filler, G - 1, g + 1)
    cur = np.cumsum(steps) - 1
    pos = cur[~filler]
    if len(pos) != nnz:
        raise FormatError(f"{what}: {len(pos)} positions for {nnz} values")
    if pos[-1] >= N:
        raise FormatError(f"{what}: position {int(pos[-1])} ≥ {N} elements")
    return pos


def _record_values(data, rec, tables):
    """(element patterns of the coded values in stream order, uintX)."""
    dtype = np.dtype(_UINT[rec.elem_size]).newbyteorder("<")
    if rec.value_mode == fmt.VALUE_RAW:
        return np.frombuffer(data, dtype, rec.nnz, rec.raw_values_start)
    if rec.codebook_encoding == fmt.CODEBOOK_FP16:
        codebook = fp16_to_fp32_bits(np.frombuffer(data, "<u2", rec.codebook_size,
                                                   rec.codebook_start))
    else:
        codebook = np.frombuffer(data, dtype, rec.codebook_size, rec.codebook_start)
    symbols = _stream_symbols(data, rec.values, tables)
    return codebook[symbols]


def _decode_record(data, rec, tables, out):
    what = f"record for buffer {rec.buffer_index}"
    values = _record_values(data, rec, tables)
    N = rec.out_size // rec.elem_size
    region = out[rec.out_offset:rec.out_offset + rec.out_size].view(_UINT[rec.elem_size])
    if rec.position_mode == fmt.POSITION_SPARSE:
        gaps = _stream_symbols(data, rec.gaps, tables)
        t = _positions(gaps, rec.gap_alphabet, rec.nnz, N, what)
        if rec.scan == fmt.SCAN_COLUMN:
            R = rec.scan_rows
            t = (t % R) * (N // R) + t // R
        region[t] = values
    elif rec.scan == fmt.SCAN_COLUMN:
        R = rec.scan_rows
        region.reshape(R, N // R)[...] = values.reshape(N // R, R).T
    else:
        region[...] = values


def _decode_python(data, max_size):
    parsed = parse(data, max_size)
    try:
        out = np.zeros(parsed.D, dtype=np.uint8)
    except MemoryError:
        raise FormatError(f"decoded size {parsed.D} cannot be allocated") from None
    out[:len(data)] = np.frombuffer(data, np.uint8)
    for rec in parsed.records:
        _decode_record(data, rec, parsed.tables, out)
    return out.tobytes()


def _native():
    try:
        from tfdc import _native
    except ImportError:
        return None
    return _native


def decode(packed, backend="auto", *, max_size=None):
    """Decode a packed model to a standard `.tflite` (bytes).

    Args:
        packed: the packed file (bytes-like).
        backend: "auto" (the C extension when built, else NumPy), "native"
            or "python".
        max_size: limit on the decoded size in bytes. Default: the larger of
            2 GiB and 1024 × the packed size (a decoded size is chosen by the
            file, so a crafted file could otherwise demand any allocation);
            pass `float("inf")` for no limit.

    Raises:
        FormatError: the file is not packed, or is malformed, truncated or
            corrupted. ImportError: backend="native" without the extension.
    """
    if backend not in ("auto", "native", "python"):
        raise ValueError(f"backend must be 'auto', 'native' or 'python', got {backend!r}")
    data = bytes(packed)
    if max_size is None:
        max_size = max(1 << 31, 1024 * len(data))
    native = _native() if backend != "python" else None
    if backend == "native" and native is None:
        raise ImportError("tfdc._native is not built (pip install -e . with a C compiler)")
    if native is not None:
        # The native API has no size limit argument: check the validated size.
        size = native.decoded_size(data)
        if size > max_size:
            raise FormatError(f"decoded size {size} exceeds the limit {max_size}")
        return native.decode(data)
    return _decode_python(data, max_size)


def section_span(data):
    """`(start, size)` of the section named by the single tfdc.v1 metadata
    entry (its `Buffer.offset` / `size`), or None when there is no such
    entry or the flatbuffer cannot be read. Nothing else is checked."""
    try:
        model = read_model(bytes(data))
    except FormatError:
        return None
    found = [b for name, b in model.metadata if name == METADATA_NAME]
    if len(found) != 1 or found[0] >= len(model.buffers):
        return None
    section = model.buffers[found[0]]
    return section.offset, section.size


def is_packed(data):
    """True if `data` is a packed model: a TFLite flatbuffer with one tfdc.v1
    section entry whose section ends the file (FORMAT.md §2, as the C
    decoder's `tfdc_is_packed`). A decoded file keeps the entry but has the
    weights after the section, so it is not packed: it is a standard model.
    Cheap: checksums and records are not verified."""
    span = section_span(data)
    return span is not None and span[0] > 1 and span[0] + span[1] == len(data)


def has_section_entry(data):
    """True if `data` is a TFLite flatbuffer carrying a tfdc.v1 metadata
    entry: a packed file, a decoded one, or a damaged one. Callers route such
    files to the decoder, which says precisely what is wrong with them."""
    try:
        return any(name == METADATA_NAME for name, _ in read_model(bytes(data)).metadata)
    except FormatError:
        return False


def read_pack_info(packed):
    """The `tfdc.format.PackInfo` of a packed file (sizes, modes, coded bits and
    entropies per record), as `pack_tflite` reported it, for `tfdc inspect`.
    Tensor names, shapes and dtypes come from the flatbuffer's tensors."""
    data = bytes(packed)
    parsed = parse(data)
    users = _tensor_users(data)
    records = []
    table_seen = set()
    for rec in parsed.records:
        infos = users.get(rec.buffer_index, [])
        entry = 2 if rec.codebook_encoding == fmt.CODEBOOK_FP16 else rec.elem_size
        stats = {}
        value_counts = None
        for key, stream in (("value", rec.values), ("gap", rec.gaps)):
            bits, ent, count, tbytes = 0, 0.0, 0, 0
            if stream is not None and stream.count:
                count = stream.count
                t = parsed.tables[stream.table]
                if stream.table not in table_seen:
                    table_seen.add(stream.table)
                    tbytes = t.size
                symbols = _stream_symbols(data, stream, parsed.tables)
                counts = np.bincount(symbols, minlength=t.n)
                if t.kind == 0:
                    bits = huffman.coded_bits(counts, t.lengths)
                    ent = huffman.entropy_bits(counts)
                if key == "value":
                    value_counts = counts
            stats[key] = (bits, ent, count, tbytes)
        nnz = rec.nnz
        if rec.position_mode == 0 and rec.value_mode == 0 and rec.nnz:
            # Dense: the coded values include zeros; count the nonzero ones.
            cb = np.frombuffer(data, np.uint8, rec.codebook_size * entry,
                               rec.codebook_start).reshape(rec.codebook_size, entry)
            nonzero = cb.any(axis=1)
            nnz = int(value_counts[:rec.codebook_size][nonzero[:len(value_counts)]].sum())
        N = rec.out_size // rec.elem_size
        records.append(fmt.RecordInfo(
            buffer_index=rec.buffer_index, tensor_names=[n for n, _, _ in infos],
            shape=infos[0][2] if infos else (N,),
            dtype=infos[0][1] if infos else "bytes", num_elements=N, nnz=nnz,
            elem_size=rec.elem_size, value_mode="raw" if rec.value_mode else "codebook",
            position_mode="sparse" if rec.position_mode else "dense",
            scan="column" if rec.scan else "row", scan_rows=rec.scan_rows,
            gap_alphabet=rec.gap_alphabet, codebook_size=rec.codebook_size,
            codebook_encoding="fp16" if rec.codebook_encoding else "raw",
            value_count=stats["value"][2] if rec.values else rec.nnz,
            gap_count=stats["gap"][2], value_bits=stats["value"][0], gap_bits=stats["gap"][0],
            value_entropy_bits=stats["value"][1], gap_entropy_bits=stats["gap"][1],
            codebook_bytes=rec.codebook_size * entry,
            table_bytes=stats["value"][3] + stats["gap"][3], record_bytes=rec.record_size,
            raw_bytes=rec.out_size, out_offset=rec.out_offset))
    return fmt.PackInfo(flatbuffer_bytes=parsed.S, section_bytes=parsed.Z,
                         total_bytes=parsed.S + parsed.Z, decoded_bytes=parsed.D,
                         records=records, num_tables=len(parsed.tables), input_bytes=0)


def _tensor_users(data):
    """{buffer index: [(tensor name, dtype name, shape)]} via the object API."""
    from tfdc import tflite_schema
    model = tflite_schema.get().Model.GetRootAs(data, 0)
    users = {}
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for k in range(sg.TensorsLength()):
            t = sg.Tensors(k)
            name = t.Name().decode("utf-8", "replace") if t.Name() else ""
            dtype = fmt.TENSOR_TYPES.get(t.Type(), ("type%d" % t.Type(),))[0]
            shape = tuple(int(x) for x in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            users.setdefault(t.Buffer(), []).append((name, dtype, shape))
    return users
