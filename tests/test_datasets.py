"""tfdc.datasets: MNIST files that are not MNIST give a clear, typed error."""

import numpy as np
import pytest

from tfdc.datasets import load_digits, load_mnist, load_mnist_raw
from tfdc.errors import DatasetUnavailableError


def test_a_real_mnist_file_loads(tmp_path):
    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
             y_train=np.arange(5), x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.arange(2))
    (x, y), (xt, yt) = load_mnist(str(path), channels=True)
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32 and x.max() <= 1.0
    assert yt.tolist() == [0, 1]


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "is not an .npz file"),
    (b"", "is not an .npz file"),
    ("missing_key", "need x_train, y_train, x_test, y_test"),
    ("bad_shape", "not MNIST-shaped"),
])
def test_files_that_are_not_mnist(tmp_path, content, message):
    path = tmp_path / "data.npz"
    if content == "missing_key":
        np.savez(path, x_train=np.zeros((2, 28, 28)))
    elif content == "bad_shape":
        np.savez(path, x_train=np.zeros((2, 784)), y_train=np.zeros(2), x_test=np.zeros((1, 784)),
                 y_test=np.zeros(1))
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetUnavailableError, match=message) as error:
        load_mnist_raw(str(path))
    assert str(path) in str(error.value) and "pickle" not in str(error.value)


def test_a_folder_or_a_missing_file(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="is a directory"):
        load_mnist_raw(str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        load_mnist_raw(str(tmp_path / "nope.npz"))


def test_digits_are_shaped_like_mnist():
    pytest.importorskip("sklearn")
    (x, y), (xt, yt) = load_digits()
    assert x.shape[1:] == (28, 28) and len(x) + len(xt) == 1797 and set(y) == set(range(10))
