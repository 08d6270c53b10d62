"""How far below gzip -9 can any coder go on *real* trained weights?

The native benchmark's models have synthetic (Laplacian, i.i.d.) weights. This
script asks the same question of real trained ones: the conv / dense kernels
of MediaPipe's pose- and hand-landmark models (MobileNet-like, 3.2 M and
2.7 M weights, float16 in the file; taken from the `mediapipe==0.10.14`
wheel, fetched with `pip download` from PyPI into --cache). Every kernel with
at least 4096 weights is magnitude-pruned to the given fraction and its
survivors snapped to 2**bits linearly spaced centres (8 bits for convolutions,
5 for 2-D kernels), as in tools/native_benchmark.py. For the pruned kernels,
it reports, in bytes:

* gzip -9 of their float32 bytes (what a zipped `.tflite` stores),
* the entropy bound of an i.i.d. source with each kernel's sparsity and value
  histogram (positions Bernoulli, values from the histogram),
* tfdc's packed size (`pack_tflite` of a file holding just these kernels),
* and the same three for Laplacian kernels of the same shapes.

    python tools/real_weights_bound.py [--sparsity 0.8,0.9,0.95] [--cache DIR]
"""

import argparse
import glob
import gzip
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from native_benchmark import prune_and_snap  # noqa: E402
from tool_args import description, fraction_list, run  # noqa: E402

WHEEL = "mediapipe==0.10.14"
MODELS = {"pose_landmark_full": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
          "hand_landmark_full": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite"}


def fetch_models(cache):
    """The two .tflite files, from the wheel (downloaded once into `cache`)."""
    paths = {name: os.path.join(cache, name + ".tflite") for name in MODELS}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "mediapipe-0.10.14-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps",
                        "--only-binary", ":all:", "-d", cache, "-q"], check=True)
        wheels = glob.glob(os.path.join(cache, "mediapipe-0.10.14-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        for name, member in MODELS.items():
            with open(paths[name], "wb") as f:
                f.write(z.read(member))
    return paths


def kernels(path):
    """The model's constant float tensors of >= 4096 weights and rank >= 2, as float32."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)
    out = []
    for d in interpreter.get_tensor_details():
        try:
            t = interpreter.get_tensor(d["index"])
        except ValueError:  # not a constant
            continue
        if t.dtype in (np.float16, np.float32) and t.size >= 4096 and t.ndim >= 2:
            out.append(t.astype(np.float32))
    return out


def iid_bound_bytes(x):
    nz = x != 0
    p = nz.mean()
    positions = x.size * -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    q = np.unique(x[nz], return_counts=True)[1] / nz.sum()
    return (positions + nz.sum() * -(q * np.log2(q)).sum()) / 8


def measure(tensors):
    from tfdc.pack import pack_tflite
    from tfdc.tflite_schema import constant_model
    gz = sum(len(gzip.compress(t.tobytes(), 9, mtime=0)) for t in tensors)
    bound = sum(iid_bound_bytes(t) for t in tensors)
    packed, _ = pack_tflite(constant_model(tensors))
    return gz, bound, len(packed)


def main():
    ap = argparse.ArgumentParser(description=description(__doc__))
    ap.add_argument("--sparsity", default="0.8,0.9,0.95", type=fraction_list,
                    help="comma-separated fractions of each kernel pruned")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tfdc_real_weights"))
    from benchmarks_md import add_no_write, markdown_table, publish
    add_no_write(ap)
    args = ap.parse_args()
    rows, stats = [], []
    for name, path in fetch_models(args.cache).items():
        real = kernels(path)
        rng = np.random.default_rng(0)
        laplace = [rng.laplace(0, 1 / np.sqrt(np.prod(t.shape[1:])), t.shape).astype(np.float32)
                   for t in real]
        for s in args.sparsity:
            row = [name, f"{sum(t.size for t in real) / 1e6:.2f} M in {len(real)}", f"{s:.0%}"]
            for source in (real, laplace):
                pc = [prune_and_snap(t, s, 5 if t.ndim == 2 else 8) for t in source]
                gz, bound, packed = measure(pc)
                row += [f"{gz / 1e3:.0f}", f"{bound / 1e3:.0f}", f"{packed / 1e3:.0f}",
                        f"**{gz / packed:.2f}x**", f"{gz / bound:.2f}x"]
                stats.append((source is real, s, gz / packed, packed / bound))
            rows.append(row)
            print(markdown_table(HEADERS, rows[-1:]), flush=True)
    real_ratios = [r for is_real, _, r, _ in stats if is_real]
    real_vs_bound = [b for is_real, _, _, b in stats if is_real]
    body = (__doc__.split("\n\n")[1].replace("\n", " ") + "\n\n" + markdown_table(HEADERS, rows)
            + f"\n\nOn the real kernels, tfdc's packed size is {min(real_vs_bound):.2f}-"
            f"{max(real_vs_bound):.2f}x the i.i.d. bound (below 1 where the kernels' "
            "output channels differ in sparsity, which the gap code follows and an i.i.d. model "
            "does not), and gzip -9 over packed is "
            f"{min(real_ratios):.2f}-{max(real_ratios):.2f}x. The per-record codebooks and "
            "code tables (about 0.7 KB per kernel) are most of the rest on the Laplacian "
            "kernels. Real trained weights thus give the synthetic benchmark's picture: gzip "
            "-9 is itself about 2x the entropy bound at these sparsities, so a packed file "
            "near the bound is about 2x smaller than gzip -9 (2x or more on "
            f"{sum(r >= 2 for r in real_ratios)} of the {len(real_ratios)} real rows).\n")
    publish(args, "real_weights", "Real trained weights: gzip -9 against the entropy bound", body)


HEADERS = ["model", "kernels", "pruned",
           "real: gzip -9 KB", "i.i.d. bound KB", "tfdc packed KB", "gzip / packed",
           "gzip / bound",
           "Laplacian: gzip -9 KB", "bound KB", "packed KB", "gzip / packed", "gzip / bound"]

if __name__ == "__main__":
    run(main)
