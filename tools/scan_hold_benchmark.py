"""Benchmark tfdc.compress's hold on its sensitivity scan: the counted cost
against the measured time, per model.

For each model (BatchNormalization folded, as compress scans it): its scan
cost (`tfdc.scan.scan_cost`), what `tfdc.compressor.scan_options` holds the
scan to for compress's default training on the first 55,000 MNIST training
images (batch 128), the time of the default scan (`tfdc.sensitivity` on
4,000 of the other 5,000 images) and of the held one, and of one training
epoch at batch 128 (after one traced epoch on 2,048 images). Untrained
weights: a point's time does not depend on them. MobileNetV2 reads the
images padded to 32x32 and copied to 3 channels.

    TFDC_MNIST=/work/shared/datasets/mnist.npz python tools/scan_hold_benchmark.py
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import comma_list, description, run  # noqa: E402

MODELS = ("lenet_300_100", "lenet5", "mobilenet_mnist", "mobilenetv2")
TRAIN, BATCH = 55_000, 128


def build(name):
    """The model and its input transform."""
    import keras
    import numpy as np

    from tfdc import models
    if name != "mobilenetv2":
        return getattr(models, name)(), (lambda x: x[..., None] if name != "lenet_300_100" else x)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                           classes=10)
    return model, lambda x: np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, -1)


def measure(name, x, y, log):
    import keras

    import tfdc
    from tfdc.compressor import _epochs, _steps, scan_options
    from tfdc.scan import scan_cost
    model, shape = build(name)
    xs = shape(x)
    train, val = (xs[:TRAIN], y[:TRAIN]), (xs[TRAIN:TRAIN + 4000], y[TRAIN:TRAIN + 4000])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(train[0][:2048], train[1][:2048], batch_size=BATCH, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(*train, batch_size=BATCH, epochs=1, verbose=0)
    epoch = time.perf_counter() - t
    folded = tfdc.fold_batchnorm(model)
    macs, passes = scan_cost(folded, inputs=val[0][:1])
    epochs = sum(_epochs(None, _steps(train, BATCH)))
    options = scan_options(macs, passes, len(val[1]), epochs * TRAIN)
    times = {}
    for kind, kwargs in (("default", {}), ("held", options)):
        if kind == "held" and not options:
            continue
        t = time.perf_counter()
        tfdc.sensitivity(folded, val, **kwargs)
        times[kind] = time.perf_counter() - t
        log(f"{name}: {kind} scan {times[kind]:.1f} s, epoch {epoch:.1f} s")
    return dict(name=name, layers=len(tfdc.bytecost.compressible_layers(folded)), macs=macs,
                passes=passes, options=options, epoch=epoch, epochs=epochs, times=times)


def render(rows):
    def share_of_training(r, seconds):
        return f"{seconds / (r['epochs'] * r['epoch']):.1%}"
    table = markdown_table(
        ["model", "layers", "MACs / example (a point of each layer)", "passes / example", "held to",
         "default scan s", "held scan s", "epoch s (batch 128)", "default scan / training",
         "held scan / training"],
        [[r["name"], r["layers"], f"{r['macs']:.3g}", f"{r['passes']:.2f}",
          ("not held" if not r["options"] else f"{r['options']['samples']:,} examples"
           + (", coarse grids" if "sparsities" in r["options"] else "")),
          f"{r['times']['default']:.1f}", f"{r['times']['held']:.1f}" if "held" in r["times"]
          else "-", f"{r['epoch']:.1f}", share_of_training(r, r["times"]["default"]),
          share_of_training(r, r["times"]["held"]) if "held" in r["times"] else "-"]
         for r in rows])
    return (f"The training: compress's default epochs on {TRAIN:,} images at batch {BATCH} "
            "(pruning + clustering epochs x one epoch's time). Scans on 4,000 images, default "
            "grids (20 points a layer) or the held options. Untrained weights.\n\n" + table)


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--models", type=comma_list(MODELS), default=list(MODELS),
                        help=f"comma-separated: {', '.join(MODELS)} (default all)")
    add_no_write(parser)
    args = parser.parse_args()
    from tfdc.datasets import load_mnist
    (x, y), _ = load_mnist()
    rows = [measure(name, x, y, lambda *a: print(*a, flush=True)) for name in args.models]
    publish(args, "scan_hold", "Sensitivity scan held by tfdc.compress: counted cost and time",
            render(rows), partial=None if len(rows) == len(MODELS) else "some models")
    return 0


if __name__ == "__main__":
    run(main)
