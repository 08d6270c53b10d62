"""`tfdc.compress`: the whole Deep Compression pipeline in one call.

plan (`tfdc.plan`: per-layer sparsity and bits from a sensitivity scan and
the packer's exact byte costs) -> prune with fine-tuning
(`tfdc.GradualPruning`) -> share weights (`tfdc.ClusteredFineTuning`) ->
`tfdc.export`, then the packed file is run in LiteRT on the validation data.

Three kinds of budget:

* `target_bytes`: the packed file must be at most this size, and is aimed
  within 5 % under it. The planner aims at it; a file that lands above it
  after training loses its smallest remaining weights (a few more zeros per
  layer, the shared values kept) until it fits, and is fine-tuned once more
  with its zeros and codebooks fixed (which changes no byte of the coded
  streams); a file more than 5 % under it is trained again with a larger
  plan, unless the planner makes the same plan for more bytes.
* `max_error_increase`: the smallest file whose validation error (LiteRT, the
  packed file) is at most that many percentage points above the float
  model's, with 90 % confidence (`increase_bound`: the search tries several
  files and keeps the smallest that passes, so a pass on the measured
  increase alone would favour files whose measurement erred low). The
  planner's budget is measured without retraining, which
  retraining beats by far, so the byte budget is searched: each trial plans
  for a size, trains from the user's weights and measures the packed file;
  a bisection in log(bytes), between the smallest file the planner can make
  and its plan without retraining, keeps the smallest file that met the
  budget.
* `max_loss_increase`: the same search for the validation loss (the compiled
  loss, or the cross-entropy `compress` trains with), at most that fraction
  above the float model's (`loss_increase_bound`: an upper confidence bound
  of the mean paired per-example difference). It suits any model with a
  loss: a regression model too.

Whatever the budget, the result says whether it was met (`result.met`), and a
missed budget is never silent: it is logged and warned about
(`BudgetMissedWarning`).
"""

import dataclasses
import functools
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings

import numpy as np

from tfdc.errors import (finite, first_line, listed, raise_if_signalled,
                         require_tensorflow_backend)
from tfdc.mistakes import (_label_classes, _reads_probabilities, check_labels, check_output_labels,
                           looks_like_logits, loss_kind, loss_name, majority_error, mistakes,
                           output_from_logits, threshold_free)
from tfdc.scan import (DEFAULT_BITS, DEFAULT_SAMPLES, DEFAULT_SPARSITIES, _index, _items,
                       _labels, _length, _map, check_batched, check_finite, input_count,
                       unwrap_one_input)
from tfdc.values import to_numpy

__all__ = ["compress", "CompressResult", "BudgetMissedWarning", "scaled_plan", "HandPlan",
           "increase_bound", "fewest_examples", "loss_increase_bound", "DEFAULT_CONFIDENCE"]

# The error-budget search bisects between the smallest file the planner
# reaches and its plan without retraining; without a planner, the lower end
# is this fraction of the upper one.
_SEARCH_FLOOR = 0.1
# It stops once the two ends are this close: a run between them would save
# under 4 % of the file.
_SEARCH_STEP = 1.08
# Aim a byte budget slightly under the target: training moves the coded size
# by a few percent either way and a file over the target must be cut (which
# costs accuracy), one under it only wastes a little.
_AIM = 0.97
_TOLERANCE = 0.05
# An error or loss budget is met when the increase's upper bound at this
# confidence is within it (`increase_bound`, `loss_increase_bound`); the
# demo's --confidence default too.
DEFAULT_CONFIDENCE = 0.9
# Validation examples below which compress does not judge whether the float
# model beats a constant answer (`_warn_no_better_than_constant`), and warns
# that a loss budget's t bound is rough (`_check_loss_examples`).
_FEWEST_TO_JUDGE = 30
# The least fraction of a kernel's weights a cut to a byte target keeps.
_FEWEST_KEPT = 0.01
# A byte target down to this fraction of the planner's smallest file is
# still tried with that file's plan: the planner's bytes are those of the
# model pruned and clustered without retraining, and training made a
# 784-64-10 MLP's smallest file 9 % smaller (1,555 -> 1,420 B).
_UNDER_SMALLEST = 0.8


class BudgetMissedWarning(UserWarning):
    """`tfdc.compress` kept a file that misses its budget (`result.met` is
    False; the message says by how much and what to try). A warning, not an
    error: the run closest to the budget is written, as trained where
    removing its smallest weights could not bring it under a byte target
    (cut to 1 % of its pruned layers' weights and still over, it would keep
    little of the model and miss anyway). Make it an error with
    `warnings.simplefilter("error", tfdc.BudgetMissedWarning)`, or check
    `result.met`."""


@dataclasses.dataclass
class HandPlan:
    """Per-layer settings not made by the planner (`scaled_plan`, a user's
    own): `sparsity` and `bits` dicts keyed by layer name, as
    `tfdc.GradualPruning` and `tfdc.ClusteredFineTuning` take them."""

    sparsity: dict
    bits: dict
    predicted_bytes: int = None
    source: str = "hand"

    def __str__(self):
        width = max([len(n) for n in self.sparsity] + [5])
        lines = [f"{'layer':<{width}}  {'sparsity':>8}  {'bits':>4}"]
        for name, s in self.sparsity.items():
            lines.append(f"{name:<{width}}  {s:>8.2%}  {self.bits.get(name, '-'):>4}")
        if self.predicted_bytes:
            lines.append(f"predicted packed size: {self.predicted_bytes:,} B ({self.source})")
        return "\n".join(lines)


@dataclasses.dataclass
class CompressResult:
    """What `tfdc.compress` made.

    Attributes:
        path: the packed `.tflite` file.
        report: its `tfdc.ExportReport` (per-layer table: `print(report)`).
        model: the compressed Keras model (pruned, clustered, constraints
            removed; BatchNormalization folded if the model had any).
        plan: the plan of the chosen run (`tfdc.Plan` or `HandPlan`; a
            `HandPlan` with the sparsity the file has where a file over
            `target_bytes` lost weights).
        packed_bytes: size of the packed file.
        float_bytes: 4 bytes per parameter of the inference model (after
            BatchNormalization folding): what a float32 file holds.
        float_error, error: top-1 validation error (fractions) of the float
            model (Keras) and of the packed file (LiteRT); NaN for a model
            that is not a classifier (compressed to `target_bytes` and
            scored by its compiled loss).
        float_loss, loss: the validation loss (the compiled loss, else the
            cross-entropy `compress` trains with) of the float model and of
            the packed file's LiteRT outputs.
        error_increase_bound: the upper `confidence` bound of the increase
            (`increase_bound`, percentage points; the measured increase
            where `confidence` is None).
        loss_increase_bound: with `max_loss_increase`, the same for the
            loss (`loss_increase_bound`, a fraction of `float_loss`).
        target_bytes, max_error_increase, max_loss_increase, confidence:
            the budget asked for.
        met: whether the budget was met; `message` says how, or why not.
        trials: one dict per training run (planned bytes, packed bytes,
            error, increase and bound in points, passed; with
            `max_loss_increase` also `loss_increase` and `loss_bound`).
        times: seconds per stage (`plan`, `train`, `export`, `evaluate`:
            the packed files' LiteRT runs on the validation data, `total`).
        full_integer: whether the file is full-integer (int8 activations
            and weights); `model` is then the float model it was converted
            from.
    """

    path: str
    report: object
    model: object
    plan: object
    packed_bytes: int
    float_bytes: int
    float_error: float
    error: float
    target_bytes: int
    max_error_increase: float
    met: bool
    message: str
    trials: list
    times: dict
    error_increase_bound: float = None
    confidence: float = None
    float_loss: float = None
    loss: float = None
    max_loss_increase: float = None
    loss_increase_bound: float = None
    full_integer: bool = False

    @property
    def ratio(self):
        """Float32 bytes / packed bytes."""
        return self.float_bytes / self.packed_bytes

    @property
    def error_increase(self):
        """Packed error minus float error, in percentage points."""
        return 100.0 * (self.error - self.float_error)

    @property
    def loss_increase(self):
        """Packed loss over float loss, as a fraction (0.05: 5 % higher)."""
        return self.loss / self.float_loss - 1.0

    def __str__(self):
        scored = (f"validation loss {self.loss:.4g} (float {self.float_loss:.4g}"
                  + (f", {100 * self.loss_increase:+.1f} %)" if self.max_loss_increase is not None
                     else ")"))
        if not math.isnan(self.error):
            error = (f"validation error {self.error:.2%} (float {self.float_error:.2%}, "
                     f"{self.error_increase:+.2f} points)")
            scored = error if self.max_loss_increase is None else f"{scored}, {error}"
        kind = " full-integer" if self.full_integer else ""
        from tfdc.report import times_smaller
        return (f"{self.path}: {self.packed_bytes:,} B packed{kind} ("
                f"{times_smaller(self.packed_bytes, self.float_bytes)} "
                f"{self.float_bytes:,} B float32); {scored}. "
                f"{'Budget met' if self.met else 'BUDGET MISSED'}: {self.message}")


# --------------------------------------------------------------------- checks
# Batches a tf.data.Dataset of unknown length is counted up to: more, and it
# is taken for one that repeats (a million batches is 32 M examples of 32).
_MOST_BATCHES_COUNTED = 1_000_000
_COUNT_REPORT_SECONDS = 10.0


def _with_known_length(dataset, what, log=None):
    """`dataset` (tf.data), with its length in batches known: a TFRecord
    file, a filter or a generator leaves it unknown to TensorFlow, and
    compress, which scales its epochs by it, refused these finite datasets
    as "no known length". Counted once (a read of the data, no training),
    saying so through `log` and, every `_COUNT_REPORT_SECONDS`, how far it
    got (an endless generator was read for minutes in silence); one that
    repeats without end is refused."""
    import tensorflow as tf

    from tfdc.scan import refuse_endless
    refuse_endless(dataset, what)
    if int(dataset.cardinality()) != tf.data.UNKNOWN_CARDINALITY:
        return dataset
    log = log or (lambda *a, **k: None)
    log(f"tfdc.compress: {what} is a tf.data.Dataset of unknown length: counting its batches "
        "(one read, no training)")
    # Each batch read as one byte, a thousand at a time: the data never
    # reaches Python.
    chunks = dataset.take(_MOST_BATCHES_COUNTED + 1).map(
        lambda *_: tf.constant(1, tf.int8)).batch(1000)
    count, shown = 0, time.monotonic()
    for chunk in chunks:
        count += int(chunk.shape[0])
        if count <= _MOST_BATCHES_COUNTED and time.monotonic() - shown > _COUNT_REPORT_SECONDS:
            shown = time.monotonic()
            log(f"  {count:,} batches so far (at most {_MOST_BATCHES_COUNTED:,} are counted; "
                "if it never ends, stop it and give its length: assert_cardinality)")
    if count > _MOST_BATCHES_COUNTED:
        raise ValueError(f"{what}: a tf.data.Dataset of unknown length that had not ended after "
                         f"{_MOST_BATCHES_COUNTED:,} batches (one that repeats?): pass a finite "
                         "dataset, or give its length: dataset.apply(tf.data.experimental."
                         "assert_cardinality(batches))")
    if count == 0:
        raise ValueError(f"{what} is empty")
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _num_batches(dataset):
    """A PyDataset's `num_batches`, or -1 where it has none (no `__len__`:
    refused later as of no known length)."""
    try:
        return dataset.num_batches
    except NotImplementedError:
        return -1


def _check_data(data, what, allow_dataset, inputs=1, outputs=1, log=None):
    """`(x, y)` as arrays (x: `_check_inputs`; y a list or dict of arrays
    for several `outputs`), or a dataset where allowed; else a ValueError
    naming `what`. `inputs`: the model's inputs (None: not known, a
    subclassed model). `log`: where counting a dataset's batches is told."""
    import keras
    if allow_dataset and not isinstance(data, (tuple, list)):
        if hasattr(data, "element_spec"):
            return _with_known_length(data, what, log)
        if isinstance(data, keras.utils.PyDataset):
            if _num_batches(data) is None:  # Keras's endless PyDataset: fit never ended
                raise ValueError(f"{what}: a PyDataset whose num_batches is None, which Keras "
                                 "reads as endless: give it a num_batches (or __len__), the "
                                 "batches of one pass")
            return data
        raise ValueError(f"{what} must be a tuple (x, y) of arrays or a keras.utils.PyDataset "
                         f"/ tf.data.Dataset of (x, y) batches, got {type(data).__name__}")
    if isinstance(data, (tuple, list)) and len(data) == 3:
        raise ValueError(f"{what}: sample weights, (x, y, sample_weight), are not supported: "
                         "tfdc.compress trains and scores every example alike; give (x, y)")
    if isinstance(data, (tuple, list)) and len(data) != 2:
        raise ValueError(f"{what} must be a tuple (x, y) of NumPy arrays, got a "
                         f"{type(data).__name__} of {len(data)}")
    if not isinstance(data, (tuple, list)):
        hint = (" (the packed file is scored on them in LiteRT: collect a dataset's batches "
                "into arrays)" if hasattr(data, "__iter__") else "")
        raise ValueError(f"{what} must be a tuple (x, y) of NumPy arrays, got "
                         f"{type(data).__name__}{hint}")
    x = _check_inputs(data[0], what, inputs)
    y = _check_inputs(data[1], what, outputs, "y", "output") if outputs > 1 else \
        _labels(data[1], 1)
    if outputs == 1 and y.ndim == 0:
        raise ValueError(f"{what}: x and y must be arrays with one row per example, got shapes "
                         f"{_shapes(x)} and {y.shape}")
    if outputs == 1:
        check_finite(y, what, "y")
    n = _length(x)
    if n != _length(y):
        raise ValueError(f"{what}: x has {n:,} examples but y has {_length(y):,}")
    if n == 0:
        raise ValueError(f"{what} is empty")
    return x, y  # the labels are checked against the model's outputs (check_labels)


def _check_inputs(x, what, count, name="x", kind="input"):
    """x as a NumPy array, or for a model with several inputs a list (in
    the order of `model.inputs`) or a dict (keyed as the model's inputs) of
    arrays, one per input, with one row per example in each. The same for
    the labels of several outputs (`name` "y", `kind` "output"). `count`:
    how many the model has (None: not known)."""
    x = unwrap_one_input(x, count)
    several = isinstance(x, (dict, list, tuple))
    given = len(x) if several else 1
    if count is not None and given != count:
        raise ValueError(f"{what}: {name} is "
                         + (f"a {type(x).__name__} of {given:,}" if several else "one array")
                         + f", but the model has {count} {kind}{'s' if count != 1 else ''}: give "
                         + ("one array" if count == 1 else f"a list or dict of one array per "
                            f"{kind}"))
    x = _map(x, np.asarray)
    arrays = [a for _, a in _items(x)]
    if not arrays or any(a.ndim == 0 for a in arrays):
        raise ValueError(f"{what}: {name} must be an array with one row per example (or a list "
                         f"or dict of them, one per {kind} of the model), got {_shapes(x)}")
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"{what}: {name}'s arrays must have one row per example each, got "
                         f"shapes {_shapes(x)}")
    for key, a in _items(x):
        check_finite(a, what, name if key is None else f"{name}[{key!r}]")
    return x


def _shapes(x):
    """The shape of x, or of each of its arrays, for messages."""
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {np.shape(v)}" for k, v in x.items()) + "}"
    if isinstance(x, list):
        return "[" + ", ".join(str(np.shape(v)) for v in x) + "]"
    return str(np.shape(x))


def _head(x, n):
    """The first `n` examples of x (an array, or a list or dict of them)."""
    return _index(x, slice(0, n))


def _check_number(value, name, integer=False):
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not number or not finite(value) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        if number and not finite(value) and value == value:  # inf, or an int past float's range
            kind = "finite"  # "must be a number, got inf" read as a type mistake
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_increase(value, name, unit):
    """An error or loss budget as a float >= 0 (None stays None), else a
    ValueError naming it and its `unit`."""
    if value is None:
        return None
    _check_number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 {unit}, got {value!r}")
    return float(value) + 0.0  # -0.0 as 0.0: it read "a budget of -0"


def _check_confidence(confidence, none=""):
    """`confidence` as a float in (0, 1), else a ValueError (`none`: what
    else the caller takes, for the message)."""
    _check_number(confidence, "confidence")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) (e.g. 0.9){' ' + none if none else ''}, "
                         f"got {confidence!r}")
    return float(confidence)


def _epochs(epochs, steps_per_epoch):
    """(prune epochs, cluster epochs): by default about 6,000 pruning and
    1,500 clustering steps, at least 2 + 1 and at most 60 + 15 epochs
    (LeNet-300-100 on 55,000 MNIST images: 14 + 3 epochs; half as many
    steps cost it 0.4 points of test error at 69x, docs/BENCHMARKS.md)."""
    if epochs is None:
        prune = int(np.clip(round(6000 / steps_per_epoch), 2, 60))
        cluster = int(np.clip(round(1500 / steps_per_epoch), 1, 15))
        return prune, cluster
    if isinstance(epochs, (tuple, list)):
        if len(epochs) != 2:  # it read "epochs must be an integer, got (1,)"
            raise ValueError("epochs must be an integer or a pair (pruning epochs, clustering "
                             f"epochs), got {epochs!r}")
        prune, cluster = epochs
    else:
        _check_number(epochs, "epochs", integer=True)
        if epochs < 2:
            raise ValueError(f"epochs must be at least 2 (pruning and clustering), got {epochs}")
        cluster = max(1, int(epochs) // 4)
        prune = int(epochs) - cluster
    for name, n in (("pruning epochs", prune), ("clustering epochs", cluster)):
        _check_number(n, name, integer=True)
        if n < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    return int(prune), int(cluster)


# --------------------------------------------------------------- model helpers
def _copy(model):
    """A copy of `model` without tfdc's constraints: the masks of a model
    pruned by the callbacks and not stripped came over, kept a layer the plan
    leaves dense at the old sparsity, and the copy's GradualPruning warned
    the user to `tfdc.strip` a model they never see."""
    from tfdc.constraints import strip
    from tfdc.layers import copy_model
    try:
        copy = copy_model(model)
    except ValueError as e:
        raise ValueError(f"tfdc.compress trains copies of the model and {e}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # about the copy; _warn_compressed_already tells
        return strip(copy)


def _has_batchnorm(model):
    import keras
    from tfdc.select import iter_layers
    return any(isinstance(layer, keras.layers.BatchNormalization) for layer in iter_layers(model))


def _inference_model(model):
    """The model as it runs on the device: BatchNormalization folded."""
    if _has_batchnorm(model):
        from tfdc.batchnorm import fold_batchnorm
        from tfdc.layers import is_subclassed
        if is_subclassed(model):
            raise ValueError(
                f"tfdc.compress folds the BatchNormalization of model {model.name!r} into the "
                "kernels before it (converted unfolded, it would rescale their shared values), "
                f"which needs a Sequential or functional model, not a subclassed one "
                f"({type(model).__name__}): build it with keras.Input and the functional API")
        return fold_batchnorm(model)
    return model


def _loss(model, classes, one_hot):
    """The user's compiled loss, else cross-entropy for the model's outputs
    and labels: binary for one output unit, categorical for one-hot labels,
    sparse categorical for class indices (from probabilities after a softmax
    or sigmoid, else from logits)."""
    import keras

    from tfdc.scan import one_loss
    loss = getattr(model, "loss", None)
    if loss is not None:
        return one_loss(loss)
    from_logits = output_from_logits(model) is not False
    if classes == 1:
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    if one_hot:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def _takes(model):
    """" (it takes (None, 28, 28))": the input shapes of a Sequential or
    functional model, for a message about x it cannot run on (Keras's own
    may name an inner layer's shape); "" for a subclassed one."""
    from tfdc.layers import is_subclassed
    if is_subclassed(model):
        return ""
    shapes = [tuple(t.shape) for t in model.inputs]
    return f" (it takes {shapes[0] if len(shapes) == 1 else ', '.join(map(str, shapes))})"


def _validation_outputs(model, x):
    """The float model's outputs on the validation examples (`[N]` made
    `[N, 1]`); for several outputs a list of arrays in the order of
    `model.outputs`."""
    from tfdc.layers import is_subclassed
    if not is_subclassed(model):  # strings for a numeric input: a shape error from Keras
        by_name = {getattr(t, "name", None): t for t in model.inputs}
        for key, a in _items(x):
            spec = (by_name.get(key) if isinstance(key, str) else
                    model.inputs[key if isinstance(key, int) else 0])
            dtype = str(getattr(spec, "dtype", "float32"))
            if "string" in dtype:  # Keras's predict takes no NumPy strings
                raise ValueError(
                    "validation_data: the model takes strings (input "
                    f"{getattr(spec, 'name', key)!r}), which tfdc.compress cannot score or "
                    "calibrate: keep the lookup "
                    "(StringLookup, TextVectorization) outside the model and compress the part "
                    "that takes its token ids")
            if np.asarray(a).dtype.kind in "USO":
                raise ValueError(f"validation_data: x holds {np.asarray(a).dtype} values (text "
                                 f"or objects); the model takes {dtype} numbers")
    try:
        model(_head(x, 8), training=False)  # eagerly first: Keras's readable error
        out = model.predict(x, batch_size=512, verbose=0)
    except Exception as e:  # noqa: BLE001 - Keras raises several types for this
        raise ValueError(f"validation_data: the model cannot run on x of shape {_shapes(x)}"
                         f"{_takes(model)}: {first_line(e)}") from None
    if isinstance(out, (list, tuple, dict)):
        import keras
        return [np.asarray(o) for o in keras.tree.flatten(out)]
    out = np.asarray(out)
    return out[:, None] if out.ndim == 1 else out


def _float_mistakes(model, outputs, y, from_logits, max_error_increase, what="validation_data"):
    """`(mistakes, None)` of a classifier's validation outputs, else `(None,
    why)` for a model compressed to a byte budget and scored by its own
    compiled loss; a ValueError saying what to do for anything else (`what`:
    the data, for the messages)."""
    free = threshold_free(model, outputs)
    if free is not None:
        if max_error_increase is not None:
            raise ValueError(
                f"max_error_increase is a budget of classification error, and the one output "
                f"unit of {model.name!r}, not a sigmoid, is compiled with {free}, which sets no "
                "decision threshold (0 for a logit, 0.5 for a probability): give target_bytes "
                "or max_loss_increase, or compile a binary classifier with keras.losses."
                "BinaryCrossentropy(from_logits=True)")
        return None, f"one linear output unit, trained with {free}"
    try:
        return mistakes(outputs, y, from_logits, what), None
    except ValueError as e:
        loss = getattr(model, "loss", None)
        if max_error_increase is not None:
            hint = ("max_error_increase is a budget of top-1 classification error; for another "
                    "kind of model give target_bytes or max_loss_increase")
        elif loss is None:
            hint = ("Compile a model that is not a classifier with its loss (tfdc.compress then "
                    "reports it) and give target_bytes or max_loss_increase")
        elif _multi_label(loss, outputs, y):
            return None, f"multi-label: {loss_name(loss)} over {outputs.shape[-1]} units"
        elif np.ndim(outputs) > 2:  # per step or position: no one class per example
            return None, (f"outputs of shape {tuple(np.shape(outputs)[1:])} per example, "
                          f"{loss_name(loss)}")
        elif "crossentropy" in loss_kind(loss):
            hint = f"The model is compiled with {loss_name(loss)}: fix the labels"
        else:  # a regression, or another task compiled with its loss
            return None, "its labels are not class indices"
        raise ValueError(f"{e}. {hint}") from None


def other_scale(x, reference):
    """`(key, how)` for each input array of `x` on another scale than the
    same input of `reference` (the training data, as the model takes it;
    `how` as `tfdc.exporter.scale_mismatch` says it): uint8 validation
    pixels beside training images in [0, 1] were scored without a word (a
    loss of 2.29 for 0.53)."""
    from tfdc.exporter import scale_mismatch, span_of
    references = dict(_items(reference))
    found = [(key, scale_mismatch(span_of(array), references[key]))
             for key, array in _items(x) if key in references]
    return [(key, how) for key, how in found if how]


def _warn_other_scale(x_val, reference):
    """Warn of validation inputs on another scale than `reference`, the
    training inputs (`other_scale`)."""
    for key, found in other_scale(x_val, reference):
        name = "x" if key is None else f"x[{key!r}]"
        warnings.warn(f"tfdc.compress: validation_data: its {name} values {found}: is it "
                      "preprocessed as the training data is (e.g. scaled to [0, 1])? The "
                      "budget is judged on it.", stacklevel=3)


def _multi_label(loss, outputs, y):
    """Whether a model is a multi-label classifier: a binary cross-entropy
    over several output units, each label in [0, 1] (not one class per
    example: no top-1 error, scored by its loss)."""
    y = np.asarray(y)
    return ("binary" in loss_kind(loss) and np.ndim(outputs) == 2
            and outputs.shape[-1] > 1 and y.shape == np.shape(outputs)
            and y.dtype.kind in "biuf" and bool(((y >= 0) & (y <= 1)).all()))


def _first_batch(train, classes, model=None):
    """A first batch `(x, y)` of the training data; for arrays and a
    classifier's `classes`, every label is checked against the outputs; a
    dataset's, that it is a batch (`model`'s inputs)."""
    if isinstance(train, tuple):
        if classes is not None:
            check_labels(train[1], classes, "train_data", soft=True)
        return _head(train[0], 8), _head(train[1], 8)
    try:
        batch = _peek(train) if not hasattr(train, "element_spec") else next(iter(train))
    except Exception as e:  # noqa: BLE001 - a user's PyDataset raises what it raises
        raise ValueError(f"train_data: cannot read a first batch: {first_line(e)}") from None
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        raise ValueError("train_data: its batches are (x, y, sample_weight); sample weights are "
                         "not supported: tfdc.compress trains and scores every example alike; "
                         "give (x, y) batches")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"train_data must yield (x, y) batches, got {type(batch).__name__}")
    check_batched(batch[0], model, "train_data")
    y = batch[1]
    if isinstance(y, dict) and len(y) == 1:  # one output's labels in its dict, as fit takes them
        (y,) = y.values()
    return batch[0], y


def _plain_batch(batch):
    """A batch `(x, y, ...)` whose labels `y` sit in the one output's dict
    or list (`{"probs": y}`), as the plain view trains on it: `(x, y, ...)`."""
    import keras
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        return batch  # _first_batch says what is wrong
    return (batch[0], keras.tree.flatten(batch[1])[0], *batch[2:])


def _plain_labels(dataset):
    """`dataset`, a PyDataset whose labels sit in the output's dict or list,
    as a PyDataset of `_plain_batch`es (with the same workers, length and
    epoch hooks)."""
    import keras

    class PlainLabels(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=dataset.workers,
                             use_multiprocessing=dataset.use_multiprocessing,
                             max_queue_size=dataset.max_queue_size)
            self.plain_of = dataset

        def __len__(self):
            return len(dataset)

        @property
        def num_batches(self):
            return dataset.num_batches

        def __getitem__(self, index):
            return _plain_batch(dataset[index])

        def on_epoch_begin(self):
            dataset.on_epoch_begin()

        def on_epoch_end(self):
            dataset.on_epoch_end()

    return PlainLabels()


def _peek(dataset):
    """`dataset[0]` of a PyDataset, read from a shallow copy whose NumPy
    random generators are copies: an augmenting dataset (e.g.
    `tfdc.recipe.ShiftedImages`) then gives the training exactly the batches
    it would have given without the check."""
    import copy
    if getattr(dataset, "plain_of", None) is not None:  # _plain_labels
        return _plain_batch(_peek(dataset.plain_of))
    view = copy.copy(dataset)
    for name, value in vars(dataset).items():
        if isinstance(value, (np.random.Generator, np.random.RandomState)):
            setattr(view, name, copy.deepcopy(value))
    return view[0]


def _check_train(model, batch, loss, fn):
    """Fail now, not after the scan, on training data that the model or its
    loss cannot take: the loss of a first batch, called eagerly as `fit`
    calls it (no copy: the random state the training runs start from is
    left as it was), must be finite. `fn`: the loss as `mean_loss` takes
    it."""
    from tfdc.scan import mean_loss
    x, y = batch
    if fn is None:  # nothing Keras can call outside compile: fit will say
        return
    try:
        value = mean_loss(fn, y, model(x, training=False))
    except Exception as e:  # noqa: BLE001 - Keras raises several types for this
        from tfdc.scan import one_hot_hint
        raise ValueError(f"train_data: the model and its loss ({loss_name(loss)}) cannot take a "
                         f"batch of it: {first_line(e)}{one_hot_hint(loss_name(loss), y)}"
                         ) from None
    if not math.isfinite(value):
        raise ValueError(f"train_data: the loss ({loss_name(loss)}) of a first batch is not "
                         "finite: check the labels and the inputs")


def _label_form(y):
    """"one-hot" or "class indices" for a classifier's labels (None for
    several outputs' labels)."""
    if isinstance(y, (list, tuple, dict)):
        return None
    shape = np.shape(y)
    return "one-hot" if len(shape) == 2 and shape[1] >= 2 else "class indices"


def _count(n, noun):
    """`1 epoch`, `3 epochs`, `1,024 steps`."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def increase_bound(reference_wrong, wrong, confidence):
    """Upper confidence bound of an error increase, in percentage points,
    from two models' mistakes on the same examples.

    The increase is (b - c) / n, where b examples are wrong only for the
    second model and c only for the first; the examples both get right or
    both get wrong say nothing about the difference, so pairing makes the
    bound far tighter than two separate error bars (each about +-0.2
    points on 5,000 examples at 2 % error). The bound is Bonett and Price's
    adjusted Wald bound for paired proportions (Psychological Methods,
    2012): one added to b and to c, two to n, which keeps it sound when b or
    c is small or zero.

    Args:
        reference_wrong, wrong: bool arrays, one entry per example (True:
            that model's prediction is wrong), the reference (float)
            model's first.
        confidence: probability that the true increase is at most the
            bound, in (0, 1) (0.5: about the measured increase).

    Returns:
        The bound, in percentage points (0.5 = half a point).

    Example:

    ```python
    import numpy as np
    from tfdc.compressor import increase_bound
    reference = np.zeros(5000, bool)
    packed = np.zeros(5000, bool)
    packed[:10] = True            # 10 new mistakes: +0.20 points measured
    increase_bound(reference, packed, 0.9)   # 0.289 (at most +0.29 points)
    ```
    """
    reference_wrong = np.asarray(reference_wrong, bool)
    wrong = np.asarray(wrong, bool)
    if reference_wrong.shape != wrong.shape or wrong.ndim != 1 or len(wrong) == 0:
        raise ValueError(f"increase_bound needs two bool arrays of the same length > 0, got "
                         f"shapes {reference_wrong.shape} and {wrong.shape}")
    confidence = _check_confidence(confidence)
    return _paired_bound(int(np.count_nonzero(wrong & ~reference_wrong)),
                         int(np.count_nonzero(reference_wrong & ~wrong)), len(wrong), confidence)


def _paired_bound(worse, better, examples, confidence):
    """`increase_bound` from its counts: `worse` examples wrong only for
    the second model, `better` only for the first, of `examples`."""
    n = examples + 2
    worse, better = (worse + 1) / n, (better + 1) / n
    increase = worse - better
    spread = math.sqrt(max(worse + better - increase ** 2, 0.0) / n)
    return 100.0 * (increase + statistics.NormalDist().inv_cdf(confidence) * spread)


def fewest_examples(max_error_increase, confidence=DEFAULT_CONFIDENCE):
    """The fewest validation examples on which a packed file exactly as
    accurate as the float model (wrong on the same examples) meets
    `max_error_increase` at `confidence` (`increase_bound`): its bound is
    above zero and falls with the number of examples. With fewer examples,
    only a file more accurate than the float model on them passes.

    Args:
        max_error_increase: the error budget, in percentage points (> 0).
        confidence: as for `increase_bound`.

    Returns:
        The number of examples.

    Example:

    ```python
    from tfdc.compressor import fewest_examples
    fewest_examples(0.2)    # 905: with 0.2 points to spend, at least 905
    fewest_examples(1.0)    # 180
    ```
    """
    _check_number(max_error_increase, "max_error_increase")
    if not max_error_increase > 0:
        raise ValueError(f"max_error_increase must be positive, got {max_error_increase!r}")
    confidence = _check_confidence(confidence)
    low, high = 1, 2
    while _paired_bound(0, 0, high, confidence) > max_error_increase:
        low, high = high, 2 * high
    while low < high:  # the bound of no discordant example falls as n grows
        middle = (low + high) // 2
        if _paired_bound(0, 0, middle, confidence) > max_error_increase:
            low = middle + 1
        else:
            high = middle
    return low


def _warn_compressed_already(kernels, keys):
    """Warn (before any training) when the model's kernels look pruned or
    clustered already (a tenth of a kernel's weights exactly 0: a trained
    float kernel has next to none; or, in one of 1,024 weights or more,
    the few shared values of `tfdc.values.clustered_values`): compress plans from the
    float weights, and from these its predictions were far off (a probe
    recompressing `result.model`: 7,349 B for 4,905 planned, then cut to
    5,978 B at 18.6 % error, where compressing the float model to the same
    target gave 5,940 B at 13.0 %)."""
    from tfdc.values import clustered_values
    seen = []
    for s in kernels:
        w = to_numpy(s.variable)
        if w.size < 64:
            continue
        zeros = float(np.mean(w == 0))
        # Few values tell clustering only in a kernel of many weights.
        if zeros >= 0.1 or (w.size >= 1024 and clustered_values(w) is not None):
            values = len(np.unique(w[w != 0]))
            seen.append(f"{keys[id(s.layer)]} ({zeros:.0%} zeros, {values:,} nonzero values)")
    if seen:
        warnings.warn(f"tfdc.compress: {', '.join(seen)} look already pruned or clustered: "
                      "compress plans and trains from a float model's weights; give it the "
                      "model before compression (its plan and its error will be far better)",
                      stacklevel=3)


def _warn_logits_under_a_probability_loss(model, outputs, who="tfdc.compress",
                                         uses="compress trains with it", stacklevel=3):
    """Warn of a classifier whose outputs are logits while its compiled
    cross-entropy reads probabilities (from_logits=False, the default of
    the loss's name): compress trains with that loss, which Keras computes
    on the logits as if they were probabilities (+3.6 points in a probe,
    where from_logits=True lost none), and tfdc.plan predicts losses with
    it (a 4,575 B plan for 12,000, 62 % under, +20 points measured)."""
    from tfdc.scan import loss_callable
    loss = getattr(model, "loss", None)
    if loss_callable(loss) is None or np.ndim(outputs) != 2 or not looks_like_logits(outputs):
        return
    if _reads_probabilities(loss):
        warnings.warn(f"{who}: the model's outputs are logits (not probabilities: "
                      f"negative, or rows not summing to 1), but its loss, {loss_name(loss)}, reads "
                      f"probabilities (from_logits=False), and {uses}: compile "
                      "the model with from_logits=True (e.g. keras.losses."
                      + ("BinaryCrossentropy" if np.shape(outputs)[-1] == 1 else
                         "SparseCategoricalCrossentropy") + "(from_logits=True))",
                      stacklevel=stacklevel)


def _warn_no_better_than_constant(float_wrong, y, classes, who="tfdc.compress"):
    """Warn (before any training) when the float model classifies the
    validation data about as badly as always answering its most frequent
    class (within a tenth of its error; on `_FEWEST_TO_JUDGE` examples or
    more, of two classes or more), and when the validation labels miss some
    of the model's classes:
    compressing it is pointless, and the usual cause is a mistake in the
    data."""
    error = float(np.mean(float_wrong))
    constant, label = majority_error(y, classes, "validation_data")
    # A few examples, or one class only, cannot tell a model from a constant.
    n = len(float_wrong)  # compared in examples: the fractions' rounding differs
    # Within a tenth of the constant's error is as bad: an untrained model,
    # or 0-255 pixels for a model with its own Rescaling, scored 87.9 %
    # against the constant's 88.8 % without a word.
    if n >= _FEWEST_TO_JUDGE and constant > 0 and \
            np.count_nonzero(float_wrong) >= round(0.9 * constant * n):
        # Far above it (0/1 labels given as booleans scored 80 %): "worse
        # than", not "about that of".
        than = "worse than" if error > 1.1 * constant else "about"
        warnings.warn(f"{who}: the float model's validation error ({error:.2%}) is "
                      f"{than} that of always answering class {label} ({constant:.2%}): is it "
                      "trained, and do the validation inputs reach it as in training (the same "
                      "scaling and preprocessing, labels paired with their inputs)?",
                      stacklevel=3)
    present = np.unique(_label_classes(y, classes, "validation_data"))
    if classes > 2 and n >= _FEWEST_TO_JUDGE and len(present) < classes:
        missing = sorted(set(range(classes)) - set(present.tolist()))
        warnings.warn(f"{who}: the validation labels hold {len(present)} of the model's "
                      f"{classes} classes (none of {listed(missing, 10)}): the budget is judged "
                      "on those classes alone; give validation data of every class",
                      stacklevel=3)


_COSTLY_POINTS = 5.0  # error points a byte target may cost before the result says so
_COSTLY_LOSS = 1.5  # the same for a loss, as a multiple of the float model's


def _costly_target(error, float_error, binding=True, loss=None, float_loss=None, cause=None):
    """A sentence for a byte target met at a large cost in error (2,950 B
    at +48 points read as a plain success) or, for a model scored by its
    loss (`error` NaN), in loss (a regression's at 13x its float loss, in
    silence), else "". `binding`: whether the file is near the target; one
    far under it was not made smaller by it, so a larger target is no
    remedy there. `cause`: a likelier cause known before training
    (`_int8_cause`: 0-255 calibration samples cost +82 points, which the
    message put down to the target)."""
    if error is None or float_error is None or math.isnan(error) or math.isnan(float_error):
        if loss is None or not float_loss or not loss > _COSTLY_LOSS * float_loss:
            return ""
        cost, budget = (f"{loss / float_loss - 1:+.0%} of validation loss ({loss:.4g} for "
                        f"{float_loss:.4g})"), "max_loss_increase"
    else:
        points = 100 * (error - float_error)
        if points <= _COSTLY_POINTS:
            return ""
        cost, budget = f"{points:+.1f} points of validation error", "max_error_increase"
    if cause:
        return f". The file costs {cost}: {cause}."
    if not binding:
        return (f". The file costs {cost}, though the target allowed more bytes: give "
                f"{budget} to bound it.")
    return (f". Meeting it costs {cost}: a larger target keeps more of the float model's "
            f"accuracy (or give {budget}).")


def _int8_cause(miscalibrated, int8_error, float_error):
    """The sentence `_costly_target` gives for a full-integer file whose
    cost was known before training: calibration samples on another scale
    than the training data (`miscalibrated`, the inputs), or the float
    model itself converted full-integer scoring far worse (`int8_error`,
    None where not measured); None otherwise."""
    if miscalibrated:
        return (f"its full_integer calibration samples for "
                f"{listed([repr(n) for n in miscalibrated], 4)} are on another scale than the "
                "training data (warned before training), and every int8 activation range is "
                "calibrated from them: preprocess them as the training data")
    if int8_error is not None and 100 * (int8_error - float_error) > _COSTLY_POINTS:
        return (f"the float model converted full-integer, before any compression, scores "
                f"{int8_error:.2%} (warned before training): the int8 conversion loses it, "
                "not the budget")
    return None


def _int8_baseline(model, calibration, export_batch_size, structure, workdir, x_val, y_val,
                   from_logits, float_error, log):
    """The validation error of `model` (the float model, BatchNormalization
    folded) exported full-integer with no compression, with a warning where
    it is far above the float model's: the int8 conversion itself loses the
    accuracy (a Normalization adapted on pixels of zero variance: its 1/std
    of ~3,000 took an int8 scale, 91 % error), and compress reported the
    file as a budget met at a cost a larger target would have saved."""
    from tfdc.demo import tflite_outputs
    path = os.path.join(workdir, "float_int8.tflite")
    _export(model, path, export_batch_size, structure, calibration)
    outputs = tflite_outputs(path, x_val)
    error = float(np.mean(mistakes(outputs.reshape(len(outputs), -1), y_val, from_logits)))
    log(f"  the float model as a full-integer file, no compression: validation error "
        f"{error:.2%}")
    if 100 * (error - float_error) > _COSTLY_POINTS:
        warnings.warn(
            f"tfdc.compress: the float model converted full-integer, before any compression, "
            f"scores {error:.2%} on the validation data (float {float_error:.2%}): the int8 "
            "conversion itself loses it, whatever the budget. Common causes: a layer whose "
            "constants span a huge range (a Normalization adapted on features that never vary: "
            "its 1/std is ~3,000), calibration samples unlike the inputs; full_integer=False "
            "keeps float activations.", stacklevel=3)
    return error


def _check_examples(float_wrong, max_error_increase, confidence):
    """Before any training: refuse an error budget that no file can meet
    on these validation examples (even one right on every example, fixing
    all the float model's mistakes, has a bound above it), and warn when
    the bound alone, for a file exactly as accurate as the float model,
    takes more than half of the budget: only files that fix some of the
    float model's mistakes are then kept, so expect little compression."""
    examples = len(float_wrong)
    on = f"{examples:,} validation example{'s' if examples != 1 else ''}"
    best = _paired_bound(0, int(np.count_nonzero(float_wrong)), examples, confidence)
    if best > max_error_increase:
        raise ValueError(
            f"validation_data: max_error_increase={max_error_increase:g} cannot be met on {on}: "
            f"even a packed file right on every one has an error increase bound of "
            f"{best:+.2f} points at {confidence:.0%} confidence. Give "
            + (f"at least {fewest_examples(max_error_increase, confidence):,} validation "
               "examples, " if max_error_increase > 0 else "more validation examples, ")
            + "a larger budget or a lower confidence")
    floor = _paired_bound(0, 0, examples, confidence)
    if floor <= max_error_increase / 2:
        return
    if floor > max_error_increase:
        room = (f"more than the budget of {max_error_increase:g}: only a file more accurate "
                "than the float model on these examples can meet it")
    else:
        room = (f"more than half the budget of {max_error_increase:g}: expect little "
                "compression")
    more = (f"; {fewest_examples(max_error_increase / 2, confidence):,} examples would leave "
            "half the budget to spend" if max_error_increase > 0 else "")
    warnings.warn(f"tfdc.compress: on {on}, a packed file exactly as accurate as the float "
                  f"model has an error increase bound of +{floor:.2f} points at "
                  f"{confidence:.0%} confidence, {room}{more}", stacklevel=3)


def _check_loss_examples(examples, confidence):
    """Before any training: a loss budget judged on a bound needs the spread
    of the per-example loss differences (`loss_increase_bound`), so two
    validation examples or more; on fewer than `_FEWEST_TO_JUDGE` the t
    bound is rough (a warning)."""
    on = f"{examples:,} validation example{'s' if examples != 1 else ''}"
    if examples < 2:
        raise ValueError(f"validation_data: max_loss_increase at {confidence:.0%} confidence "
                         f"is judged on the spread of per-example losses, which {on} does not "
                         f"have: give {_FEWEST_TO_JUDGE} or more validation examples, or "
                         "confidence=None to compare mean losses only")
    if examples < _FEWEST_TO_JUDGE:
        warnings.warn(f"tfdc.compress: on {on}, the {confidence:.0%} bound of a loss increase "
                      f"is rough (Student's t, exact only if the per-example loss differences "
                      f"are normal; {_FEWEST_TO_JUDGE} or more examples make it sound): the kept "
                      "file may exceed the budget on new data", stacklevel=3)


def _steps(train, batch_size):
    if isinstance(train, tuple):
        return int(math.ceil(_length(train[0]) / batch_size))
    try:
        return len(train)
    except TypeError:
        raise ValueError("train_data has no known length: pass a finite dataset or a tuple "
                         "(x, y)") from None


def _training_examples(train, epochs, batch_size, first=None):
    """The examples a training of `epochs` (pruning, clustering) reads in
    all, a dataset's batches as large as its `first`: compress holds its
    sensitivity scan to a share of that work (`scan_options`)."""
    per_epoch = (_length(train[1]) if isinstance(train, tuple)
                 else _steps(train, batch_size) * _length(first[1]))
    return sum(epochs) * per_epoch


def _fit(model, train, batch_size, epochs, callbacks, verbose):
    callbacks = list(callbacks) + [_divergence_guard(model)]
    with warnings.catch_warnings():
        # A clustered model was told of before training
        # (_warn_compressed_already), not again by each run's pruning.
        warnings.filterwarnings("ignore", message="GradualPruning: kernels clustered already")
        _fit_data(model, train, batch_size, epochs, callbacks, verbose)


def _fit_data(model, train, batch_size, epochs, callbacks, verbose):
    if isinstance(train, tuple):
        model.fit(train[0], train[1], batch_size=batch_size, epochs=epochs, verbose=verbose,
                  callbacks=callbacks, shuffle=True)
    else:
        # Keras shuffles a PyDataset's batch order (its default); a tf.data
        # dataset orders its own batches, and Keras warns on shuffle=True.
        try:
            model.fit(train, epochs=epochs, verbose=verbose, callbacks=callbacks,
                      shuffle=not hasattr(train, "element_spec"))
        except Exception as e:  # noqa: BLE001 - TensorFlow's error, not imported here
            if type(e).__name__ != "InvalidArgumentError":
                raise
            raise ValueError("train_data: a batch fails in training (a dataset is checked "
                             f"before training in its first batch only): {first_line(e)}"
                             ) from None


def _divergence_guard(model):
    """A callback that stops the training with a ValueError at the first
    batch whose loss is not finite: a NaN in a dataset's later batches (its
    first is checked before training) or a learning rate that makes the
    training diverge otherwise surfaced after the whole stage, as k-means's
    "cannot cluster non-finite values"."""
    import keras

    class Guard(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            raise_if_signalled()  # a Ctrl-C that Python dropped stops the training
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.stop(f"the training loss became {float(loss)} at epoch {self.epoch + 1}, "
                          f"batch {batch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            # The last batch's step can make the weights NaN after its
            # (finite) loss was logged.
            if not all(np.isfinite(v.numpy()).all() for v in model.trainable_variables):
                self.stop(f"the weights became NaN or infinite in epoch {epoch + 1}")

        def stop(self, what):
            rate = float(to_numpy(model.optimizer.learning_rate))
            raise ValueError(f"train_data: {what}: a NaN or an infinity in the data (arrays "
                             f"are checked before training, a dataset only in its first "
                             f"batch) or too large a learning rate (now {rate:.3g})")
    return Guard()


def _optimizer(learning_rate, weight_decay):
    import keras
    return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)


def _kernels(model, sparsity):
    from tfdc.select import select_kernels
    return select_kernels(model, sparsity)


def _magnitude_prune(model, sparsity):
    """Zero the smallest |w| of each planned kernel so that it has exactly
    round(s * n) zeros (`tfdc.prune.pruned_count`; zeros already there
    count)."""

    from tfdc.prune import pruned_count
    for s in _kernels(model, sparsity):
        w = np.array(to_numpy(s.variable))
        k = pruned_count(s.value, w.size)
        if k > 0:
            flat = np.abs(w).ravel()
            flat[flat == 0] = -1.0  # already pruned: first out
            drop = np.argpartition(flat, k - 1)[:k]
            w.ravel()[drop] = 0.0
            s.variable.assign(w)


# --------------------------------------------------------------- byte costs
def _measure_bytes(model, sparsity, bits, batch_size, workdir, representative_dataset=None):
    """Exact packed bytes of `model` pruned and clustered as given (applied
    directly to a copy of the weights, no training), by exporting it (full-
    integer with a `representative_dataset`)."""
    from tfdc.cluster import ClusteredFineTuning
    from tfdc.exporter import calibration_scale_checked, export
    work = _copy(model)
    _magnitude_prune(work, sparsity)
    ClusteredFineTuning(bits=bits).quantize(work)
    path = os.path.join(workdir, "measure.tflite")
    with calibration_scale_checked():  # against the training data, before any work
        export(work, path, batch_size=batch_size, check_kernels=False,
               representative_dataset=representative_dataset)
    return os.path.getsize(path)


def _integer_plan(plan, target, replan, measure, log):
    """A byte target's plan for a full-integer file. The planner prices the
    float file; the int8 one is smaller (int8 codebooks; LeNet-300-100 at
    15.5 KB: 6 % smaller), which would leave a first run more than 5 %
    under the target and cost a second. So the plan is exported full-integer
    once without training (`measure(plan)`, seconds) and the planner asked
    again for the float size that makes the int8 file the target."""
    planned = _planned_bytes(plan)
    if not planned:
        return plan
    ratio = measure(plan) / planned
    if abs(ratio - 1) < 0.01:
        return plan
    log(f"  full-integer: the plan's int8 file is {ratio:.1%} of its float file (measured "
        f"without training): planning the float file for {int(target / ratio):,} B")
    try:
        return replan(target_bytes=int(target / ratio))
    except ValueError:  # out of the planner's reach: the plan as it was
        return plan


def _byte_cost(model, batch_size, workdir):
    """`(sparsity, bits) -> bytes` for `model`: the planner's exact byte
    cost (`tfdc.bytecost.ByteCost`) if present, else a real export."""
    try:
        from tfdc.bytecost import ByteCost
        cost = ByteCost(model, batch_size=batch_size)
        return cost.total
    except ImportError:
        return lambda sparsity, bits: _measure_bytes(model, sparsity, bits, batch_size, workdir)


def scaled_plan(model, keep, bits, target_bytes, *, batch_size=1, cost=None, tolerance=0.01):
    """Per-layer settings in fixed proportions, scaled to a packed size.

    Each layer keeps `f * keep[layer]` of its weights, one factor `f` for
    all layers, found by bisection on the exact packed size (the planner's
    byte cost, or a real export when `tfdc.bytecost` is not available), so
    that the predicted file is at most `target_bytes`. For baselines: the
    same fraction in every layer (uniform sparsity), or a paper's per-layer
    ratios.

    Args:
        model: a built Keras model (its current weights are pruned by
            magnitude and clustered, on a copy).
        keep: dict layer name -> fraction of weights kept, in (0, 1].
        bits: dict layer name -> bits, or one int for every layer in `keep`.
        target_bytes: packed size to reach.
        batch_size: export batch size (as `tfdc.compress` uses: 1).
        cost: optional `(sparsity, bits) -> bytes`.
        tolerance: stop when the size is within this fraction under target.

    Returns:
        A `HandPlan` (`.sparsity`, `.bits`, `.predicted_bytes`).

    Raises:
        ValueError: the target is below the smallest size these
            proportions reach (every layer keeping 1 weight in 10,000).

    Example:

    ```python
    import tfdc.models
    from tfdc.compressor import scaled_plan
    model = tfdc.models.lenet_300_100()
    plan = scaled_plan(model, {"fc1": 1, "fc2": 1, "fc3": 1}, 5, 24_000)  # uniform sparsity
    print(plan)
    ```
    """
    if not isinstance(bits, dict):
        bits = {name: int(bits) for name in keep}
    workdir = tempfile.mkdtemp(prefix="tfdc-plan-")
    try:
        cost = cost or _byte_cost(model, batch_size, workdir)

        def settings(f):
            return {n: float(min(1.0 - 1e-4, max(0.0, 1.0 - f * k))) for n, k in keep.items()}

        low, high = 1e-4 / max(keep.values()), 1.0 / max(keep.values())
        size_low = cost(settings(low), bits)
        if size_low > target_bytes:
            raise ValueError(f"target_bytes={target_bytes:,} is below the smallest packed size "
                             f"these per-layer ratios reach ({size_low:,} B)")
        size_high = cost(settings(high), bits)
        if size_high <= target_bytes:
            return HandPlan(settings(high), dict(bits), size_high, "scaled")
        best = (low, size_low)
        for _ in range(30):
            mid = math.sqrt(low * high)
            size = cost(settings(mid), bits)
            if size <= target_bytes:
                low, best = mid, (mid, size)
                if size >= (1 - tolerance) * target_bytes:
                    break
            else:
                high = mid
        return HandPlan(settings(best[0]), dict(bits), int(best[1]), "scaled")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def loss_increase_bound(reference_losses, losses, confidence):
    """Upper confidence bound of a relative loss increase, from two models'
    per-example losses on the same examples.

    The increase is mean(losses - reference_losses) / mean(reference_losses):
    0.05 means the second model's mean loss is 5 % above the reference's.
    Pairing the examples removes what they share (an example hard for one
    model is hard for both), so the bound is far tighter than two separate
    error bars. The bound is Student's t one on the mean paired
    difference, mean + t * sd / sqrt(n) with n - 1 degrees of freedom, over
    the reference's mean loss: exact for normal differences, and by the
    central limit theorem sound for the thousands of examples a validation
    set has whatever their law; rough for a few dozen skewed ones (a loss
    with a few huge outliers), where t widens the bound but cannot know the
    law.

    Args:
        reference_losses, losses: one loss per example (e.g.
            `tfdc.scan.example_losses`), the reference (float) model's
            first; the reference's mean must be positive.
        confidence: probability that the true relative increase is at most
            the bound, in (0, 1).

    Returns:
        The bound, as a fraction of the reference's mean loss.

    Example:

    ```python
    import numpy as np
    from tfdc.compressor import loss_increase_bound
    rng = np.random.default_rng(0)
    reference = rng.exponential(0.1, 5000)     # mean loss about 0.1
    packed = reference + rng.normal(0.003, 0.02, 5000)
    loss_increase_bound(reference, packed, 0.9)  # 0.036: at most 3.6 % higher
    ```
    """
    reference = np.asarray(reference_losses, np.float64)
    losses = np.asarray(losses, np.float64)
    if reference.shape != losses.shape or losses.ndim != 1 or len(losses) < 2:
        raise ValueError(f"loss_increase_bound needs two arrays of the same length >= 2, got "
                         f"shapes {reference.shape} and {losses.shape}")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(losses))):
        raise ValueError("loss_increase_bound: the losses must be finite")
    scale = float(np.mean(reference))
    if not scale > 0:
        raise ValueError(f"loss_increase_bound: the reference's mean loss must be positive, got "
                         f"{scale}")
    confidence = _check_confidence(confidence)
    difference = losses - reference
    spread = float(np.std(difference, ddof=1)) / math.sqrt(len(difference))
    t = student_t_quantile(confidence, len(difference) - 1)
    return (float(np.mean(difference)) + t * spread) / scale


@functools.lru_cache(maxsize=64)
def student_t_quantile(p, dof):
    """The `p` quantile of Student's t distribution with `dof` (a positive
    integer) degrees of freedom: the multiplier of a mean's standard error
    in a one-sided bound from `dof + 1` examples.

    Exact to about 1e-12: for an integer `dof` the distribution function
    is a finite series in θ = atan(t / sqrt(dof)) (Abramowitz & Stegun
    26.7.3-4), inverted by bisection. The series has dof / 2 terms, so a
    quantile costs O(dof) per step; the result is cached, as one run asks
    for the same one again and again.

    Args:
        p: the probability, in (0, 1).
        dof: degrees of freedom, an integer >= 1.

    Returns:
        The quantile (negative for p < 0.5); it tends to the normal one as
        `dof` grows.

    Example:

    ```python
    from tfdc.compressor import student_t_quantile
    student_t_quantile(0.9, 4)        # 1.533 (normal: 1.282)
    ```
    """
    if not (isinstance(dof, (int, np.integer)) and dof >= 1):
        raise ValueError(f"dof must be an integer >= 1, got {dof!r}")
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p < 0.5:
        return -student_t_quantile(1 - p, dof)
    target = 2 * p - 1                                # P(|T| <= t) at the quantile
    k = np.arange(1, (dof - 2) // 2 + 1, dtype=np.float64)       # to cos^(dof - 2)
    # The series' coefficients: 1·3···(2k-1) / 2·4···2k for an even dof,
    # 2·4···2k / 3·5···(2k+1) for an odd one.
    ratios = (2 * k - 1) / (2 * k) if dof % 2 == 0 else (2 * k) / (2 * k + 1)
    coefficients = np.concatenate([[1.0], np.cumprod(ratios)])

    def central(t):                                   # P(|T| <= t)
        theta = math.atan(t / math.sqrt(dof))
        c2 = math.cos(theta) ** 2
        powers = np.cumprod(np.full(len(coefficients) - 1, c2))
        series = coefficients[0] + float(np.dot(coefficients[1:], powers))
        if dof % 2 == 0:
            return math.sin(theta) * series
        if dof == 1:
            return 2 * theta / math.pi
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)

    low, high = 0.0, 1.0
    while central(high) < target:                     # the Cauchy's 0.999999 is 6e5
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if central(middle) < target:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2


# ----------------------------------------------------------------- planning
# The most seconds compress's sensitivity scan runs without a progress line.
_SCAN_REPORT_SECONDS = 15.0

# compress holds its sensitivity scan to half its training's forward
# passes (a training example costs about 3, a scan point's example
# `tfdc.scan.scan_cost`'s): a MobileNetV2's scan, 52 layers x 20 points x
# 1,500 examples each through the whole network, was more than its whole
# training's (14 minutes). Passes are a rough measure of time: the scan's
# run in large inference batches, and a training pass costs more (the
# MobileNet-style model on 2 cores: a scan of 46 % of its training's
# passes took 117 s, its 17 epochs 12.3 min, docs/BENCHMARKS.md
# "scan_hold"), so half of them is about a sixth of the time. Fewer validation examples first, down
# to _SCAN_FEWEST, then coarser grids. A scan of fewer multiply-adds than
# _SCAN_FREE is never cut, whatever the training (LeNet-300-100's, 2.4e10,
# takes 1.5 s on 2 cores, docs/BENCHMARKS.md; LeNet-5's is 3.8e11): a
# small model's short run keeps the default scan.
_SCAN_SHARE = 0.5
_SCAN_FEWEST = 1000
_SCAN_FREE = 4e11
COARSE_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
COARSE_BITS = (2, 3, 4, 5, 8)
_DEFAULT_POINTS = len(DEFAULT_SPARSITIES) + len(DEFAULT_BITS)   # a layer's scan points
_COARSE_POINTS = len(COARSE_SPARSITIES) + len(COARSE_BITS)
_TRAINING_PASSES = 3  # a training example's work in forward passes (forward and backward)


def scan_options(macs, passes, examples, training_examples):
    """The options of compress's sensitivity scan of a model whose scan
    points cost `macs` multiply-adds and `passes` whole-model forward
    passes per example (`tfdc.scan.scan_cost`), on `examples` validation
    examples, for a training of `training_examples` examples in all: `{}`
    (the defaults) where the scan is within half the training's passes
    (or cheap), else `{"samples": n}`, and the coarse grids where
    even `_SCAN_FEWEST` examples are over it (at least that many, the
    curves' precision, whatever the work).

    Example:

    ```python
    from tfdc.compressor import scan_options
    # LeNet-300-100 (tfdc.scan.scan_cost), 5,000 validation examples, 17 epochs of 55,000
    print(scan_options(298_200, 1.12, 5_000, 17 * 55_000))       # {}
    # 52 layers each run through a 300M multiply-add network, 15,000 examples in all
    print(scan_options(52 * 300e6, 52.0, 5_000, 15_000))
    # {'samples': 1000, 'sparsities': (0.5, ...), 'bits': (2, 3, 4, 5, 8)}
    ```
    """
    for name, value in (("macs", macs), ("passes", passes), ("examples", examples),
                        ("training_examples", training_examples)):
        _check_number(value, name, integer=name.endswith("examples"))
        if value < 0:
            raise ValueError(f"{name} must be at least 0, got {value!r}")
    n = min(int(examples), DEFAULT_SAMPLES)
    passes = max(float(passes), 1e-9)

    def fits(points):  # the examples whose scan is _SCAN_SHARE of the training's passes
        return int(_SCAN_SHARE * _TRAINING_PASSES * training_examples / (passes * points))
    if macs * _DEFAULT_POINTS * n <= _SCAN_FREE or fits(_DEFAULT_POINTS) >= n:
        return {}
    if fits(_DEFAULT_POINTS) >= _SCAN_FEWEST:
        return {"samples": fits(_DEFAULT_POINTS)}
    return {"samples": int(np.clip(fits(_COARSE_POINTS), _SCAN_FEWEST, n)),
            "sparsities": COARSE_SPARSITIES, "bits": COARSE_BITS}


def _scan_options(inference, validation, training_examples, log):
    """`scan_options` for the inference model and the validation data (its
    first example fixes the sizes the model leaves open), its cut told."""
    from tfdc.scan import scan_cost
    x, examples = validation[0], _length(validation[1])
    macs, passes = scan_cost(inference, inputs=_head(x, 1) if examples else None)
    options = scan_options(macs, passes, examples, training_examples)
    if options:
        def share(samples, points):  # of the training's forward passes
            return samples * points * passes / (_TRAINING_PASSES * max(1, training_examples))
        n = options["samples"]
        coarse = "sparsities" in options
        cut = share(n, _COARSE_POINTS if coarse else _DEFAULT_POINTS)
        uncut = share(min(examples, DEFAULT_SAMPLES), _DEFAULT_POINTS)
        read = f"all {examples:,}" if n >= examples else f"{n:,} of the {examples:,}"
        grids = (f", {len(COARSE_SPARSITIES)} sparsities and {len(COARSE_BITS)} bit widths"
                 if coarse else "")
        floor = (f"; half would leave fewer than the {_SCAN_FEWEST:,} examples the curves "
                 "need" if cut > 1.01 * _SCAN_SHARE else "")
        log(f"  the scan, held down: {read} validation examples{grids}: {cut:.0%} of the "
            f"training's forward passes (uncut {uncut:.0%}{floor}; {passes:.1f} forward "
            "passes of the model per example and point)")
    return options


def _plan(inference, validation, budget, batch_size, workdir, log, cache, training_examples):
    """A plan for the inference model: `tfdc.plan` (its sensitivity scan
    made once, kept in `cache`, held to a share of the work of a training
    of `training_examples`, `_training_examples`), else the same sparsity in
    every layer scaled to the budget (paper's bits). `budget`: one of
    `tfdc.plan`'s (`{"target_bytes": N}`, `{"max_error_increase": P}`, ...)."""
    try:
        from tfdc.planner import plan as make_plan
        from tfdc.scan import sensitivity
    except ImportError:
        make_plan = None
    if make_plan is not None:
        if "sensitivity" not in cache:
            options = _scan_options(inference, validation, training_examples, log)
            log("  sensitivity scan (each layer pruned / clustered alone, no retraining)")
            last = [time.perf_counter()]

            def progress(line):
                # A deep model's scan runs for minutes (a MobileNetV2's 52
                # layers, 14 silent minutes): a line every so often, with
                # the time left; a small model's ends before the first.
                if time.perf_counter() - last[0] >= _SCAN_REPORT_SECONDS:
                    last[0] = time.perf_counter()
                    log("    " + line)

            cache["sensitivity"] = sensitivity(inference, validation, verbose=1, log=progress,
                                               **options)
            # A second quiet step, as long as the scan or longer on a model
            # of many layers (about 0.6 s a layer): said, not a silent minute.
            scan = cache["sensitivity"]
            log(f"  planning: packed bytes of {len(scan.layers)} layers at "
                f"{(len(scan.sparsities) + 1) * len(scan.bits)} settings each")
        options = dict(sensitivity=cache["sensitivity"],
                       export_options={"batch_size": batch_size})
        with warnings.catch_warnings():
            # compress judged its examples against the budget itself
            # (_check_examples), on a confidence bound.
            warnings.filterwarnings("ignore", message="tfdc.plan: on .* validation example")
            return make_plan(inference, validation, **budget, **options)
    from tfdc.select import layer_keys, select_kernels
    sels, keys = select_kernels(inference, True), layer_keys(inference)
    bits = {keys[id(s.layer)]: 8 if s.is_conv else 5 for s in sels}
    keep = {keys[id(s.layer)]: 1.0 for s in sels}
    target_bytes = budget.get("target_bytes")
    if target_bytes is None:  # no error model without the planner: start at half kept
        target_bytes = _measure_bytes(inference, {n: 0.5 for n in keep}, bits, batch_size,
                                      workdir)
    log("  (tfdc.plan is not available: uniform sparsity)")
    return scaled_plan(inference, keep, bits, int(target_bytes), batch_size=batch_size)


def _resolve_plan(plan, model):
    """A user's plan: a `tfdc.Plan`, a `HandPlan` or a dict with "sparsity"
    and "bits"; checked against the model's layers."""
    from tfdc.cluster import ClusteredFineTuning
    from tfdc.prune import GradualPruning
    from tfdc.select import check_settings, layer_keys
    if isinstance(plan, dict):
        if set(plan) != {"sparsity", "bits"}:
            raise ValueError("plan must have exactly the keys 'sparsity' and 'bits', got "
                             f"{sorted(plan)}")
        sparsity, bits = plan["sparsity"], plan["bits"]
        GradualPruning(sparsity)
        ClusteredFineTuning(bits=bits)
        if not isinstance(sparsity, dict):  # one value for every kernel
            keys = layer_keys(model)
            sparsity = {keys[id(s.layer)]: sparsity for s in _kernels(model, True)}
        if not isinstance(bits, dict):
            bits = {name: bits for name in sparsity}
        plan = HandPlan(dict(sparsity), dict(bits))
    if not hasattr(plan, "sparsity") or not hasattr(plan, "bits"):
        raise ValueError(f"plan must be a tfdc.Plan or a dict with 'sparsity' and 'bits', got "
                         f"{type(plan).__name__}")
    check_settings(model, plan.sparsity, plan.bits, prefix="plan ")
    return plan


def _planned_bytes(plan):
    return getattr(plan, "predicted_bytes", None)


# ----------------------------------------------------------------- training
class _Run:
    """One training run: prune (GradualPruning) then cluster
    (ClusteredFineTuning), from the user's weights."""

    def __init__(self, model, train, config):
        self.model, self.train, self.c = model, train, config

    def __call__(self, plan, log):
        import tfdc
        from tfdc.constraints import strip
        from tfdc.distill import Distiller
        from tfdc.recipe import cosine_decay
        c = self.c
        student = _copy(self.model)
        loss = c.loss

        def trainer(net):
            if not c.distill:
                return net
            return Distiller(net, c.teacher, temperature=c.temperature, alpha=c.alpha)

        steps = _steps(self.train, c.batch_size)
        prune_epochs, cluster_epochs = c.epochs
        ramp = max(1, (prune_epochs * steps) // 2)
        net = trainer(student)
        net.compile(_optimizer(c.learning_rate, c.weight_decay), loss,
                    loss_weights=c.loss_weights)
        pruner = tfdc.GradualPruning(plan.sparsity, begin_step=0, end_step=ramp,
                                     frequency=max(1, ramp // 30))
        log(f"  pruning: {_count(prune_epochs, 'epoch')} ({_count(steps, 'step')} each), ramp "
            "over the first half")
        _fit(net, self.train, c.batch_size, prune_epochs,
             [pruner, cosine_decay(c.learning_rate, prune_epochs)], c.keras_verbose)
        strip(student)
        if _has_batchnorm(student):
            # The converter folds a BatchNormalization into the kernel before
            # it, rescaling its shared values: fold now, then cluster.
            student = _inference_model(student)
            net = trainer(student)
        log(f"  clustering: {_count(cluster_epochs, 'epoch')}")
        net.compile(_optimizer(c.learning_rate * c.cluster_lr, c.weight_decay), loss,
                    loss_weights=c.loss_weights)
        _fit(net, self.train, c.batch_size, cluster_epochs,
             [tfdc.ClusteredFineTuning(bits=plan.bits),
              cosine_decay(c.learning_rate * c.cluster_lr, cluster_epochs)], c.keras_verbose)
        strip(student)
        return student

    def finetune_fixed(self, student, plan, log):
        """One epoch with the zeros and the codebook assignment fixed (the
        coded streams keep every byte; only the shared values move)."""
        import tfdc
        from tfdc.constraints import strip
        from tfdc.distill import Distiller
        from tfdc.recipe import cosine_decay
        c = self.c
        net = student if not c.distill else Distiller(student, c.teacher,
                                                      temperature=c.temperature, alpha=c.alpha)
        lr = c.learning_rate * c.cluster_lr * 0.5
        net.compile(_optimizer(lr, c.weight_decay), c.loss, loss_weights=c.loss_weights)
        log("  fine-tuning the shared values (1 epoch, zeros and assignments fixed)")
        _fit(net, self.train, c.batch_size, 1,
             [tfdc.ClusteredFineTuning(bits=plan.bits), cosine_decay(lr, 1)], c.keras_verbose)
        strip(student)
        return student


@dataclasses.dataclass
class _Config:
    batch_size: int
    epochs: tuple
    learning_rate: float
    cluster_lr: float
    weight_decay: float
    distill: bool
    teacher: object
    temperature: float
    alpha: float
    keras_verbose: int
    export_batch_size: int
    loss: object
    loss_weights: object = None  # several outputs: the user's compiled loss_weights


def _structured(student, structure):
    """A trained copy of the view of `tfdc.scan.one_output_view` with the
    model's output structure back (the same layers and weights)."""
    import keras
    if structure is None:
        return student
    return keras.Model(student.input, keras.tree.pack_sequence_as(structure, student.outputs),
                       name=student.name)


def _export(student, path, batch_size, structure=None, representative_dataset=None):
    from tfdc.exporter import calibration_scale_checked, export
    with calibration_scale_checked():  # against the training data, before any work
        report = export(_structured(student, structure), path, batch_size=batch_size,
                        representative_dataset=representative_dataset)
    return report, os.path.getsize(path)


def _calibration(train, first_x, count=256):
    """The converter's representative dataset for a full-integer export:
    `count` training examples drawn without replacement by a fixed seed
    (the same ones on every run), one per sample as the model takes its
    inputs; for a dataset, the examples of its first batch."""
    x = train[0] if isinstance(train, tuple) else first_x
    n = _length(x)
    rows = np.sort(np.random.default_rng(0).choice(n, min(n, count), replace=False))

    def samples():
        for i in rows:
            sample = _index(x, slice(i, i + 1))
            yield sample if isinstance(sample, (list, dict)) else [sample]
    return samples


def _full_precision(model):
    """", and ... kept at full precision (...)" for a missed target's reason:
    the model's large weights that no plan can shrink (a custom layer's
    kernel), named; "" if none."""
    from tfdc.bytecost import uncompressed_weights, weight_label
    rows = uncompressed_weights(model)
    if not rows:
        return ""
    return ", and the weights tfdc cannot prune or cluster, kept at full precision: " + listed(
        map(weight_label, rows), 3)


def _unpruned(model, plan):
    """The compressible layers of `model` that `plan` does not prune (its
    sparsity keyed by their names; a hand plan's patterns count as none)."""
    from tfdc.bytecost import compressible_layers
    return [name for name in compressible_layers(model) if not plan.sparsity.get(name)]


def _cut_to(student, plan, target, size, path, export_file, log):
    """Prune the smallest remaining weights of every kernel the plan prunes,
    in equal proportion, until the packed file is at most `target` bytes
    (secant steps on the fraction kept, measured by exporting; if they end
    elsewhere than at the largest fraction tried that fitted, that one is
    exported again). Returns (report, size, least): `least` the smallest
    file the cut steps made (at most `target` when one fitted). If no cut
    fits (the layers it may cut are not where the bytes are: keeping 1 % of
    their weights is still over), the weights are put back as trained and
    the file exported so: a destroyed layer over the target helps no one.
    A kernel the plan keeps dense
    is left as it is: the planner found it sensitive, and its first zeros
    would be one more shared value in its codebook, a larger file (3 bits,
    2 % cut: +146 B); it is cut only if the plan prunes no kernel."""
    sels = _kernels(student, plan.sparsity)
    sels = [s for s in sels if float(s.value) > 0] or sels
    original = [np.array(to_numpy(s.variable)) for s in sels]
    kept = [int(np.count_nonzero(w)) for w in original]

    def cut(f):
        for s, w, k in zip(sels, original, kept):
            w = w.copy()
            drop = k - int(round(f * k))
            if drop > 0:
                flat = np.abs(w).ravel()
                flat[flat == 0] = np.inf
                w.ravel()[np.argpartition(flat, drop - 1)[:drop]] = 0.0
            s.variable.assign(w)
        report, size = export_file(student, path)
        log(f"  cut to {f:.1%} of the kept weights: {size:,} B")
        return report, size

    points = [(1.0, size)]
    report = None
    aim = target * (1 - _TOLERANCE / 3)
    for _ in range(6):
        # Bytes are close to affine in the number of kept weights (not at
        # the first cut of a dense kernel: its new zero value costs bytes).
        if len(points) == 1:
            f = aim / size
        else:
            (f1, s1), (f2, s2) = points[-2], points[-1]
            slope = (s2 - s1) / (f2 - f1) if f2 != f1 else size
            f = f2 + (aim - s2) / slope if slope > 0 else f2 * aim / s2
        f = float(np.clip(f, _FEWEST_KEPT, 1.0))
        report, size = cut(f)
        points.append((f, size))
        if (1 - _TOLERANCE) * target <= size <= target or (f == _FEWEST_KEPT and size > target):
            break
    fitted = [f for f, s in points[1:] if s <= target]
    least = min(s for _, s in points[1:])
    if not fitted:
        log(f"  keeping {_FEWEST_KEPT:.0%} of the cut layers' weights is still over the target: "
            "weights put back as trained")
        report, size = cut(1.0)
    elif f != max(fitted):
        report, size = cut(max(fitted))
    return report, size, least


# --------------------------------------------------------------------- main
def compress(model, train_data, validation_data, *, target_bytes=None, max_error_increase=None,
             path="model.tflite", epochs=None, batch_size=128, learning_rate=1e-3,
             weight_decay=1e-4, distill=False, temperature=4.0, alpha=0.5, plan=None,
             max_trials=5, confidence=DEFAULT_CONFIDENCE, export_batch_size=1, verbose=1,
             log=None, max_loss_increase=None, full_integer=False):
    """Compress a Keras model to a byte budget, an error or a loss budget.

    Runs Deep Compression with settings chosen for the model: a plan of
    per-layer sparsity and bits (`tfdc.plan`, from a sensitivity scan on
    the validation data and the packer's exact byte costs), pruning with
    fine-tuning (`tfdc.GradualPruning`: cubic ramp over the first half of
    the pruning epochs, then retraining with the masks fixed), weight
    sharing with fine-tuning of the shared values (`tfdc.ClusteredFineTuning`),
    and export of the packed `.tflite` (`tfdc.export`, batch size 1 for
    on-device inference). Training uses AdamW with a cosine learning-rate
    decay per stage (`learning_rate`, then `learning_rate / 10` for the
    shared values) and about 6,000 + 1,500 steps (epochs scaled to the data
    size, from 2 + 1 to 60 + 15 epochs: fewer steps on small data). A model
    with BatchNormalization keeps it while pruning and has it folded
    (`tfdc.fold_batchnorm`) before clustering. The user's model is
    not modified (a copy is trained). The error is the top-1 error of the
    packed file run in LiteRT on `validation_data`.

    Args:
        model: a built, trained Keras classifier with one output: `[N,
            classes]` (softmax or logits) or one unit (sigmoid or logit, a
            binary classifier). Its compiled loss is used if it is compiled,
            else cross-entropy to suit the outputs and labels. Any other
            model with one output (regression, embeddings, ...)
            compiled with its loss compresses to `target_bytes` or
            `max_loss_increase`: the loss is then what is reported (`error`
            is NaN). So does one linear unit compiled with a loss that is
            no cross-entropy or hinge (mean squared error on 0 / 1
            targets): it sets no decision threshold. An output inside a
            dict or list (`{"probs": y}`) is trained and scored as `y`, and
            `.model` and the packed file keep the dict (the signature's
            output is named "probs"). A model with several outputs must be
            compiled with their losses: it is trained with them and scored
            by their sum weighted by its `loss_weights`
            (`tfdc.scan.SummedLoss`, what `model.evaluate` reports), so it
            takes `target_bytes` or `max_loss_increase`,
            labels `y` a list or dict of arrays, one per output, and no
            distillation.
            A subclassed model is copied from its config (`get_config()`
            must rebuild it) and may not hold a BatchNormalization.
        train_data: `(x, y)` arrays, or a `keras.utils.PyDataset` /
            `tf.data.Dataset` of `(x, y)` batches (e.g. with augmentation),
            finite: one of a length TensorFlow does not know (a TFRecord
            file, a filter) is counted once before training (up to a
            million batches, its progress told), and a PyDataset needs a
            `num_batches` (or `__len__`).
            Labels: class indices `[N]` (or `[N, 1]`), one-hot `[N,
            classes]`, or 0 / 1 for one output unit (`tfdc.mistakes`).
            For a model with several inputs, x is a list of arrays (in the
            order of `model.inputs`) or a dict keyed by input name, as
            `model.fit` takes it. The labels of arrays and a first batch
            through the model and its loss are checked before any work
            (`ValueError`).
        validation_data: `(x, y)` arrays, held out from training (also used
            by the sensitivity scan and to choose among the trials). The
            error budget is met on this data, so make it like the data the
            model will meet, and large enough: the bound on 5,000 examples
            is about 0.3 points above the measured increase. The scan reads
            at most 4,000 of them, and is held to half the training's
            forward passes (`scan_options`): a deep model's scan reads
            fewer (at least 1,000) and, below that, coarser grids; the log
            says so.
        target_bytes: the packed file's size is at most this many bytes
            (`.met`), aimed within 5 % under it; further under where the
            planner finds that more bytes would not lower the loss (the
            message says so); over it only if removing weights cannot get
            it there (a `BudgetMissedWarning`).
        max_error_increase: largest validation error increase over the float
            model, in percentage points (0.2 = 0.2 points, e.g. 1.6 % ->
            1.8 %; at most 100); the smallest file that meets it is kept. A file meets
            it when the increase's upper `confidence` bound on
            `validation_data` (`increase_bound`) is within it, so a small
            validation set costs compression, not accuracy. Passing on the
            measured increase alone favours files whose measurement erred
            low: on MNIST (docs/BENCHMARKS.md) a file measured at +0.20
            points on 5,000 held-out training images (bound +0.50) was
            +0.99 on the test set; with the bound the kept file was -0.01.
        max_loss_increase: largest validation loss increase over the float
            model, as a fraction of its loss (0.05: at most 5 % higher), for
            any model with a loss; searched as `max_error_increase` is, a
            file meeting it when the upper `confidence` bound of its paired
            per-example increase (`loss_increase_bound`) is within it (it
            needs 2 validation examples, refused before training, and
            warns under 30 that the bound is rough). For a classifier
            prefer `max_error_increase`: cross-entropy also scores
            confidence, and an overconfident float model's loss falls with
            retraining while its error rises (docs/BENCHMARKS.md:
            LeNet-300-100 at +5 %: test loss -13 %, test error +1.2 points;
            an MNIST autoencoder: 11.5x at -1.4 % test loss).
        path: where to write the packed file (written once, atomically).
        epochs: None (scaled to the data), an int (split 3:1 between
            pruning and clustering) or a tuple (pruning, clustering).
        batch_size: training batch size (for `(x, y)` training data).
        learning_rate, weight_decay: AdamW's, for pruning (clustering uses
            a tenth of the rate).
        distill: train against the float model's softened outputs
            (`tfdc.distill.Distiller`, with `temperature` and `alpha`). Off
            by default: on LeNet-300-100 it gained nothing (test error
            +0.13 points at 16 KB, -0.03 at 15.5 KB from the recipe model;
            docs/BENCHMARKS.md, T=4, alpha=0.5).
        temperature, alpha: the Distiller's (with `distill=True`): the
            softmax temperature of both models' outputs (default 4.0) and
            the weight of the hard-label loss (default 0.5; the softened
            outputs' loss gets `1 - alpha`).
        plan: skip the planner: a `tfdc.Plan`, a `HandPlan` or a dict
            `{"sparsity": {...}, "bits": {...}}` (with an error or loss
            budget it is trained once, not searched; with `target_bytes`, a
            file over the target loses its smallest weights as a planned
            one does, with a warning).
        max_trials: the most training runs (at least 1): of the error or
            loss budget's search (its last run is kept for the planner's
            plan, trained if no search run met the budget; the search stops
            early once its ends are within 8 %), and of `target_bytes` (at
            most 3 there: a file more than 5 % under the target is trained
            again with a larger plan).
        confidence: for `max_error_increase` and `max_loss_increase`, the
            probability that a kept file's true increase on data like
            `validation_data` is within the budget (`DEFAULT_CONFIDENCE`,
            0.9; None: the measured increase itself must be).
        export_batch_size: batch size of the exported model (None: dynamic).
        full_integer: export a full-integer file (int8 activations and
            weights, one scale per tensor so each codebook stays at most
            2^bits codes; `tfdc.export`'s `representative_dataset`), for
            NPUs and NNAPI: True calibrates on 256 training examples (the
            first batch of a dataset), or give the converter's
            representative dataset (a callable yielding lists of inputs;
            a warning if they are on another scale than the training
            data). The budgets are judged on that file in LiteRT; the planner
            prices the float file, which is a little larger (its codebooks
            are float32), and a byte target's replanning takes up the
            difference.
        verbose: 0 silent, 1 progress lines, 2 also Keras's progress bars.
        log: a `print`-like function for the progress lines (default
            `print` when `verbose`).

    Returns:
        A `CompressResult`: `.path`, `.report`, `.packed_bytes`, `.ratio`,
        `.error`, `.float_error`, `.error_increase_bound`, `.loss`,
        `.float_loss`, `.loss_increase_bound`, `.met`, `.message`, `.plan`,
        `.model`, `.full_integer`.

    Raises:
        ValueError: not exactly one budget, a `target_bytes` that is not a
            positive integer or an error or loss budget below 0 (0 is
            searched), data that is not `(x, y)` or holds a NaN or an
            infinity, labels that do not fit the model's outputs, inputs or
            a first training batch the model or its loss cannot take, a
            full-integer recurrent loop (all before any training), a model with
            nothing to compress, a plan naming unknown layers, an error
            budget that no file can meet on the validation examples (even
            one right on every example has a bound above it), or (from the
            planner) a `target_bytes` more than 20 % below the smallest file
            its grids make without retraining (closer, that file's plan is
            trained: training makes files smaller than planned).
        FileNotFoundError, PermissionError, IsADirectoryError: `path`
            cannot be written (checked before any training).

    Warns:
        BudgetMissedWarning: the kept file misses the budget (`.met` False).
        UserWarning: before any training, when the model's kernels look
            pruned or clustered already (give the model before compression),
            and when the planner would compress frozen layers
            (trainable=False), which training cannot make up for.
        UserWarning: before any training, when the float classifier's
            validation error is about that of always answering one class
            (within a tenth of it: `tfdc.mistakes.majority_error`;
            untrained, or its data are preprocessed otherwise than in
            training), or its validation labels miss some classes (both
            judged from 30 validation examples on).
        UserWarning: before any training, when an error budget's bound on
            so few validation examples takes more than half of the budget
            even for a file exactly as accurate as the float model
            (`fewest_examples`).

    Example:

    ```python
    import keras, tfdc, tfdc.models
    from tfdc.datasets import load_mnist
    (x, y), (x_test, y_test) = load_mnist()
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:55000], y[:55000], epochs=10)
    result = tfdc.compress(model, (x[:55000], y[:55000]), (x[55000:], y[55000:]),
                           target_bytes=24_000, path="lenet.tflite")
    print(result)          # lenet.tflite: about 23 KB packed (about 46x smaller ...)
    print(result.report)   # per-layer table
    ```
    """
    import keras

    require_tensorflow_backend("tfdc.compress")
    from tfdc.demo import tflite_outputs
    from tfdc.exporter import check_writable, warn_model_suffix, write_atomically
    from tfdc.scan import (SummedLoss, _output_count, check_outputs, example_losses,
                           loss_callable, mean_loss, one_output_view)

    started = time.perf_counter()
    if log is None:
        log = print if verbose else (lambda *a, **k: None)
    if sum(b is not None for b in (target_bytes, max_error_increase, max_loss_increase)) != 1:
        raise ValueError("give exactly one budget: target_bytes= (the packed file's size in "
                         "bytes), max_error_increase= (percentage points of validation error "
                         "over the float model, e.g. 0.2) or max_loss_increase= (a fraction of "
                         "the float model's validation loss, e.g. 0.05)")
    if target_bytes is not None:
        _check_number(target_bytes, "target_bytes", integer=True)
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes!r}")
        target_bytes = int(target_bytes)
    max_error_increase = _check_increase(max_error_increase, "max_error_increase",
                                         "percentage points")
    from tfdc.planner import check_error_points
    check_error_points(max_error_increase)
    max_loss_increase = _check_increase(max_loss_increase, "max_loss_increase",
                                        "(a fraction of the loss, 0.05 = 5 %)")
    if confidence is not None:
        confidence = _check_confidence(confidence, none="or None")
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
    from tfdc.select import check_built, refuse_non_finite, refuse_non_float32
    check_built(model)
    check_outputs(model, "tfdc.compress")
    refuse_non_float32(model, "tfdc.compress")
    refuse_non_finite(model, "tfdc.compress")
    model, structure = one_output_view(model)
    output_count = _output_count(model)
    several = output_count > 1
    if several and max_error_increase is not None:
        raise ValueError(f"max_error_increase is a budget of one output's classification error; "
                         f"model {model.name!r} has {output_count} outputs and is scored by the "
                         "weighted sum of their compiled losses: give target_bytes or "
                         "max_loss_increase")
    if not isinstance(distill, bool):
        raise ValueError(f"distill must be True or False, got {distill!r}")
    if several and distill:
        raise ValueError(f"distill=True needs a model with one output; {model.name!r} has "
                         f"{output_count}")
    for name, value, low in (("batch_size", batch_size, 1), ("max_trials", max_trials, 1),
                             ("export_batch_size", export_batch_size, 1)):
        if name == "export_batch_size" and value is None:
            continue  # a dynamic batch
        _check_number(value, name, integer=True)
        if value < low:  # export_batch_size=0 was export's "batch_size must be ..."
            raise ValueError(f"{name} must be at least {low}, got {value!r}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be a print-like function or None, got {type(log).__name__}")
    for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
        _check_number(value, name)
        if value < 0 or (name == "learning_rate" and value == 0):
            raise ValueError(f"{name} must be positive, got {value!r}")
    inputs = input_count(model)
    train = _check_data(train_data, "train_data", allow_dataset=True, inputs=inputs,
                        outputs=output_count, log=log)
    if structure is not None and hasattr(train, "element_spec"):
        # The plain view trains: labels in the output's dict or list, as
        # `fit` takes them for the model, become the one label.
        train = train.map(lambda *batch: _plain_batch(batch))
    elif structure is not None and isinstance(train, keras.utils.PyDataset):
        train = _plain_labels(train)
    x_val, y_val = _check_data(validation_data, "validation_data", allow_dataset=False,
                               inputs=inputs, outputs=output_count)
    path = check_writable(path)
    warn_model_suffix(path)
    kernels = _kernels(model, True)  # nothing to compress: fails now
    from tfdc.select import layer_keys
    keys = layer_keys(model)  # what the warnings and the plan name the layers by
    _warn_compressed_already(kernels, keys)
    if plan is None:  # the planner's: every layer, a frozen backbone too
        from tfdc.select import warn_frozen
        warn_frozen("tfdc.compress", [keys[id(s.layer)] for s in kernels
                                      if not s.variable.trainable],
                    "make them trainable, or give plan= a tfdc.plan(..., layers=[...]) that "
                    "leaves them out")
        from tfdc.select import warn_left_out
        warn_left_out(model, "tfdc.compress")
    _copy(model)  # and one that cannot be copied
    if plan is not None:
        plan = _resolve_plan(plan, model)
    epochs = _epochs(epochs, _steps(train, batch_size))
    if not (isinstance(full_integer, bool) or callable(full_integer)):
        got = repr(full_integer) if isinstance(full_integer, (str, int, float)) else \
            f"a {type(full_integer).__name__}"
        raise ValueError(f"full_integer must be True, False or a representative dataset (a "
                         f"callable yielding lists of inputs, e.g. a generator function), got "
                         f"{got}")
    if full_integer is not False:
        from tfdc.exporter import check_full_integer
        check_full_integer(model)

    inference = _inference_model(model)
    val_outputs = _validation_outputs(inference, x_val)
    from_logits = output_from_logits(model)
    if several:
        check_output_labels(model, y_val, "validation_data")
        if isinstance(train, tuple):
            check_output_labels(model, train[1], "train_data")
        float_wrong, not_classifier = None, (f"{output_count} outputs, scored by the weighted sum "
                                             "of their compiled losses")
        classes = None
    else:
        float_wrong, not_classifier = _float_mistakes(model, val_outputs, y_val, from_logits,
                                                      max_error_increase)
        classes = val_outputs.shape[1]
    if isinstance(train, tuple):  # first: the scale is what makes the error look untrained
        _warn_other_scale(x_val, train[0])
    if not_classifier is None:
        _warn_no_better_than_constant(float_wrong, y_val, classes)
        _warn_logits_under_a_probability_loss(model, val_outputs)
    elif distill:  # its soft term would be a binary KL of a regression's outputs
        raise ValueError(f"distill=True distils classifiers; {model.name!r} is scored by its "
                         f"loss ({not_classifier}): give distill=False")
    if max_error_increase is not None and confidence is not None:
        _check_examples(float_wrong, max_error_increase, confidence)
    batch = _first_batch(train, None if not_classifier else classes, model)
    if not isinstance(train, tuple):  # a dataset: its first batch
        _warn_other_scale(x_val, batch[0])
    if several:
        loss, loss_fn = model.loss, SummedLoss(model)
    else:
        labels = np.shape(batch[1])
        loss = _loss(model, classes, one_hot=len(labels) == 2 and labels[1] == classes > 1)
        loss_fn = loss_callable(loss)
    _check_train(model, batch, loss, loss_fn)
    training_examples = _training_examples(train, epochs, batch_size, batch)
    miscalibrated = []  # inputs whose calibration samples are on another scale
    if callable(full_integer):
        from tfdc.exporter import check_calibration
        miscalibrated = check_calibration(model, full_integer, "full_integer",
                                          reference=batch[0])
    calibration = (full_integer if callable(full_integer) else
                   _calibration(train, batch[0]) if full_integer else None)
    try:
        float_loss = mean_loss(loss_fn, y_val, val_outputs)
    except Exception as e:  # noqa: BLE001 - Keras raises several types for this
        from tfdc.scan import one_hot_hint
        forms = [_label_form(y) for y in (y_val, batch[1])]
        if getattr(model, "loss", None) is None and None not in forms and forms[0] != forms[1]:
            raise ValueError(f"validation_data: its labels are {forms[0]}, train_data's are "
                             f"{forms[1]}: give both in one form (the loss, "
                             f"{loss_name(loss)}, is chosen for train_data's)") from None
        raise ValueError(f"validation_data: the model and its loss ({loss_name(loss)}) cannot "
                         f"score it: {first_line(e)}{one_hot_hint(loss_name(loss), y_val)}"
                         ) from None
    if not_classifier and not math.isfinite(float_loss):
        raise ValueError(f"validation_data: the float model's loss ({loss_name(loss)}) on it is "
                         f"{float_loss}: check the labels and the inputs")
    float_losses = None
    if max_loss_increase is not None:
        if not (math.isfinite(float_loss) and float_loss > 0):
            raise ValueError(f"max_loss_increase is a fraction of the float model's validation "
                             f"loss, which is {float_loss} ({loss_name(loss)}): give "
                             "target_bytes instead")
        float_losses = example_losses(loss_fn, y_val, val_outputs)
        if confidence is not None:
            _check_loss_examples(len(float_losses), confidence)

    teacher = None
    if distill:
        from tfdc.distill import Distiller
        teacher = Distiller.copy_of(model)
    config = _Config(batch_size=int(batch_size), epochs=epochs, learning_rate=float(learning_rate),
                     cluster_lr=0.1, weight_decay=float(weight_decay), distill=bool(distill),
                     teacher=teacher, temperature=temperature, alpha=alpha,
                     keras_verbose=1 if verbose >= 2 else 0, export_batch_size=export_batch_size,
                     loss=loss, loss_weights=(model.get_compile_config() or {}).get(
                         "loss_weights") if several else None)
    if distill:  # fail on a bad temperature / alpha now
        Distiller(_copy(model), teacher, temperature=temperature, alpha=alpha)
    run = _Run(model, train, config)
    times = {}
    float_bytes = 4 * int(inference.count_params())
    float_error = float("nan") if not_classifier else float(np.mean(float_wrong))
    sure = f" ({confidence:.0%} confidence)" if confidence is not None else ""
    budget = (f"target {target_bytes:,} B" if target_bytes is not None else
              f"validation error at most {max_error_increase:.2f} points over the float model"
              + sure if max_error_increase is not None else
              f"validation loss at most {100 * max_loss_increase:g} % over the float model's"
              + sure)
    scored = (f"validation loss {float_loss:.4g} ({loss_name(loss)}; scored by its loss: "
              f"{not_classifier})" if not_classifier
              else f"validation error {float_error:.2%}")
    log(f"tfdc.compress: {model.name}, {float_bytes:,} B as float32, {scored} on "
        f"{_length(y_val):,} examples; {budget}"
        + ("; full-integer export (int8 activations and weights)" if calibration else "")
        + (f"; distilled from the float model (temperature {temperature:g}, alpha {alpha:g})"
           if distill else ""))

    from tfdc.exporter import is_special_file
    workdir = tempfile.mkdtemp(prefix="tfdc-compress-", dir=None if is_special_file(path) else
                               os.path.dirname(os.path.abspath(path)))
    trials, plan_cache = [], {}
    try:
        int8_error = None
        if calibration is not None and not not_classifier and not several:
            int8_error = _int8_baseline(inference, calibration, export_batch_size, structure,
                                        workdir, x_val, y_val, from_logits, float_error, log)

        def planned(**budget):
            return _plan(inference, (x_val, y_val), budget, export_batch_size, workdir, log,
                         plan_cache, training_examples)

        def make_plan(**budget):
            t = time.perf_counter()
            result = planned(**budget)
            if calibration is not None and "target_bytes" in budget:
                result = _integer_plan(
                    result, budget["target_bytes"], planned,
                    lambda p: _measure_bytes(inference, p.sparsity, p.bits, export_batch_size,
                                             workdir, calibration), log)
            times["plan"] = times.get("plan", 0.0) + time.perf_counter() - t
            return result

        def smallest():
            """The smallest file the planner's grids reach (every layer at
            its largest sparsity and fewest bits), or None."""
            scan = plan_cache.get("sensitivity")
            try:
                from tfdc.bytecost import ByteCost
            except ImportError:
                return None
            if scan is None:
                return None
            try:
                cost = ByteCost(inference, batch_size=export_batch_size)
                names = [n for n in scan.layers if n in cost.layers]
                return cost.total({n: max(scan.sparsities) for n in names},
                                  {n: min(scan.bits) for n in names})
            except ValueError:  # a layer the byte-cost model cannot price
                return None

        def export_file(student, to):
            return _export(student, to, export_batch_size, structure, calibration)

        def trial(p, note):
            n = len(trials) + 1
            planned = _planned_bytes(p)
            log(f"[run {n}] {note}" + (f": planned {planned:,} B" if planned else ""))
            t = time.perf_counter()
            student = run(p, log)
            times["train"] = times.get("train", 0.0) + time.perf_counter() - t
            t = time.perf_counter()
            trial_path = os.path.join(workdir, f"run{n}.tflite")
            report, size = export_file(student, trial_path)
            times["export"] = times.get("export", 0.0) + time.perf_counter() - t
            entry = dict(run=n, plan=p, planned_bytes=planned, student=student,
                         path=trial_path, report=report, bytes=size)
            _evaluate(entry)
            trials.append(entry)
            return entry

        def _evaluate(entry):
            t = time.perf_counter()
            outputs = tflite_outputs(entry["path"], x_val, every_output=several)
            entry["loss"] = mean_loss(loss_fn, y_val, outputs)
            times["evaluate"] = times.get("evaluate", 0.0) + time.perf_counter() - t
            entry["passed"] = True
            if not_classifier:
                entry.update(error=float("nan"), increase=float("nan"), bound=float("nan"))
                scored = f"validation loss {entry['loss']:.4g} (float {float_loss:.4g})"
            else:
                wrong = mistakes(outputs.reshape(len(outputs), -1), y_val, from_logits)
                entry["error"] = float(np.mean(wrong))
                entry["increase"] = 100.0 * (entry["error"] - float_error)
                entry["bound"] = (entry["increase"] if confidence is None
                                  else increase_bound(float_wrong, wrong, confidence))
                scored = f"validation error {entry['error']:.2%} ("
                if max_error_increase is not None:
                    entry["over"] = entry["bound"] - max_error_increase
                    entry["passed"] = entry["over"] <= 1e-9
                    scored += _measured(entry, confidence, "error") + ")"
                else:
                    scored += f"{entry['increase']:+.2f} points)"
            if max_loss_increase is not None:
                entry["loss_increase"] = entry["loss"] / float_loss - 1.0
                entry["loss_bound"] = (
                    entry["loss_increase"] if confidence is None else
                    loss_increase_bound(float_losses, example_losses(loss_fn, y_val, outputs),
                                        confidence))
                entry["over"] = entry["loss_bound"] - max_loss_increase
                entry["passed"] = entry["over"] <= 1e-9
                scored = (f"validation loss {entry['loss']:.4g} ("
                          + _measured(entry, confidence, "loss") + ")"
                          + ("" if not_classifier else f", error {entry['error']:.2%}"))
            log(f"  packed {entry['bytes']:,} B ({float_bytes / entry['bytes']:.1f}x), {scored}")

        if target_bytes is not None:
            chosen, met, message = _to_target(target_bytes, plan, make_plan, trial, run, log,
                                              export_file, _evaluate, smallest, max_trials)
            message += _costly_target(chosen["error"], float_error,
                                      chosen["bytes"] >= (1 - _TOLERANCE) * target_bytes,
                                      chosen["loss"], float_loss,
                                      _int8_cause(miscalibrated, int8_error, float_error))
        else:
            quality = ({"max_error_increase": max_error_increase}
                       if max_error_increase is not None
                       else {"max_loss_increase": max_loss_increase})
            chosen, met, message = _to_quality(quality, confidence, plan, make_plan, trial,
                                               max_trials, log, smallest, float_bytes)
            cause = _int8_cause(miscalibrated, int8_error, float_error)
            if not met and cause:
                message = _quality_message(chosen, quality, confidence, cause)
        with open(chosen["path"], "rb") as f:
            write_atomically(path, f.read())
        # The report names the file written, not the trial run's, which the
        # temporary folder takes with it.
        chosen["report"].path = os.fspath(path)
    except OSError as e:
        if e.filename is None or not os.fspath(e.filename).startswith(workdir):
            raise
        # A trial run's file in the temporary folder: the user's path is OUT.
        raise type(e)(e.errno, f"{e.strerror} (writing a trial run, in a temporary folder "
                               "beside it)", os.fspath(path)) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    times["total"] = time.perf_counter() - started
    log(("done" if met else "BUDGET MISSED") + f" in {times['total']:.0f} s: {message}")
    if not met:
        warnings.warn(f"tfdc.compress: {message}", BudgetMissedWarning, stacklevel=2)
    return CompressResult(
        path=path, report=chosen["report"], model=_structured(chosen["student"], structure),
        plan=_noting_the_target(chosen["plan"], target_bytes),
        packed_bytes=chosen["bytes"], float_bytes=float_bytes, float_error=float_error,
        error=chosen["error"], target_bytes=target_bytes, max_error_increase=max_error_increase,
        max_loss_increase=max_loss_increase, loss_increase_bound=chosen.get("loss_bound"),
        error_increase_bound=chosen["bound"], confidence=confidence,
        float_loss=float_loss, loss=chosen["loss"],
        met=met, message=message, times=times, full_integer=calibration is not None,
        trials=[{k: _noting_the_target(v, target_bytes) if k == "plan" else v
                 for k, v in t.items() if k not in ("student", "report", "path")}
                for t in trials])


def _to_target(target, plan, make_plan, trial, run, log, export_file, evaluate, smallest,
               max_trials=3):
    """Train to a byte budget: plan for slightly under the target, train;
    too large: cut and fine-tune; far too small: plan larger and retrain.
    A target a little under the planner's smallest file (`smallest()`, down
    to `_UNDER_SMALLEST` of it) is tried with that file's plan.
    Met when the file is at most `target` bytes ("at most N bytes"; the
    message says how far under, and why, when it is more than 5 % under)."""
    low = (1 - _TOLERANCE) * target
    aim = int(_AIM * target)
    if plan is not None:
        p = plan
    else:
        try:
            p = make_plan(target_bytes=aim)
        except ValueError:
            p = None
        if p is None:
            # Unreachable with the margin: plan for the target itself (whose
            # error, if it is unreachable too, names the user's number, and
            # alone: raised outside the handler, not chained to the first).
            reach = smallest()
            if reach is not None and _UNDER_SMALLEST * reach <= target < reach:
                log(f"  the planner's smallest file is {reach:,} B, over the target: training "
                    "it anyway (training makes files smaller than planned; one still over is "
                    "cut)")
                p = make_plan(target_bytes=reach)
            else:
                p = make_plan(target_bytes=target)
    entry = trial(p, "plan for the target")
    tried = [entry]
    for _ in range(min(2, max_trials - 1)):
        if entry["bytes"] >= low or plan is not None:
            break
        # Training made the file smaller than planned: plan for more, in
        # proportion, from what was planned (the planner's smallest file,
        # over the aim, where the target is under it: from the aim, the
        # next one was under it still, and the run stopped 6 % under).
        # Where the plan itself was far under (the planner found no lower
        # loss in more bytes), this asks for far more than the target: such a
        # plan, cut back to the target, ended better (13.5 % error for 23 %)
        # or could not be cut there (then the earlier file is kept).
        base = max(aim, entry["planned_bytes"] or 0)
        aim = int(base * _AIM * target / entry["bytes"])
        try:
            larger = make_plan(target_bytes=aim)
        except ValueError:  # still under the planner's smallest file: the plan trained
            larger = entry["plan"]
        if _same_settings(larger, entry["plan"]):
            size = entry["bytes"]
            return entry, True, (
                f"{size:,} B is {size / target - 1:+.1%} from the target {target:,} B, more "
                f"than 5 % under it: asked for {aim / base:.2f}x the planned bytes (a plan of "
                f"up to {aim:,} B, scaled by how far under the target the file came), "
                f"the planner returns the "
                f"plan trained{_planned(entry)} (more bytes did not lower the loss it predicts on "
                f"the validation data, or its grids go no further), so training again would "
                f"not come closer")
        entry = trial(larger, f"{entry['bytes']:,} B is more than 5 % under "
                      f"the target: plan larger")
        tried.append(entry)
    if entry["bytes"] > target:
        log(f"  {entry['bytes']:,} B is over the target: removing the smallest weights")
        report, size, least = _cut_to(entry["student"], entry["plan"], target, entry["bytes"],
                                      entry["path"], export_file, log)
        fitted = least <= target
        student = entry["student"]
        if fitted:
            student = run.finetune_fixed(student, entry["plan"], log)
            report, size = export_file(student, entry["path"])
        if fitted and size > target:
            # The shared values' new bytes moved the file over: cut again
            # (a few weights more, not fine-tuned).
            log(f"  {size:,} B after fine-tuning is over the target: removing the smallest "
                "weights")
            report, size, _ = _cut_to(student, entry["plan"], target, size, entry["path"],
                                      export_file, log)
        planned_bytes = entry["bytes"]
        entry.update(student=student, report=report, bytes=size,
                     plan=_plan_as_cut(student, entry["plan"]) if fitted else entry["plan"])
        evaluate(entry)
        if fitted and plan is not None:
            warnings.warn(
                f"tfdc.compress: the given plan made {planned_bytes:,} B, over target_bytes="
                f"{target:,}: the smallest weights of its pruned layers were removed to reach "
                f"{size:,} B (result.plan has the sparsity the file has); to train the plan as "
                "it is, give a larger target or an error budget", stacklevel=3)
        if not fitted:
            kept = _met_earlier(tried, target, entry)
            if kept is not None:
                return kept
            unpruned = _unpruned(student, entry["plan"])
            return entry, False, (
                f"the packed file is {size:,} B, {size / target - 1:+.1%} over the target "
                f"{target:,} B: removing weights cannot get it there (keeping "
                f"{_FEWEST_KEPT:.0%} of the weights of the layers the plan prunes still made "
                f"{least:,} B: the rest of the file holds the bytes, its graph"
                + (" and the layers the plan leaves dense" if unpruned else "")
                + f"{_full_precision(student)}); give a larger target"
                + (", or a plan that prunes more layers" if unpruned else ""))
    size = entry["bytes"]
    better = min((e for e in tried if e["bytes"] <= target and _clearly_better(e, entry)),
                 key=_worse, default=None)
    if size <= target and better is not None:
        # A larger plan, cut back to the target, ended worse than an earlier
        # run's file: keep that one (a 65 B cut had multiplied a loss by 4.7).
        return better, True, (
            f"{better['bytes']:,} B is {better['bytes'] / target - 1:+.1%} from the target "
            f"{target:,} B: run {better['run']}'s file, kept for its lower validation "
            f"{_compared(better, entry)} than run {entry['run']}'s {size:,} B file")
    if low <= size <= target:
        return entry, True, (f"{size:,} B is {size / target - 1:+.1%} from the target "
                             f"{target:,} B")
    if size < low:
        why = (": the plan was given, so no larger plan was tried" if plan is not None
               else f": max_trials={max_trials}, so no larger plan was tried"
               if max_trials < 2 else " after larger plans")
        return entry, True, (f"{size:,} B is {size / target - 1:+.1%} from the target "
                             f"{target:,} B, more than 5 % under it{why}")
    return _met_earlier(tried, target, entry) or (
        entry, False, (f"the packed file is {size:,} B, {size / target - 1:+.1%} over the "
                       f"target {target:,} B: removing weights did not get it there"))


def _met_earlier(tried, target, last):
    """`(trial, True, message)` for the best earlier run whose file met the
    target, where the last one (`last`, a larger plan) ended over it; None
    if none did (a run under the target lost to one over it)."""
    met = [e for e in tried if e is not last and e["bytes"] <= target]
    if not met:
        return None
    best = min(met, key=_worse)
    return best, True, (
        f"{best['bytes']:,} B is {best['bytes'] / target - 1:+.1%} from the target {target:,} "
        f"B: run {best['run']}'s file, kept: run {last['run']}'s larger plan made "
        f"{last['bytes']:,} B, over the target")


def _planned(entry):
    """ " (planned 51,175 B)" for a trial whose plan predicted its bytes."""
    return f" (planned {entry['planned_bytes']:,} B)" if entry.get("planned_bytes") else ""


def _clearly_better(a, b):
    """Whether trial `a` is better than `b` beyond the validation data's
    noise: a loss under 1 / 1.1 of `b`'s, and (a classifier) an error no
    higher. A file more than 5 % under the target that is only as good as
    the one at it would break "within 5 %" for nothing."""
    return 0 < 1.1 * a["loss"] < b["loss"] and not a.get("error", 0) > b.get("error", 0)


def _worse(entry):
    """A trial's sort key, lower is better: its validation error, then loss
    (a model that is no classifier: the loss alone)."""
    error = entry.get("error", float("nan"))
    return (error if np.isfinite(error) else 0.0, entry["loss"])


def _compared(better, worse):
    """ "error (2.10 % for 2.40 %)" or, where the errors are equal (or
    there are none), "loss (0.031 for 0.118)": how two trials compare."""
    a, b = better.get("error", float("nan")), worse.get("error", float("nan"))
    if np.isfinite(a) and a != b:
        return f"error ({a:.2%} for {b:.2%})"
    return f"loss ({better['loss']:.4g} for {worse['loss']:.4g})"


def _noting_the_target(plan, target_bytes):
    """`plan` (a `tfdc.Plan`) with `aim_of` the user's `target_bytes` where
    it was made for another figure (compress's aim under the target, or a
    re-plan's), so that its table does not pass that figure for the user's."""
    own = getattr(plan, "target_bytes", None)
    if target_bytes is None or own is None or not hasattr(plan, "aim_of") or \
            own == int(target_bytes):
        return plan
    return dataclasses.replace(plan, aim_of=int(target_bytes))


def _plan_as_cut(student, plan):
    """`plan` with the sparsity `_cut_to` left in `student`'s kernels (a
    `HandPlan`; the plan itself where nothing was cut): `.plan` of the
    result describes the file."""
    sparsity = dict(plan.sparsity)
    for key, value in plan.sparsity.items():  # a name, a path or a pattern
        zeros = [1 - np.count_nonzero(w) / w.size for w in
                 (to_numpy(s.variable) for s in _kernels(student, {key: value}))]
        if zeros:
            sparsity[key] = float(max(value, min(zeros)))
    if sparsity == dict(plan.sparsity):
        return plan
    return HandPlan(sparsity, dict(plan.bits), source="cut to the target")


def _same_settings(a, b):
    """Whether two plans set the same sparsity and bits in every layer."""
    return dict(a.sparsity) == dict(b.sparsity) and dict(a.bits) == dict(b.bits)


def _to_quality(budget, confidence, plan, make_plan, trial, max_trials, log, smallest,
                float_size):
    """Bisect the byte budget (in log space) for the smallest file whose
    validation error or loss increase (its upper `confidence` bound) is
    within `budget` (`{"max_error_increase": points}` or
    `{"max_loss_increase": fraction}`)."""
    if plan is not None:
        entry = trial(plan, "the given plan")
        return entry, entry["passed"], _quality_message(entry, budget, confidence)
    try:
        safe = make_plan(**budget)
    except ValueError as e:
        # Even the planner's least compressed setting misses the budget
        # without retraining; retraining may still meet it: start from the
        # least compressed plan that fits the float model's own size.
        log(f"  the planner cannot meet the budget without retraining ({e}); searching anyway")
        safe = make_plan(target_bytes=float_size)
    high = _planned_bytes(safe)
    if not high:
        entry = trial(safe, "the planner's plan")
        return entry, entry["passed"], _quality_message(entry, budget, confidence)
    low = smallest() or _SEARCH_FLOOR * high
    passed, failed = [], []
    # The last run is kept for the planner's own plan, in case no search run
    # meets the budget.
    while len(passed) + len(failed) < max_trials - 1:
        if high / low < _SEARCH_STEP:
            log(f"  the smallest file within the budget lies between {low:,.0f} B and "
                f"{high:,.0f} B (within {_SEARCH_STEP - 1:.0%}): no further search run")
            break
        target = int(math.sqrt(low * high))
        try:
            p = make_plan(target_bytes=target)
        except ValueError as e:  # below the smallest reachable size
            log(f"  {target:,} B cannot be planned ({e}); searching higher")
            low = target
            continue
        entry = trial(p, f"search {len(passed) + len(failed) + 1}: {target:,} B")
        (passed if entry["passed"] else failed).append(entry)
        if entry["passed"]:
            high = min(target, entry["bytes"])
        else:
            low = max(target, entry["bytes"])
    else:  # out of runs
        if passed:
            log(f"  {len(passed) + len(failed)} search runs of max_trials={max_trials}: the "
                "last run is kept for the planner's own plan, needed only where no search "
                "run meets the budget")
    if not passed:
        log("  no search run met the budget: the last run trains the planner's own plan")
        entry = trial(safe, "the planner's plan without retraining's gain")
        (passed if entry["passed"] else failed).append(entry)
    if passed:
        best = min(passed, key=lambda e: e["bytes"])
        return best, True, _quality_message(best, budget, confidence)
    best = min(failed, key=lambda e: e["over"])
    return best, False, _quality_message(best, budget, confidence)


def _increase(entry, confidence, name):
    """A trial's increase of the `name` ("error": points, "loss": percent)
    over the float model, and its upper `confidence` bound (None without)."""
    if name == "error":
        increase, bound = f"{entry['increase']:+.2f} points", f"{entry['bound']:+.2f}"
    else:
        increase = f"{100 * entry['loss_increase']:+.1f} %"
        bound = f"{100 * entry['loss_bound']:+.1f} %"
    return increase, (f"at most {bound} at {confidence:.0%} confidence"
                      if confidence is not None else None)


def _measured(entry, confidence, name):
    """"+0.12 points; at most +0.41 at 90% confidence", for a log line."""
    increase, bound = _increase(entry, confidence, name)
    return increase + (f"; {bound}" if bound else "")


def _quality_message(entry, budget, confidence, cause=None):
    if "max_error_increase" in budget:
        name, limit = "error", f"{budget['max_error_increase']:.2f}"
    else:
        name, limit = "loss", f"{100 * budget['max_loss_increase']:g} %"
    increase, bound = _increase(entry, confidence, name)
    measured = f"{increase} against the float model" + (f" ({bound})" if bound else "")
    if entry["passed"]:
        return f"validation {name} {measured}, within the budget of {limit}"
    # Known before training (`_int8_cause`), the cause is no remedy of
    # training longer: the uncompressed int8 file misses the budget too.
    advice = (f"{cause[0].upper()}{cause[1:]}; full_integer=False keeps float activations"
              if cause else f"Train longer (epochs=), allow more {name}, or give more "
              "validation data (a tighter bound)")
    return (f"no run met the {name} budget: the best packed file is {measured} (budget "
            f"{limit}); kept the run closest to it ({entry['bytes']:,} B). {advice}")
