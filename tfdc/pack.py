"""Pack a TFLite flatbuffer into a tfdc.v2 file (docs/FORMAT.md).

`pack_tflite` is the last stage of Deep Compression (Han et al., sec. 4),
extended to the whole file. Every constant buffer gets the smallest of these
encodings, each a *record* (FORMAT.md §6), or stays inline:

* values: a **codebook** of the distinct elements (sorted, stored as the
  bit-packed gaps between their keys) and Huffman-coded indices — clustered
  kernels —, or **planes**: each element's bytes (after a transform that puts
  a float's exponent, or a small integer's magnitude, into its top byte)
  coded byte plane by byte plane — biases, unclustered weights, integers;
* positions: **dense**, or **sparse** with the paper's gap-coded relative
  indices and filler rule, in row- or column-major order;
* elements of the tensor's own width (int4 / int2 as 4- / 2-bit symbols) or,
  for sub-byte tensors, whole bytes (pairs / quads of values as one symbol).
* codes: each stream's Huffman code or the fixed-length one; for the one
  plane of a dense 2-, 4- or 8-bit integer tensor also the context-modelled
  range code of format 2.1 (`tfdc.rans`, §5.3: the class of each symbol
  chosen by two earlier ones, e.g. the weights to the left and an image row
  above) or its grouped form of format 2.2 (§5.4: frequency tables also per
  group of rows and of columns), kept where smaller. Files that use them
  are written as version 2.1 (flags bit 0) or 2.2 (bit 1); all others stay
  2.0.

The per-channel quantization scales (and nonzero zero points) that the
flatbuffer itself holds are coded the same way, as *patches* of format 2.3
(§6.7, flags bit 2): their range of the inner flatbuffer is cleared and a
record fills it again at decode time — kept only where the file is smaller
for it.

For each buffer the encoder computes the size of every candidate from
histograms (and the gap alphabet `G = 2^1 … 2^15` for sparse ones) and keeps
the smallest. What is not a coded payload — the model flatbuffer (graph,
names, small tensors, and every packed buffer pointing into the decoded
tail), the code tables, the record descriptors, codebooks and segment
lengths — is one raw DEFLATE stream. A 120-byte TFLite stub in front names
the section, so stock runtimes refuse the packed file instead of running a
model with missing weights.

Decoding (`tfdc.unpack.decode`) gives back exactly the bytes the converter
wrote for every buffer — except TFLite's own sparse constants, which the
packer first expands into the dense constants their `DENSIFY` ops compute
(`tfdc.densify`, option `densify`) — and unless `codebook_fp16=True`, which
is lossy: each float32 weight `x` of a packed float32 buffer decodes to
`fp32(fp16(x))` (the largest change is reported in
`PackInfo.fp16_max_abs_change`; a buffer whose values would overflow
binary16 or change a NaN payload is left exact).

Example:

    import tensorflow as tf
    from tfdc.pack import pack_tflite
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    packed, info = pack_tflite(tflite)
    print(info.total_bytes, "bytes; decodes to", info.decoded_bytes)
"""

import dataclasses
import re
import struct
import zlib

import numpy as np

from tfdc import format as fmt
from tfdc import huffman, rans, tflite_schema
from tfdc.densify import densify as densify_model
from tfdc.errors import FormatError
from tfdc.flatbuf import quantization_vectors
from tfdc.format import PackInfo, RecordInfo, varint_bytes
from tfdc.runtime import check_tflite_header

MAX_CODEBOOK = fmt.MAX_CODEBOOK
# Bytes a record costs beyond its streams and codebook: its descriptor's
# fixed fields and the Buffer.offset / size fields in the flatbuffer, after
# deflate (measured: 10-14 bytes). Used only to decide record vs inline.
_RECORD_OVERHEAD = 12
# Streams shorter than this keep order-0 codes: a kind 3 table (§5.3) costs
# more than context modelling saves on them, and fitting one takes time.
_RANS_MIN_SYMBOLS = 2048
# `_force={"codes": ...}` values that put a range code on every stream
# (tests): kind 3, or kind 4.
_FORCED_RANGE_CODES = ("rans", "rans-grouped")
# Kind 3 segments are this many times longer than the others: each costs
# about 6 bytes (its final state and length) against a Huffman segment's
# 2.5, and starts its contexts afresh.
_RANS_BLOCK_FACTOR = 8


def _rans_block(block):
    return min(block * _RANS_BLOCK_FACTOR, fmt.MAX_BLOCK)


# --------------------------------------------------------------------------
# Code tables and streams


@dataclasses.dataclass
class _Stream:
    """One coded stream: its table (bytes, shared by identical tables), and
    for a Huffman, fixed-length or kind 3 table the segment lengths and
    data."""
    count: int
    table: bytes
    kind: int = fmt.TABLE_HUFFMAN
    seg_bytes: object = None
    data: object = None
    bits: int = 0
    entropy_bits: float = 0.0
    block: int = 0

    def descriptor(self, table_index):
        out = varint_bytes(table_index[self.table])
        if self.kind != fmt.TABLE_SINGLE:
            out += varint_bytes(self.block)
            out += fmt.varints_bytes(self.seg_bytes)
        return out

    def payload(self):
        return self.data.tobytes() if self.kind != fmt.TABLE_SINGLE else b""


def _table_bytes(lengths=None, symbol=None, width=None):
    """A serialised table (§5.1): a single symbol, a fixed-length code of
    `width` bits, or the symbols that have a code (as gaps) and their code
    lengths (nibbles)."""
    if symbol is not None:
        return varint_bytes(fmt.TABLE_SINGLE) + varint_bytes(symbol)
    if width is not None:
        return varint_bytes(fmt.TABLE_FIXED) + varint_bytes(width)
    used = np.flatnonzero(lengths)
    gaps = np.diff(used, prepend=-1) - 1
    nib = np.zeros(2 * ((len(used) + 1) // 2), dtype=np.uint8)
    nib[:len(used)] = lengths[used]
    return (varint_bytes(fmt.TABLE_HUFFMAN) + varint_bytes(len(used))
            + fmt.varints_bytes(gaps)
            + (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes())


def _histogram(symbols, minlength=1):
    """`np.bincount(symbols, minlength)` a chunk at a time (`tfdc.rans`'s
    histogram: bincount copies its input to int64, 96 MB for a 12M-weight
    plane)."""
    length = max(minlength, int(symbols.max()) + 1) if len(symbols) else minlength
    return rans._histogram(symbols, None, 1, length)[0]


def _fixed_width(counts):
    """Bits of the fixed-length code for symbols 0 … the largest used."""
    return max(1, (len(counts) - 1).bit_length()) if len(counts) > 1 else 1


def _code_stream(symbols, counts, block, fixed=False, model=None):
    """A `_Stream` for `symbols` (histogram `counts`, trimmed to the largest
    used symbol + 1): its Huffman code, a single-symbol table, (`fixed`)
    the fixed-length code, or (`model`, a `rans.Model`) the context-modelled
    range code."""
    count = len(symbols)
    used = np.flatnonzero(counts)
    counts = counts[:int(used[-1]) + 1]
    if model is not None:
        block = _rans_block(block)
        seg_bytes, data = rans.encode(symbols, model, block)
        return _Stream(count, model.table_bytes(), model.kind, seg_bytes, data,
                       int(8 * len(data)), huffman.entropy_bits(counts), block)
    if len(used) == 1 and not fixed:
        return _Stream(count, _table_bytes(symbol=int(used[0])), fmt.TABLE_SINGLE)
    if fixed:
        width = _fixed_width(counts)
        lengths = np.full(1 << width, width, dtype=np.uint8)
        table = _table_bytes(width=width)
        kind = fmt.TABLE_FIXED
    else:
        lengths = huffman.code_lengths(counts)
        table = _table_bytes(lengths)
        kind = fmt.TABLE_HUFFMAN
    seg_bytes, data = huffman.encode(symbols, lengths, block)
    return _Stream(count, table, kind, seg_bytes, data,
                   huffman.coded_bits(counts, lengths[:len(counts)]),
                   huffman.entropy_bits(counts), block)


def _table_cost(lengths):
    """Estimated deflated bytes of a Huffman table: a byte per used symbol
    whose gap is not 0 (runs of zero gaps deflate to almost nothing), half a
    byte per code length, and its header."""
    used = np.flatnonzero(lengths)
    gaps = np.diff(used, prepend=-1) - 1
    return 3 + int(np.count_nonzero(gaps)) + 0.1 * int(np.count_nonzero(gaps == 0)) + len(used) / 2


def _varint_len(v):
    return max(1, (int(v).bit_length() + 6) // 7)


def _segment_cost(count, block):
    nseg = -(-count // block)
    return nseg * 2.5 + 2  # varint lengths (2-3 bytes each) and block


def _stream_cost(counts, block, allow_fixed=True):
    """`(bytes, fixed)` of the cheaper coding of a stream with histogram
    `counts`: its Huffman code with its table, or the fixed-length code (a
    two-byte table) — payload, segment lengths and padding (estimated at 4
    bits per segment) included."""
    counts = np.asarray(counts)
    count = int(counts.sum())
    if count == 0:
        return 0.0, False
    used = np.flatnonzero(counts)
    if len(used) == 1:
        return 2.0 + _varint_len(used[0]), False
    counts = counts[:int(used[-1]) + 1]
    lengths = huffman.code_lengths(counts)
    nseg = -(-count // block)
    common = nseg / 2 + _segment_cost(count, block) + 1
    huff = huffman.coded_bits(counts, lengths) / 8 + common + _table_cost(lengths)
    fixed = count * _fixed_width(counts) / 8 + common + 2
    return (fixed, True) if allow_fixed and fixed < huff else (huff, False)


# --------------------------------------------------------------------------
# Positions


def _gap_histogram(gap_values, gap_counts, G):
    """Histogram of gap symbols (0 … G−1, filler G−1) for gaps d with
    `gap_values = d − 1` occurring `gap_counts` times."""
    s = gap_values % (G - 1)
    fillers = int(np.dot(gap_values // (G - 1), gap_counts))
    hist = np.bincount(s, weights=gap_counts, minlength=G).astype(np.int64)
    hist[G - 1] += fillers
    return hist


def _gap_symbols(gaps_minus_1, G):
    """The gap stream: ⌊(d−1)/(G−1)⌋ fillers, then (d−1) mod (G−1), per gap
    (two int64 temporaries the length of the gaps, reused in place)."""
    q, s = np.divmod(gaps_minus_1, G - 1)
    total = int(q.sum()) + len(s)
    if total == len(s):
        return s.astype(np.uint16)
    out = np.full(total, G - 1, dtype=np.uint16)
    q += 1
    np.cumsum(q, out=q)
    q -= 1
    out[q] = s
    return out


def _stream_indices(mask, scan_rows):
    """Stream indices (sorted) of the nonzero elements for row-major
    (`scan_rows == 1`) or column-major scan."""
    if scan_rows == 1:
        return np.flatnonzero(mask)
    return np.flatnonzero(mask.reshape(scan_rows, len(mask) // scan_rows).T)


_GAP_CHUNK = 1 << 18  # stream positions read at a time by `_gap_chunks`


def _gap_chunks(mask, scan_rows):
    """The gaps minus one between the nonzero elements in stream order
    (`_stream_indices`), as int64 arrays, a chunk of the stream at a time:
    the positions of a large tensor's kept weights are 8 bytes each, and
    each whole-tensor temporary of them 8 more."""
    stream = mask if scan_rows == 1 else \
        mask.reshape(scan_rows, len(mask) // scan_rows).T.ravel()
    last = -1
    for start in range(0, len(stream), _GAP_CHUNK):
        t = np.flatnonzero(stream[start:start + _GAP_CHUNK])
        if not len(t):
            continue
        t += start
        gaps = np.diff(t, prepend=last)
        gaps -= 1
        last = int(t[-1])
        yield gaps


def _gap_counts(mask, scan_rows):
    """`(values, counts)` of the gaps minus one (`_gap_chunks`)."""
    parts = [_unique_counts(gaps) for gaps in _gap_chunks(mask, scan_rows)]
    if len(parts) == 1:
        return parts[0]
    values = np.concatenate([v for v, _ in parts])
    unique, inverse = np.unique(values, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=np.concatenate([c for _, c in parts]),
                         minlength=len(unique)).astype(np.int64)
    return unique, counts


def _gap_stream(mask, scan_rows, G):
    """The gap stream (`_gap_symbols`, uint16) of the nonzero elements in
    stream order, made a chunk at a time: whole, its int64 temporaries
    took 126 MB at the peak of packing a 4M-weight int8 kernel."""
    parts = [_gap_symbols(gaps, G) for gaps in _gap_chunks(mask, scan_rows)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def _stream_order_positions(mask, scan_rows):
    """Stream indices (sorted) of the nonzero elements, and their element
    indices, for row-major (`scan_rows == 1`) or column-major scan."""
    t = _stream_indices(mask, scan_rows)
    if scan_rows == 1:
        return t, t
    # t = column * rows + row; the element is row * columns + column (in
    # place: each int64 temporary is 8 bytes per kept weight).
    column, index = np.divmod(t, scan_rows)
    index *= len(mask) // scan_rows
    index += column
    return t, index


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


def _scans(shape, n):
    """Scan orders worth trying: row-major, and column-major over the tensor's
    first axis (output channels of a TFLite kernel) when it divides `n`."""
    rows = [1]
    if len(shape) >= 2 and 1 < int(shape[0]) < n and n % int(shape[0]) == 0:
        rows.append(int(shape[0]))
    return rows


def _best_positions(mask, shape, block, gap_alphabet, force):
    """`(cost, scan_rows, G, gap_code)` of the cheapest sparse position
    stream; `gap_code`: True for the fixed-length code, False for Huffman,
    or the `rans.Model` of its range code."""
    n = len(mask)
    rows_options = _scans(shape, n)
    if force.get("scan") == "column" and len(rows_options) > 1:
        rows_options = rows_options[1:]
    elif force.get("scan") == "row":
        rows_options = rows_options[:1]
    widths = [int(np.log2(gap_alphabet))] if gap_alphabet else range(1, 16)
    nnz = int(np.count_nonzero(mask))
    best = histogram = None
    for rows in rows_options:
        if nnz == 0:
            return 3.0, rows, 1 << widths[0], False
        gv, gc = _gap_counts(mask, rows)
        for w in widths:
            G = 1 << w
            hist = _gap_histogram(gv, gc, G)
            cost, fixed = _stream_cost(hist, block, force.get("codes") != "huffman")
            cost += _varint_len(nnz) + _varint_len(G) + _varint_len(nnz)
            if best is None or cost < best[0]:
                best, histogram = (cost, rows, G, fixed), hist
    return _range_coded_gaps(mask, nnz, best, histogram, block, force)


def _range_coded_gaps(mask, nnz, best, histogram, block, force):
    """`best` (`_best_positions`; `histogram`: its gap symbols'), its gaps
    range-coded where that is cheaper. Huffman spends a bit per gap at
    least: where nearly every gap is the same (a pruned unit's zero column
    leaves each kept row of a Dense kernel the same pattern, or whole rows
    kept) the range code spends a fraction of one (a 40 %-channel-pruned
    MLP's gaps: 17,654 B coded, 3.5 % of its file, which xz found). Tried
    only where Huffman is well above the entropy: fitting costs time."""
    cost, rows, G, _ = best
    if force.get("codes") == "huffman" or nnz < _RANS_MIN_SYMBOLS:
        return best
    entropy = huffman.entropy_bits(histogram) / 8
    if cost < 1.1 * entropy + 256:
        return best
    gaps = _gap_stream(mask, rows, G)
    model, coded = rans.fit_cost(gaps, int(G).bit_length() - 1, _rans_block(block), (),
                                 lags=[1, 2, 3])
    coded += _varint_len(nnz) + _varint_len(G) + _varint_len(len(gaps))
    return (coded, rows, G, model) if coded < cost else best


# --------------------------------------------------------------------------
# Values


@dataclasses.dataclass
class _Values:
    """The chosen coding of a value sequence: a codebook (`keys`: sorted
    transformed keys) or planes; `fixed`: which streams use the fixed-length
    code (the index stream, or each plane); `models`: a `rans.Model` for
    each stream coded with a kind 3 or 4 table, else None."""
    cost: float
    mode: int
    transform: int
    keys: object = None
    key_bits: int = 0
    fixed: tuple = ()
    models: tuple = ()


def _codebook_bytes(keys, key_bits):
    """Serialised codebook keys: count, first key, delta width, and the
    bit-packed `k[j] − k[j−1] − 1` (§6.4)."""
    out = varint_bytes(len(keys))
    if len(keys) == 0:
        return out
    keys = np.asarray(keys, dtype=np.uint64)
    deltas = np.diff(keys) - np.uint64(1) if len(keys) > 1 else np.zeros(0, np.uint64)
    width = int(deltas.max()).bit_length() if len(deltas) else 0
    return (out + varint_bytes(int(keys[0])) + varint_bytes(width)
            + fmt.pack_bits(deltas, width))


def _rans_plane(plane, width, block, shape, force):
    """`(bytes, Model)` of the cheaper of the kind 3 and kind 4 codings of
    one plane (kind 4 where the tensor has rows), or None where they are not
    tried: the plane is short, or a test asks for order-0 codes."""
    codes = force.get("codes")
    if codes == "huffman" or shape is None:
        return None
    if len(plane) < _RANS_MIN_SYMBOLS and codes not in _FORCED_RANGE_CODES:
        return None
    rblock = _rans_block(block)
    model, cost = rans.fit_cost(plane, width, rblock, shape)
    if codes == "rans":
        return cost, model
    if codes == "rans-grouped":  # tests: the kind 3 estimate stands in
        return cost, _forced_groups(plane, width, rblock, model, shape)
    layout = rans.group_layout(len(plane), shape)
    grouped = rans.fit_grouped(plane, width, rblock, model, layout) if layout else None
    if grouped is not None and grouped[1] < cost:
        return grouped[1], grouped[0]
    return cost, model


def _best_values(vals, elem_bits, kind, block, expand, force, shape=None):
    """The cheapest `_Values` for `vals` (unsigned elements, any order; in
    stream order of a dense tensor of `shape` when `shape` is given, which
    makes context-modelled codes of single-plane elements a candidate)."""
    count = len(vals)
    options = []
    transforms = fmt.TRANSFORMS
    allow_fixed = force.get("codes") not in ("huffman",) + _FORCED_RANGE_CODES
    if count == 0:
        if force.get("value_mode") == "planes":
            return _Values(0.0, fmt.VALUES_PLANES, fmt.TRANSFORM_IDENTITY)
        return _Values(1.0, fmt.VALUES_CODEBOOK, fmt.TRANSFORM_IDENTITY,
                       np.zeros(0, np.uint64), fmt.FP16_KEY_BITS if expand else elem_bits)
    histogram = None  # the values' (unique, counts), where a codebook is priced
    if force.get("value_mode") != "planes":
        if expand:
            keyed = fmt.fp32_to_fp16_bits(vals.astype(np.uint32)).astype(np.uint16)
            key_bits = fmt.FP16_KEY_BITS
        else:
            keyed, key_bits = vals, elem_bits
        if keyed.dtype.itemsize <= 2:
            c = _histogram(keyed)
            unique, counts = np.flatnonzero(c), c[c > 0]
        else:
            unique, counts = np.unique(keyed, return_counts=True)
        histogram = (unique, counts)
        if len(unique) <= MAX_CODEBOOK:
            stream, fixed = _stream_cost(counts, block, allow_fixed)
            for t in transforms:
                keys = np.sort(fmt.transform(unique, t, key_bits).astype(np.uint64))
                cost = stream + len(_codebook_bytes(keys, key_bits)) + 1
                options.append(_Values(cost, fmt.VALUES_CODEBOOK, t, keys, key_bits,
                                       (fixed,), (None,)))
    if force.get("value_mode") != "codebook" and not expand:
        single = fmt.plane_count(elem_bits) == 1
        for t in transforms:
            cost, fixed, models = 0.0, [], []
            if histogram is not None and not single:
                planes = _plane_histograms(*histogram, t, elem_bits)
            else:
                tv = fmt.transform(vals, t, elem_bits)
                planes = ((plane, _histogram(plane)) for plane in _planes(tv, elem_bits))
            for plane, hist in planes:
                c, f = _stream_cost(hist, block, allow_fixed)
                model = None
                # Contexts read two's complement levels: identity-transformed
                # integers of one plane (int8, int4, int2).
                if t == fmt.TRANSFORM_IDENTITY and single:
                    r = _rans_plane(plane, fmt.plane_bits(elem_bits), block, shape, force)
                    if r is not None and (r[0] < c or force.get("codes") in _FORCED_RANGE_CODES):
                        c, f, model = r[0], False, r[1]
                cost += c
                fixed.append(f)
                models.append(model)
                del plane, hist  # before the generator makes the next one
            options.append(_Values(cost, fmt.VALUES_PLANES, t, fixed=tuple(fixed),
                                   models=tuple(models)))
            tv = planes = None  # before the next transform's copy of the values
    if not options:
        return None
    # Ties: the first option (codebook before planes, lower transform) wins.
    return min(options, key=lambda o: o.cost)


def _plane_histograms(unique, counts, t, elem_bits):
    """`(None, histogram)` of each plane of the `t`-transformed values whose
    histogram is (`unique`, `counts`): what `_histogram` of each of
    `_planes` counts, summed over the distinct values instead of made from
    every element. Order-0 costs need no more, and a planner prices
    clustered kernels of a few dozen values at thousands of settings."""
    tu = fmt.transform(unique, t, elem_bits)
    for plane in _planes(tu, elem_bits):
        yield None, np.bincount(plane, weights=counts).astype(np.int64)


def _planes(tv, elem_bits):
    """The plane symbols (np.uint16 each) of transformed values `tv`, most
    significant plane first: made one at a time (a generator), a chunk of
    `tv` at a time, so a large tensor's planes and their temporaries are
    not all in memory at once."""
    n = fmt.plane_count(elem_bits)
    for p in range(n):
        shift = tv.dtype.type(8 * (n - 1 - p))
        plane = np.empty(len(tv), np.uint16)
        for start in range(0, len(tv), rans.CHUNK):
            part = tv[start:start + rans.CHUNK] >> shift
            part &= tv.dtype.type(255)
            plane[start:start + rans.CHUNK] = part
        yield plane


# --------------------------------------------------------------------------
# Choosing and building one record


@dataclasses.dataclass
class _Plan:
    record: object        # RecordInfo without final sizes
    head: bytes           # descriptor fields before the streams
    streams: list         # [(prefix bytes, _Stream)] in descriptor order


_FP16_CHUNK = 1 << 16  # elements rounded at a time: ~40 B of temporaries each, in cache


def _fp16_round(elems):
    """(float32 patterns rounded through binary16, max abs change), or None
    when rounding would overflow a finite value or alter a NaN/Inf pattern.
    The expansion is the decoder's own, so what is checked is what decodes.
    In chunks: whole-tensor temporaries made a 192 MB tensor's pack peak at
    2.3 GB."""
    r_bits = np.empty(elems.shape, np.uint32)
    change = 0.0
    for start in range(0, elems.size, _FP16_CHUNK):
        chunk = elems[start:start + _FP16_CHUNK]
        f = chunk.view(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            half = f.astype(np.float16)
        bits = fmt.fp16_to_fp32_bits(half.view(np.uint16))
        r = bits.view(np.float32)
        finite = np.isfinite(f)
        if not np.isfinite(r[finite]).all():
            return None
        if (bits[~finite] != chunk[~finite]).any():
            return None
        if finite.any():
            change = max(change, float(np.max(np.abs(f[finite] - r[finite]))))
        r_bits[start:start + _FP16_CHUNK] = bits
    return r_bits, change


def _candidate(raw, elem_bits, kind, shape, block, gap_alphabet, codebook_fp16, force):
    """The cheapest record of `raw` with `elem_bits`-bit elements:
    `(cost, elems, expand, fp16_change, position, rows, G, fixed gaps,
    values)`."""
    elems = fmt.split_elements(raw, elem_bits)
    variants = [(elems, False, 0.0)]
    if elem_bits == 32 and kind == "float":
        rounded = _fp16_round(elems)
        if rounded is not None and codebook_fp16:
            variants = [(rounded[0], True, rounded[1])]  # rounding asked for
        elif (rounded is not None and force.get("codebook_encoding") != "raw"
              and np.array_equal(rounded[0], elems)):
            # Already binary16 values (e.g. ClusteredFineTuning's centroids):
            # 16-bit codebook keys are lossless; taken where they are cheaper.
            variants.append((elems, True, 0.0))
        del rounded  # a copy of the tensor, needed only in the first case
    # Rounding keeps zeros zero, so every variant has the same positions.
    mask = variants[0][0] != 0
    positions = None
    if force.get("position_mode") != "dense":
        positions = _best_positions(mask, shape, block, gap_alphabet, force)
    best = None
    for elems, expand, change in variants:
        if force.get("position_mode") != "sparse":
            # Order-0 codes cost the same in any order: dense records are
            # row-major unless a test or tool asks for the other scan.
            rows = _scans(shape, len(elems))[-1] if force.get("scan") == "column" else 1
            values = _best_values(elems, elem_bits, kind, block, expand, force,
                                  shape if rows == 1 else None)
            if values is not None and (best is None or values.cost < best[0]):
                best = (values.cost, elems, expand, change, fmt.POSITION_DENSE, rows, 0, False,
                        values)
        if positions is not None:
            pos_cost, rows, G, gap_code = positions
            values = _best_values(elems[mask], elem_bits, kind, block, expand, force)
            if values is not None and (best is None or pos_cost + values.cost < best[0]):
                best = (pos_cost + values.cost, elems, expand, change, fmt.POSITION_SPARSE, rows,
                        G, gap_code, values)
    return best


def _inline_cost(raw):
    """Estimated bytes of a buffer left in the flatbuffer (deflated with it)."""
    data = raw.tobytes()
    level = 9 if len(data) <= (1 << 20) else 6
    return len(fmt.deflate(data) if level == 9 else zlib.compress(data, level)) + 2


def _plan_record(raw, tensor_bits, kind, shape, block, gap_alphabet, codebook_fp16,
                 force=None):
    """The smallest record for buffer bytes `raw` (np.uint8), or None when
    leaving it inline in the deflated flatbuffer is as small.

    `force` (tests and tools only) restricts the choice — keys
    "position_mode" ("dense"/"sparse"), "scan" ("row"/"column"),
    "value_mode" ("codebook"/"planes"), "elem_bits", "codes" ("huffman": no
    fixed-length codes), "codebook_encoding" ("raw": no 16-bit keys for
    binary16 values) — and packs even when the record is not smaller.
    """
    force = force or {}
    widths = [tensor_bits] if (8 * len(raw)) % tensor_bits == 0 else [8]
    if widths[0] < 8:
        widths.append(8)  # pairs / quads of sub-byte values as one byte symbol
    if "elem_bits" in force:
        widths = [force["elem_bits"]]
    best = None
    for w in widths:
        c = _candidate(raw, w, kind if w == tensor_bits else "uint", shape, block,
                       gap_alphabet, codebook_fp16, force)
        if c is not None and (best is None or c[0] < best[0]):
            best = c + (w,)
    if best is None:
        return None
    cost, elems, expand, change, position, rows, G, gap_code, values, elem_bits = best
    if not force:
        total = cost + _RECORD_OVERHEAD
        # Deflate finds repeats that order-0 and context codes cannot (an
        # index table, arange * 3 + 7 in int32: 39,816 B coded, 28,193 B
        # deflated); float weights it does not beat under 3/4 of their size.
        if total >= len(raw) or ((total > 0.75 * len(raw) or kind != "float")
                                 and total >= _inline_cost(raw)):
            return None
    return _build(elems, elem_bits, expand, change, position, rows, G, gap_code, values,
                  block, shape, len(raw), force.get("codes"))


def _forced_model(symbols, alphabet, block, shape, grouped=False):
    """A kind 3 model, or (`grouped`) a kind 4 one, for any stream (tests:
    `_force={"codes": "rans"}` or `"rans-grouped"`). A stream that is not a
    tensor's rows is cut into rows of 7 symbols; one too short to group
    gets a kind 4 table of one group."""
    width = max(1, int(alphabet - 1).bit_length())
    rblock = _rans_block(block)
    model = rans.fit_cost(symbols, width, rblock, shape, lags=[1, 2, 3])[0]
    return _forced_groups(symbols, width, rblock, model, shape) if grouped else model


def _forced_groups(symbols, width, rblock, base, shape):
    """The kind 4 model of `symbols` grouped on top of their kind 3 model
    `base`, whatever it costs (tests)."""
    n = len(symbols)
    layout = rans.group_layout(n, shape) or (
        min(7, max(1, n)), max(1, min(-(-n // 7), fmt.MAX_RANS_ROW_PERIOD)))
    r = rans.fit_grouped(symbols, width, rblock, base, layout)
    if r is not None:
        return r[0]
    return dataclasses.replace(base, groups=rans.Groups(1, 1, [0], 1, [0]))


def _build(elems, elem_bits, expand, change, position, rows, G, gap_code, values, block,
           shape, raw_bytes, force_codes=None):
    n = len(elems)
    forced = force_codes in _FORCED_RANGE_CODES
    grouped = force_codes == "rans-grouped"
    head = [varint_bytes(elem_bits), varint_bytes(values.transform), varint_bytes(values.mode),
            varint_bytes(position), varint_bytes(rows)]
    streams = []
    gap_stream = None
    if position == fmt.POSITION_SPARSE:
        mask = elems != 0
        vals = elems[_stream_order_positions(mask, rows)[1]]  # its int64 indices freed
        gaps = _gap_stream(mask, rows, G)
        head += [varint_bytes(len(vals)), varint_bytes(G), varint_bytes(len(gaps))]
        if len(gaps):
            model = gap_code if isinstance(gap_code, rans.Model) else None
            if forced:
                model = _forced_model(gaps, G, block, shape, grouped)
            gap_stream = _code_stream(gaps, _histogram(gaps, G), block, gap_code is True, model)
            streams.append((b"", gap_stream))
    elif rows > 1:
        vals = elems.reshape(rows, n // rows).T.reshape(-1)
    else:
        vals = elems
    value_streams = []
    codebook = b""
    if values.mode == fmt.VALUES_CODEBOOK:
        codebook = varint_bytes(fmt.EXPAND_FP16 if expand else fmt.EXPAND_NONE) + \
            _codebook_bytes(values.keys, values.key_bits)
        if len(vals):
            # A chunk at a time: the uint64 keys and int64 indices of a whole
            # tensor are 16 bytes a weight.
            symbols = np.empty(len(vals), np.uint16)
            for start in range(0, len(vals), rans.CHUNK):
                part = vals[start:start + rans.CHUNK]
                keyed = fmt.fp32_to_fp16_bits(part.astype(np.uint32)) if expand else part
                tk = fmt.transform(keyed, values.transform, values.key_bits).astype(np.uint64)
                symbols[start:start + rans.CHUNK] = np.searchsorted(values.keys, tk)
            del keyed, tk
            counts = _histogram(symbols, len(values.keys))
            model = (_forced_model(symbols, len(values.keys), block, shape, grouped)
                     if forced else None)
            value_streams.append(_code_stream(symbols, counts, block, values.fixed[0], model))
    elif len(vals):
        tv = fmt.transform(vals, values.transform, elem_bits)
        pbits = fmt.plane_bits(elem_bits)
        for plane, fixed, model in zip(_planes(tv, elem_bits), values.fixed, values.models):
            counts = _histogram(plane, 1 << pbits)
            if model is None and forced:
                model = _forced_model(plane, 1 << pbits, block, shape, grouped)
            value_streams.append(_code_stream(plane, counts, block, fixed, model))
            del plane  # before the generator makes the next one
    # Codebook first (its descriptor bytes), then the value streams.
    streams += [(codebook if i == 0 else b"", s) for i, s in enumerate(value_streams)]
    if not value_streams and codebook:
        streams.append((codebook, None))
    nnz = int(np.count_nonzero(elems))
    info = RecordInfo(
        buffer_index=-1, tensor_names=[], shape=tuple(shape), dtype="", num_elements=n,
        nnz=nnz, elem_size=max(1, elem_bits // 8),
        value_mode="codebook" if values.mode == fmt.VALUES_CODEBOOK else "planes",
        position_mode="sparse" if position == fmt.POSITION_SPARSE else "dense",
        scan="column" if rows > 1 else "row", scan_rows=rows,
        gap_alphabet=G if position == fmt.POSITION_SPARSE else 0,
        codebook_size=len(values.keys) if values.mode == fmt.VALUES_CODEBOOK else 0,
        codebook_encoding="fp16" if expand else "raw", value_count=len(vals),
        gap_count=gap_stream.count if gap_stream else 0,
        value_bits=sum(s.bits for s in value_streams),
        gap_bits=gap_stream.bits if gap_stream else 0,
        value_entropy_bits=sum(s.entropy_bits for s in value_streams),
        gap_entropy_bits=gap_stream.entropy_bits if gap_stream else 0.0,
        codebook_bytes=len(codebook), table_bytes=0, record_bytes=0, raw_bytes=raw_bytes,
        fp16_max_abs_change=change, elem_bits=elem_bits,
        transform=fmt.TRANSFORM_NAMES[values.transform],
        planes=len(value_streams) if values.mode == fmt.VALUES_PLANES else 0,
        context_coded=any(st.kind in fmt.RANS_KINDS for st in value_streams))
    return _Plan(info, b"".join(head), streams)


def _descriptor(plan, lead, table_index):
    """A record's descriptor: `lead` (its buffer_index, or a patch's output
    range), then its fields and streams."""
    parts = [lead, plan.head]
    for prefix, stream in plan.streams:
        parts.append(prefix)
        if stream is not None:
            parts.append(stream.descriptor(table_index))
    return b"".join(parts)


# --------------------------------------------------------------------------
# The file


def _name(value):
    # "replace": a damaged name (a flipped bit) raised UnicodeDecodeError.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def plain_model(data):
    """The `ModelT` of a plain, or decoded, `.tflite`: buffers in the offset
    layout (models over 2 GB, tfdc's decoded files) brought inline, a decoded
    file's marker (and a format 1 decoded file's section) removed."""
    model = tflite_schema.read(data, copy=False)  # buffers are replaced, never written
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    names = [_name(m.name) for m in model.metadata]
    if fmt.METADATA_NAME in names:
        raise ValueError("the model is already tfdc-packed")
    if fmt.METADATA_NAME_V1 in names:
        # A format 1 decoded file keeps its section, and its decoded
        # weights follow it; a packed one ends with the section.
        section = model.metadata[names.index(fmt.METADATA_NAME_V1)].buffer
        ref = model.buffers[section]
        if ref.offset + ref.size >= len(data):
            raise ValueError("the model is already tfdc-packed (format 1)")
        ref.offset = ref.size = 0
        if section == len(model.buffers) - 1:
            model.buffers.pop()
    model.metadata = [m for m in model.metadata
                      if _name(m.name) not in (fmt.METADATA_NAME_V1, fmt.DECODED_MARKER)]
    for b in model.buffers:
        if b.offset > 1:
            if b.offset + b.size > len(data):
                raise FormatError(f"a buffer's data ({b.size:,} B at offset {b.offset:,}) runs "
                                  f"past the end of the {len(data):,}-byte model",
                                  status="flatbuffer")
            b.data = np.frombuffer(data, np.uint8, b.size, b.offset).copy()
            b.offset, b.size = 0, 0
    return model


_ZIP_END = struct.Struct("<IHHHHIIH")  # end of central directory record
_ZIP_ENTRY = 46                         # central directory header, before its names


def _zip_directory(data, eocd):
    """`(directory position, directory size, the end record's directory
    offset field, [(position of an entry's local-header offset field, that
    offset)])` of the zip whose end record is at `eocd` in `data`; None
    where it is not one (bad signatures, or bounds)."""
    _, _, _, _, entries, size, offset, _ = _ZIP_END.unpack_from(data, eocd)
    at, fields = eocd - size, []
    if at < 0:
        return None
    pos = at
    for _ in range(entries):
        if pos + _ZIP_ENTRY > eocd or data[pos:pos + 4] != b"PK\x01\x02":
            return None
        name, extra, comment = struct.unpack_from("<HHH", data, pos + 28)
        fields.append((pos + 42, struct.unpack_from("<I", data, pos + 42)[0]))
        pos += _ZIP_ENTRY + name + extra + comment
    return (at, size, offset, fields) if pos == eocd else None


def appended_zip_start(data, flatbuffer_end):
    """Where a zip archive appended to a `.tflite` begins (TFLite metadata's
    associated files, e.g. a labels file: `tflite_support`'s
    MetadataPopulator writes the flatbuffer, then the archive), or None:
    the file ends with a zip end record whose directory and entries all lie
    after `flatbuffer_end` (the last byte the flatbuffer's buffers use).
    The runtime never reads it; tools such as MetadataExtractor find it
    from the end of the file. Its offsets may count from the archive's
    start or from the file's (the populator's)."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - (65535 + _ZIP_END.size)))
    if eocd < 0 or eocd + _ZIP_END.size > len(data) or \
            eocd + _ZIP_END.size + _ZIP_END.unpack_from(data, eocd)[7] != len(data):
        return None
    found = _zip_directory(data, eocd)
    if found is None:
        return None
    at, _, offset, fields = found
    shift = at - offset  # 0 where the offsets count from the file's start
    starts = [shift + lho for _, lho in fields]
    start = min(starts + [at])
    if start < max(8, flatbuffer_end) or any(
            data[p:p + 4] != b"PK\x03\x04" for p in starts):
        return None
    return start


def split_appended(data):
    """`(model, archive)`: `.tflite` bytes without, and the zip archive
    appended to them (`appended_zip_start`; b"" if none), for a step that
    rewrites the flatbuffer and would drop what follows it."""
    from tfdc.flatbuf import read_model
    end = 0
    for b in read_model(data).buffers:
        if b.data_start is not None:
            end = max(end, b.data_start + b.data_len)
        if b.offset > 1:  # the offset layout: data after the flatbuffer
            end = max(end, b.offset + b.size)
    start = appended_zip_start(data, end)
    return (data, b"") if start is None else (data[:start], data[start:])


def zip_relocated(archive, position):
    """`archive` (a whole zip) with its offsets made right for a file in
    which it starts at byte `position`, where they count from the file's
    start (as the MetadataPopulator writes them; offsets that count from
    the archive's start need nothing). The decoded file places it after
    the flatbuffer and the decoded weights: elsewhere than in the input."""
    data = bytearray(archive)
    eocd = bytes(archive).rfind(b"PK\x05\x06", max(0, len(data) - (65535 + _ZIP_END.size)))
    found = _zip_directory(data, eocd) if eocd >= 0 else None
    if found is None:
        return bytes(archive)
    at, _, offset, fields = found
    delta = position - (offset - at)  # where it is meant to start -> where it will
    if offset == at or delta == 0 or not all(
            0 <= lho + delta < 0xFFFFFFFF for _, lho in fields + [(0, offset)]):
        return bytes(archive)  # counted from its own start (or zip64: left as is)
    for field, lho in fields:
        struct.pack_into("<I", data, field, lho + delta)
    struct.pack_into("<I", data, eocd + 16, offset + delta)
    return bytes(data)


def _appended_archive(model, data):
    """The index of the buffer holding a zip archive appended to the model,
    or None: a decoded file's (named by a `tfdc.appended` metadata entry),
    or one after the flatbuffer of `data`, which becomes a new buffer so
    named (it was dropped, its bytes counted as packing's gain)."""
    for m in model.metadata:
        if _name(m.name) == fmt.APPENDED_ARCHIVE:
            return int(m.buffer)
    _, archive = split_appended(data)
    if not archive:
        return None
    schema = tflite_schema.get()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(archive, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = fmt.APPENDED_ARCHIVE, len(model.buffers) - 1
    model.metadata.append(entry)
    return entry.buffer


def _align(x, a):
    return (x + a - 1) // a * a


# --------------------------------------------------------------------------
# Patches (§6.7): quantization vectors of the flatbuffer, coded as records


def _add_tables(plans, tables, table_index):
    """Append the tables `plans` use that are not yet in `tables`, in
    first-use order (identical tables are stored once)."""
    for plan in plans:
        plan.new_tables = []
        for _, stream in plan.streams:
            if stream is not None and stream.table not in table_index:
                table_index[stream.table] = len(tables)
                tables.append(stream.table)
                plan.new_tables.append(stream.table)
                plan.record.table_bytes += len(stream.table)


def plan_bytes(plan, lead, known_tables=()):
    """Bytes a record adds to a file before the meta stream is deflated: its
    payload, its descriptor (after `lead`: its buffer_index or a patch's
    range) and the tables it uses that are not in `known_tables`.
    `tfdc.bytecost` prices layers with it."""
    tables = []
    for _, st in plan.streams:
        if st is not None and st.table not in tables:
            tables.append(st.table)
    descriptor = _descriptor(plan, lead, {t: i for i, t in enumerate(tables)})
    return (len(_payload(plan)) + len(descriptor)
            + sum(len(t) for t in tables if t not in known_tables))


def _payload(plan):
    """A record's coded segments, stream after stream (§5.2)."""
    return b"".join(st.payload() for _, st in plan.streams if st is not None)


def _patch_plans(flat, base_meta, base, known_tables, block, min_bytes, force):
    """The quantization vectors of the inner flatbuffer `flat` worth a patch:
    a `_Plan` for each, a record smaller than what clearing its
    range saves in the meta stream `base_meta` (`base` bytes deflated)
    (`force`: every nonzero vector, whatever it costs — True, or a dict of
    `_plan_record` restrictions; tests)."""
    chosen = []
    for vec in quantization_vectors(flat):
        raw = np.frombuffer(flat, np.uint8, vec.nbytes, vec.start).copy()
        if not raw.any() or (not force and vec.nbytes < max(1, min_bytes)):
            continue  # zeros cost DEFLATE next to nothing
        dtype, bits, kind = vec.dtype
        restrict = dict(force, elem_bits=bits) if isinstance(force, dict) else {"elem_bits": bits}
        plan = _plan_record(raw, bits, kind, (vec.count,), block, None, False,
                            restrict if force else None)
        if plan is None:
            continue
        if not force:
            cleared = bytearray(base_meta)
            cleared[vec.start:vec.start + vec.nbytes] = bytes(vec.nbytes)
            lead = varint_bytes(vec.start) + varint_bytes(vec.nbytes)
            if plan_bytes(plan, lead, known_tables) >= base - len(fmt.deflate(cleared)):
                continue
        plan.record.buffer_index = -1
        plan.record.tensor_names = [vec.label]
        plan.record.dtype = dtype
        plan.out_offset, plan.out_size = vec.start, vec.nbytes
        chosen.append(plan)
    return chosen


def selector(select):
    """`pack_tflite`'s `select` as a callable (a str: a regular expression
    searched in tensor names), or None."""
    if select is None or callable(select):
        return select
    if isinstance(select, str):
        try:
            pattern = re.compile(select)
        except re.error as e:
            raise ValueError(f"select {select!r} is not a valid regular expression: {e}") \
                from None
        return lambda name, index: pattern.search(name) is not None
    raise TypeError("select must be a callable (tensor_name, buffer_index) -> bool or a "
                    f"regular expression (a str), got {type(select).__name__}")


def check_options(*, block=None, gap_alphabet=None, min_bytes=64, negative_zeros="keep"):
    """Refuse a packing option of `pack_tflite` (and `tfdc.export`, before
    it converts) that is out of its range or not an integer: a ValueError
    that names it. `block` None: the default."""
    def integer(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if negative_zeros not in ("keep", "zero"):
        raise ValueError(f"negative_zeros must be 'keep' or 'zero', got {negative_zeros!r}")
    if not integer(min_bytes) or min_bytes < 0:
        raise ValueError(f"min_bytes must be an integer >= 0, got {min_bytes!r}")
    if block is not None and (not integer(block) or not 1 <= block <= fmt.MAX_BLOCK):
        raise ValueError(f"block must be an integer in 1 … 2^32−1, got {block!r}")
    if gap_alphabet is not None and (not integer(gap_alphabet) or not 2 <= gap_alphabet <= 32768
                                     or gap_alphabet & (gap_alphabet - 1)):
        raise ValueError("gap_alphabet must be a power of two in 2 … 32768, got "
                         f"{gap_alphabet!r}")


def pack_tflite(tflite_bytes, *, select=None, block=fmt.DEFAULT_BLOCK, gap_alphabet=None,
                codebook_fp16=False, min_bytes=64, strip_debug=False, densify=True,
                negative_zeros="keep", _force=None, _patches=None):
    # `_force` (tests and tools/format_example.py only): a dict of
    # `_plan_record` restrictions for every buffer, or {buffer_index: dict}.
    # `_patches` (tests): None = patches where the file is smaller for them,
    # False = none, True = every nonzero quantization vector (a dict: with
    # these `_plan_record` restrictions).
    """Pack the constant buffers of a TFLite model into a tfdc.v2 file.

    Args:
        tflite_bytes: a `.tflite` flatbuffer (as written by `TFLiteConverter`,
            or a file decoded by `tfdc.decode`).
        select: optional `select(tensor_name, buffer_index) -> bool`, or a
            regular expression (a str, searched in tensor names with
            `re.search`, as `tfdc pack --select` takes it); a buffer is
            considered only if it selects one of its tensors (the others
            stay in the deflated flatbuffer).
        block: symbols per independently decodable segment.
        gap_alphabet: fix `G` (a power of two, 2 … 32768) for sparse records
            instead of choosing the best per buffer.
        codebook_fp16: round every packed float32 weight to binary16 and
            store the codebooks as binary16 (lossy, see the module
            docstring): an unclustered tensor's weights change too.
        min_bytes: buffers smaller than this stay inline (an int >= 0).
        strip_debug: drop what the runtime never reads: the names of
            non-constant tensors (activations, shape temporaries), the
            model description and the converter's `CONVERSION_METADATA`.
            Names of weight tensors are kept for `tfdc inspect`.
        densify: expand TFLite's own sparse constants (CSR / block-sparse
            `SparsityParameters` read by a `DENSIFY` op) into the dense
            constants they stand for and drop the `DENSIFY` ops, so that
            their positions are coded by the sparse records
            (`tfdc.densify`); `PackInfo.densified` lists every TFLite-sparse
            tensor, expanded or left as is and why. The decoded model holds
            those weights dense, as every runtime does once DENSIFY has run.
        negative_zeros: `"keep"` (lossless: a float weight of -0.0 keeps its
            sign bit) or `"zero"`: store it as 0.0. A pruning mask
            multiplied into the weights (tfmot's) leaves -0.0 where it
            pruned a negative weight; kept, those are coded as values, not
            as pruned positions (twice the bytes, or more). Equal to 0.0 as
            numbers, they change only the sign of a product that is zero.
            `PackInfo.negative_zeros` counts them per tensor, either way.

    Returns:
        `(packed_bytes, PackInfo)`. Deterministic: the same input and options
        give the same bytes (with the same zlib).
    """
    select = selector(select)
    check_options(block=block, gap_alphabet=gap_alphabet, min_bytes=min_bytes,
                  negative_zeros=negative_zeros)
    schema = tflite_schema.get()
    data = bytes(tflite_bytes)
    check_tflite_header(data)
    model = plain_model(data)
    if not model.subgraphs:
        # A packed file whose section key is damaged reads as such a stub:
        # packed, its section was silently dropped (418 B in, 164 B out).
        raise FormatError("it has no subgraph, so no model to run (a damaged tfdc-packed "
                          "file?)", status="flatbuffer")
    archive = _appended_archive(model, data)
    densified = densify_model(model) if densify else []

    # Which tensors use each buffer.
    users = {}
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            shape = tuple(int(s) for s in (tensor.shape if tensor.shape is not None else []))
            users.setdefault(int(tensor.buffer), []).append(
                (_name(tensor.name), int(tensor.type), shape))

    if strip_debug:
        tflite_schema.strip_debug(model)

    plans, signed = [], {}
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
        dtype, bits, kind = fmt.buffer_type([t for _, t, _ in tensors], len(raw))
        if kind == "float" and bits >= 16:
            raw, count = _negative_zeros(raw, bits, negative_zeros == "zero")
            if count:
                signed[tensors[0][0]] = count
                buf.data = raw
        shape = tensors[0][2]
        force = _force.get(index) if _force and isinstance(next(iter(_force)), int) else _force
        if _force and force is None:
            continue
        plan = _plan_record(raw, bits, kind, shape, block, gap_alphabet, codebook_fp16, force)
        if plan is None:
            continue
        plan.record.buffer_index = index
        plan.record.tensor_names = [name for name, _, _ in tensors]
        plan.record.dtype = dtype
        plans.append(plan)

    appended = None if archive is None else len(model.buffers[archive].data)
    # The inner flatbuffer: every packed buffer points into the decoded tail,
    # after the flatbuffer. Its length does not depend on the offsets'
    # values (u64 fields), so one build with placeholders gives it.
    model.metadata.append(schema.MetadataT())
    model.metadata[-1].name, model.metadata[-1].buffer = fmt.DECODED_MARKER, 0
    placeholder = 1 << 62
    for plan in plans:
        b = model.buffers[plan.record.buffer_index]
        plan.out_size = len(b.data)
        b.data = None
        b.offset, b.size = placeholder, plan.out_size
    if archive is not None:
        archive_data = model.buffers[archive].data
        model.buffers[archive].data = None
        model.buffers[archive].offset, model.buffers[archive].size = placeholder, appended
    F = len(tflite_schema.build(model))
    cursor = F
    for plan in plans:
        plan.out_offset = _align(cursor, fmt.OUTPUT_ALIGN)
        cursor = plan.out_offset + plan.out_size
        model.buffers[plan.record.buffer_index].offset = plan.out_offset
    if archive is not None:
        # The last record, coded even where that gains nothing, so that it
        # ends the decoded file, where zip readers find it; its offsets
        # made right for where it lands there.
        at = _align(cursor, fmt.OUTPUT_ALIGN)
        raw = np.frombuffer(zip_relocated(np.asarray(archive_data).tobytes(), at), np.uint8)
        plan = _plan_record(raw, 8, "uint", (len(raw),), block, None, False,
                            {"value_mode": "planes", "position_mode": "dense"})
        plan.record.buffer_index = archive
        plan.record.tensor_names = [fmt.APPENDED_ARCHIVE]
        plan.record.dtype = "uint8"
        plan.out_offset, plan.out_size = at, appended
        cursor = at + appended
        model.buffers[archive].offset = at
        plans.append(plan)
    D = cursor

    # Code tables: identical tables are stored once, in first-use order.
    tables, table_index = [], {}
    _add_tables(plans, tables, table_index)
    flat = tflite_schema.build(model)
    if len(flat) != F:
        raise AssertionError("flatbuffer length changed between builds")

    descriptors, payloads = [], []
    for plan in plans:
        descriptors.append(_descriptor(plan, varint_bytes(plan.record.buffer_index),
                                       table_index))
        payloads.append(_payload(plan))
    records = varint_bytes(len(plans)) + b"".join(descriptors)
    meta = flat + varint_bytes(len(tables)) + b"".join(tables) + records
    deflated = fmt.deflate(meta)
    flags = 0
    patches = []
    if _patches is not False:
        patches = _patch_plans(flat, meta, len(deflated), set(tables), block, min_bytes,
                               _patches)
    if patches:
        # The patched ranges are cleared; patch tables follow the records'.
        with_tables = list(tables)
        _add_tables(patches, with_tables, table_index)
        cleared = bytearray(flat)
        for p in patches:
            cleared[p.out_offset:p.out_offset + p.out_size] = bytes(p.out_size)
        patch_descriptors = [_descriptor(p, varint_bytes(p.out_offset)
                                         + varint_bytes(p.out_size), table_index)
                             for p in patches]
        patch_payloads = [_payload(p) for p in patches]
        patched = (bytes(cleared) + varint_bytes(len(with_tables)) + b"".join(with_tables)
                   + records + varint_bytes(len(patches)) + b"".join(patch_descriptors))
        patched_deflated = fmt.deflate(patched)
        if _patches or (len(patched_deflated) + sum(map(len, patch_payloads))
                        < len(deflated)):
            flat, tables, meta, deflated = bytes(cleared), with_tables, patched, patched_deflated
            descriptors += patch_descriptors
            payloads += patch_payloads
            flags |= fmt.FLAG_PATCHES
        else:
            patches = []
    payload = b"".join(payloads)
    # Versions 2.1, 2.2 and 2.3 only where a kind 3 or 4 table or a patch
    # needs them (§10): every other file stays readable by older decoders.
    kinds = {st.kind for p in plans + patches for _, st in p.streams if st}
    for kind in kinds:
        flags |= fmt.TABLE_FLAGS.get(kind, 0)
    header = (fmt.PREFIX.pack(fmt.MAGIC, fmt.VERSION_MAJOR, fmt.header_version(flags))
              + varint_bytes(flags)
              + varint_bytes(len(deflated)) + varint_bytes(len(meta))
              + varint_bytes(F) + varint_bytes(D))
    Z = len(header) + len(deflated) + len(payload) + fmt.CRC.size
    S = fmt.STUB_SIZE
    body = fmt.stub(S, Z) + header + deflated + payload
    packed = body + fmt.CRC.pack(zlib.crc32(body))

    # Accounting: the graph's share of the deflate stream is its size
    # deflated alone; the rest is the descriptors', shared out among the
    # records (with the tables each introduced).
    # (Deflated with the descriptors, the graph can come out a few bytes
    # smaller than alone: the descriptors' share is then 0, never negative.)
    graph = min(len(fmt.deflate(flat)), len(deflated))
    descriptor_share = len(deflated) - graph
    coded = plans + patches
    parts = [d + b"".join(plan.new_tables) for d, plan in zip(descriptors, coded)]
    shares = fmt.descriptor_shares(descriptor_share, parts)
    for plan, part, share, pay in zip(coded, parts, shares, payloads):
        r = plan.record
        r.payload_bytes = len(pay)
        r.descriptor_bytes = len(part)
        r.record_bytes = int(round(len(pay) + share))
        r.out_offset = plan.out_offset
    infos = [p.record for p in plans]
    info = PackInfo(flatbuffer_bytes=S, section_bytes=Z, total_bytes=len(packed),
                    decoded_bytes=D, records=infos, num_tables=len(tables),
                    input_bytes=len(data),
                    fp16_max_abs_change=max([r.fp16_max_abs_change for r in infos] or [0.0]),
                    version=fmt.VERSION_MAJOR, stub_bytes=S, header_bytes=len(header),
                    meta_bytes=len(deflated), meta_raw_bytes=len(meta), graph_bytes=graph,
                    graph_raw_bytes=F, descriptor_bytes=descriptor_share,
                    payload_bytes=len(payload), crc_bytes=fmt.CRC.size, densified=densified,
                    patches=[p.record for p in patches],
                    appended_bytes=appended or 0, negative_zeros=signed)
    return packed, info


def _negative_zeros(raw, bits, clear):
    """`(raw, count)`: the -0.0 elements of a float buffer counted (by bit
    pattern: only the sign bit set), and set to 0.0 if `clear`."""
    element = fmt.UINT_OF_SIZE[bits // 8]
    values = raw.view(element)
    negative = values == element(1) << element(bits - 1)
    count = int(np.count_nonzero(negative))
    if clear and count:
        values = values.copy()
        values[negative] = 0
        raw = values.view(np.uint8)
    return raw, count
