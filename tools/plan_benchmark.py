"""Benchmark tfdc.sensitivity, the byte-cost model and tfdc.plan on LeNet-300-100.

1. Train LeNet-300-100 on the first 50,000 MNIST training images (Adam 1e-3,
   batch 128, no augmentation, `--epochs`), timing every epoch; then one
   epoch at Keras's default batch size 32 on a copy, timed too.
2. Scan the sensitivity (default grids, `--samples` of the 10,000 held-out
   training images), in the same process: scan time / epoch time.
3. Plan for each `--targets` byte budget and for `--max-error-increase`;
   apply each plan to a copy of the model (no retraining), export it with
   `tfdc.export` and compare the file with the planner's prediction.
4. With `--finetune-epochs N`: prune each byte-budget plan's copy with
   `GradualPruning(target_sparsity=plan.sparsity)` over N epochs, cluster
   with `ClusteredFineTuning(bits=plan.bits)` for one more, export: the file
   after fine-tuning vs the prediction, and the test error of the packed
   file run in LiteRT on the 10,000 test images.

Writes docs/BENCHMARKS.md (section "plan") and out/plan/sensitivity.png.

    TFDC_MNIST=/work/shared/datasets/mnist.npz python tools/plan_benchmark.py
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdc  # noqa: E402
from tfdc.bytecost import apply_settings, restore_settings  # noqa: E402
from tfdc.datasets import load_mnist  # noqa: E402
from tfdc.models import lenet_300_100  # noqa: E402
from tfdc.scan import DEFAULT_SAMPLES  # noqa: E402
from tools.benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import (description, nonnegative_float, nonnegative_int, positive_int,  # noqa: E402
                        run)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EpochTimer(keras.callbacks.Callback):
    """Wall and CPU (all threads of the process) seconds of each epoch."""

    def __init__(self):
        super().__init__()
        self.times = []
        self.cpu = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()
        self._c = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)
        self.cpu.append(time.process_time() - self._c)


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def litert_error(path, x, y):
    interpreter = tfdc.load_interpreter(path)
    runner = interpreter.get_signature_runner()
    name = next(iter(runner.get_input_details()))
    out = next(iter(runner(**{name: x[:1].astype("float32")})))
    wrong = 0
    for start in range(0, len(x), 1):
        pred = runner(**{name: x[start:start + 1].astype("float32")})[out]
        wrong += int(np.argmax(pred) != y[start])
    return wrong / len(x)


def main():
    ap = argparse.ArgumentParser(description=description(__doc__))
    ap.add_argument("--epochs", type=positive_int, default=4)
    ap.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES)
    ap.add_argument("--rounds", type=positive_int, default=3, help="scan / epoch timing rounds")
    ap.add_argument("--targets", type=positive_int, nargs="*", default=[16_000, 24_000, 32_000])
    ap.add_argument("--max-error-increase", type=nonnegative_float, default=0.2)
    ap.add_argument("--finetune-epochs", type=nonnegative_int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "plan"))
    add_no_write(ap)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)  # an --out under a file: one line (run), before work

    keras.utils.set_random_seed(args.seed)
    (x, y), (x_test, y_test) = load_mnist()
    x_train, y_train, x_val, y_val = x[:50_000], y[:50_000], x[50_000:], y[50_000:]
    model = lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    timer = EpochTimer()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=128, verbose=0,
              callbacks=[timer])
    float_error = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) != y_test))

    # Scan vs epoch, interleaved (--rounds of: a scan, a 2-epoch fit of a
    # copy at batch 128, the same at batch 32; the second epoch is timed, a
    # steady-state epoch), so that load from other processes hits both
    # alike. The first scan runs in a process where the model was only
    # trained. Copies train; the scanned model is unchanged.
    scans, epochs_128, epochs_32 = [], [], []
    cpu = {"scan": [], 128: [], 32: []}
    sens = None
    for r in range(args.rounds):
        t, c = time.perf_counter(), time.process_time()
        sens = tfdc.sensitivity(model, (x_val, y_val), samples=args.samples)
        scans.append(time.perf_counter() - t)
        cpu["scan"].append(time.process_time() - c)
        for batch, times in ((128, epochs_128), (32, epochs_32)):
            copy = copy_of(model)
            copy.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
            epoch_timer = EpochTimer()
            copy.fit(x_train, y_train, epochs=2, batch_size=batch, verbose=0,
                     callbacks=[epoch_timer])
            times.append(epoch_timer.times[1])  # the second: no tracing
            cpu[batch].append(epoch_timer.cpu[1])
    scan_s, epoch_128, epoch_32 = (float(np.median(v)) for v in (scans, epochs_128, epochs_32))
    cpu_scan, cpu_128, cpu_32 = (float(np.median(cpu[k])) for k in ("scan", 128, 32))
    print(f"float: {100 * float_error:.2f} % test error; scans {np.round(scans, 2)} s, "
          f"epochs {np.round(epochs_128, 2)} s (batch 128), {np.round(epochs_32, 2)} s (batch 32)")
    print(sens.to_markdown())
    sens.plot(os.path.join(args.out, "sensitivity.png"))
    print(f"scan {scan_s:.2f} s = {scan_s / epoch_128:.2f} x epoch (batch 128), "
          f"{scan_s / epoch_32:.2f} x epoch (batch 32); CPU: {cpu_scan / cpu_128:.2f} x, "
          f"{cpu_scan / cpu_32:.2f} x")

    rows = []
    budgets = [("target_bytes", t) for t in args.targets]
    if args.max_error_increase is not None:
        budgets.append(("max_error_increase", args.max_error_increase))
    for kind, budget in budgets:
        t = time.perf_counter()
        plan = tfdc.plan(model, (x_val, y_val), sensitivity=sens, samples=args.samples,
                         **{kind: budget})
        plan_s = time.perf_counter() - t
        print(plan)
        # The model itself, not a clone: a clone's tensor names differ (and
        # the names of weight tensors are in the file).
        saved = apply_settings(model, plan.sparsity, plan.bits)
        path = os.path.join(args.out, f"{kind}_{budget}.tflite")
        try:
            exported = tfdc.export(model, path, strip=False).packed_bytes
        finally:
            restore_settings(model, saved)
        tuned_bytes = tuned_error = None
        if args.finetune_epochs and kind == "target_bytes":
            # A clone: its weight tensors' names differ from the model's,
            # which the prediction does not know about (a few bytes).
            tuned = copy_of(model)
            steps = -(-len(x_train) // 128)
            tuned.compile(keras.optimizers.Adam(3e-4), "sparse_categorical_crossentropy")
            tuned.fit(x_train, y_train, epochs=args.finetune_epochs + 1, batch_size=128,
                      verbose=0, callbacks=[
                          tfdc.GradualPruning(target_sparsity=plan.sparsity,
                                              end_step=args.finetune_epochs * steps),
                          tfdc.ClusteredFineTuning(bits=plan.bits)])
            tpath = os.path.join(args.out, f"tuned_{budget}.tflite")
            tuned_bytes = tfdc.export(tuned, tpath).packed_bytes
            tuned_error = litert_error(tpath, x_test, y_test)
        label = (f"{budget:,} B" if kind == "target_bytes"
                 else f"error +{budget:g} pt")
        layers = ", ".join(f"{r['layer']} {100 * r['sparsity']:g} %/{r['bits']} b"
                           for r in plan.rows)
        rows.append([label, layers, f"{plan.predicted_bytes:,}", f"{exported:,}",
                     "yes" if exported == plan.predicted_bytes else "NO",
                     f"{100 * plan.predicted_error:.2f} / {100 * plan.measured_error:.2f}",
                     f"{plan_s:.1f}",
                     "" if tuned_bytes is None else
                     f"{tuned_bytes:,} ({100 * (tuned_bytes / budget - 1):+.1f} %), "
                     f"{100 * tuned_error:.2f} %"])
        print(rows[-1])

    def runs(values):
        return ", ".join(f"{v:.2f}" for v in values)

    tuned_note = (
        f"After fine-tuning: GradualPruning(plan.sparsity) over {args.finetune_epochs} epochs, "
        "then ClusteredFineTuning(plan.bits) one more (Adam 3e-4, batch 128), on a clone of "
        "the model (a clone's weight tensor names differ, by a few bytes); the packed file's "
        "size vs the target, and its test error in LiteRT on the 10,000 test images."
        if args.finetune_epochs else "")
    points = f"{len(sens.layers)} layers x ({len(sens.sparsities)} sparsities + " \
        f"{len(sens.bits)} bit widths)"
    body = f"""LeNet-300-100 trained on the first 50,000 MNIST training images
({args.epochs} epochs, Adam 1e-3, batch 128, no augmentation, seed {args.seed}):
{100 * float_error:.2f} % test error.
Validation data for the scan and the planner: the other 10,000 training images
({args.samples:,} of them drawn with a fixed seed).

**Sensitivity scan vs one training epoch (same process, 2 shared CPU cores):** scan
{scan_s:.2f} s ({points} forward passes over {sens.samples:,} images;
runs: {runs(scans)} s); one epoch of `fit` on 50,000 images (the second epoch of a
copy's 2-epoch fit: no tracing): {epoch_128:.2f} s at batch 128 (runs: {runs(epochs_128)} s),
{epoch_32:.2f} s at Keras's default batch 32 (runs: {runs(epochs_32)} s). Medians of
{args.rounds} interleaved rounds (scan, epoch at 128, epoch at 32). Ratio:
**{scan_s / epoch_128:.2f}x** an epoch at batch 128, {scan_s / epoch_32:.2f}x at batch 32.
CPU seconds (all threads of the process; less sensitive to the other processes on
the machine): scan {cpu_scan:.2f}, epoch {cpu_128:.2f} at batch 128, {cpu_32:.2f} at batch 32:
**{cpu_scan / cpu_128:.2f}x** and {cpu_scan / cpu_32:.2f}x.

**Planner and byte-cost model.** Each plan applied to the model without retraining
(`tfdc.bytecost.apply_settings`) and written by `tfdc.export`: the file has exactly
the predicted bytes when "exact" says yes. Error: predicted from the curves / measured
with the plan applied, both without retraining, on the validation images. Plan time
includes pricing every (sparsity, bits) option of every layer with the packer the
first time (later plans of the same model reuse the prices).
{tuned_note}

{markdown_table(["budget", "plan (sparsity / bits)", "predicted B", "exported B", "exact",
                 "error % pred. / meas.", "plan s", "after fine-tuning: B, test error"], rows)}

Sensitivity (validation error %, loss in parentheses; one layer changed, no retraining):

{sens.to_markdown()}
"""
    publish(args, "plan", "Sensitivity scan, byte-cost model and planner (tfdc.plan)", body)


if __name__ == "__main__":
    run(main)
