"""Benchmark tfdc.GradualPruning on real MNIST with LeNet-300-100.

1. Train a float baseline (Adam, cosine learning-rate decay, training images
   randomly shifted by up to --shift pixels).
2. From the baseline, prune with GradualPruning + retrain, to the paper's keep
   ratios (fc1/fc2/fc3 keep 8 % / 9 % / 26 %) and to a sparser "tfdc recipe".
3. Measure the training-step time with the callback / without it: two
   LeNet-300-100 copies, same batch size, epochs interleaved A,B,A,B,...;
   the time of each epoch excludes its first batch (tracing) and includes the
   mask updates; ratio of medians.

Writes the results to docs/BENCHMARKS.md (section "prune") and saves the
paper-ratio pruned model to --save.

    TFDC_MNIST=/work/shared/datasets/mnist.npz python tools/prune_benchmark.py
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
from tfdc.datasets import load_mnist  # noqa: E402
from tfdc.models import lenet_300_100  # noqa: E402
from tools.benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import (description, fraction, nonnegative_float, nonnegative_int,  # noqa: E402
                       open_fraction, positive_float, positive_int, run)

PAPER = {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}


def compile_model(model, lr, steps, weight_decay=0.0):
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01)
    opt = (keras.optimizers.AdamW(schedule, weight_decay=weight_decay) if weight_decay
           else keras.optimizers.Adam(schedule))
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def training_data(x, y, batch_size, shift):
    """Shuffled batches; with `shift` > 0 each image is randomly translated by
    up to `shift` pixels (zero fill), a new draw every epoch."""
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch_size)
    if shift:
        translate = keras.layers.RandomTranslation(shift / x.shape[1], shift / x.shape[2],
                                                   fill_mode="constant", seed=0)
        ds = ds.map(lambda a, b: (translate(a[..., None], training=True)[..., 0], b),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def test_error(model, x, y):
    pred = np.argmax(model.predict(x, batch_size=1000, verbose=0), axis=1)
    return float(np.mean(pred != y))


class StepTimer(keras.callbacks.Callback):
    """Mean step time of an epoch, first batch (tracing) excluded, mask
    updates (other callbacks' batch-end work) included."""

    def __init__(self):
        super().__init__()
        self.epoch_times = []

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self._t0 = time.perf_counter()
        self._last = (batch, time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        batch, t = self._last
        self.epoch_times.append((t - self._t0) / batch)


def prune_run(baseline_weights, targets, x, y, xte, yte, args, seed):
    keras.utils.set_random_seed(seed)
    model = lenet_300_100()
    model.set_weights(baseline_weights)
    steps_per_epoch = -(-len(x) // args.batch_size)
    total = args.prune_epochs * steps_per_epoch
    compile_model(model, args.prune_lr, total, args.weight_decay)
    end = max(1, int(total * args.ramp_fraction))  # at least one step of ramp
    callback = tfdc.GradualPruning(targets, end_step=end, frequency=args.frequency)
    t = time.perf_counter()
    model.fit(training_data(x, y, args.batch_size, args.shift), epochs=args.prune_epochs,
              verbose=0, callbacks=[callback])
    seconds = time.perf_counter() - t
    return model, test_error(model, xte, yte), seconds


def time_ratio(x, y, args):
    """Median step time with GradualPruning / without, interleaved epochs."""
    keras.utils.set_random_seed(0)
    plain, pruned = lenet_300_100(), lenet_300_100()
    for m in (plain, pruned):
        m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    timers = {"plain": StepTimer(), "pruned": StepTimer()}
    steps_per_epoch = -(-len(x) // args.batch_size)
    # A schedule still ramping during every timed epoch: masks are recomputed
    # every `frequency` steps throughout.
    callback_end = steps_per_epoch * (args.timing_epochs + 2) * 2
    for epoch in range(args.timing_epochs):
        for name, model in (("plain", plain), ("pruned", pruned)) if epoch % 2 == 0 else \
                (("pruned", pruned), ("plain", plain)):
            callbacks = [timers[name]]
            if name == "pruned":
                callbacks.insert(0, tfdc.GradualPruning(0.9, begin_step=0, end_step=callback_end,
                                                        frequency=args.frequency))
            model.fit(x, y, initial_epoch=epoch, epochs=epoch + 1, batch_size=args.batch_size,
                      verbose=0, callbacks=callbacks)
    plain_t = float(np.median(timers["plain"].epoch_times))
    pruned_t = float(np.median(timers["pruned"].epoch_times))
    return plain_t, pruned_t, timers


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--baseline-epochs", type=positive_int, default=15)
    parser.add_argument("--prune-epochs", type=positive_int, default=15)
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--lr", type=positive_float, default=2e-3)
    parser.add_argument("--prune-lr", type=positive_float, default=1e-3)
    parser.add_argument("--weight-decay", type=nonnegative_float, default=0.0)
    parser.add_argument("--ramp-fraction", type=open_fraction, default=0.5,
                        help="fraction of the retraining steps over which sparsity ramps up")
    parser.add_argument("--frequency", type=positive_int, default=100)
    parser.add_argument("--tfdc-fc1", type=fraction, default=0.95, help="fc1 sparsity, tfdc recipe")
    parser.add_argument("--tfdc-fc2", type=fraction, default=0.91)
    parser.add_argument("--tfdc-fc3", type=fraction, default=0.74)
    parser.add_argument("--shift", type=nonnegative_int, default=2,
                        help="random translation of training images, in pixels (0: none)")
    parser.add_argument("--timing-epochs", type=positive_int, default=6)
    parser.add_argument("--skip-timing", action="store_true")
    add_no_write(parser)
    parser.add_argument("--save", default="/tmp/tfdc/lenet_300_100_pruned.keras",
                        help="where to save the paper-ratio pruned model")
    parser.add_argument("--mnist", default=None, help="path of mnist.npz (default $TFDC_MNIST)")
    args = parser.parse_args()

    (x, y), (xte, yte) = load_mnist(args.mnist)
    print(f"MNIST: {len(x)} train, {len(xte)} test")

    keras.utils.set_random_seed(1)
    baseline = lenet_300_100()
    steps = args.baseline_epochs * -(-len(x) // args.batch_size)
    compile_model(baseline, args.lr, steps, args.weight_decay)
    t = time.perf_counter()
    baseline.fit(training_data(x, y, args.batch_size, args.shift), epochs=args.baseline_epochs,
                 verbose=0)
    base_seconds = time.perf_counter() - t
    base_err = test_error(baseline, xte, yte)
    print(f"baseline: test error {base_err:.2%} ({base_seconds:.0f} s)")
    weights = baseline.get_weights()

    rows = [["float baseline", "100 / 100 / 100", "100.0 %", f"{base_err:.2%}", "1.64 %",
             f"{args.baseline_epochs} ep, {base_seconds:.0f} s"]]
    recipes = [("GradualPruning, paper keep ratios", PAPER, "1.59 %"),
               ("GradualPruning, tfdc recipe", {"fc1": args.tfdc_fc1, "fc2": args.tfdc_fc2,
                                                "fc3": args.tfdc_fc3}, "-")]
    for i, (label, targets, paper) in enumerate(recipes):
        model, err, seconds = prune_run(weights, targets, x, y, xte, yte, args, seed=2 + i)
        report = tfdc.sparsity(model)
        print(f"{label}: test error {err:.2%} ({seconds:.0f} s)\n{report}")
        keep = " / ".join(f"{1 - report[n].sparsity:.1%}".rstrip("%").strip() for n in ("fc1", "fc2", "fc3"))
        rows.append([label, keep, f"{1 - report.sparsity:.2%}", f"{err:.2%}", paper,
                     f"+{args.prune_epochs} ep, {seconds:.0f} s"])
        if i == 0 and args.save:
            os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
            tfdc.strip(model).save(args.save)
            print(f"saved {args.save}")

    body = markdown_table(["model", "kept weights fc1 / fc2 / fc3 (%)", "kept overall",
                           "test error", "paper", "training"], rows)
    body += (f"\n\nLeNet-300-100 on the full MNIST (60,000 train / 10,000 test). Baseline: Adam, "
             f"lr {args.lr} cosine-decayed over {args.baseline_epochs} epochs, batch "
             f"{args.batch_size}, training images randomly shifted by up to {args.shift} px "
             f"(test images untouched). Pruning starts from the baseline weights: Adam, lr "
             f"{args.prune_lr} cosine-decayed over {args.prune_epochs} epochs; sparsity ramps "
             f"(Zhu & Gupta cubic) over the first {args.ramp_fraction:.0%} of those steps, "
             f"masks updated every {args.frequency} steps, then retraining with fixed masks.")

    if not args.skip_timing:
        plain_t, pruned_t, timers = time_ratio(x, y, args)
        ratio = pruned_t / plain_t
        print(f"step time: plain {plain_t * 1e3:.3f} ms, with GradualPruning {pruned_t * 1e3:.3f} ms, "
              f"ratio {ratio:.3f}")
        print("  plain epochs (ms/step): " + ", ".join(f"{t * 1e3:.2f}" for t in timers["plain"].epoch_times))
        print("  pruned epochs (ms/step): " + ", ".join(f"{t * 1e3:.2f}" for t in timers["pruned"].epoch_times))
        body += ("\n\n" + markdown_table(
            ["training step (LeNet-300-100, batch %d)" % args.batch_size, "median ms / step"],
            [["without callback", f"{plain_t * 1e3:.3f}"],
             [f"with GradualPruning (mask constraint + mask update every {args.frequency} steps)",
              f"{pruned_t * 1e3:.3f}"],
             ["**ratio**", f"**{ratio:.3f}**"]]))
        body += (f"\n\nTiming: {args.timing_epochs} epochs of each model, interleaved (A,B,B,A,...), "
                 "first batch of each epoch (tracing) excluded, median of the per-epoch mean step "
                 "times. The machine's 2 cores are shared, so absolute times are noisy; the ratio "
                 "comes from one process.")
    publish(args, "prune", "Pruning: LeNet-300-100 on MNIST (tfdc.GradualPruning)", body)


if __name__ == "__main__":
    run(main)
