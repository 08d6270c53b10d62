"""Trained quantization (weight sharing) on real MNIST: the paper's Tables 1-2
and Fig. 7/8 for LeNet-300-100 and LeNet-5, plus the train-step overhead.

Stages (each part caches its pruned model in --save-dir and can run alone):

    lenet300  train dense -> GradualPruning to 8/9/26 % kept -> retrain ->
              5-bit and 6-bit ClusteredFineTuning; asserts the codebook and
              the zero masks; init table (5 inits x 2..6 bits); step timing.
    lenet5    train dense -> prune to 66/12/8/19 % kept -> retrain -> conv
              8-bit / fc 5-bit clustering; asserts; step timing.

Results of each part go to <save-dir>/<part>.json; docs/BENCHMARKS.md's
"cluster" section is rebuilt from every JSON present.

    export TFDC_MNIST=/work/shared/datasets/mnist.npz
    python tools/cluster_benchmark.py --part lenet300
    python tools/cluster_benchmark.py --part lenet5
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdc  # noqa: E402
import tfdc.models  # noqa: E402
from tfdc.recipe import ShiftedImages  # noqa: E402
import tfdc.prune  # noqa: E402
from tfdc.cluster import ClusteredFineTuning, codebooks  # noqa: E402
from tfdc.datasets import load_mnist  # noqa: E402
from tools.benchmarks_md import (add_no_write, command_line, markdown_table,  # noqa: E402
                                 nothing_to_write, publish)
from tool_args import description, epoch_list, nonnegative_int, positive_int, run  # noqa: E402

PARTS = {
    "lenet300": dict(build=tfdc.models.lenet_300_100, channels=False,
                     keep={"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}),
    "lenet5": dict(build=tfdc.models.lenet5, channels=True,
                   keep={"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19}),
}


def fit(model, data, args, epochs, callbacks=(), verbose=0):
    (x, y), _ = data
    if args.shift:
        return model.fit(ShiftedImages(x, y, args.batch, args.shift), epochs=epochs,
                         verbose=verbose, callbacks=list(callbacks))
    return model.fit(x, y, epochs=epochs, batch_size=args.batch, verbose=verbose,
                     callbacks=list(callbacks))


def compile_model(model, lr, steps, jit_compile="auto"):
    sched = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05) if steps else lr
    model.compile(keras.optimizers.Adam(sched), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)


def error(model, data):
    (_, _), (xt, yt) = data
    p = model.predict(xt, batch_size=1000, verbose=0).argmax(-1)
    return float(np.mean(p != yt) * 100)


def pruned_model(part, data, args, log):
    path = os.path.join(args.save_dir, f"{part}_pruned.keras")
    if os.path.exists(path) and not args.retrain:
        log(f"reusing {path}")
        return keras.models.load_model(path, compile=False), path
    cfg = PARTS[part]
    (x, y), _ = data
    e = args.epochs[part]
    steps = int(np.ceil(len(x) / args.batch))
    keras.utils.set_random_seed(0)
    model = cfg["build"]()
    compile_model(model, 1e-3, e[0] * steps)
    fit(model, data, args, e[0], verbose=2)
    log(f"dense error {error(model, data):.2f} %")
    sparsity = {k: 1 - v for k, v in cfg["keep"].items()}
    compile_model(model, 5e-4, (e[1] + e[2]) * steps)
    pruning = tfdc.GradualPruning(sparsity, frequency=50,
                                  end_step=int(e[1] * steps * 0.7))
    fit(model, data, args, e[1] + e[2], [pruning], verbose=2)
    tfdc.strip(model)
    log(f"pruned error {error(model, data):.2f} %  {tfdc.sparsity(model)}")
    model.save(path)
    return model, path


def check_codebook(model, masks, bits_of):
    """Assert: <= 2**bits distinct nonzero values and the same zero mask."""
    for layer_name, mask in masks.items():
        w = model.get_layer(layer_name).kernel.numpy()
        distinct = np.unique(w[w != 0]).size
        bits = bits_of(model.get_layer(layer_name))
        assert distinct <= 2 ** bits, (layer_name, distinct, bits)
        assert np.array_equal(w != 0, mask), f"{layer_name}: zero mask changed"


def cluster_run(pruned_path, data, bits, init, epochs, args, lr=1e-4, fine_tune=True):
    (x, y), _ = data
    model = keras.models.load_model(pruned_path, compile=False)
    masks = {l.name: l.kernel.numpy() != 0 for l in model.layers if hasattr(l, "kernel")}
    steps = int(np.ceil(len(x) / args.batch))
    compile_model(model, lr, epochs * steps)
    cb = ClusteredFineTuning(bits=bits, init=init, seed=0)
    cb.quantize(model)
    before = error(model, data)
    after = None
    if fine_tune and epochs:
        fit(model, data, args, epochs, [cb])
        after = error(model, data)
    check_codebook(model, masks, lambda layer: _bits_of(bits, layer))
    return model, before, after


def _bits_of(bits, layer):
    if bits is None:
        return 8 if isinstance(layer, keras.layers.Conv2D) else 5
    return bits


def step_ratio(pruned_path, data, bits, args, rounds=21, steps_per_round=25):
    """Median compiled train-step time with the clustering constraints /
    without: the models' own `train_function` fed from an in-memory iterator
    (no per-call Python overhead), interleaved A, B, C, A, B, C, ... in one
    process. Two clustered models: the constraint's fused op
    (`tfdc.cluster_op`, used on CPU when it builds) and TensorFlow's sparse
    matmul (`fused_op=False`). Under `--jit` both use the XLA path."""
    import tensorflow as tf
    from tfdc import cluster_op
    (x, y), _ = data
    batches = tf.data.Dataset.from_tensor_slices((x[:args.batch * 8], y[:args.batch * 8]))
    batches = batches.batch(args.batch).cache().repeat()
    variants = {"plain": None, "clustered": True, "sparse": False}
    models, callbacks = {}, {}
    for name, fused in variants.items():
        m = keras.models.load_model(pruned_path, compile=False)
        compile_model(m, 1e-4, None, jit_compile=True if args.jit else "auto")
        m.train_on_batch(x[:args.batch], y[:args.batch])  # build the optimizer
        if fused is None:
            m.make_train_function()
        else:
            cb = ClusteredFineTuning(bits=bits, detach_at_end=False, fused_op=fused)
            cb.set_model(m)
            cb.on_train_begin()
            # Clustering starts at the first epoch (the model may be built
            # only then): it attaches the constraints and re-makes the train
            # function. Without it the "clustered" steps ran unclustered.
            cb.on_epoch_begin(0)
            callbacks[name] = cb
        models[name] = m
    fused_used = all(c.fused is not None for _, c in callbacks["clustered"]._constraints)
    iterators = {name: iter(batches) for name in models}
    times = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for name in models:  # trace + warm up
        for _ in range(10):
            models[name].train_function(iterators[name])
    for _ in range(rounds):
        for name in models:
            fn, it = models[name].train_function, iterators[name]
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps_per_round):
                logs = fn(it)
            float(logs["loss"])  # wait for the last step
            times[name].append((time.perf_counter() - t) / steps_per_round)
            cpu[name].append((time.process_time() - c) / steps_per_round)
    for name in callbacks:
        w = models[name].layers[-1].kernel.numpy()
        assert np.unique(w[w != 0]).size <= 2 ** _bits_of(bits, models[name].layers[-1])
        tfdc.strip(models[name])
    med = {name: statistics.median(v) for name, v in times.items()}
    # Process CPU time (all threads) is less disturbed by other jobs on a
    # shared machine than wall time; both are reported.
    cmed = {name: statistics.median(v) for name, v in cpu.items()}
    return {"batch": args.batch, "jit_compile": bool(args.jit), "rounds": rounds,
            "fused_op": fused_used, "fused_op_status": cluster_op.status(),
            "plain_ms": med["plain"] * 1e3, "clustered_ms": med["clustered"] * 1e3,
            "ratio": med["clustered"] / med["plain"],
            "sparse_ms": med["sparse"] * 1e3, "sparse_ratio": med["sparse"] / med["plain"],
            "plain_cpu_ms": cmed["plain"] * 1e3, "clustered_cpu_ms": cmed["clustered"] * 1e3,
            "cpu_ratio": cmed["clustered"] / cmed["plain"],
            "sparse_cpu_ratio": cmed["sparse"] / cmed["plain"]}


def run_part(part, args):
    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    data = load_mnist(channels=PARTS[part]["channels"])
    if args.train_subset:
        (x, y), t = data
        data = ((x[:args.train_subset], y[:args.train_subset]), t)
    t0 = time.time()
    model, pruned_path = pruned_model(part, data, args, log)
    result = {"part": part, "pruned_error": error(model, data),
              "keep": PARTS[part]["keep"], "command": command_line()}
    runs = []
    bit_settings = [5, 6] if part == "lenet300" else [None]
    for bits in bit_settings:
        m, before, after = cluster_run(pruned_path, data, bits, "linear",
                                       args.epochs[part][3], args)
        out = os.path.join(args.save_dir, f"{part}_clustered_{bits or 'conv8_fc5'}bit.keras")
        m.save(out)
        books = codebooks(m)
        distinct = {k.split("/")[-2]: len(v["centroids"]) for k, v in books.items()}
        log(f"{part} bits={bits}: error before fine-tuning {before:.2f} %, after {after:.2f} %, "
            f"distinct values {distinct}, saved {out}")
        runs.append({"bits": bits or "conv 8 / fc 5", "before": before, "after": after,
                     "distinct": distinct, "path": out})
    result["runs"] = runs
    if part == "lenet300" and not args.skip_init_table:
        table = []
        for init in ("linear", "density", "random", "kmeans++", "optimal"):
            for bits in (2, 3, 4, 5, 6):
                t = time.time()
                _, before, after = cluster_run(pruned_path, data, bits, init, 1, args, lr=1e-4)
                log(f"init {init:8s} bits {bits}: before {before:.2f} % after {after:.2f} % "
                    f"({time.time() - t:.0f} s)")
                table.append({"init": init, "bits": bits, "before": before, "after": after})
        result["init_table"] = table
    result["timing"] = step_ratio(pruned_path, data, bit_settings[0], args)
    log(f"step time: {result['timing']}")
    result["seconds"] = time.time() - t0
    with open(os.path.join(args.save_dir, f"{part}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def write_markdown(save_dir, args=None):
    if not any(os.path.exists(os.path.join(save_dir, f"{part}.json")) for part in PARTS):
        nothing_to_write(save_dir, "run --part lenet300 and --part lenet5 first")
    body = []
    for part, title in (("lenet300", "LeNet-300-100"), ("lenet5", "LeNet-5")):
        path = os.path.join(save_dir, f"{part}.json")
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        keep = ", ".join(f"{k} {v:.0%}" for k, v in r["keep"].items())
        body.append(f"### {title}\n\nCommand: `{r['command']}`  \nPruned (kept {keep}): "
                    f"test error {r['pruned_error']:.2f} %.\n")
        rows = [[run["bits"], f"{run['before']:.2f} %", f"{run['after']:.2f} %",
                 ", ".join(f"{k} {v}" for k, v in run["distinct"].items()),
                 f"`{run['path']}`"] for run in r["runs"]]
        body.append(markdown_table(["bits", "error after clustering (no fine-tuning)",
                                    "error after fine-tuning", "distinct nonzero values",
                                    "saved model"], rows))
        body.append("\nEvery kernel was asserted to have <= 2^bits distinct nonzero values and "
                    "exactly the zero mask it had before clustering.\n")
        for key in ("timing", "timing_jit"):
            if key not in r:
                continue
            t = r[key]
            if key + "_command" in r:
                body.append(f"Step timing re-measured with `{r[key + '_command']}`.  ")
            mode = "with `jit_compile=True` (XLA)" if t.get("jit_compile") else \
                "without XLA (Keras's `jit_compile='auto'` here)"
            how = ("the XLA path" if t.get("jit_compile") else
                   "the fused op" if t.get("fused_op") else "sparse matmul (fused op unavailable)")
            line = (f"Train step {mode} (batch {t.get('batch', 128)}, compiled "
                    f"`train_function`, median of {t.get('rounds', 21)} interleaved rounds of 25 "
                    f"steps): {t['plain_ms']:.2f} ms without, {t['clustered_ms']:.2f} ms with the "
                    f"clustering constraints ({how}): wall-time ratio **{t['ratio']:.3f}**")
            if "cpu_ratio" in t:
                line += (f"; process CPU time {t['plain_cpu_ms']:.2f} / "
                         f"{t['clustered_cpu_ms']:.2f} ms, ratio **{t['cpu_ratio']:.3f}**")
            if "sparse_ratio" in t and not t.get("jit_compile"):
                line += (f". Same run, constraints on TensorFlow's sparse matmul "
                         f"(`fused_op=False`): {t['sparse_ms']:.2f} ms, wall-time ratio "
                         f"{t['sparse_ratio']:.3f}, CPU-time ratio {t['sparse_cpu_ratio']:.3f}")
            body.append(line + ".\n")
        if "init_table" in r:
            inits = ["linear", "density", "random", "kmeans++", "optimal"]
            bits = sorted({row["bits"] for row in r["init_table"]})
            cell = {(row["init"], row["bits"]): row for row in r["init_table"]}
            rows = [[i] + [f"{cell[(i, b)]['before']:.2f} / {cell[(i, b)]['after']:.2f}"
                           for b in bits] for i in inits]
            body.append("Centroid initialisation (like the paper's Fig. 7/8), test error % "
                        "before / after 1 epoch of fine-tuning, same pruned model:\n")
            body.append(markdown_table(["init"] + [f"{b} bits" for b in bits], rows) + "\n")
    body.append(
        "**Step time.** The constraint runs after every optimizer step, inside the compiled "
        "step. Keras compiles these models without XLA here (`jit_compile='auto'` resolves to "
        "False on this CPU machine). There, on CPU, it is one fused TensorFlow op "
        "(`tfdc/native/cluster_op.cc`, built once per TensorFlow version at first use by "
        "`tfdc.cluster_op` and checked in a subprocess): one pass over the nonzeros for the "
        "clusters' sums, one write of the kernel. Without it (no compiler, a failed build, "
        "`fused_op=False`) it is two products with a fixed sparse one-hot matrix "
        "(`expand^T w`, `expand c`); under `jit_compile=True` a gather, a segment sum and a "
        "table lookup (XLA compiles neither sparse matmuls nor custom ops). History of the "
        "LeNet-300-100 wall-time ratio without XLA: 3.47x with TensorFlow's CPU gather / "
        "`unsorted_segment_sum` / `scatter_nd`; 1.24-1.35x with three sparse products; "
        "1.23-1.28x with two; with the fused op, six runs of the code above (five "
        "`--timing-only`, then the full `--part lenet300` run shown) gave 1.173, 1.109, 1.127, "
        "1.113, 1.095, 1.050 (median 1.111; the sparse-matmul model in the same runs "
        "1.18-1.28). For LeNet-5, whose step is 5x longer, the two are within the noise: "
        "fused 1.060, 1.053, 1.086 and sparse 1.111, 1.073, 1.048 in three runs. A perf "
        "profile of the fused op inside the step shows its time in "
        "the loads of the just-updated kernel and the clusters' running sums (hence four "
        "interleaved partial sums); a version that split both passes over TensorFlow's "
        "thread pool was slower in CPU time (1.24) and no faster in wall time. Under XLA the "
        "LeNet-300-100 ratio (above) is over the target: the XLA path is the gather / "
        "segment-sum one.\n")
    publish(args, "cluster", "Trained quantization (weight sharing)", "\n".join(body))


def main():
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--part", choices=list(PARTS) + ["report"], default="lenet300")
    p.add_argument("--save-dir", default="/tmp/tfdc_cluster")
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--retrain", action="store_true", help="ignore a cached pruned model")
    p.add_argument("--skip-init-table", action="store_true")
    p.add_argument("--jit", action="store_true",
                   help="with --timing-only: compile both models with jit_compile=True (XLA)")
    p.add_argument("--timing-only", action="store_true",
                   help="re-measure only the step-time ratio of an earlier run of --part")
    p.add_argument("--shift", type=nonnegative_int, default=0,
                   help="train on images randomly shifted by up to this many pixels")
    p.add_argument("--train-subset", type=nonnegative_int, default=0,
                   help="smoke test on fewer images (0: all)")
    p.add_argument("--epochs300", default=[20, 8, 8, 3], type=epoch_list(4),
                   help="dense, pruning, retraining, clustering epochs for LeNet-300-100 "
                        "(default 20,8,8,3)")
    p.add_argument("--epochs5", default=[6, 3, 3, 2], type=epoch_list(4),
                   help="the same for LeNet-5 (default 6,3,3,2)")
    add_no_write(p)
    args = p.parse_args()
    os.makedirs(args.save_dir, exist_ok=True)
    args.epochs = {"lenet300": args.epochs300, "lenet5": args.epochs5}
    if args.timing_only:
        path = os.path.join(args.save_dir, f"{args.part}.json")
        result = json.load(open(path))
        data = load_mnist(channels=PARTS[args.part]["channels"])
        bits = 5 if args.part == "lenet300" else None
        key = "timing_jit" if args.jit else "timing"
        result[key] = step_ratio(os.path.join(args.save_dir, f"{args.part}_pruned.keras"),
                                 data, bits, args)
        result[key + "_command"] = command_line()
        print(f"step time: {result[key]}")
        json.dump(result, open(path, "w"), indent=1)
    elif args.part != "report":
        run_part(args.part, args)
    write_markdown(args.save_dir, args)


if __name__ == "__main__":
    run(main)
