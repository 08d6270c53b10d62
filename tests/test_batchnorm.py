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
        keras.Input((10, 10, 3), batch_size=2, name="pixels"),
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
    # The input as it was: an exported signature names it so (it was keras_tensor_7).
    assert [(t.name, t.shape) for t in folded.inputs] == [("pixels", (2, 10, 10, 3))]
    assert_equivalent(model, folded)
    assert bn_names(model) == ["bn_conv", "bn_dw", "bn_fc", "bn_after_relu"]  # untouched


def test_a_model_loaded_from_a_file_folds_as_it_did_before_saving(tmp_path):
    # A Sequential model loaded from .keras lists 4 calls of each layer in
    # its `_inbound_nodes` (those made while loading it): folding reads the
    # model's own graph, so `tfdc compress MODEL.keras` folds like Python.
    model = keras.Sequential([
        keras.Input((6, 6, 2)), layers.Conv2D(4, 3, use_bias=False, name="conv"),
        layers.BatchNormalization(name="bn_conv"), layers.ReLU(), layers.Flatten(),
        layers.Dense(5, name="fc"), layers.BatchNormalization(name="bn_fc")])
    randomize_batchnorm(model)
    model.save(tmp_path / "seq.keras")
    loaded = keras.models.load_model(tmp_path / "seq.keras")
    assert len(loaded.get_layer("fc")._inbound_nodes) > 1  # what misled the old check
    folded = tfdc.fold_batchnorm(loaded)
    assert bn_names(folded) == [] and folded.get_layer("conv").use_bias
    assert_equivalent(model, folded)


def test_a_nested_backbone_is_folded_too():
    # The transfer-learning layout: a Conv + BN backbone as a model inside
    # the classifier (itself inside a Sequential), folded in place.
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 3, use_bias=False, name="c1")(inputs)
    h = layers.ReLU()(layers.BatchNormalization(name="bn1")(h))
    backbone = keras.Model(inputs, layers.GlobalAveragePooling2D()(h), name="backbone")
    outer = keras.Input((8, 8, 2))
    model = keras.Model(outer, layers.Dense(3, name="head")(
        keras.Sequential([backbone], name="wrapped")(outer)))
    randomize_batchnorm(backbone)
    folded = tfdc.fold_batchnorm(model)
    inner = folded.get_layer("wrapped").get_layer("backbone")
    assert bn_names(inner) == [] and inner.get_layer("c1").use_bias
    assert bn_names(backbone) == ["bn1"]  # the original is untouched
    assert_equivalent(model, folded)


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
    with pytest.raises(TypeError, match="expected a Keras model or layer, got NoneType"):
        tfdc.fold_batchnorm(None)


def test_pruned_weights_stay_positive_zeros_under_a_negative_scale():
    # A pruned weight times a negative gamma was -0.0: a nonzero bit pattern,
    # which the packer codes as a value (the folded model's file was larger
    # than the zeros it holds).
    model = keras.Sequential([keras.Input((6,)), layers.Dense(8, name="fc"),
                              layers.BatchNormalization(name="bn")])
    randomize_batchnorm(model)
    gamma = model.get_layer("bn").gamma
    gamma.assign(-np.abs(gamma.numpy()))
    kernel = model.get_layer("fc").kernel
    kernel.assign(np.where(np.arange(48).reshape(6, 8) % 2, kernel.numpy(), 0))
    bn = model.get_layer("bn")  # a bias of 0 with a beta of -0.0 folded to -0.0 too
    bn.moving_mean.assign(np.zeros(8, "float32"))
    bn.beta.assign(np.full(8, -0.0, "float32"))
    folded = tfdc.fold_batchnorm(model).get_layer("fc")
    kernel, bias = folded.kernel.numpy(), folded.bias.numpy()
    assert np.sum(kernel == 0) == 24 and not np.signbit(kernel[kernel == 0]).any()
    assert np.all(bias == 0) and not np.signbit(bias).any()
    assert_equivalent(model, tfdc.fold_batchnorm(model))
