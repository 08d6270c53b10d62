"""Rebuild a model without its removed units: `shrink(model)`, `units(model)`.

After `tfdc.StructuredPruning`, removed units still occupy their rows and
columns (as zeros). `shrink` returns a new model in which they are gone: each
Dense / Conv layer has fewer `units` / `filters`, its kernel and bias lose
the removed columns, every layer that reads them loses the matching input
rows (after a `Flatten`, one row per position), BatchNormalization and
depthwise layers on the way lose the channels, and the branches of a
residual `Add` lose the same channels together (`tfdc.channels` finds
them). The outputs equal the original's to float rounding, and the
converter then sees a smaller, dense graph: less work and less memory per
inference, not only a smaller file.

`units(model)` tells what was (or would be) removed per layer: units before
-> after, weights and multiply-accumulates per inference.
"""

import dataclasses
import math

import keras
import numpy as np

from tfdc.channels import CHANNELS_FIRST, channel_groups, is_channels_first
from tfdc.constraints import strip, warn_unmasked
from tfdc.layers import (check_copyable, copy_layer, finalize_states, kind_of,
                         sequential_like)
from tfdc.values import to_numpy

__all__ = ["shrink", "units", "UnitsReport", "LayerUnits"]


def _keep(analysis):
    """id(group) -> indices of the kept channels (a group with every channel
    removed keeps channel 0, which is exactly 0: a layer needs a unit)."""
    keep = {}
    for group in analysis.groups:
        kept = np.flatnonzero(~group.removed())
        keep[id(group)] = kept if kept.size else np.zeros(1, dtype=np.int64)
    return keep


def _rows(group, repeat, kept):
    """Input rows of a consumer that reads `group` `repeat` times (after a
    Flatten: row p * size + c for position p, channel c)."""
    return (np.arange(repeat)[:, None] * group.size + kept[None, :]).ravel()


def _slices(layer, analysis, keep):
    """`[(variable, {axis: indices})]` for each weight of `layer` that loses
    entries; weights not listed keep their shape."""
    out = []
    kind = kind_of(layer)
    if id(layer) in analysis.channel_group:  # BatchNormalization / depthwise
        kept = keep[id(analysis.channel_group[id(layer)])]
        for v in layer.weights:
            axis = kind.out_axis if v is getattr(layer, "kernel", None) else 0
            out.append((v, {axis % len(v.shape): kept}))
        return out
    if kind is None or not kind.units_key or getattr(layer, "kernel", None) is None:
        return out
    kernel = {}
    if id(layer) in analysis.out_group:
        group = analysis.out_group[id(layer)]
        kept = keep[id(group)]
        kernel[kind.out_axis % len(layer.kernel.shape)] = kept
        if getattr(layer, "bias", None) is not None:
            out.append((layer.bias, {0: kept}))
    if id(layer) in analysis.in_group:
        group, repeat = analysis.in_group[id(layer)]
        kernel[kind.in_axis % len(layer.kernel.shape)] = _rows(group, repeat, keep[id(group)])
    if kernel:
        out.append((layer.kernel, kernel))
    return out


def _sliced_value(variable, axes):
    w = to_numpy(variable)
    for axis, idx in axes.items():
        w = np.take(w, idx, axis=axis)
    return w


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")


def shrink(model):
    """Return `model` rebuilt without its removed units.

    A unit (channel) is removed when every weight producing it is exactly 0
    (see `tfdc.channels`): what `tfdc.StructuredPruning` leaves behind, also
    after `tfdc.strip` or a `.keras` save and load. Units that feed a model
    output or a layer tfdc cannot shrink are kept, zero or not.

    Args:
        model: a built Sequential (started with `keras.Input`) or functional
            Keras model.

    Returns:
        A new model with the same layer names and the same outputs (within
        float rounding, in inference mode); `model` is not modified. An
        input layer Keras named itself (`input_layer`) is named as its
        tensor (`keras_tensor`), as `keras.models.clone_model` names it: the
        exported signature, which takes the tensor's name, stays the same. The new
        model carries no tfdc constraints and no optimizer: compile it before
        training it further (e.g. `tfdc.GradualPruning` and
        `tfdc.ClusteredFineTuning` on what remains, then `tfdc.export`).

    Raises:
        ValueError: a subclassed or unbuilt model, or one with a layer that
            Keras cannot rebuild from its config (a Python lambda as its
            activation), named.

    Example:

    ```python
    import keras, numpy as np, tfdc
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(300, activation="relu", name="fc1"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.rand(512, 28, 28), np.random.randint(0, 10, 512)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tfdc.StructuredPruning(0.6, frequency=4)])
    print(tfdc.units(model))         # fc1 300 -> 120 units
    small = tfdc.shrink(model)
    np.testing.assert_allclose(small(x), model(x, training=False), atol=1e-5)
    tfdc.export(small, "small.tflite", batch_size=1)
    ```
    """
    _check_model(model)
    check_copyable(model, "tfdc.shrink")
    # Units whose masks say removed but whose weights came back (restored by
    # EarlyStopping) are kept: a larger model than the masks say, told.
    warn_unmasked(model.variables)
    analysis = channel_groups(model)
    keep = _keep(analysis)
    new_units = {}
    for key, group in analysis.out_group.items():
        if group.fixed is None:
            new_units[key] = len(keep[id(group)])

    def clone(layer):
        if id(layer) in new_units:
            return copy_layer(layer, **{kind_of(layer).units_key: new_units[id(layer)]})
        return copy_layer(layer)

    if isinstance(model, keras.Sequential):
        new = sequential_like(model, [clone(layer) for layer in model.layers])
    else:
        new = keras.models.clone_model(model, clone_function=clone)
    for old in model.layers:
        if not old.weights:
            continue
        target = new.get_layer(old.name)
        sliced = {id(v): axes for v, axes in _slices(old, analysis, keep)}
        target.set_weights([_sliced_value(v, sliced[id(v)]) if id(v) in sliced
                            else to_numpy(v) for v in old.weights])
    # The layers' configs carry the source's pruning masks, which no longer
    # fit the sliced weights (each warned at the first training step): what
    # they saved is forgotten (strip judged the sliced weights by it), and
    # strip removes them.
    from tfdc.prune import find_mask
    for variable in new.variables:
        copied = find_mask(variable)
        if copied is not None and copied.mask is None:
            copied.take_saved()
    return strip(finalize_states(new))


@dataclasses.dataclass
class LayerUnits:
    """One layer's units, weights and work, before and after shrinking.

    Attributes:
        units: output units / channels (None for layers that have none).
        kept: units left after `tfdc.shrink`.
        weights, weights_kept: parameters (every weight of the layer).
        macs, macs_kept: multiply-accumulates per sample of its kernel.
        fixed: why its units cannot be removed, or None.
    """

    units: object
    kept: object
    weights: int
    weights_kept: int
    macs: int
    macs_kept: int
    fixed: object = None

    def __getitem__(self, key):  # report["fc1"]["kept"]
        return getattr(self, key)


class UnitsReport(dict):
    """`units(model)`'s result: layer name -> `LayerUnits`, printable.
    `uncounted`: layers with a matrix whose multiply-accumulates the MAC
    totals leave out (nested models, recurrent layers, and layers over an
    input whose size is known only at run time), named in the table so that
    the total's ratio is not read as the model's."""

    uncounted = ()

    def _total(self, attr):
        return sum(getattr(v, attr) for v in self.values())

    @property
    def weights(self):
        return self._total("weights")

    @property
    def weights_kept(self):
        return self._total("weights_kept")

    @property
    def macs(self):
        return self._total("macs")

    @property
    def macs_kept(self):
        return self._total("macs_kept")

    def rows(self):
        """Table rows (strings) with a total row, for text and Markdown."""
        out = []
        for name, v in self.items():
            unit = "-" if v.units is None else f"{v.units:,} -> {v.kept:,}"
            out.append([name, unit, f"{v.weights:,} -> {v.weights_kept:,}",
                        f"{v.macs:,} -> {v.macs_kept:,}" if v.macs else "-",
                        "" if v.fixed is None else f"kept: {v.fixed}"])
        out.append(["total", "", f"{self.weights:,} -> {self.weights_kept:,} "
                    f"({self.weights / max(self.weights_kept, 1):.2f}x)",
                    f"{self.macs:,} -> {self.macs_kept:,} "
                    f"({self.macs / max(self.macs_kept, 1):.2f}x)",
                    "MACs leave out " + ", ".join(self.uncounted) if self.uncounted else ""])
        return out

    HEADERS = ("layer", "units", "weights", "MACs / sample", "note")

    def to_markdown(self):
        lines = ["| " + " | ".join(self.HEADERS) + " |", "|" + "---|" * len(self.HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows()]
        return "\n".join(lines)

    def __str__(self):
        rows = [list(self.HEADERS)] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADERS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def units(model):
    """What `shrink` removes from `model`, per layer.

    Args:
        model: a built Sequential or functional model (pruned with
            `tfdc.StructuredPruning`, or any model: nothing is then removed).

    Returns:
        A `UnitsReport`: layer name -> `LayerUnits` (units, weights and
        multiply-accumulates before -> after) for every layer with weights,
        with totals (`.weights`, `.weights_kept`, `.macs`, `.macs_kept`;
        `.uncounted` names the layers whose MACs the totals leave out);
        `print(report)` shows the table, `report.to_markdown()` a Markdown one.

    Example:

    ```python
    import keras, tfdc
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc"),
                              keras.layers.Dense(2, name="out")])
    kernel, bias = model.get_layer("fc").get_weights()
    kernel[:, 0], bias[0] = 0, 0      # unit 0 produces nothing: it can go
    model.get_layer("fc").set_weights([kernel, bias])
    print(tfdc.units(model)["fc"].kept)   # 3
    ```
    """
    _check_model(model)
    analysis = channel_groups(model)
    keep = _keep(analysis)
    report = UnitsReport()
    for layer in model.layers:
        if not layer.weights:
            continue
        sliced = {id(v): axes for v, axes in _slices(layer, analysis, keep)}
        weights = sum(math.prod(v.shape) for v in layer.weights)
        kept_weights = 0
        for v in layer.weights:
            shape = list(v.shape)
            for axis, idx in sliced.get(id(v), {}).items():
                shape[axis] = len(idx)
            kept_weights += math.prod(shape)
        group = analysis.out_group.get(id(layer)) or analysis.channel_group.get(id(layer))
        n_units = n_kept = fixed = None
        if group is not None:
            n_units, n_kept, fixed = group.size, len(keep[id(group)]), group.fixed
            if fixed is not None:
                n_kept = n_units
        elif is_channels_first(layer):
            fixed = CHANNELS_FIRST
        macs = macs_kept = 0
        kind = kind_of(layer)
        # A convolution multiplies its whole kernel once per output position;
        # a transposed one once per input position; a shared layer in each
        # of its calls.
        shapes = analysis.input_shapes if kind is not None and kind.transposed \
            else analysis.output_shapes
        calls = [shape for shape in shapes.get(id(layer), []) if shape]
        first = getattr(layer, "data_format", None) == "channels_first"
        spatial = [shape[2:] if first else shape[1:-1] for shape in calls]
        # An input of unknown size (None, None, 1): its cost per sample is
        # unknown (it read as one position's, 144 MACs for 97,344 at 28x28).
        if kind is not None and getattr(layer, "kernel", None) is not None and calls and \
                all(s is not None for dims in spatial for s in dims):
            positions = sum(math.prod(dims) for dims in spatial)
            kernel = sliced.get(id(layer.kernel), {})
            kshape = list(layer.kernel.shape)
            macs = positions * math.prod(kshape)
            for axis, idx in kernel.items():
                kshape[axis] = len(idx)
            macs_kept = positions * math.prod(kshape)
        report[layer.name] = LayerUnits(n_units, n_kept, int(weights), int(kept_weights),
                                        int(macs), int(macs_kept), fixed)
        if not macs and any(len(v.shape) >= 2 for v in layer.weights):
            report.uncounted += (layer.name,)
    return report
