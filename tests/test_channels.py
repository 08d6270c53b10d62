"""tfdc.channels: which channels go together, which cannot go, when one is removed."""

import keras
import numpy as np
import pytest
from keras import layers

from tfdc.channels import channel_groups


def residual_net(input_shape=(12, 12, 1)):
    """stem -> BN -> ReLU6 -> [expand -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 ->
    project -> BN] + stem (Add) -> GAP -> Dense softmax."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0)(x)
    h = layers.Conv2D(16, 1, use_bias=False, name="expand")(x)
    h = layers.BatchNormalization(name="expand_bn")(h)
    h = layers.ReLU(6.0)(h)
    h = layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = layers.BatchNormalization(name="dw_bn")(h)
    h = layers.ReLU(6.0)(h)
    h = layers.Conv2D(8, 1, name="project")(h)
    h = layers.BatchNormalization(name="project_bn")(h)
    x = layers.Add(name="add")([x, h])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def by_name(analysis):
    return {g.name: g for g in analysis.groups}


def names(layers_):
    return sorted(layer.name for layer in layers_)


def test_residual_branches_form_one_group():
    groups = by_name(channel_groups(residual_net()))
    stream = groups["stem+project"]
    assert stream.size == 8 and stream.fixed is None
    assert names(stream.channelwise) == ["project_bn", "stem_bn"]
    assert sorted(layer.name for layer, _ in stream.consumers) == ["expand", "out"]
    expand = groups["expand"]
    assert expand.size == 16 and expand.fixed is None
    assert names(expand.channelwise) == ["dw", "dw_bn", "expand_bn"]
    assert [layer.name for layer, _ in expand.consumers] == ["project"]
    assert groups["out"].fixed == "feeds the model output"
    assert groups["input"].fixed == "is a model input"


def test_flatten_repeats_channels_for_the_dense_reader():
    model = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(4, 3, name="conv"),
                              layers.MaxPooling2D(2), layers.Flatten(),
                              layers.Dense(5, activation="relu", name="fc"),
                              layers.Dense(2, name="out")])
    groups = by_name(channel_groups(model))
    assert groups["conv"].consumers[0][0].name == "fc"
    assert groups["conv"].consumers[0][1] == 4  # 2x2 positions after pooling
    assert groups["fc"].fixed is None


@pytest.mark.parametrize("make, reason", [
    (lambda x: layers.Dense(4, activation="sigmoid", name="fc")(x), "does not map 0 to 0"),
    (lambda x: layers.Reshape((2, 2))(layers.Dense(4, name="fc")(x)), "Reshape"),
    (lambda x: layers.Concatenate()([layers.Dense(4, name="fc")(x), x]), "Concatenate"),
    (lambda x: layers.LayerNormalization()(layers.Dense(4, name="fc")(x)),
     "LayerNormalization"),
])
def test_units_that_cannot_be_removed_say_why(make, reason):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.Flatten()(make(inputs))))
    fc = by_name(channel_groups(model))["fc"]
    assert fc.fixed is not None and reason in fc.fixed


def test_removed_needs_every_producing_weight_zero():
    model = residual_net()
    groups = by_name(channel_groups(model))
    stream = groups["stem+project"]
    assert not stream.removed().any()
    for layer_name in ("stem", "project"):
        layer = model.get_layer(layer_name)
        kernel = layer.kernel.numpy()
        kernel[..., 3] = 0
        layer.kernel.assign(kernel)
        if layer.use_bias:
            bias = layer.bias.numpy()
            bias[3] = 0
            layer.bias.assign(bias)
    # The BatchNormalizations still add beta (0 when fresh) and scale by gamma (1).
    bn = model.get_layer("stem_bn")
    beta = bn.beta.numpy()
    beta[3] = 0.5
    bn.beta.assign(beta)
    assert not stream.removed().any()
    for bn_name in ("stem_bn", "project_bn"):
        bn = model.get_layer(bn_name)
        for v in (bn.gamma, bn.beta):
            value = v.numpy()
            value[3] = 0
            v.assign(value)
    assert np.flatnonzero(stream.removed()).tolist() == [3]


def test_shared_layer_uses_one_group_per_side():
    inputs = keras.Input((4,))
    shared = layers.Dense(6, activation="relu", name="shared")
    a = shared(inputs)
    b = shared(layers.Dense(4, name="pre")(inputs))
    out = layers.Dense(2, name="out")(layers.Add()([a, b]))
    groups = by_name(channel_groups(keras.Model(inputs, out)))
    assert groups["shared"].size == 6 and groups["shared"].fixed is None
    # `pre` feeds the same input rows of `shared` as the model input does.
    assert groups["pre"].fixed == "is a model input"


def test_subclassed_and_inputless_models_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = layers.Dense(3)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        channel_groups(net)
    with pytest.raises(ValueError, match="not built"):
        channel_groups(keras.Sequential([layers.Dense(3)]))
