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


# A kernel counts as clustered where its nonzero weights share at most this
# many values, each held by this many weights or more on average (a trained
# float kernel's are all but all distinct, a heavily pruned one's too, and
# a small kernel's few hundred are at most 256 without being shared).
_CLUSTERED_VALUES, _CLUSTERED_SHARE = 256, 4


def nonzero_values(x):
    """The nonzero elements of `x` (a variable or an array), flattened."""
    v = to_numpy(x).ravel()
    return v[v != 0]


def clustered_values(x, share=_CLUSTERED_SHARE):
    """The number of distinct nonzero values of kernel `x` (a variable or
    an array) where it looks clustered (see `_CLUSTERED_VALUES`; at least
    2, each held by `share` weights or more on average), else None."""
    nonzero = nonzero_values(x)
    if nonzero.size < share:
        return None
    values = int(np.unique(nonzero).size)
    # One value is an initialiser's constant (ones, a fresh BatchNorm's gamma).
    if 2 <= values <= _CLUSTERED_VALUES and nonzero.size >= share * values:
        return values
    return None
