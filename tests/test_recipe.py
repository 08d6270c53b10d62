"""tfdc.recipe: shifted-image batches and the cosine schedule."""

import numpy as np
import pytest

from tfdc.recipe import ShiftedImages, cosine_decay


def test_batches_are_shifted_copies_of_the_images():
    rng = np.random.default_rng(0)
    x = rng.random((10, 6, 5)).astype("float32")
    y = np.arange(10)
    data = ShiftedImages(x, y, batch_size=4, max_shift=1, seed=3)
    assert len(data) == 3
    seen = []
    for i in range(len(data)):
        xb, yb = data[i]
        assert xb.shape[1:] == (6, 5) and len(xb) == len(yb)
        for image, label in zip(xb, yb):
            padded = np.pad(x[label], 1)
            # The batch image is some 6x5 window of the zero-padded original.
            assert any(np.array_equal(image, padded[dy:dy + 6, dx:dx + 5])
                       for dy in range(3) for dx in range(3))
        seen.extend(yb)
    assert sorted(seen) == list(range(10))  # every image once per epoch


def test_channels_and_no_shift():
    x = np.arange(2 * 4 * 4 * 1, dtype="float32").reshape(2, 4, 4, 1)
    data = ShiftedImages(x, np.array([0, 1]), batch_size=2, max_shift=0)
    xb, yb = data[0]
    np.testing.assert_array_equal(xb, x[yb])
    with pytest.raises(ValueError, match="ShiftedImages"):
        ShiftedImages(np.zeros((3, 4)), np.zeros(3))


def test_cosine_decay_values():
    schedule = cosine_decay(1e-3, 5, floor=0.1).schedule
    assert schedule(0, None) == pytest.approx(1e-3)
    assert schedule(2, None) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert schedule(4, None) == pytest.approx(1e-4)
    assert schedule(9, None) == pytest.approx(1e-4)
