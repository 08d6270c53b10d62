"""Tests for tfdc.huffman: optimality, the length limit, canonical codes,
encode/decode round trips and the decoder's validation of segments."""

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdc import FormatError, huffman


def heapq_huffman_cost(counts):
    """Total coded bits of an unconstrained Huffman code (reference)."""
    heap = [int(c) for c in counts if c > 0]
    if len(heap) < 2:
        return sum(heap)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=60))
def test_lengths_are_optimal_when_the_limit_does_not_bind(counts):
    counts = np.array(counts)
    if np.count_nonzero(counts) < 2:
        return
    lengths = huffman.code_lengths(counts)
    assert ((lengths > 0) == (counts > 0)).all()
    assert huffman.kraft_ok(lengths)
    # The Kraft sum is exactly 2^15: the code is complete.
    nz = lengths[lengths > 0].astype(np.int64)
    assert np.sum(1 << (15 - nz)) == 1 << 15
    assert huffman.coded_bits(counts, lengths) == heapq_huffman_cost(counts)


def test_length_limit_binds_on_fibonacci_counts():
    # Fibonacci weights make the unconstrained Huffman code 24 levels deep.
    fib = [1, 1]
    while len(fib) < 25:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib)
    lengths = huffman.code_lengths(counts)
    assert lengths.max() == 15
    assert huffman.kraft_ok(lengths)
    cost = huffman.coded_bits(counts, lengths)
    assert cost >= heapq_huffman_cost(counts)
    # Package-merge is optimal among 15-bit codes: no single length move that
    # keeps Kraft valid can reduce the cost.
    for i in range(len(counts)):
        for delta in (-1, 1):
            trial = lengths.astype(np.int64).copy()
            trial[i] += delta
            if 1 <= trial[i] <= 15 and huffman.kraft_ok(trial):
                assert huffman.coded_bits(counts, trial) >= cost


def test_ties_give_shorter_codes_to_smaller_symbols():
    assert huffman.code_lengths([1, 1, 1]).tolist() == [1, 2, 2]
    assert huffman.code_lengths([5, 0, 5]).tolist() == [1, 0, 1]


def test_single_and_no_symbols():
    assert huffman.code_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    assert huffman.code_lengths([0, 0]).tolist() == [0, 0]


def test_canonical_codes_match_rfc1951_example():
    # RFC 1951 §3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) for symbols A … H.
    codes = huffman.canonical_codes([3, 3, 3, 3, 3, 2, 4, 4])
    assert codes.tolist() == [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]


def test_encode_worked_example_bytes():
    # FORMAT.md §5: gap symbols 1, 2, 0 with lengths (1, 2, 2) → 0xB0.
    seg, data = huffman.encode(np.array([1, 2, 0]), np.array([1, 2, 2], np.uint8), 4096)
    assert seg.tolist() == [1] and data.tolist() == [0xB0]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(2, 300), st.integers(1, 600), st.integers(0, 2**32 - 1))
def test_round_trip(count, alphabet, block, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(alphabet, 0.5))
    symbols = rng.choice(alphabet, count, p=p)
    counts = np.bincount(symbols, minlength=alphabet)
    if np.count_nonzero(counts) < 2:
        symbols[0] = (symbols[0] + 1) % alphabet
        counts = np.bincount(symbols, minlength=alphabet)
    lengths = huffman.code_lengths(counts)
    seg, data = huffman.encode(symbols, lengths, block, chunk_segments=3)
    assert len(seg) == -(-count // block)
    assert int(seg.sum()) == len(data)
    assert huffman.coded_bits(counts, lengths) <= 8 * len(data)
    out = huffman.decode(data, seg, count, block, lengths)
    assert (out == symbols).all()


def _small_stream():
    symbols = np.array([0, 1, 2, 3, 0, 0, 1, 2, 0, 3, 3, 1, 0], dtype=np.uint32)
    lengths = huffman.code_lengths(np.bincount(symbols))
    seg, data = huffman.encode(symbols, lengths, 5)
    return symbols, lengths, seg, data


def test_decoder_rejects_wrong_segment_lengths():
    symbols, lengths, seg, data = _small_stream()
    bad = seg.copy()
    bad[0] += 1
    bad[1] -= 1
    with pytest.raises(FormatError):
        huffman.decode(data, bad, len(symbols), 5, lengths)
    with pytest.raises(FormatError):
        huffman.decode(data[:-1], seg, len(symbols), 5, lengths)
    with pytest.raises(FormatError):
        huffman.decode(data, seg, len(symbols) + 5, 5, lengths)


def test_decoder_rejects_nonzero_padding_and_invalid_codes():
    symbols = np.array([0, 1, 0], np.uint32)
    lengths = np.array([1, 1], np.uint8)
    seg, data = huffman.encode(symbols, lengths, 8)
    assert data.tolist() == [0b01000000]
    with pytest.raises(FormatError, match="padding"):
        huffman.decode(np.array([0b01000001], np.uint8), seg, 3, 8, lengths)
    # An incomplete code (single symbol of length 1): bit 1 is not a code.
    single = np.array([1], np.uint8)
    with pytest.raises(FormatError, match="invalid"):
        huffman.decode(np.array([0b00100000], np.uint8), [1], 3, 8, single)
    assert huffman.decode(np.array([0], np.uint8), [1], 3, 8, single).tolist() == [0, 0, 0]


def test_entropy_and_coded_bits():
    counts = np.array([8, 4, 2, 2])
    lengths = huffman.code_lengths(counts)
    assert huffman.coded_bits(counts, lengths) == 28
    assert huffman.entropy_bits(counts) == pytest.approx(28.0)


def test_cached_code_lengths_are_the_computed_ones_and_the_callers_own():
    # The planner prices many candidate codings with the same histograms:
    # package-merge's result is cached for small alphabets, never shared.
    from tfdc.huffman import _CACHED_SYMBOLS, _package_merge, code_lengths
    rng = np.random.default_rng(5)
    for n in (2, 17, _CACHED_SYMBOLS, _CACHED_SYMBOLS + 1):
        counts = rng.integers(1, 1000, n)
        first = code_lengths(counts)
        order = np.lexsort((np.arange(n), -counts))
        assert np.array_equal(first[order], _package_merge(counts[order][::-1], 15)[::-1])
        first[:] = 0  # the caller's to change
        assert np.array_equal(code_lengths(counts)[order],
                              _package_merge(counts[order][::-1], 15)[::-1])
