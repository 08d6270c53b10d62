"""tfdc.mistakes: the one top-1 error rule, on every output / label layout."""

import keras
import numpy as np
import pytest

from tfdc.mistakes import (check_labels, loss_kind, mistakes, output_activation,
                           output_from_logits, threshold_free)

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])


@pytest.mark.parametrize("labels", [
    np.array([0, 2, 0, 1]),                       # class indices
    np.array([[0], [2], [0], [1]]),               # [N, 1]
    np.array([0.0, 2.0, 0.0, 1.0]),               # whole floats
    np.eye(3)[[0, 2, 0, 1]],                      # one-hot
    np.array([[0.8, 0.1, 0.1], [0, 0.1, 0.9], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]]),  # soft
])
def test_multiclass_layouts_agree(labels):
    # argmax of PROBS: 0, 2, 1, 0 (a tie goes to the first class).
    np.testing.assert_array_equal(mistakes(PROBS, labels), [False, False, True, True])


def test_logits_score_like_their_softmax():
    logits = np.log(PROBS) + 3.0
    y = np.array([1, 2, 1, 0])
    np.testing.assert_array_equal(mistakes(logits, y), mistakes(PROBS, y))


@pytest.mark.parametrize("outputs, from_logits, expected", [
    (np.array([[0.2], [0.6], [0.9], [0.4]]), False, [False, True, False, True]),
    (np.array([0.2, 0.6, 0.9, 0.4]), None, [False, True, False, True]),   # [N], told: probs
    (np.array([[-1.0], [0.3], [2.0], [-0.2]]), True, [False, True, False, True]),
    (np.array([[-1.0], [0.3], [2.0], [-0.2]]), None, [False, True, False, True]),  # told: logits
    # Told they are logits, every positive value is class 1.
    (np.array([[0.2], [0.3], [0.9], [0.4]]), True, [True, True, False, False]),
    (np.array([[0.2], [0.3], [0.9], [0.4]]), None, [False, False, False, True]),
])
def test_binary_unit(outputs, from_logits, expected):
    y = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(mistakes(outputs, y, from_logits), expected)


@pytest.mark.parametrize("outputs, labels, message", [
    (PROBS, np.array([0, 3, 0, 1]), r"validation_data: labels must be in \[0, 3\) for 3 "
                                    r"outputs; the label of example 1 is 3"),
    (PROBS, np.array([0, -1, 0, 1]), "the label of example 1 is -1"),
    (PROBS, np.array([0, 1.5, 0, 1]), "whole class indices; the label of example 1 is 1.5"),
    (PROBS, np.array([0, np.nan, 0, 1]), "whole class indices; the label of example 1 is nan"),
    (PROBS, np.array(["a", "b", "c", "d"]), "must be class indices, got dtype <U1"),
    (PROBS, np.zeros((4, 2)), r"class indices \[N\] or one-hot \[N, 3\] .* got shape \(4, 2\)"),
    (PROBS, np.array([0, 1]), "2 labels for 4 outputs"),
    # Regression targets of the outputs' shape are not class probabilities.
    (PROBS, PROBS - 0.5,
     r"labels of shape \(4, 3\) must be one-hot .* the row of example 0 sums to -0.5, its "
     r"smallest value -0.4: \[ 0.2 -0.3 -0.4\]"),
    (np.array([[0.5], [0.7]]), np.array([0, 7]), "0 or 1 for a model with one output"),
    (np.zeros((4, 2, 3)), np.array([0, 1, 0, 1]), r"outputs of shape \[N, classes\]"),
    (np.zeros((0, 3)), np.zeros(0), r"outputs of shape \[N, classes\]"),
])
def test_bad_labels_and_outputs_raise(outputs, labels, message):
    with pytest.raises(ValueError, match=message):
        mistakes(outputs, labels, what="validation_data")


def test_check_labels_returns_indices_or_one_hot():
    np.testing.assert_array_equal(check_labels(np.array([[2], [0]]), 3), [2, 0])
    assert check_labels(np.array([True, False]), 1).dtype == np.int64
    one_hot = np.eye(4)[[1, 3]]
    assert check_labels(one_hot, 4) is not None and check_labels(one_hot, 4).shape == (2, 4)
    with pytest.raises(ValueError, match="train_data: labels must be in"):
        check_labels(np.arange(5), 4, "train_data")
    # Training labels of a binary unit may be smoothed (0.05 / 0.95), as a
    # softmax's one-hot rows may; validation labels are classes.
    smooth = np.array([0.05, 0.95, 0.95])
    np.testing.assert_array_equal(check_labels(smooth, 1, "train_data", soft=True), smooth)
    # A binary unit's are 0 or 1 (they were called "whole class indices").
    with pytest.raises(ValueError, match=r"^validation_data: labels must be 0 or 1 for a model "
                       r"with one output \(scored as a binary classifier; smoothed labels train, "
                       r"the validation labels score\); the label of example 0 is 0.05"):
        check_labels(smooth, 1, "validation_data")
    with pytest.raises(ValueError, match=r"^train_data: labels must be in \[0, 1\] for a model "
                       r"with one output \(0 or 1, or smoothed\); the label of example 1 is "
                       r"1.5"):
        check_labels(np.array([0.5, 1.5]), 1, "train_data", soft=True)


def test_docstring_examples_print_what_their_comments_say(capsys):
    import re
    import textwrap

    import tfdc.mistakes as module
    docs = [module.__doc__, mistakes.__doc__, check_labels.__doc__,
            module.looks_like_logits.__doc__, module.majority_error.__doc__]
    blocks = [b for doc in docs for b in re.findall(r"```python\n(.*?)```", doc, re.S)]
    assert len(blocks) == 5
    for block in map(textwrap.dedent, blocks):
        exec(block, {})
        printed = capsys.readouterr().out.strip()
        expected = re.search(r"print\(.*\)\s+# (.*)", block).group(1).strip()
        assert printed == expected, block


@pytest.mark.parametrize("labels,classes,expected", [
    (np.array([3, 1, 3, 0, 3, 1]), 4, (0.5, 3)),
    (np.array([[3], [1], [3], [0], [3], [1]]), 4, (0.5, 3)),        # [N, 1]
    (np.eye(4)[[3, 1, 3, 0, 3, 1]], 4, (0.5, 3)),                   # one-hot
    (np.array([0.0, 1.0, 1.0, 1.0]), 1, (0.25, 1)),                 # a binary unit
    (np.array([2, 2]), 3, (0.0, 2)),
])
def test_majority_error_is_the_error_of_always_answering_one_class(labels, classes, expected):
    from tfdc.mistakes import majority_error
    error, label = majority_error(labels, classes)
    assert (error, label) == pytest.approx(expected)
    # The same, by the one rule: a constant output for that class.
    constant = np.tile(np.eye(max(classes, 2))[label], (len(labels), 1))
    if classes == 1:
        constant = np.full((len(labels), 1), float(label))
    assert np.mean(mistakes(constant, labels, from_logits=False)) == pytest.approx(error)


def test_majority_error_checks_the_labels():
    from tfdc.mistakes import majority_error
    with pytest.raises(ValueError, match="validation_data: labels must be in \\[0, 3\\)"):
        majority_error(np.array([0, 5]), 3, "validation_data")
    with pytest.raises(ValueError, match="no labels"):
        majority_error(np.zeros(0, int), 3)


def test_labels_of_several_outputs_are_checked_against_their_losses(tmp_path):
    # Swapped label arrays (class indices for a binary head) trained to a
    # negative cross-entropy and were reported as met by tfdc.compress.
    import keras

    import tfdc
    from tfdc.mistakes import check_output_labels
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    model = keras.Model(x, [keras.layers.Dense(4, activation="softmax", name="kind")(x),
                            keras.layers.Dense(1, activation="sigmoid", name="flag")(x)])
    model.compile("adam", ["sparse_categorical_crossentropy", "binary_crossentropy"])
    rng = np.random.default_rng(0)
    xs, kind, flag = rng.random((64, 6)).astype("float32"), np.arange(64) % 4, np.arange(64) % 2
    check_output_labels(model, [kind, flag])
    check_output_labels(model, {"kind": kind, "flag": flag.astype("float32")})
    with pytest.raises(ValueError, match=r"output 'flag': labels must be in \[0, 1\] for its "
                       r"binary_crossentropy; the label of example 2 is \[2\.\]"):
        check_output_labels(model, [flag, kind], "validation_data")
    with pytest.raises(ValueError, match=r"output 'kind': labels must be in \[0, 4\)"):
        check_output_labels(model, [kind + 1, flag])
    # tfdc.compress refuses them before any training.
    with pytest.raises(ValueError, match=r"validation_data: output 'flag': labels must be in"):
        tfdc.compress(model, (xs, [kind, flag]), (xs, [flag, kind]), target_bytes=2000,
                      path=tmp_path / "m.tflite", verbose=0)
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("loss, kind", [
    ("bce", "binary_crossentropy"),   # an alias, as Keras reads it
    ("Hinge", "hinge"),
    ("not_a_loss", "not_a_loss"),
    (keras.losses.BinaryCrossentropy(from_logits=True), "binary_crossentropy"),
    (["mse", None, "bce"], "mean_squared_error + binary_crossentropy"),
    ({"a": "sparse_categorical_crossentropy"}, "a: sparse_categorical_crossentropy"),
])
def test_loss_kind_reads_aliases(loss, kind):
    assert loss_kind(loss) == kind


@pytest.mark.parametrize("activation, loss, free", [
    (None, "mse", "mse"),          # a score trained to 0 / 1: cut at 0.5, not a logit's 0
    (None, "mean_absolute_error", "mean_absolute_error"),
    ("relu", keras.losses.MeanSquaredError(), "mean_squared_error"),   # not a sigmoid either
    (None, "bce", None),           # a logit, by its alias
    (None, keras.losses.BinaryCrossentropy(from_logits=True), None),
    (None, "hinge", None),         # a margin: cut at 0
    ("sigmoid", "mse", None),      # a probability: cut at 0.5 whatever its loss
])
def test_threshold_free_is_one_unit_no_sigmoid_under_no_classification_loss(
        activation, loss, free):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation=activation)])
    model.compile(loss=loss)
    assert threshold_free(model, np.zeros((2, 1))) == free
    assert threshold_free(model, np.zeros((2, 2))) is None   # two units: an argmax


def test_threshold_free_needs_a_compiled_loss():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    assert threshold_free(model, np.zeros((2, 1))) is None   # a logit by default


@pytest.mark.parametrize("activation, loss, from_logits", [
    (None, None, True),            # not compiled: a linear unit is a logit
    (None, keras.losses.BinaryCrossentropy(from_logits=True), True),
    (None, "hinge", True),
    # Compiled with a cross-entropy of probabilities (Keras's default): Keras
    # reads and cuts the outputs at 0.5, and so does tfdc (it cut at 0).
    (None, "bce", False),
    (None, ["binary_crossentropy"], False),
    (None, keras.losses.BinaryCrossentropy(), False),
    ("sigmoid", keras.losses.BinaryCrossentropy(from_logits=True), False),
])
def test_output_from_logits_follows_the_activation_and_the_loss(activation, loss, from_logits):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation=activation)])
    if loss is not None:
        model.compile(loss=loss)
    assert output_from_logits(model) is from_logits


@pytest.mark.parametrize("op, activation", [
    (keras.ops.softmax, "softmax"), (keras.ops.sigmoid, "sigmoid"),
    (keras.ops.log_softmax, "log_softmax"),
    (lambda z: keras.ops.softmax(z, axis=0), None),    # over the batch: no classes
    (lambda z: 2.0 * z, None),
])
def test_output_activation_of_a_keras_op(op, activation):
    # keras.ops.softmax on the graph is an Operation, no layer: it was not
    # told, and a Distiller read its probabilities as logits.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, op(keras.layers.Dense(4)(inputs)))
    assert output_activation(model) == activation
