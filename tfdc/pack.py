"""Pack a TFLite flatbuffer: move its weight buffers into a tfdc.v1 section.

`pack_tflite` is the last stage of Deep Compression (Han et al., sec. 4):
every constant buffer that gets smaller is replaced by an entropy-coded
*record* (docs/FORMAT.md §3.4) — a codebook of the distinct bit patterns, the
Huffman-coded indices, and for sparse tensors the Huffman-coded relative
positions with the paper's filler rule. For each buffer the encoder computes
the size of every candidate encoding from histograms (codebook vs raw values,
dense vs sparse, gap alphabet G = 2^1 … 2^15, row- vs column-major scan) and
keeps the smallest; a buffer is packed only if its record is smaller than its
raw bytes.

Decoding (`tfdc.unpack.decode`) gives back exactly the bytes the converter
wrote for every buffer — unless `codebook_fp16=True`, which is lossy: each
float32 weight `x` of a packed float32 buffer decodes to `fp32(fp16(x))`
(the largest change is reported in `PackInfo.fp16_max_abs_change`; a buffer
whose values would overflow binary16 or change a NaN payload is left exact).

Example:

    import tensorflow as tf
    from tfdc.pack import pack_tflite
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    packed, info = pack_tflite(tflite)
    print(info.total_bytes, "bytes; decodes to", info.decoded_bytes)
"""

import dataclasses
import zlib

import numpy as np

from tfdc import format as fmt
from tfdc import huffman, tflite_schema
from tfdc.format import (HEADER, NO_TABLE, RECORD_HEADER, STREAM_HEADER, TABLE_HEADER,
                         PackInfo, RecordInfo)

MAX_CODEBOOK = fmt.MAX_CODEBOOK
_UINT = fmt.UINT_OF_SIZE


# --------------------------------------------------------------------------
# Code tables and streams


@dataclasses.dataclass
class _Stream:
    count: int
    table: object       # bytes of the table, None when count == 0
    kind: int = 0
    seg_bytes: object = None
    data: object = None
    bits: int = 0
    entropy_bits: float = 0.0
    block: int = 0

    def size(self):
        if self.count == 0 or self.kind == 1:
            return STREAM_HEADER.size
        return STREAM_HEADER.size + 4 * len(self.seg_bytes) + len(self.data)


def _table_bytes(kind, lengths=None, symbol=None, n=None):
    if kind == 1:
        return TABLE_HEADER.pack(fmt.TABLE_SINGLE, 0, 0, n) + fmt.TABLE_SYMBOL.pack(symbol)
    n = len(lengths)
    nib = np.zeros(2 * ((n + 1) // 2), dtype=np.uint8)
    nib[:n] = lengths
    payload = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()
    return TABLE_HEADER.pack(fmt.TABLE_HUFFMAN, int(lengths.max()), 0, n) + payload


def _code_stream(symbols, counts, block):
    """Build a `_Stream` for `symbols` whose histogram is `counts`."""
    count = len(symbols)
    if count == 0:
        return _Stream(0, None)
    used = np.flatnonzero(counts)
    if len(used) == 1:
        s = int(used[0])
        return _Stream(count, _table_bytes(1, symbol=s, n=s + 1), kind=1)
    n = int(used[-1]) + 1
    lengths = huffman.code_lengths(counts[:n])
    seg_bytes, data = huffman.encode(symbols, lengths, block)
    return _Stream(count, _table_bytes(0, lengths), 0, seg_bytes, data,
                   huffman.coded_bits(counts[:n], lengths), huffman.entropy_bits(counts), block)


def _stream_cost(counts, block):
    """Bytes of a stream plus its table, from its histogram. Exact except for
    the segments' padding, estimated at 4 bits per segment."""
    counts = np.asarray(counts)
    count = int(counts.sum())
    if count == 0:
        return STREAM_HEADER.size
    used = np.flatnonzero(counts)
    if len(used) == 1:
        return STREAM_HEADER.size + TABLE_HEADER.size + 4
    n = int(used[-1]) + 1
    lengths = huffman.code_lengths(counts[:n])
    nseg = -(-count // block)
    bits = huffman.coded_bits(counts[:n], lengths)
    return (STREAM_HEADER.size + 4 * nseg + bits / 8 + nseg / 2
            + TABLE_HEADER.size + (n + 1) // 2)


# --------------------------------------------------------------------------
# Choosing and building one record


def _order_keys(elems, order):
    """A monotone bijection of bit patterns to unsigned keys that sort in value
    order (IEEE total order for floats), so codebooks list values ascending."""
    bits = 8 * elems.dtype.itemsize
    top = elems.dtype.type(1 << (bits - 1))
    if order == "int":
        return elems ^ top
    if order == "float":
        neg = (elems & top) != 0
        return np.where(neg, ~elems, elems ^ top)
    return elems


def _from_order_keys(keys, order):
    bits = 8 * keys.dtype.itemsize
    top = keys.dtype.type(1 << (bits - 1))
    if order == "int":
        return keys ^ top
    if order == "float":
        pos = (keys & top) != 0
        return np.where(pos, keys ^ top, ~keys)
    return keys


def _gap_histogram(gap_values, gap_counts, G):
    """Histogram of gap symbols (0 … G−1, filler G−1) for gaps d with
    `gap_values = d − 1` occurring `gap_counts` times."""
    s = gap_values % (G - 1)
    fillers = int(np.dot(gap_values // (G - 1), gap_counts))
    hist = np.bincount(s, weights=gap_counts, minlength=G).astype(np.int64)
    hist[G - 1] += fillers
    return hist


def _gap_symbols(gaps_minus_1, G):
    """The gap stream: ⌊(d−1)/(G−1)⌋ fillers, then (d−1) mod (G−1), per gap."""
    q = gaps_minus_1 // (G - 1)
    s = gaps_minus_1 % (G - 1)
    total = int(q.sum()) + len(s)
    dtype = np.uint16
    if total == len(s):
        return s.astype(dtype)
    out = np.full(total, G - 1, dtype=dtype)
    out[np.cumsum(q + 1) - 1] = s
    return out


def _stream_order_positions(mask, scan_rows):
    """Stream indices (sorted) of the nonzero elements, and their element
    indices, for scan 0 (`scan_rows == 1`) or scan 1."""
    if scan_rows == 1:
        t = np.flatnonzero(mask)
        return t, t
    R = scan_rows
    C = len(mask) // R
    t = np.flatnonzero(mask.reshape(R, C).T)
    return t, (t % R) * C + t // R


def _unique_counts(values):
    """(unique values, counts) of a non-negative int64 array, fast path for
    small ranges."""
    if len(values) == 0:
        return values, values
    top = int(values.max())
    if top <= 4 * len(values) + 65536:
        c = np.bincount(values)
        u = np.flatnonzero(c)
        return u, c[u]
    return np.unique(values, return_counts=True)


@dataclasses.dataclass
class _Plan:
    record: object  # RecordInfo without final sizes
    codebook: bytes
    value_stream: object
    raw_values: object
    gap_stream: object


def _plan_record(raw, elem_size, order, shape, block, gap_alphabet, codebook_fp16, force=None):
    """The smallest record for buffer bytes `raw` (np.uint8), or None.

    `force` (tests and tools only) restricts the choice — keys
    "position_mode" ("dense"/"sparse"), "scan" ("row"/"column"), "value_mode"
    ("codebook"/"raw") — and packs even when the record is not smaller.
    """
    force = force or {}
    n_elems = len(raw) // elem_size
    elems = raw.view(_UINT[elem_size])
    fp16_change = 0.0
    encoding = 0
    if codebook_fp16 and elem_size == 4 and order == "float":
        rounded = _fp16_round(elems)
        if rounded is not None:
            elems, fp16_change = rounded
            encoding = 1
    entry_bytes = 2 if encoding else elem_size

    keys = _order_keys(elems, order)
    if elem_size <= 2:
        counts_all = np.bincount(keys, minlength=1 << (8 * elem_size))
        ukeys = np.flatnonzero(counts_all).astype(keys.dtype)
        dense_counts = counts_all[ukeys]
        inverse = None  # computed lazily from a lookup table
        lut = np.zeros(1 << (8 * elem_size), dtype=np.int64)
        lut[ukeys] = np.arange(len(ukeys))
        inverse_of = lambda k: lut[k]  # noqa: E731
    else:
        ukeys, inverse, dense_counts = np.unique(keys, return_inverse=True, return_counts=True)
        inverse_of = None
    del keys
    patterns = _from_order_keys(ukeys, order)
    zero_at = np.flatnonzero(patterns == 0)
    has_zero = len(zero_at) > 0
    mask = elems != 0
    nnz = int(np.count_nonzero(mask))
    sparse_counts = np.delete(dense_counts, zero_at)
    K_dense = len(patterns)
    K_sparse = K_dense - int(has_zero)

    # Value part costs.
    def codebook_cost(K, counts):
        return K * entry_bytes + _stream_cost(counts, block)

    dense_cost = codebook_cost(K_dense, dense_counts) if K_dense <= MAX_CODEBOOK else None
    sparse_value_cb = codebook_cost(K_sparse, sparse_counts) if K_sparse <= MAX_CODEBOOK else None
    sparse_value_raw = nnz * elem_size
    if force.get("value_mode") == "raw":
        dense_cost = sparse_value_cb = None
    elif force.get("value_mode") == "codebook":
        sparse_value_raw = None
    if force.get("position_mode") == "sparse":
        dense_cost = None
    options = [c for c in (sparse_value_cb, sparse_value_raw) if c is not None]
    sparse_value_cost = min(options) if options else None

    # Gap part: every G and scan.
    best = (dense_cost, "dense", 1, 0) if dense_cost is not None else (None,)
    scans = [1]
    if len(shape) >= 2 and 1 < shape[0] < n_elems and n_elems % shape[0] == 0:
        scans.append(int(shape[0]))
    widths = [int(np.log2(gap_alphabet))] if gap_alphabet else range(1, 16)
    if force.get("scan") == "column" and len(scans) > 1:
        scans = scans[1:]
    elif force.get("scan") == "row":
        scans = scans[:1]
    if sparse_value_cost is None or force.get("position_mode") == "dense":
        scans = []
    for rows in scans:
        t, _ = _stream_order_positions(mask, rows)
        gaps_minus_1 = np.diff(t, prepend=-1) - 1
        gv, gc = _unique_counts(gaps_minus_1)
        for w in widths:
            G = 1 << w
            cost = sparse_value_cost + _stream_cost(_gap_histogram(gv, gc, G), block)
            if best[0] is None or cost < best[0]:
                best = (cost, "sparse", rows, G)
    if best[0] is None:
        return None
    _, position_mode, rows, G = best
    # Fixed overhead of a record: header and CRC.
    if best[0] + RECORD_HEADER.size + 4 >= len(raw) and not force:
        return None

    # Build the chosen record's streams.
    if position_mode == "dense":
        inv = inverse if inverse is not None else inverse_of(_order_keys(elems, order))
        value_symbols = inv.astype(np.uint16)
        cb = patterns
        value_stream = _code_stream(value_symbols, dense_counts, block)
        raw_values, gap_stream, value_mode, nnz_coded = None, None, 0, n_elems
    else:
        t, elem_index = _stream_order_positions(mask, rows)
        gaps_minus_1 = np.diff(t, prepend=-1) - 1
        gap_syms = _gap_symbols(gaps_minus_1, G)
        gap_stream = _code_stream(gap_syms, np.bincount(gap_syms, minlength=G), block)
        nnz_coded = nnz
        use_codebook = sparse_value_cb is not None and (
            sparse_value_raw is None or sparse_value_cb <= sparse_value_raw)
        if use_codebook:
            if inverse is not None:
                inv = inverse[elem_index]
            else:
                inv = inverse_of(_order_keys(elems[elem_index], order))
            if has_zero:
                inv = inv - (inv > zero_at[0])
            value_symbols = inv.astype(np.uint16)
            cb = np.delete(patterns, zero_at)
            value_stream = _code_stream(value_symbols, sparse_counts, block)
            raw_values, value_mode = None, 0
        else:
            cb = patterns[:0]
            value_stream = None
            raw_values = elems[elem_index].astype("<u%d" % elem_size).tobytes()
            value_mode = 1
    if encoding:
        # Exact: every entry is a binary16 value (NaN payloads checked above).
        codebook = fmt.fp32_to_fp16_bits(cb).astype("<u2").tobytes()
    else:
        codebook = cb.astype("<u%d" % elem_size).tobytes()
    info = RecordInfo(
        buffer_index=-1, tensor_names=[], shape=tuple(shape), dtype="", num_elements=n_elems,
        nnz=nnz, elem_size=elem_size, value_mode="raw" if value_mode else "codebook",
        position_mode=position_mode, scan="column" if rows > 1 else "row", scan_rows=rows,
        gap_alphabet=G, codebook_size=len(cb), codebook_encoding="fp16" if encoding else "raw",
        value_count=nnz_coded, gap_count=gap_stream.count if gap_stream else 0,
        value_bits=value_stream.bits if value_stream else 0,
        gap_bits=gap_stream.bits if gap_stream else 0,
        value_entropy_bits=value_stream.entropy_bits if value_stream else 0.0,
        gap_entropy_bits=gap_stream.entropy_bits if gap_stream else 0.0,
        codebook_bytes=len(codebook), table_bytes=0, record_bytes=0, raw_bytes=len(raw),
        fp16_max_abs_change=fp16_change)
    return _Plan(info, codebook, value_stream, raw_values, gap_stream)


def _fp16_round(elems):
    """(float32 patterns rounded through binary16, max abs change), or None
    when rounding would overflow a finite value or alter a NaN/Inf pattern.
    The expansion is the decoder's own, so what is checked is what decodes."""
    f = elems.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        half = f.astype(np.float16)
    r_bits = fmt.fp16_to_fp32_bits(half.view(np.uint16))
    r = r_bits.view(np.float32)
    finite = np.isfinite(f)
    if not np.isfinite(r[finite]).all():
        return None
    if (r_bits[~finite] != elems[~finite]).any():
        return None
    change = float(np.max(np.abs(f[finite] - r[finite]))) if finite.any() else 0.0
    return r_bits, change


def _record_bytes(plan, buffer_index, out_offset, out_size, table_index):
    """Serialise a record, given the table index of each stream's table."""
    info = plan.record
    parts = [plan.codebook]
    if plan.raw_values is not None:
        parts.append(plan.raw_values)
    for stream in (plan.value_stream, plan.gap_stream):
        if stream is None:
            continue
        if stream.count == 0:
            parts.append(STREAM_HEADER.pack(0, NO_TABLE, 0, 0))
        elif stream.kind == 1:
            parts.append(STREAM_HEADER.pack(stream.count, table_index[stream.table], 0, 0))
        else:
            parts.append(STREAM_HEADER.pack(stream.count, table_index[stream.table], 0,
                                            stream.block))
            parts.append(stream.seg_bytes.astype("<u4").tobytes())
            parts.append(stream.data.tobytes())
    body = b"".join(parts)
    size = RECORD_HEADER.size + len(body) + fmt.CRC.size
    head = RECORD_HEADER.pack(
        size, buffer_index, out_offset, out_size, info.elem_size,
        fmt.VALUE_RAW if info.value_mode == "raw" else fmt.VALUE_CODEBOOK,
        fmt.POSITION_SPARSE if info.position_mode == "sparse" else fmt.POSITION_DENSE,
        fmt.SCAN_COLUMN if info.scan == "column" else fmt.SCAN_ROW, info.scan_rows,
        info.value_count, info.codebook_size,
        fmt.CODEBOOK_FP16 if info.codebook_encoding == "fp16" else fmt.CODEBOOK_RAW,
        bytes(3), info.gap_alphabet if info.position_mode == "sparse" else 0)
    rec = head + body
    return rec + fmt.CRC.pack(zlib.crc32(rec))


def _align(x, a):
    return (x + a - 1) // a * a


def pack_tflite(tflite_bytes, *, select=None, block=fmt.DEFAULT_BLOCK, gap_alphabet=None,
                codebook_fp16=False, min_bytes=64, strip_debug=False, _force=None):
    # `_force` (tests and tools/format_example.py only): a dict of
    # `_plan_record` restrictions for every buffer, or {buffer_index: dict}.
    """Pack the constant buffers of a TFLite model into a tfdc.v1 section.

    Args:
        tflite_bytes: a `.tflite` flatbuffer (as written by `TFLiteConverter`).
        select: optional `select(tensor_name, buffer_index) -> bool`; a buffer
            is considered only if it returns True for one of its tensors.
        block: symbols per independently decodable segment.
        gap_alphabet: fix `G` (a power of two, 2 … 32768) for sparse records
            instead of choosing the best per buffer.
        codebook_fp16: store float32 codebooks as binary16 (lossy, see the
            module docstring).
        min_bytes: buffers smaller than this stay inline.
        strip_debug: drop what the runtime never reads: the names of
            non-constant tensors (activations, shape temporaries), the
            model description and the converter's `CONVERSION_METADATA`.
            Names of weight tensors are kept for `tfdc inspect`. On a small
            model this is several percent of the file.

    Returns:
        `(packed_bytes, PackInfo)`. Deterministic: the same input and options
        give the same bytes.
    """
    if block < 1 or block > 0xFFFFFFFF:
        raise ValueError(f"block must be in 1 … 2^32−1, got {block}")
    if gap_alphabet is not None and (gap_alphabet < 2 or gap_alphabet > 32768
                                     or gap_alphabet & (gap_alphabet - 1)):
        raise ValueError(f"gap_alphabet must be a power of two in 2 … 32768, got {gap_alphabet}")
    schema = tflite_schema.get()
    data = bytes(tflite_bytes)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (file identifier is not TFL3)")
    model = tflite_schema.read(data)
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    for m in model.metadata:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name == fmt.METADATA_NAME:
            raise ValueError("the model is already tfdc-packed")
    # Buffers in the "offset" layout (models > 2 GB) are brought inline first.
    for b in model.buffers:
        if b.offset > 1:
            if b.offset + b.size > len(data):
                raise ValueError("a buffer's offset points past the end of the model")
            b.data = np.frombuffer(data, np.uint8, b.size, b.offset).copy()
            b.offset, b.size = 0, 0

    # Which tensors use each buffer.
    users = {}
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            shape = tuple(int(s) for s in (tensor.shape if tensor.shape is not None else []))
            users.setdefault(int(tensor.buffer), []).append((name, int(tensor.type), shape))

    if strip_debug:
        tflite_schema.strip_debug(model)

    plans = []
    for index in sorted(users):
        if index <= 0 or index >= len(model.buffers):
            continue
        buf = model.buffers[index]
        if buf.data is None or len(buf.data) < max(1, min_bytes):
            continue
        tensors = users[index]
        if select is not None and not any(select(name, index) for name, _, _ in tensors):
            continue
        raw = np.ascontiguousarray(buf.data, dtype=np.uint8)
        types = {fmt.TENSOR_TYPES.get(t) for _, t, _ in tensors}
        if len(types) == 1 and None not in types:
            dtype, elem_size, order = types.pop()
        else:
            dtype, elem_size, order = "bytes", 1, "uint"
        if len(raw) % elem_size:
            dtype, elem_size, order = "bytes", 1, "uint"
        shape = tensors[0][2]
        force = _force.get(index) if _force and isinstance(next(iter(_force)), int) else _force
        if _force and force is None:
            continue
        plan = _plan_record(raw, elem_size, order, shape, block, gap_alphabet, codebook_fp16,
                            force)
        if plan is None:
            continue
        plan.record.buffer_index = index
        plan.record.tensor_names = [name for name, _, _ in tensors]
        plan.record.dtype = dtype
        plans.append(plan)

    # Code tables: identical tables are stored once.
    tables, table_index = [], {}
    for plan in plans:
        for stream in (plan.value_stream, plan.gap_stream):
            if stream is not None and stream.table is not None and stream.table not in table_index:
                table_index[stream.table] = len(tables)
                tables.append(stream.table)
                plan.record.table_bytes += len(stream.table)
    if len(tables) > 0xFFFF:
        raise ValueError("more than 65535 distinct code tables")

    # Record sizes do not depend on the offsets: serialise once with dummies.
    record_sizes = [len(_record_bytes(p, p.record.buffer_index, 0, 0, table_index)) for p in plans]
    Z = HEADER.size + sum(len(t) for t in tables) + sum(record_sizes) + 4

    # Build the flatbuffer with placeholder offsets to learn its length.
    section_buffer = schema.BufferT()
    model.buffers.append(section_buffer)
    meta = schema.MetadataT()
    meta.name = fmt.METADATA_NAME
    meta.buffer = len(model.buffers) - 1
    model.metadata.append(meta)
    placeholder = 1 << 62
    for plan in plans:
        b = model.buffers[plan.record.buffer_index]
        plan.out_size = len(b.data)
        b.data = None
        b.offset, b.size = placeholder, plan.out_size
    section_buffer.offset, section_buffer.size = placeholder, Z
    L = len(tflite_schema.build(model))
    S = _align(L, fmt.SECTION_ALIGN)
    E = S + Z
    cursor = E
    for plan in plans:
        plan.out_offset = _align(cursor, fmt.OUTPUT_ALIGN)
        cursor = plan.out_offset + plan.out_size
        model.buffers[plan.record.buffer_index].offset = plan.out_offset
    D = cursor
    section_buffer.offset = S
    flat = tflite_schema.build(model)
    if len(flat) != L:
        raise AssertionError("flatbuffer length changed between builds")
    prefix = flat + bytes(S - L)

    records = []
    for plan, size in zip(plans, record_sizes):
        rec = _record_bytes(plan, plan.record.buffer_index, plan.out_offset, plan.out_size,
                            table_index)
        assert len(rec) == size
        plan.record.record_bytes = size
        plan.record.out_offset = plan.out_offset
        records.append(rec)
    header = HEADER.pack(fmt.MAGIC, fmt.VERSION_MAJOR, fmt.VERSION_MINOR, HEADER.size, 0, Z, D,
                         zlib.crc32(prefix), len(tables), len(plans), 0)
    body = header + b"".join(tables) + b"".join(records)
    section = body + fmt.CRC.pack(zlib.crc32(body))
    assert len(section) == Z
    infos = [p.record for p in plans]
    info = PackInfo(flatbuffer_bytes=S, section_bytes=Z, total_bytes=S + Z, decoded_bytes=D,
                    records=infos, num_tables=len(tables), input_bytes=len(data),
                    fp16_max_abs_change=max([r.fp16_max_abs_change for r in infos] or [0.0]))
    return prefix + section, info
