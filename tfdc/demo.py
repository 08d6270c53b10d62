"""The end-to-end Deep Compression demo behind `tfdc demo`.

Train a float baseline and hand it to `tfdc.compress`, which plans per-layer
sparsity and bits for a budget, prunes with `tfdc.GradualPruning`, quantizes
by weight sharing with `tfdc.ClusteredFineTuning` and exports the packed
`.tflite` with `tfdc.export`; then decode it again and measure the test error
in the LiteRT interpreter. The budget is `target_bytes` or
`max_error_increase` if given, else float32 bytes / `DEFAULT_RATIO`. With
hand-set per-layer `sparsity` / `bits`, `run()` uses `compress()` instead:
the same stages with those settings (also used by `tools/paper_benchmark.py`).
`run()` adds data loading, printing and plots.

Example:

```python
from tfdc import demo
result = demo.run(demo.DemoConfig(quick=True, out="tfdc_demo_out"))
print(result["ratio"], result["errors"]["tflite"])
```
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfdc.compressor import DEFAULT_CONFIDENCE
from tfdc.values import to_numpy

__all__ = ["DemoConfig", "run", "compress", "tflite_error", "tflite_mistakes", "tflite_outputs",
           "PAPER_SPARSITY", "PAPER_BITS", "TFDC_SPARSITY", "TFDC_BITS", "DEFAULT_RATIO",
           "load_dataset"]

# Without a budget or hand-set settings the demo asks `tfdc.compress` for a
# file this many times smaller than float32: the ratio of soft weight-sharing
# on LeNet-300-100 (Ullrich et al. 2017, 64x), one of the published anchors
# beyond the paper's 40x.
DEFAULT_RATIO = 64

# The per-layer settings of the paper's Tables 2 and 3 (fraction pruned =
# 1 - weights kept; bits of the shared-value index).
PAPER_SPARSITY = {
    "lenet_300_100": {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74},
    "lenet5": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "fc2": 0.81},
}
PAPER_BITS = {
    "lenet_300_100": 6,
    "lenet5": {"conv1": 8, "conv2": 8, "fc1": 5, "fc2": 5},
}
# The hand-set pipeline's defaults for whichever of sparsity / bits is not
# given: sparser than the paper where the error allows it (see
# the `export` section of docs/BENCHMARKS.md: lenet300-best; for LeNet-5 the
# `paper` section, where fc1 keeps 7 % to stay below tfmot's error).
TFDC_SPARSITY = {
    "lenet_300_100": {"fc1": 0.93, "fc2": 0.915, "fc3": 0.75},
    "lenet5": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.93, "fc2": 0.81},
}
TFDC_BITS = {
    "lenet_300_100": {"fc1": 4, "fc2": 5, "fc3": 5},
    "lenet5": {"conv1": 8, "conv2": 8, "fc1": 5, "fc2": 5},
}

# Fewer training images than this give no baseline worth compressing (and
# with a budget a tenth of them, at least one, is set aside for validation).
MIN_TRAIN_IMAGES = 100
# A float model above this test error (random guessing on 10 classes is 90 %)
# is far from trained: the demo says so rather than report its figures
# as if they meant something.
UNTRAINED_ERROR = 0.5


@dataclasses.dataclass
class DemoConfig:
    """Settings of one demo run (the `tfdc demo` options).

    Args:
        network: "lenet_300_100" or "lenet5".
        dataset: "mnist" or "digits" (scikit-learn's bundled 8x8 digits).
        mnist: path of mnist.npz (else `$TFDC_MNIST`, Keras's cache, download).
        sparsity: None (`tfdc.compress` plans it), or hand-set: "paper"
            (the paper's Tables 2-3), a float, or a dict layer -> sparsity.
        bits: None (planned), or hand-set: "paper", an int, or a dict layer
            -> bits. With either one hand-set, the demo runs `compress()`
            with it and tfdc's per-layer defaults (`TFDC_SPARSITY`,
            `TFDC_BITS`) for the other.
        epochs, prune_epochs, cluster_epochs: epochs of the three stages
            (None: defaults that depend on `quick`).
        train_size, test_size: use only the first n examples (None: all;
            `train_size` at least `MIN_TRAIN_IMAGES`).
        quick: a short run (3 + 4 + 1 epochs, about a minute on 2 cores).
        target_bytes, max_error_increase: the budget of `tfdc.compress`
            (give at most one; `sparsity` and `bits` must then be None).
            Neither, and no hand-set settings: `target_bytes` is the float32
            size / `DEFAULT_RATIO`. The last 10 % of the training images (at
            most 5,000) are `tfdc.compress`'s validation data.
        confidence: with `max_error_increase`, `tfdc.compress`'s
            `confidence` (`DEFAULT_CONFIDENCE`, 0.9; None: the measured
            increase must be within the budget).
        shift: training images are randomly shifted by up to this many
            pixels (`tfdc.recipe.ShiftedImages`; 0 turns it off). None: 2,
            or 0 with `quick` (augmentation only pays off over many epochs).
        out: output folder for the packed model, reports and plots.
        plots: write the PNG figures (needs matplotlib).
        verbose: Keras's verbosity (1: progress bars).
        seed: random seed.
    """
    network: str = "lenet_300_100"
    dataset: str = "mnist"
    mnist: str = None
    sparsity: object = None
    bits: object = None
    epochs: int = None
    prune_epochs: int = None
    cluster_epochs: int = None
    train_size: int = None
    test_size: int = None
    batch_size: int = 128
    quick: bool = False
    shift: int = None
    target_bytes: int = None
    max_error_increase: float = None
    confidence: float = DEFAULT_CONFIDENCE
    out: str = "tfdc_demo_out"
    plots: bool = True
    verbose: int = 1
    seed: int = 1234

    def resolved(self):
        """A copy with every None default filled in."""
        c = dataclasses.replace(self)
        quick = self.quick
        if c.shift is None:
            c.shift = 0 if quick else 2
        if c.epochs is None:
            c.epochs = 3 if quick else 15
        if c.prune_epochs is None:
            c.prune_epochs = 4 if quick else max(2, c.epochs + 3)
        if c.cluster_epochs is None:
            c.cluster_epochs = 1 if quick else max(1, c.epochs // 4)
        if c.target_bytes is not None or c.max_error_increase is not None or (
                c.sparsity is None and c.bits is None):
            return c  # tfdc.compress plans the sparsity and bits
        if c.sparsity is None or c.sparsity == "paper":
            c.sparsity = (TFDC_SPARSITY if c.sparsity is None else PAPER_SPARSITY)[c.network]
        if c.bits is None or c.bits == "paper":
            c.bits = (TFDC_BITS if c.bits is None else PAPER_BITS)[c.network]
        return c


def load_dataset(name="mnist", network="lenet_300_100", mnist=None):
    """`((x_train, y_train), (x_test, y_test))` for `network`'s input shape."""
    from tfdc import datasets
    channels = network == "lenet5"
    if name == "mnist":
        return datasets.load_mnist(mnist, channels=channels)
    if name == "digits":
        return datasets.load_digits(channels=channels)
    raise ValueError(f"unknown dataset {name!r}: expected 'mnist' or 'digits'")


def build_model(network):
    from tfdc import models
    if network == "lenet_300_100":
        return models.lenet_300_100()
    if network == "lenet5":
        return models.lenet5()
    raise ValueError(f"unknown network {network!r}: expected 'lenet_300_100' or 'lenet5'")


def tflite_error(model_or_path, x, y, batch=500, num_threads=None, plain=False,
                 from_logits=None):
    """Top-1 error (a fraction) of a packed or plain `.tflite` model on
    `(x, y)`, run in the LiteRT interpreter (`tfdc.load_interpreter`);
    `plain=True` hands the bytes to the interpreter as they are (for a
    decoded file, which keeps its tfdc section entry). Labels and outputs as
    `tfdc.mistakes.mistakes` takes them (`from_logits`: a single binary
    output's kind); a model with integer input / output (full-integer
    conversion with int8 I/O) gets `x` quantized and its outputs dequantized
    with the tensors' scales."""
    return float(np.mean(tflite_mistakes(model_or_path, x, y, batch, num_threads, plain,
                                         from_logits)))


def tflite_mistakes(model_or_path, x, y, batch=500, num_threads=None, plain=False,
                    from_logits=None):
    """Which examples of `(x, y)` the `.tflite` model gets wrong (a bool
    array of len(y)), run as `tflite_error` runs it."""
    from tfdc.mistakes import mistakes
    outputs = tflite_outputs(model_or_path, x, batch, num_threads, plain)
    return mistakes(outputs.reshape(len(outputs), -1), y, from_logits)


def tflite_outputs(model_or_path, x, batch=500, num_threads=None, plain=False,
                   every_output=False):
    """The `.tflite` model's (first) output on every example of `x`, as real
    values: run in the LiteRT interpreter in batches of `batch` (one at a
    time for a fixed-batch model), an integer input quantized with its scale
    and an integer output dequantized. For a model with several inputs, `x`
    is a list of arrays in the Keras model's input order (which `tfdc.export`
    gives the file's inputs) or a dict of them keyed by the inputs' names.
    `every_output`: a list of all the outputs, in the Keras model's order
    (`tfdc.export` gives the file that order too)."""
    from tfdc.runtime import interpreter_class, load_interpreter, read_model_bytes
    kwargs = {"num_threads": num_threads} if num_threads else {}
    if plain:
        content = read_model_bytes(model_or_path)
        interpreter = interpreter_class()(model_content=content, **kwargs)
    else:
        interpreter = load_interpreter(model_or_path, **kwargs)
    details = interpreter.get_input_details()
    xs = (_by_input(interpreter, details, x) if isinstance(x, dict) else list(x)
          if isinstance(x, (list, tuple)) else [x])
    xs = [np.asarray(a) for a in xs]
    if len(xs) != len(details):
        raise ValueError(f"the model has {len(details)} inputs, x has {len(xs)} arrays")
    n = len(xs[0])
    # A model exported with a fixed batch (`batch_size=1`) runs one example
    # at a time; a dynamic-batch model is resized to `batch`.
    batch = 1 if details[0]["shape_signature"][0] > 0 else min(batch, n)
    for inp, a in zip(details, xs):
        if batch == 1 and inp["shape"][0] != 1:
            raise ValueError(f"cannot evaluate a model with a fixed batch of {inp['shape'][0]}")
        interpreter.resize_tensor_input(inp["index"], [batch] + list(a.shape[1:]))
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    outs = interpreter.get_output_details()
    outs = outs if every_output else outs[:1]
    for i, (inp, a) in enumerate(zip(details, xs)):
        in_scale, in_zero = inp.get("quantization", (0.0, 0))
        if in_scale and np.issubdtype(inp["dtype"], np.integer):  # an integer input: quantize
            info = np.iinfo(inp["dtype"])
            a = np.clip(np.round(np.asarray(a, np.float32) / in_scale) + in_zero, info.min,
                        info.max)
        xs[i] = a.astype(inp["dtype"])
    parts = [[] for _ in outs]
    for start in range(0, n, batch):
        for inp, a in zip(details, xs):
            chunk = a[start:start + batch]
            if len(chunk) < batch:  # pad the last batch instead of re-allocating
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:],
                                                        chunk.dtype)])
            interpreter.set_tensor(inp["index"], chunk)
        interpreter.invoke()
        for part, out in zip(parts, outs):
            part.append(interpreter.get_tensor(out["index"])[:min(batch, n - start)])
    outputs = []
    for part, out in zip(parts, outs):
        values = np.concatenate(part)
        scale, zero_point = out.get("quantization", (0.0, 0))
        if scale and np.issubdtype(values.dtype, np.integer):
            # Real values, so a binary unit's threshold and a loss hold.
            values = (values.astype(np.float32) - zero_point) * scale
        outputs.append(values)
    return outputs if every_output else outputs[0]


def _by_input(interpreter, details, x):
    """A dict of input arrays in the order of the file's `details`: by the
    signature's input names (`tfdc.export` names them as the Keras model's
    inputs, which is how Keras reads a dict, whether the model was built
    with a list or a dict of inputs), else in the keys' sorted order (how
    Keras flattens a dict of inputs, and so the file's order)."""
    try:
        named = interpreter.get_signature_runner().get_input_details()
    except ValueError:  # no signature, or several
        named = {}
    if set(x) == set(named) and len(named) == len(details):
        key = {d["index"]: name for name, d in named.items()}
        return [x[key[d["index"]]] for d in details]
    return [x[k] for k in sorted(x)]


class _SparsityRecorder:
    """Records `logs["sparsity"]` (set by GradualPruning) every few steps."""

    def __new__(cls, every=10):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.steps, self.values, self._step0 = [], [], None

            def on_train_begin(self, logs=None):
                self._step0 = int(np.asarray(self.model.optimizer.iterations))
                self._n = 0

            def on_train_batch_end(self, batch, logs=None):
                self._n += 1
                if logs and "sparsity" in logs and (self._n % every == 0 or self._n == 1):
                    self.steps.append(self._step0 + self._n)
                    self.values.append(float(logs["sparsity"]))

        return Recorder()


def _kernel(model, name):
    return np.array(model.get_layer(name).kernel.numpy())


def _error(model, x, y, batch_size):
    return 1.0 - float(model.evaluate(x, y, batch_size=max(batch_size, 512), verbose=0)[1])


def compress(model, train, test, *, sparsity, bits, epochs, prune_epochs, cluster_epochs,
             out_path, batch_size=128, lr=1e-3, stage_lr=(1.0, 0.5, 0.1), shift=2, verbose=1,
             track_layer=None, log=print):
    """Baseline → pruning → trained quantization → packed `.tflite`.

    `model` must be compiled with `metrics=["accuracy"]`. Every stage trains
    on randomly shifted images (`shift` pixels, `tfdc.recipe.ShiftedImages`)
    with a cosine learning-rate decay starting at `lr` times `stage_lr` (by
    default `lr`, `lr / 2` and `lr / 10`) for the baseline, pruning and
    clustering stages, each with a
    fresh Adam optimizer. The pruning ramp takes the first 45 % of
    `prune_epochs`; the rest retrains the sparse network with fixed masks
    (the paper's retraining). The model is exported for on-device inference
    with a batch size of 1.

    Returns:
        A dict: `errors` (float, pruned, clustered, tflite: fractions),
        `times` (seconds per stage), `report` (the `tfdc.ExportReport`),
        `path`, `packed_bytes`, `float_bytes` (4 bytes per parameter),
        `snapshots` (the tracked layer's kernel after each stage),
        `codebook`, `schedule` (steps, scheduled, measured steps, measured).
    """
    import tfdc
    from tfdc.exporter import export
    from tfdc.recipe import ShiftedImages, cosine_decay

    (xtr, ytr), (xte, yte) = train, test
    errors, times, snapshots = {}, {}, {}
    data = ShiftedImages(xtr, ytr, batch_size=batch_size, max_shift=shift)
    lr_base, lr_prune, lr_cluster = (lr * f for f in stage_lr)
    steps_per_epoch = len(data)

    log(f"\n[1/4] Training the float baseline ({epochs} epochs)")
    t = time.perf_counter()
    if epochs:
        model.fit(data, epochs=epochs, verbose=verbose, callbacks=[cosine_decay(lr_base, epochs)])
    times["baseline"] = time.perf_counter() - t
    errors["float"] = _error(model, xte, yte, batch_size)
    log(f"      float test error: {errors['float']:.2%}")
    if track_layer:
        snapshots["dense"] = _kernel(model, track_layer)

    log(f"\n[2/4] Pruning with tfdc.GradualPruning ({prune_epochs} epochs)")
    _recompile(model, lr_prune)  # before reading the step: a new optimizer starts at 0
    begin = int(np.asarray(model.optimizer.iterations))
    total = prune_epochs * steps_per_epoch
    end = begin + max(1, (45 * total) // 100)
    pruner = tfdc.GradualPruning(sparsity, begin_step=begin, end_step=end,
                                 frequency=max(1, (end - begin) // 30))
    recorder = _SparsityRecorder(every=max(1, total // 120))
    t = time.perf_counter()
    model.fit(data, epochs=prune_epochs, verbose=verbose,
              callbacks=[pruner, recorder, cosine_decay(lr_prune, prune_epochs)])
    times["prune"] = time.perf_counter() - t
    errors["pruned"] = _error(model, xte, yte, batch_size)
    report = tfdc.sparsity(model)
    log(f"      pruned test error: {errors['pruned']:.2%}, sparsity {report.sparsity:.1%}")
    if track_layer:
        snapshots["pruned"] = _kernel(model, track_layer)
    steps = np.arange(begin, begin + total + 1)
    sizes = {name: layer.weights for name, layer in report.items()}
    scheduled = []
    for step in steps:  # weighted over the pruned kernels, as logs["sparsity"]
        per_kernel = pruner.sparsity_at(int(step))
        n = sum(sizes[name] for name in per_kernel)
        scheduled.append(sum(v * sizes[name] for name, v in per_kernel.items()) / n)
    schedule = (steps, np.array(scheduled), np.array(recorder.steps), np.array(recorder.values))

    log(f"\n[3/4] Trained quantization with tfdc.ClusteredFineTuning "
        f"({cluster_epochs} epoch{'' if cluster_epochs == 1 else 's'})")
    clusterer = tfdc.ClusteredFineTuning(bits=bits)
    _recompile(model, lr_cluster)
    t = time.perf_counter()
    model.fit(data, epochs=cluster_epochs, verbose=verbose,
              callbacks=[clusterer, cosine_decay(lr_cluster, cluster_epochs)])
    times["cluster"] = time.perf_counter() - t
    errors["clustered"] = _error(model, xte, yte, batch_size)
    log(f"      clustered test error: {errors['clustered']:.2%}")
    codebook = None
    if track_layer:
        snapshots["clustered"] = _kernel(model, track_layer)
        codebook = _codebook_of(model, track_layer, snapshots["clustered"])

    log("\n[4/4] Exporting the packed .tflite with tfdc.export")
    t = time.perf_counter()
    export_report = export(model, out_path, batch_size=1)
    times["export"] = time.perf_counter() - t
    t = time.perf_counter()
    errors["tflite"] = tflite_error(out_path, xte, yte)
    times["tflite_eval"] = time.perf_counter() - t
    float_bytes = 4 * int(model.count_params())
    return {"errors": errors, "times": times, "report": export_report, "path": out_path,
            "packed_bytes": os.path.getsize(out_path), "float_bytes": float_bytes,
            "snapshots": snapshots, "codebook": codebook, "schedule": schedule,
            "sparsity_report": report}


def _recompile(model, lr):
    """Same loss and metrics, a fresh Adam: the moments of the dense weights
    are stale once the network is pruned or clustered."""
    import keras
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=model.loss, metrics=["accuracy"])


def _codebook_of(model, layer_name, clustered):
    """The shared values of a layer: `tfdc.codebooks` if it knows the layer,
    else the distinct nonzero values of the clustered kernel."""
    try:
        import tfdc
        books = tfdc.codebooks(model)
        for key, value in dict(books).items():
            if layer_name in str(key).split("/"):
                values = value["centroids"] if isinstance(value, dict) else value
                return np.asarray(values, dtype=np.float64).ravel()
    except Exception:  # a display nicety: never fail the demo for it
        pass
    values = np.unique(clustered[clustered != 0])
    return values if values.size <= 1024 else None


def layer_sizes(report):
    """Per-kernel bytes at each stage, for `plots.size_bars`, from an
    `ExportReport`: dense float32; pruned (float32 values + fixed-width
    relative indices); + quantized (fixed-width codebook indices + codebook);
    + Huffman coded (the packed record). Biases are left out."""
    rows = []
    for layer in report.layers:
        if len(layer.shape) < 2:
            continue
        values = layer.nnz if layer.sparse else layer.weights
        pruned_bits = values * 8 * layer.elem_size + layer.gap_symbols * layer.index_bits_pq
        rows.append({"name": layer.name, "dense": layer.raw_bytes,
                     "pruned": int(np.ceil(pruned_bits / 8)),
                     "quantized": int(np.ceil(layer.pq_bits / 8)) if layer.codebook_size else None,
                     "huffman": layer.record_bytes})
    return sorted(rows, key=lambda row: row["name"])  # conv1, conv2, fc1, ...


def run(config, log=print):
    """Run the demo; returns the dict of `compress` plus `ratio` and `out`."""
    import keras

    from tfdc.exporter import write_atomically
    from tfdc.unpack import decode

    c = config.resolved()
    if c.train_size is not None and c.train_size < MIN_TRAIN_IMAGES:
        raise ValueError(f"train_size {c.train_size}: the demo needs at least "
                         f"{MIN_TRAIN_IMAGES} training images to train a float model worth "
                         f"compressing")
    hand = c.sparsity is not None or c.bits is not None
    if c.target_bytes is not None or c.max_error_increase is not None:
        if c.target_bytes is not None and c.max_error_increase is not None:
            raise ValueError("give at most one budget: target_bytes or max_error_increase")
        if hand:
            raise ValueError("with a budget (target_bytes / max_error_increase) tfdc.compress "
                             "plans the sparsity and bits: do not give sparsity or bits")
    keras.utils.set_random_seed(c.seed)
    model = build_model(c.network)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    budget = not hand
    default_budget = budget and c.target_bytes is None and c.max_error_increase is None
    if hand:
        _validate(model, c)
    elif default_budget:
        c.target_bytes = default_target_bytes(model)
    (xtr, ytr), (xte, yte) = load_dataset(c.dataset, c.network, c.mnist)
    if c.train_size:
        xtr, ytr = xtr[:c.train_size], ytr[:c.train_size]
    if c.test_size:
        xte, yte = xte[:c.test_size], yte[:c.test_size]
    if budget:
        return _run_budget(model, c, (xtr, ytr), (xte, yte), log, default_budget)
    log(f"tfdc demo: {c.network} on {c.dataset} ({len(xtr):,} training / {len(xte):,} test "
        f"images); sparsity {_describe(c.sparsity, '{:.0%}')}, bits {_describe(c.bits, '{}')}")

    os.makedirs(c.out, exist_ok=True)
    path = os.path.join(c.out, f"{c.network}.tflite")
    track = "fc1"
    result = compress(model, (xtr, ytr), (xte, yte), sparsity=c.sparsity, bits=c.bits,
                      epochs=c.epochs, prune_epochs=c.prune_epochs,
                      cluster_epochs=c.cluster_epochs, out_path=path, batch_size=c.batch_size,
                      shift=c.shift, verbose=c.verbose, track_layer=track, log=log,
                      # A short run cannot afford the full run's small late rates.
                      stage_lr=(1.0, 1.0, 0.3) if c.quick else (1.0, 0.5, 0.1))

    with open(path, "rb") as f:
        packed = f.read()
    decoded = decode(packed)
    decoded_path = os.path.join(c.out, f"{c.network}.decoded.tflite")
    write_atomically(decoded_path, decoded)
    decoded_error = tflite_error(decoded, xte, yte, plain=True)
    report = result["report"]
    write_atomically(os.path.join(c.out, "report.md"), report.to_markdown().encode())
    write_atomically(os.path.join(c.out, "report.json"),
                     json.dumps(report.to_dict(), indent=2, default=str).encode())

    ratio = result["float_bytes"] / result["packed_bytes"]
    result.update(ratio=ratio, out=c.out, decoded_path=decoded_path,
                  decoded_bytes=len(decoded), decoded_error=decoded_error, config=c)
    log("\n" + report.to_text())
    e = result["errors"]
    _warn_untrained(e["float"], len(xtr), c.epochs, log)
    log(f"\nTest error: float {e['float']:.2%} -> pruned {e['pruned']:.2%} -> "
        f"clustered {e['clustered']:.2%} -> packed .tflite in LiteRT {e['tflite']:.2%} "
        f"(decoded file: {decoded_error:.2%})")
    log(f"Size: {result['float_bytes']:,} B float32 -> {result['packed_bytes']:,} B packed "
        f"({len(decoded):,} B decoded .tflite)")
    log(f"Compression ratio: {ratio:.1f}x")

    if c.plots:
        result["plots"] = write_plots(result, c.out, track, c.network)
        log("Plots: " + ", ".join(result["plots"]))
    log(f"Packed model: {path}")
    return result


def _warn_untrained(float_error, n_train, epochs, log):
    if float_error > UNTRAINED_ERROR:
        log(f"      note: the float model is far from trained ({float_error:.0%} test error "
            f"after {epochs} epochs on {n_train:,} images): the compressed model's figures "
            f"say little; give more epochs or training images")


def default_target_bytes(model):
    """The demo's default budget: float32 bytes / `DEFAULT_RATIO`."""
    return int(4 * model.count_params() // DEFAULT_RATIO)


def _run_budget(model, c, train, test, log, default_budget=False):
    """The demo with a budget: train the float model, then `tfdc.compress`."""
    import tfdc
    from tfdc.exporter import write_atomically
    from tfdc.recipe import ShiftedImages, cosine_decay
    from tfdc.unpack import decode

    (xtr, ytr), (xte, yte) = train, test
    n_val = min(5000, max(1, len(xtr) // 10))
    x_val, y_val = xtr[-n_val:], ytr[-n_val:]
    xtr, ytr = xtr[:-n_val], ytr[:-n_val]
    budget = (f"target {c.target_bytes:,} B" if c.target_bytes is not None
              else f"at most {c.max_error_increase} points more validation error"
              + (f" ({c.confidence:.0%} confidence)" if c.confidence is not None else ""))
    if default_budget:
        budget += f" (float32 size / {DEFAULT_RATIO}, the default)"
    log(f"tfdc demo: {c.network} on {c.dataset} ({len(xtr):,} training / {n_val:,} validation "
        f"/ {len(xte):,} test images); tfdc.compress to a budget: {budget}")
    os.makedirs(c.out, exist_ok=True)
    path = os.path.join(c.out, f"{c.network}.tflite")
    log(f"\n[1/2] Training the float baseline ({c.epochs} epochs)")
    t = time.perf_counter()
    data = ShiftedImages(xtr, ytr, batch_size=c.batch_size, max_shift=c.shift, seed=c.seed)
    if c.epochs:
        model.fit(data, epochs=c.epochs, verbose=c.verbose,
                  callbacks=[cosine_decay(1e-3, c.epochs)])
    baseline_s = time.perf_counter() - t
    float_error = _error(model, xte, yte, c.batch_size)
    log(f"      float test error: {float_error:.2%}")
    _warn_untrained(float_error, len(xtr), c.epochs, log)
    log("\n[2/2] tfdc.compress: plan, prune, cluster, export")
    epochs = None
    if c.prune_epochs is not None or c.cluster_epochs is not None:
        # 0 is not "the default": tfdc.compress refuses it, saying so.
        epochs = (c.prune_epochs if c.prune_epochs is not None else (4 if c.quick else 8),
                  c.cluster_epochs if c.cluster_epochs is not None else 1)
    kwargs = ({"target_bytes": c.target_bytes} if c.target_bytes is not None
              else {"max_error_increase": c.max_error_increase, "confidence": c.confidence})
    result = tfdc.compress(model, data, (x_val, y_val), path=path, epochs=epochs,
                           batch_size=c.batch_size, verbose=1, log=log, **kwargs)
    with open(path, "rb") as f:
        packed = f.read()
    decoded = decode(packed)
    decoded_path = os.path.join(c.out, f"{c.network}.decoded.tflite")
    write_atomically(decoded_path, decoded)
    tflite = tflite_error(path, xte, yte)
    decoded_error = tflite_error(decoded, xte, yte, plain=True)
    report = result.report
    write_atomically(os.path.join(c.out, "report.md"), report.to_markdown().encode())
    write_atomically(os.path.join(c.out, "report.json"),
                     json.dumps(report.to_dict(), indent=2, default=str).encode())
    log("\n" + str(result.plan))
    log("\n" + report.to_text())
    log(f"\nTest error: float {float_error:.2%} -> packed .tflite in LiteRT {tflite:.2%} "
        f"(decoded file: {decoded_error:.2%})")
    log(f"Size: {result.float_bytes:,} B float32 -> {result.packed_bytes:,} B packed "
        f"({len(decoded):,} B decoded .tflite)")
    log(f"Compression ratio: {result.ratio:.1f}x")
    log(("Budget met: " if result.met else "BUDGET MISSED: ") + result.message)
    out = {"errors": {"float": float_error, "tflite": tflite}, "path": path,
           "packed_bytes": result.packed_bytes, "float_bytes": result.float_bytes,
           "ratio": result.ratio, "out": c.out, "decoded_path": decoded_path,
           "decoded_bytes": len(decoded), "decoded_error": decoded_error, "config": c,
           "report": report, "compress": result,
           "times": dict(result.times, baseline=baseline_s)}
    if c.plots:
        out["plots"] = _budget_plots(model, result.model, report, c.out, c.network)
        log("Plots: " + ", ".join(out["plots"]))
    log(f"Packed model: {path}")
    return out


def _budget_plots(float_model, compressed, report, out, network, layer="fc1"):
    """The figures of a `tfdc.compress` run: the tracked layer's weights
    before and after (with its shared values), and storage per layer."""

    from tfdc import plots
    from tfdc.cluster import codebooks
    paths = []
    kernel = compressed.get_layer(layer).kernel
    book = codebooks(compressed).get(kernel.path)
    paths.append(plots.weight_histograms(
        os.path.join(out, f"weights_{layer}.png"),
        to_numpy(float_model.get_layer(layer).kernel),
        clustered=to_numpy(kernel),
        centroids=None if book is None else book["centroids"], layer=f"{network} / {layer}"))
    return paths + _size_plot(report, out, network)


def _size_plot(report, out, network):
    """`[sizes.png]`: storage per layer of `report` (none if it has no rows)."""
    from tfdc import plots
    rows = layer_sizes(report)
    return [plots.size_bars(os.path.join(out, "sizes.png"), rows,
                            title=f"{network}: storage per layer")] if rows else []


def _validate(model, c):
    """Fail on a bad sparsity / bits / layer name now, not after training."""
    from tfdc.select import check_settings
    check_settings(model, c.sparsity, c.bits)


def write_plots(result, out, layer, network):
    """Write the three figures of a `compress` result into `out`."""
    from tfdc import plots
    paths = []
    snaps = result["snapshots"]
    if "dense" in snaps:
        paths.append(plots.weight_histograms(
            os.path.join(out, f"weights_{layer}.png"), snaps["dense"], snaps.get("pruned"),
            snaps.get("clustered"), result.get("codebook"), layer=f"{network} / {layer}"))
    paths += _size_plot(result["report"], out, network)
    steps, scheduled, msteps, measured = result["schedule"]
    paths.append(plots.sparsity_schedule(os.path.join(out, "sparsity.png"), steps, scheduled,
                                         msteps, measured,
                                         title=f"{network}: pruning schedule (all kernels)"))
    return paths


def _describe(value, fmt):
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt.format(v)}" for k, v in value.items())
    return fmt.format(value)
