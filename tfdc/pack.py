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
import importlib
import importlib.util
import os
import struct
import zlib

import numpy as np

from tfdc import huffman

METADATA_NAME = "tfdc.v1"
MAGIC = b"TFDC"
VERSION_MAJOR, VERSION_MINOR = 1, 0
HEADER = struct.Struct("<4sHHIIQQIIII")            # 48 bytes, §3.1
TABLE_HEADER = struct.Struct("<BBHI")              # 8 bytes, §3.2
STREAM_HEADER = struct.Struct("<QHHI")             # 16 bytes, §3.3
RECORD_HEADER = struct.Struct("<IIQQBBBBIQIB3xI")  # 52 bytes, §3.4
NO_TABLE = 0xFFFF
MAX_CODEBOOK = huffman.MAX_SYMBOLS

# TFLite TensorType → (name, bytes per element, value order for codebooks).
_TENSOR_TYPES = {
    0: ("float32", 4, "float"), 1: ("float16", 2, "float"), 2: ("int32", 4, "int"),
    3: ("uint8", 1, "uint"), 4: ("int64", 8, "int"), 7: ("int16", 2, "int"),
    9: ("int8", 1, "int"), 10: ("float64", 8, "float"), 12: ("uint64", 8, "uint"),
    15: ("uint32", 4, "uint"), 16: ("uint16", 2, "uint"),
}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclasses.dataclass
class RecordInfo:
    """How one buffer was packed (all sizes in bytes unless named *_bits).

    `value_mode` is "codebook" or "raw", `position_mode` "dense" or "sparse",
    `scan` "row" or "column", `codebook_encoding` "raw" or "fp16".
    `value_bits` / `gap_bits` are the coded payload bits of the value / gap
    streams (0 for raw values, kind-1 and absent streams);
    `value_entropy_bits` / `gap_entropy_bits` are the order-0 empirical
    entropy of each stream times its length — the ideal the code approaches.
    `table_bytes` counts the code tables this record introduced (a table
    shared with an earlier record is counted there).
    """
    buffer_index: int
    tensor_names: list
    shape: tuple
    dtype: str
    num_elements: int
    nnz: int
    elem_size: int
    value_mode: str
    position_mode: str
    scan: str
    scan_rows: int
    gap_alphabet: int
    codebook_size: int
    codebook_encoding: str
    value_count: int
    gap_count: int
    value_bits: int
    gap_bits: int
    value_entropy_bits: float
    gap_entropy_bits: float
    codebook_bytes: int
    table_bytes: int
    record_bytes: int
    raw_bytes: int
    out_offset: int = 0
    fp16_max_abs_change: float = 0.0


@dataclasses.dataclass
class PackInfo:
    """Sizes of a packed file. `flatbuffer_bytes` is `S` (flatbuffer plus
    alignment padding), `section_bytes` is `Z`, `total_bytes` the packed file
    (`S + Z`), `decoded_bytes` the decoded file `D`."""
    flatbuffer_bytes: int
    section_bytes: int
    total_bytes: int
    decoded_bytes: int
    records: list
    num_tables: int = 0
    input_bytes: int = 0
    fp16_max_abs_change: float = 0.0


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
        return TABLE_HEADER.pack(1, 0, 0, n) + struct.pack("<I", symbol)
    n = len(lengths)
    nib = np.zeros(2 * ((n + 1) // 2), dtype=np.uint8)
    nib[:n] = lengths
    payload = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()
    return TABLE_HEADER.pack(0, int(lengths.max()), 0, n) + payload


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
        codebook = _fp32_to_fp16_bits(cb).astype("<u2").tobytes()
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
    from tfdc.unpack import fp16_to_fp32_bits
    f = elems.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        half = f.astype(np.float16)
    r_bits = fp16_to_fp32_bits(half.view(np.uint16))
    r = r_bits.view(np.float32)
    finite = np.isfinite(f)
    if not np.isfinite(r[finite]).all():
        return None
    if (r_bits[~finite] != elems[~finite]).any():
        return None
    change = float(np.max(np.abs(f[finite] - r[finite]))) if finite.any() else 0.0
    return r_bits, change


def _fp32_to_fp16_bits(bits):
    """Bit-exact binary32 → binary16 for values that binary16 represents."""
    with np.errstate(over="ignore", invalid="ignore"):
        half = bits.view(np.float32).astype(np.float16).view(np.uint16)
    nan = (bits & 0x7F800000) == 0x7F800000
    # NaN/Inf: build the pattern by hand so no conversion can touch a payload.
    manual = (((bits >> 16) & 0x8000) | 0x7C00 | ((bits >> 13) & 0x3FF)).astype(np.uint16)
    return np.where(nan, manual, half)


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
    size = RECORD_HEADER.size + len(body) + 4
    head = RECORD_HEADER.pack(
        size, buffer_index, out_offset, out_size, info.elem_size,
        1 if info.value_mode == "raw" else 0, 1 if info.position_mode == "sparse" else 0,
        1 if info.scan == "column" else 0, info.scan_rows, info.value_count,
        info.codebook_size, 1 if info.codebook_encoding == "fp16" else 0,
        info.gap_alphabet if info.position_mode == "sparse" else 0)
    rec = head + body
    return rec + struct.pack("<I", zlib.crc32(rec))


# --------------------------------------------------------------------------
# The flatbuffer


def _schema():
    """The TFLite flatbuffer object API: TensorFlow's copy (loaded without
    importing TensorFlow itself), else ai-edge-litert's."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is not None and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            path = os.path.join(base, "lite", "python", "schema_py_generated.py")
            if os.path.exists(path):
                name = "tfdc._tflite_schema"
                mod_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
                return module
    return importlib.import_module("ai_edge_litert.schema_py_generated")


_SCHEMA = []


def _get_schema():
    if not _SCHEMA:
        _SCHEMA.append(_schema())
    return _SCHEMA[0]


def _pack_buffer_aligned(builder, buffer, schema):
    """`BufferT.Pack` with the data vector aligned to 16 bytes, as the TFLite
    converter writes it (the generated Python code aligns to 1)."""
    data = None
    if buffer.data is not None:
        payload = np.ascontiguousarray(buffer.data, dtype=np.uint8).tobytes()
        builder.StartVector(1, len(payload), 16)
        builder.head = builder.head - len(payload)
        builder.Bytes[builder.head:builder.head + len(payload)] = payload
        builder.vectorNumElems = len(payload)
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, buffer.offset)
    schema.BufferAddSize(builder, buffer.size)
    return schema.BufferEnd(builder)


def _build_flatbuffer(model, schema):
    import flatbuffers
    originals = []
    for b in model.buffers:
        originals.append(b.Pack)
        b.Pack = (lambda builder, _b=b: _pack_buffer_aligned(builder, _b, schema))
    try:
        builder = flatbuffers.Builder(1024)
        root = model.Pack(builder)
        builder.Finish(root, file_identifier=b"TFL3")
        return bytes(builder.Output())
    finally:
        for b, p in zip(model.buffers, originals):
            del b.Pack


def _strip_debug(model):
    """Remove names and metadata that no runtime reads (see `pack_tflite`)."""
    model.description = None
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
            if buf is None or buf.data is None or len(buf.data) == 0:
                tensor.name = None
        sg.name = None
    kept = []
    for m in model.metadata:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name == "CONVERSION_METADATA":
            # The buffer stays (indices must not shift) but holds nothing.
            model.buffers[m.buffer].data = None
        else:
            kept.append(m)
    model.metadata = kept


def _align(x, a):
    return (x + a - 1) // a * a


def pack_tflite(tflite_bytes, *, select=None, block=4096, gap_alphabet=None,
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
    schema = _get_schema()
    data = bytes(tflite_bytes)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (file identifier is not TFL3)")
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    for m in model.metadata:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name == METADATA_NAME:
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
        _strip_debug(model)

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
        types = {_TENSOR_TYPES.get(t) for _, t, _ in tensors}
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
    meta.name = METADATA_NAME
    meta.buffer = len(model.buffers) - 1
    model.metadata.append(meta)
    placeholder = 1 << 62
    for plan in plans:
        b = model.buffers[plan.record.buffer_index]
        plan.out_size = len(b.data)
        b.data = None
        b.offset, b.size = placeholder, plan.out_size
    section_buffer.offset, section_buffer.size = placeholder, Z
    L = len(_build_flatbuffer(model, schema))
    S = _align(L, 16)
    E = S + Z
    cursor = E
    for plan in plans:
        plan.out_offset = _align(cursor, 64)
        cursor = plan.out_offset + plan.out_size
        model.buffers[plan.record.buffer_index].offset = plan.out_offset
    D = cursor
    section_buffer.offset = S
    flat = _build_flatbuffer(model, schema)
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
    header = HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER.size, 0, Z, D,
                         zlib.crc32(prefix), len(tables), len(plans), 0)
    body = header + b"".join(tables) + b"".join(records)
    section = body + struct.pack("<I", zlib.crc32(body))
    assert len(section) == Z
    infos = [p.record for p in plans]
    info = PackInfo(flatbuffer_bytes=S, section_bytes=Z, total_bytes=S + Z, decoded_bytes=D,
                    records=infos, num_tables=len(tables), input_bytes=len(data),
                    fp16_max_abs_change=max([r.fp16_max_abs_change for r in infos] or [0.0]))
    return prefix + section, info


_NUMPY_TO_TFLITE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2,
                    np.dtype(np.uint8): 3, np.dtype(np.int64): 4, np.dtype(np.int16): 7,
                    np.dtype(np.int8): 9, np.dtype(np.float64): 10}


def constant_model(arrays):
    """A minimal TFLite flatbuffer whose only content is `arrays` as constant
    tensors (buffers 1 … n, tensors named "w0", "w1", …). It is not runnable;
    tests and tools/format_example.py use it to pack exact byte patterns."""
    import flatbuffers
    schema = _get_schema()
    model = schema.ModelT()
    model.version = 3
    model.description = "tfdc constant_model"
    model.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = [], [], [], []
    for i, a in enumerate(arrays):
        a = np.ascontiguousarray(a)
        t = schema.TensorT()
        t.name = f"w{i}"
        t.shape = np.array(a.shape, dtype=np.int32)
        t.type = _NUMPY_TO_TFLITE[a.dtype]
        t.buffer = len(model.buffers)
        b = schema.BufferT()
        b.data = np.frombuffer(a.astype(a.dtype.newbyteorder("<")).tobytes(), np.uint8)
        model.buffers.append(b)
        sg.tensors.append(t)
    model.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
