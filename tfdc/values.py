"""NumPy values of Keras variables and tensors.

`keras.ops.convert_to_numpy(variable)` reads a TensorFlow variable through
its `__array__`, which takes no `copy` keyword: NumPy 2 warns of it with a
DeprecationWarning at every call, and where warnings are errors
(`python -W error`, pytest's `filterwarnings = error`) every fit with a tfdc
callback failed at its first step. A variable's (or an eager tensor's) own
`.numpy()` does not go through `__array__`.
"""

import numpy as np


def to_numpy(x):
    """`x` (a Keras or TensorFlow variable, a tensor, an array) as a NumPy
    array, without NumPy 2's DeprecationWarning for variables (see the
    module docstring)."""
    numpy = getattr(x, "numpy", None)
    if callable(numpy):  # eager: its own copy, not through __array__
        return np.asarray(numpy())
    import keras  # here: modules that only pack and decode must not load TensorFlow
    return keras.ops.convert_to_numpy(x)
