"""Native decoder throughput on one core vs zlib inflate, for large models.

For a MobileNetV2-sized and a ResNet-50-sized Keras model (random init), every
conv / dense kernel is given a realistic pruned + clustered distribution
(Laplacian per layer, magnitude-pruned, 5-bit dense / 8-bit conv codebooks),
converted with TFLiteConverter and packed with `tfdc.pack.pack_tflite` (format
2, the format it writes). The decode of the packed file by `tfdc._native` (the
C decoder: CRC, inflate of the meta stream, records) is timed against
`zlib.decompress` of the gzip -9 of the plain `.tflite`, interleaved
(A, B, A, B, ...) in one process, medians reported. The pack of the
ResNet-50-sized model is timed in a fresh subprocess with its peak memory.

    python tools/native_benchmark.py [--repeats 9] [--sparsity 0.8,0.9] [--cache DIR]

It also prints the bound that no coder of these weights can beat: for one
large synthetic kernel, gzip -9 of its float32 bytes against the entropy of
an i.i.d. source with the same sparsity and value histogram.
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from tool_args import description, fraction_list, positive_int, run  # noqa: E402


def prune_cluster(w, rng, sparsity, bits):
    """Laplacian weights of the kernel's shape, magnitude-pruned to
    `sparsity`, the survivors snapped to 2**bits linearly spaced centres."""
    fan_in = int(np.prod(w.shape[:-1])) or 1
    x = rng.laplace(0.0, np.sqrt(1.0 / fan_in), size=w.shape).astype(np.float32)
    return prune_and_snap(x, sparsity, bits)


def prune_and_snap(x, sparsity, bits):
    """A copy of float32 `x`, magnitude-pruned to `sparsity`, its survivors
    snapped to the nearest of 2**bits centres spread evenly over their range
    (Han et al.'s linear initialisation: the dense middle of the distribution
    shares few centres)."""
    x = x.copy()
    mag = np.abs(x)
    x[mag < np.quantile(mag, sparsity)] = 0.0
    nz = x != 0
    vals = x[nz]
    centers = np.linspace(vals.min(), vals.max(), 2 ** bits).astype(np.float32)
    mids = (centers[1:] + centers[:-1]) / 2
    x[nz] = centers[np.searchsorted(mids, vals)]
    return x


def make_tflite(name, sparsity, cache):
    path = os.path.join(cache, f"{name}_{sparsity}.tflite")
    if os.path.exists(path):
        return open(path, "rb").read()
    import keras
    import tensorflow as tf
    rng = np.random.default_rng(0)
    model = {"MobileNetV2": keras.applications.MobileNetV2,
             "ResNet50": keras.applications.ResNet50}[name](weights=None)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        ws = layer.get_weights()
        ws[0] = prune_cluster(ws[0], rng, sparsity, 5 if kind == "Dense" else 8)
        layer.set_weights(ws)
    params = model.count_params()
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with open(path, "wb") as f:
        f.write(tflite)
    with open(path + ".params", "w") as f:
        f.write(str(params))
    return tflite


PACK_PROBE = r"""
import json, os, sys, resource
sys.path[:0] = [sys.argv[2], os.path.join(sys.argv[2], "tools")]
import tfdc.pack  # imported before the baseline RSS, as measure's own import would be after
from pack_memory_benchmark import measure
data = open(sys.argv[1], "rb").read()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
packed, peak, dt = measure(data)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # ru_maxrss can carry the parent's peak over fork + exec; VmHWM cannot
    rss = int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1])
except (OSError, IndexError, ValueError):
    pass
open(sys.argv[3], "wb").write(packed)
print(json.dumps({"seconds": dt, "traced_peak": peak, "maxrss_kb": rss, "rss_before_kb": base}))
"""


def pack_in_subprocess(tflite_path, out_path):
    proc = subprocess.run([sys.executable, "-c", PACK_PROBE, tflite_path, ROOT, out_path],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=description(__doc__))
    ap.add_argument("--repeats", type=positive_int, default=9)
    ap.add_argument("--sparsity", default="0.8,0.9", type=fraction_list,
                    help="comma-separated fractions of each kernel pruned")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tfdc_native_bench_lin"))
    from benchmarks_md import add_no_write, markdown_table, publish
    add_no_write(ap)
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    from tfdc import _native
    from tfdc.unpack import decode as py_decode
    from tfdc.unpack import section_span

    import tfdc
    sparsities = args.sparsity
    rows, notes = [], []
    for name, sparsity in [(n, s) for s in sparsities for n in ("MobileNetV2", "ResNet50")]:
        tflite = make_tflite(name, sparsity, args.cache)
        params = int(open(os.path.join(args.cache, f"{name}_{sparsity}.tflite.params")).read())
        tpath = os.path.join(args.cache, f"{name}_{sparsity}.tflite")
        ppath = tpath + ".packed"
        pack = pack_in_subprocess(tpath, ppath)
        packed = open(ppath, "rb").read()
        version = section_span(packed)[0]
        gz = gzip.compress(tflite, compresslevel=9, mtime=0)
        decoded = _native.decode(packed)
        try:
            same = decoded == py_decode(packed, backend="python")
        except Exception as e:  # the NumPy decoder is not what is measured here
            same = None
            notes.append(f"{name}: NumPy cross-check not run ({type(e).__name__}: {e})")
        assert same is not False, "C and NumPy decoders differ"
        assert zlib.decompress(gz, wbits=31) == tflite
        t_dec, t_inf = [], []
        for _ in range(args.repeats):  # interleaved A, B, A, B, ...
            t = time.perf_counter(); _native.decode(packed); t_dec.append(time.perf_counter() - t)
            t = time.perf_counter(); zlib.decompress(gz, wbits=31); t_inf.append(time.perf_counter() - t)
        dec, inf = statistics.median(t_dec), statistics.median(t_inf)
        ratio = statistics.median(a / b for a, b in zip(t_dec, t_inf))
        f32_bytes = 4 * params
        report = tfdc.inspect(ppath)
        # The packed file with every coded stream at its entropy: what the
        # best coder of the same symbols would reach.
        bound = len(packed) - (report.coded_bits - report.entropy_bits) / 8
        rows.append([name, f"{sparsity:.0%}", version, f"{params / 1e6:.2f} M", f"{len(tflite) / 1e6:.2f}",
                     f"{len(gz) / 1e6:.2f}", f"{len(packed) / 1e6:.3f}",
                     f"**{len(gz) / len(packed):.2f}x**", f"{len(gz) / bound:.2f}x",
                     f"{(len(packed) - sum(l.record_bytes for l in report.layers)) / 1e3:.0f}",
                     f"{dec * 1e3:.1f}", f"{len(decoded) / dec / 1e6:.0f}",
                     f"{params / dec / 1e6:.0f} M", f"{inf * 1e3:.1f}", f"{ratio:.3f}",
                     f"{pack['seconds']:.1f}", f"{pack['traced_peak'] / 1e6:.0f}",
                     f"{pack['traced_peak'] / f32_bytes:.2f}x",
                     f"{pack['maxrss_kb'] / 1e3:.0f}"])
        print(markdown_table(HEADERS, rows[-1:]), flush=True)
    bound_rows = source_bound_rows()
    print(markdown_table(BOUND_HEADERS, bound_rows))
    body = ("Synthetic pruned (the given fraction of each conv/dense kernel, magnitude) and clustered "
            "(8-bit conv, 5-bit dense codebooks, linearly initialised centres, Laplacian per layer) Keras applications with random "
            "init, converted with TFLiteConverter and packed with `tfdc.pack.pack_tflite`. "
            "Decode = `tfdc._native.decode` of the packed file (format 2: one thread, includes "
            "the CRC (checked twice: once before the output is allocated), the inflate of the "
            "meta stream, the zero fill and the copy of the inner flatbuffer, into a fresh "
            "`bytes` object over which it asks Linux for transparent huge pages); "
            "inflate = `zlib.decompress` of the gzip -9 of the plain `.tflite` (also into a "
            "fresh object); "
            f"interleaved, median of {args.repeats}. Ratio = median of per-pair decode/inflate. "
            "Pack: `pack_tflite` in a fresh subprocess; peak = tracemalloc peak "
            "(Python + NumPy allocations), relative to the float32 weights (4 bytes x params); "
            "max RSS includes the interpreter and imports.\n\n"
            + markdown_table(HEADERS, rows) + "".join("\n\n" + n for n in notes)
            + "\n\n'gzip / bound': gzip -9 over the packed file with every coded stream at the "
            "entropy of its symbols. 'not in records': the stub, the section header, the CRC "
            "and the deflated share of the meta stream that is not the records' descriptors "
            "(the inner flatbuffer: operators, tensor names, buffers left inline).\n\n"
            "**Where gzip's 2x ends.** The weights above are i.i.d. (positions Bernoulli, values "
            "from the codebook's histogram), so no coder can go below their entropy. For one "
            "3x3x256x512 kernel of the same kind, gzip -9 of the float32 bytes against that "
            "entropy:\n\n" + markdown_table(BOUND_HEADERS, bound_rows))
    publish(args, "native", "Native decoder throughput (one core) vs zlib inflate", body)
    print("\n" + markdown_table(HEADERS, rows))


def source_bound_rows(shape=(3, 3, 256, 512)):
    """gzip -9 bits per nonzero of one synthetic kernel against the entropy
    of an i.i.d. source with its sparsity and value histogram."""
    rng = np.random.default_rng(0)
    rows = []
    for bits in (8, 5):
        for sparsity in (0.7, 0.8, 0.9, 0.95):
            w = prune_cluster(np.zeros(shape, np.float32), rng, sparsity, bits)
            gz_bits = 8 * len(gzip.compress(w.tobytes(), 9))
            values = w[w != 0]
            p = values.size / w.size
            pos_bits = w.size * -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
            q = np.unique(values, return_counts=True)[1] / values.size
            val_bits = values.size * -(q * np.log2(q)).sum()
            n = values.size
            rows.append([bits, f"{sparsity:.0%}", f"{gz_bits / n:.2f}",
                         f"{pos_bits / n:.2f} + {val_bits / n:.2f} = {(pos_bits + val_bits) / n:.2f}",
                         f"**{gz_bits / (pos_bits + val_bits):.2f}x**"])
    return rows


BOUND_HEADERS = ["bits", "pruned", "gzip -9 bits / nonzero",
                 "entropy bits / nonzero (positions + values)", "gzip / entropy"]
HEADERS = ["model", "pruned", "format", "params", ".tflite MB", "gzip -9 MB", "packed MB", "gzip/packed",
           "gzip / bound", "not in records KB",
           "decode ms", "decode MB/s (out)", "weights/s", "inflate ms", "decode/inflate",
           "pack s", "pack peak MB", "peak / f32", "pack max RSS MB"]

if __name__ == "__main__":
    run(main)
