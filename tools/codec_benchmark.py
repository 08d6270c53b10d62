"""Benchmark the NumPy Huffman codec: encode / decode symbols per second on
1 M and 20 M symbol streams, and coded bits ÷ order-0 entropy.

The streams imitate Deep Compression's: 4-bit cluster indices (16 symbols,
skewed) and sparse-layer relative indices (geometric gaps with mean 10 coded
with a 16-symbol alphabet and fillers). Each measurement is repeated and the
median is reported (the machine may be shared).

    python tools/codec_benchmark.py            # writes docs/BENCHMARKS.md
    python tools/codec_benchmark.py --quick    # 1 M only, no write
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfdc import huffman  # noqa: E402
from tfdc.pack import _gap_symbols  # noqa: E402
from tool_args import description, positive_int, run  # noqa: E402


def cluster_indices(n, rng):
    p = rng.dirichlet(np.full(16, 2.0))
    return rng.choice(16, n, p=p).astype(np.uint16)


def gap_symbols(n, rng):
    gaps = rng.geometric(0.1, size=n).astype(np.int64)
    return _gap_symbols(gaps - 1, 16)[:n]


def measure(symbols, block, repeats):
    counts = np.bincount(symbols)
    lengths = huffman.code_lengths(counts)
    enc, dec, enc_cpu, dec_cpu = [], [], [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        seg, data = huffman.encode(symbols, lengths, block)
        c1, t1 = time.process_time(), time.perf_counter()
        out = huffman.decode(data, seg, len(symbols), block, lengths)
        c2, t2 = time.process_time(), time.perf_counter()
        assert np.array_equal(out, symbols)
        enc.append(t1 - t0)
        dec.append(t2 - t1)
        enc_cpu.append(c1 - c0)
        dec_cpu.append(c2 - c1)
        del out
    bits = huffman.coded_bits(counts, lengths)
    stored_bits = 8 * (len(data) + 4 * len(seg))
    rate = lambda times: len(symbols) / statistics.median(times) / 1e6  # noqa: E731
    return dict(enc=rate(enc), dec=rate(dec), enc_cpu=rate(enc_cpu), dec_cpu=rate(dec_cpu),
                ratio=bits / huffman.entropy_bits(counts),
                stored_ratio=stored_bits / huffman.entropy_bits(counts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--quick", action="store_true", help="1 M symbols only, no write")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--block", type=positive_int, default=4096)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    sizes = [1_000_000] if args.quick else [1_000_000, 20_000_000]
    rows = []
    for n in sizes:
        for name, make in (("4-bit cluster indices", cluster_indices),
                           ("relative indices, G=16", gap_symbols)):
            symbols = make(n, rng)
            r = measure(symbols, args.block, args.repeats)
            rows.append([name, f"{n / 1e6:g} M", f"{r['enc']:.1f} ({r['enc_cpu']:.1f})",
                         f"{r['dec']:.1f} ({r['dec_cpu']:.1f})",
                         f"{r['ratio']:.4f}", f"{r['stored_ratio']:.4f}"])
            print(" | ".join(rows[-1]), flush=True)
    from tools.benchmarks_md import markdown_table, write_section
    load = os.getloadavg()[0]
    headers = ["stream", "symbols", "encode M sym/s wall (CPU)", "decode M sym/s wall (CPU)",
               "coded bits / entropy", "stored bits / entropy"]
    table = markdown_table(headers, rows)
    print(table)
    if not args.quick:
        body = (f"NumPy codec (`tfdc.huffman`), block = {args.block} symbols per segment, median "
                f"of {args.repeats} runs; single-threaded NumPy. Wall-clock rates, and in "
                "parentheses rates per second of this process's CPU time (the machine was "
                f"shared: 1-minute load average {load:.1f} at the end of the run). *Stored* "
                "bits include the segment length table and the per-segment padding.\n\n"
                + table)
        write_section("codec", "Huffman codec (pure NumPy)", body)


if __name__ == "__main__":
    run(main)
