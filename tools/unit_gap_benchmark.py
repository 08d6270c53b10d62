"""Units pruned but not removed: what `tfdc pack` makes of their positions.

`tfdc.StructuredPruning` zeroes whole units; `tfdc.shrink` then removes them.
A model exported before shrinking (or another tool's channel pruning, which
zeroes channels in place) keeps each pruned unit as a zero row of its
TFLite kernel and a zero column of the next one: the kept weights' gaps are
nearly all 1, which a Huffman code spends a bit each on and the range code
(format 2.1's kind 3 table) a fraction of a bit.

LeNet-300-100 (`tfdc.models.lenet_300_100`) is trained in float on real MNIST
(--epochs, Adam 1e-3, batch 128, seed --seed) and then fit for --prune-epochs
more with `tfdc.StructuredPruning` (fc1 62 %, fc2 50 % of the units, the
fractions of the structured benchmark). Its plain TFLite file is packed with
`tfdc.export_tflite` as it is (gap streams range-coded where that is
smaller) and with Huffman-coded gaps only (`_force={"codes": "huffman"}`,
the packer before 2026-12-06), next to gzip -9 and xz -9 of the plain file
and xz -9 of the packed one (what is left for a general compressor), and to
the packed file of the model after `tfdc.shrink`. The test error of each
packed file is measured in LiteRT on the 10,000 test images, and its
decoding time with the native decoder (the range code is the slower one).

    python tools/unit_gap_benchmark.py --mnist /path/mnist.npz
"""

import argparse
import gzip
import lzma
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import description, positive_int, run  # noqa: E402

FRACTIONS = {"fc1": 0.62, "fc2": 0.5}  # as tools/structured_benchmark.py
DECODE_RUNS = 21  # `tfdc.decode(backend="native")` of each packed file, one core


def unit_pruned_model(x, y, epochs, prune_epochs, seed):
    """LeNet-300-100 trained, then fit with `tfdc.StructuredPruning`."""
    import keras

    import tfdc
    from tfdc.models import lenet_300_100
    keras.utils.set_random_seed(seed)
    model = lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    start = int(model.optimizer.iterations)  # the steps count on from the float fit's
    steps = prune_epochs * -(-len(x) // 128)
    model.fit(x, y, epochs=prune_epochs, batch_size=128, verbose=0, callbacks=[
        tfdc.StructuredPruning(FRACTIONS, end_step=start + steps // 2, frequency=50)])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--mnist", default=None, help="MNIST .npz (default: $TFDC_MNIST)")
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--prune-epochs", type=positive_int, default=4)
    parser.add_argument("--seed", type=int, default=1234)
    add_no_write(parser)
    args = parser.parse_args(argv)

    import tfdc
    from tfdc.datasets import load_mnist
    from tfdc.demo import tflite_error
    from tfdc.exporter import convert
    (x, y), (x_test, y_test) = load_mnist(args.mnist)
    started = time.perf_counter()
    model = unit_pruned_model(x, y, args.epochs, args.prune_epochs, args.seed)
    train_s = time.perf_counter() - started
    units = tfdc.units(model)
    kept = ", ".join(f"{name} {u.kept} of {u.units}" for name, u in units.items()
                     if name in FRACTIONS)
    plain = convert(model)
    shrunk = convert(tfdc.shrink(model))
    rows, sizes = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for label, source, force in (
                ("units zeroed, gaps Huffman-coded only (before)", plain, {"codes": "huffman"}),
                ("units zeroed, range-coded gaps where smaller (now)", plain, None),
                ("units removed (tfdc.shrink)", shrunk, None)):
            path = os.path.join(folder, "m.tflite")
            if force:
                from tfdc.pack import pack_tflite
                packed, _ = pack_tflite(source, strip_debug=True, _force=force)
                with open(path, "wb") as f:
                    f.write(packed)
            else:
                tfdc.export_tflite(source, path)
                with open(path, "rb") as f:
                    packed = f.read()
            gaps = sum(r.gap_bits for r in tfdc.inspect(path).layers) // 8
            decode_ms = []
            for _ in range(DECODE_RUNS):
                t = time.perf_counter()
                tfdc.decode(packed, backend="native")
                decode_ms.append(1e3 * (time.perf_counter() - t))
            sizes[label] = len(packed), statistics.median(decode_ms)
            rows.append([label, f"{len(source):,}", f"{len(gzip.compress(source, 9)):,}",
                         f"{len(lzma.compress(source, preset=9)):,}", f"**{len(packed):,}**",
                         f"{gaps:,}", f"{len(lzma.compress(packed, preset=9)):,}",
                         f"{statistics.median(decode_ms):.2f}",
                         f"{100 * tflite_error(path, x_test, y_test):.2f}%"])
    (before, before_ms), (now, now_ms) = (sizes[label] for label in list(sizes)[:2])
    body = "\n".join([
        f"LeNet-300-100, {args.epochs} epochs float + {args.prune_epochs} epochs of "
        f"`tfdc.StructuredPruning({FRACTIONS})`, seed {args.seed}; {train_s:.0f} s of training. "
        f"Units kept: {kept}.",
        "",
        markdown_table(["file", "plain B", "gzip -9 B", "xz -9 B", "tfdc packed B",
                        "gap streams B", "xz -9 of the packed file B",
                        f"native decode ms (median of {DECODE_RUNS})", "test error (LiteRT)"],
                       rows),
        "",
        f"Range-coded gaps: {before:,} B -> {now:,} B ({100 * (1 - now / before):.1f} % "
        f"smaller), decoded in {now_ms:.2f} ms instead of {before_ms:.2f} ms"
        + (" (the range decoder is the slower one). " if now_ms > before_ms * 1.05 else
           " (the range decoder is the faster one). " if now_ms < before_ms * 0.95 else
           " (as fast, within 5 %). ")
        + "Removing the units (`tfdc.shrink`) is smaller still, "
        "and the decoded model is smaller in memory and faster too (\"Structured pruning\" "
        "above).",
    ])
    publish(args, "unit_gaps", "Units pruned but not removed: range-coded gap streams", body)


if __name__ == "__main__":
    run(main)
