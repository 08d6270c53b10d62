"""Neuron and channel pruning during training, as a Keras callback.

Weight pruning (`tfdc.GradualPruning`) leaves an irregular network: the file
shrinks, but the phone still runs every multiplication. Removing whole output
units of Dense layers and whole output channels of convolutions keeps the
network regular: `tfdc.shrink` then rebuilds it with smaller kernels, so
inference is faster and needs less memory.

`StructuredPruning` removes units on the same cubic schedule as
`GradualPruning` and enforces the removal the same way: a `MaskConstraint`
(`tfdc.prune.install_mask`) on every weight that produces a removed channel
(kernel column and bias of each producer, gamma and beta of a following
BatchNormalization, the depthwise kernel and bias on the way; see
`tfdc.channels`), applied inside the compiled train step after every update.
A removed unit therefore outputs exactly 0 (a zero column, a zero bias, and
activations that map 0 to 0), and dropping it changes no output.
"""

import warnings

import keras
import numpy as np

from tfdc.channels import CHANNELS_FIRST, channel_groups, graph_of, is_channels_first
from tfdc.constraints import fit_began, fit_ended, refuse_weight_averaging
from tfdc.distill import trained_model
from tfdc.errors import listed, require_tensorflow_backend
from tfdc.layers import check_copyable, kind_of
from tfdc.prune import (StepCounter, check_fractions, check_steps, has_mask_variable, install_mask,
                        last_due, polynomial_sparsity, prune_due, warn_coarse_execution,
                        warn_one_cut, warn_unfinished)
from tfdc.select import (_check_patterns, _matches, input_layer_names, iter_layers, layer_paths,
                         lora_refusal, refuse_non_float32, warn_frozen)
from tfdc.shrinker import units
from tfdc.values import to_numpy

__all__ = ["StructuredPruning"]

CRITERIA = ("l1", "l2", "activation")


def _check_data_batched(data, model):
    """Refuse, as the fit begins, a `tf.data.Dataset` of single examples
    (not `.batch()`ed) for criterion="activation": Keras's predict failed
    on it at the first pruning step, the training before it lost."""
    if not hasattr(data, "element_spec"):
        return  # arrays are batches; a PyDataset yields batches
    from tfdc.scan import check_batched
    for element in data.take(1):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(element)
        check_batched(x, model, "StructuredPruning: data=")


def _check_activation_data(data):
    """`data` for criterion="activation": arrays of at least one example,
    finite (no example: an UnboundLocalError from Keras's predict at the
    first pruning step; NaN: units removed by NaN activations)."""
    if data is None:
        raise ValueError("criterion='activation' needs data=: inputs of the training data")
    if hasattr(data, "element_spec") or isinstance(data, keras.utils.PyDataset):
        return  # a dataset: Keras's predict reads it as it comes
    if hasattr(data, "__next__"):
        raise ValueError(f"criterion='activation' reads data= at every pruning step, and a "
                         f"{type(data).__name__} is used up after one read: give arrays, a "
                         "tf.data.Dataset or a keras.utils.PyDataset")
    from tfdc.scan import check_finite
    arrays = list(data.values()) if isinstance(data, dict) else \
        list(data) if isinstance(data, (list, tuple)) else [data]
    lengths = []
    for array in arrays:
        try:
            array = np.asarray(array)
        except ValueError as e:  # ragged: NumPy's "inhomogeneous shape"
            raise ValueError(f"criterion='activation' needs data= as arrays (one per model "
                             f"input), a tf.data.Dataset or a keras.utils.PyDataset: {e}") \
                from None
        if array.dtype == object and array.ndim == 0:
            raise ValueError("criterion='activation' needs data= as arrays, a tf.data.Dataset "
                             "or a keras.utils.PyDataset; got a value of type "
                             f"{type(data).__name__}")
        if array.ndim == 0 or len(array) == 0:
            raise ValueError(f"criterion='activation' needs data= with examples; got an array "
                             f"of shape {array.shape}")
        check_finite(array, "StructuredPruning", "data")
        lengths.append(len(array))
    if len(set(lengths)) > 1:
        # Keras's predict failed on them at the first pruning step.
        raise ValueError(f"criterion='activation' needs data= arrays of one length (one "
                         f"example per row in each input), got lengths {lengths}")


class StructuredPruning(keras.callbacks.Callback):
    """Remove whole units / channels during training, on a schedule.

    Every `frequency` optimizer steps between `begin_step` and `end_step`,
    each selected channel group (see `tfdc.channels`: the output units of a
    Dense or Conv layer, together with every branch of a residual `Add` they
    feed) loses its least important channels, so that the removed fraction
    follows Zhu & Gupta's ramp `f_t = f (1 - (t - t0) / (end_step - t0))^3`
    up to `target_fraction`; after `end_step` the network is fine-tuned with
    the units fixed. Removal is monotone and enforced in the compiled train
    step by `MaskConstraint`s (see the module docstring): units an earlier fit
    removed in the layers this one selects stay removed (a lower target than
    theirs warns; other layers follow `tfdc.strip`'s rule: stripped, their
    zeros may grow back). Afterwards
    `tfdc.shrink(model)` returns the smaller model, and `tfdc.units(model)`
    shows what was removed per layer.

    Layers whose outputs cannot be removed are left alone: those that feed a
    model output, that end in an activation that does not map 0 to 0
    (softmax, sigmoid; an Activation or Softmax layer after them alike),
    channels_first layers, and those that feed a layer tfdc cannot shrink:
    Reshape, Permute, Concatenate, PReLU, LayerNormalization,
    UnitNormalization, Rescaling with an offset or per-channel scales,
    BatchNormalization without its scale, recurrent layers,
    SeparableConv2D, a grouped Conv2D (`groups` > 1), a DepthwiseConv2D
    with `depth_multiplier` > 1, nested models, Lambda and `keras.ops`
    nodes, Normalization, Dot, noise layers (an elementwise Add, Subtract,
    Multiply, ... removes a channel from all its inputs or none).
    `tfdc.units(model)` notes each such layer with the reason. The units
    removed are those of Dense, Conv (1D/2D/3D) and ConvTranspose layers;
    other layers (SeparableConv2D, a DepthwiseConv2D with
    `depth_multiplier` > 1, Embedding, recurrent layers) keep theirs, and
    naming one in `target_fraction` is an error that says so.

    Args:
        target_fraction: final fraction of units removed, in [0, 1): one
            float for every prunable group, or a dict mapping a layer name or
            regular expression to a fraction (only groups with a matching
            producer are pruned; a group fed by several producers takes the
            smallest of their fractions).
        criterion: how the importance of a unit is measured:
            `"l2"` (default) / `"l1"`: the norm of its kernel column (of every
            producer in the group; times `|gamma| / sqrt(var + eps)` of a
            BatchNormalization right after, i.e. the folded kernel);
            `"activation"`: how often the unit is non-zero where the next
            layers read it, on `data` (ties, e.g. units without an activation
            that are never exactly 0, are broken by the mean absolute
            activation).
        data: inputs of the training data for `"activation"` (an array, a
            list of arrays for several inputs, or a `tf.data.Dataset` /
            `keras.utils.PyDataset` of inputs; read at every pruning step, so
            not a generator; a few thousand samples are enough).
        begin_step: first pruning step. Default: the step at which this fit's
            epoch 0 starts.
        end_step: step at which `target_fraction` is reached. Default: the
            end of the fit.
        frequency: prune every this many steps (default 100).
        min_units: units every group keeps at least, an integer >= 1
            (default 1; a layer whose units are all zero keeps one, zero).
        exclude: layer names or regular expressions whose output units are
            never removed.
        verbose: 1 prints `tfdc.units(model)` at the end of training.

    Raises:
        ValueError: a fraction outside [0, 1), an unknown criterion,
            `"activation"` without `data`, a name or pattern that matches no
            layer, a named layer whose units cannot be removed (the message
            says why) or that `exclude` leaves out, or nothing to prune.

    Example:

    ```python
    import keras, numpy as np, tfdc
    model = keras.Sequential([keras.Input((20,)),
                              keras.layers.Dense(64, activation="relu", name="fc1"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.rand(512, 20), np.random.randint(0, 2, 512)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0,
              callbacks=[tfdc.StructuredPruning({"fc1": 0.75}, frequency=8)])
    print(tfdc.units(model))          # fc1: 64 -> 16 units
    small = tfdc.shrink(model)        # Dense(16): same outputs, a quarter of the work
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)
    ```
    """

    # A schedule that tfdc.ClusteredFineTuning in the same fit waits for
    # (`active_schedules`).
    prunes_on_schedule = True

    def __init__(self, target_fraction, criterion="l2", data=None, begin_step=None,
                 end_step=None, frequency=100, min_units=1, exclude=(), verbose=0):
        super().__init__()
        require_tensorflow_backend("tfdc.StructuredPruning")
        check_fractions(target_fraction, "target_fraction")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        if criterion == "activation":
            _check_activation_data(data)
        elif data is not None:
            warnings.warn(f"StructuredPruning: data= is read by criterion='activation' only; "
                          f"criterion={criterion!r} ranks units by their weights, without it",
                          stacklevel=2)
        if not isinstance(frequency, (int, np.integer)) or isinstance(frequency, bool) \
                or frequency < 1:
            raise ValueError(f"frequency must be a positive integer, got {frequency!r}")
        if not isinstance(min_units, (int, np.integer)) or isinstance(min_units, bool) \
                or min_units < 1:
            raise ValueError(f"min_units must be a positive integer, got {min_units!r}")
        check_steps(begin_step, end_step)
        self.target_fraction = target_fraction
        self.criterion = criterion
        self.data = data
        self.begin_step, self.end_step = begin_step, end_step
        self.frequency = int(frequency)
        self.min_units = int(min_units)
        self.exclude = [exclude] if isinstance(exclude, str) else list(exclude or ())
        self.verbose = verbose
        self.groups = None  # [(ChannelGroup, target fraction)] once training starts
        self._user_steps = (begin_step, end_step)

    # -------------------------------------------------------------- selection
    def _select(self, model):
        analysis = channel_groups(model)
        paths = layer_paths(model)
        names = {layer.name for layer in iter_layers(model)}
        inputs = input_layer_names(model)
        _check_patterns(self.exclude, names, "exclude pattern", names - inputs)
        targets = self.target_fraction
        if isinstance(targets, dict):
            # A nested layer's path ("branch1/fc") is checked, to be refused
            # below for what it is, not as "matches no layer".
            named = names | set(paths.values())
            _check_patterns(list(targets), named, "target", named - inputs)
            producers = {p.name for g in analysis.groups for p in g.producers}
            for key in targets:
                layer = next((l for l in iter_layers(model)
                              if key in (l.name, paths.get(id(l)))), None)
                if layer is None or layer.name in producers:
                    continue
                path = paths.get(id(layer), layer.name)
                if "/" in path:
                    raise ValueError(
                        f"layer {key!r} is inside {path.rsplit('/', 1)[0]!r}: tfdc.shrink "
                        "rebuilds the model's own graph, not the nested models or wrappers "
                        "in it, so the units of the layers inside them cannot be removed")
                kind = kind_of(layer)
                if kind is not None and kind.units_key is None:  # a kernel, no units to remove
                    raise ValueError(
                        f"layer {key!r} ({type(layer).__name__}): tfdc removes the units of "
                        "Dense, Conv and ConvTranspose layers (and the channels that follow "
                        "them), not of this kind of layer")
                if is_channels_first(layer):
                    raise ValueError(f"layer {key!r} ({type(layer).__name__}) is "
                                     f"{CHANNELS_FIRST}")
                if getattr(layer, "lora_enabled", False):  # it crashed in on_train_begin
                    raise ValueError(lora_refusal(layer))
                if getattr(layer, "groups", 1) != 1:
                    raise ValueError(f"layer {key!r} ({type(layer).__name__}) is a grouped "
                                     f"convolution (groups={layer.groups}), whose units tfdc "
                                     "cannot remove: each group reads only its own channels")
                raise ValueError(f"layer {key!r} ({type(layer).__name__}) has no output "
                                 "units of its own to remove: name the Dense / Conv layer "
                                 "whose units it carries")
        selected, excluded, both = [], [], []
        for group in analysis.groups:
            producers = [p for p in group.producers
                         if not any(_matches(e, p.name) for e in self.exclude)]
            if len(producers) != len(group.producers) or not producers:
                if group.fixed is None:
                    excluded.append(group.name)
                if isinstance(targets, dict):
                    both += [p.name for p in group.producers if p not in producers
                             and p.name in targets]
                continue
            if isinstance(targets, dict):
                values = []
                for p in producers:
                    keys = [k for k in targets if k == p.name] or \
                           [k for k in targets if _matches(k, p.name)]
                    if keys:
                        values.append(targets[keys[0]])
                if not values:
                    continue
                if group.fixed is not None:
                    if any(p.name in targets for p in producers):
                        raise ValueError(f"the output units of layer(s) {group.name!r} cannot "
                                         f"be removed: the group {group.fixed}")
                    continue
                value = min(values)
            else:
                if group.fixed is not None:
                    continue
                value = targets
            if value > 0:
                selected.append((group, float(value)))
        if both:
            # The named target was dropped without a word ("nothing to prune
            # ... or every target is 0" when it was the only one).
            raise ValueError(f"{listed(both, 6)}: named in target_fraction and left out by "
                             f"exclude={self.exclude!r}: give each layer in one of them")
        if not selected and excluded and not isinstance(targets, dict) and not any(
                group.fixed is None and group.name not in excluded for group in analysis.groups):
            raise ValueError(f"nothing to prune: exclude={self.exclude!r} leaves out every "
                             f"layer whose units can be removed ({listed(excluded, 6)})")
        if not selected:
            # Each layer's reason, as tfdc.units notes it (the generic list
            # read "they feed the model output, ..." for channels_first ones).
            notes = units(model)
            why = [f"{name}: {n.fixed}" for name, n in notes.items() if n.fixed]
            detail = listed(why, 4, "; ") if why else (
                "they feed the model output, a softmax/sigmoid, or a layer tfdc cannot shrink")
            raise ValueError("nothing to prune: no Dense / Conv layer has output units that can "
                             f"be removed ({detail}), or every target is 0")
        if not isinstance(targets, dict):
            warn_frozen("StructuredPruning", [p.name for g, _ in selected for p in g.producers
                                              if not p.trainable],
                        "exclude them (exclude=[...]) to keep their units", "pruned of units")
        return analysis, selected

    # -------------------------------------------------------------- callbacks
    def on_train_begin(self, logs=None):
        refuse_weight_averaging(self.model, "tfdc.StructuredPruning")
        fit_began(self)  # tfdc.ClusteredFineTuning waits for the schedule's end
        warn_coarse_execution(self.model, "StructuredPruning", self.frequency)
        model = trained_model(self.model)  # a Distiller's student
        refuse_non_float32(model, "StructuredPruning")
        check_copyable(model, "tfdc.shrink, which removes the pruned units after training,")
        if self.criterion == "activation":
            _check_data_batched(self.data, model)
        analysis, self.groups = self._select(model)
        self._check_min_units()
        self._bn_after = analysis.bn_after
        from tfdc.cluster import clustered_before_pruning, release_interrupted
        producing = [v for group, _ in self.groups for v, _, _ in group.producing_slots()]
        # Told of when the first epoch begins, after every callback's
        # on_train_begin (a ClusteredFineTuning listed after this one).
        self._clustered = clustered_before_pruning([(v.path, v) for v in producing])
        release_interrupted(producing, self.params, "StructuredPruning")
        strategy = getattr(model, "distribute_strategy", None)
        self._masks = []
        fresh = False
        for group, _ in self.groups:
            masks = []
            # Each mask also set as the layer's own constraint, so that a
            # .keras file keeps it (a plain fit after loading grew the
            # removed units back).
            for variable, axis, slot in group.producing_slots():
                # (A loaded model's mask, recovered as a constant by a plain
                # fit's traced step, was taken for installed: that step kept
                # applying the constant, and no unit was removed.)
                fresh |= not has_mask_variable(variable)
                masks.append((variable, axis, install_mask(variable, strategy, slot)))
            self._masks.append(masks)
        if fresh:
            # A train function traced earlier would not apply the new constraints.
            self.model.make_train_function(force=True)
        self._probe = None
        if self.criterion == "activation":
            self._probe = self._make_probe(model)
            self._check_probe_runs()
        self._counter = StepCounter(self.model)
        self._step = self._counter.step
        self._removed = [group.removed() for group, _ in self.groups]  # resuming keeps them
        # Their masks too: a model whose masks went (stripped, weights loaded
        # into a fresh model, BackupAndRestore listed first) has fresh masks
        # of ones, and with the optimizer's moments the removed units grew
        # back while `units_kept` said they were gone.
        for i, removed in enumerate(self._removed):
            if removed.any():
                self._apply(i, removed)
        self._warn_past_target()
        self._last_prune, self._resolved, self._fit_end = None, False, None
        self.begin_step, self.end_step = self._user_steps

    def on_epoch_begin(self, epoch, logs=None):
        if not self._resolved:
            from tfdc.cluster import warn_clustered_before_pruning
            warn_clustered_before_pruning(self._clustered, "StructuredPruning", self.model,
                                          self.params)
            self._counter = StepCounter(self.model)  # BackupAndRestore may have restored it
            self._step = self._counter.step
            self._resolve_schedule(epoch)
            self._resolved = True
            if self._step < self.end_step:  # not a fit resumed after the ramp
                warn_one_cut("StructuredPruning", self.begin_step, self.end_step, self.frequency)
            self._last_prune = last_due(self._step, self.begin_step, self.end_step,
                                        self.frequency)
            if prune_due(self._step, self.begin_step, self.end_step, self._last_prune,
                         self.frequency):
                self._prune(self._step)

    def on_train_batch_begin(self, batch, logs=None):
        self._counter.batch_began(batch)

    def on_train_batch_end(self, batch, logs=None):
        self._step = self._counter.batch_ended(batch, (self.params or {}).get("steps"))
        if prune_due(self._step, self.begin_step, self.end_step, self._last_prune,
                     self.frequency):
            self._prune(self._step)
        if logs is not None:
            logs["units_kept"] = self.kept_fraction()

    def on_epoch_end(self, epoch, logs=None):
        self._step = self._counter.epoch_ended()
        if logs is not None:
            logs["units_kept"] = self.kept_fraction()

    def on_train_end(self, logs=None):
        fit_ended(self)
        self._probe = None
        if self.end_step is not None and self._step < self.end_step and self.groups \
                and self._resolved:  # an epoch began
            sizes = [group.size for group, _ in self.groups]
            target = sum(float(value) * n for (_, value), n in zip(self.groups, sizes))
            warn_unfinished("StructuredPruning", self._step, self.end_step,
                            f"{1 - self.kept_fraction():.1%} of the selected units are removed",
                            target / sum(sizes), given=self._user_steps[1] is not None,
                            variables=[v for masks in self._masks for v, _, _ in masks])
        if self.verbose:
            print(units(trained_model(self.model)))

    def _check_min_units(self):
        """A ValueError when `min_units` keeps every unit of every selected
        group (training would remove nothing), a warning naming the groups
        it keeps whole when others can still lose units; and a warning for
        groups whose target rounds to no unit (1 % of 32 units removed
        none, without a word)."""
        whole = [group for group, _ in self.groups if group.size <= self.min_units]
        if whole:
            listed = ", ".join(f"{group.name} ({group.size})" for group in whole)
            if len(whole) == len(self.groups):
                raise ValueError(f"min_units={self.min_units} keeps every unit of the selected "
                                 f"layers, {listed}: nothing to remove; give a smaller "
                                 "min_units")
            warnings.warn(f"StructuredPruning: min_units={self.min_units} keeps every unit of "
                          f"{listed}: nothing is removed there", stacklevel=3)
        none = [f"{group.name} ({float(value):.2g} of {group.size} units)"
                for group, value in self.groups
                if group.size > self.min_units and round(float(value) * group.size) == 0]
        if none:
            warnings.warn(f"StructuredPruning: the target removes no unit of {', '.join(none)}: "
                          "it rounds to 0 units; give at least 1 / units to remove one",
                          stacklevel=3)

    def _warn_past_target(self):
        """A warning for groups that already lack more units than this
        schedule's target (an earlier fit removed them): removal is monotone,
        so they stay removed (a lower target was ignored without a word)."""
        past = [f"{group.name}: {int(removed.sum())} of {group.size} > {float(value):.1%}"
                for (group, value), removed in zip(self.groups, self._removed)
                if removed.sum() > min(round(float(value) * group.size),
                                       group.size - self.min_units)]
        if past:
            warnings.warn("StructuredPruning: units already removed beyond the target ("
                          + ", ".join(past) + "); removed units never come back, so these "
                          "layers keep fewer units than the target.", stacklevel=3)

    def kept_fraction(self):
        """Fraction of the selected groups' units still kept."""
        total = sum(group.size for group, _ in self.groups)
        return 1.0 - sum(int(r.sum()) for r in self._removed) / total

    # ---------------------------------------------------------------- schedule
    def _resolve_schedule(self, initial_epoch):
        steps = self.params.get("steps") if self.params else None
        begin, end = self._user_steps
        epochs = self.params.get("epochs") if self.params else None
        fit_start, self._fit_end = self._counter.fit_bounds(initial_epoch, steps, epochs)
        if begin is None:
            begin = fit_start
        if end is None:
            if self._fit_end is None:
                raise ValueError("the number of steps per epoch is unknown (a dataset of unknown "
                                 "length?): pass end_step to StructuredPruning")
            end = self._fit_end
        if begin >= end:
            raise ValueError(f"begin_step ({begin}) must be smaller than end_step ({end})")
        self.begin_step, self.end_step = int(begin), int(end)

    # The schedule as tfdc.ClusteredFineTuning reads it (as GradualPruning's).
    @property
    def end_step_given(self):
        """Whether the user gave `end_step` (else it is the fit's end)."""
        return self._user_steps[1] is not None

    @property
    def schedule_known(self):
        """True once this fit's groups and steps are resolved."""
        return self.groups is not None and getattr(self, "_resolved", False) \
            and self.end_step is not None

    @property
    def step(self):
        """The optimizer step this callback has counted to (None before fit)."""
        return getattr(self, "_step", None)

    @property
    def fit_end_step(self):
        """The optimizer step at which the running fit ends (None if unknown)."""
        return getattr(self, "_fit_end", None)

    def ramp_ended(self):
        """True once the last removal step of the schedule has run (the
        removed units no longer change)."""
        return (getattr(self, "_last_prune", None) is not None and self.end_step is not None
                and self._last_prune >= self.end_step)

    def fraction_at(self, step):
        """The scheduled removed fraction of each selected group at `step`
        (group name -> fraction); known once `fit` has started."""
        if self.groups is None or self.begin_step is None or self.end_step is None:
            raise ValueError("the schedule is known once fit starts")
        return {group.name: polynomial_sparsity(step, 0.0, value, self.begin_step, self.end_step)
                for group, value in self.groups}

    # ----------------------------------------------------------------- pruning
    def _prune(self, step):
        self._last_prune = step
        stats = None
        for i, (group, value) in enumerate(self.groups):
            fraction = polynomial_sparsity(step, 0.0, value, self.begin_step, self.end_step)
            removed = self._removed[i]
            k = min(int(round(fraction * group.size)), group.size - self.min_units)
            if k <= int(removed.sum()):
                continue
            if self.criterion == "activation":
                if stats is None:
                    stats = self._activation_stats()
                freq, magnitude = stats[i]
                order = np.lexsort((magnitude, freq))  # by frequency, then magnitude
            else:
                order = np.argsort(self._norms(group), kind="stable")
            order = np.concatenate([np.flatnonzero(removed), order[~removed[order]]])
            removed = removed.copy()
            removed[order[:k]] = True
            self._removed[i] = removed
            self._apply(i, removed)

    def _apply(self, i, removed):
        keep = (~removed).astype("float32")
        for variable, axis, constraint in self._masks[i]:
            shape = [1] * len(variable.shape)
            shape[axis] = -1
            old = to_numpy(constraint.mask)
            mask = old * keep.reshape(shape).astype(old.dtype)
            constraint.mask.assign(mask)
            w = to_numpy(variable)
            variable.assign(np.where(mask > 0, w, np.zeros_like(w)))

    def _norms(self, group):
        total = np.zeros(group.size)
        for layer in group.producers:
            w = np.moveaxis(to_numpy(layer.kernel), kind_of(layer).out_axis, -1)
            w = np.abs(w.reshape(-1, group.size).astype(np.float64))
            col = w.sum(0) if self.criterion == "l1" else np.sqrt((w ** 2).sum(0))
            bn = self._bn_after.get(id(layer))
            if bn is not None:  # the kernel the converter will see: folded
                var = to_numpy(bn.moving_variance).astype(np.float64)
                col = col * np.abs(to_numpy(bn.gamma)) / np.sqrt(var + bn.epsilon)
            total += col if self.criterion == "l1" else col ** 2
        return total

    def _make_probe(self, model):
        graph = graph_of(model)
        tensors, index = [], {}
        for group, _ in self.groups:
            for t in group.read:
                if id(t) not in index:
                    index[id(t)] = len(tensors)
                    tensors.append(t)
        self._read_index = index
        # The user's model's name: Keras's errors name the model they ran.
        return keras.Model(graph.inputs, tensors, name=model.name)

    def _check_probe_runs(self):
        """Run data='s first examples through the model as the fit begins:
        data of another shape (another width, a list of single examples)
        failed inside Keras's predict at the first pruning step, the
        training before it lost, in an error that named neither data= nor
        StructuredPruning."""
        data = self.data
        if hasattr(data, "element_spec"):
            first = data.take(1)
        elif isinstance(data, keras.utils.PyDataset):
            first = keras.utils.unpack_x_y_sample_weight(data[0])[0]
        else:
            from tfdc.scan import _index
            first = _index(data, slice(None, 2))
        try:
            self._probe.predict(first, verbose=0)
        except Exception as e:  # noqa: BLE001 - Keras's own error, told as the user's data
            from tfdc.errors import first_line
            why = first_line(e)  # not Keras's "Exception encountered when calling ..."
            hint = (" (a list or tuple is one array per model input, not a list of examples)"
                    if isinstance(data, (list, tuple)) else "")
            raise ValueError(f"StructuredPruning(criterion='activation'): data= does not run "
                             f"through the model{hint}: {why}") from None

    def _activation_stats(self):
        outputs = self._probe.predict(self.data, batch_size=256, verbose=0)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        stats = []
        for group, _ in self.groups:
            freq = np.zeros(group.size)
            magnitude = np.zeros(group.size)
            for t in group.read:
                a = np.asarray(outputs[self._read_index[id(t)]]).reshape(-1, group.size)
                freq += (a != 0).mean(0)
                magnitude += np.abs(a).mean(0)
            stats.append((freq, magnitude))
        return stats

