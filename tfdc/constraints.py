"""The variable constraints tfdc installs while training, and `strip(model)`.

`tfdc.GradualPruning` (a `MaskConstraint`) and `tfdc.ClusteredFineTuning` (a
`ClusterConstraint`) keep their invariants inside the compiled train step by
setting `variable.constraint` on the kernels they act on: Keras 3 optimizers
apply it right after every update. Each tfdc constraint wraps the constraint
it replaced as `inner`, and `strip` restores exactly them. A pruning mask
applies the user's constraint before masking; weight sharing cannot (a
per-weight constraint such as MaxNorm would split the shared values), so
`ClusteredFineTuning` says so when it clusters a kernel that has one.

Example:

```python
import keras, numpy as np, tfdc
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
model.compile("sgd", "mse")
model.fit(np.ones((32, 8)), np.ones((32, 4)), epochs=1, verbose=0,
          callbacks=[tfdc.GradualPruning(0.5, frequency=1)])
tfdc.strip(model)  # no tfdc object left on the model's variables
```
"""

import keras

from tfdc.values import to_numpy

__all__ = ["TfdcConstraint", "strip", "find_constraint", "user_constraint"]

# The tfdc callbacks of the fit running on each model (by id; a Distiller's
# student too), in the order they started: tfdc.ClusteredFineTuning waits for
# the pruning schedules among them, and `tfdc.export` from a callback during
# that fit (a snapshot each epoch) leaves the constraints on (stripping them
# would end pruning and weight sharing for the rest of the fit). A fit ended
# by an exception runs no on_train_end: its callbacks stay here, told apart
# by `params` (Keras hands every callback of one fit the same dict) within a
# fit, and dropped when asked about from outside one (`callbacks_in_fit`).
_FITTING = {}


def fit_began(callback):
    """Note that `callback`'s fit of its model (and of a Distiller's
    student) begins, dropping callbacks left by other fits. A ValueError
    when the callback is in a running fit of another model already (one
    instance given to two fits at once worked on the wrong model: the first
    model ended unpruned, with the other's numbers in its warning)."""
    previous, params = getattr(callback, "_tfdc_fit", (None, None))
    if previous is not None and previous is not callback.model and _fit_running(previous):
        # Keras gave it the new fit's model and params: the running fit's back.
        callback.set_model(previous)
        callback.set_params(params)
        raise ValueError(f"this {type(callback).__name__} is in a running fit of model "
                         f"{previous.name!r} already: give each fit its own callback")
    callback._tfdc_fit = (callback.model, callback.params)
    for key in _fitted(callback):
        _FITTING[key] = [c for c in _FITTING.get(key, ())
                         if c.params is callback.params and c is not callback] + [callback]


def fit_ended(callback):
    callback._tfdc_fit = (None, None)
    for key in _fitted(callback):
        left = [c for c in _FITTING.get(key, ()) if c is not callback]
        if left:
            _FITTING[key] = left
        else:
            _FITTING.pop(key, None)


def _fitted(callback):
    from tfdc.distill import trained_model
    return {id(callback.model), id(trained_model(callback.model))}


def callbacks_in_fit(model, params=None):
    """The tfdc callbacks of the fit running on `model`, in the order they
    started; with `params` (a callback's `self.params`), those of that fit
    only. Callbacks of a fit that ended with an exception (a user
    callback's, Ctrl-C, a refusal before training) never ended: without
    `params` they count only while a `fit` of their model is on a stack
    (`export` then skipped its strip, and `strip` warned of a running fit)."""
    if params is not None:
        return [c for c in _FITTING.get(id(model), ()) if c.params is params]
    found = [c for c in _FITTING.get(id(model), ()) if _fit_running(c.model)]
    for c in set(_FITTING.get(id(model), ())) - set(found):
        fit_ended(c)
    return found


def _fit_running(model):
    """Whether a `fit` of `model` is running: a frame of it on the stack of
    some thread."""
    import sys
    for frame in list(sys._current_frames().values()):
        while frame is not None:
            if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
                return True
            frame = frame.f_back
    return False


def in_fit(model):
    """Whether a tfdc callback is training `model` in a running fit."""
    return bool(callbacks_in_fit(model))


class TfdcConstraint(keras.constraints.Constraint):
    """Base of every constraint tfdc installs on a variable.

    Args:
        inner: the constraint that was on the variable before, or None.
            Subclasses decide whether to apply it (a `MaskConstraint` applies
            it first); `strip` puts it back.
    """

    def __init__(self, inner=None):
        self.inner = inner


def find_constraint(variable, cls):
    """The first constraint of type `cls` in `variable`'s chain of tfdc
    constraints (outermost first), or None."""
    constraint = getattr(variable, "constraint", None)
    while isinstance(constraint, TfdcConstraint):
        if isinstance(constraint, cls):
            return constraint
        constraint = constraint.inner
    return None


def warn_constraints_skipped(callback, epoch, found, kept, repair):
    """The warning of a callback that found, at the end of `epoch`, weights
    its constraints would not have left (`found`): the train step did not
    apply the variables' constraints, which keep tfdc's `kept`."""
    import warnings
    warnings.warn(
        f"{callback}: at the end of epoch {epoch + 1}, {found}: this model's train step does "
        f"not apply the variables' constraints, which keep tfdc's {kept} (a custom train_step "
        f"that updates the weights itself instead of with optimizer.apply_gradients?). "
        f"{repair}", stacklevel=3)


def innermost_optimizer(optimizer):
    """The optimizer that updates the weights, inside any LossScaleOptimizers
    (one wrapped in another too)."""
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def refuse_weight_averaging(model, callback):
    """A ValueError, before training, for an optimizer that averages the
    weights (`use_ema=True`): Keras replaces the weights with their moving
    averages at the end of `fit` (and every `ema_overwrite_frequency`
    steps). Those averages are neither masked nor shared, so a fit that
    pruned to 80 % ended with no zero at all, and 3-bit clustering with
    thousands of values per kernel, without a word."""
    optimizer = innermost_optimizer(getattr(model, "optimizer", None))
    if getattr(optimizer, "use_ema", False):
        raise ValueError(
            f"{callback}: the optimizer ({type(optimizer).__name__}) has use_ema=True: Keras "
            "replaces the weights with their moving averages at the end of fit, averages that "
            "are neither pruned nor clustered, so the compressed weights would be lost. "
            "Compile with use_ema=False for this fit.")


def warn_unmasked(variables):
    """A warning for weights that a pruning mask zeroes but that are not
    zero: something set the weights after the last train step applied the
    masks, e.g. `EarlyStopping(restore_best_weights=True)` restoring an
    epoch from before the pruning schedule ended (silently a far denser
    model than pruned, whose masks still say otherwise). A mask loaded with
    the model and not yet applied by a train step is judged by what it
    saved: its listed positions, or (at least) the zeros missing from its
    count."""
    import numpy as np

    from tfdc.prune import MaskConstraint
    found = {}
    for variable in variables:
        constraint = find_constraint(variable, MaskConstraint)
        if constraint is None:
            continue
        value = to_numpy(variable)
        if constraint.mask is not None:
            mask = to_numpy(constraint.mask)
            if value.shape != mask.shape:
                continue
            count = int(np.count_nonzero(value[mask == 0]))
        else:
            count = constraint.saved_but_nonzero(value)
        if count:
            found[getattr(variable, "path", variable.name)] = count
    if found:
        import warnings
        listed = ", ".join(f"{name}: {n:,}" for name, n in found.items())
        warnings.warn(
            f"{sum(found.values()):,} weights that the pruning masks zero are not zero "
            f"({listed}): the weights were set after the last train step that applied the "
            "masks, e.g. restored by EarlyStopping(restore_best_weights=True) from an epoch "
            "before pruning ended (give it start_from_epoch= the first epoch after end_step). "
            "They are kept as they are: the model is denser than its masks.", stacklevel=3)


def shared_values(variable):
    """The distinct nonzero values of `variable` (a clustered kernel's
    shared values)."""
    import numpy as np
    value = to_numpy(variable)
    return np.unique(value[value != 0])


def _warn_unshared(variables):
    """A warning for kernels that `ClusteredFineTuning` left with N shared
    values and that now hold more: the weights were changed after it
    ended, by a later fit or by `EarlyStopping(restore_best_weights=True)`
    restoring an epoch from before clustering (a file several times larger,
    without a word)."""
    found = {}
    for variable in variables:
        shared = getattr(variable, "_tfdc_shared_values", None)
        if shared is None:
            continue
        now = shared_values(variable).size
        if now > shared:
            found[getattr(variable, "path", variable.name)] = (shared, now)
    if found:
        import warnings
        listed = ", ".join(f"{name}: {now:,} values, clustered to {shared:,}"
                           for name, (shared, now) in found.items())
        warnings.warn(
            f"kernels are no longer clustered ({listed}): the weights were changed after "
            "ClusteredFineTuning ended, by a fit without it (run ClusteredFineTuning again in "
            "the last fit) or by EarlyStopping(restore_best_weights=True) restoring an epoch "
            "from before clustering (give it start_from_epoch= the first epoch of clustering). "
            "They are kept as they are: the packed file is larger.", stacklevel=3)


def user_constraint(variable):
    """The user's own constraint on `variable` under any tfdc constraints
    (None if there is none)."""
    return _without_tfdc(getattr(variable, "constraint", None))


def _without_tfdc(constraint):
    while isinstance(constraint, TfdcConstraint):
        constraint = constraint.inner
    return constraint


def strip(model):
    """Remove every tfdc constraint (pruning masks, weight-sharing
    projections) from `model`'s variables and layers, restoring the user's
    own constraints (a model saved afterwards loads without tfdc). The
    weights are unchanged, but later training no longer keeps pruned weights
    at zero or shared weights equal. `tfdc.export` calls it.

    Args:
        model: a `keras.Model` (or any object with `variables`).

    Returns:
        `model`, modified in place.

    Raises:
        TypeError: `model` has no variables (a path, None, ...).
    """
    if not hasattr(model, "variables"):
        raise TypeError(f"strip expects a Keras model or layer, got {type(model).__name__}")
    if in_fit(model):
        import warnings
        warnings.warn("tfdc.strip during a fit that tfdc callbacks are training: for the rest "
                      "of it, pruned weights are no longer kept at zero nor shared weights "
                      "equal. Strip after the fit (tfdc.export during a fit leaves the "
                      "constraints on).", stacklevel=2)
    warn_unmasked(model.variables)
    _warn_unshared(model.variables)
    for variable in model.variables:
        constraint = getattr(variable, "constraint", None)
        if isinstance(constraint, TfdcConstraint):
            variable.constraint = _without_tfdc(constraint)
    # A pruning mask also sits in the layer's own constraint attribute (so
    # that a `.keras` file keeps it): `kernel_constraint`, a unit's
    # `bias_constraint`, a BatchNormalization's `gamma_constraint`, a
    # recurrent cell's... Put the user's constraint back there.
    if hasattr(model, "_flatten_layers"):
        from tfdc.select import iter_layers
        for layer in iter_layers(model):
            for owner in (layer, getattr(layer, "cell", None)):
                for name, value in list(vars(owner).items()) if owner is not None else []:
                    if name.endswith("_constraint") and isinstance(value, TfdcConstraint):
                        setattr(owner, name, _without_tfdc(value))
    # A traced train step would still apply the old constraints. Rebuilt, not
    # cleared: a fit running now (strip or tfdc.export from a callback) calls
    # `model.train_function` at its next step.
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
    return model
