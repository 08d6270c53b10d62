"""Sensitivity analysis: validation loss and error of each layer pruned or
clustered on its own, without retraining (Han et al. 2015, "Learning both
Weights and Connections", Fig. 5).

`sensitivity(model, validation_data)` takes every compressible layer
(`tfdc.layers`: Dense, Conv, DepthwiseConv, Embedding, LSTM/GRU kernels...)
in turn, prunes its kernels by magnitude to each sparsity of a grid, and
clusters them (k-means of the nonzero weights, `tfdc.kmeans`) to each bit
width of a grid, measures the validation loss and top-1 error of the model
with that one layer changed, and puts the weights back. The result,
`Sensitivity`, holds the curves, prints them as a Markdown table, saves them
as JSON and draws them as a PNG like the paper's figure.

Cost: one forward pass over the validation subset per point: with the
default grids (14 sparsities, 6 bit widths) 20 passes per layer; in a
`Sequential` model the layers before the scanned one run once, and each
point runs only the rest. So that the whole scan stays cheaper than one
training epoch, at most `samples` validation examples are used (default
4,000, drawn with a fixed seed): the curves are those of that subset. A
network of L compressible layers costs about 20 L forward passes over them
(one training epoch of N examples is about 3 N forward passes' work): for
a deep convolutional network pass a smaller `samples` or coarser grids
(`scan_cost` counts the work; `tfdc.compress` holds its scan to half its
training's forward passes, `tfdc.compressor.scan_options`).
Each pass runs the rest of the network, so on a deep stack of small layers
the scan grows as L squared (200 Dense(16) layers: 16 s, 400: 80 s).

Example:

```python
import tfdc
from tfdc.datasets import load_mnist
from tfdc.models import lenet_300_100

(x, y), (x_test, y_test) = load_mnist()
model = lenet_300_100()
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=1)
sens = tfdc.sensitivity(model, (x_test, y_test))
print(sens.to_markdown())
sens.plot("sensitivity.png")
```
"""

import dataclasses
import json
import os
import time
import warnings

import numpy as np

from tfdc.values import to_numpy

__all__ = ["sensitivity", "Sensitivity", "DEFAULT_SPARSITIES", "DEFAULT_BITS",
           "DEFAULT_SAMPLES", "Evaluator", "SummedLoss", "scan_cost"]

DEFAULT_SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98,
                      0.99)
DEFAULT_BITS = (2, 3, 4, 5, 6, 8)
DEFAULT_SAMPLES = 4000
DEFAULT_BATCH = 2048


@dataclasses.dataclass
class Sensitivity:
    """Per-layer validation loss / error vs sparsity and vs bits.

    Attributes:
        layers: names of the scanned layers, in model order.
        weights: `{layer name: number of kernel weights}`.
        kinds: `{layer name: tfdc.layers kind name}`.
        baseline_loss, baseline_error: the unchanged model's validation
            loss and top-1 error (a fraction; NaN if the model is not a
            classifier).
        sparsities, bits: the grids.
        loss, error: `{layer name: {("sparsity", s): value, ("bits", b):
            value}}`: the model's loss / error with only that layer pruned to
            `s` (not clustered), or only clustered to `b` bits (not pruned).
        samples: validation examples used.
        seconds: wall time of the scan.
        given: validation examples given (arrays or a dataset, read whole;
            0: not known, a Sensitivity saved before this field); more than
            `samples`: the scan used a random subset of them.

    Example:

    ```python
    import tfdc
    (x, y), (x_val, y_val) = tfdc.datasets.load_mnist()          # TFDC_MNIST, or Keras's cache
    x, y, x_val, y_val = x[:4096], y[:4096], x_val[:1000], y_val[:1000]
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    sens = tfdc.sensitivity(model, (x_val, y_val))
    print(sens.error["fc1"][("sparsity", 0.9)] - sens.baseline_error)
    xs, ys = sens.curve("fc1", "loss", "bits")
    print(sens.to_markdown())
    again = tfdc.Sensitivity.from_json(sens.to_json())
    ```
    """

    layers: list
    weights: dict
    kinds: dict
    baseline_loss: float
    baseline_error: float
    sparsities: tuple
    bits: tuple
    loss: dict
    error: dict
    samples: int = 0
    seconds: float = 0.0
    given: int = 0

    def curve(self, layer, metric="loss", axis="sparsity"):
        """`(xs, ys)` of one curve; `metric` "loss" or "error", `axis`
        "sparsity" (xs from 0, the baseline) or "bits" (ascending)."""
        if layer not in self.loss:
            raise ValueError(f"no layer {layer!r} in the scan; layers are: "
                             f"{', '.join(self.layers)}")
        if metric not in ("loss", "error"):
            raise ValueError(f"metric must be 'loss' or 'error', got {metric!r}")
        table = {"loss": self.loss, "error": self.error}[metric][layer]
        base = self.baseline_loss if metric == "loss" else self.baseline_error
        if axis == "sparsity":
            xs = [0.0] + list(self.sparsities)
            return xs, [base] + [table[("sparsity", s)] for s in self.sparsities]
        if axis == "bits":
            xs = list(self.bits)
            return xs, [table[("bits", b)] for b in xs]
        raise ValueError(f"axis must be 'sparsity' or 'bits', got {axis!r}")

    def to_markdown(self):
        """Two Markdown tables (error in %, loss in parentheses): layers ×
        sparsity, layers × bits."""
        def cell(name, key):
            err = self.error[name][key]
            loss = self.loss[name][key]
            return (f"{100 * err:.2f} ({loss:.3f})" if np.isfinite(err) else f"({loss:.3f})")

        base = (f"{100 * self.baseline_error:.2f} % error, loss {self.baseline_loss:.4f}"
                if np.isfinite(self.baseline_error) else f"loss {self.baseline_loss:.4f}")
        cells = "error % (loss)" if np.isfinite(self.baseline_error) else "(loss)"
        subset = (f" (a random {self.samples:,} of the {self.given:,} given: samples=)"
                  if self.given > self.samples else "")
        out = [f"Baseline: {base} on {self.samples:,} validation examples{subset}. Cells: "
               f"{cells} with only that layer changed, no retraining.", ""]
        for axis, grid, label in (("sparsity", self.sparsities, lambda s: f"{100 * s:g} %"),
                                  ("bits", self.bits, lambda b: f"{b} bits")):
            head = ["layer", "weights"] + [label(v) for v in grid]
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            for name in self.layers:
                out.append("| " + " | ".join([name, f"{self.weights[name]:,}"]
                                             + [cell(name, (axis, v)) for v in grid]) + " |")
            out.append("")
        return "\n".join(out)

    def __eq__(self, other):
        # As their JSON: a model that is no classifier has NaN errors, and
        # NaN != NaN made a scan unequal to itself read back.
        return isinstance(other, Sensitivity) and self.to_json() == other.to_json()

    def to_json(self):
        """The scan as a JSON string (`Sensitivity.from_json` reads it)."""
        def points(table):
            return {name: {"sparsity": {repr(float(s)): _num(table[name][("sparsity", s)])
                                        for s in self.sparsities},
                           "bits": {str(int(b)): _num(table[name][("bits", b)])
                                    for b in self.bits}}
                    for name in self.layers}
        return json.dumps({"layers": self.layers, "weights": self.weights, "kinds": self.kinds,
                           "baseline_loss": _num(self.baseline_loss),
                           "baseline_error": _num(self.baseline_error),
                           "sparsities": [float(s) for s in self.sparsities],
                           "bits": [int(b) for b in self.bits],
                           "loss": points(self.loss), "error": points(self.error),
                           "samples": self.samples, "seconds": self.seconds,
                           "given": self.given}, indent=1)

    @classmethod
    def from_json(cls, text):
        """A `Sensitivity` from `to_json`'s string."""
        d = json.loads(text)
        missing = [k for k in ("layers", "weights", "kinds", "baseline_loss", "baseline_error",
                               "sparsities", "bits", "loss", "error")
                   if not isinstance(d, dict) or k not in d]
        if missing:  # a bare KeyError: 'layers' (a Plan's JSON, an empty object)
            raise ValueError("not a Sensitivity's JSON (Sensitivity.to_json): it has no "
                             + ", ".join(missing))

        def table(t):
            return {name: {**{("sparsity", float(s)): _float(v)
                              for s, v in t[name]["sparsity"].items()},
                           **{("bits", int(b)): _float(v) for b, v in t[name]["bits"].items()}}
                    for name in d["layers"]}
        return cls(list(d["layers"]), dict(d["weights"]), dict(d["kinds"]),
                   _float(d["baseline_loss"]), _float(d["baseline_error"]),
                   tuple(d["sparsities"]), tuple(d["bits"]), table(d["loss"]),
                   table(d["error"]), d.get("samples", 0), d.get("seconds", 0.0),
                   d.get("given", 0))

    def plot(self, path, metric=None):
        """Draw the curves as a PNG: validation error (or loss, for a model
        that is not a classifier, or with `metric="loss"`) vs fraction of
        weights pruned, one curve per layer (the paper's Fig. 5), and vs
        bits per shared value. Returns `path`."""
        from tfdc.plots import _save
        return _save(self._figure(metric), path)

    def _figure(self, metric=None):
        from tfdc.plots import _pyplot
        if metric is None:
            metric = "error" if np.isfinite(self.baseline_error) else "loss"
        plt = _pyplot()
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        scale = 100.0 if metric == "error" else 1.0
        for name in self.layers:
            xs, ys = self.curve(name, metric, "sparsity")
            line, = left.plot([100 * x for x in xs], [scale * y for y in ys], marker="o",
                              markersize=3, label=f"{name} ({self.weights[name]:,})")
            xs, ys = self.curve(name, metric, "bits")
            right.plot(xs, [scale * y for y in ys], marker="o", markersize=3,
                       color=line.get_color(), label=name)
        base = self.baseline_error if metric == "error" else self.baseline_loss
        label = "validation error (%)" if metric == "error" else "validation loss"
        for ax in (left, right):
            ax.axhline(scale * base, color="gray", linestyle=":", linewidth=1)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        left.set_xlabel("weights pruned away (%)")
        left.set_title("pruning one layer, no retraining")
        right.set_xlabel("bits per shared value")
        right.set_title("clustering one layer, no retraining")
        right.invert_xaxis()
        right.set_xticks(sorted(self.bits))  # whole bits (3.75 was a tick)
        left.legend(loc="upper left")
        title = f"Sensitivity ({self.samples:,} validation examples)"
        if metric == "error":
            # The low errors are what a plan reads: the axis stops near 4x
            # the baseline, and a point above it is drawn on the top edge.
            top = max([scale * base * 4] + [scale * v for name in self.layers
                                           for v in self.curve(name, metric, "bits")[1]])
            top = max(top, scale * base * 1.5)
            left.set_ylim(0, top)
            clipped = 0
            for line, name in zip(left.get_lines(), self.layers):
                xs, ys = self.curve(name, metric, "sparsity")
                above = [100 * x for x, y in zip(xs, ys) if scale * y > top]
                clipped += len(above)
                left.plot(above, [top] * len(above), marker="^", linestyle="none",
                          color=line.get_color(), clip_on=False)
            if clipped:
                title += f"; ▲ on the top edge: above {top:.3g} %"
        fig.suptitle(title)
        fig.tight_layout()
        return fig


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else None


def _float(v):
    return float("nan") if v is None else float(v)


# --------------------------------------------------------------------------
# Validation data and the evaluation


def check_outputs(model, who):
    """A ValueError naming the outputs of a Functional or Sequential model
    with several that is not compiled: `who` (the scan, the planner,
    `tfdc.compress`, the command line) scores several outputs by their
    weighted compiled losses (`SummedLoss`). A subclassed model's outputs
    are checked when it runs."""
    count = _output_count(model)
    if count < 2 or getattr(model, "loss", None) is not None:
        return
    raise ValueError(f"{who} scores a model with several outputs by its compiled loss (one "
                     f"per output, weighted by loss_weights, as model.evaluate sums them); "
                     f"{_outputs_named(model)} and is not compiled: compile it with its losses")


def _outputs_named(model):
    """"'name' has N (a, b, ...)": a model's outputs, for a message."""
    from tfdc.exporter import _output_names
    return f"{model.name!r} has {_output_count(model)} ({', '.join(_output_names(model))})"


def one_output_view(model):
    """A model whose one output sits in a dict or list (`{"probs": y}`) as
    its plain view (the same layers, output `y`, compiled with the one loss
    if the model is), and that structure (None for a plain output: the
    model itself). The scan, the planner and `tfdc.compress` work on the
    view; compress exports and returns its trained copies in the structure."""
    import keras

    from tfdc.exporter import graph_structure
    structure = graph_structure(model, "output")
    if not isinstance(structure, (dict, list, tuple)) or len(model.outputs) != 1:
        return model, None
    view = keras.Model(model.input, model.outputs[0], name=model.name)
    loss = getattr(model, "loss", None)
    losses = keras.tree.flatten(loss) if isinstance(loss, (dict, list, tuple)) else [loss]
    if len(losses) == 1 and losses[0] is not None:
        view.compile(loss=losses[0])
    return view, structure


def check_batched(x, model, what):
    """A ValueError when `x`, the inputs of a dataset's first element, are
    single examples rather than a batch (each array shaped as one example
    of its model input: a `tf.data.Dataset` not `.batch()`ed), which failed
    later with a TypeError or a dump of input values."""
    from tfdc.layers import has_graph
    if model is None or not has_graph(model):
        return
    import keras
    if isinstance(x, dict):
        pairs = [(x.get(t.name), t) for t in model.inputs]
    else:
        arrays = keras.tree.flatten(x)
        if len(arrays) != len(model.inputs):
            return
        pairs = list(zip(arrays, model.inputs))
    for array, tensor in pairs:
        # Each array shaped exactly as one example (a batch of (B, 28, 28)
        # for an input (28, 28, 1), which Keras expands, is not).
        shape, one = np.shape(array) if array is not None else None, tuple(tensor.shape[1:])
        if shape is None or len(shape) != len(one) or any(
                d is not None and d != s for d, s in zip(one, shape)):
            return
    raise ValueError(f"{what} yields single examples (x of shape "
                     f"{tuple(np.shape(pairs[0][0]))}), not batches: batch it, e.g. "
                     "dataset.batch(128)")


def input_count(model):
    """How many inputs `model` takes (None: not known, a subclassed model
    never called)."""
    from tfdc.layers import has_graph
    return len(model.inputs) if has_graph(model) else None


def unwrap_one_input(x, inputs):
    """x given as a list or tuple of one array, for a model of one input
    (`inputs`: `input_count`), as that array, as Keras's fit and evaluate
    take it (a Sequential model called on the list answered with an extra
    axis)."""
    if inputs == 1 and isinstance(x, (list, tuple)) and len(x) == 1:
        return x[0]
    return x


def _take(data, samples, seed=0, outputs=1, model=None):
    """`(x, y, given)`: NumPy arrays (x an array, list or dict of arrays; y
    too for several `outputs`) of at most `samples` examples of
    `validation_data`, and how many examples it held (`given`). The data:
    a tuple `(x, y)`, or an iterable of `(x, y)` batches (a
    `tf.data.Dataset`, a generator; `model`: checked to be batches,
    `check_batched`). More than `samples`: a fixed-seed random subset, in
    the data's order; from batches, read whole and sampled as they come
    (`_Reservoir`): the first `samples` of a dataset sorted by class held
    4 of its 10 classes. Sample weights are refused, not ignored (the scan
    scores every example alike: a weighted set got an unweighted plan), and
    so is a dataset that repeats without end (it never ended; read up to
    `samples`, its examples counted twice): one whose end TensorFlow cannot
    tell (`repeat().filter(...)`, a generator) stops with a ValueError once
    a quarter of the memory (`_memory_limit`) has been read, or held."""
    if _is_arrays(data):
        _refuse_weights(data)
        x, y = data[0], _labels(data[1], outputs)
        n = _length(x)
        if n != _length(y):
            raise ValueError(f"validation_data: x has {n} examples but y has {_length(y)}")
        if n == 0:
            raise ValueError("validation_data is empty")
        if samples is not None and n > samples:
            index = np.sort(np.random.default_rng(seed).choice(n, samples, replace=False))
            return (*_finite(_index(x, index), _index(y, index)), n)
        return (*_finite(_map(x, np.asarray), y), n)
    xs, ys, count, held, limit = [], [], 0, 0, _memory_limit()
    refuse_endless(data, "validation_data")
    # A length tf.data knows, or len() (a PyDataset, a list of batches):
    # read whole however large; else the read is bounded.
    sized = (int(data.cardinality()) >= 0 if hasattr(data, "cardinality")
             else hasattr(data, "__len__"))
    try:
        iterator = iter(data)
    except TypeError:
        raise TypeError("validation_data must be (x, y) arrays or an iterable of (x, y) "
                        f"batches, got {type(data).__name__}") from None
    reservoir = _Reservoir(samples, seed) if samples is not None else None
    for batch in iterator:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("validation_data batches must be (x, y) tuples")
        _refuse_weights(batch)
        if not count:
            check_batched(batch[0], model, "validation_data")
        bx, by = _map(batch[0], np.asarray), _labels(batch[1], outputs)
        count += _length(by)
        held += sum(np.asarray(a).nbytes for part in (bx, by) for _, a in _items(part))
        if reservoir is not None:
            reservoir.add(bx, by)
        else:
            xs.append(bx)
            ys.append(by)
        if held > limit and not (reservoir is not None and sized):
            raise ValueError(
                f"validation_data: {count:,} examples ({held / 2**20:,.0f} MiB) read and it has "
                "not ended (a dataset that repeats?); tfdc reads the validation data whole "
                + ("and holds it in memory: pass samples= (e.g. 4000) or a smaller dataset"
                   if reservoir is None else
                   "to sample from it: pass a finite dataset, each example once; one of "
                   "unknown length (a filter, a generator) with its length, e.g. dataset.apply("
                   "tf.data.experimental.assert_cardinality(batches))"))
    if not count:
        raise ValueError("validation_data is empty")
    x, y = reservoir.arrays() if reservoir is not None else (_concat(xs), _concat(ys))
    return (*_finite(x, y), count)


def refuse_endless(data, what):
    """A ValueError naming `what` for a tf.data.Dataset that TensorFlow
    knows repeats without end (`.repeat()`): read whole, it never ends."""
    if hasattr(data, "cardinality") and int(data.cardinality()) == -1:  # tf.data's INFINITE
        raise ValueError(f"{what} repeats without end (a tf.data.Dataset with .repeat()?): "
                         "pass it without repeat(), each example once")


class _Reservoir:
    """A uniform random `samples` of the examples of a stream of batches
    (Vitter's algorithm R, a batch at a time; fixed `seed`): example i (from
    0) replaces a random one of those kept with probability samples / (i +
    1). Holds `samples` examples, whatever the stream's length."""

    def __init__(self, samples, seed):
        self.samples, self.rng = int(samples), np.random.default_rng(seed)
        self.seen, self.x, self.y, self.origin = 0, None, None, None

    def add(self, x, y):
        n = _length(y)
        first = self.seen
        self.seen += n
        if self.x is None:
            self.x, self.y = (_map(part, lambda a: np.empty((self.samples,) + np.shape(a)[1:],
                                                             np.asarray(a).dtype))
                              for part in (x, y))
            self.origin = np.zeros(self.samples, np.int64)
        # Slot of each example: the next free ones while filling, then a
        # random one (kept if under `samples`); a slot drawn twice in one
        # batch goes to the later example, as one by one.
        i = np.arange(first, first + n)
        slot = np.where(i < self.samples, i, self.rng.integers(0, i + 1))
        keep = np.flatnonzero(slot < self.samples)
        _, last = np.unique(slot[keep][::-1], return_index=True)
        keep = keep[len(keep) - 1 - last]
        slot = slot[keep]
        for buf, part in ((self.x, x), (self.y, y)):
            for (_, b), (_, a) in zip(_items(buf), _items(part)):
                b[slot] = np.asarray(a)[keep]
        self.origin[slot] = i[keep]

    def arrays(self):
        """`(x, y)` of the examples kept, in the stream's order."""
        order = np.argsort(self.origin[:min(self.seen, self.samples)], kind="stable")
        return _index(self.x, order), _index(self.y, order)


def _memory_limit():
    """Bytes of validation examples `_take` holds at most when it reads a
    dataset whole: a quarter of the physical memory (joining the batches
    takes as much again), or 8 GiB where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (AttributeError, OSError, ValueError):
        return 8 << 30


def _refuse_weights(data):
    if len(data) == 3 and data[2] is not None:
        raise ValueError("validation_data: sample weights, (x, y, sample_weight), are not "
                         "supported: the scan scores every example alike; give (x, y)")


def _finite(x, y):
    """`(x, y)`, after `check_finite` on each of their arrays."""
    for name, data in (("x", x), ("y", y)):
        for key, a in _items(data):
            check_finite(np.asarray(a), "validation_data",
                         name if key is None else f"{name}[{key!r}]")
    return x, y


def check_finite(a, what, name):
    """A ValueError for a NaN or infinity in a float array: one NaN pixel in
    the validation data made every scored loss NaN, and compress kept a
    near-chance file as met; in the training data it surfaced only after
    training, from deep inside k-means. Complex numbers are refused too:
    cast to the model's float by the fit, they failed in the scan's loss."""
    if a.dtype.kind == "c":
        raise ValueError(f"{what}: {name} holds complex numbers ({a.dtype}); a Keras model "
                         "takes real ones: give the real part, or the real and imaginary "
                         "parts as features")
    if a.dtype.kind != "f" or a.size == 0:
        return
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1) if a.ndim else ~np.isfinite(a)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: {name} has NaN or infinite values in {int(bad.sum()):,} "
                         f"example{'s' if bad.sum() > 1 else ''} (the first: example {first:,}); "
                         "tfdc needs finite data: drop or repair them")


def _labels(y, outputs):
    """Labels as NumPy: one array for one output (a Python list of labels
    too, or a dict of one array, as `fit` takes labels for an output in a
    dict), a list or dict of arrays for several."""
    if outputs > 1:
        return _map(y, np.asarray)
    if isinstance(y, dict) and len(y) == 1:
        (y,) = y.values()
    return np.asarray(y)


def _is_arrays(data):
    """Whether `validation_data` is `(x, y)` or `(x, y, sample_weight)`
    itself, not an iterable of batches."""
    return isinstance(data, (tuple, list)) and len(data) in (2, 3) and not _is_batch_list(data)


def _is_batch_list(data):
    return isinstance(data, list) and all(isinstance(b, tuple) for b in data)


def _length(x):
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    if isinstance(x, (list, tuple)):
        return len(x[0])
    return len(x)


def _map(x, fn):
    if isinstance(x, dict):
        return {k: fn(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [fn(v) for v in x]
    return fn(x)


def _items(data):
    """(key, array) pairs of an array (key None), a list or a dict."""
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list):
        return list(enumerate(data))
    return [(None, data)]


def _index(x, index):
    return _map(x, lambda a: np.asarray(a)[index])


def _concat(xs):
    first = xs[0]
    if isinstance(first, dict):
        return {k: np.concatenate([x[k] for x in xs]) for k in first}
    if isinstance(first, list):
        return [np.concatenate([x[i] for x in xs]) for i in range(len(first))]
    return np.concatenate(xs)


class Evaluator:
    """Validation loss and top-1 error of a model on fixed data, fast enough
    to call once per scan point (one `predict_on_batch` per `batch_size`
    examples).

    The loss is the model's compiled loss when it has a single one, else
    cross-entropy (from probabilities if the outputs are, from logits
    otherwise); for a model with several outputs the weighted sum of their
    compiled losses (`SummedLoss`). The error is the top-1 error for a
    classifier (integer or one-hot labels; a single sigmoid output
    thresholded at 0.5, a logit at 0), NaN for any other model: one output
    unit that is no sigmoid and is trained with a loss that is no
    cross-entropy or hinge (mean squared error on 0 / 1 targets) is scored
    by its loss alone, as `tfdc.compress` scores it (`threshold_free`).

    Args:
        model: a built Keras model with one output, or several and their
            compiled losses.
        x, y: the validation examples (NumPy; a list or dict of arrays for
            several inputs or outputs).
        batch_size: examples per forward pass.

    Example:

    ```python
    import tfdc
    (x, y), (x_val, y_val) = tfdc.datasets.load_mnist()          # TFDC_MNIST, or Keras's cache
    x, y, x_val, y_val = x[:4096], y[:4096], x_val[:1000], y_val[:1000]
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    from tfdc.scan import Evaluator
    ev = Evaluator(model, x_val, y_val)
    loss, error = ev()
    print(f"{loss:.3f} {error:.2%}")
    ```
    """

    def __init__(self, model, x, y, batch_size=None):
        import keras
        self.model = model
        self.y = _labels(y, _output_count(model))
        self.n = _length(self.y)
        self.batch_size = DEFAULT_BATCH if batch_size is None else int(batch_size)
        if isinstance(batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size!r}")
        # Batches converted once: every scan point reuses them.
        self.batches = [_map(x, lambda a: keras.ops.convert_to_tensor(
            a[start:start + self.batch_size])) for start in range(0, self.n, self.batch_size)]
        # A Sequential model runs eagerly layer by layer (the same code path
        # as `starting_at`, and no predict function to trace); any other
        # model through its compiled predict step.
        if isinstance(model, keras.Sequential):
            layers = list(model.layers)
            self.forward = lambda h: _run(h, layers)
        else:
            self.forward = model.predict_on_batch
        self._loss = _compiled_loss(model)
        self._from_logits = None

    def starting_at(self, layer):
        """An evaluator for points that change only `layer`: in a
        `Sequential` model, the layers before it run once here and each
        call runs `layer` and those after it. Otherwise (a functional
        graph, a nested layer, the first layer) this evaluator itself."""
        import keras
        layers = list(getattr(self.model, "layers", []))
        if not isinstance(self.model, keras.Sequential) or layer not in layers \
                or layers.index(layer) == 0:
            return self
        k = layers.index(layer)
        suffix = layers[k:]
        other = Evaluator.__new__(Evaluator)
        other.__dict__.update(self.__dict__)
        other.batches = [_run(b, layers[:k]) for b in self.batches]
        other.forward = lambda h: _run(h, suffix)
        return other

    def predict(self):
        """The outputs on every example: an array, or for several outputs a
        list of them in the order of `model.outputs`."""
        import keras
        parts = []
        for batch in self.batches:
            out = self.forward(batch)
            parts.append([np.asarray(to_numpy(o), dtype=np.float32)
                          for o in keras.tree.flatten(out)])
        outputs = [np.concatenate(part) for part in zip(*parts)]
        return outputs if len(outputs) > 1 else outputs[0]

    def __call__(self):
        """`(loss, error)` of the model as it is now."""
        pred = self.predict()
        return self.loss(pred), self.error(pred)

    def loss(self, pred):
        if self._loss is not None:
            return mean_loss(self._loss, self.y, pred)
        return _cross_entropy(self.y, pred, self._logits(pred))

    def _logits(self, pred):
        # Told once, from the output layer's activation (as tfdc.compress
        # tells it), else from the baseline's outputs: every scan point of
        # the model is then scored alike.
        if self._from_logits is None:
            from tfdc.mistakes import looks_like_logits, output_from_logits
            told = output_from_logits(self.model)
            self._from_logits = looks_like_logits(pred) if told is None else told
        return self._from_logits

    def error(self, pred):
        from tfdc.mistakes import mistakes, threshold_free
        if isinstance(pred, list):  # several outputs: scored by their losses only
            return float("nan")
        unit = pred.ndim == 2 and pred.shape[-1] == 1
        if unit and threshold_free(self.model, pred):  # a score, not a class: no top-1 error
            return float("nan")
        try:
            return float(np.mean(mistakes(pred, self.y, self._logits(pred) if unit else None)))
        except ValueError:  # not a classifier's outputs / labels: no top-1 error
            return float("nan")


def _run(h, layers):
    for layer in layers:
        h = layer(h, training=False)
    return h


def _compiled_loss(model):
    """The model's compiled loss as a `loss_callable`, a `SummedLoss` for a
    model with several outputs, None if it is not compiled."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if _output_count(model) > 1:
        return SummedLoss(model)
    return loss_callable(loss)


def _output_count(model):
    """How many outputs a Functional or Sequential model has (1 for a
    subclassed or unbuilt one: checked when it runs)."""
    try:
        return len(model.outputs or [])
    except (AttributeError, ValueError):
        return 1


class SummedLoss:
    """The compiled losses of a model with several outputs as one loss:
    each output's loss (`loss_callable`) times its `loss_weights` entry,
    summed, as `model.evaluate` reports the total. Labels and predictions
    are lists in the order of `model.outputs`, or dicts keyed as the
    model's outputs (`mean_loss`, `example_losses` take it like a loss).

    Args:
        model: a compiled Keras model with several outputs: one loss for all
            of them, or a list or dict of losses (None: that output is not
            trained), and optional `loss_weights`.

    Example:

    ```python
    import keras
    import numpy as np
    from tfdc.scan import SummedLoss, mean_loss
    x = keras.Input((4,))
    model = keras.Model(x, [keras.layers.Dense(3, name="cls")(x),
                            keras.layers.Dense(1, name="reg")(x)])
    model.compile(loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    y = [np.array([0, 2]), np.array([[1.0], [0.0]])]
    pred = [np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]), np.array([[0.6], [0.2]])]
    print(round(mean_loss(SummedLoss(model), y, pred), 4))  # 0.2731: 0.2231 + 0.5 * 0.1
    ```
    """

    def __init__(self, model):
        from tfdc.exporter import graph_structure
        structure = graph_structure(model, "output")
        n = _output_count(model)
        self.keys = (sorted(structure) if isinstance(structure, dict)
                     else [str(k) for k in model.output_names])
        config = model.get_compile_config() or {}
        losses = self._per_output(model.loss, n, None)
        weights = self._per_output(config.get("loss_weights"), n, 1.0)
        self.parts = [(i, loss_callable(loss), 1.0 if w is None else float(w))
                      for i, (loss, w) in enumerate(zip(losses, weights)) if loss is not None]

    def _per_output(self, value, n, default):
        if isinstance(value, dict):
            return [value.get(k, default) for k in self.keys]
        if isinstance(value, (list, tuple)):
            return list(value)
        return [default if value is None else value] * n

    def _flat(self, values, what):
        if isinstance(values, dict):
            missing = [k for k in self.keys if k not in values]
            if missing:
                raise ValueError(f"{what} has no entry for the output"
                                 f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
            return [values[k] for k in self.keys]
        if not isinstance(values, (list, tuple)) or len(values) != len(self.keys):
            raise ValueError(f"{what} of a model with {len(self.keys)} outputs must be a list or "
                             f"dict of {len(self.keys)} arrays, got {type(values).__name__}")
        return list(values)

    def mean(self, y, pred):
        """The total loss, as `model.evaluate` reports it."""
        y, pred = self._flat(y, "y"), self._flat(pred, "the predictions")
        return float(sum(w * mean_loss(fn, y[i], pred[i]) for i, fn, w in self.parts))

    def per_example(self, y, pred):
        """The total loss of each example (float64, len(y))."""
        y, pred = self._flat(y, "y"), self._flat(pred, "the predictions")
        return sum(w * example_losses(fn, y[i], pred[i]) for i, fn, w in self.parts)


def one_loss(loss):
    """A compiled loss given as a list or dict of one (`loss=["mse"]`,
    `{"out": "mse"}`, for a model with one output) as that loss: scored,
    it was NaN; trained by tfdc.compress, a Sequential model so compiled
    failed in Keras's fit. Any other loss as it is."""
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        return loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        return next(iter(loss.values()))
    return loss


def loss_callable(loss):
    """A compiled loss (a name, a function or a `keras.losses.Loss`) as a
    callable `(y, pred) -> loss` that takes labels as `compile` passes them
    (`_rank_matched`), or None if it is none of these. One output's loss
    compiled as a list or dict of one is that loss (`one_loss`)."""
    import keras
    loss = one_loss(loss)
    try:
        loss = keras.losses.get(loss)
    except (ValueError, TypeError):
        if not callable(loss):
            return None
    return loss if isinstance(loss, keras.losses.Loss) else _rank_matched(loss)


def mean_loss(fn, y, pred):
    """`fn(y, pred)` (a `loss_callable`) averaged over the examples, as a
    float; NaN without a loss (`fn` None)."""
    if fn is None:
        return float("nan")
    if isinstance(fn, SummedLoss):
        return fn.mean(y, pred)
    return float(np.mean(to_numpy(fn(y, pred))))


def example_losses(fn, y, pred):
    """`fn(y, pred)` (a `loss_callable`) per example, as a float64 array of
    len(y): a `keras.losses.Loss` through its unreduced `call` (what its
    `__call__` averages), a loss function as it is (Keras's return one
    value per example); any axis after the first is averaged."""
    import keras
    if isinstance(fn, SummedLoss):
        return fn.per_example(y, pred)
    if isinstance(fn, keras.losses.Loss):
        y_t = keras.ops.convert_to_tensor(y)
        pred_t = keras.ops.convert_to_tensor(pred)
        values = fn.call(y_t, pred_t)
    else:
        values = fn(y, pred)
    values = np.asarray(to_numpy(values), np.float64)
    return values.reshape(len(y), -1).mean(axis=1)


def _rank_matched(fn):
    """A loss function called as `compile` calls it: labels `[N]` meet
    outputs `[N, 1]` (a `keras.losses.Loss` does this itself; a function
    such as `keras.losses.binary_crossentropy` refuses the ranks)."""
    import keras

    def loss(y, pred):
        if len(pred.shape) >= 2 and pred.shape[-1] == 1 and len(y.shape) == len(pred.shape) - 1:
            y = keras.ops.expand_dims(y, -1)
        return fn(y, pred)
    return loss


def _cross_entropy(y, pred, from_logits):
    """The loss of a model with no compiled loss: a classifier's
    cross-entropy, its labels checked first (`check_labels`)."""
    from tfdc.mistakes import check_labels
    p = pred.astype(np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"validation_data: a model with no compiled loss is scored by "
                         f"cross-entropy, which needs a classifier's outputs [N, classes] or "
                         f"[N, 1]; this one has {pred.shape}: compile the model with its loss")
    y = check_labels(y, p.shape[-1], "validation_data")
    if p.shape[-1] > 1:
        if from_logits:
            p = p - p.max(axis=-1, keepdims=True)
            logp = p - np.log(np.exp(p).sum(axis=-1, keepdims=True))
        else:
            logp = np.log(np.clip(p, 1e-7, 1.0))
        if y.ndim == 2 and y.shape[-1] == p.shape[-1]:
            return float(-np.mean(np.sum(y * logp, axis=-1)))
        return float(-np.mean(logp[np.arange(len(p)), y.reshape(-1).astype(np.int64)]))
    p = p.reshape(-1)
    t = y.reshape(-1).astype(np.float64)
    if from_logits:
        return float(np.mean(np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


# --------------------------------------------------------------------------
# The scan


def _cannot_score(error, model, y):
    """The ValueError for validation data the model or its loss cannot
    take, in one line that says which and, for one-hot labels given to a
    sparse loss (Keras: "Argument `output` must have rank (ndim)
    `target.ndim - 1`"), what to give instead."""
    from tfdc.errors import first_line
    from tfdc.mistakes import loss_name
    loss = getattr(model, "loss", None)
    name = "cross-entropy" if loss is None else loss_name(loss)  # the Evaluator's default
    return ValueError(f"validation_data: the model and its loss ({name}) cannot score it: "
                      f"{first_line(error)}{one_hot_hint(name, y)}")


def one_hot_hint(loss_name, y):
    """"; y looks one-hot (C columns), ...": what to do when one-hot labels
    meet a sparse loss, or class indices a one-hot loss (else "")."""
    y = np.asarray(y) if not isinstance(y, (list, dict)) else None
    name = str(loss_name).lower()
    if y is None:
        return ""
    if y.ndim == 2 and y.shape[1] >= 2 and "sparse" in name:
        return (f"; y looks one-hot ({y.shape[1]} columns), which {loss_name} does not take: "
                "give class indices (y.argmax(axis=1)) or compile with "
                "categorical_crossentropy")
    if (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)) and "sparse" not in name and \
            "categorical_crossentropy" in name:
        return (f"; y holds class indices, which {loss_name} does not take: give one-hot "
                "labels (keras.utils.to_categorical(y, classes)) or compile with "
                "sparse_categorical_crossentropy")
    return ""


def _check_grid(sparsities, bits):
    from tfdc.kmeans import BITS_RANGE
    sparsities = tuple(sorted(float(s) for s in (DEFAULT_SPARSITIES if sparsities is None
                                                 else sparsities)))
    bits = DEFAULT_BITS if bits is None else bits
    for b in bits:  # 2.5 was cut to 2, True read as 1
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer, float)) or \
                not float(b).is_integer():
            raise ValueError(f"bits must be whole numbers in {BITS_RANGE[0]}..{BITS_RANGE[1]}, "
                             f"got {b!r}")
    bits = tuple(sorted(int(b) for b in bits))
    if not sparsities or not bits:
        raise ValueError("sparsities and bits must each hold at least one value")
    for s in sparsities:
        if not 0.0 < s < 1.0:
            raise ValueError(f"sparsities must be in (0, 1), got {s}")
    for b in bits:
        if not BITS_RANGE[0] <= b <= BITS_RANGE[1]:
            raise ValueError(f"bits must be in {BITS_RANGE[0]}..{BITS_RANGE[1]}, got {b}")
    return tuple(dict.fromkeys(sparsities)), tuple(dict.fromkeys(bits))


def _read_tensor(layer):
    """The tensor whose positions a layer's kernels run at: a recurrent
    layer's input (its steps), a transposed convolution's input, else the
    output (a convolution's H x W); None where the layer has none of its
    own (called twice, or inside a wrapper), a list where it has several."""
    from tfdc.layers import kind_of
    try:
        if kind_of(layer).name in ("recurrent", "conv_transpose"):
            tensor = layer.input
            # A recurrent layer given its initial state: [sequence, state]
            return tensor[0] if isinstance(tensor, (list, tuple)) else tensor
        return layer.output
    except (AttributeError, ValueError):
        return None


def _positions(shape):
    """The positions of a tensor of `shape` (batch first, channels last);
    an open size counts 1."""
    return int(np.prod([d for d in tuple(shape)[1:-1] if d]))


def _multiply_adds(layer, kernels, shape):
    """Multiply-adds of one example through `layer`'s kernels, estimated:
    its weights times the positions of `shape` (`_read_tensor`'s; 1 where
    it is None). An embedding looks up one row per position: no multiply,
    its row's values added."""
    from tfdc.layers import kind_of
    positions = max(1, _positions(shape)) if shape is not None else 1
    if kind_of(layer).name == "embedding":
        return positions * int(kernels[0][1].shape[-1])
    return sum(int(np.prod(v.shape)) for _, v in kernels) * positions


def _open_shapes(model, tensors, inputs):
    """`{layer: shape}` of the `tensors` (`{layer: _read_tensor(layer)}`)
    whose sizes the model leaves open (a fully convolutional model's H x W),
    run on `inputs`; {} where the model cannot be cut there (a nested or
    shared layer, a subclassed model)."""
    import keras
    open_ = [layer for layer, t in tensors.items()  # one tensor (not an LSTM's states too)
             if hasattr(t, "shape") and any(d is None for d in tuple(t.shape)[1:-1])]
    if not open_ or inputs is None:
        return {}
    try:
        with warnings.catch_warnings():  # inputs of another structure: tried all the same
            warnings.simplefilter("ignore")
            probe = keras.Model(model.input, [tensors[layer] for layer in open_])
            out = keras.tree.flatten(probe(inputs, training=False))
    except Exception:  # noqa: BLE001 - Keras raises many types for a graph it cannot cut
        return {}
    return {layer: tuple(o.shape) for layer, o in zip(open_, out)}


def scan_cost(model, inputs=None):
    """`(multiply-adds, passes)` of one point of `sensitivity`'s scan per
    validation example, summed over the compressible layers: its
    multiply-adds through the kernels, and the same as whole forward passes
    of the model. Each point runs the whole model, or in a `Sequential`
    the scanned layer and those after it (`Evaluator.starting_at`): a
    LeNet-300-100's three layers cost 1.12 passes, a functional model's L
    layers L. The scan costs `samples x (sparsities + bits)` times these;
    a training example costs about 3 passes (forward and backward).

    An estimate: a convolution costs its weights once per output position,
    a recurrent layer once per step, an embedding its looked-up values. A
    size the model leaves open (`keras.Input((None, None, 3))`) is read
    from `inputs`, a batch the model takes, else counted as 1; a layer
    called twice (shared) or inside a wrapper (`Bidirectional`) is counted
    once, at one position: an estimate under the work.

    Example:

    ```python
    from tfdc.models import lenet_300_100
    from tfdc.scan import scan_cost
    macs, passes = scan_cost(lenet_300_100())
    print(f"{macs:,} multiply-adds, {passes:.2f} passes")   # 298,200 multiply-adds, 1.12 passes
    ```
    """
    import keras

    from tfdc.bytecost import compressible_layers
    from tfdc.select import check_built, iter_layers, layer_keys
    check_built(model)
    found = compressible_layers(model)
    keys = layer_keys(model)
    by_key = {keys[id(layer)]: layer for layer in iter_layers(model)}
    tensors = {by_key[key]: _read_tensor(by_key[key]) for key in found}
    shapes = {layer: getattr(t, "shape", None) for layer, t in tensors.items()}
    shapes.update(_open_shapes(model, tensors, inputs))
    own = {key: _multiply_adds(by_key[key], kernels, shapes[by_key[key]])
           for key, kernels in found.items()}
    whole = sum(own.values())
    top = list(model.layers) if isinstance(model, keras.Sequential) else []
    # Where each layer's points run from: its place among a Sequential's
    # layers. A layer inside a nested model, or the first, runs the whole
    # model, and a nested one is counted as run by every point (an upper
    # estimate: its place is not known).
    nested = {key for key in found if by_key[key] not in top}
    start = {key: 0 if key in nested else top.index(by_key[key]) for key in found}
    macs = passes = 0
    for key in found:
        after = whole if start[key] == 0 else sum(
            own[other] for other in found if other in nested or start[other] >= start[key])
        macs += after
        passes += after / whole if whole else 1.0
    return int(macs), float(passes)


def sensitivity(model, validation_data, *, sparsities=None, bits=None, batch_size=None,
                samples=DEFAULT_SAMPLES, layers=None, verbose=0, log=None):
    """Scan each compressible layer's sensitivity to pruning and clustering.

    For every layer with a kernel of a kind `tfdc.layers` registers (Dense,
    Conv, DepthwiseConv, Embedding, the kernels of LSTM / GRU...), and every
    point of the grids, the layer alone is pruned by magnitude (its kernels
    to sparsity `s`) or clustered (its nonzero weights to `2**b` shared
    values, `tfdc.bytecost.compress_kernel`), the validation loss and error
    are measured, and the weights are put back. No training: the model is
    left exactly as it was.

    Args:
        model: a built Keras model with one output, or with several and
            compiled with their losses (`SummedLoss`: no error is scored).
        validation_data: `(x, y)` arrays, or an iterable of `(x, y)` batches
            (e.g. a `tf.data.Dataset`); held-out data, not the training set.
        sparsities: the pruning grid, fractions in (0, 1) (default
            `DEFAULT_SPARSITIES`, 0.5 … 0.99).
        bits: the clustering grid (default 2, 3, 4, 5, 6, 8).
        batch_size: examples per forward pass (default 2048).
        samples: use at most this many validation examples (default 4,000,
            a fixed-seed random subset; a dataset is read whole to sample
            it, one of unknown length, a generator, stops with a ValueError
            past a quarter of the physical memory; None: all, held in
            memory, with the same limit). The scan's cost is one forward
            pass over them per point.
        layers: optional list of layer names to scan (default: all); one
            name as a str is a list of one.
        verbose: 1 prints a line per layer (its place, the time so far and
            an estimate of the time left).
        log: a `print`-like function for those lines (default `print`).

    Returns:
        A `Sensitivity`.

    Raises:
        ValueError: an empty grid or a value outside it, a model with several
            outputs and no compiled loss, no compressible layer, empty
            validation data.

    Example:

    ```python
    import tfdc
    (x, y), (x_val, y_val) = tfdc.datasets.load_mnist()          # TFDC_MNIST, or Keras's cache
    x, y, x_val, y_val = x[:4096], y[:4096], x_val[:1000], y_val[:1000]
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    sens = tfdc.sensitivity(model, (x_val, y_val), sparsities=[0.5, 0.9, 0.99])
    print(sens.to_markdown())
    sens.plot("sensitivity.png")
    ```
    """
    from tfdc.bytecost import compress_kernel, compressible_layers, layer_weights
    from tfdc.layers import kind_of
    from tfdc.select import (check_built, iter_layers, layer_keys, refuse_non_finite,
                             refuse_non_float32)

    start = time.perf_counter()
    check_built(model)
    check_outputs(model, "sensitivity")
    refuse_non_float32(model, "tfdc.sensitivity")
    refuse_non_finite(model, "tfdc.sensitivity")
    model, _ = one_output_view(model)
    sparsities, bits = _check_grid(sparsities, bits)
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise ValueError(f"samples must be a positive integer or None, got {samples!r}")
    found = compressible_layers(model)
    if isinstance(layers, str):  # not its letters: "no layer named 'f', 'c', '1'"
        layers = [layers]
    if layers is not None:
        unknown = [n for n in layers if n not in found]
        if unknown:
            raise ValueError(f"no compressible layer named {', '.join(map(repr, unknown))}; "
                             f"layers are: {', '.join(found)}")
        found = {n: found[n] for n in found if n in set(layers)}
    if not found:
        raise ValueError(f"model {model.name!r} has no compressible layer (Dense, Conv, "
                         "DepthwiseConv, Embedding, LSTM/GRU kernels)")
    keys = layer_keys(model)
    by_key = {keys[id(layer)]: layer for layer in iter_layers(model)}
    kinds = {key: kind_of(by_key[key]).name for key in found}
    x, y, given = _take(validation_data, samples, outputs=_output_count(model), model=model)
    x = unwrap_one_input(x, input_count(model))
    evaluate = Evaluator(model, x, y, batch_size)
    try:
        base_loss, base_error = evaluate()
    except Exception as e:  # noqa: BLE001 - Keras and TensorFlow raise many types
        raise _cannot_score(e, model, y) from None
    loss, error = {}, {}
    for done, (name, kernels) in enumerate(found.items(), 1):
        values = [np.asarray(v.numpy()) for _, v in kernels]
        point = evaluate.starting_at(by_key[name])
        loss[name], error[name] = {}, {}
        try:
            for key in [("sparsity", s) for s in sparsities] + [("bits", b) for b in bits]:
                for (_, variable), value in zip(kernels, values):
                    if key[0] == "sparsity":
                        variable.assign(compress_kernel(value, key[1], None))
                    else:
                        variable.assign(compress_kernel(value, 0.0, key[1]))
                loss[name][key], error[name][key] = point()
        finally:
            for (_, variable), value in zip(kernels, values):
                variable.assign(value)
        if verbose:
            spent = time.perf_counter() - start
            left = f", about {spent / done * (len(found) - done):.0f} s left" \
                if done < len(found) else ""
            (log or print)(f"sensitivity: {name} ({sum(v.size for v in values):,} weights) "
                           f"done, layer {done} of {len(found)}, {spent:.1f} s{left}")
    weights = layer_weights(found)
    return Sensitivity(list(found), weights, kinds, base_loss, base_error, sparsities, bits,
                       loss, error, samples=int(_length(y)), seconds=time.perf_counter() - start,
                       given=given)
