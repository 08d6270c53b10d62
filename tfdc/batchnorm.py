"""Fold BatchNormalization into the layer before it, ahead of weight sharing.

TFLite's converter folds an inference-mode BatchNormalization into the
preceding convolution / dense kernel (W' = W * gamma / sqrt(var + eps)), which
rescales every output channel of a clustered kernel and so multiplies the
number of distinct values by the number of channels. Folding *before*
clustering keeps the codebook intact through conversion.
"""

import keras
import numpy as np

from tfdc.layers import (copy_layer, finalize_states, graph_nodes, is_subclassed, kind_of,
                         sequential_like)
from tfdc.select import check_built, iter_layers
from tfdc.values import to_numpy


def _foldable_pairs(model):
    """`{id(layer): (layer, bn)}`: each BatchNormalization at the model's
    top level called once, on the output of a layer whose kernel it can be
    folded into and which feeds nothing else. Read from the model's own
    graph (`graph_nodes`): a loaded Sequential model's layers also list the
    calls made while loading it."""
    nodes = graph_nodes(model)
    calls, readers = {}, {}
    for node in nodes:
        calls.setdefault(id(node.operation), []).append(node)
        for t in node.input_tensors:
            history = getattr(t, "_keras_history", None)
            if history is not None:
                readers[id(history.operation)] = readers.get(id(history.operation), 0) + 1
    pairs = {}
    for bn in model.layers:  # top level: a nested model is folded on its own
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        bn_calls = calls.get(id(bn), [])
        if len(bn_calls) != 1 or len(bn_calls[0].input_tensors) != 1:
            continue
        history = getattr(bn_calls[0].input_tensors[0], "_keras_history", None)
        prod = None if history is None else history.operation
        kind = kind_of(prod)
        if (kind is None or not kind.bn_foldable or len(calls.get(id(prod), [])) != 1
                or readers.get(id(prod)) != 1):
            continue
        if prod.activation not in (None, keras.activations.linear):
            continue  # BN after a nonlinearity cannot be folded into the kernel
        rank = len(prod.output.shape)
        axis = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
        if list(axis) not in ([-1], [rank - 1]):
            continue  # only channels-last normalization maps onto the kernel's last axis
        if isinstance(prod, keras.layers.Dense) and rank != 2:
            continue
        pairs[id(prod)] = (prod, bn)
    return pairs


def folded_by_converter(model):
    """`[(layer name, BatchNormalization name)]` of the model's top level
    that the TFLite converter folds into the kernel before them (as
    `fold_batchnorm` does): the file holds other values than such a kernel.
    Empty for a model whose graph cannot be read (a subclassed model).

    Example:

    ```python
    import keras
    from tfdc.batchnorm import folded_by_converter
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc"),
                              keras.layers.BatchNormalization(name="bn")])
    print(folded_by_converter(model))   # [('fc', 'bn')]
    ```
    """
    try:
        pairs = _foldable_pairs(model)
    except (TypeError, ValueError):
        return []
    return [(layer.name, bn.name) for layer, bn in pairs.values()]


def _folded_weights(layer, bn):
    kernel = to_numpy(layer.kernel).astype(np.float64)
    channels = bn.moving_mean.shape[0]
    bias = (to_numpy(layer.bias).astype(np.float64) if layer.use_bias
            else np.zeros(channels))
    mean = to_numpy(bn.moving_mean).astype(np.float64)
    var = to_numpy(bn.moving_variance).astype(np.float64)
    gamma = to_numpy(bn.gamma).astype(np.float64) if bn.scale else 1.0
    beta = to_numpy(bn.beta).astype(np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(var + bn.epsilon)
    if kind_of(layer).name == "depthwise":
        # kernel [..., in, multiplier]; output channel = in_index * multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale
    # + 0.0: a pruned weight times a negative scale is -0.0, which the
    # packer (bit-exact) would have to code as a value, not as pruned (a
    # bias of 0 with a beta of -0.0 alike).
    return [(kernel + 0.0).astype("float32"),
            ((bias - mean) * scale + beta + 0.0).astype("float32")]


def fold_batchnorm(model):
    """Return an equivalent model with each foldable BatchNormalization folded
    into the Conv / DepthwiseConv / Dense layer that directly precedes it,
    and removed.

    A BatchNormalization is folded when it normalizes the last (channel) axis
    of the output of a linear (no activation) Conv1D/2D/3D, DepthwiseConv1D/2D
    or Dense layer that feeds nothing else. The folded layer gets a bias. Other
    layers keep their weights; a nested Sequential or functional model (a
    backbone) is folded the same way. The result matches the original in
    inference mode (`training=False`) to float32 rounding.

    Args:
        model: a built Sequential or functional Keras model.

    Returns:
        A new model; `model` is not modified. If nothing is foldable, a clone.

    Example:

    ```python
    import keras, numpy as np, tfdc
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.BatchNormalization(), keras.layers.ReLU()])
    model.compile("adam", "mse")
    x = np.random.rand(16, 8, 8, 1).astype("float32")
    model.fit(x, np.random.rand(16, 6, 6, 4), epochs=2, verbose=0)  # moving statistics
    folded = tfdc.fold_batchnorm(model)
    print([type(layer).__name__ for layer in folded.layers])   # ['Conv2D', 'ReLU']
    np.testing.assert_allclose(folded(x), model(x, training=False), atol=1e-5)
    ```
    """
    check_built(model)
    if is_subclassed(model):
        raise ValueError(f"fold_batchnorm supports Sequential and functional models, not "
                         f"subclassed model {model.name!r} ({type(model).__name__})")
    pairs = _foldable_pairs(model)
    folded_bns = {id(bn) for _, bn in pairs.values()}
    # A nested Sequential or functional model (a backbone) is folded on its
    # own and takes its place, weights and all.
    nested = {id(layer): fold_batchnorm(layer) for layer in model.layers
              if isinstance(layer, keras.Model) and not is_subclassed(layer)
              and any(isinstance(inner, keras.layers.BatchNormalization)
                      for inner in iter_layers(layer))}

    def clone(layer):
        if id(layer) in nested:
            return nested[id(layer)]
        if id(layer) in pairs:
            return copy_layer(layer, use_bias=True, bias_initializer="zeros")
        return copy_layer(layer)

    if isinstance(model, keras.Sequential):
        new_layers = [clone(l) for l in model.layers if id(l) not in folded_bns]
        new = sequential_like(model, new_layers)
    else:
        folded_names = {bn.name for _, bn in pairs.values()}

        def call(layer, *args, **kwargs):
            if layer.name in folded_names:
                return args[0]  # the folded normalization is now a no-op
            return layer(*args, **kwargs)

        new = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for old in model.layers:
        if id(old) in folded_bns or id(old) in nested or not old.weights:
            continue
        target = new.get_layer(old.name)
        if id(old) in pairs:
            target.set_weights(_folded_weights(*pairs[id(old)]))
        else:
            target.set_weights(old.get_weights())
    return finalize_states(new)
