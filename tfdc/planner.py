"""Per-layer sparsity and bits that meet a byte, an error or a loss budget.

`plan(model, validation_data, target_bytes=16_000)` answers "how hard should
each layer be pruned and clustered so that the packed file is 16 KB and the
model loses as little as possible?", `plan(..., max_error_increase=0.2)`
"what is the smallest file whose error is at most 0.2 points above the
model's?", and `plan(..., max_loss_increase=0.05)` the same for a loss at
most 5 % higher (a model that is not a classifier). It combines:

* the sensitivity curves (`tfdc.sensitivity`: validation loss and error of
  each layer pruned, or clustered, on its own, no retraining);
* the exact byte-cost model (`tfdc.bytecost.ByteCost`: the packer's own
  record size for each layer at each setting, and the exact file size);
* an exact allocation: a multiple-choice knapsack solved by dynamic
  programming over the byte budget (in buckets of at most 1/20,000 of it),
  every layer choosing one (sparsity, bits) pair of the grids.

The model of the loss: a layer at (sparsity s, bits b) adds to the
baseline its pruning curve's increase at s, plus its clustering curve's
increase at the distortion (sum of squared weight changes) that clustering
to b bits makes in the kernel pruned to s: the scan clusters the unpruned
kernel, and a pruned kernel's fewer, larger weights cluster with a
different error (measured on LeNet-300-100's fc1 at 80 % and 2 bits:
Δloss 0.020; this model 0.016, the sum of the two curves 0.078). Curves are
made monotone (a weight pruned or a bit removed never helps: noise that
says otherwise is ignored), and the layers' increases add up. The same for
the error. These are predictions without retraining: after fine-tuning
(`tfdc.GradualPruning`, `tfdc.ClusteredFineTuning`) the loss is usually
lower. The plan's settings applied together to the model, without
retraining, are also measured (`measured_loss`, `measured_error`); with
`max_error_increase` (or `max_loss_increase`) the plan is tightened until
that measurement meets the budget too.

The size: `predicted_bytes` is exact for the model as it is, pruned and
clustered as `tfdc.bytecost.apply_settings` does, exported with the
`export_options` given (pass `{"batch_size": 1}` if the file will be
exported with `batch_size=1`: about 0.2 KB less on a packed LeNet); the
planner re-solves with the exact figure until it fits `target_bytes`.
Fine-tuning moves the shared values and so changes the coded size a little
(LeNet-300-100, 2 + 1 epochs: within 0.4 % of the target), and a clone of
the model (`keras.models.clone_model`) gets other weight-tensor names in
the file (a few bytes).

Example:

```python
import tfdc
(x, y), (x_val, y_val) = tfdc.datasets.load_mnist()          # TFDC_MNIST, or Keras's cache
x, y, x_val, y_val = x[:4096], y[:4096], x_val[:1000], y_val[:1000]
model = tfdc.models.lenet_300_100()
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=1, verbose=0)
plan = tfdc.plan(model, (x_val, y_val), target_bytes=20_000)
print(plan)
steps = len(x) // 32
model.fit(x, y, epochs=3, verbose=0, callbacks=[
    tfdc.GradualPruning(target_sparsity=plan.sparsity, end_step=2 * steps),
    tfdc.ClusteredFineTuning(bits=plan.bits)])
print(tfdc.export(model, "model.tflite").packed_bytes)      # about 20,000
```
"""

import dataclasses
import json
import math
import warnings

import numpy as np

from tfdc.errors import finite, listed

__all__ = ["plan", "Plan"]

_BUCKETS = 20000     # resolution of the byte budget in the knapsack
_ROUNDS = 8          # re-solves with the exact file size / measured error
_TIE = 1e-12         # per byte: among equal predicted losses, the larger option

# An error rises by 100 percentage points at most: a larger error budget is
# a mistake in its unit (a fraction or a count?), which kept an 80 %-error
# file as met (tfdc.compress, the command line).
MAX_ERROR_INCREASE = 100


def check_error_points(value):
    """A ValueError for an error budget above `MAX_ERROR_INCREASE` points."""
    if value is not None and value > MAX_ERROR_INCREASE:
        raise ValueError(f"max_error_increase is in percentage points (0.2 = 0.2 points), at "
                         f"most {MAX_ERROR_INCREASE}, got {value:g}")


@dataclasses.dataclass
class Plan:
    """Per-layer settings and what they are predicted to give.

    Attributes:
        sparsity: `{layer name: fraction of weights to prune}`, accepted as
            is by `tfdc.GradualPruning(target_sparsity=...)`.
        bits: `{layer name: bits per shared value}`, accepted as is by
            `tfdc.ClusteredFineTuning(bits=...)`.
        predicted_bytes: exact size of the file `tfdc.export` writes for the
            model pruned and clustered to the plan without retraining. Names
            are stored in the file: a copy (`keras.models.clone_model`,
            whose input tensor has another name) can differ by a few bytes.
        predicted_loss, predicted_error: baseline plus the layers' increases
            read off the sensitivity curves (no retraining; the error a
            fraction, at most 1, NaN for a model that is not a classifier).
        measured_loss, measured_error: the model with all the plan's
            settings applied at once, no retraining, on the plan's
            validation examples (`validation_data`, sampled as the scan
            samples them).
        baseline_loss, baseline_error: the model as it is, on the same
            examples (not a given `sensitivity`'s, which may come from
            others). `to_json` writes a NaN as null.
        dense_bytes: float32 size of the model's parameters.
        other_bytes: the file minus the layers' records (graph, biases,
            small tensors, headers, and the meta stream's compression).
        uncompressed: weights in `other_bytes` that tfdc cannot prune or
            cluster (`tfdc.bytecost.uncompressed_weights`: a custom layer's
            matrix): packed losslessly, no plan shrinks them.
        rows: one dict per layer: `layer`, `kind`, `weights`, `sparsity`,
            `bits`, `bytes`, `loss_increase`, `error_increase`.
        target_bytes, max_error_increase, max_loss_increase: the budget
            asked for (`max_error_increase` in percentage points, where the
            errors above are fractions: 0.2 points is 0.002).
        aim_of: for a plan that `tfdc.compress` made, the user's own
            `target_bytes` where the plan's differs (compress plans under
            the target, and re-plans for what its runs measured); else None.
        sensitivity: the `tfdc.Sensitivity` the plan was made from.

    Example:

    ```python
    import tfdc
    (x, y), (x_val, y_val) = tfdc.datasets.load_mnist()          # TFDC_MNIST, or Keras's cache
    x, y, x_val, y_val = x[:4096], y[:4096], x_val[:1000], y_val[:1000]
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    plan = tfdc.plan(model, (x_val, y_val), target_bytes=30_000)  # or max_error_increase=
    print(plan)                       # the table
    print(plan.sparsity, plan.bits)   # for the callbacks
    print(plan.predicted_bytes, plan.ratio)
    same = tfdc.Plan.from_json(plan.to_json(), sensitivity=plan.sensitivity)
    print(same == plan)               # True
    ```
    """

    sparsity: dict
    bits: dict
    predicted_bytes: int
    predicted_loss: float
    predicted_error: float
    measured_loss: float
    measured_error: float
    baseline_loss: float
    baseline_error: float
    dense_bytes: int
    other_bytes: int
    rows: list
    target_bytes: object = None
    max_error_increase: object = None
    sensitivity: object = dataclasses.field(default=None, repr=False)
    max_loss_increase: object = None
    uncompressed: list = dataclasses.field(default_factory=list)
    aim_of: object = None

    @property
    def ratio(self):
        """Compression ratio of the predicted file vs float32 parameters."""
        return self.dense_bytes / self.predicted_bytes if self.predicted_bytes else float("inf")

    def __str__(self):
        width = max([5] + [len(r["layer"]) for r in self.rows])
        classifier = np.isfinite(self.baseline_error)
        head = (f"{'layer':<{width}}  {'weights':>9}  {'sparsity':>8}  {'bits':>4}  "
                f"{'pred. bytes':>11}  {'pred. Δloss':>11}" + ("  pred. Δerror" if classifier
                                                                 else ""))
        lines = [head, "-" * len(head)]
        for r in self.rows:
            line = (f"{r['layer']:<{width}}  {r['weights']:>9,}  {r['sparsity']:>8.2%}  "
                    f"{r['bits']:>4}  {r['bytes']:>11,}  {r['loss_increase']:>+11.4f}")
            if classifier:
                line += f"  {100 * r['error_increase']:>+11.2f} pt"
            lines.append(line)
        lines.append(f"{'other':<{width}}  {'':>9}  {'':>8}  {'':>4}  {self.other_bytes:>11,}"
                     "  (graph, biases, headers, after DEFLATE)")
        from tfdc.bytecost import weight_label
        for r in self.uncompressed:
            lines.append(f"  in other, at full precision: {weight_label(r)}: {r['why']}")
        lines.append("-" * len(head))
        far = "" if self.target_bytes is None or self.predicted_bytes >= 0.95 * \
            self.target_bytes else (f"; {1 - self.predicted_bytes / self.target_bytes:.0%} under "
                                    "it, the least predicted loss the planner found")
        if self.aim_of is not None:
            far += f"; tfdc.compress's aim for the target of {self.aim_of:,} B"
        budget = (f"for a target of {self.target_bytes:,} B{far}"
                  if self.target_bytes is not None else
                  f"max error increase {self.max_error_increase:g} pt"
                  if self.max_error_increase is not None else
                  f"max loss increase {100 * self.max_loss_increase:g} %")
        from tfdc.report import times_smaller
        lines.append(f"file: {self.predicted_bytes:,} B ("
                     f"{times_smaller(self.predicted_bytes, self.dense_bytes)} "
                     f"{self.dense_bytes:,} B of float32 parameters; {budget})")
        if classifier:
            lines.append(f"error: baseline {100 * self.baseline_error:.2f} %, predicted "
                         f"{100 * self.predicted_error:.2f} %, measured with the plan applied "
                         f"{100 * self.measured_error:.2f} % (no retraining)")
        lines.append(f"loss: baseline {self.baseline_loss:.4f}, predicted "
                     f"{self.predicted_loss:.4f}, measured {self.measured_loss:.4f}")
        return "\n".join(lines)

    def __eq__(self, other):
        # As their JSON and scans: NaN != NaN made two plans of a model that
        # is no classifier unequal, the same settings from the same scan.
        return isinstance(other, Plan) and self.to_json() == other.to_json() and \
            self.sensitivity == other.sensitivity

    @classmethod
    def from_json(cls, text, sensitivity=None):
        """A `Plan` from `to_json`'s string (or `tfdc plan --json`'s file),
        with `sensitivity` as its scan (the JSON holds none). Raises
        `ValueError` for another JSON."""
        d = json.loads(text)
        fields = {f.name for f in dataclasses.fields(cls)} - {"sensitivity"}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and
                    f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(d)) if isinstance(d, dict) else sorted(required)
        if missing:
            raise ValueError("not a Plan's JSON (Plan.to_json): it has no " + ", ".join(missing))
        values = {k: v for k, v in d.items() if k in fields}
        for k in ("predicted_loss", "predicted_error", "measured_loss", "measured_error",
                  "baseline_loss", "baseline_error"):
            values[k] = float("nan") if values[k] is None else values[k]  # no error: null
        return cls(**values, sensitivity=sensitivity)

    def to_json(self):
        """The plan (without the sensitivity scan) as a JSON string."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "sensitivity"}
        return json.dumps(_nan_as_null(d), indent=1, default=float)


def _nan_as_null(value):
    """`value` (dicts, lists, numbers) with every NaN float None: strict
    JSON (a model that is no classifier has no error)."""
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_as_null(v) for v in value]
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    return value


def _zero_fractions(model, names):
    """`{layer name: fraction of its kernels' weights that are exactly 0}`
    (the least over a layer's kernels), for the layers `names`."""
    from tfdc.bytecost import compressible_layers
    kernels = compressible_layers(model)
    out = {}
    for name in names:
        # Below 1 (the callbacks' range), for a kernel of zeros only.
        fractions = [min(1 - np.count_nonzero(w) / w.size, 1 - 1 / w.size) for w in
                     (np.asarray(v.numpy()) for _, v in kernels.get(name, ())) if w.size]
        out[name] = float(min(fractions)) if fractions else 0.0
    return out


def _pruning_increases(sens, name, metric):
    """`{sparsity: Δ}` of layer `name` (0 at sparsity 0), monotone, ≥ 0."""
    table = sens.loss[name] if metric == "loss" else sens.error[name]
    base = sens.baseline_loss if metric == "loss" else sens.baseline_error
    xs = [0.0] + list(sens.sparsities)
    if not np.isfinite(base):
        return {s: 0.0 for s in xs}
    ys = np.maximum.accumulate([base] + [table[("sparsity", s)] for s in sens.sparsities]) - base
    return {s: max(0.0, float(v)) for s, v in zip(xs, ys)}


def _clustering_curve(sens, name, metric, distortions):
    """Δ as a function of clustering distortion: the layer's clustering
    points (bits b at distortion `distortions[b]`), made monotone, linear
    between them, from (0, 0), and beyond the largest measured distortion
    proportional to it (the loss's quadratic term in the weights' change)."""
    table = sens.loss[name] if metric == "loss" else sens.error[name]
    base = sens.baseline_loss if metric == "loss" else sens.baseline_error
    if not np.isfinite(base):
        return lambda d: 0.0
    d = np.array([distortions[b] for b in sens.bits])
    v = np.array([max(0.0, table[("bits", b)] - base) for b in sens.bits])
    order = np.argsort(d, kind="stable")
    d = np.concatenate([[0.0], d[order]])
    v = np.maximum.accumulate(np.concatenate([[0.0], v[order]]))

    def curve(x):
        if x <= d[-1] or d[-1] <= 0:
            return float(np.interp(x, d, v))
        return float(v[-1] * x / d[-1])
    return curve


def _knapsack(costs, values, q, nb, order):
    """The dynamic programme of a multiple-choice knapsack, costs in buckets
    of `q` bytes up to `nb` buckets: `(best, choices)`, where `best[j]` is
    the least total value of one option per layer within `j` buckets and
    `choices[layer][j]` the option taken there. Options are tried in
    `order(bucket costs)`; on a tie the first tried wins."""
    best = np.zeros(nb + 1)               # no layer yet: value 0 at any budget
    choices = []
    for c, v in zip(costs, values):
        cb = np.ceil(np.asarray(c) / q).astype(np.int64)
        new = np.full(nb + 1, np.inf)
        arg = np.full(nb + 1, -1, dtype=np.int64)
        for o in order(cb):
            if cb[o] > nb:
                continue
            cand = np.full(nb + 1, np.inf)
            cand[cb[o]:] = best[:nb + 1 - cb[o]] + v[o]
            better = cand < new
            new[better] = cand[better]
            arg[better] = o
        best = new
        choices.append(arg)
    return best, choices


def _backtrack(costs, choices, q, j):
    """The option per layer that reaches bucket `j` of `_knapsack`."""
    picked = []
    for layer in range(len(costs) - 1, -1, -1):
        o = int(choices[layer][j])
        picked.append(o)
        j -= int(np.ceil(costs[layer][o] / q))
    return picked[::-1]


def _solve(costs, values, budget):
    """Multiple-choice knapsack: one option per layer, total cost ≤ budget,
    minimum total value. `costs`, `values`: per layer, arrays over options.
    Returns the chosen option index per layer, or None if nothing fits."""
    if budget < 0:
        return None
    q = max(1, math.ceil(budget / _BUCKETS))
    nb = budget // q
    best, choices = _knapsack(costs, values, q, nb, lambda cb: np.argsort(cb, kind="stable"))
    if not np.isfinite(best[nb]):
        return None
    return _backtrack(costs, choices, q, nb)


def _smallest_for(costs, errors, losses, limit):
    """The cheapest choice whose total error increase is ≤ `limit` (ties:
    smaller loss), by a knapsack over bytes; None if none is."""
    upper = int(sum(int(np.max(c)) for c in costs))
    q = max(1, math.ceil(upper / _BUCKETS))
    nb = upper // q + len(costs)
    values = [np.asarray(e) + 1e-6 * np.asarray(l) for e, l in zip(errors, losses)]
    best, choices = _knapsack(costs, values, q, nb, lambda cb: range(len(cb)))
    ok = np.flatnonzero(best <= limit + 1e-12)
    if not ok.size:
        return None
    return _backtrack(costs, choices, q, int(ok[0]))


def _check_labels(model, x, y, max_error_increase):
    """The labels checked as `tfdc.compress` checks them before any work: a
    classifier's against its outputs (a binary unit given 0..9 planned on a
    negative loss), each output's against its loss for several outputs; and
    compress's warnings for an untrained model and for missing classes."""
    from tfdc.compressor import (_check_inputs, _float_mistakes, _validation_outputs,
                                 _warn_logits_under_a_probability_loss,
                                 _warn_no_better_than_constant)
    from tfdc.mistakes import check_output_labels, output_from_logits
    from tfdc.scan import _output_count
    outputs = _validation_outputs(model, x)  # x the model cannot take: said as compress says it
    if _output_count(model) > 1:
        # One array for several outputs: said as compress says it (its rows
        # were read as the outputs' labels: "output 'cls': ... got shape ()").
        _check_inputs(y, "validation_data", _output_count(model), "y", "output")
        check_output_labels(model, y, "validation_data")
        return
    wrong, not_classifier = _float_mistakes(model, outputs, y, output_from_logits(model),
                                            max_error_increase)
    if not_classifier is None:  # an untrained model, classes missing: as compress warns
        _warn_no_better_than_constant(wrong, y, outputs.shape[1], "tfdc.plan")
        _warn_logits_under_a_probability_loss(model, outputs, "tfdc.plan",
                                              "the plan predicts losses with it", stacklevel=4)


def _check_scan_of(model, sens):
    """A ValueError for a `Sensitivity` that is not of `model`: a layer it
    scanned that the model lacks, or holds with another number of weights
    (another model's scan was planned from in silence, its curves and
    weights in the table)."""
    from tfdc.bytecost import compressible_layers, layer_weights
    here = layer_weights(compressible_layers(model))
    wrong = [f"{name!r} (" + ("not in the model" if name not in here else
                              f"{here[name]:,} weights here, {count:,} in the scan") + ")"
             for name, count in sens.weights.items() if here.get(name) != count]
    if wrong:
        raise ValueError(f"sensitivity is not a scan of model {model.name!r}: "
                         f"{listed(wrong, 3)}; scan this model (tfdc.sensitivity(model, ...))")


def _warn_coarse_error(examples, max_error_increase):
    """A warning for an error budget finer than one validation example's
    share of the error: on one example, every plan but the one that flips
    it predicts +0 points (a probe's plan put every layer at 99 % sparsity
    and 2 bits, for a budget of 0.5 points)."""
    if not max_error_increase or 100 / examples <= max_error_increase:
        return
    warnings.warn(
        f"tfdc.plan: on {examples:,} validation example{'s' if examples != 1 else ''}, one "
        f"example is {100 / examples:.3g} points of error, more than the budget of "
        f"{max_error_increase:g}: the predicted error cannot resolve it; give at least "
        f"{math.ceil(100 / max_error_increase):,} (tfdc.compress judges the budget on a "
        "confidence bound, which needs more)", stacklevel=3)


def _unreachable(target_bytes, reach, sens, uncompressed, unplanned=()):
    """The ValueError of a byte target under the smallest file the grids
    allow (`reach` bytes), naming the weights kept at full precision and the
    layers not planned (not scanned: `layers=`, or left out by the scan),
    which "every layer" claimed to be at the grids' end."""
    stuck = ""
    if unplanned:
        stuck += "; not planned, so left as they are: " + listed(unplanned, 4)
    if uncompressed:
        stuck += "; it keeps at full precision " + listed(
            (f"{r['layer']}/{r['weight']} ({r['class']}, {r['weights']:,} weights: {r['why']})"
             for r in uncompressed), 3)
    return ValueError(
        f"target_bytes={target_bytes:,} cannot be reached: the smallest file the grids allow "
        f"is {reach:,} B (every planned layer at {max(sens.sparsities):g} sparsity and "
        f"{min(sens.bits)} bits{stuck}); give a larger target (to tfdc.plan also sparsities= / "
        "bits= grids that go further)")


def _refuse_unfolded(model, layers):
    """Before the scan: a ValueError for planned kernels that the converter
    folds a BatchNormalization into. Their values in the file are not the
    kernel's, so no setting of theirs can be priced: a MobileNetV2's plan
    scanned 52 layers for minutes, left them dense and called its target
    unreachable."""
    from tfdc.batchnorm import folded_by_converter
    planned = None if layers is None else set([layers] if isinstance(layers, str) else layers)
    folded = [(k, bn) for k, bn in folded_by_converter(model) if planned is None or k in planned]
    if folded:
        shown = ", ".join(f"{bn!r} into {k!r}" for k, bn in folded[:3])
        more = f" and {len(folded) - 3} more" if len(folded) > 3 else ""
        raise ValueError(f"tfdc.plan: the converter folds BatchNormalization {shown}{more}: "
                         "the file holds other values than those kernels, so their sizes "
                         "cannot be planned. Plan (and train) tfdc.fold_batchnorm(model) "
                         "instead; tfdc.compress folds it itself")


def plan(model, validation_data, *, target_bytes=None, max_error_increase=None,
         sensitivity=None, min_bytes=64, export_options=None, verbose=0,
         max_loss_increase=None, **scan_options):
    """Choose each layer's sparsity and bits for a byte, error or loss budget.

    Exactly one budget:

    * `target_bytes`: the packed file (as `tfdc.export` writes it) must be at
      most this many bytes; among the settings that fit, the one with the
      smallest predicted validation loss.
    * `max_error_increase`: the validation top-1 error may rise by at most
      this many percentage points (0.2 means 1.50 % → 1.70 %), predicted from
      the curves and measured with the plan applied (no retraining); among
      the settings that keep it, the smallest file.
    * `max_loss_increase`: the same for the validation loss, as a fraction
      of the model's (0.05: at most 5 % higher), for any model with a loss
      (a regression model too).

    Args:
        model: a built Keras model with one output, or with several and
            compiled with their losses (their weighted sum is the loss:
            `tfdc.scan.SummedLoss`), BatchNormalization folded into its
            kernels (`tfdc.fold_batchnorm`).
        validation_data: `(x, y)` held-out data or an iterable of batches (see
            `tfdc.sensitivity`); used for the scan (unless `sensitivity` is
            given) and for measuring the plan.
        target_bytes: the byte budget of the whole packed file.
        max_error_increase: the error budget, in percentage points.
        max_loss_increase: the loss budget, a fraction of the loss (>= 0).
        sensitivity: a `tfdc.Sensitivity` of this model (default: scanned
            here with `scan_options`).
        min_bytes: the `min_bytes` that `tfdc.export` will be called with
            (buffers smaller than this stay in the flatbuffer).
        export_options: other `tfdc.export` options that change the file's
            size, as a dict: `batch_size`, `strip_debug`, `codebook_fp16`,
            `gap_alphabet`, `block` (default: `export`'s defaults; a model
            with an LSTM / GRU / SimpleRNN layer: `batch_size` 1, the only
            way the converter takes it, as `tfdc.compress` exports it).
        verbose: 1 prints the scan's progress and the plan.
        **scan_options: passed to `tfdc.sensitivity` (`sparsities`, `bits`,
            `batch_size`, `samples`, `layers`).

    Returns:
        A `Plan` (`print(plan)` shows the table).

    Raises:
        ValueError: not exactly one budget given, a budget below 0 (or a
            `target_bytes` of 0), a budget no setting of the grids reaches (the
            message gives the smallest reachable file, or the smallest error
            or loss increase), `max_error_increase` for a model that is not
            a classifier, `max_loss_increase` for a loss that is not
            positive, a model with no compressible layer.

    Example:

    ```python
    import tfdc
    (x, y), (x_val, y_val) = tfdc.datasets.load_mnist()          # TFDC_MNIST, or Keras's cache
    x, y, x_val, y_val = x[:4096], y[:4096], x_val[:1000], y_val[:1000]
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    plan = tfdc.plan(model, (x_val, y_val), target_bytes=24_000,
                     export_options={"batch_size": 1})
    print(plan)
    ```
    """
    from tfdc.bytecost import apply_settings, byte_cost, restore_settings, uncompressed_weights
    from tfdc.scan import (DEFAULT_SAMPLES, Evaluator, Sensitivity, _output_count, _take,
                           check_outputs, input_count, one_output_view, unwrap_one_input)
    from tfdc.scan import sensitivity as scan

    from tfdc.select import check_built
    check_built(model)  # Keras's AttributeError "has no defined inputs yet" otherwise
    budgets = (("target_bytes", target_bytes), ("max_error_increase", max_error_increase),
               ("max_loss_increase", max_loss_increase))
    if sum(value is not None for _, value in budgets) != 1:
        raise ValueError("give exactly one budget: target_bytes (bytes of the packed file), "
                         "max_error_increase (percentage points of validation error) or "
                         "max_loss_increase (a fraction of the validation loss)")
    for name, value in budgets:
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)) or not finite(value)
                or value < 0 or (name == "target_bytes" and value <= 0)):
            raise ValueError(f"{name} must be a "
                             + ("positive finite number" if name == "target_bytes" else
                                "finite number >= 0") + f", got {value!r}")
    check_error_points(max_error_increase)
    if max_error_increase is not None:
        max_error_increase = float(max_error_increase) + 0.0  # -0.0 printed "-0 points"
    if sensitivity is not None and not isinstance(sensitivity, Sensitivity):
        raise TypeError("sensitivity must be a tfdc.Sensitivity (tfdc.sensitivity's result; "
                        "Sensitivity.from_json reads a saved one) or None, got "
                        f"{type(sensitivity).__name__}")
    options = dict(export_options or {})
    allowed = {"batch_size", "strip_debug", "codebook_fp16", "gap_alphabet", "block"}
    if set(options) - allowed:
        raise ValueError(f"export_options: unknown {', '.join(sorted(set(options) - allowed))}; "
                         f"known: {', '.join(sorted(allowed))}")
    from tfdc.pack import check_options
    check_options(block=options.get("block"), gap_alphabet=options.get("gap_alphabet"))
    from tfdc.select import recurrent_layers, refuse_non_finite, refuse_non_float32
    if "batch_size" not in options and recurrent_layers(model):
        # The converter takes a recurrent layer with a fixed batch only: the
        # plan failed after its scan, where compress and `tfdc plan` worked.
        options["batch_size"] = 1
    check_outputs(model, "tfdc.plan")
    refuse_non_float32(model, "tfdc.plan")
    refuse_non_finite(model, "tfdc.plan")
    _refuse_unfolded(model, scan_options.get("layers"))
    model, _ = one_output_view(model)
    # Read once: a generator of batches cannot be read again for the check.
    samples = scan_options.pop("samples", DEFAULT_SAMPLES)
    x, y, given = _take(validation_data, samples, outputs=_output_count(model), model=model)
    x = unwrap_one_input(x, input_count(model))
    if not isinstance(y, (list, tuple, dict)):  # several outputs: no error budget
        _warn_coarse_error(len(y), max_error_increase)
    if sensitivity is None:
        _check_labels(model, x, y, max_error_increase)  # given one, the caller checked
        sensitivity = scan(model, (x, y), samples=None, verbose=verbose, **scan_options)
        sensitivity.given = given
    elif scan_options.keys() - {"batch_size"}:
        raise ValueError("give either sensitivity= or scan options "
                         f"({', '.join(sorted(scan_options))}), not both")
    else:
        _check_scan_of(model, sensitivity)
    sens = sensitivity
    if max_error_increase is not None and not np.isfinite(sens.baseline_error):
        raise ValueError("max_error_increase needs a classifier (top-1 error); this model's "
                         "error cannot be measured: give target_bytes or max_loss_increase")
    if max_loss_increase is not None and not sens.baseline_loss > 0:
        raise ValueError(f"max_loss_increase is a fraction of the validation loss, which is "
                         f"{sens.baseline_loss} for this model: give target_bytes instead")
    cost = byte_cost(model, min_bytes=min_bytes, **options)
    uncompressed = uncompressed_weights(model)
    names = [n for n in sens.layers if n in cost.layers]
    unplanned = [n for n in cost.layers if n not in names]
    if not names:
        raise ValueError("no layer of the scan can be planned (see the warning above)")

    if target_bytes is not None:
        # A target under the file at the grids' far end is refused before
        # the grid's costs (about 0.6 s a layer: minutes on a deep model).
        far = ({n: max(sens.sparsities) for n in names}, {n: min(sens.bits) for n in names})
        reach = cost.total(*far)
        if reach > int(target_bytes):
            raise _unreachable(int(target_bytes), reach, sens, uncompressed, unplanned)

    # Options: every (sparsity, bits) pair of the grids, per layer.
    grid = [(s, b) for s in [0.0] + list(sens.sparsities) for b in sens.bits]
    costs, dloss, derr = [], [], []
    if verbose:
        print(f"packed bytes of {len(names)} layers at {len(grid)} settings each")
    for name in names:
        costs.append(np.array([cost.layer(name, s, b) for s, b in grid], dtype=np.int64))
        # Pruning's increase read off its curve; clustering's at the
        # distortion it makes in the kernel pruned to that sparsity (fewer,
        # larger weights cluster differently than the whole kernel).
        points = {b: cost.distortion(name, 0.0, b) for b in sens.bits}
        distortion = [cost.distortion(name, s, b) for s, b in grid]
        for metric, out in (("loss", dloss), ("error", derr)):
            pruning = _pruning_increases(sens, name, metric)
            clustering = _clustering_curve(sens, name, metric, points)
            out.append(np.array([pruning[s] + clustering(d)
                                 for (s, _), d in zip(grid, distortion)]))

    def settings(picked):
        return ({n: grid[o][0] for n, o in zip(names, picked)},
                {n: grid[o][1] for n, o in zip(names, picked)})

    def other(picked):
        sp, bi = settings(picked)
        exact = cost.total(sp, bi)
        return exact, exact - int(sum(c[o] for c, o in zip(costs, picked)))

    evaluate = Evaluator(model, x, y, scan_options.get("batch_size"))
    # The model as it is, on the examples the plan is measured on: a given
    # `sensitivity` may come from others (a baseline of 300 scanned examples
    # beside a plan measured on 1,000 showed an increase that was not there).
    baseline_loss, baseline_error = (float(v) for v in evaluate()[:2])

    def measure(picked):
        saved = apply_settings(model, *settings(picked))
        try:
            return evaluate()
        finally:
            restore_settings(model, saved)

    # The file around the layers' records, first estimated at a middle setting.
    mid = [grid.index((min(sens.sparsities, key=lambda s: abs(s - 0.9)),
                       min(sens.bits, key=lambda b: abs(b - 5))))] * len(names)
    _, rest = other(mid)
    if target_bytes is not None:
        target_bytes = int(target_bytes)
        smallest = [int(np.argmin(c)) for c in costs]
        picked, exact = None, None
        budget_cut = 0
        for _ in range(_ROUNDS):
            values = [v - _TIE * c for v, c in zip(dloss, costs)]
            choice = _solve(costs, values, target_bytes - rest - budget_cut)
            if choice is None:
                break
            exact, rest_now = other(choice)
            if exact <= target_bytes:
                picked = choice
                break
            # The records' bytes around the choice differ from the estimate:
            # re-solve with the file as it is around this choice, and
            # tighten if the estimate is already that one.
            if rest_now > rest:
                rest = rest_now
            else:
                budget_cut += exact - target_bytes
        if picked is None:
            reach = cost.total(*settings(smallest))
            if reach <= target_bytes:
                picked, exact = smallest, reach
            else:
                raise _unreachable(target_bytes, reach, sens, uncompressed, unplanned)
        measured = measure(picked)
    else:
        # The error (index 1 of an evaluation) or the loss (index 0): the
        # smallest file whose increase is predicted, then measured, within.
        if max_error_increase is not None:
            which, increases, ties = 1, derr, dloss
            limit = float(max_error_increase) / 100.0
            asked = f"max_error_increase={max_error_increase:g}"

            def amount(v):
                return f"{100 * v:.2f} points"
        else:
            which, increases, ties = 0, dloss, derr
            limit = float(max_loss_increase) * baseline_loss
            asked = f"max_loss_increase={max_loss_increase:g}"

            def amount(v):
                # .3g: a floor of 0.0004 % read "0.0 %" above a budget of 0.
                return f"{100 * v / baseline_loss:.3g} % of the loss"
        ties = [np.nan_to_num(t) for t in ties]  # a non-classifier's error is NaN
        least = [int(np.argmin(e + 1e-6 * t)) for e, t in zip(increases, ties)]
        floor = float(sum(e[o] for e, o in zip(increases, least)))
        if floor > limit + 1e-12:
            raise ValueError(
                f"{asked} cannot be met: the smallest predicted increase on the grids is "
                f"{amount(floor)} (every layer at its least compressed setting); give a larger "
                "budget (to tfdc.plan also bits= that go higher)")
        base = (baseline_loss, baseline_error)[which]

        def within(result):
            return result[which] - base <= limit + 1e-12

        picked = measured = None
        allowed_increase = limit
        for _ in range(_ROUNDS):
            choice = _smallest_for(costs, increases, ties, allowed_increase)
            if choice is None:
                break
            result = measure(choice)
            if within(result):
                picked, measured = choice, result
                break
            # The layers' increases did not add up as predicted: ask for less.
            predicted = float(sum(e[o] for e, o in zip(increases, choice)))
            over = result[which] - base - limit
            allowed_increase = max(0.0, min(predicted, allowed_increase) - over)
            if allowed_increase <= 0:
                break
        if picked is None:
            result = measure(least)
            if not within(result):
                raise ValueError(
                    f"{asked} cannot be met: with every layer at its least compressed setting "
                    f"the measured increase is {amount(result[which] - base)}; give a larger "
                    "budget (to tfdc.plan also bits= that go higher)")
            picked, measured = least, result
        exact, _ = other(picked)
    sp, bi = settings(picked)
    # A kernel with zeros already (a model pruned before): every cost and
    # measurement above kept them, so the plan keeps them too (at 0 %, a
    # training run grew them back: a file 2.2x the plan, then cut).
    held = _zero_fractions(model, names)
    sp = {name: max(value, held[name]) for name, value in sp.items()}
    classifier = np.isfinite(baseline_error)
    rows = []
    for name, o, c, l, e in zip(names, picked, costs, dloss, derr):
        rows.append({"layer": name, "kind": sens.kinds.get(name, ""),
                     "weights": sens.weights[name], "sparsity": sp[name], "bits": bi[name],
                     "bytes": int(c[o]), "loss_increase": float(l[o]),
                     # A model that is no classifier has no error (NaN, not 0).
                     "error_increase": float(e[o]) if classifier else float("nan")})
    predicted_error = baseline_error + sum(r["error_increase"] for r in rows)
    result = Plan(sparsity=sp, bits=bi, predicted_bytes=int(exact),
                  predicted_loss=baseline_loss + sum(r["loss_increase"] for r in rows),
                  # Layers' increases add up past 100 % on a model near chance;
                  # a model that is no classifier has no error (NaN, not 1.0).
                  predicted_error=min(1.0, predicted_error) if np.isfinite(predicted_error)
                  else float("nan"),
                  measured_loss=float(measured[0]), measured_error=float(measured[1]),
                  baseline_loss=baseline_loss, baseline_error=baseline_error,
                  dense_bytes=cost.dense_bytes,
                  other_bytes=int(exact) - sum(r["bytes"] for r in rows), rows=rows,
                  target_bytes=target_bytes, max_error_increase=max_error_increase,
                  max_loss_increase=max_loss_increase, sensitivity=sens,
                  uncompressed=uncompressed)
    if verbose:
        print(result)
    return result
