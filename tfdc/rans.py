"""The context-modelled range codes of formats 2.1 and 2.2 (table kinds 3 and 4,
FORMAT.md §5.3 and §5.4).

Order-0 codes (Huffman, `tfdc.huffman`) are the best a weight stream gets
when its values are independent. Kernels that were never pruned or
clustered — int8 / int4 tensors from the plain converter, ai-edge-quantizer
or tfmot — are not: a dense layer after an image keeps its pixels'
neighbourhoods, so a weight is close to its neighbour in the row and to the
one an image row above. xz finds part of that with its literal contexts; a
static order-0 code cannot, and lands 0.5–1.5 % above xz on such files.

Here each symbol is coded with one of `C` frequency tables (its *class*),
chosen by the sum of the two's complement *levels* of two earlier symbols of
the segment, at `lag1` and `lag2`, and range-coded with rANS (32-bit state,
byte-wise renormalisation; Duda 2013, as in ryg_rans). The tables are
static (two-pass), so a decoder needs one table lookup per symbol; segments
are independent, so `decode` runs every segment of a stream in lockstep
with NumPy.

`fit` chooses the lags, the class quantiser and the frequency precision
that minimise the stream's coded size, table included; the packer keeps the
result only where it is smaller than the stream's order-0 code.

Kind 4 (`Groups`) adds what two neighbours cannot see: the symbol's row and
column. A per-channel quantizer clips each output channel (a row of the
kernel) differently; a layer after an image has near-constant border pixels
(columns of small weights); a Hadamard rotation of the inputs puts a smooth
kernel's energy into a few positions of each rotated block (columns of large
weights). `fit_grouped` clusters rows and columns by their histograms and
gives every (row group, column group, class) its own frequency table.

Example:

    import numpy as np
    from tfdc import rans
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.integers(-2, 3, 20000)) % 256   # smooth int8 values
    symbols = walk.astype(np.uint16)
    model = rans.fit(symbols, width=8, block=4096)
    seg_bytes, data = rans.encode(symbols, model, 4096)
    assert np.array_equal(rans.decode(data, seg_bytes, len(symbols), 4096, model), symbols)
    print(model.lag1, model.lag2, model.classes, len(data), "bytes")
"""

import dataclasses
import math

import numpy as np

from tfdc import format as fmt
from tfdc.errors import FormatError

_L = fmt.RANS_L
_STATE_BYTES = fmt.RANS_STATE_BYTES
# Symbols worked on at a time (here and by tfdc.pack): a histogram's int64
# keys stay a few MB. Every per-symbol array below is as narrow as its
# values allow (levels int16, classes uint8, groups int16 where they are
# tables): int64 arrays of a whole stream made a 4 MB int8 kernel's fit
# peak at 882 MB.
CHUNK = 1 << 18


@dataclasses.dataclass
class Groups:
    """The row and column groups of a kind 4 table (§5.4): symbol `i` of a
    stream is in row `i // row_len`, column `i % row_len`; row `r` is in
    group `row_group[r % len(row_group)]`."""
    row_len: int
    col_groups: int
    col_group: np.ndarray
    row_groups: int
    row_group: np.ndarray

    def __post_init__(self):
        self.col_group = np.asarray(self.col_group, dtype=np.int64)
        self.row_group = np.asarray(self.row_group, dtype=np.int64)

    @property
    def count(self):
        return self.row_groups * self.col_groups

    def of(self, index):
        """The group (`row group · col_groups + column group`) of the
        stream's symbols at positions `index`."""
        index = np.asarray(index, dtype=np.int64)
        rows = (index // self.row_len) % len(self.row_group)
        return self.row_group[rows] * self.col_groups + self.col_group[index % self.row_len]

    def of_stream(self, count, dtype=np.int32):
        """`of` every position of a `count`-symbol stream, as `dtype` (a
        chunk of positions at a time)."""
        out = np.empty(count, dtype)
        for start in range(0, count, CHUNK):
            out[start:start + CHUNK] = self.of(np.arange(start, min(count, start + CHUNK)))
        return out

    def field_bytes(self):
        v = fmt.varint_bytes
        return b"".join([v(self.row_len), v(self.col_groups), fmt.varints_bytes(self.col_group),
                         v(len(self.row_group)), v(self.row_groups),
                         fmt.varints_bytes(self.row_group)])


@dataclasses.dataclass
class Model:
    """A kind 3 table (`groups` None): context parameters and one frequency
    table per class; or a kind 4 table: one per (group, class), table
    `group · classes + class`.

    `freqs` is an int64 array `[tables, 2^width]` whose rows sum to
    `2^prec`."""
    prec: int
    width: int
    lag1: int
    lag2: int
    shift: int
    classes: int
    freqs: np.ndarray
    groups: Groups = None

    def __post_init__(self):
        self.freqs = np.asarray(self.freqs, dtype=np.int64)
        self.cum = np.zeros_like(self.freqs)
        self.cum[:, 1:] = np.cumsum(self.freqs, axis=1)[:, :-1]

    @property
    def kind(self):
        return fmt.TABLE_RANS if self.groups is None else fmt.TABLE_RANS_GROUPED

    @property
    def tables(self):
        return len(self.freqs)

    @property
    def alphabet(self):
        """1 + the largest symbol with a nonzero frequency (§5.1)."""
        used = np.flatnonzero(self.freqs.any(axis=0))
        return int(used[-1]) + 1 if len(used) else 0

    def table_bytes(self):
        """The serialised table: its kind and fields (§5.3, §5.4)."""
        v = fmt.varint_bytes
        out = [v(self.kind), v(self.prec), v(self.width), v(self.lag1), v(self.lag2),
               v(self.shift), v(self.classes)]
        if self.groups is not None:
            out.append(self.groups.field_bytes())
        # Each row: its first used symbol, the span to its last, and the
        # span's frequencies, all rows in one varint pass (the fit prices
        # thousands of candidate tables; one pass a row was most of a pack).
        used = self.freqs != 0
        if not used.any(axis=1).all():
            raise ValueError("a frequency table row of all zeros")
        first = used.argmax(axis=1)
        spans = self.freqs.shape[1] - used[:, ::-1].argmax(axis=1) - first
        starts = np.cumsum(spans + 2) - (spans + 2)
        fields = np.empty(int((spans + 2).sum()), np.int64)
        fields[starts], fields[starts + 1] = first, spans
        row = np.repeat(np.arange(len(spans)), spans)
        offset = np.arange(len(row)) - np.repeat(np.cumsum(spans) - spans, spans)
        fields[starts[row] + 2 + offset] = self.freqs[row, first[row] + offset]
        out.append(fmt.varints_bytes(fields))
        return b"".join(out)

    def lookup(self):
        """`[tables, 2^prec]` slot → symbol tables."""
        M = 1 << self.prec
        lut = np.empty((self.tables, M), dtype=np.uint16)
        symbols = np.arange(self.freqs.shape[1], dtype=np.uint16)
        for c in range(self.tables):
            lut[c] = np.repeat(symbols, self.freqs[c])
        return lut


# --------------------------------------------------------------------------
# Contexts


def levels(symbols, width):
    """The symbols as `width`-bit two's complement values (§5.3), int16
    (`width` ≤ 15)."""
    s = np.asarray(symbols).astype(np.int32)
    s[s >= (1 << (width - 1))] -= 1 << width
    return s.astype(np.int16)


def _lagged(lev, lag, block):
    """`lev[i − lag]`, or 0 where that is before `i`'s segment."""
    out = np.zeros_like(lev)
    if lag < len(lev):
        out[lag:] = lev[:-lag]
    # The first `lag` symbols of every segment have nothing that far back.
    whole = len(lev) // block * block
    out[:whole].reshape(-1, block)[:, :lag] = 0
    out[whole:whole + lag] = 0
    return out


def _classes(lev, lag1, lag2, shift, classes, block):
    """Each symbol's class (§5.3), uint8: the sum of its lagged levels,
    shifted and clipped (in place on one int32 array)."""
    total = _lagged(lev, lag1, block).astype(np.int32)
    total += _lagged(lev, lag2, block)
    total >>= shift
    total += classes // 2
    np.clip(total, 0, classes - 1, out=total)
    return total.astype(np.uint8)


def tables_of(symbols, model, block):
    """The class table of every symbol of a stream cut into `block`-symbol
    segments: its class (§5.3), offset by its group's (§5.4)."""
    cls = _classes(levels(symbols, model.width), model.lag1, model.lag2, model.shift,
                   model.classes, block)
    if model.groups is None:
        return cls
    tables = model.groups.of_stream(len(cls))
    tables *= model.classes
    tables += cls
    return tables


# --------------------------------------------------------------------------
# Frequencies and sizes


def quantize(counts, prec):
    """Frequencies summing to `2^prec`, ≥ 1 wherever `counts` is > 0, close to
    the code-length-optimal `counts · 2^prec / total`; None if there are
    more used symbols than `2^prec` slots."""
    counts = np.asarray(counts, dtype=np.int64)
    M = 1 << prec
    used = counts > 0
    total = int(counts.sum())
    if total == 0:
        f = np.zeros_like(counts)
        f[0] = M
        return f
    if int(used.sum()) > M:
        return None
    f = np.where(used, np.maximum(1, np.floor(counts * (M / total) + 0.5)), 0).astype(np.int64)
    diff = M - int(f.sum())
    # Fix the sum where it costs the fewest bits, up to one unit per symbol
    # per round.
    while diff != 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            if diff > 0:
                score = np.where(used, counts * np.log2((f + 1) / np.maximum(f, 1)), -np.inf)
            else:
                score = np.where(f > 1, -counts * np.log2(f / np.maximum(f - 1, 1)), -np.inf)
        k = min(abs(diff), int(np.isfinite(score).sum()))
        pick = np.argpartition(-score, k - 1)[:k]
        f[pick] += 1 if diff > 0 else -1
        diff -= k if diff > 0 else -k
    return f


def coded_bits(counts, freqs, prec):
    """Bits of the symbols with per-class histogram `counts` under `freqs`."""
    nz = counts > 0
    return float(-(counts[nz] * (np.log2(freqs[nz]) - prec)).sum())


def _payload_overhead(count, block):
    """Bytes beyond the symbols' code lengths: each segment's final state
    (4 bytes, of which the coded bits fill part) and its length varint."""
    nseg = -(-count // block)
    return nseg * (_STATE_BYTES - 1 + 2.5) + 2


def model_cost(symbols_count, hist, prec, width, lag1, lag2, shift, classes, block, deflate,
               groups=None):
    """`(bytes, Model)` of the best frequencies at `prec` for the per-table
    histogram `hist`, or None when `prec` is too small."""
    freqs = np.zeros_like(hist)
    for c in range(len(hist)):
        f = quantize(hist[c], prec)
        if f is None:
            return None
        freqs[c] = f
    model = Model(prec, width, lag1, lag2, shift, classes, freqs, groups)
    bits = coded_bits(hist, freqs, prec)
    table = len(deflate(model.table_bytes()))
    return bits / 8 + _payload_overhead(symbols_count, block) + table, model


def _histogram(symbols, cls, classes, alphabet):
    """`[classes, alphabet]` counts of (class, symbol) pairs (`cls` None:
    one class), a chunk of the stream at a time: np.bincount copies its
    input to int64, 8 bytes a symbol."""
    counts = np.zeros(classes * alphabet, np.int64)
    for start in range(0, len(symbols), CHUNK):
        if cls is None:
            key = symbols[start:start + CHUNK]
        else:
            key = cls[start:start + CHUNK].astype(np.int64)
            key *= alphabet
            key += symbols[start:start + CHUNK]
        c = np.bincount(key)
        counts[:len(c)] += c
    return counts.reshape(classes, alphabet)


def _conditional_bits(symbols, cls, classes, alphabet):
    """Empirical conditional entropy (bits) of `symbols` given `cls`."""
    return _entropy_bits(_histogram(symbols, cls, classes, alphabet))


def _entropy_bits(h):
    """Conditional entropy (bits) of the symbols of histogram `h`
    (`[classes, alphabet]`) given their class."""
    rows = h.sum(axis=1, keepdims=True)
    nz = h > 0
    return float(-(h[nz] * np.log2((h / np.maximum(rows, 1))[nz])).sum())


def lag_candidates(shape, count, block):
    """Lags worth trying for a tensor of `shape` stored row-major: 1 … 32
    (neighbours in a row; image widths) and the strides of the shape's
    trailing axes (the previous row, the previous channel)."""
    lags = set(range(1, 33))
    stride = 1
    for d in reversed([int(x) for x in shape][1:]):
        stride *= d
        for k in (1, 2):
            lags.add(stride * k)
    limit = min(count - 1, block - 1, fmt.MAX_RANS_LAG)
    return sorted(x for x in lags if 1 <= x <= limit)


def fit(symbols, width, block, shape=(), deflate=None, lags=None):
    """The kind 3 `Model` of smallest estimated size (payload, segment
    lengths and deflated table) for `symbols` (values `< 2^width`, a tensor
    of `shape` in row-major order) coded in `block`-symbol segments.
    `fit_cost` returns the estimate too.

    The search: the single lag (lag1 = lag2) of lowest conditional entropy
    among `lag_candidates(shape)`, then pairs of the three best lags, then
    the class quantiser (`shift`, `classes`) and the precision."""
    return fit_cost(symbols, width, block, shape, deflate, lags)[0]


def fit_cost(symbols, width, block, shape=(), deflate=None, lags=None):
    """`(Model, estimated bytes)`; see `fit`."""
    deflate = deflate or fmt.deflate
    s = _symbols(symbols)
    n = len(s)
    alphabet = 1 << width
    lev = levels(s, width)
    if lags is None:
        lags = lag_candidates(shape, n, block) or [1]
    spread = float(np.mean(np.abs(lev), dtype=np.float64)) if n else 0.0
    # The class width that spreads two neighbours' typical sum over ~8 classes.
    base_shift = max(0, min(fmt.MAX_RANS_SHIFT, int(round(math.log2(max(spread, 0.5) * 2 / 4)))))

    def entropy(l1, l2, shift, classes):
        return _conditional_bits(s, _classes(lev, l1, l2, shift, classes, block), classes,
                                 alphabet)

    single = sorted((entropy(d, d, base_shift, 16), d) for d in lags)
    top = [d for _, d in single[:3]]
    pairs = sorted((entropy(a, b, base_shift, 16), a, b)
                   for i, a in enumerate(top) for b in top[i:])
    _, lag1, lag2 = pairs[0]
    best = None
    for shift in range(max(0, base_shift - 1), min(fmt.MAX_RANS_SHIFT, base_shift + 2) + 1):
        for classes in (1, 4, 8, 12, 16, 24, 32):
            if classes == 1 and shift != base_shift:
                continue
            cls = _classes(lev, lag1, lag2, shift, classes, block)
            hist = _histogram(s, cls, classes, alphabet)
            # No frequencies code below the entropy: a quantiser whose
            # bound is already over the best size is not priced.
            if best is not None and _lower_bound(n, hist, block) > best[0]:
                continue
            r = _best_prec(n, hist, width, lag1, lag2, shift, classes, block, deflate)
            if r is not None and (best is None or r[0] < best[0]):
                best = r
    return best[1], best[0]


def _lower_bound(count, hist, block):
    """Bytes that no model of the per-class histogram `hist` codes
    `count` symbols in (`model_cost`) below: the conditional entropy, the
    segments' overhead, no table (a hair under, for float rounding)."""
    return (_entropy_bits(hist) / 8 + _payload_overhead(count, block)) * (1 - 1e-9)


def _symbols(symbols):
    """A stream's symbols as an integer array, without a copy where they
    are one already (the packer's planes are uint16)."""
    s = np.asarray(symbols)
    return s if s.dtype.kind in "iu" else s.astype(np.int64)


def _best_prec(n, hist, width, lag1, lag2, shift, classes, block, deflate, groups=None):
    """The cheapest `(bytes, Model)` over the precisions: every other one
    from 6, then the neighbours of the best (the size is unimodal in it:
    finer frequencies code closer to the entropy, and cost table bytes)."""
    costs = {}

    def at(prec):
        if prec not in costs and 1 <= prec <= fmt.MAX_RANS_PREC:
            costs[prec] = model_cost(n, hist, prec, width, lag1, lag2, shift, classes, block,
                                     deflate, groups)
        return costs.get(prec)

    for prec in range(6, fmt.MAX_RANS_PREC + 1, 2):
        at(prec)
    found = [p for p, r in costs.items() if r is not None]
    if not found:
        return at(fmt.MAX_RANS_PREC)
    top = min(found, key=lambda p: costs[p][0])
    for prec in (top - 1, top + 1):
        at(prec)
    return min((r for r in costs.values() if r is not None), key=lambda r: r[0])


def fit_order0(symbols, width, block, deflate=None):
    """A one-class model (plain static rANS) and its estimated bytes."""
    s = _symbols(symbols)
    hist = _histogram(s, None, 1, 1 << width)
    cost, model = _best_prec(len(s), hist, width, 1, 1, 0, 1, block, deflate or fmt.deflate)
    return model, cost


# --------------------------------------------------------------------------
# Row and column groups (kind 4)

# (row groups, column groups) that `fit_grouped` tries: more groups split
# the statistics further but multiply the tables (measured on
# ai-edge-quantizer's LeNet-300-100 kernels, three of each is where the
# tables start to cost more than they gain).
_GROUPINGS = ((1, 2), (1, 3), (2, 1), (3, 1), (2, 2), (2, 3), (3, 2), (3, 3))
# Rows or columns are clustered only where their histograms (units x
# alphabet counts) stay this small: 32 MB of float64.
_MAX_CLUSTER_CELLS = 1 << 22


def _cluster(H, k, iters=12):
    """Groups of units (rows or columns) with similar histograms (`H`:
    `[units, alphabet]` counts), at most `k`: k-means with the code length
    as the distance, started from quantiles of each unit's order-0 entropy.
    The groups are numbered by increasing entropy; empty ones are dropped."""
    H = H.astype(np.float64)
    total = np.maximum(H.sum(axis=1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(H / total * np.log2(H / total), axis=1)
    assign = np.searchsorted(np.quantile(ent, np.linspace(0, 1, k + 1)[1:-1]), ent)
    for _ in range(iters):
        P = np.stack([H[assign == g].sum(axis=0) for g in range(k)]) + 0.5
        P /= P.sum(axis=1, keepdims=True)
        new = np.argmin(-(H @ np.log2(P).T), axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
    used = np.unique(assign)
    order = used[np.argsort([ent[assign == g].mean() for g in used], kind="stable")]
    relabel = np.zeros(k, np.int64)
    relabel[order] = np.arange(len(order))
    return relabel[assign], len(order)


def group_layout(count, shape):
    """`(row_len, rows)` of a stream of `count` symbols that is a tensor of
    `shape` in row-major order (a row: everything after the first axis;
    a symbol may hold several elements, as a byte holds two int4 values),
    or None where kind 4 groups do not apply."""
    if shape is None or len(shape) < 2 or count < 2:
        return None
    rows, row_len = int(shape[0]), int(np.prod([int(d) for d in shape[1:]]))
    if rows < 1 or (rows * row_len) % count or row_len % ((rows * row_len) // count):
        return None
    row_len //= (rows * row_len) // count
    if row_len > fmt.MAX_RANS_ROW_LEN or rows > fmt.MAX_RANS_ROW_PERIOD:
        return None
    return row_len, rows


def fit_grouped(symbols, width, block, base, layout, deflate=None):
    """`(Model, estimated bytes)` of the best kind 4 table (§5.4) for a
    stream whose kind 3 fit is `base`, with rows of `layout[0]` symbols and
    a row-group map of `layout[1]` entries (`group_layout`); None if rows
    and columns cannot be split into groups.

    Rows and columns are clustered (2 or 3 groups each, `_cluster`); each
    grouping is tried with the base model's lags and 1, 2, 4, 8 or its own
    number of classes, ranked by conditional entropy plus an estimate of the
    tables' bytes, and the three best are priced exactly."""
    deflate = deflate or fmt.deflate
    s = _symbols(symbols)
    n = len(s)
    alphabet = 1 << width
    row_len, period = layout
    maps = {}
    for axis, units in (("row", period), ("col", row_len)):
        maps[axis, 1] = (np.zeros(units, np.int64), 1)
        if units * alphabet > _MAX_CLUSTER_CELLS:
            continue
        # Each row's (column's) histogram: the rows of a kind 4 map are the
        # stream's rows modulo `period`.
        one = np.arange(units, dtype=np.int64)
        unit = Groups(row_len, row_len, one, 1, np.zeros(1)) if axis == "col" else \
            Groups(row_len, 1, np.zeros(row_len), period, one)
        H = _histogram(s, unit.of_stream(n), units, alphabet)
        for k in sorted({g for pair in _GROUPINGS for g in pair if g > 1}):
            if units >= k:
                maps[axis, k] = _cluster(H, k)
    lev = levels(s, width)
    class_cache = {}
    ranked = []
    seen = set()
    for gr, gc in _GROUPINGS:
        if ("row", gr) not in maps or ("col", gc) not in maps:
            continue
        (rmap, Gr), (cmap, Gc) = maps["row", gr], maps["col", gc]
        if (Gr, Gc) == (1, 1) or (Gr, Gc, rmap.tobytes(), cmap.tobytes()) in seen:
            continue
        seen.add((Gr, Gc, rmap.tobytes(), cmap.tobytes()))
        groups = Groups(row_len, Gc, cmap, Gr, rmap)
        group = groups.of_stream(n, np.int16)  # T ≤ 256 tables: int16 products
        map_bytes = (row_len * math.log2(Gc) + period * math.log2(Gr)) / 8
        for classes in sorted({1, 2, 4, 8, base.classes}):
            T = Gr * Gc * classes
            if T > fmt.MAX_RANS_TABLES:
                continue
            for shift in sorted({base.shift, min(fmt.MAX_RANS_SHIFT, base.shift + 1)}):
                if classes == 1 and shift != base.shift:
                    continue
                key = (classes, shift)
                if key not in class_cache:
                    class_cache[key] = _classes(lev, base.lag1, base.lag2, shift, classes,
                                                block)
                tables = group * np.int16(classes)
                tables += class_cache[key]
                hist = _histogram(s, tables, T, alphabet)
                del tables
                # Each listed frequency costs ~1.4 deflated bytes, each map
                # entry its share of log2(groups) bits.
                estimate = (_entropy_bits(hist) / 8
                            + 1.4 * np.count_nonzero(hist) + map_bytes)
                ranked.append((estimate, len(ranked), classes, shift, groups))
        del group  # one grouping's map at a time; remade for the best below
    ranked.sort(key=lambda r: r[:2])
    best = None
    for _, _, classes, shift, groups in ranked[:3]:
        tables = groups.of_stream(n, np.int16) * np.int16(classes)
        tables += class_cache[classes, shift]
        hist = _histogram(s, tables, groups.count * classes, alphabet)
        del tables
        r = _best_prec(n, hist, width, base.lag1, base.lag2, shift, classes, block, deflate,
                       groups)
        if r is not None and (best is None or r[0] < best[0]):
            best = r
    if best is None:
        return None
    return best[1], best[0]


# --------------------------------------------------------------------------
# Encoding and decoding


def _native_encoder():
    """`tfdc._native.rans_encode` (the same bytes, far faster), or None
    where the extension is not built, or is built from older sources."""
    from tfdc.unpack import _native  # here: unpack imports this module
    return getattr(_native(), "rans_encode", None)


def encode(symbols, model, block):
    """`(segment_bytes, data)`: the stream's segments (§5.3), each coded
    backwards (by `tfdc._native` where built, else all segments in
    lockstep in NumPy)."""
    s = _symbols(symbols)
    n = len(s)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    nseg = -(-n // block)
    seg_len = min(block, n)                     # symbols of every segment but the last
    cls = tables_of(s, model, block)
    # Frequencies and cumulative frequencies are < 2^15 (int32); padded
    # with a frequency 1 to whole segments.
    f_all = np.ones(nseg * seg_len, np.int32)
    c_all = np.zeros(nseg * seg_len, np.int32)
    f_all[:n] = model.freqs[cls, s]
    c_all[:n] = model.cum[cls, s]
    del cls
    if (f_all[:n] == 0).any():
        raise ValueError("a symbol has frequency 0 in its class")
    native = _native_encoder()
    if native is not None:
        lens, data = native(f_all[:n], c_all[:n], block, model.prec)
        return np.frombuffer(lens, np.int64).copy(), np.frombuffer(data, np.uint8)
    f_all, c_all = f_all.reshape(nseg, seg_len), c_all.reshape(nseg, seg_len)
    last = n - (nseg - 1) * seg_len             # symbols of the last segment
    x = np.full(nseg, _L, dtype=np.int64)
    # A symbol pushes at most two bytes (x < 2^31 falls below f·2^(31−prec) ≥ 2^16).
    pushed = np.zeros((nseg, 2 * seg_len + 8), dtype=np.uint8)
    ptr = np.zeros(nseg, dtype=np.int64)
    prec = model.prec
    for k in range(seg_len - 1, -1, -1):
        act = nseg if k < last else nseg - 1
        if act == 0:
            continue
        xs = x[:act]
        f, cum = f_all[:act, k].astype(np.int64), c_all[:act, k].astype(np.int64)
        x_max = f << (31 - prec)
        while True:
            m = xs >= x_max
            if not m.any():
                break
            idx = np.flatnonzero(m)
            pushed[idx, ptr[idx]] = xs[idx] & 255
            ptr[idx] += 1
            xs[idx] >>= 8
        x[:act] = ((xs // f) << prec) + (xs % f) + cum
    segs, lens = [], np.zeros(nseg, np.int64)
    for j in range(nseg):
        seg = int(x[j]).to_bytes(_STATE_BYTES, "little") + pushed[j, :ptr[j]][::-1].tobytes()
        segs.append(seg)
        lens[j] = len(seg)
    return lens, np.frombuffer(b"".join(segs), dtype=np.uint8)


def decode(data, segment_bytes, count, block, model, what="stream"):
    """The `count` symbols (np.uint16) of a kind 3 or 4 stream whose segments,
    `segment_bytes[j]` bytes each, are `data` (bytes-like). Every rule of
    §5.3 is checked; a broken one raises `FormatError`."""
    buf = np.frombuffer(data, dtype=np.uint8)
    seg = np.asarray(segment_bytes, dtype=np.int64)
    nseg = len(seg)
    if count == 0:
        return np.zeros(0, np.uint16)
    # Arrays sized by the symbols there are, never by a file's `block` alone.
    seg_len = min(block, count)
    out = np.zeros((nseg, seg_len), dtype=np.int64)
    if (seg < _STATE_BYTES).any():
        raise FormatError(f"{what}: a range-coded segment is shorter than {_STATE_BYTES} bytes",
                          "truncated")
    start = np.concatenate([[0], np.cumsum(seg)[:-1]])
    end = start + seg
    if int(end[-1]) > len(buf):
        raise FormatError(f"{what}: segments run past the payload", "truncated")
    x = np.zeros(nseg, np.int64)
    for b in range(_STATE_BYTES):
        x |= buf[start + b].astype(np.int64) << (8 * b)
    if ((x < _L) | (x >= (1 << 31))).any():
        raise FormatError(f"{what}: a range-coded segment's initial state is out of range",
                          "corrupt")
    pos = start + _STATE_BYTES
    prec, M = model.prec, (1 << model.prec) - 1
    freqs, cum = model.freqs, model.cum
    # A slot -> symbol lookup costs tables x 2^prec entries: built only for
    # streams long enough to pay for it (as the C decoder does); shorter
    # ones search the cumulative frequencies, all tables in one sorted
    # array (table t's offset by t * 2^prec).
    lut = model.lookup() if count >= (model.tables << model.prec) // 16 else None
    if lut is None:
        flat_cum = (cum + (np.arange(model.tables)[:, None] << prec)).reshape(-1)
        alphabet = freqs.shape[1]
    groups = model.groups
    seg_start = np.arange(nseg, dtype=np.int64) * block
    lev_table = levels(np.arange(1 << model.width), model.width)
    lev = np.zeros((nseg, seg_len), dtype=np.int64)
    half = model.classes // 2
    last = count - (nseg - 1) * seg_len
    for k in range(seg_len):
        act = nseg if k < last else nseg - 1
        if act == 0:
            break
        a = lev[:act, k - model.lag1] if k >= model.lag1 else 0
        b = lev[:act, k - model.lag2] if k >= model.lag2 else 0
        c = np.clip(((a + b) >> model.shift) + half, 0, model.classes - 1)
        if np.isscalar(c) or np.ndim(c) == 0:
            c = np.full(act, int(c), np.int64)
        if groups is not None:
            c = groups.of(seg_start[:act] + k) * model.classes + c
        xs = x[:act]
        slot = xs & M
        if lut is not None:
            s = lut[c, slot].astype(np.int64)
        else:
            s = (np.searchsorted(flat_cum, (c << prec) + slot, "right") - 1) % alphabet
        xs = freqs[c, s] * (xs >> prec) + slot - cum[c, s]
        while True:
            m = xs < _L
            if not m.any():
                break
            idx = np.flatnonzero(m)
            if (pos[idx] >= end[idx]).any():
                raise FormatError(f"{what}: a range-coded segment ends before its last symbol",
                                  "truncated")
            xs[idx] = (xs[idx] << 8) | buf[pos[idx]]
            pos[idx] += 1
        x[:act] = xs
        out[:act, k] = s
        lev[:act, k] = lev_table[s]
    if (x != _L).any() or (pos != end).any():
        raise FormatError(f"{what}: a range-coded segment does not end in the final state "
                          "with all its bytes read", "corrupt")
    return out.reshape(-1)[:count].astype(np.uint16)
