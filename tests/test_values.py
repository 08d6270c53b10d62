"""tfdc.values: NumPy values of variables and tensors, also where warnings
are errors."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from tfdc.values import to_numpy


def test_variables_and_tensors_read_without_numpy_2s_warning():
    # keras.ops.convert_to_numpy(variable) raised NumPy 2's DeprecationWarning
    # ("__array__ implementation doesn't accept a copy keyword") here.
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x in (keras.Variable(values), tf.Variable(values), tf.constant(values), values):
            got = to_numpy(x)
            assert isinstance(got, np.ndarray) and np.array_equal(got, values), type(x)
        scalar = to_numpy(keras.Variable(3))
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar == 3


def test_a_variables_value_is_a_copy():
    variable = keras.Variable(np.zeros((2, 3), np.float32))
    to_numpy(variable)[0, 0] = 99.0
    assert to_numpy(variable)[0, 0] == 0.0
