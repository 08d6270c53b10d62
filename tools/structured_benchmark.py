"""Neuron / channel pruning on real MNIST: smaller decoded models, faster inference.

Two networks, each measured as packed `.tflite` files in LiteRT (error on all
10,000 test images; the packed file is decoded in memory by
`tfdc.load_interpreter`), timed with LiteRT's own benchmark tool:

* LeNet-300-100: float baseline -> `tfdc.StructuredPruning` (fc1 / fc2
  hidden units, L2 criterion) -> `tfdc.shrink` -> export; then, on what
  remains, `tfdc.GradualPruning` + `tfdc.ClusteredFineTuning` (via
  `tfdc.demo.compress`) -> export ("combined").
* A MobileNet-style CNN (stem conv, inverted residual blocks: 1x1 expand,
  3x3 depthwise, 1x1 project, BatchNormalization, residual `Add`s; head conv,
  global pooling, Dense): float baseline with BatchNormalization ->
  `tfdc.StructuredPruning` (every prunable group, residual streams included)
  -> `tfdc.shrink` -> `tfdc.fold_batchnorm` -> export. The dense model is
  exported the same way (BN folded).

Latency: `python -m ai_edge_litert.tools.benchmark_litert_model` on the
decoded files, CPU (XNNPACK), a fixed thread count, the models of a network
run one after the other in each round (dense, pruned, dense, pruned, ...),
several rounds; the table gives the median of the per-round medians and the
median of the per-round ratios (the machine is shared: ratios are what
carries over). The tool reports 0.01 ms steps, too coarse for LeNet-300-100,
so the same rounds also time `Interpreter.invoke()` from Python. Memory: the
decoded model's bytes (what the phone holds after decoding) and the peak of
the activation tensors alive at once (a lower bound of LiteRT's arena).

    TFDC_MNIST=/work/shared/datasets/mnist.npz nice -n 10 python tools/structured_benchmark.py
    python tools/structured_benchmark.py --quick      # subset, few epochs: a smoke test

Trained float baselines are cached in --out (reused when their settings are
unchanged; --retrain to train again). Writes the `structured_lenet` and
`structured_cnn` sections of docs/BENCHMARKS.md (not with --quick unless
--write); `--networks lenet` or `cnn` runs and writes one of them.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdc  # noqa: E402
from tfdc.datasets import load_mnist  # noqa: E402
from tfdc.recipe import ShiftedImages, cosine_decay  # noqa: E402
from tools.benchmarks_md import markdown_table, write_section  # noqa: E402
from tool_args import comma_list, description, positive_int, run  # noqa: E402

# Settings of the full run: (epochs, learning rate) per stage.
LENET = {"float": (15, 1e-3), "structured": (16, 1e-3), "fractions": {"fc1": 0.62, "fc2": 0.5},
         "sparsity": {"fc1": 0.8, "fc2": 0.7, "fc3": 0.5}, "bits": {"fc1": 4, "fc2": 5, "fc3": 5},
         "prune_epochs": 12, "cluster_epochs": 3, "train": None}
# The CNN trains on the first 15,000 training images: on 2 shared cores an
# epoch of all 60,000 takes ~40 minutes.
CNN = {"float": (2, 2e-3), "structured": (2, 1e-3), "fraction": 0.45, "train": 15000}
QUICK = {"lenet": {"float": (2, 1e-3), "structured": (2, 1e-3), "prune_epochs": 2,
                   "cluster_epochs": 1, "train": 15000},
         "cnn": {"float": (1, 2e-3), "structured": (1, 1e-3), "train": 6000}}

# The CNN: (expansion, output channels, stride) per inverted residual block;
# a block with stride 1 and equal channels adds its input (residual).
CNN_STEM, CNN_HEAD = 32, 256
CNN_BLOCKS = [(6, 32, 1), (6, 32, 1), (6, 48, 2), (6, 48, 1), (6, 48, 1), (6, 96, 2),
              (6, 96, 1), (6, 96, 1)]


def mobilenet_style(input_shape=(28, 28, 1), stem=CNN_STEM, blocks=CNN_BLOCKS, head=CNN_HEAD,
                    num_classes=10):
    """A MobileNetV2-style network (ReLU6, BatchNormalization after every
    convolution, residual Adds where the shape allows). BatchNormalization
    momentum 0.9: the moving statistics settle within the few hundred steps
    this benchmark trains."""
    from keras import layers

    def conv_bn(x, filters, name, relu=True):
        x = layers.Conv2D(filters, 1 if name != "stem" else 3, padding="same", use_bias=False,
                          name=name)(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input(input_shape)
    x = conv_bn(inputs, stem, "stem")
    for i, (t, c, s) in enumerate(blocks, 1):
        h = conv_bn(x, x.shape[-1] * t, f"b{i}_expand")
        h = layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False,
                                   name=f"b{i}_dw")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"b{i}_dw_bn")(h)
        h = layers.ReLU(6.0, name=f"b{i}_dw_relu")(h)
        h = conv_bn(h, c, f"b{i}_project", relu=False)
        x = layers.Add(name=f"b{i}_add")([x, h]) if s == 1 and x.shape[-1] == c else h
    x = conv_bn(x, head, "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="mobilenet_style")


def compile_model(model, lr):
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def keras_error(model, x, y):
    return 1.0 - float(model.evaluate(x, y, batch_size=500, verbose=0)[1])


def float_baseline(name, build, data, settings, out, retrain, log):
    """Train (or reuse) the float model."""
    path = os.path.join(out, f"{name}_float.keras")
    meta_path = path + ".json"
    meta = json.loads(json.dumps({"settings": settings, "train": len(data.x)}))  # as stored
    if not retrain and os.path.exists(path) and os.path.exists(meta_path) \
            and json.load(open(meta_path)) == meta:
        log(f"{name}: reusing {os.path.relpath(path, ROOT)}")
        return keras.models.load_model(path), None
    keras.utils.set_random_seed(1234)
    model = build()
    epochs, lr = settings
    compile_model(model, lr)
    t = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=2, callbacks=[cosine_decay(lr, epochs)])
    seconds = time.perf_counter() - t
    model.save(path)
    json.dump(meta, open(meta_path, "w"))
    return model, seconds


def structured_stage(model, data, epochs, lr, fractions, criterion="l2", sample=None):
    """StructuredPruning over the first half of `epochs`, fine-tuning after
    (`sample`: training inputs for the activation criterion)."""
    compile_model(model, lr)
    begin = int(np.asarray(model.optimizer.iterations))
    steps = len(data) * epochs
    pruner = tfdc.StructuredPruning(fractions, criterion=criterion, data=sample,
                                    begin_step=begin,
                                    end_step=begin + max(1, steps // 2),
                                    frequency=max(1, steps // 2 // 20))
    t = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=2, callbacks=[pruner, cosine_decay(lr, epochs)])
    return time.perf_counter() - t


def decoded_copy(path, directory):
    """Decode a packed file once (what the phone's loader does) for the
    benchmark tool, which takes a plain `.tflite`."""
    data = tfdc.decode(open(path, "rb").read())
    out = os.path.join(directory, os.path.basename(path) + ".decoded.tflite")
    with open(out, "wb") as f:
        f.write(data)
    return out, len(data)


def activation_peak(decoded_bytes):
    """Peak bytes of the non-constant tensors alive at once, walking the
    operators in order (a lower bound of the arena LiteRT plans)."""
    from tfdc import tflite_schema
    model = tflite_schema.read(decoded_bytes)
    sub = model.subgraphs[0]
    itemsize = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 9: 1, 10: 8}

    def nbytes(i):
        t = sub.tensors[i]
        return int(np.prod(t.shape if t.shape is not None else [])) * itemsize.get(t.type, 4)

    constant = {i for i, t in enumerate(sub.tensors)
                if t.buffer and model.buffers[t.buffer].data is not None
                and len(model.buffers[t.buffer].data)}
    last_use = {}
    for k, op in enumerate(sub.operators):
        for i in op.inputs:
            if i >= 0:
                last_use[i] = k
    for i in sub.outputs:
        last_use[i] = len(sub.operators)
    live = {i for i in sub.inputs}
    peak = sum(nbytes(i) for i in live)
    for k, op in enumerate(sub.operators):
        live |= {i for i in op.outputs if i not in constant}
        peak = max(peak, sum(nbytes(i) for i in live))
        live = {i for i in live if last_use.get(i, -1) > k}
    return peak


def litert_latency(path, threads, runs):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "result.json")
        done = subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                               f"--model={path}", "--use_cpu", f"--num_threads={threads}",
                               f"--num_runs={runs}", "--warmup_runs=20",
                               f"--result_json={out}"], capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"benchmark_litert_model failed: {done.stderr[-2000:]}")
        return json.load(open(out))["latency"]["median_ms"]


def invoke_latency(path, threads, runs):
    """Median microseconds of `Interpreter.invoke()` (LiteRT's Python
    interpreter, XNNPACK, `threads` threads) over `runs` calls: finer than
    the benchmark tool's 0.01 ms, with the Python call's overhead in it."""
    from tfdc.runtime import interpreter_class
    interpreter = interpreter_class()(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    for _ in range(20):
        interpreter.invoke()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        interpreter.invoke()
        samples.append(time.perf_counter() - t)
    return 1e6 * statistics.median(samples)


def time_models(paths, threads, runs, rounds, log):
    """Interleaved: every model once per round, `rounds` rounds, with the
    benchmark tool and with the Python interpreter's invoke()."""
    times = {name: [] for name in paths}
    invoke = {name: [] for name in paths}
    for r in range(rounds):
        for name, path in paths.items():
            times[name].append(litert_latency(path, threads, runs))
            invoke[name].append(invoke_latency(path, threads, runs))
        log(f"  timing round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {t[-1]:.2f} ms / {invoke[n][-1]:.1f} us" for n, t in times.items()))
    return times, invoke


def run_lenet(args, data, test, log):
    from tfdc import demo
    from tfdc.models import lenet_300_100
    s = dict(LENET, **(QUICK["lenet"] if args.quick else {}))
    xte, yte = test
    out = args.out
    model, t_float = float_baseline("lenet_300_100", lenet_300_100, data, s["float"], out,
                                    args.retrain, log)
    result = {"times": {"float": t_float}}
    result["errors"] = {"float_keras": keras_error(model, xte, yte)}
    dense_path = os.path.join(out, "lenet_dense.tflite")
    tfdc.export(model, dense_path, batch_size=1)
    result["errors"]["dense"] = demo.tflite_error(dense_path, xte, yte)
    log(f"LeNet-300-100 float: {result['errors']['dense']:.2%} (LiteRT)")

    # The other importance criteria, same fractions and budget, from the same
    # float weights (structured stage only).
    epochs, lr = s["structured"]
    result["criteria"] = {}
    for criterion in args.criteria:
        other = keras.models.clone_model(model)
        other.set_weights(model.get_weights())
        keras.utils.set_random_seed(1234)
        structured_stage(other, data, epochs, lr, s["fractions"], criterion=criterion,
                         sample=data.x[:4096])
        path = os.path.join(out, f"lenet_structured_{criterion}.tflite")
        tfdc.export(tfdc.shrink(other), path, batch_size=1)
        result["criteria"][criterion] = demo.tflite_error(path, xte, yte)
        log(f"LeNet-300-100 structured, criterion {criterion}: "
            f"{result['criteria'][criterion]:.2%}")

    keras.utils.set_random_seed(1234)
    result["times"]["structured"] = structured_stage(model, data, epochs, lr, s["fractions"])
    report = tfdc.units(model)
    small = tfdc.shrink(model)
    structured_path = os.path.join(out, "lenet_structured.tflite")
    tfdc.export(small, structured_path, batch_size=1)
    result["errors"]["structured"] = demo.tflite_error(structured_path, xte, yte)
    log(f"LeNet-300-100 structured: {result['errors']['structured']:.2%}\n{report}")

    combined_path = os.path.join(out, "lenet_combined.tflite")
    compile_model(small, 1e-3)  # a fresh model: compress() evaluates it first
    combined = demo.compress(small, (data.x, data.y), test, sparsity=s["sparsity"],
                             bits=s["bits"], epochs=0, prune_epochs=s["prune_epochs"],
                             cluster_epochs=s["cluster_epochs"], out_path=combined_path,
                             lr=1e-3, verbose=2, log=log)
    result["errors"]["combined"] = combined["errors"]["tflite"]
    result["times"].update({k: combined["times"][k] for k in ("prune", "cluster")})
    result["float32_bytes"] = 4 * 266610
    result["units"] = report
    result["paths"] = {"dense": dense_path, "structured": structured_path,
                       "combined": combined_path}
    result["combined_report"] = combined["report"]
    return result


def run_cnn(args, data, test, log):
    from tfdc import demo
    s = dict(CNN, **(QUICK["cnn"] if args.quick else {}))
    xte, yte = test
    out = args.out
    model, t_float = float_baseline("mobilenet_style", mobilenet_style, data, s["float"], out,
                                    args.retrain, log)
    result = {"times": {"float": t_float}, "errors": {"float_keras": keras_error(model, xte, yte)}}
    dense_path = os.path.join(out, "cnn_dense.tflite")
    tfdc.export(tfdc.fold_batchnorm(model), dense_path, batch_size=1, check_kernels=False)
    result["errors"]["dense"] = demo.tflite_error(dense_path, xte, yte)
    log(f"CNN float: {result['errors']['dense']:.2%} (LiteRT)")

    epochs, lr = s["structured"]
    paths = {"dense": dense_path}
    if args.control:
        # The structured model trains `epochs` more than the float one: a
        # copy trained as long without pruning tells what that alone gives.
        control = keras.models.clone_model(model)
        control.set_weights(model.get_weights())
        keras.utils.set_random_seed(1234)
        compile_model(control, lr)
        t = time.perf_counter()
        control.fit(data, epochs=epochs, verbose=2, callbacks=[cosine_decay(lr, epochs)])
        result["times"]["control"] = time.perf_counter() - t
        paths["control"] = os.path.join(out, "cnn_control.tflite")
        tfdc.export(tfdc.fold_batchnorm(control), paths["control"], batch_size=1,
                    check_kernels=False)
        result["errors"]["control"] = demo.tflite_error(paths["control"], xte, yte)
        log(f"CNN float trained {epochs} more epochs: {result['errors']['control']:.2%}")

    keras.utils.set_random_seed(1234)
    result["times"]["structured"] = structured_stage(model, data, epochs, lr, s["fraction"])
    report = tfdc.units(model)
    small = tfdc.fold_batchnorm(tfdc.shrink(model))
    structured_path = os.path.join(out, "cnn_structured.tflite")
    tfdc.export(small, structured_path, batch_size=1, check_kernels=False)
    result["errors"]["structured"] = demo.tflite_error(structured_path, xte, yte)
    log(f"CNN structured: {result['errors']['structured']:.2%}\n{report}")
    result["units"] = report
    result["paths"] = dict(paths, structured=structured_path)
    return result


def measure(result, args, log):
    with tempfile.TemporaryDirectory() as d:
        decoded, sizes, peaks = {}, {}, {}
        for name, path in result["paths"].items():
            decoded[name], sizes[name] = decoded_copy(path, d)
            peaks[name] = activation_peak(open(decoded[name], "rb").read())
        times, invoke = time_models(decoded, args.threads, args.runs, args.rounds, log)
    result["decoded_bytes"], result["activation_peak"], result["latency"] = sizes, peaks, times
    result["invoke_us"] = invoke
    result["packed_bytes"] = {n: os.path.getsize(p) for n, p in result["paths"].items()}
    return result


def table(result, labels):
    dense_t = result["latency"]["dense"]
    rows = []
    for name, label in labels.items():
        t = result["latency"][name]
        ratios = [a / b for a, b in zip(dense_t, t)]
        u = result["invoke_us"][name]
        invoke_ratios = [a / b for a, b in zip(result["invoke_us"]["dense"], u)]
        rows.append([label, f"{result['errors'][name]:.2%}",
                     f"{result['packed_bytes'][name]:,}",
                     f"{result['decoded_bytes'][name]:,}",
                     f"{result['decoded_bytes']['dense'] / result['decoded_bytes'][name]:.2f}x",
                     f"{result['activation_peak'][name]:,}",
                     f"{statistics.median(t):.3f}",
                     f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                     f"{statistics.median(u):.1f}",
                     f"{statistics.median(invoke_ratios):.2f}x ({min(invoke_ratios):.2f}-"
                     f"{max(invoke_ratios):.2f})"])
    if min(min(t) for t in result["latency"].values()) < 0.1:
        rows.append(["(benchmark-tool latencies below 0.1 ms sit at its 0.01 ms resolution: "
                     "that ratio is coarse; the invoke() columns resolve them)"] + [""] * 9)
    headers = ["model", "error (LiteRT, 10,000 images)", "packed B", "decoded B (in memory)",
               "decoded: dense / this", "activations peak B", "benchmark tool: latency ms "
               "(median)", "benchmark tool: speed-up vs dense (median, min-max of rounds)",
               "invoke() us (median)", "invoke(): speed-up (median, min-max)"]
    return markdown_table(headers, rows)


def main():
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--quick", action="store_true", help="small subset, few epochs (smoke test)")
    p.add_argument("--networks", default="lenet,cnn", type=comma_list(["lenet", "cnn"]),
                   help="comma-separated: lenet, cnn (default both)")
    p.add_argument("--mnist", default=os.environ.get("TFDC_MNIST"))
    p.add_argument("--out", default=os.path.join(ROOT, "out", "structured_benchmark"))
    p.add_argument("--threads", type=positive_int, default=1,
                   help="LiteRT CPU threads (default 1)")
    p.add_argument("--runs", type=positive_int, default=300, help="inferences per benchmark call")
    p.add_argument("--rounds", type=positive_int, default=7, help="interleaved benchmark rounds")
    p.add_argument("--retrain", action="store_true", help="train the float baselines again")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="CNN: skip the dense control trained as long as the structured model")
    p.add_argument("--criteria", default="l1,activation",
                   help="LeNet-300-100: other importance criteria to compare with l2 "
                        "(structured stage only; '' for none)")
    p.add_argument("--write", action="store_true", help="write docs/BENCHMARKS.md with --quick")
    args = p.parse_args()
    if not args.mnist:
        sys.exit("structured_benchmark: pass --mnist PATH or set TFDC_MNIST to an mnist.npz")
    # A missing or malformed file: its own message (run), before anything is written.
    (xtr, ytr), test = load_mnist(args.mnist)
    if args.quick:
        args.out = args.out + "_quick"
    os.makedirs(args.out, exist_ok=True)

    def log(*a):
        print(*a, flush=True)

    networks = args.networks
    args.criteria = [c.strip() for c in args.criteria.split(",") if c.strip()]
    sections = {}
    summary = {}
    if "lenet" in networks:
        n = QUICK["lenet"]["train"] if args.quick else LENET["train"]
        data = ShiftedImages(xtr[:n], ytr[:n], batch_size=128, max_shift=2)
        r = measure(run_lenet(args, data, test, log), args, log)
        s = dict(LENET, **(QUICK["lenet"] if args.quick else {}))
        summary["lenet"] = r
        ratio = r["float32_bytes"] / r["packed_bytes"]["combined"]
        sections["lenet"] = (
            "LeNet-300-100 (784-300-100-10).\n\n"
            f"Float baseline {s['float'][0]} epochs; `tfdc.StructuredPruning({s['fractions']}, "
            f"criterion='l2')` {s['structured'][0]} epochs (removal over the first half); "
            "`tfdc.shrink`; then on the shrunk model `tfdc.GradualPruning"
            f"({s['sparsity']})` {s['prune_epochs']} epochs and `tfdc.ClusteredFineTuning"
            f"({s['bits']})` {s['cluster_epochs']} epochs (`tfdc.demo.compress`, shifted "
            "images, cosine learning rate).\n\n"
            + table(r, {"dense": "dense float (LeNet-300-100)",
                        "structured": "structured (hidden units removed)",
                        "combined": "structured + unstructured + clustered"})
            + "".join(f"\n\nCriterion `{c}` instead of `l2` (same fractions, epochs and "
                      f"float weights; structured stage only): {e:.2%} error."
                      for c, e in r["criteria"].items())
            + f"\n\nCombined file: {r['packed_bytes']['combined']:,} B = **{ratio:.1f}x** "
            f"smaller than float32 ({r['float32_bytes']:,} B) at "
            f"{r['errors']['combined']:.2%} error. Structured model "
            f"{r['decoded_bytes']['dense'] / r['decoded_bytes']['structured']:.2f}x smaller "
            f"in memory at {r['errors']['structured']:.2%}.\n\nUnits removed "
            "(`tfdc.units(model)`):\n\n" + r["units"].to_markdown()
            + "\n\nPacked file of the combined model:\n\n" + r["combined_report"].to_markdown())
    if "cnn" in networks:
        n = QUICK["cnn"]["train"] if args.quick else CNN["train"]
        data = ShiftedImages(xtr[:n, ..., None], ytr[:n], batch_size=128, max_shift=2)
        test4 = (test[0][..., None], test[1])
        r = measure(run_cnn(args, data, test4, log), args, log)
        s = dict(CNN, **(QUICK["cnn"] if args.quick else {}))
        summary["cnn"] = r
        blocks = ", ".join(f"({t}, {c}, {st})" for t, c, st in CNN_BLOCKS)
        sections["cnn"] = (
            "MobileNet-style CNN on 28x28x1 inputs.\n\n"
            f"Stem 3x3 conv {CNN_STEM}, inverted residual blocks (expansion, channels, stride) "
            f"{blocks}, head 1x1 conv {CNN_HEAD}, global average pooling, Dense 10; "
            "BatchNormalization after every convolution, ReLU6, residual `Add` in every block "
            "with stride 1 and equal channels. Trained on the first "
            f"{n or 60000:,} training images (shifted by up to 2 pixels): float baseline "
            f"{s['float'][0]} epochs (lr {s['float'][1]}); `tfdc.StructuredPruning("
            f"{s['fraction']}, criterion='l2')` on every prunable group (expand channels and "
            f"the residual streams, all branches of an `Add` together) {s['structured'][0]} "
            "epochs (removal over the first half); `tfdc.shrink`; `tfdc.fold_batchnorm`; "
            "export. The dense model is exported with its BatchNormalization folded too.\n\n"
            + table(r, dict({"dense": "dense float (BN folded)"},
                            **({"control": f"dense float + {s['structured'][0]} more epochs "
                                "(control: as long as the structured model)"}
                               if "control" in r["paths"] else {}),
                            structured="structured (channels removed, BN folded)"))
            + f"\n\nError: {r['errors']['dense']:.2%} dense vs {r['errors']['structured']:.2%} "
            f"structured ({100 * (r['errors']['structured'] - r['errors']['dense']):+.2f} "
            "points)"
            + (f"; the dense model trained as long: {r['errors']['control']:.2%} "
               f"(structured {100 * (r['errors']['structured'] - r['errors']['control']):+.2f} "
               "points)" if "control" in r["errors"] else "")
            + ".\n\nChannels removed (`tfdc.units(model)`, before BN folding):\n\n"
            + r["units"].to_markdown()
            + "\n\nTraining wall seconds (2 shared cores): " + ", ".join(
                f"{k} {v:.0f}" for k, v in r["times"].items() if v is not None))
    common = (
        "Real MNIST; error of the packed file in LiteRT on all 10,000 test images. Latency: "
        f"`python -m ai_edge_litert.tools.benchmark_litert_model --use_cpu "
        f"--num_threads={args.threads} --num_runs={args.runs}` (XNNPACK) on the decoded files, "
        f"the models of a network interleaved in each of {args.rounds} rounds; median of the "
        "rounds' medians, and the median (min-max) of the per-round ratios. In the same rounds, "
        f"the median of {args.runs} `Interpreter.invoke()` calls from Python (ai-edge-litert, "
        f"{args.threads} thread(s), XNNPACK; includes the Python call). Measured on a "
        "machine shared with other jobs: absolute times are noisy, ratios from the same "
        "rounds are what to compare. Memory: decoded model bytes (the weights the phone holds "
        "after decoding) and the peak of activation tensors alive at once.")
    titles = {"lenet": "Structured pruning: LeNet-300-100 hidden units removed",
              "cnn": "Structured pruning: MobileNet-style CNN channels removed"}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({k: {kk: vv for kk, vv in v.items() if kk not in ("units", "combined_report")}
                   for k, v in summary.items()}, f, indent=2, default=str)
    for name, text in sections.items():
        print("\n" + text)
        if not args.quick or args.write:
            write_section(f"structured_{name}", titles[name], common + "\n\n" + text)


if __name__ == "__main__":
    run(main)
