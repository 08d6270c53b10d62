"""tfdc.sensitivity: per-layer curves measured on a real trained model."""

import json
import re
import struct

import keras
import numpy as np
import pytest

import tfdc
from tfdc.bytecost import compress_kernel
from tfdc.scan import Evaluator, Sensitivity

from conftest import trained_mlp


@pytest.fixture(scope="module")
def model_and_data(mnist_small):
    (x, y), (xv, yv) = mnist_small
    return trained_mlp((x, y), 64, 32, seed=7), (xv, yv)


def test_points_are_the_model_with_one_layer_changed(model_and_data):
    model, (xv, yv) = model_and_data
    before = [v.numpy().copy() for v in model.weights]
    lines = []
    sens = tfdc.sensitivity(model, (xv, yv), sparsities=[0.5, 0.9, 0.99], bits=[2, 5],
                            samples=None, verbose=1, log=lines.append)
    # Where it is, and an estimate of the time left (compress showed a deep
    # model's scan as 14 silent minutes).
    assert [re.sub(r"[\d.]+ s", "T s", line) for line in lines] == [
        "sensitivity: fc1 (50,176 weights) done, layer 1 of 3, T s, about T s left",
        "sensitivity: fc2 (2,048 weights) done, layer 2 of 3, T s, about T s left",
        "sensitivity: fc3 (320 weights) done, layer 3 of 3, T s"]
    # The model is left exactly as it was.
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert sens.layers == ["fc1", "fc2", "fc3"]
    assert sens.weights == {"fc1": 784 * 64, "fc2": 64 * 32, "fc3": 320}
    assert sens.kinds == {"fc1": "dense", "fc2": "dense", "fc3": "dense"}
    assert sens.samples == len(yv)
    # Baseline: what Keras itself measures on the same data.
    loss = model.evaluate(xv, yv, verbose=0, batch_size=256)
    assert sens.baseline_loss == pytest.approx(loss, rel=1e-4)
    error = np.mean(np.argmax(model.predict(xv, verbose=0), -1) != yv)
    assert sens.baseline_error == pytest.approx(error)
    # One point by hand: fc2 pruned to 90 %, nothing else.
    kernel = model.get_layer("fc2").kernel
    kernel.assign(compress_kernel(before[2], 0.9))
    pred = model.predict(xv, verbose=0)
    kernel.assign(before[2])
    assert sens.error["fc2"][("sparsity", 0.9)] == pytest.approx(np.mean(pred.argmax(-1) != yv))
    assert sens.loss["fc2"][("sparsity", 0.9)] == pytest.approx(float(np.mean(
        keras.losses.sparse_categorical_crossentropy(yv, pred))), rel=1e-4)
    # Pruning 99 % of a layer without retraining hurts; 8-bit-ish does not.
    for name in sens.layers:
        assert sens.loss[name][("sparsity", 0.99)] > sens.baseline_loss + 0.1
        assert sens.loss[name][("bits", 5)] < sens.baseline_loss + 0.05
    xs, ys = sens.curve("fc1", "error", "sparsity")
    assert xs == [0.0, 0.5, 0.9, 0.99] and ys[0] == sens.baseline_error


def test_subset_and_batches(model_and_data):
    """A dataset of batches gives the same curves as the arrays; `samples`
    limits the examples used."""
    import tensorflow as tf
    model, (xv, yv) = model_and_data
    grid = dict(sparsities=[0.8], bits=[3], layers=["fc2"])
    arrays = tfdc.sensitivity(model, (xv, yv), samples=None, batch_size=100, **grid)
    dataset = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(128)
    batched = tfdc.sensitivity(model, dataset, samples=None, **grid)
    assert batched.layers == ["fc2"]
    assert batched.loss["fc2"] == pytest.approx(arrays.loss["fc2"], rel=1e-4)
    assert batched.error["fc2"] == pytest.approx(arrays.error["fc2"])
    sampled = tfdc.sensitivity(model, (xv, yv), samples=300, **grid)
    assert (sampled.samples, sampled.given, arrays.given, batched.given) == (300, len(yv),
                                                                             len(yv), len(yv))
    # The table says the scan used a subset (tfdc plan said "on 4,000
    # validation examples" of 5,000 given, and no more).
    assert f"on 300 validation examples (a random 300 of the {len(yv):,} given: samples=)" \
        in sampled.to_markdown()
    assert "given" not in arrays.to_markdown()
    assert tfdc.Sensitivity.from_json(sampled.to_json()) == sampled
    plan = tfdc.plan(model, (xv, yv), target_bytes=200_000, samples=300, **grid)
    assert (plan.sensitivity.samples, plan.sensitivity.given) == (300, len(yv))


def test_a_dataset_is_sampled_at_random_not_cut_after_its_first_examples(model_and_data):
    """A dataset sorted by class, read up to `samples`, was scanned on its
    first classes alone (tfdc.plan then warned that the labels missed
    classes the user had given)."""
    import tensorflow as tf
    from tfdc.scan import _take
    model, (xv, yv) = model_and_data
    order = np.argsort(yv, kind="stable")
    xs, ys = xv[order], yv[order]
    grid = dict(sparsities=[0.8], bits=[3], layers=["fc2"])
    picked = []
    for batch in (128, 77):
        dataset = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(batch)
        sens = tfdc.sensitivity(model, dataset, samples=300, **grid)
        assert (sens.samples, sens.given) == (300, len(yv))
        assert f"(a random 300 of the {len(yv):,} given: samples=)" in sens.to_markdown()
        x, y, given = _take(dataset, 300)
        assert given == len(yv) and len(x) == len(y) == 300
        assert set(np.unique(y)) == set(np.unique(yv))          # every class, not the first
        assert np.all(np.diff(y) >= 0)                           # in the dataset's order
        # Each example kept is one of the dataset's, with its own label.
        rows = {xs[i].tobytes(): ys[i] for i in range(len(ys))}
        assert all(rows[a.tobytes()] == b for a, b in zip(x, y))
        picked.append(x)
    np.testing.assert_array_equal(*picked)                     # whatever the batch size
    # A generator (no length) is sampled the same way, as it comes.
    x, y, given = _take(((xs[i:i + 100], ys[i:i + 100]) for i in range(0, len(ys), 100)), 300)
    assert given == len(yv) and set(np.unique(y)) == set(np.unique(yv))


def test_table_json_and_plot(model_and_data, tmp_path):
    model, data = model_and_data
    sens = tfdc.sensitivity(model, data, sparsities=[0.5, 0.95], bits=[3, 6])
    md = sens.to_markdown()
    assert "| fc1 | 50,176 |" in md and "95 %" in md and "3 bits" in md
    again = Sensitivity.from_json(sens.to_json())
    assert again.loss == sens.loss and again.error == sens.error
    assert again.layers == sens.layers and again.baseline_loss == sens.baseline_loss
    assert json.loads(sens.to_json())["loss"]["fc3"]["bits"]["3"] == sens.loss["fc3"][("bits", 3)]
    pytest.importorskip("matplotlib")
    path = sens.plot(str(tmp_path / "sens.png"))
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 1200 and height > 500
    # Points above the axis (near 4x the baseline) are drawn on its top
    # edge, as the title says (95 % of fc3 was off the figure without a
    # mark); the bits axis ticks the scanned bits (3.75 was a tick).
    import matplotlib.pyplot as plt
    fig = sens._figure()
    left, right = fig.axes
    top = left.get_ylim()[1]
    off = sum(100 * y > top for name in sens.layers for y in sens.curve(name, "error")[1])
    assert off > 0
    marks = [p for line in left.get_lines() if line.get_marker() == "^"
             for p in line.get_ydata()]
    assert len(marks) == off and set(marks) == {top}
    assert f"above {top:.3g} %" in fig._suptitle.get_text()
    assert list(right.get_xticks()) == [3, 6]
    plt.close(fig)


def test_logits_model_and_one_hot_labels(model_and_data):
    """A model without softmax, not compiled: cross-entropy from logits;
    one-hot labels give the same error."""
    model, (xv, yv) = model_and_data
    logits = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                               keras.layers.Dense(10, name="out")])
    ev = Evaluator(logits, xv[:200], yv[:200])
    pred = ev.predict()
    expected = float(np.mean(keras.losses.sparse_categorical_crossentropy(
        yv[:200], pred, from_logits=True)))
    assert ev()[0] == pytest.approx(expected, rel=1e-4)
    one_hot = Evaluator(logits, xv[:200], np.eye(10)[yv[:200]])
    assert one_hot()[1] == ev()[1]


def test_binary_unit_with_a_compiled_loss_function(model_and_data):
    """One sigmoid unit compiled with the string "binary_crossentropy" (a
    loss function, which refuses labels [N] against outputs [N, 1] unless
    called as compile calls it): the loss is Keras's evaluate's, the error
    the outputs thresholded at 0.5."""
    _, (xv, yv) = model_and_data
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    x, y = xv[:200], (yv[:200] < 5).astype("int64")
    loss, error = Evaluator(model, x, y)()
    assert loss == pytest.approx(model.evaluate(x, y, batch_size=200, verbose=0), rel=1e-4)
    p = model.predict(x, verbose=0)[:, 0]
    assert error == float(np.mean((p > 0.5) != (y == 1)))


def test_one_unit_is_cut_where_tfdc_compress_cuts_it():
    """A linear unit under a binary cross-entropy is a logit, cut at 0,
    though every output lies in [0, 1] (guessed a probability, cut at 0.5:
    100 % error); under mean squared error (a 0 / 1 score) it has no cut,
    and only its loss is reported, as tfdc.compress reports it."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([np.zeros((2, 1), "float32"), np.full(1, 0.3, "float32")])
    x, y = np.ones((8, 2), "float32"), np.ones(8, "int64")   # every output 0.3, class 1
    model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    loss, error = Evaluator(model, x, y)()
    assert error == 0.0 and loss == pytest.approx(np.log1p(np.exp(-0.3)), rel=1e-5)
    # Under "bce" (from_logits=False) Keras reads 0.3 as a probability, and
    # cuts it at 0.5: wrong for class 1 (W52: a logit's cut gave 24.6 % for
    # Keras's 11.1 %).
    model.compile(loss="bce")
    assert Evaluator(model, x, y)()[1] == 1.0
    model.compile(loss="mse")
    loss, error = Evaluator(model, x, y)()
    assert np.isnan(error) and loss == pytest.approx(0.49, rel=1e-5)
    sens = tfdc.sensitivity(model, (x, y), sparsities=(0.5,), bits=(4,))
    assert sens.layers and np.isnan(sens.baseline_error)
    assert all(np.isnan(sens.curve(name, "error")[1]).all() for name in sens.layers)
    # Its NaN errors made it unequal to itself read back, and two plans of
    # the same settings from it unequal (W59).
    assert tfdc.Sensitivity.from_json(sens.to_json()) == sens
    plans = [tfdc.plan(model, (x, y), max_loss_increase=0.5, sensitivity=sens) for _ in "ab"]
    assert plans[0] == plans[1] and np.isnan(plans[0].predicted_error)
    assert tfdc.Plan.from_json(plans[0].to_json(), sensitivity=sens) == plans[0]


@pytest.mark.parametrize("loss, labels", [
    ("sparse_categorical_crossentropy", "index"),
    (keras.losses.SparseCategoricalCrossentropy(), "index"),
    ("categorical_crossentropy", "one_hot"),
    (keras.losses.MeanSquaredError(), "one_hot"),
    ("binary_crossentropy", "binary"),
    (keras.losses.BinaryCrossentropy(), "binary"),
    # One output's loss as a list or dict of one (tfdc.compress's loss was NaN).
    (["sparse_categorical_crossentropy"], "index"),
    ({"OUTPUT": keras.losses.CategoricalCrossentropy()}, "one_hot"),
])
def test_example_losses_average_to_the_compiled_loss(model_and_data, loss, labels):
    """One loss per example (what tfdc.compress's loss budget pairs), whose
    mean is the loss Keras's evaluate reports."""
    from tfdc.scan import example_losses, loss_callable
    model, (xv, yv) = model_and_data
    x, y = xv[:300], yv[:300]
    if labels == "binary":
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                                  keras.layers.Dense(1, activation="sigmoid")])
        y = (y < 5).astype("int64")
    else:  # a copy: the module's model keeps its compiled loss
        model = keras.models.clone_model(model)
        model.set_weights(model_and_data[0].get_weights())
    if labels == "one_hot":
        y = np.eye(10, dtype="float32")[y]
    pred = model.predict(x, verbose=0)
    if isinstance(loss, dict):  # (Keras's evaluate fails on a Sequential compiled so)
        loss, reference = {model.layers[-1].name: loss["OUTPUT"]}, float(loss["OUTPUT"](y, pred))
    else:
        model.compile("adam", loss)
        reference = model.evaluate(x, y, batch_size=300, verbose=0)
    each = example_losses(loss_callable(loss), y, pred)
    assert each.shape == (300,) and each.dtype == np.float64
    assert each.mean() == pytest.approx(reference, rel=1e-5)


def test_bad_input(model_and_data):
    model, data = model_and_data
    with pytest.raises(ValueError, match=r"sparsities must be in \(0, 1\), got 1.0"):
        tfdc.sensitivity(model, data, sparsities=[0.5, 1.0])
    with pytest.raises(ValueError, match="bits must be in 1..8, got 9"):
        tfdc.sensitivity(model, data, bits=[9])
    with pytest.raises(ValueError, match="no compressible layer named 'fc7'"):
        tfdc.sensitivity(model, data, layers=["fc7"])
    # One name as a str: not its letters ("no compressible layer named 'f', 'c', '7'").
    with pytest.raises(ValueError, match="no compressible layer named 'fc7';"):
        tfdc.sensitivity(model, data, layers="fc7")
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):  # was the default
        tfdc.sensitivity(model, data, batch_size=0)
    with pytest.raises(ValueError, match="x has 1024 examples but y has 10"):
        tfdc.sensitivity(model, (data[0], data[1][:10]))
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        tfdc.sensitivity(model, data, samples=0)
    with pytest.raises(TypeError, match="validation_data must be"):
        tfdc.sensitivity(model, 3)
    # With no compiled loss the scan's loss is cross-entropy: the labels
    # must be the model's classes (an IndexError deep in NumPy before).
    logits = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                               keras.layers.Dense(10, name="out")])
    with pytest.raises(ValueError, match=r"validation_data: labels must be in \[0, 10\)"):
        tfdc.sensitivity(logits, (data[0], data[1] + 1))
    with pytest.raises(ValueError, match=r"one-hot \[N, 10\] .* got shape \(1024, 12\)"):
        tfdc.sensitivity(logits, (data[0], np.eye(12)[data[1]]))
    plain = keras.Sequential([keras.Input((4,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="has no compressible layer"):
        tfdc.sensitivity(plain, (np.zeros((4, 4)), np.zeros(4)))


def test_a_repeating_dataset_and_sample_weights_are_refused(model_and_data):
    """A dataset with .repeat() and samples=None was read without end (18 GB
    in a minute); with the default samples its 500 examples counted as 4,000.
    Sample weights were ignored: a weighted set got the unweighted scan."""
    import tensorflow as tf
    model, (x, y) = model_and_data
    repeating = tf.data.Dataset.from_tensor_slices((x[:500], y[:500])).batch(100).repeat()
    for samples in (None, 4000):
        with pytest.raises(ValueError, match=r"^validation_data repeats without end"):
            tfdc.sensitivity(model, repeating, samples=samples)
    with pytest.raises(ValueError, match=r"^validation_data repeats without end"):
        tfdc.plan(model, repeating, target_bytes=20_000)
    weighted = [(x, y, np.ones(len(y))),
                tf.data.Dataset.from_tensor_slices((x, y, np.ones(len(y)))).batch(100)]
    for data in weighted:
        with pytest.raises(ValueError, match=r"^validation_data: sample weights, .* are not "
                                             "supported"):
            tfdc.sensitivity(model, data)
    # The dataset read once, and a weight of None, are scanned.
    once = tf.data.Dataset.from_tensor_slices((x[:500], y[:500])).batch(100)
    assert tfdc.sensitivity(model, once, sparsities=[0.5], bits=[4]).samples == 500


def test_an_endless_dataset_of_unknown_length_read_whole_stops_at_the_memory_limit(
        model_and_data, monkeypatch):
    """repeat().filter(...) and an endless generator: TensorFlow cannot
    tell their length, and samples=None read them until memory ran out."""
    import tensorflow as tf
    from tfdc import scan
    model, (x, y) = model_and_data
    monkeypatch.setattr(scan, "_memory_limit", lambda: 4 * x[:500].nbytes)
    endless = tf.data.Dataset.from_tensor_slices((x[:500], y[:500])).repeat().filter(
        lambda *_: True).batch(100)

    def batches():
        while True:
            yield x[:100], y[:100]

    for data in (endless, batches()):
        with pytest.raises(ValueError, match=r"^validation_data: 2,000 examples \(\d+ MiB\) read "
                                             r"and it has not ended.*pass samples="):
            tfdc.sensitivity(model, data, samples=None)
    # Sampled, they are read whole too: stopped at the limit of reading,
    # not scored on their first examples counted again and again.
    for data in (endless, batches()):
        with pytest.raises(ValueError, match=r"^validation_data: 2,000 examples \(\d+ MiB\) read "
                                             r"and it has not ended.*assert_cardinality"):
            tfdc.sensitivity(model, data, samples=300)
    # Under the limit, a dataset of unknown length is read whole.
    finite = tf.data.Dataset.from_tensor_slices((x[:300], y[:300])).filter(
        lambda *_: True).batch(100)
    assert tfdc.sensitivity(model, finite, samples=None, sparsities=[0.5], bits=[4]).samples == 300
    assert tfdc.sensitivity(model, (x[:300], y[:300], None), sparsities=[0.5],
                            bits=[4]).samples == 300


def test_layer_by_layer_evaluation_keeps_masks():
    """The scan runs a Sequential model layer by layer (and from the scanned
    layer on): an Embedding's mask still reaches the LSTM, so the
    predictions are the model's own."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,), dtype="int32"),
                              keras.layers.Embedding(50, 8, mask_zero=True, name="emb"),
                              keras.layers.LSTM(16, name="rnn"),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    x = np.random.default_rng(0).integers(1, 50, (64, 10))
    x[:, 6:] = 0  # padding the mask hides
    y = np.arange(64) % 3
    ev = Evaluator(model, x, y)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(ev.predict(), expected, atol=1e-6)
    np.testing.assert_allclose(ev.starting_at(model.get_layer("rnn")).predict(), expected,
                               atol=1e-6)
    sens = tfdc.sensitivity(model, (x, y), sparsities=[0.5], bits=[4])
    assert sens.layers == ["emb", "rnn", "out"]
    assert sens.kinds == {"emb": "embedding", "rnn": "recurrent", "out": "dense"}
    assert sens.weights["rnn"] == (8 + 16) * 16 * 4


def test_an_uncompiled_model_with_several_outputs_is_refused_naming_them():
    """The scan, the planner and compress score several outputs by their
    compiled losses: a model with a dict of two and no loss is refused
    before its data are read, with the outputs' names."""
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, name="trunk")(inputs)
    model = keras.Model(inputs, {"label": keras.layers.Dense(3, name="cls")(hidden),
                                 "box": keras.layers.Dense(4, name="reg")(hidden)})
    x = np.zeros((32, 8), "float32")
    y = {"label": np.zeros(32, "int64"), "box": np.zeros((32, 4), "float32")}
    for who, call in (("sensitivity", lambda: tfdc.sensitivity(model, (x, y))),
                      ("tfdc.plan", lambda: tfdc.plan(model, (x, y), target_bytes=1000)),
                      ("tfdc.compress", lambda: tfdc.compress(model, (x, y), (x, y),
                                                              target_bytes=1000, verbose=0))):
        with pytest.raises(ValueError, match=rf"^{who} scores a model with several outputs by "
                           r"its compiled loss .*; 'functional\w*' has 2 \(box, label\) and is "
                           r"not compiled: compile it with its losses"):
            call()


@pytest.mark.parametrize("kind", ["list", "dict", "one loss"])
def test_several_outputs_are_scored_by_their_weighted_compiled_losses(kind):
    """The Evaluator's loss of a model with two outputs is model.evaluate's
    total: each output's compiled loss times its loss weight, summed (a
    dict keyed so that its keys sort against the outputs' order)."""
    import re
    import textwrap

    from tfdc.scan import Evaluator, SummedLoss, example_losses
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    labels, values = rng.integers(0, 3, 300), rng.normal(size=(300, 1)).astype("float32")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="trunk")(inputs)
    cls = keras.layers.Dense(3, name="cls")(hidden)
    reg = keras.layers.Dense(1, name="reg")(hidden)
    if kind == "list":
        model = keras.Model(inputs, [cls, reg])
        model.compile(loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"],
                      loss_weights=[1.0, 0.5])
        y = [labels, values]
    elif kind == "dict":
        model = keras.Model(inputs, {"z_label": cls, "a_value": reg})
        model.compile(loss={"a_value": "mae", "z_label": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)}, loss_weights={"z_label": 2.0, "a_value": 1.0})
        y = {"z_label": labels, "a_value": values}
    else:  # one loss for both outputs
        model = keras.Model(inputs, [reg, keras.layers.Dense(1, name="reg2")(hidden)])
        model.compile(loss="mse")
        y = [values, 2 * values]
    loss, error = Evaluator(model, x, y, batch_size=128)()
    assert loss == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-5)
    assert np.isnan(error)
    pred = model.predict(x, verbose=0)
    per_example = example_losses(SummedLoss(model), y, pred)
    assert per_example.shape == (300,) and per_example.mean() == pytest.approx(loss, rel=1e-5)
    sens = tfdc.sensitivity(model, (x, y), sparsities=[0.5], bits=[4])
    assert sens.baseline_loss == pytest.approx(loss, rel=1e-5)
    # Counted in examples, not outputs (it said "on 2 validation examples").
    assert sens.samples == 300 and "on 300 validation examples" in sens.to_markdown()
    assert all(sens.loss[name][("sparsity", 0.5)] > 0 for name in sens.layers)
    # The docstring's example prints what its comment says.
    block = textwrap.dedent(re.search(r"```python\n(.*?)```", SummedLoss.__doc__,
                                      re.S).group(1))
    printed = {}
    exec(block.replace("print(", "printed['value'] = ("), {"printed": printed})
    assert str(printed["value"]) == re.search(r"# ([\d.]+)", block).group(1)


def test_one_output_in_a_dict_is_scanned_as_that_output():
    """`{"probs": y}`, compiled with a dict of one loss: the scan and the
    plan see `y` and that loss, exactly as for the plain model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    probs = keras.layers.Dense(3, activation="softmax", name="cls")(
        keras.layers.Dense(16, activation="relu", name="trunk")(inputs))
    # One name: the file's tensor names, and so its bytes, carry the model's.
    plain = keras.Model(inputs, probs, name="m")
    plain.compile(loss="sparse_categorical_crossentropy")
    wrapped = keras.Model(inputs, {"probs": probs}, name="m")
    wrapped.compile(loss={"probs": "sparse_categorical_crossentropy"})
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64)
    scans = [tfdc.sensitivity(m, (x, y), sparsities=[0.5, 0.9], bits=[2, 4])
             for m in (plain, wrapped)]
    same = [{k: v for k, v in json.loads(scan.to_json()).items() if k != "seconds"}
            for scan in scans]
    assert same[0] == same[1]
    plans = [tfdc.plan(m, (x, y), sensitivity=scan, target_bytes=3000)
             for m, scan in zip((plain, wrapped), scans)]
    assert plans[0].to_json() == plans[1].to_json()


def _three_classes():
    """An untrained 8 -> 16 -> 3 softmax model and 64 random examples."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="fc1"),
                              keras.layers.Dense(3, activation="softmax", name="fc2")])
    return model, x, y


def test_a_python_list_of_labels_is_one_output_s_labels():
    """y as a plain list (of class indices) is one output's labels, scanned
    as the same array would be: only a model with several outputs reads a
    list as one array per output."""
    model, x, y = _three_classes()
    as_array = tfdc.sensitivity(model, (x, y), sparsities=[0.5], bits=[4])
    as_list = tfdc.sensitivity(model, (x, [int(v) for v in y]), sparsities=[0.5], bits=[4])
    assert as_list.loss == as_array.loss and as_list.error == as_array.error


def test_x_as_a_list_of_one_array_for_one_input_is_that_array():
    """([x], y), as Keras's fit and evaluate take it for a model of one
    input: a Sequential model called on the list answered with an extra
    axis, and the scan said the labels did not fit."""
    model, x, y = _three_classes()
    as_array = tfdc.sensitivity(model, (x, y), sparsities=[0.5], bits=[4])
    as_list = tfdc.sensitivity(model, ([x], y), sparsities=[0.5], bits=[4])
    assert as_list.loss == as_array.loss and as_list.error == as_array.error
    plan = tfdc.plan(model, ([x], y), target_bytes=900, sparsities=[0.5], bits=[4])
    assert plan.sparsity == tfdc.plan(model, (x, y), target_bytes=900, sparsities=[0.5],
                                      bits=[4]).sparsity


def test_labels_the_loss_cannot_take_are_one_clear_error():
    # One-hot labels for a sparse loss, and class indices out of range: the
    # scan (and so tfdc.plan and tfdc plan) says which, in one line, not
    # Keras's "must have rank (ndim) `target.ndim - 1`" or TensorFlow's
    # kernel message with every label in it.
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8), np.float32), rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="a"),
                              keras.layers.Dense(3, activation="softmax", name="b")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"^validation_data: the model and its loss "
                       r"\(sparse_categorical_crossentropy\) cannot score it: .*; y looks one-hot "
                       r"\(3 columns\), .* give class indices \(y.argmax\(axis=1\)\)"):
        tfdc.plan(model, (x, np.eye(3)[y]), target_bytes=900)
    with pytest.raises(ValueError) as error:
        tfdc.sensitivity(model, (x, y + 5))
    message = str(error.value)
    assert message.startswith("validation_data: the model and its loss (sparse_categorical_"
                              "crossentropy) cannot score it: Received a label value of ")
    assert "function_node" not in message and "Label values" not in message
    assert "\n" not in message


def test_a_dataset_of_single_examples_is_refused_as_such():
    """An unbatched tf.data.Dataset failed with "len() of unsized object";
    a batch Keras expands ((B, 28, 28) for an input (28, 28, 1)) is a batch."""
    import tensorflow as tf

    from tfdc.scan import check_batched
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="fc")])
    x, y = rng.normal(size=(40, 6)).astype("float32"), rng.integers(0, 3, 40)
    single = tf.data.Dataset.from_tensor_slices((x, y))
    for call in (lambda: tfdc.sensitivity(model, single),
                 lambda: tfdc.plan(model, single, target_bytes=1000)):
        with pytest.raises(ValueError, match=r"validation_data yields single examples \(x of "
                           r"shape \(6,\)\), not batches: batch it, e.g. dataset.batch"):
            call()
    assert tfdc.sensitivity(model, single.batch(16), sparsities=[0.5], bits=[4]).samples == 40
    image = keras.Sequential([keras.Input((5, 5, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    check_batched(np.zeros((5, 5, 5)), image, "x")  # five 5x5 images: a batch
    with pytest.raises(ValueError, match="single examples"):
        check_batched(np.zeros((5, 5, 1)), image, "x")


def test_scan_cost_counts_the_layers_each_point_runs():
    from tfdc.models import lenet_300_100
    from tfdc.scan import scan_cost
    # A Sequential's points run the scanned layer and those after it:
    # fc1's the whole 784-300-100-10 network, fc2's its last two layers.
    whole = 784 * 300 + 300 * 100 + 100 * 10
    macs, passes = scan_cost(lenet_300_100())
    assert macs == whole + (300 * 100 + 100 * 10) + 100 * 10
    assert passes == pytest.approx(macs / whole)
    # A functional graph's every point runs it whole; a convolution costs
    # its weights once per output position (14 x 14 here).
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(inputs)
    h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.Add()([x, h])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(x))
    whole = (3 * 3 * 8 + 3 * 3 * 8) * 14 * 14 + 8 * 10
    assert scan_cost(model) == (3 * whole, 3.0)
    # A recurrent layer runs its kernels at every step of its input.
    model = keras.Sequential([keras.Input((20, 8)), keras.layers.GRU(4), keras.layers.Dense(2)])
    gru = (8 * 12 + 4 * 12) * 20
    assert scan_cost(model)[0] == (gru + 8) + 8
    # An embedding looks up a row per position: no multiply (it cost its
    # whole 50,000 x 16 table per position, and cut a cheap model's scan).
    model = keras.Sequential([keras.Input((100,), dtype="int32"),
                              keras.layers.Embedding(50_000, 16),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    assert scan_cost(model)[0] == (100 * 16 + 32) + 32
    # Sizes the model leaves open are read from inputs (they counted 1).
    inputs = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="head")(h))
    assert scan_cost(model) == (2 * (9 * 8 + 8 * 4), 2.0)
    assert scan_cost(model, inputs=np.zeros((1, 28, 28, 1), "float32")) == (
        2 * (9 * 8 + 8 * 4) * 28 * 28, 2.0)
    # A GRU given its initial state (its input a list: it failed on the
    # list's shape), steps left open: read from inputs.
    sequence, state = keras.Input((None, 8)), keras.Input((4,))
    h = keras.layers.GRU(4)(sequence, initial_state=state)
    model = keras.Model([sequence, state], keras.layers.Dense(2)(h))
    steps = [np.zeros((1, 30, 8), "float32"), np.zeros((1, 4), "float32")]
    assert scan_cost(model, inputs=steps) == (2 * (gru // 20 * 30 + 8), 2.0)
    with pytest.raises(TypeError, match="expected a Keras model or layer, got int"):
        scan_cost(42)
