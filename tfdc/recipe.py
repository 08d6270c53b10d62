"""The training recipe of the demo and the benchmarks.

Deep Compression retrains after every stage, so the float baseline and the
retraining decide how much sparsity a network tolerates. Two standard pieces
make LeNet-300-100 reach the paper's error at its sparsity on MNIST:

* `ShiftedImages`: each training image moved by a random whole-pixel shift of
  up to `max_shift` pixels (zero fill), a new draw every epoch.
* `cosine_decay`: the learning rate follows half a cosine from `base` down to
  `floor * base` over a stage.

Example:

```python
import keras, tfdc
from tfdc.datasets import load_mnist
from tfdc.recipe import ShiftedImages, cosine_decay

(x, y), _ = load_mnist()
model = tfdc.models.lenet_300_100()
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
model.fit(ShiftedImages(x, y, batch_size=128), epochs=10, callbacks=[cosine_decay(1e-3, 10)])
```
"""

import keras
import numpy as np

from tfdc.values import to_numpy


class ShiftedImages(keras.utils.PyDataset):
    """Shuffled training batches of randomly translated images.

    Args:
        x: images, `[N, H, W]` or `[N, H, W, C]`.
        y: labels, `[N]`.
        batch_size: images per batch.
        max_shift: largest shift in pixels along each axis (0: no shift).
        seed: seed of the shuffling and of the shifts.
    """

    def __init__(self, x, y, batch_size=128, max_shift=2, seed=0, **kwargs):
        super().__init__(**kwargs)
        if x.ndim not in (3, 4):
            raise ValueError(f"ShiftedImages needs [N, H, W] or [N, H, W, C] images, got shape "
                             f"{x.shape}")
        self.x, self.y, self.batch_size, self.max_shift = x, y, int(batch_size), int(max_shift)
        self.rng = np.random.default_rng(seed)
        m = self.max_shift
        self.padded = np.pad(x, [(0, 0), (m, m), (m, m)] + [(0, 0)] * (x.ndim - 3))
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        h, w = self.x.shape[1:3]
        dy, dx = self.rng.integers(0, 2 * self.max_shift + 1, size=(2, idx.size))
        rows = dy[:, None] + np.arange(h)
        cols = dx[:, None] + np.arange(w)
        return self.padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]], self.y[idx]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


def cosine_decay(base, epochs, floor=0.05):
    """A callback setting the learning rate at each epoch's start: half a
    cosine from `base` to `floor * base` over `epochs` epochs (counted from
    the start of the `fit` call)."""
    return CosineDecay(base, epochs, floor)


class CosineDecay(keras.callbacks.Callback):
    """`cosine_decay`'s callback. Not Keras's `LearningRateScheduler`, which
    reads the rate through `np.array(variable)`: NumPy 2's DeprecationWarning
    at every epoch, an error under `python -W error` (tfdc.compress failed
    at its first epoch there)."""

    def __init__(self, base, epochs, floor=0.05):
        super().__init__()
        self.base, self.epochs, self.floor = base, epochs, floor

    def schedule(self, epoch, lr=None):
        """The rate of epoch `epoch` (from 0; `lr`, the current one, unused)."""
        t = min(epoch / max(self.epochs - 1, 1), 1.0)
        return float(self.base * (self.floor + (1 - self.floor) * 0.5 * (1 + np.cos(np.pi * t))))

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.schedule(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(to_numpy(self.model.optimizer.learning_rate))
