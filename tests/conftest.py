"""Shared test set-up: quiet TensorFlow, a deterministic seed, real MNIST."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Under `pytest -n N` each worker's TensorFlow sized its thread pools for
# every core, so N workers ran N times too many threads: a share of the
# cores each (test_compress.py on 2 cores, -n 2: 236 s, one thread each 213 s).
# Set before TensorFlow is imported; the tests' subprocesses inherit it.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _SHARE = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _SHARE)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", _SHARE)
_SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mnist.npz")
if "TFDC_MNIST" not in os.environ and os.path.exists(_SHARED_MNIST):
    os.environ["TFDC_MNIST"] = os.path.abspath(_SHARED_MNIST)

# The fused clustering op (tfdc.cluster_op) is built once per TensorFlow
# version; tests keep their builds out of the user's ~/.cache.
import tempfile  # noqa: E402

os.environ.setdefault("TFDC_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"tfdc-test-cache-{os.getuid()}"))

import pytest  # noqa: E402


_FROZEN = []


@pytest.fixture(autouse=True)
def _seed():
    import keras
    if not _FROZEN:
        # The objects that importing TensorFlow and Keras (and collecting the
        # tests) made live for the whole session, millions of them, and each
        # full collection walked them all: 0.1-0.3 s a collection (the
        # converter asks for one per conversion), 15 % of a worker's CPU
        # time on compress tests. Frozen, collections leave them out.
        gc.freeze()
        _FROZEN.append(True)
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


@pytest.fixture(scope="session")
def keras_user_files(tmp_path_factory, mnist_small):
    """A user's files for `tfdc compress` and `tfdc plan`: an MLP trained
    to convergence on 1,792 MNIST images (saved as .keras), and an .npz
    with those images, 256 validation and 512 test images."""
    import keras
    import numpy as np
    (x, y), (xt, yt) = mnist_small
    folder = tmp_path_factory.mktemp("compress")
    keras.utils.set_random_seed(0)
    model = mlp(32)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:1792], y[:1792], epochs=15, batch_size=64, verbose=0)
    paths = {"model": str(folder / "mlp.keras"), "data": str(folder / "data.npz"),
             "folder": folder}
    model.save(paths["model"])
    np.savez(paths["data"], x_train=x[:1792], y_train=y[:1792], x_val=x[1792:], y_val=y[1792:],
             x_test=xt[:512], y_test=yt[:512])
    return paths


def run_python(script, *options, cwd=None):
    """`script` run by a fresh Python (with interpreter `options`, e.g.
    "-W", "error") with this checkout first on its path:
    the `subprocess.CompletedProcess`, its output as text."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, *options, "-c", script], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def run_cli(capsys, *argv):
    """`tfdc ARGV` run in this process: (exit status, stdout, stderr)."""
    from tfdc.cli import main
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *words):
    """A usage mistake's report: exit status 2 and one `tfdc: error:` line
    pointing at the command's --help, naming each of `words`."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfdc: error:"), err
    assert "--help')" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def assert_one_line_error(code, err, *words):
    """A user mistake's report: exit status 1 and one `tfdc: error:` line,
    no traceback, naming each of `words`."""
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfdc: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def mlp(*hidden):
    """A LeNet-300-100-shaped MLP for 28x28 inputs with `hidden` widths:
    ReLU layers fc1, fc2, … and a softmax classifier of 10 after them."""
    import keras
    layers = [keras.layers.Dense(w, activation="relu", name=f"fc{i}")
              for i, w in enumerate(hidden, 1)]
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), *layers,
                             keras.layers.Dense(10, activation="softmax",
                                                name=f"fc{len(hidden) + 1}")])


def trained_mlp(train, *hidden, seed):
    """`mlp(*hidden)` seeded with `seed`, trained 3 epochs with Adam on `train`."""
    import keras
    keras.utils.set_random_seed(seed)
    model = mlp(*hidden)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*train, epochs=3, batch_size=64, verbose=0)
    return model


# Every packed model the suite makes, for tests/test_native_arm.py, which runs
# last and decodes them all on ARM (under qemu-user) and on x86-64. Packs made
# in this process are recorded by wrapping tfdc.pack.pack_tflite (the real
# function still runs; the wrapper only keeps a copy of its output); packed
# files written by subprocesses (the CLI tests) are found under the session's
# temporary directory at the end.
PACKED_BY_SUITE = {}  # sha256 hex -> packed bytes
_PACKED_LIMIT = 256 << 20  # bytes kept in memory at most


def _record_packs():
    import functools
    import hashlib

    import tfdc.pack
    original = tfdc.pack.pack_tflite

    @functools.wraps(original)
    def pack_tflite(*args, **kwargs):
        result = original(*args, **kwargs)
        try:  # recording must never change what the caller sees
            packed = bytes(result[0] if isinstance(result, tuple) else result)
            if sum(map(len, PACKED_BY_SUITE.values())) + len(packed) <= _PACKED_LIMIT:
                PACKED_BY_SUITE.setdefault(hashlib.sha256(packed).hexdigest(), packed)
        except Exception:
            pass
        return result

    tfdc.pack.pack_tflite = pack_tflite


_record_packs()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "after_suite: runs after every other test (it uses what they produced)")
    config.addinivalue_line(
        "markers", "slow: a docstring example that trains for tens of seconds")


def pytest_collection_modifyitems(config, items):
    last = [item for item in items if item.get_closest_marker("after_suite")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("after_suite")] + last
