"""Datasets for the demo, benchmarks and tests.

MNIST comes from, in order: the `path` argument, the `TFDC_MNIST` environment
variable, Keras's cache (`$KERAS_HOME/datasets/mnist.npz`, read directly) and
finally Keras's own download. Keras's `load_data()` checks the SHA-256 of its
own file and deletes others from its cache, so a local copy is read with
NumPy instead.
"""

import os
import zipfile

import numpy as np

from tfdc.errors import DatasetUnavailableError

MNIST_ENV = "TFDC_MNIST"


def _keras_cache_file():
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "datasets", "mnist.npz")


def _check_npz(path, what, error):
    """Raise `error` naming `path` unless it is an .npz (zip) archive."""
    if os.path.isdir(path):
        raise error(f"{path} is a directory; {what}")
    # A zip is read from its end: a device or a pipe is no archive (and
    # /dev/zero was read until memory ran out).
    if not os.path.isfile(path):
        raise error(f"{path} is not a regular file (a device or a pipe); {what}")
    # An .npz is a zip archive; anything else would reach NumPy's pickle
    # refusal, which does not say what is wrong.
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            damaged = f.read(2) == b"PK"  # a zip's start, without its end
        raise error(f"{path} is {'a truncated or damaged' if damaged else 'not an'} .npz file; "
                    f"{what}")


def _read_npz(path):
    _check_npz(path, "MNIST must be an mnist.npz in Keras's layout: a NumPy .npz archive with "
               "x_train, y_train, x_test, y_test", DatasetUnavailableError)
    try:
        with np.load(path) as f:
            data = (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        # KeyError's text is its quoted key: "'x_train is not a file ...'".
        why = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise DatasetUnavailableError(
            f"{path} is not a readable MNIST .npz (need x_train, y_train, x_test, y_test): {why}"
        ) from None
    for split, (x, y) in zip(("train", "test"), data):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise DatasetUnavailableError(
                f"{path}: x_{split} {x.shape} and y_{split} {y.shape} are not MNIST-shaped "
                "(n images of height x width, and n labels)")
        if x.dtype != np.uint8:
            # Scaled to [0, 1] here: images already scaled would be divided
            # by 255 twice, a model trained on near-black images.
            raise DatasetUnavailableError(
                f"{path}: x_{split} is {x.dtype}; MNIST in Keras's layout holds uint8 images "
                "(0-255, as keras.datasets.mnist.load_data() returns them), which tfdc scales "
                "to [0, 1] itself")
        if y.dtype.kind not in "iuf" or not np.all((y >= 0) & (y <= 9) & (y == np.round(y))):
            # Found by TensorFlow only after the training, as a traceback.
            raise DatasetUnavailableError(
                f"{path}: y_{split} must be digit labels 0-9 (whole numbers), got {y.dtype} "
                f"in [{y.min()}, {y.max()}]")
    return data


def load_mnist_raw(path=None):
    """Return `((x_train, y_train), (x_test, y_test))` as uint8 arrays."""
    where = "" if path else f" (from {MNIST_ENV})"
    path = path or os.environ.get(MNIST_ENV)
    if path:
        from tfdc.exporter import dangling_link
        if link := dangling_link(path):
            raise DatasetUnavailableError(f"MNIST file {path!r}{where} is {link}")
        if not os.path.exists(path):
            raise DatasetUnavailableError(f"MNIST file {path!r}{where} does not exist")
        return _read_npz(path)
    if os.path.exists(_keras_cache_file()):
        return _read_npz(_keras_cache_file())
    try:
        import keras
        return keras.datasets.mnist.load_data()
    except Exception as e:  # network errors come in many types
        raise DatasetUnavailableError(
            "MNIST is not available locally and could not be downloaded "
            f"({type(e).__name__}: {e}).\nFix: download mnist.npz once and set the "
            f"{MNIST_ENV} environment variable to its path (tfdc demo also takes --mnist PATH, "
            "or --dataset digits: scikit-learn's bundled 8x8 digits)."
        ) from None


def load_mnist(path=None, channels=False):
    """MNIST scaled to [0, 1] float32; `channels=True` adds a trailing axis of 1.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, labels as int64.
    """
    (xtr, ytr), (xte, yte) = load_mnist_raw(path)
    xtr = xtr.astype("float32") / 255.0
    xte = xte.astype("float32") / 255.0
    if channels:
        xtr, xte = xtr[..., None], xte[..., None]
    return (xtr, ytr.astype("int64")), (xte, yte.astype("int64"))


def load_digits(channels=False, test_fraction=0.2, seed=0):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), shaped like MNIST.

    No download: the images ship inside scikit-learn (the `demo` extra). Each
    8x8 image (values 0..16) is upscaled 3x (nearest neighbour) to 24x24 and
    zero-padded to 28x28, so the MNIST networks (`lenet_300_100`, `lenet5`)
    run on it unchanged. The split is a fixed shuffle (`seed`).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: float32 in [0, 1] of shape
        (n, 28, 28) (or (n, 28, 28, 1) with `channels=True`), labels int64.

    Raises:
        DatasetUnavailableError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:
        raise DatasetUnavailableError(
            "the digits dataset needs scikit-learn: pip install 'tfdc[demo]' "
            "(or pip install scikit-learn)") from None
    bunch = _sk_load_digits()
    images = bunch.images.astype("float32") / 16.0
    images = np.kron(images, np.ones((1, 3, 3), dtype="float32"))
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    labels = bunch.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    n_test = int(round(len(labels) * test_fraction))
    if channels:
        images = images[..., None]
    return (images[n_test:], labels[n_test:]), (images[:n_test], labels[:n_test])


def load_npz_splits(path, validation_split=0.1):
    """A user's data for `tfdc compress`: the splits of one NumPy `.npz`.

    The archive holds `x_train` and `y_train` (Keras's dataset layout), and
    optionally `x_val`, `y_val` (the validation data) and `x_test`, `y_test`
    (test data, never used to compress, only to report). Without `x_val`
    the last `validation_split` of the training arrays is held out, as
    Keras's `fit(validation_split=...)` does. Arrays are returned as stored
    (give the model the inputs it was trained on: e.g. float32 in [0, 1], or
    a `keras.layers.Rescaling` in the model).

    A model with several inputs or outputs takes one array each, named
    `x_train/KEY` (`y_train/KEY`, ...) instead of `x_train`: KEYs 0, 1, ...
    give a list in that order (`model.inputs` order), other KEYs a dict
    keyed by them (the model's input or output names), as `model.fit`
    takes them.

    Args:
        path: the `.npz` file.
        validation_split: fraction in (0, 1) held out when there is no
            `x_val`.

    Returns:
        `(train, validation, test, note)`: `(x, y)` pairs (`test` None
        without `x_test`; x, y an array, or a list or dict of arrays) and a
        line saying where the validation data came from (and naming the
        archive's keys it does not read).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an .npz, a missing or unpaired key, an array of
            Python objects or of complex numbers, arrays whose lengths
            differ, a NaN or infinity in a float array, or a split that
            leaves no example.

    Example:

    ```python
    import numpy as np
    from tfdc.datasets import load_npz_splits
    x = np.random.rand(100, 8).astype("float32")
    np.savez("data.npz", x_train=x, y_train=np.arange(100) % 3)
    train, val, test, note = load_npz_splits("data.npz")
    print(len(train[0]), len(val[0]), test, note)
    # 90 10 None the last 10 % of x_train (10 examples; no x_val in data.npz)
    np.savez("two.npz", **{"x_train/0": x, "x_train/1": x[:, :2], "y_train": np.arange(100) % 3})
    train, _, _, _ = load_npz_splits("two.npz")
    print([a.shape for a in train[0]])
    # [(90, 8), (90, 2)]
    ```
    """
    from tfdc.scan import _index, _items, _length, check_finite
    layout = ("it must be a NumPy .npz with x_train, y_train and optionally x_val, y_val "
              "(validation) and x_test, y_test (np.savez(path, x_train=..., y_train=...); "
              "several inputs or outputs: x_train/0, x_train/1, ... or x_train/NAME)")
    if not (isinstance(validation_split, (int, float)) and 0 < validation_split < 1):
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
    from tfdc.exporter import check_readable
    check_readable(path)
    _check_npz(path, layout, ValueError)
    names = [f"{xy}_{split}" for split in ("train", "val", "test") for xy in "xy"]
    try:
        with np.load(path) as f:
            keys, arrays = set(f.files), {}
            for key in sorted(keys):
                if key.split("/")[0] in names:
                    try:
                        arrays[key] = f[key]
                    except ValueError:  # an object array (a pickle), which np.load refuses
                        raise ValueError(
                            f"{path}: {key} holds Python objects (dtype object: rows of "
                            "different lengths?), which np.load does not read (a pickle runs "
                            "code); save it as numbers, one array with a row per "
                            "example") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz ({e}); {layout}") from None
    data = {name: _structure(path, name, arrays, layout) for name in names}
    splits = {}
    for split in ("train", "val", "test"):
        pair = [xy for xy in "xy" if data[f"{xy}_{split}"] is not None]
        if len(pair) == 1:
            other = "y" if pair[0] == "x" else "x"
            raise ValueError(f"{path}: has {pair[0]}_{split} without {other}_{split}; {layout}")
        if pair:
            splits[split] = (data[f"x_{split}"], data[f"y_{split}"])
    if "train" not in splits:
        found = ", ".join(sorted(keys)) or "no array"
        raise ValueError(f"{path}: no x_train / y_train (it has {found}); {layout}")
    for split, (x, y) in splits.items():
        shapes = {array_name(f"{xy}_{split}", k): a.shape
                  for xy, d in zip("xy", (x, y)) for k, a in _items(d)}
        lengths = {s[0] if s else None for s in shapes.values()}
        if len(lengths) != 1 or lengths == {None} or lengths == {0}:
            listed = [f"{name} {shape}" for name, shape in shapes.items()]
            listed = ", ".join(listed[:-1]) + " and " + listed[-1]
            raise ValueError(f"{path}: {listed} must be non-empty arrays with one row per "
                             "example")
    for split, (x, y) in splits.items():
        for xy, data, like in zip("xy", (x, y), splits["train"]):
            if [k for k, _ in _items(data)] != [k for k, _ in _items(like)]:
                raise ValueError(f"{path}: the split {split} has {_names(f'{xy}_{split}', data)}"
                                 f", train has {_names(f'{xy}_train', like)}: every split "
                                 "needs the same arrays")
        for xy, data in zip("xy", (x, y)):  # before anything is printed or trained
            for k, a in _items(data):
                check_finite(a, f"{path}", array_name(f"{xy}_{split}", k))
    train = splits["train"]
    # A key tfdc does not read (a typo such as x_tset) is said, not dropped unseen.
    unread = sorted(key for key in keys if key.split("/")[0] not in names)
    unread = (f"; not read: {', '.join(unread[:8])}{', ...' if len(unread) > 8 else ''} "
              "(the keys are x_train, y_train, x_val, y_val, x_test, y_test)") if unread else ""
    if "val" in splits:
        note = (f"x_val, y_val of {os.path.basename(path)} ({_length(splits['val'][0]):,} "
                f"examples){unread}")
        return train, splits["val"], splits.get("test"), note
    n = _length(train[0])
    held = int(round(n * validation_split))
    if not 1 <= held < n:
        raise ValueError(f"{path}: holding out {validation_split:g} of {n:,} training examples "
                         "leaves no validation or no training example; add x_val, y_val")
    note = (f"the last {100 * validation_split:g} % of x_train ({held:,} examples; no x_val in "
            f"{os.path.basename(path)}){unread}")
    kept, out = slice(None, n - held), slice(n - held, None)
    return ((_index(train[0], kept), _index(train[1], kept)),
            (_index(train[0], out), _index(train[1], out)), splits.get("test"), note)


def array_name(name, key):
    """How an .npz for `tfdc compress` names one of x's or y's arrays:
    `name` ("x_train") for a single array (`key` None), else `name/KEY`."""
    return name if key is None else f"{name}/{key}"


def _names(name, data):
    """The archive's names of a split's x or y (`name`: e.g. "x_val")."""
    from tfdc.scan import _items
    return ", ".join(array_name(name, k) for k, _ in _items(data))


def _structure(path, name, arrays, layout):
    """`name`'s data in the archive: the array `name`, a list of the arrays
    `name/0`, `name/1`, ..., a dict of `name/KEY`, or None."""
    parts = {key[len(name) + 1:]: a for key, a in arrays.items() if key.startswith(name + "/")}
    if name in arrays:
        if parts:
            raise ValueError(f"{path}: has both {name} and {name}/{sorted(parts)[0]}: one "
                             f"array {name}, or one {name}/KEY per input or output; {layout}")
        return arrays[name]
    if not parts:
        return None
    if any(not key or "/" in key for key in parts):
        bad = next(key for key in parts if not key or "/" in key)
        raise ValueError(f"{path}: {name}/{bad}: KEY must be a non-empty name without '/'; "
                         f"{layout}")
    numbered = [key for key in parts if key.isdigit()]
    if not numbered:
        return {key: parts[key] for key in sorted(parts)}
    order = sorted(parts, key=lambda k: int(k) if k.isdigit() else -1)
    if len(numbered) != len(parts) or [int(k) for k in order] != list(range(len(parts))) or \
            any(k != str(int(k)) for k in order):
        listed = ", ".join(f"{name}/{k}" for k in sorted(parts))
        raise ValueError(f"{path}: {listed}: a list takes {name}/0, {name}/1, ... with no gap "
                         f"(a dict: names that are not numbers); {layout}")
    return [parts[k] for k in order]
