import keras
import numpy as np
import pytest
from keras import layers

import tfdc
from tfdc.cluster import ClusteredFineTuning


def randomize_batchnorm(model):
    """Non-trivial moving statistics, gamma and beta (fresh BN is an identity)."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            new = []
            for w in layer.weights:
                positive = "variance" in w.path or "gamma" in w.path
                new.append(rng.uniform(0.5, 2.0, w.shape) if positive else rng.normal(size=w.shape))
            layer.set_weights([w.astype("float32") for w in new])


def assert_equivalent(original, folded):
    x = np.random.default_rng(1).uniform(size=(4,) + original.input_shape[1:]).astype("float32")
    np.testing.assert_allclose(folded(x, training=False), original(x, training=False),
                               rtol=1e-5, atol=1e-5)


def bn_names(model):
    return [l.name for l in model.layers if isinstance(l, layers.BatchNormalization)]


def test_sequential_conv_depthwise_dense():
    model = keras.Sequential([
        keras.Input((10, 10, 3)),
        layers.Conv2D(8, 3, name="conv"), layers.BatchNormalization(name="bn_conv"), layers.ReLU(),
        layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, name="dw"),
        layers.BatchNormalization(name="bn_dw"), layers.Flatten(),
        layers.Dense(6, name="fc"), layers.BatchNormalization(name="bn_fc"),
        layers.Dense(4, activation="relu", name="fc_relu"),
        layers.BatchNormalization(name="bn_after_relu"),  # cannot be folded
    ])
    randomize_batchnorm(model)
    folded = tfdc.fold_batchnorm(model)
    assert bn_names(folded) == ["bn_after_relu"]
    assert folded.get_layer("dw").use_bias
    assert_equivalent(model, folded)
    assert bn_names(model) == ["bn_conv", "bn_dw", "bn_fc", "bn_after_relu"]  # untouched


def test_functional_with_branches():
    inputs = keras.Input((9, 9, 2))
    a = layers.Conv2D(4, 3, name="a")(inputs)
    a = layers.BatchNormalization(name="bn_a")(a)  # folded
    b = layers.Conv2D(4, 1, name="b")(a)
    shared = layers.Conv2D(4, 1, name="shared")(a)
    c = layers.BatchNormalization(name="bn_shared")(shared)  # 'shared' also feeds Add: kept
    out = layers.Add()([b, c, shared])
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(out))
    randomize_batchnorm(model)
    folded = tfdc.fold_batchnorm(model)
    assert bn_names(folded) == ["bn_shared"]
    assert_equivalent(model, folded)


def test_folded_model_can_be_clustered(mnist_small):
    (x, y), _ = mnist_small
    model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(4, 5, name="conv"),
                              layers.BatchNormalization(name="bn"), layers.ReLU(),
                              layers.Flatten(), layers.Dense(10, name="fc")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:256, ..., None], y[:256], verbose=0)  # moving statistics move
    folded = tfdc.fold_batchnorm(model)
    assert_equivalent(model, folded)
    cb = ClusteredFineTuning(bits=3)
    cb.quantize(folded)
    assert {s.layer.name for s in cb.selections} == {"conv", "fc"}


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(2, 3)
            self.bn = layers.BatchNormalization()

        def call(self, x):
            return self.bn(self.conv(x))

    model = Net()
    model(np.zeros((1, 5, 5, 1), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        tfdc.fold_batchnorm(model)
