"""Which weights a compression callback acts on.

Both `GradualPruning` and `ClusteredFineTuning` take the same `targets` /
`exclude` arguments; this module turns them into a list of `Selection`s, one
per distinct kernel variable (a layer shared by several call sites appears
once, nested models are walked).
"""

import collections
import dataclasses
import re
import warnings

import keras

from tfdc.errors import listed
from tfdc.layers import KINDS, OTHER_FLOATS, kernel_variables, kind_of


@dataclasses.dataclass
class Selection:
    """One selected kernel.

    Attributes:
        layer: the Keras layer that owns the variable.
        attr: attribute name of the kernel on the layer (e.g. `"kernel"`).
        variable: the `keras.Variable` itself.
        value: the per-layer setting (a sparsity, a bit width, ...).
    """

    layer: keras.layers.Layer
    attr: str
    variable: "keras.Variable"
    value: object

    @property
    def name(self):
        """A readable, unique name: the variable path."""
        return self.variable.path

    @property
    def is_conv(self):
        """A spatial convolution (see `tfdc.layers.LayerKind.spatial`)."""
        kind = kind_of(self.layer)
        return kind is not None and kind.spatial


def iter_layers(model):
    """Every layer inside `model` (nested models and subclassed models
    included), each once, in the order a reader of the model sees them: a
    nested model's layers after it, in its own order. (Keras's recursive
    `_flatten_layers` lists them in reverse: it walks children with
    `extendleft`.)"""
    if not hasattr(model, "_flatten_layers"):
        raise TypeError(f"expected a Keras model or layer, got {type(model).__name__}")
    seen = set()

    def walk(parent):
        for layer in parent._flatten_layers(include_self=False, recursive=False):
            if id(layer) not in seen:
                seen.add(id(layer))
                yield layer
                yield from walk(layer)

    yield from walk(model)


def recurrent_layers(model):
    """The layers of `model` of `tfdc.layers`' recurrent kind (LSTM, GRU,
    SimpleRNN, RNN): the converter takes them with a fixed batch only."""
    return [layer for layer in iter_layers(model)
            if getattr(kind_of(layer), "name", None) == "recurrent"]


def layer_paths(model):
    """`{id(layer): "outer/inner"}` for every layer inside `model`: its name
    after those of the nested models and wrappers that hold it
    ("branch1/fc", "bi/forward_lstm"), which tells apart layers of one name
    in two nested models. A layer held in two places gets the first."""
    paths = {}

    def walk(parent, prefix):
        for layer in parent._flatten_layers(include_self=False, recursive=False):
            if id(layer) not in paths:
                paths[id(layer)] = prefix + layer.name
                walk(layer, paths[id(layer)] + "/")

    walk(model, "")
    return paths


def layer_keys(model):
    """`{id(layer): key}` for every layer inside `model`: what a scan, a plan
    and tfdc.compress key a layer's settings by. Its name, or, for layers of
    one name in two nested models, its path ("branch1/fc"), which tfdc's
    callbacks take as it is."""
    layers = list(iter_layers(model))
    twice = {n for n, count in collections.Counter(l.name for l in layers).items() if count > 1}
    paths = layer_paths(model) if twice else {}
    return {id(l): paths.get(id(l), l.name) if l.name in twice else l.name for l in layers}


def selection_names(model, selections):
    """A unique name per selection: its variable's path ("fc1/kernel"), or,
    where two variables share one (layers of one name built before the
    nested models that hold them), the layer's path in `model` and the
    attribute ("branch1/fc/kernel")."""
    names = [s.name for s in selections]
    if len(set(names)) == len(names):
        return names
    paths = layer_paths(model)
    return [name if names.count(name) == 1 else
            f"{paths.get(id(s.layer), s.layer.name)}/{s.attr}"
            for name, s in zip(names, selections)]


def kernel_labels(model, kernels):
    """A name per `(layer, attr)` of `kernels`: `tfdc.layers.kernel_name`
    ("fc1", "lstm/kernel"), or, where two layers of one name in two nested
    models would share it, the layer's path ("branch1/fc"), as
    `tfdc.sparsity`, `tfdc.export`'s report and `tfdc.inspect` name them."""
    from tfdc.layers import kernel_name
    names = [kernel_name(layer, attr) for layer, attr in kernels]
    if len(set(names)) == len(names):
        return names
    paths = layer_paths(model)
    return [paths.get(id(layer), layer.name) + name[len(layer.name):]
            if names.count(name) > 1 else name
            for name, (layer, _) in zip(names, kernels)]


def check_built(model):
    """A TypeError for what is not a Keras model or layer, a ValueError
    for a model not built yet (it has no weights to read)."""
    if not hasattr(model, "_flatten_layers"):
        raise TypeError(f"expected a Keras model or layer, got {type(model).__name__}")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: call it on data or build it "
                         "with keras.Input first")


def refuse_non_float32(model, who):
    """A ValueError, before any training, for kernels of a float type other
    than float32 (float64, float16 or bfloat16 layers; a mixed-precision
    policy keeps its variables in float32): LiteRT's builtin ops compute in
    float32, so `tfdc.export` cannot convert the model (the callbacks pruned
    and clustered such kernels while warning they were left alone, and export
    refused the model after the training)."""
    paths, wide = layer_paths(model), {}
    for layer in iter_layers(model):
        for _, v in kernel_variables(layer):
            if str(v.dtype) in OTHER_FLOATS:
                wide.setdefault(paths.get(id(layer), layer.name), str(v.dtype))
    if wide:
        named = listed(map(repr, wide), 4)
        types = " / ".join(dict.fromkeys(wide.values()))
        raise ValueError(f"{who}: model {model.name!r} has {types} kernels (layer"
                         f"{'s' * (len(wide) > 1)} {named}), and tfdc exports to LiteRT, whose "
                         "builtin ops compute in float32: build the model in float32 (the "
                         "layers' dtype=, or keras.config.set_floatx('float32'); a "
                         "mixed-precision policy keeps float32 weights) and copy the weights over")


def refuse_non_finite(model, who):
    """A ValueError naming the weights (kernels, biases, statistics) that
    hold NaN or infinity (a diverged training): the converter keeps a NaN
    and drops an infinity without a word, and k-means refused them naming
    no layer."""
    import numpy as np
    paths, weights = layer_paths(model), {}
    for layer in iter_layers(model):
        for v in layer.weights:
            # A nested model lists its layers' weights too: each is named by
            # the innermost layer that holds it (not "backbone/kernel").
            weights[id(v)] = (v, f"{paths.get(id(layer), layer.name)}/{v.name}")
    bad = [name for v, name in weights.values()
           if v.dtype.startswith(("float", "bfloat")) and not np.isfinite(v.numpy()).all()]
    if bad:
        raise ValueError(f"{who}: model {model.name!r} has NaN or infinite weights in "
                         f"{listed(bad, 4)} "
                         "(a training that diverged?): retrain it, or load weights saved "
                         "before")


def _matches(pattern, name):
    return pattern == name or re.fullmatch(pattern, name) is not None


def _excluded(exclude, path):
    """Whether an `exclude` pattern names the layer at `path` or a nested
    model or wrapper that holds it ("branch1" excludes "branch1/fc")."""
    parts = path.split("/")
    return any(_matches_layer(p, parts[i], "/".join(parts[:i + 1]))
               for p in exclude for i in range(len(parts)))


def _matches_layer(pattern, name, path):
    """Whether a target or exclude key names the layer: its name, or its
    path ("branch1/fc"). A regular expression without "/" is matched
    against the name only, so that "conv.*" does not take in every layer
    of a nested model named "conv_tower" (a Keras name has no "/")."""
    return _matches(pattern, name) or ("/" in pattern and _matches(pattern, path))


def input_layer_names(model):
    """Names of `model`'s InputLayers: no layer to name in a message listing
    the layers a pattern can match."""
    return {l.name for l in iter_layers(model) if isinstance(l, keras.layers.InputLayer)}


def _check_patterns(patterns, names, what, listed=None):
    """A ValueError for a pattern that is not a str, not a name of `names`
    nor a valid regular expression, or matches none of them; the message
    lists `listed` (default: `names`)."""
    layers = ", ".join(sorted(listed if listed is not None else names))
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"{what} {pattern!r} is not a layer name or a regular expression "
                             f"(a str); layers are: {layers}")
        try:
            re.compile(pattern)
        except re.error as e:
            if pattern not in names:
                raise ValueError(f"{what} {pattern!r} is neither a layer name nor a valid "
                                 f"regular expression: {e}") from None
        if not any(_matches(pattern, n) for n in names if "/" in pattern or "/" not in n):
            raise ValueError(f"{what} {pattern!r} matches no layer of the model; layers are: "
                             f"{layers}")


def select_kernels(model, targets, exclude=(), validate=None, who=None):
    """Resolve `targets` / `exclude` into a list of `Selection`s.

    Args:
        model: a built Keras model.
        targets: either one value applied to every layer of a default kind,
            a callable `layer -> value` (for kind-dependent defaults, `None`
            skips the layer), or a dict mapping a layer name or regular
            expression (matched against the whole layer name) to a value.
            With a dict, only layers matched by a key are selected; an exact
            name wins over a regex, otherwise the first matching key wins.
        exclude: layer names or regular expressions never to select (a
            nested model's or a wrapper's: none of the layers inside it).
        validate: optional `(value, layer_name) -> None` that raises
            `ValueError` for a bad per-layer value.
        who: the callback selecting (for its messages). Given, and
            `targets` is not a dict (every layer asked for), a warning
            names the large weights no kind covers (`warn_left_out`).

    Returns:
        A list of `Selection`, one per distinct kernel variable.

    Raises:
        ValueError: a pattern matches no layer, a named layer has no kernel,
            or nothing at all is selected.
    """
    check_built(model)
    refuse_non_float32(model, who or "tfdc")
    layers = list(iter_layers(model))
    paths = layer_paths(model)
    # A key names a layer ("fc") or, for one of two of that name in two
    # nested models, its path ("branch1/fc"); either is taken.
    shown = set(layer_keys(model).values()) - input_layer_names(model)
    names = {layer.name for layer in layers} | set(paths.values())
    exclude = [exclude] if isinstance(exclude, str) else list(exclude or ())
    _check_patterns(exclude, names, "exclude pattern", shown)
    if isinstance(targets, dict):
        _check_patterns(list(targets), names, "target", shown)

    out, seen, excluded = [], set(), []
    for layer in layers:
        path = paths.get(id(layer), layer.name)
        if _excluded(exclude, path):
            if kernel_variables(layer):
                excluded.append(path)
            continue
        if isinstance(targets, dict):
            # Its path, then its name, then the first regular expression.
            keys = [k for k in targets if k == path] or \
                   [k for k in targets if k == layer.name] or \
                   [k for k in targets if _matches_layer(k, layer.name, path)]
            if not keys:
                continue
            value = targets[keys[0]]
            kernels = kernel_variables(layer)
            if not kernels:
                if keys[0] in (layer.name, path):
                    raise ValueError(_no_kernel(layer))
                continue
        else:
            kernels = kernel_variables(layer)
            if not kernels:
                continue
            value = targets(layer) if callable(targets) else targets
            if value is None:
                continue
        if validate is not None:
            validate(value, layer.name)
        if getattr(layer, "lora_enabled", False):
            raise ValueError(lora_refusal(layer))
        for attr, var in kernels:
            if id(var) in seen:
                continue
            seen.add(id(var))
            out.append(Selection(layer, attr, var, value))
    if who is not None and not isinstance(targets, dict):
        warn_left_out(model, who, exclude)
        warn_frozen(who, [paths.get(id(s.layer), s.layer.name) for s in out
                          if not getattr(s.variable, "trainable", True)],
                    "exclude them (exclude=[...]) to leave them as they are")
    if not out and excluded and not any(
            kernel_variables(l) for l in layers
            if not _excluded(exclude, paths.get(id(l), l.name))):
        raise ValueError(f"nothing to compress: exclude={exclude!r} leaves out every kernel "
                         f"of the model ({listed(excluded, 6)})")
    if not out:
        raise ValueError("nothing to compress: the model has no selected kernel of the kinds "
                         "tfdc can compress (" + ", ".join(c for k in KINDS for c in k.classes)
                         + "; check `targets` and `exclude`)")
    return out


def warn_frozen(who, names, advice, what="compressed", stacklevel=2):
    """A warning that `who` compresses the frozen (trainable=False) layers
    `names` too (a frozen backbone under "every layer": compressed with no
    retraining), with `advice`; nothing if `names` is empty. `stacklevel`
    as for a `warnings.warn` in the caller."""
    if names:
        warnings.warn(f"{who}: frozen layers (trainable=False) are {what} too, and training "
                      f"cannot make up for what that costs: "
                      f"{listed(dict.fromkeys(names), 4)}; {advice}", stacklevel=stacklevel + 1)


def warn_left_out(model, who, exclude=(), stacklevel=2):
    """A warning naming the model's large weights that `who`, asked to
    compress every layer, leaves as they are (`tfdc.bytecost.
    uncompressed_weights`: custom layers, an RNN of a stack of cells, ...),
    but for layers `exclude` names. `stacklevel` as for a `warnings.warn`
    in the caller."""
    from tfdc.bytecost import uncompressed_weights, weight_label
    rows = [r for r in uncompressed_weights(model) if not _excluded(exclude, r["layer"])]
    if rows:
        named = ", ".join(map(weight_label, rows[:4])) + (f" and {len(rows) - 4} more"
                                                          if len(rows) > 4 else "")
        warnings.warn(f"{who}: left as they are: {named}: {rows[0]['why']}"
                      + (" (or another reason: tfdc.bytecost.uncompressed_weights says which)"
                         if len({r["why"] for r in rows}) > 1 else ""),
                      stacklevel=stacklevel + 1)


def lora_refusal(layer):
    """Why a layer with LoRA enabled is not compressed (pruned, shared or
    its units removed): its kernel is not one variable."""
    return (f"layer {layer.name!r} has LoRA enabled: its kernel is computed (kernel + "
            "lora_kernel_a @ lora_kernel_b), not a variable tfdc can keep pruned or shared; "
            "compress it before enable_lora, or exclude it")


def _no_kernel(layer):
    """Why a layer named in a per-layer dict cannot be selected."""
    import keras
    inner = [l.name for l in iter_layers(layer) if kernel_variables(l)]
    some = listed(map(repr, inner), 3)
    if isinstance(layer, keras.Model):
        return (f"layer {layer.name!r} is a nested model ({type(layer).__name__}): name the "
                f"layers inside it ({some or 'it has none with a kernel'}) or a regular "
                "expression matching them")
    if inner:  # a wrapper: Bidirectional, TimeDistributed
        return (f"layer {layer.name!r} ({type(layer).__name__}) holds its kernels in the layers "
                f"inside it: name those ({some}) or a regular expression matching them")
    return (f"layer {layer.name!r} ({type(layer).__name__}) has no kernel tfdc can compress "
            "(those of the kinds it can: " + ", ".join(c for k in KINDS for c in k.classes) + ")")


def check_settings(model, sparsity, bits, prefix=""):
    """Fail now, not after training, on a sparsity or bits setting that
    `tfdc.GradualPruning` / `tfdc.ClusteredFineTuning` would refuse, or on a
    per-layer dict naming no layer of `model`.

    Args:
        model: the built Keras model the settings are for.
        sparsity: a `GradualPruning` target sparsity (number or dict).
        bits: a `ClusteredFineTuning` bits setting (int, None or dict).
        prefix: put in front of the setting's name in the message
            (e.g. "plan ").

    Raises:
        ValueError: naming the setting, the layer and the value.
    """
    from tfdc.cluster import ClusteredFineTuning
    from tfdc.prune import GradualPruning
    GradualPruning(sparsity)
    ClusteredFineTuning(bits=bits)
    for what, value in (("sparsity", sparsity), ("bits", bits)):
        if isinstance(value, dict):
            try:
                select_kernels(model, value)
            except ValueError as e:
                raise ValueError(f"{prefix}{what}: {e}") from None
