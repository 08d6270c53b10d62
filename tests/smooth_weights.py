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


def grouped_kernel(rows=40, row_len=256, bits=4, seed=0):
    """Signed `bits`-bit integers shaped `[rows, row_len]` with the structure
    kind 4 tables code (FORMAT.md §5.4): rows of two spreads (a per-channel
    quantizer that clipped half its channels harder) and columns whose
    spread depends on the position in a block of 16 (a Hadamard rotation
    puts a smooth signal's energy into a few positions)."""
    rng = np.random.default_rng(seed)
    top = (1 << (bits - 1)) - 1
    row_spread = np.where(rng.random(rows) < 0.5, 0.35, 1.0)[:, None]
    col_spread = np.where(np.arange(row_len) % 16 == 0, 1.0,
                          np.where(np.arange(row_len) % 4 == 0, 0.5, 0.2))[None, :]
    q = np.round(rng.normal(size=(rows, row_len)) * row_spread * col_spread * top)
    return np.clip(q, -top - 1, top).astype(np.int64)
