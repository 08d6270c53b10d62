"""Gradual magnitude pruning (step 1 of Deep Compression) as a Keras callback.

How a pruned weight stays exactly zero: every selected kernel gets a
`MaskConstraint` as its `variable.constraint`. Keras 3 optimizers apply
`variable.constraint` right after each update *inside* the compiled train
step, so `w <- inner_constraint(w) * mask` runs on every step (XLA or not,
under `tf.distribute` too) whatever the optimizer's momentum or Adam moments
say. The mask is a non-trainable variable that only the callback writes, and
only every `frequency` steps; it is monotone (once 0, always 0).

The mask constraint is also set as the layer's own constraint attribute
(`kernel_constraint`, `recurrent_constraint`, ... from `tfdc.layers`), so a
model saved as `.keras` mid-training or after pruning keeps it: a loaded model
takes the zeros of its weights as the masks, and a plain `fit` on it keeps
every pruned weight at zero (see `MaskConstraint`). Loading such a file needs
`tfdc.prune` imported; `tfdc.strip(model)` before saving gives a file without
any tfdc object.

Composing with other callbacks (e.g. `tfdc.cluster`): call
`install_mask(variable)`; it returns the variable's existing `MaskConstraint`
if one is installed, or wraps the current constraint in a new one. Read the
mask with `constraint.mask` (a `keras.Variable` of the kernel's shape, 1 =
kept, 0 = pruned). `tfdc.strip(model)` removes every tfdc constraint again.
"""

import dataclasses
import statistics
import warnings

import keras
import numpy as np
from keras import ops

from tfdc.constraints import (TfdcConstraint, callbacks_in_fit, find_constraint, fit_began,
                              fit_ended, innermost_optimizer, refuse_weight_averaging,
                              warn_constraints_skipped)
from tfdc.errors import listed, require_tensorflow_backend
from tfdc.layers import constraint_slot, kernel_name, kernel_variables
from tfdc.select import check_built, iter_layers, kernel_labels, select_kernels
from tfdc.values import to_numpy

__all__ = ["GradualPruning", "MaskConstraint", "install_mask", "find_mask", "active_pruning",
           "active_schedules", "StepCounter",
           "mask_from_zeros", "sparsity", "polynomial_sparsity", "pruned_count", "SparsityReport",
           "LayerSparsity"]

def active_schedules(model, params=None):
    """The pruning callbacks (`GradualPruning`, `StructuredPruning`) of the
    `fit` now running on `model`, in the order they started, for callbacks
    that must wait for their schedules to end (tfdc.ClusteredFineTuning).

    `params`: a callback's `self.params`, to skip callbacks left by a fit
    that ended with an exception (`tfdc.constraints.callbacks_in_fit`)."""
    return [c for c in callbacks_in_fit(model, params) if getattr(c, "prunes_on_schedule", False)]


def active_pruning(model, params=None):
    """The `GradualPruning` of the `fit` now running on `model`, or None
    (`params`: as for `active_schedules`)."""
    return next((c for c in active_schedules(model, params) if isinstance(c, GradualPruning)),
                None)


@keras.saving.register_keras_serializable(package="tfdc")
class MaskConstraint(TfdcConstraint):
    """`w -> inner(w) * mask`: keeps pruned weights at exactly zero.

    Saved with the model: `GradualPruning` also sets it as the layer's own
    constraint attribute (`kernel_constraint`, ...), so a `.keras` file
    records it. Its config holds the inner constraint and the number of
    pruned weights, not the mask (the mask *is* the zeros of the saved
    weights): a loaded constraint takes the zeros of the loaded weights as
    its mask, when a train step first applies it, if there are exactly as
    many as were saved (otherwise it warns and keeps no mask). A tensor of
    at most `LISTED_MAX` values (a bias, a BatchNormalization vector:
    `StructuredPruning`'s masks) lists its pruned positions instead: a kept
    value that is exactly 0, such as a dead unit's bias, is not taken for a
    pruned one, and the positions are checked to be 0. So a plain
    `fit` on a reloaded pruned model keeps every pruned weight at zero, as
    it does in the process that pruned it. Loading needs the class
    registered: `import tfdc.prune` (or use any tfdc callback) before
    `keras.saving.load_model`; a model saved after `tfdc.strip(model)`
    loads without tfdc.

    Args:
        mask: a non-trainable `keras.Variable` with the kernel's shape and
            dtype (1 keeps a weight, 0 prunes it), or `None`.
        inner: the constraint that was on the variable before (applied first),
            or `None`.
        zeros: for a constraint read from a saved model: how many weights
            were pruned when it was saved (its mask is then recovered from
            the weights, see above). `None` with `mask=None`: identity.
        pruned: for a constraint read from a saved model of at most
            `LISTED_MAX` values: the flat positions that were pruned.
    """

    LISTED_MAX = 4096

    def __init__(self, mask=None, inner=None, zeros=None, pruned=None):
        super().__init__(inner)
        self.mask = mask
        self.zeros = None if zeros is None else int(zeros)
        self.pruned = None if pruned is None else [int(i) for i in pruned]

    def __call__(self, w):
        if self.mask is None and self.zeros is not None:
            self._recover(w)
        if self.inner is not None:
            w = self.inner(w)
        if self.mask is None:
            return w
        # `where`, not `w * mask`: a pruned negative weight times 0 is -0.0,
        # whose bit pattern is nonzero, and the packed format (which is
        # bit-exact) would have to store it as a value.
        return ops.where(self.mask > 0, w, ops.zeros_like(w))

    def _recover(self, variable):
        """Set the mask of a loaded constraint from the zeros of `variable`
        (its value before the first update: the optimizer applies the
        constraint to the variable itself, read here outside the traced
        step)."""
        value = _current_value(variable)
        if value is None:
            return  # a symbolic tensor: try again on the next call
        expected, pruned = self.take_saved()
        self.mask = mask_from_zeros(value, expected, getattr(variable, "path", "a kernel"), pruned)

    def take_saved(self):
        """`(zeros, pruned)` as read from a saved model, forgotten here: the
        mask is recovered from them once (or they no longer fit the
        weights)."""
        saved, self.zeros, self.pruned = (self.zeros, self.pruned), None, None
        return saved

    def saved_but_nonzero(self, value):
        """For a constraint read from a saved model and not yet applied by a
        train step: how many weights of `value` its saved mask prunes that
        are not zero (of its listed positions; else at least the zeros
        missing from its count). None when it saved neither."""
        if self.pruned is not None:
            flat = value.ravel()
            return int(np.count_nonzero(flat[listed_positions(self.pruned, flat.size)]))
        if self.zeros is not None:
            return max(0, self.zeros - int(value.size - np.count_nonzero(value)))
        return None

    def get_config(self):
        # The mask itself lives in the weights' zeros: save how many there
        # are (to check the weights they are recovered from), a small
        # tensor's pruned positions (a kept 0 is not a pruned one), and the
        # inner constraint.
        inner = keras.constraints.serialize(self.inner) if self.inner is not None else None
        zeros, pruned = self.zeros, self.pruned
        if self.mask is not None:
            mask = to_numpy(self.mask)
            zeros = int(mask.size - np.count_nonzero(mask))
            if mask.size <= self.LISTED_MAX:
                pruned = np.flatnonzero(mask.ravel() == 0).tolist()
        config = {"inner": inner, "zeros": zeros}
        if pruned is not None:
            config["pruned"] = pruned
        return config

    @classmethod
    def from_config(cls, config):
        inner = config.get("inner")
        return cls(mask=None, inner=keras.constraints.deserialize(inner) if inner else None,
                   zeros=config.get("zeros"), pruned=config.get("pruned"))


def _current_value(variable):
    """The value of `variable` now, as NumPy, also while a train step is
    being traced; None for a symbolic tensor."""
    import tensorflow as tf
    try:
        # (to_numpy: where warnings are errors, NumPy 2's DeprecationWarning
        # read as "no value", and the traced step applied no mask at all.)
        with tf.init_scope():
            return np.asarray(to_numpy(variable))
    except Exception:  # noqa: BLE001 - any tensor that has no value outside the graph
        return None


def listed_positions(pruned, size):
    """The pruned positions a saved mask listed that lie in a tensor of
    `size` values (a file edited by hand may list others)."""
    pruned = np.asarray(pruned, dtype=np.int64)
    return pruned[(pruned >= 0) & (pruned < size)]


def mask_from_zeros(value, expected_zeros, name, pruned=None):
    """The mask (1 keeps, 0 prunes), as a constant, recovered from the zeros
    of `value` if it has exactly `expected_zeros` zeros, or from the listed
    `pruned` positions if they are all zero; otherwise a warning and None
    (the weights are not the ones the mask was saved with)."""
    import tensorflow as tf
    flat = value.ravel()
    if pruned is not None:
        positions = listed_positions(pruned, flat.size)
        nonzero = int(np.count_nonzero(flat[positions]))
        if len(positions) == len(pruned) == expected_zeros and not nonzero:
            mask = np.ones(flat.size, value.dtype)
            mask[positions] = 0
            with tf.init_scope():
                return tf.constant(mask.reshape(value.shape))
        found = f"{nonzero} of them are not zero"
    else:
        zeros = int(value.size - np.count_nonzero(value))
        if zeros == expected_zeros:
            with tf.init_scope():
                return tf.constant((value != 0).astype(value.dtype))
        found = f"the weights have {zeros:,} zeros"
    warnings.warn(
        f"{name}: the pruning mask saved with the model has {expected_zeros:,} pruned weights "
        f"but {found}, so they are not the weights it was saved with; the mask is not "
        "applied (pruned weights can become nonzero). Prune again (the tfdc callback that "
        "pruned them), or call tfdc.strip(model) to remove the stale mask.",
        stacklevel=2)
    return None


def find_mask(variable):
    """The `MaskConstraint` installed on `variable`, or `None`."""
    return find_constraint(variable, MaskConstraint)


def has_mask_variable(variable):
    """Whether `variable`'s mask is a variable a callback can update. If
    not (no mask, or one loaded with a model: a constant recovered from the
    weights' zeros, captured by any train function traced since),
    `install_mask` makes one, and that train function must be traced again
    to see it."""
    return isinstance(getattr(find_mask(variable), "mask", None), keras.Variable)


def install_mask(variable, strategy=None, slot=None):
    """Make sure `variable` carries a `MaskConstraint` with a mask variable.

    Returns the existing one if present (so several callbacks share one mask),
    otherwise wraps the variable's current constraint. A new mask starts at
    all ones; the mask of a constraint read from a saved model starts as the
    zeros of the weights. It is created under `strategy`'s scope (mirrored
    under `MirroredStrategy`). `slot`: optional `(owner, attribute)` of the
    layer's own constraint (`tfdc.layers.constraint_slot`), set to the mask
    constraint too so that saving the model keeps it. A train function traced
    before this call does not see a new mask: rebuild it
    (`model.make_train_function(force=True)`). A `ValueError` for a
    variable that a `ClusterConstraint` still holds on its codebook.
    """
    from tfdc.cluster import ClusterConstraint
    if find_constraint(variable, ClusterConstraint) is not None:
        # Its projection writes every weight it clustered back to a
        # centroid, pruned since or not: the pruning would silently undo
        # itself at the next step.
        raise ValueError(
            f"{variable.path} is still clustered: a ClusteredFineTuning(detach_at_end=False) "
            "left its constraint on it, which writes each weight it clustered back to its "
            "centroid, so pruning it further would be undone at the next step. Remove that "
            "constraint first (the callback's detach(), which keeps the pruning masks), "
            "prune, then cluster again")
    existing = find_mask(variable)
    if existing is None or not isinstance(existing.mask, keras.Variable):
        if existing is not None and existing.mask is not None:  # recovered by a traced step
            initial = to_numpy(existing.mask)
        elif existing is not None and existing.zeros is not None:  # read from a saved model
            zeros, pruned = existing.take_saved()
            recovered = mask_from_zeros(to_numpy(variable), zeros, variable.path, pruned)
            initial = to_numpy(recovered) if recovered is not None else None
        else:
            initial = None
        if initial is None:
            initial = np.ones(variable.shape, dtype=variable.dtype)
        name = variable.path.replace("/", "_") + "_mask"
        scope = strategy.scope() if strategy is not None else _nullcontext()
        with scope:
            mask = keras.Variable(initial, trainable=False, dtype=variable.dtype, name=name)
        if existing is not None:
            existing.mask = mask
        else:
            existing = MaskConstraint(mask, inner=variable.constraint)
            variable.constraint = existing
    if slot is not None and not isinstance(getattr(*slot), TfdcConstraint):
        setattr(*slot, existing)
    return existing


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def pruned_count(sparsity, size):
    """How many of a kernel's `size` weights a sparsity zeroes:
    `round(sparsity * size)`, but never all of them (0.99 of a 30-weight
    kernel would round to 30, a dead layer): one weight is always kept."""
    return max(0, min(int(round(float(sparsity) * size)), size - 1))


def polynomial_sparsity(step, initial_sparsity, target_sparsity, begin_step, end_step):
    """Zhu & Gupta's cubic ramp, `s_t = s_f + (s_i - s_f) (1 - p)^3`.

    `p = (step - begin_step) / (end_step - begin_step)`, clipped to [0, 1]:
    `initial_sparsity` up to `begin_step`, `target_sparsity` from `end_step`.
    Works on Python numbers and NumPy arrays of steps.
    """
    p = np.clip((np.asarray(step, dtype=np.float64) - begin_step) / (end_step - begin_step), 0.0, 1.0)
    s = target_sparsity + (initial_sparsity - target_sparsity) * (1.0 - p) ** 3
    return float(s) if np.ndim(s) == 0 else s


@dataclasses.dataclass
class LayerSparsity:
    """Zeros in one kernel."""

    weights: int
    zeros: int

    @property
    def sparsity(self):
        return self.zeros / self.weights if self.weights else 0.0

    def __getitem__(self, key):  # dict-style access: report["fc1"]["sparsity"]
        return getattr(self, key)


class SparsityReport(dict):
    """`sparsity(model)`'s result: kernel name -> `LayerSparsity`, printable."""

    @property
    def weights(self):
        return sum(v.weights for v in self.values())

    @property
    def zeros(self):
        return sum(v.zeros for v in self.values())

    @property
    def sparsity(self):
        return self.zeros / self.weights if self.weights else 0.0

    def __str__(self):
        width = max([len(n) for n in self] + [5])
        lines = [f"{'layer':<{width}}  {'weights':>9}  {'zeros':>9}  {'sparsity':>8}  {'kept':>6}"]
        rows = list(self.items()) + [("total", LayerSparsity(self.weights, self.zeros))]
        for name, v in rows:
            lines.append(f"{name:<{width}}  {v.weights:>9,}  {v.zeros:>9,}  {v.sparsity:>8.2%}  "
                         f"{1 - v.sparsity:>6.2%}")
        return "\n".join(lines)


def sparsity(model):
    """Per-kernel zero counts of every kernel of a kind in `tfdc.layers.KINDS`
    (Dense, Conv, depthwise, separable, transposed, EinsumDense, Embedding,
    recurrent).

    Returns:
        A `SparsityReport`: a dict mapping kernel name (the layer name, or
        `layer/attr` for layers with two kernels; for one of two layers of
        one name in two nested models, its path, "branch1/fc") to `LayerSparsity(weights,
        zeros)` with a `.sparsity` property; the report has `.sparsity`,
        `.weights` and `.zeros` totals and prints as a table.
    """
    check_built(model)
    rows, seen = [], set()
    for layer in iter_layers(model):
        for attr, variable in kernel_variables(layer):
            if id(variable) not in seen:
                seen.add(id(variable))
                rows.append((layer, attr, variable))
    # Two layers of one name in two nested models: each under its path
    # ("branch1/fc"), not one row for both.
    names = kernel_labels(model, [(layer, attr) for layer, attr, _ in rows])
    report = SparsityReport()
    for name, (layer, attr, variable) in zip(names, rows):
        w = to_numpy(variable)
        report[name] = LayerSparsity(int(w.size), int(w.size - np.count_nonzero(w)))
    return report


def check_fraction(value, what):
    """A ValueError naming `what` unless `value` is a number in [0, 1): a
    sparsity (`GradualPruning`) or a removed fraction (`StructuredPruning`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {value!r}")


def check_fractions(value, what):
    """`check_fraction` of one fraction, or of each in a non-empty dict
    keyed by layer name (`GradualPruning`'s and `StructuredPruning`'s
    first argument)."""
    if not isinstance(value, dict):
        check_fraction(value, what)
        return
    if not value:
        raise ValueError(f"{what} is an empty dict: name at least one layer")
    for key, fraction in value.items():
        check_fraction(fraction, f"{what}[{key!r}]")


class StepCounter:
    """The optimizer step of a running fit (`model.optimizer.iterations`,
    the unit of every schedule), counted in Python from the batch indices
    Keras gives callbacks: reading the variable each batch is a device sync.

    With `gradient_accumulation_steps=k`, Keras's `iterations` count
    updates, one per k batches; the batches are counted and divided (a
    callback counting batches as steps was k times ahead of the
    `optimizer.iterations` a user gives `begin_step` / `end_step` from).
    Made when a fit begins (again at its first epoch: BackupAndRestore,
    listed later, restores the step in its own on_train_begin)."""

    def __init__(self, model):
        optimizer = model.optimizer
        inner = innermost_optimizer(optimizer)
        self.k = int(getattr(inner, "gradient_accumulation_steps", None) or 1)
        self._variable = inner._iterations if self.k > 1 else optimizer.iterations
        self.batches = self.epoch_base = self._made_at = int(to_numpy(self._variable))
        self._first = True

    @property
    def step(self):
        return self.batches // self.k

    def batch_began(self, batch):
        """Keras numbers batches per epoch; a fit resumed mid-epoch
        (BackupAndRestore's save_freq) starts past batch 0."""
        if batch == 0 or self._first:
            self.epoch_base, self._first = self.batches - batch, False

    def batch_ended(self, batch, steps=None):
        """`batch`: the last batch index of the execution that ended (with
        steps_per_execution, several batches at once); `steps`: the epoch's
        batches, where known. Returns the step."""
        if steps:
            # Keras numbers a last, partial execution as a whole one: 40
            # batches run 7 at a time "ended" at batch 41, and the schedule
            # ran 2 steps ahead of the optimizer each epoch.
            batch = min(batch, steps - 1)
        self.batches = self.epoch_base + batch + 1
        return self.step

    def epoch_ended(self):
        """The step read from the optimizer, once an epoch: a dataset of
        unknown length ends in a partial execution numbered as a whole one
        too, where `steps` is not known to cap it. A train step that never
        steps the optimizer (it assigns the weights itself) leaves it where
        it was: the batches stay counted. Returns the step."""
        read = int(to_numpy(self._variable))
        if read != self._made_at:
            self.batches = read
        return self.step

    def fit_bounds(self, initial_epoch, steps, epochs):
        """The steps at which this fit's epoch 0 began (or would have) and
        at which it ends (None if its batches per epoch are unknown)."""
        # With an optimizer newer than `initial_epoch` says (a resume from a
        # weights-only checkpoint), epoch 0 "began" before step 0: the fit
        # still ends `epochs - initial_epoch` epochs from now (it was
        # counted from 0, an epoch late).
        start = self.batches - initial_epoch * (steps or 0)
        end = (start + epochs * steps) // self.k if steps and epochs else None
        return max(0, start) // self.k, end


def check_steps(begin_step, end_step):
    """A ValueError unless the schedule's steps are None or non-negative
    integers, begin before end."""
    for name, step in (("begin_step", begin_step), ("end_step", end_step)):
        if step is not None and (not isinstance(step, (int, np.integer)) or step < 0):
            raise ValueError(f"{name} must be a non-negative integer or None, got {step!r}")
    if begin_step is not None and end_step is not None and begin_step >= end_step:
        raise ValueError(f"begin_step ({begin_step}) must be smaller than end_step ({end_step})")


def warn_unfinished(callback, step, end_step, reached, target, given, variables=()):
    """The warning of a pruning callback whose fit ended at `step`, before
    its schedule's `end_step` (e.g. stopped early): `reached` says how far
    it got (a phrase), `target` is the fraction it was to reach; `given`,
    whether the user gave `end_step` (the schedule then carries on in the
    next fit; the default end is the end of each fit). Where one of
    `variables` (the pruned kernels) holds a NaN or an infinity, the fit
    diverged (stopped by TerminateOnNaN): an earlier end_step is no cure."""
    diverged = [v.path for v in variables
                if not np.isfinite(to_numpy(v)).all()]
    if diverged:
        warnings.warn(
            f"{callback}: training ended at step {step:,}, before the schedule's end_step "
            f"{end_step:,}, with NaN or infinite weights ({listed(diverged, 4)}): the "
            "training diverged (stopped by TerminateOnNaN?); train again from weights before "
            "it, e.g. with a lower learning rate.", stacklevel=3)
        return
    carries = ("The schedule carries on in the next fit of this model; to reach the target "
               "in this one, give" if given else "To reach the target in a fit, give")
    warnings.warn(
        f"{callback}: training ended at step {step:,}, before the schedule's end_step "
        f"{end_step:,}: {reached}, not the target {target:.1%}. {carries} "
        f"end_step <= {step:,} (or train longer).", stacklevel=3)


def warn_coarse_execution(model, who, frequency):
    """A warning where `model` runs more steps per call than `frequency`:
    Keras calls callbacks once per call, so the masks change every
    `steps_per_execution` steps (a ramp shorter than that is one cut: 0.67
    test accuracy against 0.83 in a probe)."""
    per_call = int(getattr(model, "steps_per_execution", 1) or 1)
    if per_call > frequency:
        warnings.warn(
            f"{who}: the model is compiled with steps_per_execution={per_call}, and callbacks "
            f"see one batch in {per_call}: the masks change every {per_call} steps, not every "
            f"frequency={frequency}, so the ramp is a few large cuts (or one), which costs "
            f"accuracy. Compile with steps_per_execution <= {frequency} for this fit.",
            stacklevel=3)


def warn_one_cut(who, begin_step, end_step, frequency, stacklevel=3):
    """A warning where the ramp from `begin_step` to `end_step` is no longer
    than `frequency`: the masks then go to the target in one cut, with no
    training in between (a probe's MobileNetV2, 63 steps at the default 100:
    80 % sparsity at once, chance accuracy after, 88 % error once exported)."""
    ramp = end_step - begin_step
    if 1 < ramp <= frequency:  # (a ramp of one step is one cut whatever the frequency)
        warnings.warn(
            f"{who}: the ramp from step {begin_step:,} to end_step {end_step:,} is {ramp:,} "
            f"steps, no longer than frequency={frequency}: the target is reached in one cut, "
            "with no training between cuts, which costs accuracy. Give a frequency of a tenth "
            f"of the ramp or less (frequency={max(1, ramp // 10)}) or a longer ramp.",
            stacklevel=stacklevel + 1)


def prune_due(step, begin_step, end_step, last, frequency):
    """Whether a schedule that last pruned at step `last` (None: never)
    prunes at `step`: at `begin_step`, then every `frequency` steps, and
    once at `end_step`, after which its masks stay fixed."""
    if step < begin_step:
        return False
    if last is None:
        return True
    if last >= end_step:
        return False
    return step - last >= frequency or step >= end_step


def last_due(step, begin_step, end_step, frequency):
    """For a fit that starts at `step` inside the ramp (`begin_step` <
    `step` < `end_step`: one resumed by BackupAndRestore, a second fit),
    the step at which the schedule, run from `begin_step`, last pruned:
    the new fit goes on pruning at the same steps (it pruned at once and
    every `frequency` from there, and ended with other masks than the
    whole fit). None elsewhere: a fit before the ramp prunes at
    `begin_step`, and one past it prunes once, to the final target."""
    if not begin_step < step < end_step:
        return None
    return begin_step + (step - begin_step) // frequency * frequency


class GradualPruning(keras.callbacks.Callback):
    """Prune kernels to a target sparsity during training (Zhu & Gupta ramp).

    Every `frequency` optimizer steps between `begin_step` and `end_step`, each
    selected kernel's mask is recomputed so that its sparsity follows
    `s_t = s_f + (s_i - s_f) (1 - (t - t0) / (end_step - t0))^3`; after
    `end_step` the masks stay fixed while training goes on (the paper's
    retraining). Steps are optimizer iterations (`model.optimizer.iterations`;
    one per `gradient_accumulation_steps` batches where that is set),
    so the schedule carries on across `fit` calls and a `.keras` save/load
    that keeps the optimizer (`load_model` compiles it back; a new
    optimizer counts from 0 and starts the schedule again).

    The masks are enforced inside the compiled train step by a
    `MaskConstraint` on each kernel variable (see the module docstring), so a
    pruned weight stays exactly 0 under any optimizer, also in later fits and
    after a `.keras` save and load (of a Sequential or functional model: a
    subclassed model makes its layers in its own code, without the masks).
    `logs["sparsity"]` is the current overall sparsity of the selected
    kernels. If `fit` ends before `end_step` (the target is not reached), a
    warning says the sparsity reached.

    With `tfdc.ClusteredFineTuning` in the same `fit`, the weights are pruned
    along this schedule and clustered once it has ended (after `end_step`),
    so give an `end_step` before the end of the fit to leave steps for
    fine-tuning the shared values. A model that `fit` builds in its first
    step (a subclassed model never called) gets its masks after that step.

    An `EarlyStopping(restore_best_weights=True)` restores its best epoch's
    weights after this callback's end: an epoch from before `end_step` has
    fewer zeros than the masks (`tfdc.export` warns of them), so give it
    `start_from_epoch=` the first epoch after `end_step`.

    Args:
        target_sparsity: final fraction of zeros, in [0, 1): one float for every
            Dense / Conv / DepthwiseConv / SeparableConv / ConvTranspose /
            EinsumDense / Embedding kernel and recurrent (LSTM, GRU,
            SimpleRNN, RNN of a cell, ConvLSTM) kernel and recurrent kernel
            (never biases or normalization; `tfdc.layers.KINDS`; a warning
            names large weights of other layers, and frozen layers, which
            are pruned too), or a dict mapping a layer
            name (or its path, "branch1/fc", for one of two of that name) or
            regular expression to a sparsity (only matched layers are pruned).
        initial_sparsity: sparsity at `begin_step` (default 0).
        begin_step: first pruning step. Default: the step at which this fit's
            epoch 0 starts (`optimizer.iterations - initial_epoch * steps`,
            or 0 where that is negative: a fresh optimizer resuming at
            `initial_epoch > 0` from weights alone ramps from step 0).
        end_step: step at which `target_sparsity` is reached. Default: the
            end of the fit, (start of epoch 0) + `epochs * steps_per_epoch`.
        frequency: prune every this many steps (default 100).
        criterion: `"magnitude"` (default): per layer, exactly
            `round(s * n)` weights, those of smallest |w|, are zero (at
            most `n - 1`: a layer always keeps a weight).
            `"std"`: the paper's rule, prune |w| < quality * std(w), std of the
            layer's current weights; the quality is derived from the scheduled
            sparsity as `quality = sqrt(2) * erfinv(s_t)`, the value that
            prunes a fraction `s_t` of normally distributed weights. The
            realized sparsity then only approximates the target (it is
            reported in `logs["sparsity"]` and by `tfdc.sparsity`).
        exclude: layer names or regular expressions never to prune.
        verbose: 1 prints the per-layer sparsity table at the end of training.

    Raises:
        ValueError: a sparsity outside [0, 1), `initial_sparsity` above the
            target, `begin_step >= end_step`, a name or pattern that matches
            no layer, a model with nothing to prune, an unknown criterion.

    Example:

    ```python
    import keras, numpy as np, tfdc
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, name="fc1"),
                              keras.layers.Dense(2, name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.rand(256, 20), np.random.randint(0, 2, 256)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0,
              callbacks=[tfdc.GradualPruning({"fc1": 0.9, "out": 0.5}, frequency=4)])
    print(tfdc.sparsity(model))   # fc1 90 %, out 50 %
    ```
    """

    # A schedule that tfdc.ClusteredFineTuning in the same fit waits for
    # (`active_schedules`).
    prunes_on_schedule = True

    def __init__(self, target_sparsity, initial_sparsity=0.0, begin_step=None, end_step=None,
                 frequency=100, criterion="magnitude", exclude=(), verbose=0):
        super().__init__()
        require_tensorflow_backend("tfdc.GradualPruning")
        check_fractions(target_sparsity, "target_sparsity")
        check_fraction(initial_sparsity, "initial_sparsity")
        targets = target_sparsity.values() if isinstance(target_sparsity, dict) else [target_sparsity]
        if any(initial_sparsity > t for t in targets):
            raise ValueError(f"initial_sparsity={initial_sparsity} is above a target sparsity "
                             f"({target_sparsity}); the schedule only prunes more over time")
        if criterion not in ("magnitude", "std"):
            raise ValueError(f"criterion must be 'magnitude' or 'std', got {criterion!r}")
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be a positive integer, got {frequency!r}")
        check_steps(begin_step, end_step)
        self.target_sparsity = target_sparsity
        self.initial_sparsity = float(initial_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self.criterion = criterion
        self.exclude = exclude
        self.verbose = verbose
        self.selections = None
        self._masks = None
        self._step = None
        self._fit_end = None
        self._last_prune = None
        self._sparsity = 0.0

    # ----------------------------------------------------------------- schedule
    def _select(self, model):
        def validate(value, name):
            check_fraction(value, f"sparsity of layer {name!r}")
        return select_kernels(model, self.target_sparsity, self.exclude, validate=validate,
                              who="GradualPruning")

    def sparsity_at(self, step, model=None):
        """The scheduled sparsity of each selected kernel at optimizer `step`.

        Pure (reads no weights). Needs the model (the one being trained, or
        `model=`) to resolve names, and `begin_step` / `end_step` (given, or
        known once `fit` has started).

        Returns:
            dict kernel name (as in `tfdc.sparsity`) -> scheduled sparsity.
        """
        model = model or self.model
        if model is None:
            raise ValueError("sparsity_at needs a model: pass model= or call it during/after fit")
        if self.begin_step is None or self.end_step is None:
            raise ValueError("begin_step/end_step are only known once fit starts; pass them "
                             "explicitly to evaluate the schedule before training")
        selections = self.selections if model is self.model and self.selections else self._select(model)
        return {kernel_name(s.layer, s.attr): polynomial_sparsity(
            step, self.initial_sparsity, s.value, self.begin_step, self.end_step) for s in selections}

    # ---------------------------------------------------------------- callbacks
    def on_train_begin(self, logs=None):
        model = self.model
        refuse_weight_averaging(model, "tfdc.GradualPruning")
        other = active_pruning(model, self.params)
        if other is not None and other is not self:
            raise ValueError("two GradualPruning callbacks in one fit of model "
                             f"{model.name!r}: give one, with a dict of per-layer sparsities")
        fit_began(self)
        warn_coarse_execution(model, "GradualPruning", self.frequency)
        self._told_regrown = False
        self.selections, self._masks = None, None
        self._counter = StepCounter(model)
        self._step = self._counter.step
        self._last_prune = None
        self._resolved = False
        self._fit_end = None
        self._user_begin, self._user_end = self.begin_step, self.end_step
        self._clustered = []
        if model.built:
            self._install()
        # else: a model that Keras builds in its first train step (a
        # subclassed model never called); installed after that step.

    def _install(self):
        """Select the kernels and put a mask constraint on each."""
        from tfdc.cluster import clustered_before_pruning, release_interrupted
        model = self.model
        self.selections = self._select(model)
        self._clustered = clustered_before_pruning([(kernel_name(s.layer, s.attr), s.variable)
                                                    for s in self.selections])
        if self._resolved:  # installed after the first step: every callback has begun
            self._warn_clustered()
        release_interrupted([s.variable for s in self.selections], self.params,
                            type(self).__name__)
        strategy = getattr(model, "distribute_strategy", None)
        fresh = [not has_mask_variable(s.variable) for s in self.selections]
        self._masks = [install_mask(s.variable, strategy, constraint_slot(s.layer, s.attr))
                       for s in self.selections]
        if any(fresh):
            # A train function traced by an earlier fit (or by this fit's
            # first step) does not apply the new constraints: rebuild it (it
            # is traced again on its next call).
            model.make_train_function(force=True)

    def _resolve_schedule(self, initial_epoch):
        steps = self.params.get("steps") if self.params else None
        epochs = self.params.get("epochs") if self.params else None
        begin, end = self._user_begin, self._user_end
        fit_start, self._fit_end = self._counter.fit_bounds(initial_epoch, steps, epochs)
        if begin is None:
            begin = fit_start
        if end is None:
            if self._fit_end is None:
                raise ValueError("the number of steps per epoch is unknown (a dataset of unknown "
                                 "length?): pass end_step to GradualPruning")
            end = self._fit_end
        if begin >= end:
            why = ""
            if self._user_begin is None:
                why = (": begin_step defaults to the optimizer step at which this fit starts, and "
                       f"the model's optimizer has run {begin} steps already; steps count from "
                       "its first training, so pass begin_step / end_step on that count")
            raise ValueError(f"begin_step ({begin}) must be smaller than end_step ({end}){why}")
        self.begin_step, self.end_step = int(begin), int(end)

    def _start_pruning(self):
        """The first pruning step of this fit, once the masks are installed
        and the schedule is known."""
        # Resuming mid-schedule (or after it): the zeros already in the
        # weights are the masks of the earlier run; keep them.
        if self._step > self.begin_step:
            for selection, constraint in zip(self.selections, self._masks):
                w = to_numpy(selection.variable)
                constraint.mask.assign((w != 0).astype(w.dtype) * to_numpy(constraint.mask))
        self._warn_past_target()
        self._last_prune = last_due(self._step, self.begin_step, self.end_step, self.frequency)
        if prune_due(self._step, self.begin_step, self.end_step, self._last_prune,
                     self.frequency):
            self._prune(self._step)
        else:
            self._sparsity = self._measure()

    def _warn_past_target(self):
        """A warning for kernels whose masks already zero more than this
        schedule's target (an earlier pruning): masks only grow, so they
        stay as sparse (a lower target was ignored without a word)."""
        past = {}
        for selection, constraint in zip(self.selections, self._masks):
            mask = to_numpy(constraint.mask)
            zeros = 1.0 - float(np.count_nonzero(mask)) / mask.size
            if zeros > float(selection.value) + 0.5 / mask.size:
                past[kernel_name(selection.layer, selection.attr)] = (zeros, selection.value)
        if past:
            listed = ", ".join(f"{name}: {z:.1%} > {t:.1%}" for name, (z, t) in past.items())
            warnings.warn(f"GradualPruning: masks already zero more than the target ({listed}); "
                          "masks only grow, so these kernels stay as sparse (tfdc.strip(model) "
                          "removes the masks, the zeros stay).", stacklevel=3)

    def on_epoch_begin(self, epoch, logs=None):
        if self._resolved:
            return
        self._counter = StepCounter(self.model)  # BackupAndRestore may have restored it
        self._step = self._counter.step
        if any(type(c).__name__ == "StructuredPruning"
               for c in active_schedules(self.model, self.params)):
            warnings.warn(
                "GradualPruning: StructuredPruning removes units in this fit too, and the "
                "target sparsity counts the weights of removed units as pruned (80 % of a kernel "
                "was 60 % of what tfdc.shrink keeps). Remove units first, tfdc.shrink the model, "
                "then prune the small model.", stacklevel=2)
        self._resolve_schedule(epoch)
        self._resolved = True
        if self._step < self.end_step:  # not a fit resumed after the ramp
            warn_one_cut("GradualPruning", self.begin_step, self.end_step, self.frequency)
        self._warn_clustered()
        if self.selections is not None:
            self._start_pruning()

    def _warn_clustered(self):
        """Tell of the kernels `_install` found clustered already, once the
        other callbacks have begun (a ClusteredFineTuning among them
        clusters them again: no warning)."""
        from tfdc.cluster import warn_clustered_before_pruning
        warn_clustered_before_pruning(self._clustered, "GradualPruning", self.model, self.params)
        self._clustered = []

    def on_train_batch_end(self, batch, logs=None):
        self._step = self._counter.batch_ended(batch, (self.params or {}).get("steps"))
        if self.selections is None:
            if not self.model.built:
                return
            self._install()  # the first step built the model
            self._start_pruning()
        elif prune_due(self._step, self.begin_step, self.end_step, self._last_prune,
                           self.frequency):
            self._prune(self._step)
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def on_epoch_end(self, epoch, logs=None):
        self._step = self._counter.epoch_ended()
        if self._masks is not None:
            self._enforce_masks(epoch)
        if logs is not None:
            logs["sparsity"] = self._sparsity

    def _enforce_masks(self, epoch):
        """Zero pruned weights that are not zero, with a warning (once a
        fit): the masks are applied by the optimizer as the variables'
        constraints, and a train step that updates the weights some other
        way (a custom `train_step` assigning them itself) trains them all."""
        regrown = {}
        for selection, constraint in zip(self.selections, self._masks):
            w = to_numpy(selection.variable)
            mask = to_numpy(constraint.mask)
            count = int(np.count_nonzero(w[mask == 0]))
            if count:
                regrown[kernel_name(selection.layer, selection.attr)] = count
                selection.variable.assign(w * mask)
        if regrown and not self._told_regrown:
            self._told_regrown = True
            listed = ", ".join(f"{name}: {n:,}" for name, n in regrown.items())
            warn_constraints_skipped(
                "GradualPruning", epoch,
                f"{sum(regrown.values()):,} pruned weights were not zero ({listed})", "masks",
                "They are zeroed at the end of each epoch, and trained in between.")

    def on_train_end(self, logs=None):
        fit_ended(self)
        if self.selections is None:
            return
        # (No epoch began, epochs=0 or initial_epoch past it: nothing to say.)
        if self.end_step is not None and self._step < self.end_step and self._resolved:
            self._warn_unfinished()
        if self.verbose:
            print(sparsity(self.model))

    def _warn_unfinished(self):
        sizes = [int(np.prod(s.variable.shape)) for s in self.selections]
        target = sum(float(s.value) * n for s, n in zip(self.selections, sizes)) / sum(sizes)
        warn_unfinished("GradualPruning", self._step, self.end_step,
                        f"the selected kernels are {self._measure():.1%} sparse", target,
                        given=self._user_end is not None,
                        variables=[s.variable for s in self.selections])

    @property
    def step(self):
        """The optimizer step this callback has counted to (None before fit)."""
        return self._step

    @property
    def fit_end_step(self):
        """The optimizer step at which the running fit ends (None if the
        number of steps is unknown or the fit has not started)."""
        return self._fit_end

    @property
    def end_step_given(self):
        """Whether the user gave `end_step` (else it is the fit's end)."""
        return self._user_end is not None

    @property
    def schedule_known(self):
        """True once this fit's kernels and steps are resolved."""
        return (self.selections is not None and getattr(self, "_resolved", False)
                and self.end_step is not None)

    def ramp_ended(self):
        """True once the last pruning step of the schedule has run (the
        masks no longer change)."""
        return (self._last_prune is not None and self.end_step is not None
                and self._last_prune >= self.end_step)

    def on_train_batch_begin(self, batch, logs=None):
        self._counter.batch_began(batch)

    # ------------------------------------------------------------------ pruning
    def _prune(self, step):
        """Recompute every mask for the scheduled sparsity at `step` and zero
        the pruned weights now (the constraint keeps them zero afterwards)."""
        self._last_prune = step
        zeros = total = 0
        for selection, constraint in zip(self.selections, self._masks):
            target = polynomial_sparsity(step, self.initial_sparsity, selection.value,
                                         self.begin_step, self.end_step)
            w = to_numpy(selection.variable)
            old = to_numpy(constraint.mask)
            mask = self._new_mask(w, old, target)
            constraint.mask.assign(mask)
            selection.variable.assign(np.where(mask > 0, w, np.zeros_like(w)))
            zeros += int(mask.size - np.count_nonzero(mask))
            total += mask.size
        self._sparsity = zeros / total

    def _new_mask(self, w, old, target):
        flat = np.abs(w).ravel()
        flat[old.ravel() == 0] = -1.0  # already pruned: first out, never back
        n = flat.size
        if self.criterion == "magnitude":
            k = max(pruned_count(target, n), n - int(np.count_nonzero(old)))
            mask = np.ones(n, dtype=w.dtype)
            if k > 0:
                mask[np.argpartition(flat, k - 1)[:k]] = 0
        else:
            quality = statistics.NormalDist().inv_cdf(0.5 + target / 2) if target > 0 else 0.0
            threshold = quality * float(np.std(w))
            mask = (flat >= threshold).astype(w.dtype) if threshold > 0 else (flat >= 0).astype(w.dtype)
        return mask.reshape(w.shape) * old

    def _measure(self):
        zeros = total = 0
        for s in self.selections:
            w = to_numpy(s.variable)
            zeros += w.size - np.count_nonzero(w)
            total += w.size
        return zeros / total
