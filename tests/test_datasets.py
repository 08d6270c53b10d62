"""tfdc.datasets: MNIST files that are not MNIST give a clear, typed error;
a user's .npz splits as `tfdc compress` reads them."""

import re

import numpy as np
import pytest

from tfdc.datasets import load_digits, load_mnist, load_mnist_raw, load_npz_splits
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
    ("missing_key", r"need x_train, y_train, x_test, y_test\): y_train is not a file in"),
    ("label_12", r"y_test must be digit labels 0-9 \(whole numbers\), got int64 in \[0, 12\]"),
    ("bad_shape", "not MNIST-shaped"),
    ("scaled", r"x_train is float32; MNIST in Keras's layout holds uint8 images"),
])
def test_files_that_are_not_mnist(tmp_path, content, message):
    path = tmp_path / "data.npz"
    if content == "missing_key":
        np.savez(path, x_train=np.zeros((2, 28, 28)))
    elif content == "bad_shape":
        np.savez(path, x_train=np.zeros((2, 784)), y_train=np.zeros(2), x_test=np.zeros((1, 784)),
                 y_test=np.zeros(1))
    elif content == "label_12":  # a traceback from TensorFlow after the training
        np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.arange(2),
                 x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.array([0, 12]))
    elif content == "scaled":  # already in [0, 1]: it would be divided by 255 again
        np.savez(path, x_train=np.zeros((2, 28, 28), np.float32), y_train=np.zeros(2),
                 x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1))
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
    # Read from the environment variable, the message says so.
    import os
    saved = os.environ.get("TFDC_MNIST")
    os.environ["TFDC_MNIST"] = str(tmp_path / "nope.npz")
    try:
        with pytest.raises(DatasetUnavailableError, match=r"nope.npz' \(from TFDC_MNIST\) does "
                           "not exist"):
            load_mnist_raw()
    finally:
        os.environ["TFDC_MNIST"] = saved
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(DatasetUnavailableError, match="a symbolic link to nothing"):
        load_mnist_raw(str(loop))


def test_a_device_is_no_npz():
    # /dev/zero as DATA or --mnist was read until memory ran out (zipfile
    # looks for the archive's end); /dev/null stands in here: refused as a
    # device by name, it was "not an .npz file" before.
    with pytest.raises(DatasetUnavailableError, match="/dev/null is not a regular file"):
        load_mnist_raw("/dev/null")
    with pytest.raises(ValueError, match="/dev/null is not a regular file"):
        load_npz_splits("/dev/null")


def test_digits_are_shaped_like_mnist():
    pytest.importorskip("sklearn")
    (x, y), (xt, yt) = load_digits()
    assert x.shape[1:] == (28, 28) and len(x) + len(xt) == 1797 and set(y) == set(range(10))


def test_npz_splits_hold_out_the_last_fraction_without_x_val(tmp_path):
    path = tmp_path / "data.npz"
    x, y = np.arange(40, dtype=np.float32).reshape(20, 2), np.arange(20) % 3
    np.savez(path, x_train=x, y_train=y, x_test=x[:3], y_test=y[:3])
    (xt, yt), (xv, yv), test, note = load_npz_splits(str(path), 0.25)
    assert xt.tolist() == x[:15].tolist() and yv.tolist() == y[15:].tolist()
    assert test[0].tolist() == x[:3].tolist() and "last 25 % of x_train (5 examples" in note
    np.savez(path, x_train=x, y_train=y, x_val=x[:4], y_val=y[:4])
    (xt, _), (xv, _), test, note = load_npz_splits(str(path))
    assert len(xt) == 20 and xv.tolist() == x[:4].tolist() and test is None
    assert note.startswith("x_val, y_val of data.npz (4 examples") and "not read" not in note
    # A key it does not read (a typo) is named, not dropped unseen.
    np.savez(path, x_train=x, y_train=y, x_tset=x[:3], y_tset=y[:3])
    note = load_npz_splits(str(path))[3]
    assert note.endswith("; not read: x_tset, y_tset (the keys are x_train, y_train, x_val, "
                         "y_val, x_test, y_test)")


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((4, 2)), y=np.zeros(4)), "no x_train / y_train (it has x, y)"),
    (dict(x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_val=np.zeros((1, 2))),
     "has x_val without y_val"),
    (dict(x_train=np.zeros((4, 2)), y_train=np.zeros(3)), "x_train (4, 2) and y_train (3,)"),
    (dict(x_train=np.zeros((1, 2)), y_train=np.zeros(1)), "leaves no validation"),
    (dict(x_train=np.zeros((2, 2)), y_train=np.array([{}, {}], dtype=object)),
     "y_train holds Python objects (dtype object: rows of different lengths?)"),
    (dict(x_train=np.zeros((4, 2), "complex64"), y_train=np.zeros(4)),
     "x_train holds complex numbers (complex64); a Keras model takes real ones"),
    (b"not a zip", "is not an .npz file"),
    ({"x_train/0": np.zeros((4, 2)), "x_train/1": np.zeros((3, 2)), "y_train": np.zeros(4)},
     "x_train/0 (4, 2), x_train/1 (3, 2) and y_train (4,) must be non-empty arrays"),
    ({"x_train/0": np.zeros((4, 2)), "x_train/2": np.zeros((4, 2)), "y_train": np.zeros(4)},
     "x_train/0, x_train/2: a list takes x_train/0, x_train/1, ... with no gap"),
    ({"x_train/0": np.zeros((4, 2)), "x_train/a": np.zeros((4, 2)), "y_train": np.zeros(4)},
     "x_train/0, x_train/a: a list takes"),
    ({"x_train": np.zeros((4, 2)), "x_train/0": np.zeros((4, 2)), "y_train": np.zeros(4)},
     "has both x_train and x_train/0"),
    ({"x_train/a/b": np.zeros((4, 2)), "y_train": np.zeros(4)},
     "x_train/a/b: KEY must be a non-empty name without '/'"),
    ({"x_train/0": np.zeros((4, 2)), "x_train/1": np.zeros((4, 2)), "y_train": np.zeros(4),
      "x_val": np.zeros((2, 2)), "y_val": np.zeros(2)},
     "the split val has x_val, train has x_train/0, x_train/1: every split needs the same"),
    ({"x_train/0": np.zeros((4, 2)), "x_train/1": np.array([[0, 1], [2, np.nan]] * 2),
      "y_train": np.zeros(4)},
     "x_train/1 has NaN or infinite values in 2 examples (the first: example 1)"),
    (dict(x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_val=np.zeros((2, 2)),
          y_val=np.array([0, np.inf])), "y_val has NaN or infinite values in 1 example"),
])
def test_npz_splits_refuse_what_they_cannot_split(tmp_path, arrays, message):
    path = tmp_path / "data.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    else:
        np.savez(path, **arrays)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        load_npz_splits(str(path))
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="validation_split must be in"):
        load_npz_splits(str(path), 1.0)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_npz_splits(str(tmp_path / "nope.npz"))


def test_npz_splits_docstring_example_prints_what_it_says(tmp_path, monkeypatch, capsys):
    import textwrap
    block = textwrap.dedent(re.search(r"```python\n(.*?)```", load_npz_splits.__doc__,
                                      re.S).group(1))
    monkeypatch.chdir(tmp_path)  # it writes data.npz
    exec(block, {})
    expected = [line.strip() for line in re.findall(r"print\(.*\)\n# (.*)", block)]
    assert len(expected) == 2 and capsys.readouterr().out.strip().splitlines() == expected


def test_npz_splits_take_several_inputs_and_outputs(tmp_path):
    """x_train/NAME gives a dict, y_train/0, y_train/1 a list (in number
    order, 10 after 2), each split and the held-out part sliced alike."""
    path = tmp_path / "data.npz"
    image, side = np.arange(60.0).reshape(20, 3), np.arange(20.0)
    heads = {f"y_train/{i}": np.arange(20) * i for i in range(11)}
    np.savez(path, **{"x_train/image": image, "x_train/side": side}, **heads,
             **{"x_test/image": image[:2], "x_test/side": side[:2]},
             **{f"y_test/{i}": np.arange(2) for i in range(11)})
    (xt, yt), (xv, yv), (xs, ys), _ = load_npz_splits(str(path), 0.25)
    assert sorted(xt) == ["image", "side"] and xt["image"].tolist() == image[:15].tolist()
    assert xv["side"].tolist() == side[15:].tolist()
    assert isinstance(yt, list) and len(yt) == 11
    assert [int(a[1]) for a in yt] == list(range(11))     # y_train/10 last
    assert yv[10].tolist() == (np.arange(15, 20) * 10).tolist()
    assert len(xs["image"]) == 2 and len(ys) == 11
