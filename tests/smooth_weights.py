"""Synthetic kernels with the neighbourhood structure of trained weights,
for the tests and tools/make_v2_corpus.py (no pytest, no environment set-up
on import)."""

import numpy as np


def smooth_kernel(rows=40, side=28, bits=8, seed=0):
    """Signed `bits`-bit integers shaped `[rows, side * side]`: each row a
    smooth side x side image plus noise, like the first dense layer of an
    MNIST MLP quantized per tensor (a weight is close to its left and upper
    neighbours)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(rows, side + 8, side + 8))
    k = np.ones(5) / 5
    for axis in (1, 2):
        img = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), axis, img)
    img = img[:, 4:-4, 4:-4]
    top = (1 << (bits - 1)) - 1
    noise = rng.normal(0, max(0.3, top / 60), img.shape)
    q = np.clip(np.round(img / np.abs(img).max() * top * 0.95 + noise), -top, top)
    return q.reshape(rows, side * side).astype(np.int64)
