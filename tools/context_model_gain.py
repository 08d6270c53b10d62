"""Would context modelling pay? Order-0 Huffman vs table switching by context.

A table-driven decoder can still use context: code each symbol with one of a
few Huffman tables, chosen by what was decoded just before. This measures the
best of several such contexts on real trained kernels, side by side with the
order-0 code format 2 uses, counting each extra table's bytes:

* gap symbols, by the previous gap symbol (2, 3 or 4 classes) or by the mean
  of the last 2 / 4 / 8 / 16 gap symbols (2-4 quantile classes);
* value symbols, by the previous value's frequency rank or magnitude rank
  (2-4 classes), or by whether the gap before it was 0.

The kernels: the LeNet-300-100 of `tfdc demo --quick` (its fc1 and fc2,
trained with tfdc's callbacks) and the conv / dense kernels of MediaPipe's
pose- and hand-landmark models (`tools/real_weights_bound.py`), pruned to 80 /
90 / 95 % and snapped to 2**bits values. Each kernel is coded with the
sparse/dense mode, scan and gap alphabet the packer picks. Format 2 adopts a
context model only if it saves ≥ 3 % (issue 13).

    python tools/context_model_gain.py [--demo PACKED] [--cache DIR]
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from tfdc import huffman  # noqa: E402
from tool_args import description, run  # noqa: E402


def huff_bytes(symbols):
    """Bytes of an order-0 Huffman code of `symbols` plus its table (a kind 0
    table: ~1.5 bytes per coded symbol, a kind 1 table 2 bytes)."""
    if len(symbols) == 0:
        return 0.0
    counts = np.bincount(symbols)
    used = np.count_nonzero(counts)
    if used == 1:
        return 2.0
    lengths = huffman.code_lengths(counts)
    return huffman.coded_bits(counts, lengths) / 8 + 2 + 1.5 * used


def switched_bytes(symbols, ctx, n):
    return sum(huff_bytes(symbols[ctx == k]) for k in range(n))


def _quantile_classes(values, n):
    edges = np.quantile(values, np.linspace(0, 1, n + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def streams(w):
    """(gap symbols or None, value symbols, gap before each value) of kernel
    `w` as the packer codes it."""
    from tfdc.pack import _gap_symbols, _stream_order_positions, pack_tflite
    from tfdc.tflite_schema import constant_model
    _, info = pack_tflite(constant_model([w]), min_bytes=0,
                          _force={"value_mode": "codebook"})
    r = info.records[0]
    flat = w.reshape(-1).view(np.uint32)
    if r.position_mode == "dense":
        return None, np.unique(flat, return_inverse=True)[1], None
    t, elem = _stream_order_positions(flat != 0, r.scan_rows)
    d = np.diff(t, prepend=-1) - 1
    g = _gap_symbols(d, r.gap_alphabet).astype(np.int64)
    values = np.unique(flat[elem], return_inverse=True)[1]
    return g, values, np.minimum(d, 1)


def best_context(g, v, gap_before, magnitudes):
    """(order-0 bytes, best switched bytes) of one kernel."""
    base = huff_bytes(v) + (huff_bytes(g) if g is not None else 0)
    best_g = huff_bytes(g) if g is not None else 0.0
    if g is not None and len(g) > 1:
        prev = np.concatenate([[0], g[:-1]])
        for n in (2, 3, 4):
            best_g = min(best_g, switched_bytes(g, np.minimum(prev, n - 1), n))
        for m in (2, 4, 8, 16):
            c = np.cumsum(np.concatenate([np.zeros(m), g]))
            mean = np.concatenate([[0], (c[m:-1] - c[:-m - 1]) / m])[:len(g)]
            for n in (2, 3, 4):
                best_g = min(best_g, switched_bytes(g, _quantile_classes(mean, n), n))
    best_v = huff_bytes(v)
    if len(v) > 1:
        freq_rank = np.argsort(np.argsort(-np.bincount(v)))
        mag_rank = np.argsort(np.argsort(magnitudes))
        for rank in (freq_rank, mag_rank):
            prev = np.concatenate([[0], rank[v[:-1]]])
            for n in (2, 3, 4):
                best_v = min(best_v, switched_bytes(v, _quantile_classes(prev, n), n))
        if gap_before is not None:
            best_v = min(best_v, switched_bytes(v, gap_before, 2))
    return base, best_g + best_v


def measure(kernels):
    base = best = 0.0
    for w in kernels:
        g, v, gb = streams(w)
        values = np.unique(w.reshape(-1).view(np.uint32))
        if gb is not None:
            values = values[values != 0]
        a, b = best_context(g, v, gb, np.abs(values.view(np.float32)))
        base, best = base + a, best + b
    return base, best


def demo_kernels(path):
    """(name, kernel) of the 2-D kernels over 4 KB in a (packed or decoded)
    model file."""
    from tfdc import unpack
    from tfdc.flatbuf import read_model
    data = open(path, "rb").read()
    decoded = unpack.decode(data) if unpack.is_packed(data) else data
    users = unpack._tensor_users(decoded)
    out = []
    for i, b in enumerate(read_model(decoded).buffers):
        infos = users.get(i, [])
        if b.offset > 1 and infos and len(infos[0][2]) == 2 and b.size > 4096:
            out.append((infos[0][0], np.frombuffer(decoded, np.float32, b.size // 4, b.offset)
                        .reshape(infos[0][2])))
    return out


def main():
    ap = argparse.ArgumentParser(description=description(__doc__))
    ap.add_argument("--demo", default=os.path.join(tempfile.gettempdir(), "tfdc_format_bench",
                                                    "demo", "lenet_300_100.decoded.tflite"),
                    help="the decoded (or packed) file of `tfdc demo --quick` (run if missing)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tfdc_real_weights"))
    from benchmarks_md import add_no_write, markdown_table, publish
    add_no_write(ap)
    args = ap.parse_args()
    from native_benchmark import prune_and_snap
    from real_weights_bound import fetch_models, kernels
    if not os.path.exists(args.demo):
        from tfdc.demo import DemoConfig, run as run_demo
        with contextlib.redirect_stdout(io.StringIO()):
            run_demo(DemoConfig(quick=True, out=os.path.dirname(args.demo), plots=False, verbose=0),
                log=lambda *a: None)
    rows = []
    for name, w in demo_kernels(args.demo):
        base, best = measure([w])
        rows.append([f"LeNet-300-100 demo {name.split('/')[1].split('_')[0]}", f"{w.size:,}",
                     f"{base:,.0f}", f"{best:,.0f}", f"{100 * (1 - best / base):.2f} %"])
        print(rows[-1], flush=True)
    real = {m: kernels(p) for m, p in fetch_models(args.cache).items()}
    for s in (0.8, 0.9, 0.95):
        pruned = [prune_and_snap(k, s, 5 if k.ndim == 2 else 8) for ks in real.values()
                  for k in ks]
        base, best = measure(pruned)
        rows.append([f"MediaPipe pose + hand kernels, {s:.0%} pruned",
                     f"{sum(k.size for k in pruned):,}", f"{base:,.0f}", f"{best:,.0f}",
                     f"{100 * (1 - best / base):.2f} %"])
        print(rows[-1], flush=True)
    gains = [float(r[-1].split()[0]) for r in rows]
    paragraphs = __doc__.split("\n\n")
    body = (paragraphs[1].replace("\n", " ") + "\n\n" + paragraphs[2] + "\n\n"
            + paragraphs[3].replace("\n", " ") + "\n\n" + markdown_table(
                ["kernels", "weights", "order-0 Huffman B", "best context model B", "gain"],
                rows) + f"\n\nThe best context saves {min(gains):.2f}–{max(gains):.2f} %, "
            + ("below the 3 % bar: format 2 keeps order-0 Huffman codes. " if max(gains) < 3 else
               "above the 3 % bar on some kernels: worth a context-coded table for pruned and "
               "clustered kernels too. ")
            + "(For comparison, from "
            "the project notes: NNCodec's context-adaptive arithmetic coder lands 0.6 % below "
            "the order-0 bound on the LeNet-300-100 kernels, 20,289 vs 20,411 B — about what "
            "these contexts give; the rest of its −4.3 % against tfdc is arithmetic coding's "
            "freedom from whole-bit code lengths, which a table-driven decoder does not "
            "have.) Format 2.1 later added a context-modelled range code (table kind 3, "
            "FORMAT.md §5.3) for the other case: dense kernels that were never pruned or "
            "clustered (int8 / int4 from quantizers), where the class chosen by two "
            "neighbouring weights (left and an image row above) saves 2–7 % against order-0 "
            "codes (section *tfdc pack on other tools' .tflite files*); the packer does not "
            "try it on pruned and clustered kernels.\n")
    publish(args, "context_modelling", "Context modelling: order-0 Huffman vs table switching",
                  body)


if __name__ == "__main__":
    run(main)
