"""The one registry of Keras layer kinds that tfdc compresses.

Every per-kind fact lives here: which attributes hold a layer's kernels (and
where: a recurrent layer keeps them on its cell), whether it is a spatial
convolution (the paper's 8-bit default) or fully connected (5 bits), whether a
following BatchNormalization can be folded into it, which axes of its kernel
are the output units and the inputs (for neuron / channel pruning), the
config key of its unit count (for rebuilding it smaller), and the op names the
TFLite converter appends to its tensors (for readable reports). Adding a layer
kind is a change to `KINDS` alone.

Layers without kernels matter to neuron / channel pruning too (`tfdc.channels`,
`tfdc.shrink`): `CHANNELWISE`, `CHANNEL_NORMALIZATION` and `CHANNEL_MERGES`
list those a removed channel passes through (`channel_role`), and
`ZERO_PRESERVING_ACTIVATIONS` the activations after which a removed unit
stays exactly 0 (`zero_preserving_activation`).

Example:

```python
import keras
from tfdc.layers import kind_of, kernel_variables
layer = keras.layers.Dense(4)
layer.build((None, 3))
print(kind_of(layer).name, [attr for attr, _ in kernel_variables(layer)])  # dense ['kernel']
```
"""

import dataclasses
import functools

from tfdc.errors import first_line
from tfdc.values import to_numpy

__all__ = ["LayerKind", "KINDS", "OTHER_FLOATS", "kind_of", "kernel_attrs", "kernel_variables",
           "kernel_name", "kernel_layer_name",
           "bias_variable", "constraint_slot", "converter_op_names", "CHANNELWISE",
           "CHANNEL_NORMALIZATION", "CHANNEL_MERGES", "ZERO_PRESERVING_ACTIVATIONS", "channel_role",
           "zero_preserving_activation", "copy_layer", "copy_model", "check_copyable",
           "finalize_states",
           "is_subclassed", "has_graph", "graph_of", "graph_nodes", "sequential_like"]


# Variable dtypes of layers that LiteRT's builtin ops cannot compute in (they
# compute in float32; a mixed-precision policy keeps float32 variables).
OTHER_FLOATS = ("float64", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """What tfdc knows about one kind of layer.

    Attributes:
        name: short kind name ("dense", "conv", "depthwise", ...).
        classes: names of the `keras.layers` classes of this kind (matched
            with `isinstance`, in `KINDS` order; names, so that reading the
            registry, as `tfdc inspect` does, imports neither Keras nor
            TensorFlow).
        kernel_attrs: attributes holding the compressible kernels.
        on_cell: the kernels are attributes of `layer.cell` (recurrent
            layers), not of the layer itself.
        spatial: a convolution (the paper clusters these to 8 bits, fully
            connected kernels to 5).
        bn_foldable: an inference BatchNormalization right after it folds
            into its kernel and bias (`tfdc.fold_batchnorm`).
        out_axis: axis of `kernel_attrs[0]` that indexes the layer's output
            units / channels (None: units cannot be removed one by one).
        in_axis: axis of `kernel_attrs[0]` that indexes its input channels.
        units_key: the config key holding the number of output units
            (`"units"`, `"filters"`), for rebuilding the layer with fewer
            (`tfdc.shrink`); None if the kind cannot be shrunk that way.
        per_channel: output channel j reads only input channel j (a
            depthwise convolution with `depth_multiplier=1`), so removing a
            channel passes through the layer (`tfdc.shrink`).
        converter_ops: lower-case op names the TFLite converter appends to
            this layer's tensor names ("fc1/MatMul").
        transposed: a transposed convolution: every *input* position
            multiplies the whole kernel (for counting MACs, `tfdc.units`).
    """

    name: str
    classes: tuple
    kernel_attrs: tuple
    on_cell: bool = False
    spatial: bool = False
    bn_foldable: bool = False
    out_axis: object = None
    in_axis: object = None
    units_key: object = None
    per_channel: bool = False
    converter_ops: tuple = ()
    transposed: bool = False
    constraint_attrs: tuple = ("kernel_constraint",)


# Order matters only where one class derives from another; Keras 3's
# transposed, separable and depthwise convolutions do not derive from ConvND,
# but they are listed first anyway so a subclass is never taken for its base.
KINDS = (
    LayerKind("separable", ("SeparableConv1D", "SeparableConv2D"),
              ("depthwise_kernel", "pointwise_kernel"), spatial=True,
              converter_ops=("separable_conv2d", "depthwise", "convolution", "conv2d"),
              constraint_attrs=("depthwise_constraint", "pointwise_constraint")),
    LayerKind("conv_transpose", ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"),
              ("kernel",), out_axis=-2, in_axis=-1, units_key="filters", transposed=True,
              converter_ops=("conv2d_transpose", "conv1d_transpose", "conv3d_transpose",
                             "conv_transpose")),
    LayerKind("depthwise", ("DepthwiseConv1D", "DepthwiseConv2D"), ("kernel",), spatial=True,
              bn_foldable=True, out_axis=-2, in_axis=-2, per_channel=True,
              converter_ops=("depthwise",), constraint_attrs=("depthwise_constraint",)),
    LayerKind("conv", ("Conv1D", "Conv2D", "Conv3D"), ("kernel",), spatial=True,
              bn_foldable=True, out_axis=-1, in_axis=-2, units_key="filters",
              converter_ops=("convolution", "conv2d", "conv1d", "conv3d", "conv")),
    LayerKind("dense", ("Dense",), ("kernel",), bn_foldable=True, out_axis=-1, in_axis=0,
              units_key="units", converter_ops=("matmul", "tensordot", "biasadd")),
    LayerKind("einsum", ("EinsumDense",), ("kernel",), converter_ops=("einsum",)),
    LayerKind("embedding", ("Embedding",), ("embeddings",),
              converter_ops=("embedding_lookup", "gatherv2", "take"),
              constraint_attrs=("embeddings_constraint",)),
    # RNN: a cell of the user's (RNN(LSTMCell(...))) and ConvLSTM1D/2D/3D,
    # which derive from it; a cell without these attributes (a stack of
    # cells) has no kernels here.
    LayerKind("recurrent", ("LSTM", "GRU", "SimpleRNN", "RNN"), ("kernel", "recurrent_kernel"),
              on_cell=True, converter_ops=("while", "lstm", "gru", "simple_rnn"),
              constraint_attrs=("kernel_constraint", "recurrent_constraint")),
)


@functools.lru_cache(maxsize=None)
def _classes(kind):
    import keras
    return tuple(getattr(keras.layers, name) for name in kind.classes)


def kind_of(layer):
    """The `LayerKind` of `layer`, or None if tfdc does not compress it."""
    for kind in KINDS:
        if isinstance(layer, _classes(kind)):
            return kind
    return None


def kernel_attrs(layer):
    """Names of the kernel attributes of `layer`, or () if it has none."""
    kind = kind_of(layer)
    return kind.kernel_attrs if kind is not None else ()


def kernel_variables(layer):
    """`[(attr, variable)]` of the layer's built kernels (an unbuilt layer,
    or a recurrent layer whose cell is not built, has none)."""
    kind = kind_of(layer)
    if kind is None:
        return []
    owner = getattr(layer, "cell", None) if kind.on_cell else layer
    out = []
    for attr in kind.kernel_attrs:
        variable = getattr(owner, attr, None) if owner is not None else None
        if variable is not None:
            out.append((attr, variable))
    return out


def bias_variable(layer):
    """The bias of a layer of a registered kind (a recurrent layer's is on
    its cell), or None: no bias, not built, or a kind tfdc does not know."""
    kind = kind_of(layer)
    owner = None if kind is None else getattr(layer, "cell", None) if kind.on_cell else layer
    return getattr(owner, "bias", None)


def constraint_slot(layer, attr):
    """`(owner, name)`: the object and attribute holding the constraint of
    weight `attr` of `layer` (`owner.name` is what the layer's config
    saves), or None if tfdc does not know it: a registered kernel's (its
    kind's `constraint_attrs`), else Keras's own `<attr>_constraint` (a
    `bias`, a BatchNormalization's `gamma` and `beta`)."""
    kind = kind_of(layer)
    if kind is not None and attr in kind.kernel_attrs:
        owner = getattr(layer, "cell", None) if kind.on_cell else layer
        name = kind.constraint_attrs[kind.kernel_attrs.index(attr)]
    else:
        owner, name = layer, f"{attr}_constraint"
    if owner is None or not hasattr(owner, name):
        return None
    return owner, name


def kernel_name(layer, attr):
    """The readable name of one kernel: the layer name, or `layer/attr` for
    layers with several kernels (as `tfdc.sparsity` reports them)."""
    return layer.name if len(kernel_attrs(layer)) == 1 else f"{layer.name}/{attr}"


def kernel_layer_name(name):
    """The layer of a `kernel_name`: "lstm" of "lstm/recurrent_kernel",
    other names as they are ("fc1", "branch1/fc")."""
    for attr in {a for kind in KINDS if len(kind.kernel_attrs) > 1 for a in kind.kernel_attrs}:
        if name.endswith("/" + attr):
            return name[:-len(attr) - 1]
    return name


def converter_op_names():
    """Every op name the converter appends to a registered kind's tensors."""
    return {op for kind in KINDS for op in kind.converter_ops}


# Layers without kernels that act on each channel (the last axis) on its own
# and keep an all-zero channel at zero, so a removed unit's channel can be
# dropped on both sides of them (`tfdc.shrink`). GaussianNoise and
# AlphaDropout are left out: in training they turn a zero channel nonzero.
CHANNELWISE = tuple(
    [f"{base}{d}D" for base in ("MaxPooling", "AveragePooling", "GlobalMaxPooling",
                                "GlobalAveragePooling", "ZeroPadding", "Cropping", "UpSampling",
                                "SpatialDropout") for d in (1, 2, 3)]
    + ["Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "GaussianDropout", "Identity",
       "ActivityRegularization"])
# Per-channel normalization: its weights (gamma, beta, moving statistics) are
# indexed by the channel and lose the removed ones.
CHANNEL_NORMALIZATION = ("BatchNormalization",)
# Elementwise merges: every input carries the same channels, so a channel is
# removed from all branches or from none (a residual `Add`).
CHANNEL_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
# Activations that map 0 to 0 elementwise: a removed unit (zero kernel column
# and zero bias) then outputs exactly 0. Not sigmoid (0.5), softplus (log 2),
# nor softmax / log_softmax / glu / sparsemax (they mix the channels).
ZERO_PRESERVING_ACTIVATIONS = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu",
                               "tanh", "gelu", "silu", "swish", "hard_silu", "hard_swish",
                               "hard_tanh", "mish", "soft_shrink", "hard_shrink", "tanh_shrink",
                               "softsign")


def _class_named(layer, names):
    import keras
    return any(isinstance(layer, cls) for cls in
               (getattr(keras.layers, n, None) for n in names) if cls is not None)


def channel_role(layer, rank):
    """How `layer` (called on inputs of `rank` dimensions) treats channels.

    Returns:
        `"channelwise"` (a `CHANNELWISE` layer), `"normalization"` (a
        `CHANNEL_NORMALIZATION` layer over the last axis), `"merge"` (a
        `CHANNEL_MERGES` layer), or None: any other layer, and every
        channels-first one, mixes or reorders channels as far as
        `tfdc.shrink` knows.
    """
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if _class_named(layer, CHANNEL_NORMALIZATION):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return "normalization" if list(axis) in ([-1], [rank - 1]) else None
    if _class_named(layer, CHANNEL_MERGES):
        return "merge"
    if _class_named(layer, CHANNELWISE) or _scales_only(layer):
        return "channelwise"
    return None


def _scales_only(layer):
    """A Rescaling by one number and no offset: 0 stays 0 in every channel
    (a per-channel scale or an offset would need slicing or move 0)."""
    import numpy as np
    return (_class_named(layer, ("Rescaling",)) and np.ndim(layer.scale) == 0
            and np.ndim(layer.offset) == 0 and float(layer.offset) == 0.0)


def zero_preserving_activation(fn):
    """True if `fn` maps an all-zero channel to exactly 0, elementwise.

    Args:
        fn: a `keras.activations` function (a layer's `activation`), an
            activation layer (`Activation`, `ReLU`, `LeakyReLU`, `ELU`), any
            other `CHANNELWISE` layer (pooling, padding, dropout: zeros in,
            zeros out), or None.
    """
    import keras
    import numpy as np
    if fn is None:
        return True
    if isinstance(fn, keras.layers.Activation):
        fn = fn.activation
    if isinstance(fn, keras.layers.Layer):
        if not isinstance(fn, (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU)):
            return True
    elif getattr(fn, "__name__", None) not in ZERO_PRESERVING_ACTIVATIONS:
        return False
    # ReLU(threshold=t, negative_slope=a) maps 0 to a * t: check the value.
    out = to_numpy(fn(keras.ops.zeros((1, 4))))
    return out.shape == (1, 4) and bool(np.all(out == 0))


# A Lambda layer's config entries that hold Python functions (or, for
# `arguments`, objects) as serialized code.
_LAMBDA_LIVE = ("function", "output_shape", "mask", "arguments")


def copy_layer(layer, **changes):
    """A new, unbuilt layer like `layer`, from its config with `changes`
    applied: the `clone_function` of every model tfdc copies (training
    copies, teachers, folded and shrunk models).

    It is Keras's own clone (`from_config(get_config())`) except for a
    `Lambda` layer, which keeps its Python objects: its config holds their
    code, which Keras's safe mode refuses to load back, and the functions
    are in this process already. So a model with a Lambda layer copies
    without `keras.config.enable_unsafe_deserialization()`.

    Example:

    ```python
    import keras
    from tfdc.layers import copy_layer
    double = keras.layers.Lambda(lambda t: 2 * t, name="double")
    model = keras.Sequential([keras.Input((3,)), double, keras.layers.Dense(2, name="fc")])
    copy = keras.models.clone_model(model, clone_function=copy_layer)
    print([layer.name for layer in copy.layers])   # ['double', 'fc']
    ```
    """
    import keras
    config = {**layer.get_config(), **changes}
    if not isinstance(layer, keras.layers.Lambda):
        return layer.__class__.from_config(config)
    live = {"function": layer.function, "arguments": layer.arguments, "mask": layer.mask,
            # Keras keeps the constructor's output_shape privately; without
            # it the copy infers the shape by tracing, as Keras does.
            "output_shape": getattr(layer, "_output_shape", None)}
    live.update((k, v) for k, v in changes.items() if k in _LAMBDA_LIVE)
    rest = {k: v for k, v in config.items() if k not in _LAMBDA_LIVE}
    return keras.layers.Lambda(**live, **rest)


def check_copyable(model, what):
    """A ValueError, before any training, naming the first layer of `model`
    that Keras cannot rebuild from its config, which `what` (e.g.
    `tfdc.shrink`) needs: a Python lambda or `functools.partial` as a
    layer's activation trained for minutes and then failed to shrink, with
    Keras's deserialization error."""
    reason = _uncopyable(model)
    if reason:
        raise ValueError(f"{what} rebuilds the model from its layers' configs, and {reason}")


def _uncopyable(model):
    """Why the first layer of `model` that Keras cannot rebuild from its
    config cannot be, or None. The layers it builds draw their initializers'
    seeds from Python's `random`: its state is put back, so that a seeded
    run gives what it gave without the check."""
    import random
    state = random.getstate()
    try:
        return _first_uncopyable(model)
    finally:
        random.setstate(state)


def _first_uncopyable(model):
    for layer in model.layers:
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        activation = getattr(layer, "activation", None)
        python = ("a functools.partial" if isinstance(activation, functools.partial) else
                  "a Python lambda" if getattr(activation, "__name__", "") == "<lambda>" else None)
        if python:
            return (f"{where} has {python} as its activation, which a config cannot hold: "
                    f"{_REGISTER}")
        try:
            copy_layer(layer)
        except Exception as e:  # noqa: BLE001 - Keras raises several types for this
            said = first_line(e).split(" using config=")[0].rstrip(".")  # not the whole config
            return f"{where} cannot be rebuilt: {said}. Its config must rebuild it: {_REGISTER}"
    return None


_REGISTER = ("use a function or class registered with "
             "@keras.saving.register_keras_serializable() (or a keras.layers.Lambda layer)")


def is_subclassed(model):
    """Whether `model` is a subclassed `keras.Model`, whose graph is its
    Python `call`, rather than a Sequential or functional model (a graph of
    layers that tfdc can walk, rewrite and copy layer by layer)."""
    import keras
    return (not isinstance(model, keras.Sequential)
            and getattr(model, "_nodes_by_depth", None) is None)


def has_graph(model):
    """A Functional or Sequential model: its inputs and outputs are known
    (a subclassed model's are only once it was called on data)."""
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def graph_of(model):
    """The functional graph of a Sequential or functional model; ValueError
    for a subclassed model (its graph is Python code, not data)."""
    import keras
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: call it on data or build it "
                         "with keras.Input first")
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(f"Sequential model {model.name!r} has no keras.Input: start it with "
                             "keras.Input(shape) so its graph is known")
        return graph
    if is_subclassed(model):
        raise ValueError(f"model {model.name!r} ({type(model).__name__}) is subclassed (its "
                         "graph is Python code): channel pruning and BatchNormalization folding "
                         "need a Sequential or functional model")
    return model


def graph_nodes(model):
    """The calls of layers in the graph of a Sequential or functional model
    (`graph_of`), inputs first. A layer's `_inbound_nodes` lists its calls
    in every graph it was ever called in (a Sequential model loaded from a
    .keras file: 4 for each layer), so one model's wiring is read here."""
    graph = graph_of(model)
    return [node for depth in sorted(graph._nodes_by_depth, reverse=True)
            for node in graph._nodes_by_depth[depth]]


def sequential_like(model, layers):
    """A Sequential model of `layers` with Sequential `model`'s name and
    input: its shape, batch size, dtype and name (the exported signature
    names its input so; a plain `keras.Input(shape)` was `keras_tensor_4`)."""
    import keras
    spec = model.inputs[0]
    inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype, name=spec.name)
    return keras.Sequential([inputs] + list(layers), name=model.name)


def copy_model(model):
    """A copy of `model` with its weights, sharing no variable with it: the
    training copies and teachers of `tfdc.compress`.

    A Sequential or functional model is copied layer by layer with
    `copy_layer` (a `Lambda` keeps its function); a subclassed model is
    rebuilt from its config (`get_config()` must give what its `__init__`
    takes, as Keras's own saving needs).

    Example:

    ```python
    import keras
    from tfdc.layers import copy_model
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    copy = copy_model(model)
    print(copy.get_layer("fc").kernel is model.get_layer("fc").kernel)  # False
    ```

    Raises:
        ValueError: Keras cannot copy it (e.g. a subclassed model whose
            config does not rebuild it), with Keras's reason.
    """
    import keras
    try:
        if is_subclassed(model):
            copy = _subclassed_copy(model)
        elif isinstance(model, keras.Sequential) and model.inputs:
            # Its input named as the original's (Keras named the copy's
            # "input_layer" where the original's was "keras_tensor"): x in a
            # dict keyed by it passed compress's checks, and the copy it
            # trained refused it.
            (x,) = model.inputs
            copy = keras.models.clone_model(
                model, clone_function=copy_layer, input_tensors=keras.Input(
                    batch_shape=x.shape, dtype=x.dtype, sparse=x.sparse, name=x.name))
        else:
            copy = keras.models.clone_model(model, clone_function=copy_layer)
    except Exception as e:  # noqa: BLE001 - Keras raises several types for this
        if is_subclassed(model):
            reason = (f"{first_line(e).rstrip('.')}. A subclassed model is copied from its "
                      "config: give it a get_config() whose keys its __init__ takes, or build "
                      "it as a functional model.")
        else:  # the layer and why, not Keras's page of config
            reason = _uncopyable(model) or f"{first_line(e).rstrip('.')}."
        raise ValueError(f"cannot copy model {model.name!r} ({type(model).__name__}): "
                         f"{reason}") from None
    build = None if copy.built else model.get_build_config()
    if build:  # a subclassed model: built by calling it
        copy.build_from_config(build)
        copy.built = True  # as Keras's own deserialization sets it
        _same_names(model, copy)  # layers its build() made
    copy.set_weights(model.get_weights())
    return finalize_states(copy)


def _subclassed_copy(model):
    """A subclassed model rebuilt from its config, unbuilt, its layers named
    as `model`'s: Keras names a new layer afresh (dense_4 for dense), and a
    plan keyed by the original's names matched no layer of the copy that
    compress trained."""
    import keras
    config = keras.saving.serialize_keras_object(model)
    config.pop("build_config", None)  # built after its layers are named
    copy = keras.saving.deserialize_keras_object(
        config, custom_objects={type(model).__name__: type(model)})
    copy.name = model.name
    _same_names(model, copy)
    return copy


def _same_names(model, copy):
    """Name each layer of `copy` as its counterpart in `model` (in the order
    both hold them), where the two hold layers of the same classes."""
    from tfdc.select import iter_layers
    pairs = list(zip(iter_layers(model), iter_layers(copy)))
    if all(type(a) is type(b) for a, b in pairs):
        for a, b in pairs:
            b.name = a.name


def finalize_states(model):
    """Call `finalize_state()` on each layer of `model` that has one (an
    adapted `Normalization`, `Discretization`, `TextVectorization`), as
    Keras's own loading does: `set_weights` sets their variables but not
    the constants they compute with. Without it a copy of an adapted
    Normalization normalized with mean 0 and variance 1, and tfdc.compress
    trained and scored that broken copy. Returns `model`."""
    from tfdc.select import iter_layers
    for layer in iter_layers(model):
        finalize = getattr(layer, "finalize_state", None)
        if callable(finalize) and layer.built:
            finalize()
    return model
