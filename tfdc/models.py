"""The reference networks of the Deep Compression paper, in Keras 3."""

import keras
from keras import layers


def lenet_300_100(input_shape=(28, 28), num_classes=10):
    """LeNet-300-100: 784-300-100-10 fully connected, ReLU (266,610 parameters)."""
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Flatten(name="flatten"),
        layers.Dense(300, activation="relu", name="fc1"),
        layers.Dense(100, activation="relu", name="fc2"),
        layers.Dense(num_classes, activation="softmax", name="fc3"),
    ], name="lenet_300_100")


def lenet5(input_shape=(28, 28, 1), num_classes=10):
    """LeNet-5, Caffe variant: conv 5x5x20, max-pool, conv 5x5x50, max-pool,
    fc 500 (ReLU), fc 10 (431,080 parameters)."""
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(20, 5, name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(50, 5, name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(500, activation="relu", name="fc1"),
        layers.Dense(num_classes, activation="softmax", name="fc2"),
    ], name="lenet5")
