"""Shared test set-up: quiet TensorFlow, a deterministic seed, real MNIST."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mnist.npz")
if "TFDC_MNIST" not in os.environ and os.path.exists(_SHARED_MNIST):
    os.environ["TFDC_MNIST"] = os.path.abspath(_SHARED_MNIST)

# The fused clustering op (tfdc.cluster_op) is built once per TensorFlow
# version; tests keep their builds out of the user's ~/.cache.
import tempfile  # noqa: E402

os.environ.setdefault("TFDC_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"tfdc-test-cache-{os.getuid()}"))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def mnist_small():
    """2,048 training and 1,024 test images of real MNIST (skips if absent)."""
    from tfdc.datasets import load_mnist
    from tfdc.errors import DatasetUnavailableError
    try:
        (xtr, ytr), (xte, yte) = load_mnist()
    except DatasetUnavailableError as e:
        pytest.skip(str(e))
    return (xtr[:2048], ytr[:2048]), (xte[:1024], yte[:1024])
