"""The reference networks of the Deep Compression paper, in Keras 3, and
two more for what they are not: a MobileNet-style CNN (BatchNormalization,
depthwise, residual) and an autoencoder (a model that is not a classifier).

Their inputs are named (`image`; the autoencoder's `input_image`, its output
being `image`): an unnamed `keras.Input` is `keras_tensor_N`, N counting the
tensors the process made before, and an exported file keeps that name, so the
same weights packed to a few bytes more or less run by run."""

import keras
from keras import layers


def lenet_300_100(input_shape=(28, 28), num_classes=10):
    """LeNet-300-100: 784-300-100-10 fully connected, ReLU (266,610 parameters)."""
    return keras.Sequential([
        keras.Input(input_shape, name="image"),
        layers.Flatten(name="flatten"),
        layers.Dense(300, activation="relu", name="fc1"),
        layers.Dense(100, activation="relu", name="fc2"),
        layers.Dense(num_classes, activation="softmax", name="fc3"),
    ], name="lenet_300_100")


def lenet5(input_shape=(28, 28, 1), num_classes=10):
    """LeNet-5, Caffe variant: conv 5x5x20, max-pool, conv 5x5x50, max-pool,
    fc 500 (ReLU), fc 10 (431,080 parameters)."""
    return keras.Sequential([
        keras.Input(input_shape, name="image"),
        layers.Conv2D(20, 5, name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(50, 5, name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(500, activation="relu", name="fc1"),
        layers.Dense(num_classes, activation="softmax", name="fc2"),
    ], name="lenet5")


# (depthwise stride, output channels) of each depthwise-separable block of
# `mobilenet_mnist`; a block with stride 1 and equal channels adds its input.
MOBILENET_MNIST_BLOCKS = ((1, 64), (1, 64), (2, 128), (1, 128), (1, 128), (2, 192), (1, 192))


def mobilenet_mnist(input_shape=(28, 28, 1), num_classes=10, blocks=MOBILENET_MNIST_BLOCKS,
                    stem=32):
    """A MobileNet-style CNN sized for 28x28 images (124,042 parameters):
    a strided 3x3 stem, depthwise-separable blocks (3x3 depthwise, 1x1
    pointwise, BatchNormalization and ReLU after each) with residual `Add`s
    where the shape allows, global average pooling and a Dense classifier.
    The stem's stride 2 keeps the cost about twice LeNet-5's (5 M
    multiply-adds per image), so it trains on 2 CPU cores in minutes."""
    def conv_bn(x, conv, name, relu=True):
        x = conv(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False,
                                      name="stem"), "stem")
    for i, (stride, channels) in enumerate(blocks, 1):
        h = conv_bn(x, layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                              name=f"b{i}_dw"), f"b{i}_dw")
        residual = stride == 1 and x.shape[-1] == channels
        h = conv_bn(h, layers.Conv2D(channels, 1, use_bias=False, name=f"b{i}_pw"), f"b{i}_pw",
                    relu=not residual)
        x = layers.ReLU(name=f"b{i}_out")(layers.Add(name=f"b{i}_add")([x, h])) if residual else h
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="mobilenet_mnist")


def autoencoder_mnist(input_shape=(28, 28), code=32, hidden=256):
    """A fully connected autoencoder for 28x28 images (419,120 parameters):
    784-256-32-256-784, ReLU, sigmoid outputs: the flattened image
    reconstructed, trained with mean squared error against
    `x.reshape(len(x), -1)`. A model that is not a classifier, for
    `tfdc.compress`'s loss budget (`max_loss_increase`)."""
    size = 1
    for d in input_shape:
        size *= d
    return keras.Sequential([
        keras.Input(input_shape, name="input_image"),
        layers.Flatten(name="flatten"),
        layers.Dense(hidden, activation="relu", name="enc1"),
        layers.Dense(code, activation="relu", name="code"),
        layers.Dense(hidden, activation="relu", name="dec1"),
        layers.Dense(size, activation="sigmoid", name="image"),
    ], name="autoencoder_mnist")
