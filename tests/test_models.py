"""The reference networks: sizes as documented, and the MobileNet-style
network's structure (BatchNormalization, depthwise, residual adds)."""

import keras
import numpy as np

from tfdc import models


def test_parameter_counts_are_the_documented_ones():
    assert models.lenet_300_100().count_params() == 266_610
    assert models.lenet5().count_params() == 431_080
    assert models.mobilenet_mnist().count_params() == 124_042
    assert models.autoencoder_mnist().count_params() == 419_120


def test_mobilenet_mnist_has_bn_depthwise_and_residual_adds():
    model = models.mobilenet_mnist()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("DepthwiseConv2D") == len(models.MOBILENET_MNIST_BLOCKS)
    assert kinds.count("BatchNormalization") == 1 + 2 * len(models.MOBILENET_MNIST_BLOCKS)
    # A residual Add wherever a block keeps its stride and channels.
    channels_in = [32] + [c for _, c in models.MOBILENET_MNIST_BLOCKS[:-1]]  # stem: 32
    expected = sum(stride == 1 and c == c_in for (stride, c), c_in
                   in zip(models.MOBILENET_MNIST_BLOCKS, channels_in))
    assert kinds.count("Add") == expected == 4
    out = model(np.zeros((2, 28, 28, 1), np.float32))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).sum(-1), 1.0, rtol=1e-5)


def test_exported_file_does_not_depend_on_what_the_process_built_before():
    # An unnamed keras.Input is `keras_tensor_N`, N counting every tensor
    # the process made, and the converted file keeps that name: the same
    # weights packed to 852,375 B, then 852,385 B after 2,000 more tensors.
    from tfdc.exporter import convert
    from tfdc.runtime import load_interpreter
    first = models.lenet_300_100()
    for _ in range(50):
        keras.Input((3,))
    second = models.lenet_300_100()
    second.set_weights(first.get_weights())
    assert convert(first) == convert(second)
    inputs = load_interpreter(convert(first)).get_signature_runner().get_input_details()
    assert list(inputs) == ["image"]
