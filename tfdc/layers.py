"""The one registry of Keras layer kinds that tfdc compresses.

Every per-kind fact lives here: which attributes hold a layer's kernels (and
where: a recurrent layer keeps them on its cell), whether it is a spatial
convolution (the paper's 8-bit default) or fully connected (5 bits), whether a
following BatchNormalization can be folded into it, which axes of its kernel
are the output units and the inputs (for neuron / channel pruning), and the
op names the TFLite converter appends to its tensors (for readable reports).
Adding a layer kind is a change to `KINDS` alone.

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

__all__ = ["LayerKind", "KINDS", "kind_of", "kernel_attrs", "kernel_variables", "kernel_name",
           "constraint_slot", "converter_op_names"]


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
        converter_ops: lower-case op names the TFLite converter appends to
            this layer's tensor names ("fc1/MatMul").
    """

    name: str
    classes: tuple
    kernel_attrs: tuple
    on_cell: bool = False
    spatial: bool = False
    bn_foldable: bool = False
    out_axis: object = None
    in_axis: object = None
    converter_ops: tuple = ()
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
              ("kernel",), out_axis=-2, in_axis=-1,
              converter_ops=("conv2d_transpose", "conv1d_transpose", "conv3d_transpose")),
    LayerKind("depthwise", ("DepthwiseConv1D", "DepthwiseConv2D"), ("kernel",), spatial=True,
              bn_foldable=True, out_axis=-2, in_axis=-2, converter_ops=("depthwise",),
              constraint_attrs=("depthwise_constraint",)),
    LayerKind("conv", ("Conv1D", "Conv2D", "Conv3D"), ("kernel",), spatial=True,
              bn_foldable=True, out_axis=-1, in_axis=-2,
              converter_ops=("convolution", "conv2d", "conv1d", "conv3d", "conv")),
    LayerKind("dense", ("Dense",), ("kernel",), bn_foldable=True, out_axis=-1, in_axis=0,
              converter_ops=("matmul", "tensordot", "biasadd")),
    LayerKind("einsum", ("EinsumDense",), ("kernel",), converter_ops=("einsum",)),
    LayerKind("embedding", ("Embedding",), ("embeddings",),
              converter_ops=("embedding_lookup", "gatherv2", "take"),
              constraint_attrs=("embeddings_constraint",)),
    LayerKind("recurrent", ("LSTM", "GRU", "SimpleRNN"), ("kernel", "recurrent_kernel"),
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


def constraint_slot(layer, attr):
    """`(owner, name)`: the object and attribute holding the constraint of
    kernel `attr` of `layer` (`owner.name` is what the layer's config
    saves), or None if tfdc does not know it."""
    kind = kind_of(layer)
    if kind is None or attr not in kind.kernel_attrs:
        return None
    owner = getattr(layer, "cell", None) if kind.on_cell else layer
    name = kind.constraint_attrs[kind.kernel_attrs.index(attr)]
    if owner is None or not hasattr(owner, name):
        return None
    return owner, name


def kernel_name(layer, attr):
    """The readable name of one kernel: the layer name, or `layer/attr` for
    layers with several kernels (as `tfdc.sparsity` reports them)."""
    return layer.name if len(kernel_attrs(layer)) == 1 else f"{layer.name}/{attr}"


def converter_op_names():
    """Every op name the converter appends to a registered kind's tensors."""
    return {op for kind in KINDS for op in kind.converter_ops}
