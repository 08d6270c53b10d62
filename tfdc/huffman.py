"""Length-limited canonical Huffman codes, vectorised with NumPy.

The packed format (docs/FORMAT.md §5.1-5.2; format 1: appendix A.3) codes every stream with a
canonical prefix code of at most 15 bits, written most significant bit first,
in independent segments of `block` symbols. This module provides:

* `code_lengths(counts)` -- optimal code lengths under the 15-bit limit, by
  package-merge (Larmore & Hirschberg). When the unconstrained Huffman code
  fits in 15 bits (the usual case) this *is* a Huffman code: package-merge
  minimises the coded size over all length-limited prefix codes.
* `canonical_codes(lengths)` -- the DEFLATE code assignment (RFC 1951).
* `encode(symbols, lengths, block)` -- symbols to `(segment_bytes, data)`,
  processed in chunks of whole segments so that memory stays bounded.
* `decode(data, segment_bytes, count, block, lengths)` -- the inverse. All
  segments are decoded in lockstep, one NumPy step per symbol index, so the
  Python overhead is paid once per *step*, not per symbol.

Example:

    import numpy as np
    from tfdc import huffman
    symbols = np.array([0, 1, 1, 2, 1, 0, 1], dtype=np.uint32)
    lengths = huffman.code_lengths(np.bincount(symbols))
    seg_bytes, data = huffman.encode(symbols, lengths, block=4)
    assert (huffman.decode(data, seg_bytes, len(symbols), 4, lengths) == symbols).all()
"""

import functools

import numpy as np

from tfdc.errors import FormatError

MAX_BITS = 15
MAX_SYMBOLS = 32768
_LOOKUP_SIZE = 1 << MAX_BITS


def code_lengths(counts, max_bits=MAX_BITS):
    """Optimal prefix-code lengths (≤ `max_bits`) for symbol `counts`.

    Args:
        counts: 1-D array of non-negative symbol frequencies.
        max_bits: the length limit (1..15 for the format).

    Returns:
        `np.uint8` array, same length as `counts`: 0 for symbols that do not
        occur; when exactly one symbol occurs it gets length 1 (the caller
        normally uses a kind-1 table instead). Among symbols of equal count the
        smaller symbol gets the shorter (or equal) code, so the result is
        deterministic.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative integers")
    lengths = np.zeros(len(counts), dtype=np.uint8)
    used = np.flatnonzero(counts)
    n = len(used)
    if n == 0:
        return lengths
    if n == 1:
        lengths[used] = 1
        return lengths
    if n > (1 << max_bits):
        raise ValueError(f"{n} symbols cannot be coded in {max_bits} bits")
    # Symbols by (count descending, symbol ascending): shortest codes first.
    order = used[np.lexsort((used, -counts[used]))]
    weights = counts[order][::-1]  # ascending weight, as package-merge wants
    if n <= _CACHED_SYMBOLS:
        depth = _cached_package_merge(weights.tobytes(), max_bits)
    else:
        depth = _package_merge(weights, max_bits)
    lengths[order] = depth[::-1]
    return lengths


# The packer prices many candidate codings of each tensor, and the planner
# every tensor at every setting of its grids: 9 in 10 of their histograms
# were seen before (the same gap or value counts under another option), and
# package-merge was a third of tfdc.plan's time. Alphabets of at most 512
# used symbols, 4,096 of them: 20 MB at the very most.
_CACHED_SYMBOLS = 512


@functools.lru_cache(maxsize=4096)
def _cached_package_merge(weights, max_bits):
    depth = _package_merge(np.frombuffer(weights, np.int64), max_bits)
    depth.flags.writeable = False  # shared by every caller of the cache
    return depth


def _package_merge(weights, max_bits):
    """Code lengths for ascending `weights` (n ≥ 2) limited to `max_bits`.

    Coin-collector formulation: level lists hold leaves and packages (pairs of
    the level below); the first 2n-2 items of the top list are selected, and
    every level's selected leaves are a prefix of the sorted leaves, so a
    leaf's code length is the number of levels whose selected-leaf count
    exceeds its rank.
    """
    n = len(weights)
    weights = weights.astype(np.float64)  # exact: counts < 2^53
    is_leaf_levels = []
    current = weights
    current_leaf = np.ones(n, dtype=bool)
    for _ in range(max_bits - 1):
        is_leaf_levels.append(current_leaf)
        pairs = len(current) // 2
        packages = current[:2 * pairs:2] + current[1:2 * pairs:2]
        merged = np.concatenate([weights, packages])
        # Stable sort, leaves before packages of equal weight.
        order = np.argsort(merged, kind="stable")
        current = merged[order]
        current_leaf = order < n
    is_leaf_levels.append(current_leaf)
    # is_leaf_levels[0] is the deepest level (max_bits), the last the top one.
    depth = np.zeros(n, dtype=np.int64)
    take = 2 * n - 2
    for leaf in reversed(is_leaf_levels):
        take = min(take, len(leaf))
        leaves_taken = int(np.count_nonzero(leaf[:take]))
        depth[:leaves_taken] += 1
        take = 2 * (take - leaves_taken)
        if take == 0:
            break
    # Ascending weights → descending depth; package-merge guarantees it.
    return depth.astype(np.uint8)


def kraft_ok(lengths):
    """True if nonzero `lengths` (≤ 15) satisfy the Kraft inequality."""
    lengths = np.asarray(lengths, dtype=np.int64)
    nz = lengths[lengths > 0]
    return bool(nz.size) and int(nz.max()) <= MAX_BITS and int(
        np.sum(1 << (MAX_BITS - nz))) <= _LOOKUP_SIZE


def canonical_codes(lengths):
    """DEFLATE canonical codes (`np.uint32`) for code `lengths` (0 = unused)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.uint32)
    used = np.flatnonzero(lengths)
    if used.size == 0:
        return codes
    order = used[np.lexsort((used, lengths[used]))]
    ls = lengths[order]
    # In (length, symbol) order the codes, left-aligned to 15 bits, tile
    # [0, Kraft sum) contiguously: each starts where the previous one ends.
    span = np.int64(1) << (MAX_BITS - ls)
    start = np.concatenate([[0], np.cumsum(span)[:-1]])
    codes[order] = (start >> (MAX_BITS - ls)).astype(np.uint32)
    return codes


def coded_bits(counts, lengths):
    """Payload bits of a stream with symbol `counts` coded with `lengths`."""
    counts = np.asarray(counts, dtype=np.int64)
    return int(np.dot(counts, np.asarray(lengths[:len(counts)], dtype=np.int64)))


def entropy_bits(counts):
    """Order-0 empirical entropy × count, in bits (the ideal coded size)."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    total = c.sum()
    if total == 0:
        return 0.0
    return float(-(c * np.log2(c / total)).sum())


def encode(symbols, lengths, block, chunk_segments=None):
    """Code `symbols` into independent segments of `block` symbols.

    Args:
        symbols: 1-D integer array; every symbol must have a nonzero length.
        lengths: code lengths (from `code_lengths`).
        block: symbols per segment (≥ 1).
        chunk_segments: segments per vectorised chunk (memory bound); default
            ≈ 64 K symbols per chunk.

    Returns:
        `(segment_bytes, data)`: `np.uint32` byte length of each segment and
        the `np.uint8` concatenated segment data.
    """
    symbols = np.asarray(symbols)
    count = len(symbols)
    if count == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint8)
    if block < 1:
        raise ValueError("block must be >= 1")
    lengths = np.asarray(lengths, dtype=np.uint8)
    codes = canonical_codes(lengths)
    nseg = -(-count // block)
    if chunk_segments is None:
        # ~150 B of int64/float64 temporaries per symbol: 64 K symbols keep
        # them in cache (1 M peaked at 98 MB and ran 2x slower).
        chunk_segments = max(1, (1 << 16) // block)
    seg_bytes_parts, data_parts = [], []
    for first in range(0, nseg, chunk_segments):
        last = min(nseg, first + chunk_segments)
        sym = symbols[first * block:min(count, last * block)]
        lens = lengths[sym]
        if (lens == 0).any():
            bad = int(sym[np.argmax(lens == 0)])
            raise ValueError(f"symbol {bad} has no code")
        sb, data = _encode_chunk(sym, lens.astype(np.int64), codes[sym], block)
        seg_bytes_parts.append(sb)
        data_parts.append(data)
    return np.concatenate(seg_bytes_parts), np.concatenate(data_parts)


def _encode_chunk(sym, lens, codes, block):
    n = len(sym)
    starts = np.arange(0, n, block)
    seg_bits = np.add.reduceat(lens, starts)
    seg_bytes = (seg_bits + 7) >> 3
    seg_byte_start = np.concatenate([[0], np.cumsum(seg_bytes)[:-1]])
    # Bit position of every code: segment start + exclusive prefix sum.
    csum = np.cumsum(lens)
    excl = csum - lens
    seg_index = np.arange(n) // block
    bitpos = excl - (csum[starts] - lens[starts])[seg_index] + (seg_byte_start * 8)[seg_index]
    shift = 24 - (bitpos & 7) - lens  # ≥ 2: a code spans at most 3 bytes
    window = codes.astype(np.int64) << shift
    byte = bitpos >> 3
    total = int(seg_bytes.sum())
    # Codes never share bits, so OR == ADD: sum the three byte lanes.
    out = np.bincount(byte, weights=(window >> 16) & 255, minlength=total + 2)
    out[1:] += np.bincount(byte, weights=(window >> 8) & 255, minlength=total + 1)
    out[2:] += np.bincount(byte, weights=window & 255, minlength=total)
    return seg_bytes.astype(np.uint32), out[:total].astype(np.uint8)


def lookup_table(lengths):
    """2^15-entry decoding table: `symbol << 4 | length`; invalid = 0xFFFF0."""
    lengths = np.asarray(lengths, dtype=np.int64)
    used = np.flatnonzero(lengths)
    order = used[np.lexsort((used, lengths[used]))]
    ls = lengths[order]
    entries = (order.astype(np.uint32) << 4) | ls.astype(np.uint32)
    table = np.repeat(entries, np.int64(1) << (MAX_BITS - ls))
    out = np.full(_LOOKUP_SIZE, 0xFFFF << 4, dtype=np.uint32)
    out[:len(table)] = table[:_LOOKUP_SIZE]
    return out


def decode(data, segment_bytes, count, block, lengths, table=None):
    """Decode `count` symbols from segments (FORMAT.md §5.2).

    Args:
        data: `np.uint8` concatenated segment data (exactly the stream's data).
        segment_bytes: per-segment byte lengths (`ceil(count / block)`).
        count: number of symbols; block: symbols per segment.
        lengths: code lengths of the stream's table (Kraft-valid).
        table: optional precomputed `lookup_table(lengths)`.

    Returns:
        `np.uint16` array of `count` symbols. Raises `FormatError` on an
        invalid code, a segment that ends early or late, or nonzero padding.
    """
    data = np.asarray(data, dtype=np.uint8)
    seg_bytes = np.asarray(segment_bytes, dtype=np.int64)
    nseg = len(seg_bytes)
    if count == 0:
        return np.zeros(0, np.uint16)
    if block < 1 or nseg != -(-count // block):
        raise FormatError("segment count does not match count and block")
    if int(seg_bytes.sum()) != len(data):
        raise FormatError("segment lengths do not add up to the stream data")
    if table is None:
        table = lookup_table(lengths)
    seg_start = np.concatenate([[0], np.cumsum(seg_bytes)[:-1]])
    if (seg_bytes * 8 < np.minimum(block, count - np.arange(nseg) * np.int64(block))).any():
        # Every code is ≥ 1 bit; this also bounds the work by the input size.
        raise FormatError("a segment is too short for its symbols")
    if len(data) >= (1 << 40):
        raise FormatError("stream data too large")
    last_count = count - (nseg - 1) * block
    steps = min(block, count)
    out = np.empty((steps, nseg), dtype=np.uint16)
    start_bits = seg_start * 8
    end_bits = _lockstep(_windows64(data), table.astype(np.uint64), start_bits, out,
                         steps, last_count)
    # Invalid codes first (their lanes stalled), then the segment ends.
    if int(out[:last_count].max()) == 0xFFFF or (
            last_count < steps and int(out[last_count:, :-1].max()) == 0xFFFF):
        raise FormatError("invalid Huffman code in a stream segment")
    bits = end_bits - start_bits
    used = (bits + 7) >> 3
    if (used != seg_bytes).any():
        j = int(np.argmax(used != seg_bytes))
        raise FormatError(f"segment {j} ends after {int(used[j])} bytes, its length says "
                          f"{int(seg_bytes[j])}")
    tail_bits = bits & 7
    has_pad = tail_bits != 0
    if has_pad.any():
        last_byte = data[(seg_start + seg_bytes - 1)[has_pad]].astype(np.int64)
        mask = (1 << (8 - tail_bits[has_pad])) - 1
        if (last_byte & mask).any():
            raise FormatError("nonzero padding bits after a segment's last code")
    symbols = np.ascontiguousarray(out.T)
    del out
    if last_count < steps:
        return np.concatenate([symbols[:-1].reshape(-1), symbols[-1, :last_count]])
    return symbols.reshape(-1)


def _windows64(data):
    """`w[i]` = bytes i … i+7 of `data` as a big-endian u64 (zero past the end).

    Built with 8 strided copies of big-endian views, not 8 shift passes."""
    n = len(data)
    padded = np.zeros(n + 16, np.uint8)
    padded[:n] = data
    w = np.empty(n + 1, np.uint64)
    for k in range(8):
        m = (n + 1 - k + 7) // 8
        w[k::8] = np.frombuffer(padded, ">u8", m, k)
    return w


def _lockstep(w64, table, start_bits, out, steps, last_count):
    """Decode `steps` symbols of every segment in lockstep (one NumPy step per
    symbol index across all segments). A 64-bit window fetched at the byte of
    the current bit position holds ≥ 57 fresh bits: three codes of ≤ 15 bits,
    so one fetch serves three symbols. Returns each segment's end bit.

    `out[t, j]` gets symbol t of segment j (0xFFFF for an invalid code: its
    entry has length 0, so the lane stalls and keeps producing 0xFFFF); the
    last segment stops after `last_count` symbols.
    """
    nseg = len(start_bits)
    end_bits = np.empty(nseg, np.int64)
    pos = start_bits.astype(np.uint64)
    r = np.empty(nseg, np.uint64)
    w = np.empty(nseg, np.uint64)
    e = np.empty(nseg, np.uint64)
    ln = np.empty(nseg, np.uint64)
    lanes = nseg
    t = 0
    while t < steps:
        if t == last_count and lanes == nseg and nseg > 1:
            # The last segment is complete; continue with the others only.
            end_bits[-1] = pos[-1]
            lanes = nseg - 1
            pos, r, w, e, ln = pos[:lanes], r[:lanes], w[:lanes], e[:lanes], ln[:lanes]
        k = min(3, steps - t)
        if t < last_count:
            k = min(k, last_count - t)
        np.right_shift(pos, 3, out=r)
        np.take(w64, r, out=w, mode="clip")
        np.bitwise_and(pos, 7, out=r)
        np.left_shift(w, r, out=w)
        for i in range(k):
            np.right_shift(w, 49, out=r)
            np.take(table, r, out=e)
            np.right_shift(e, 4, out=out[t + i, :lanes], casting="unsafe")
            np.bitwise_and(e, 15, out=ln)
            if i + 1 < k:
                np.left_shift(w, ln, out=w)
            pos += ln
        t += k
    end_bits[:lanes] = pos
    return end_bits
