"""`tfdc demo` end to end on real MNIST: the default run, `--quick`, and the
same stages with hand-set per-layer settings.

Each row runs the demo exactly as the `tfdc demo` flags in its first column
would (`tfdc.cli.main`, in this process, one after the other) and reads the
numbers off what the demo printed: test errors (the packed file in the LiteRT
interpreter, all 10,000 test images), packed bytes and ratio, and the wall
time of the whole command.

    TFDC_MNIST=/path/mnist.npz python tools/demo_benchmark.py [--rows quick,default,hand]
"""

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import comma_list, description, run  # noqa: E402

# The hand-set row: the demo's per-layer settings before it planned them
# itself (tfdc.demo.TFDC_SPARSITY / TFDC_BITS for LeNet-300-100).
HAND = ["--sparsity", "fc1=0.93,fc2=0.915,fc3=0.75", "--bits", "fc1=4,fc2=5,fc3=5"]
ROWS = {"quick": ["--quick"], "default": [], "hand": HAND}


def run_demo(flags, out):
    from tfdc.cli import main
    buffer = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--no-plots", "--out", out] + flags)
    wall = time.perf_counter() - t
    text = buffer.getvalue()
    if code != 0:
        raise SystemExit(f"tfdc demo {' '.join(flags)} failed:\n{text[-2000:]}")
    errors = re.search(r"Test error: float ([\d.]+)%.*packed \.tflite in LiteRT ([\d.]+)%", text)
    size = re.search(r"-> ([\d,]+) B packed", text)
    ratio = re.search(r"Compression ratio: ([\d.]+)x", text)
    budget = re.search(r"Budget met: (.*)|BUDGET MISSED: (.*)", text)
    return {"flags": " ".join(flags), "float": float(errors.group(1)),
            "packed_error": float(errors.group(2)), "bytes": int(size.group(1).replace(",", "")),
            "ratio": float(ratio.group(1)), "wall": wall,
            "budget": budget.group(0) if budget else "hand-set settings (no budget)"}


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--rows", default="quick,default,hand", type=comma_list(list(ROWS)),
                        help=f"comma-separated: {', '.join(ROWS)} (default all three)")
    add_no_write(parser)
    args = parser.parse_args()
    if not os.environ.get("TFDC_MNIST"):
        sys.exit("demo_benchmark: set TFDC_MNIST to an mnist.npz")
    from tfdc.datasets import load_mnist_raw
    load_mnist_raw()  # a missing or malformed TFDC_MNIST: its own message (run), before any row
    rows = []
    for name in args.rows:
        with tempfile.TemporaryDirectory() as out:
            rows.append(run_demo(ROWS[name], out))
        print(rows[-1], flush=True)
    table = markdown_table(
        ["command", "float test error", "packed test error (LiteRT)", "packed B", "ratio",
         "budget", "wall time"],
        [[f"`tfdc demo {r['flags']}`".replace(" `", "`"), f"{r['float']:.2f} %",
          f"**{r['packed_error']:.2f} %**", f"{r['bytes']:,}", f"**{r['ratio']:.1f}x**",
          r["budget"], f"{r['wall'] / 60:.1f} min"] for r in rows])
    body = ("LeNet-300-100 on real MNIST (`TFDC_MNIST`), each command as the first column "
            "gives it (with `--no-plots`). Without settings the demo trains the float model "
            "(15 epochs, shifted images, cosine learning rate; `--quick`: 3 epochs, no shift) "
            "and calls `tfdc.compress` with a target of the float32 size / 64 (16,663 B), "
            "which plans per-layer sparsity and bits; the hand-set row runs the same stages "
            "with the per-layer settings the demo used before it planned them. Test error of "
            "the packed file in the LiteRT interpreter on all 10,000 test images; dense "
            "float32: 1,066,440 B; 2 shared CPU cores.\n\n" + table + "\n")
    missing = [name for name in ROWS if name not in args.rows]
    publish(args, "demo", "tfdc demo (end to end)", body,
            partial=f"rows {', '.join(missing)}" if missing else None)


if __name__ == "__main__":
    run(main)
