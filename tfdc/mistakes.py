"""Which examples a classifier gets wrong: the one rule behind every error tfdc
reports (`tfdc.compress`'s budgets, the sensitivity scan, the demo's LiteRT
test error), so a Keras model, its packed `.tflite` and a scan point are all
scored alike.

Outputs and labels it accepts:

* outputs `[N, C]`, `C >= 2` (probabilities or logits): the prediction is the
  argmax; labels are class indices `[N]` or `[N, 1]` in `[0, C)`, or one-hot
  (or soft) labels `[N, C]`, whose argmax is the class.
* outputs `[N, 1]` or `[N]` (one sigmoid unit, or its logit): the prediction
  is `output > 0.5` (`> 0` for a logit); labels are 0 or 1. Whether a model's
  unit is a logit is told by its activation (`output_from_logits`); one that
  is no sigmoid, trained with a loss that is no cross-entropy or hinge, has
  no threshold at all (`threshold_free`), and its callers score it by its
  loss.

Anything else (a regression output, labels of another shape, a class index
out of range) is a `ValueError` naming the labels and the offending value:
a silently wrong error would make every budget meaningless.

Example:

```python
import numpy as np
from tfdc.mistakes import mistakes
probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
print(mistakes(probs, np.array([0, 1, 1])))   # [False False  True]
```
"""

import numpy as np

__all__ = ["mistakes", "check_labels", "check_output_labels", "looks_like_logits",
           "majority_error", "loss_name", "loss_kind", "output_activation", "output_from_logits",
           "threshold_free"]


def mistakes(outputs, labels, from_logits=None, what="labels"):
    """Which examples a classifier's outputs get wrong.

    Args:
        outputs: the model's outputs, `[N, C]` (C >= 2 classes) or `[N, 1]` /
            `[N]` (one binary unit).
        labels: class indices `[N]` / `[N, 1]`, or one-hot labels `[N, C]`;
            0 / 1 for a binary unit.
        from_logits: binary unit only: True if it outputs a logit
            (threshold 0), False for a sigmoid probability (threshold 0.5),
            None to tell from the values (`looks_like_logits`).
        what: how error messages name the labels (e.g. "validation_data").

    Returns:
        A bool array `[N]`: True where the prediction is wrong.

    Example:

    ```python
    import numpy as np
    from tfdc.mistakes import mistakes
    logits = np.array([[-1.2], [0.3], [2.0]])
    print(mistakes(logits, np.array([0, 0, 1]), from_logits=True))  # [False  True False]
    ```
    """
    out = np.asarray(outputs)
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2 or out.shape[0] == 0:
        raise ValueError(f"{what}: top-1 error needs a classifier's outputs of shape [N, classes] "
                         f"or [N, 1] (binary), got shape {out.shape}")
    n, classes = out.shape
    if len(labels) != n:
        raise ValueError(f"{what}: {len(labels):,} labels for {n:,} outputs")
    y = _label_classes(labels, classes, what)
    if classes > 1:
        return np.argmax(out, axis=-1) != y
    if from_logits is None:
        from_logits = looks_like_logits(out)
    return (out[:, 0] > (0.0 if from_logits else 0.5)) != (y == 1)


def looks_like_logits(outputs):
    """Whether a classifier's outputs `[N, C]` are logits rather than
    probabilities: for one unit, any value outside [0, 1]; for several,
    any negative value or a row not summing to 1.

    Example:

    ```python
    import numpy as np
    from tfdc.mistakes import looks_like_logits
    print(looks_like_logits(np.array([[0.2, 0.8], [1.5, -0.3]])))   # True
    ```
    """
    out = np.asarray(outputs)
    if out.shape[-1] == 1:
        return bool(np.any((out < 0) | (out > 1)))
    return bool(np.any(_not_distributions(out)))


def loss_name(loss):
    """A compiled loss's name as the user gave it, for messages: a string
    as it is ("bce"), a function's or `keras.losses.Loss`'s name, the names
    of a list or dict of losses joined with " + ".

    Example:

    ```python
    import keras
    from tfdc.mistakes import loss_name
    print(loss_name(["mse", keras.losses.BinaryCrossentropy()]))   # mse + binary_crossentropy
    ```
    """
    if isinstance(loss, str):
        return loss
    if isinstance(loss, (list, tuple)):
        return " + ".join(loss_name(one) for one in loss if one is not None)
    if isinstance(loss, dict):
        return " + ".join(f"{k}: {loss_name(one)}" for k, one in loss.items() if one is not None)
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def loss_kind(loss):
    """`loss_name` in lower case with a string alias read as the loss it
    stands for ("bce" is "binary_crossentropy"): what every rule that asks
    "is it a cross-entropy?" tests, so that an alias is not taken for
    another kind of loss (a Distiller refused a student compiled with
    "bce" as a regression).

    Example:

    ```python
    from tfdc.mistakes import loss_kind
    print(loss_kind("bce"), loss_kind("MSE"))   # binary_crossentropy mean_squared_error
    ```
    """
    if isinstance(loss, str):
        import keras
        try:
            loss = keras.losses.get(loss)
        except ValueError:
            loss = loss.lower()
    if isinstance(loss, (list, tuple)):
        return " + ".join(loss_kind(one) for one in loss if one is not None)
    if isinstance(loss, dict):
        return " + ".join(f"{k}: {loss_kind(one)}" for k, one in loss.items() if one is not None)
    return loss_name(loss).lower()


def output_activation(model):
    """The activation of the layer that makes `model`'s one output
    ("softmax", "sigmoid", "linear", ...), None if it cannot be told.

    Example:

    ```python
    import keras
    from tfdc.mistakes import output_activation
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    print(output_activation(model))   # softmax
    ```
    """
    import keras
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    layer = None
    if outputs and len(outputs) == 1:
        history = getattr(outputs[0], "_keras_history", None)
        layer = getattr(history, "operation", None)
    elif getattr(model, "layers", None):
        layer = model.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if layer is not None and not isinstance(layer, keras.layers.Layer):
        # A Keras op called on the graph, keras.ops.softmax(z): an Operation,
        # no layer. A softmax over another axis than the classes' is none.
        name = _OP_ACTIVATIONS.get(type(layer).__name__)
        if name in ("softmax", "log_softmax") and getattr(layer, "axis", -1) not in (
                -1, len(outputs[0].shape) - 1):
            return None
        return name
    return getattr(getattr(layer, "activation", None), "__name__", None)


# The Keras ops (keras.ops.softmax, ...) whose result is an output's
# activation, by their Operation class.
_OP_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "LogSoftmax": "log_softmax",
                   "Relu": "relu", "Tanh": "tanh"}


def output_from_logits(model):
    """False if `model`'s output is a softmax or sigmoid probability, or
    one its compiled cross-entropy reads as a probability (from_logits=False,
    Keras's default: a linear unit trained under "bce" is cut at 0.5, as
    Keras's own accuracy cuts it, not at a logit's 0); True if it is linear
    (logits); None if it cannot be told (then the values decide:
    `looks_like_logits`).

    Example:

    ```python
    import keras
    from tfdc.mistakes import output_from_logits
    print(output_from_logits(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])))  # True
    ```
    """
    activation = output_activation(model)
    told = {"softmax": False, "sigmoid": False, "linear": True}.get(activation)
    if told is not False and _reads_probabilities(getattr(model, "loss", None)):
        return False
    return told


def _reads_probabilities(loss):
    """Whether a model's one compiled loss (or a list or dict of one) is a
    cross-entropy of probabilities (from_logits=False; a name or function
    has Keras's default, False)."""
    if isinstance(loss, dict) and len(loss) == 1:
        (loss,) = loss.values()
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        (loss,) = loss
    if loss is None or isinstance(loss, (list, tuple, dict)) or \
            "crossentropy" not in loss_kind(loss):
        return False
    get_config = getattr(loss, "get_config", None)
    return not (callable(get_config) and get_config().get("from_logits", False))


def threshold_free(model, outputs):
    """The compiled loss's name where a model's one output unit has no
    decision threshold, else None. Such a unit is not a sigmoid (linear, or
    an activation that cannot be told) and is trained with a loss that is
    no cross-entropy or hinge, e.g. mean squared error on 0 / 1 targets:
    its cut is 0.5, not a logit's 0, and read as a logit a model 4.6 %
    wrong was scored 35.8 %. It is scored by its loss, as a regression is.
    A sigmoid's probability is cut at 0.5 whatever its loss.

    Args:
        model: a compiled Keras model.
        outputs: its outputs on some examples, `[N, units]`.

    Example:

    ```python
    import keras, numpy as np
    from tfdc.mistakes import threshold_free
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    print(threshold_free(model, np.zeros((2, 1))))   # mse
    ```
    """
    loss = getattr(model, "loss", None)
    if loss is None or np.ndim(outputs) != 2 or np.shape(outputs)[-1] != 1:
        return None
    if output_from_logits(model) is False or isinstance(loss, (list, tuple, dict)):
        return None
    if any(word in loss_kind(loss) for word in ("crossentropy", "hinge")):
        return None
    return loss_name(loss)


def _not_distributions(rows):
    """Per row of `rows` `[N, C]`: True where it is not a probability
    distribution (a negative value, or a sum not within 1e-3 of 1)."""
    return ~((rows >= 0).all(axis=-1) & np.isclose(rows.sum(axis=-1), 1.0, atol=1e-3))


def check_labels(labels, classes, what="labels", soft=False):
    """The labels of a classifier with `classes` outputs, checked: class
    indices as an int64 array `[N]`, or one-hot labels `[N, classes]` as
    given. Raises `ValueError` (naming `what` and the first bad label) for
    any other shape, a fractional index or one out of range. `soft`
    (training labels): a binary unit's labels may be probabilities in
    [0, 1] too (label smoothing), returned as float; a softmax's rows
    already may.

    Example:

    ```python
    import numpy as np
    from tfdc.mistakes import check_labels
    print(check_labels(np.array([[2], [0]]), 3))   # [2 0]
    ```
    """
    y = np.asarray(labels)
    if classes > 1 and y.ndim == 2 and y.shape[1] == classes:
        rows = y.astype(np.float64)
        bad = _not_distributions(rows)
        if bad.any():
            i = int(np.argmax(bad))
            # Its sum and smallest value: a long row prints cut ("0. 1. ... 0.").
            raise ValueError(f"{what}: labels of shape {y.shape} must be one-hot (or class "
                             f"probabilities: >= 0, each row summing to 1); the row of example "
                             f"{i:,} sums to {rows[i].sum():.4g}, its smallest value "
                             f"{rows[i].min():.4g}: "
                             f"{np.array2string(rows[i], precision=3, threshold=8)}")
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        one_hot = f" or one-hot [N, {classes}]" if classes > 1 else ""
        raise ValueError(f"{what}: labels must be class indices [N]{one_hot} for a model with "
                         f"{classes} output{'s' if classes > 1 else ''}, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating):
            raise ValueError(f"{what}: labels must be class indices, got dtype {y.dtype}")
        fractional = ~np.isfinite(y) | (np.mod(y, 1) != 0)
        if soft and classes == 1 and fractional.any():
            outside = ~np.isfinite(y) | (y < 0) | (y > 1)
            if not outside.any():
                return y
            raise ValueError(f"{what}: labels must be in [0, 1] for a model with one output (0 "
                             "or 1, or smoothed)" + _first_bad(y, outside))
        if fractional.any():
            kind = "whole class indices" if classes > 1 else (
                "0 or 1 for a model with one output (scored as a binary classifier; smoothed "
                "labels train, the validation labels score)")
            raise ValueError(f"{what}: labels must be {kind}" + _first_bad(y, fractional))
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= max(classes, 2))  # a binary unit takes labels 0 and 1
    if bad.any():
        kind = ("0 or 1 for a model with one output (scored as a binary classifier: tfdc "
                "measures top-1 classification error)") if classes == 1 else \
            f"in [0, {classes}) for {classes} outputs"
        raise ValueError(f"{what}: labels must be {kind}" + _first_bad(y, bad))
    return y


def check_output_labels(model, labels, what="labels"):
    """The labels of a model with several outputs, each checked against the
    loss its output is compiled with: class indices or one-hot rows for a
    categorical cross-entropy (`check_labels`), values in [0, 1] for a
    binary one; an output with another loss is not checked. `labels`: a
    list in the order of `model.outputs`, or a dict keyed by output name.
    Raises `ValueError` naming `what`, the output and the first bad label
    (swapped label arrays trained to a negative loss, reported as met).

    Example:

    ```python
    import keras, numpy as np
    from tfdc.mistakes import check_output_labels
    x = keras.Input((4,))
    model = keras.Model(x, [keras.layers.Dense(3, activation="softmax", name="kind")(x),
                            keras.layers.Dense(1, activation="sigmoid", name="flag")(x)])
    model.compile("adam", ["sparse_categorical_crossentropy", "binary_crossentropy"])
    check_output_labels(model, [np.array([0, 2]), np.array([1, 0])])   # fine
    ```
    """
    loss, names = getattr(model, "loss", None), list(model.output_names)
    for i, (name, output) in enumerate(zip(names, model.outputs)):
        one = (loss.get(name) if isinstance(loss, dict) else
               loss[i] if isinstance(loss, (list, tuple)) and i < len(loss) else loss)
        label = labels.get(name) if isinstance(labels, dict) else labels[i]
        kind = loss_kind(one) if one is not None else ""
        where = f"{what}: output {name!r}"
        if label is None or not kind:
            continue
        if "categorical_crossentropy" in kind:
            check_labels(label, int(output.shape[-1]), where)
        elif "binary" in kind and "crossentropy" in kind:
            y = np.asarray(label, dtype=np.float64)
            bad = ~((y >= 0) & (y <= 1))
            if bad.any():
                i_bad = int(np.argmax(bad.reshape(len(y), -1).any(axis=1))) if y.ndim else 0
                raise ValueError(f"{where}: labels must be in [0, 1] for its {loss_name(one)}; "
                                 f"the label of example {i_bad:,} is "
                                 f"{np.array2string(np.atleast_1d(y[i_bad]), threshold=8)}")


def majority_error(labels, classes, what="labels"):
    """The error of always answering the most frequent class, and that
    class: what a classifier that ignores its input scores. A trained
    model's error is far below it; one at or above it is untrained, or gets
    its inputs preprocessed otherwise than in training, or labels not
    paired with them.

    Args:
        labels, classes, what: as for `check_labels` (one-hot labels count
            their argmax; `classes` 1 is a binary unit, labels 0 / 1).

    Returns:
        `(error, class)`: a fraction in [0, 1) and the class index.

    Example:

    ```python
    import numpy as np
    from tfdc.mistakes import majority_error
    print(majority_error(np.array([2, 0, 2, 2]), 3))   # (0.25, 2)
    ```
    """
    y = _label_classes(labels, classes, what)
    if y.size == 0:
        raise ValueError(f"{what}: no labels")
    counts = np.bincount(y, minlength=max(classes, 2))
    best = int(np.argmax(counts))
    return 1.0 - float(counts[best]) / y.size, best


def _label_classes(labels, classes, what):
    """`check_labels`, then each example's class index `[N]` (a one-hot or
    soft label's argmax)."""
    y = check_labels(labels, classes, what)
    return np.argmax(y, axis=-1) if y.ndim == 2 else y


def _first_bad(y, bad):
    i = int(np.argmax(bad))
    return f"; the label of example {i:,} is {y[i].item()!r}"
