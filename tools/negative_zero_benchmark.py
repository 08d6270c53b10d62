"""Pruning by multiplying a mask into the weights (tfmot's way) leaves -0.0
wherever it pruned a negative weight; what `tfdc pack` makes of such a file.

LeNet-300-100 (`tfdc.models.lenet_300_100`) is trained in float on real MNIST
(--epochs, Adam 1e-3, batch 128, seed 1234), pruned by magnitude to the
paper's per-layer sparsity (fc1 92 %, fc2 91 %, fc3 74 %) and fine-tuned with
the masks multiplied into the kernels after every step, as tfmot's
`prune_low_magnitude` does (--fine-tune epochs); tfdc's own pruning writes
+0.0 instead (`tf.where`). The plain TFLite converter's float file is then
packed with `tfdc.export_tflite` twice: `negative_zeros="keep"` (the
default: lossless, each -0.0 a coded value) and `"zero"` (stored as 0.0).
Rows: raw, gzip -9, xz -9, packed sizes; the LiteRT test error on the 10,000
test images; and the outputs against the input file's: raw bits (`keep`)
and values compared as numbers (`zero`: a zero's sign is all that may
differ).

    python tools/negative_zero_benchmark.py --mnist /path/mnist.npz
"""

import argparse
import gzip
import lzma
import os
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import description, nonnegative_int, positive_int, run  # noqa: E402

SPARSITY = {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}  # the paper's Table 1 (as tfmot's run)


def masked_model(x, y, epochs, fine_tune, seed):
    """LeNet-300-100 trained, pruned by magnitude to `SPARSITY` and fine-tuned
    with the masks multiplied into the kernels after every step."""
    import keras

    from tfdc.models import lenet_300_100
    keras.utils.set_random_seed(seed)
    model = lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    masks = {}
    for name, sparsity in SPARSITY.items():
        w = model.get_layer(name).kernel.numpy()
        masks[name] = (np.abs(w) > np.quantile(np.abs(w), sparsity)).astype("float32")

    class MultiplyMasks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for name, mask in masks.items():
                kernel = self.model.get_layer(name).kernel
                kernel.assign(kernel * mask)

    prune = MultiplyMasks()
    prune.set_model(model)
    prune.on_train_batch_end(0)  # pruned before the first step too
    model.fit(x, y, epochs=fine_tune, batch_size=128, verbose=0, callbacks=[prune])
    return model, sum(int(np.sum(m == 0)) for m in masks.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--mnist", default=None, help="MNIST .npz (default: $TFDC_MNIST)")
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--fine-tune", type=nonnegative_int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    add_no_write(parser)
    args = parser.parse_args(argv)

    import tfdc
    from tfdc.datasets import load_mnist
    from tfdc.demo import tflite_outputs
    from tfdc.exporter import convert
    (x, y), (x_test, y_test) = load_mnist(args.mnist)
    started = time.perf_counter()
    model, pruned = masked_model(x, y, args.epochs, args.fine_tune, args.seed)
    train_s = time.perf_counter() - started
    signed = {name: int(np.sum((k == 0) & np.signbit(k))) for name, k in (
        (n, model.get_layer(n).kernel.numpy()) for n in SPARSITY)}
    plain = convert(model)
    reference = tflite_outputs(plain, x_test, plain=True)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("keep", "zero"):
            path = os.path.join(folder, f"{mode}.tflite")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report = tfdc.export_tflite(plain, path, negative_zeros=mode)
            outputs = tflite_outputs(path, x_test)
            same = ("bit-identical" if np.array_equal(outputs.view(np.uint32),
                                                       reference.view(np.uint32)) else
                    "equal as numbers" if np.array_equal(outputs, reference) else "DIFFER")
            error = float(np.mean(outputs.argmax(axis=1) != y_test))
            results[mode] = report.packed_bytes
            rows.append([f'negative_zeros="{mode}"', f"{len(plain):,}",
                         f"{len(gzip.compress(plain, compresslevel=9)):,}",
                         f"{len(lzma.compress(plain, preset=9)):,}",
                         f"**{report.packed_bytes:,}**", f"{len(plain) / report.packed_bytes:.1f}x",
                         f"{100 * error:.2f}%", same,
                         "yes" if any("-0.0" in str(w.message) for w in caught) else "no"])
    body = "\n".join([
        f"LeNet-300-100, {args.epochs} epochs float + {args.fine_tune} epochs with the masks "
        f"multiplied in (sparsity {SPARSITY}), seed {args.seed}; {train_s:.0f} s of training. "
        f"Weights of -0.0 in the float file: "
        + ", ".join(f"{n} {c:,}" for n, c in signed.items())
        + f" ({sum(signed.values()):,} of the {pruned:,} pruned weights).",
        "",
        markdown_table(["packing", "raw B", "gzip -9 B", "xz -9 B", "tfdc packed B",
                        "raw / packed", "test error (LiteRT)", "outputs vs the input file",
                        "warned"], rows),
        "",
        f"Stored as 0.0, the -0.0 weights are pruned positions again: "
        f"{results['keep']:,} B -> {results['zero']:,} B "
        f"({results['keep'] / results['zero']:.2f}x smaller).",
    ])
    publish(args, "negative_zeros", "Negative zeros: a mask multiplied into the weights", body)


if __name__ == "__main__":
    run(main)
