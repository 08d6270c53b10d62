"""tfdc.distill.Distiller: the train step's loss against a NumPy hand computation,
and training with tfdc's callbacks on real data."""

import warnings

import keras
import numpy as np
import pytest

import tfdc
from tfdc.distill import Distiller


def _digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    data = sklearn.load_digits()
    x = (data.data / 16.0).astype("float32")
    return x[:512], data.target[:512].astype("int64")


def _mlp(softmax=True):
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32, activation="relu", name="fc1"),
        keras.layers.Dense(10, activation="softmax" if softmax else None, name="fc2"),
    ])


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _trained_pair(x, y, softmax):
    teacher = _mlp(softmax)
    teacher.compile(keras.optimizers.Adam(1e-2),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    teacher.fit(x, y, epochs=3, batch_size=64, verbose=0)
    student = _mlp(softmax)  # different (fresh) weights: a nonzero KL term
    student.build((None, 64))
    return teacher, student


@pytest.mark.parametrize("softmax", [True, False])
def test_train_step_loss_matches_numpy(softmax):
    x, y = _digits()
    x, y = x[:128], y[:128]
    teacher, student = _trained_pair(x, y, softmax)
    temperature, alpha = 3.0, 0.3
    zs = np.asarray(student(x, training=False), np.float64)
    zt = np.asarray(teacher(x, training=False), np.float64)
    if softmax:  # a softmax output: log p are the logits (up to a constant)
        zs, zt = np.log(np.clip(zs, 1e-12, 1)), np.log(np.clip(zt, 1e-12, 1))
    hard = float(np.mean(-_log_softmax(zs)[np.arange(len(y)), y]))
    log_t, log_s = _log_softmax(zt / temperature), _log_softmax(zs / temperature)
    soft = temperature ** 2 * float(np.mean(np.sum(np.exp(log_t) * (log_t - log_s), -1)))
    expected = alpha * hard + (1 - alpha) * soft

    distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha)
    distiller.compile(keras.optimizers.SGD(0.1),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    before = [w.copy() for w in student.get_weights()]
    teacher_before = [w.copy() for w in teacher.get_weights()]
    logs = distiller.train_on_batch(x, y, return_dict=True)
    assert soft > 0.05  # the soft term really contributes
    assert logs["loss"] == pytest.approx(expected, rel=2e-4)
    # The student moved, the teacher did not.
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    for a, b in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Evaluation reports the hard-label loss of the (updated) student only.
    zs2 = np.asarray(student(x, training=False), np.float64)
    if softmax:
        zs2 = np.log(np.clip(zs2, 1e-12, 1))
    hard2 = float(np.mean(-_log_softmax(zs2)[np.arange(len(y)), y]))
    assert distiller.evaluate(x, y, verbose=0, batch_size=128) == pytest.approx(hard2, rel=2e-4)


@pytest.mark.parametrize("sigmoid", [True, False])
def test_a_binary_classifier_distills_as_two_classes(sigmoid):
    # One unit: the softened distribution is (1 - p, p) at temperature T,
    # the two-class softmax of the logits (0, z / T), with z = log(p / (1 - p))
    # for a sigmoid output. Hand computation against the train step's loss.
    x, y = _digits()
    x, y = x[:128], (y[:128] >= 5).astype("int64")

    def net():
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(1, activation="sigmoid" if sigmoid else None)])
    loss = keras.losses.BinaryCrossentropy(from_logits=not sigmoid)
    teacher = net()
    teacher.compile(keras.optimizers.Adam(1e-2), loss)
    teacher.fit(x, y, epochs=3, batch_size=64, verbose=0)
    student = net()
    student.build((None, 64))
    temperature, alpha = 2.0, 0.4

    def logit(out):
        out = np.asarray(out, np.float64)[:, 0]
        if sigmoid:
            p = np.clip(out, 1e-7, 1 - 1e-7)
            return np.log(p / (1 - p))
        return out
    zs, zt = logit(student(x, training=False)), logit(teacher(x, training=False))
    hard = float(np.mean(np.log1p(np.exp(-zs)) + (1 - y) * zs))  # binary cross-entropy
    two = lambda z: _log_softmax(np.stack([np.zeros_like(z), z], -1) / temperature)  # noqa: E731
    log_t, log_s = two(zt), two(zs)
    soft = temperature ** 2 * float(np.mean(np.sum(np.exp(log_t) * (log_t - log_s), -1)))
    distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha)
    distiller.compile(keras.optimizers.SGD(0.1), loss)
    logs = distiller.train_on_batch(x, y, return_dict=True)
    assert soft > 0.01
    assert logs["loss"] == pytest.approx(alpha * hard + (1 - alpha) * soft, rel=2e-3)
    # Several sigmoid units are independent labels: no distribution to match.
    multi = keras.Sequential([keras.Input((64,)), keras.layers.Dense(3, activation="sigmoid")])
    with pytest.raises(ValueError, match="has 3 sigmoid units"):
        Distiller(multi, Distiller.copy_of(multi))


def test_alpha_one_is_the_plain_loss():
    x, y = _digits()
    teacher, student = _trained_pair(x[:64], y[:64], True)
    plain = keras.models.clone_model(student)
    plain.set_weights(student.get_weights())
    plain.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    distiller = Distiller(student, teacher, alpha=1.0)
    distiller.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    a = distiller.train_on_batch(x[:64], y[:64], return_dict=True)["loss"]
    b = plain.train_on_batch(x[:64], y[:64], return_dict=True)["loss"]
    assert a == pytest.approx(b, rel=1e-5)
    for u, v in zip(student.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_with_pruning_and_clustering_callbacks():
    x, y = _digits()
    teacher = _mlp()
    teacher.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    teacher.fit(x, y, epochs=5, batch_size=64, verbose=0)
    student = Distiller.copy_of(teacher)
    student.trainable = True
    distiller = Distiller(student, teacher)
    # Only the student's variables are the Distiller's.
    assert {id(v) for v in distiller.trainable_variables} == \
        {id(v) for v in student.trainable_variables}
    distiller.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    steps = len(x) // 64
    distiller.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[
        tfdc.GradualPruning({"fc1": 0.8, "fc2": 0.5}, end_step=2 * steps, frequency=2),
        tfdc.ClusteredFineTuning(bits=3)])
    report = tfdc.sparsity(student)
    assert report["fc1"].sparsity == pytest.approx(0.8, abs=0.01)
    assert report["fc2"].sparsity == pytest.approx(0.5, abs=0.01)
    assert set(report) == {"fc1", "fc2"}  # the teacher's kernels were not selected
    assert np.count_nonzero(teacher.get_layer("fc1").kernel.numpy()) == 64 * 32
    fc1 = student.get_layer("fc1").kernel.numpy()
    assert len(np.unique(fc1[fc1 != 0])) <= 8
    accuracy = float(np.mean(np.argmax(student.predict(x, verbose=0), -1) == y))
    assert accuracy > 0.8


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0}, "temperature must be a positive number, got 0"),
    ({"temperature": float("nan")}, "temperature must be a positive number"),
    ({"alpha": 1.5}, r"alpha must be a number in \[0, 1\], got 1.5"),
    # T**2 * KL came out at twice its value at 1e4, negative at 1e5.
    ({"temperature": 1e4}, r"temperature must be at most 100 \(float32 cannot tell"),
    ({"from_logits": "yes"}, "from_logits must be True, False or None, got 'yes'"),
])
def test_bad_arguments(kwargs, message):
    model = _mlp()
    with pytest.raises(ValueError, match=message):
        Distiller(model, Distiller.copy_of(model), **kwargs)


def test_teacher_is_student_refused():
    model = _mlp()
    with pytest.raises(ValueError, match="the teacher is the student"):
        Distiller(model, model)
    # Swapped: the frozen copy as the student trained nothing, and the fit
    # said only Keras's "does not have any trainable weights".
    with pytest.raises(ValueError, match=r"the student, '\S+', has no trainable weights .*"
                       r"Distiller\(model, Distiller.copy_of\(model\)\)"):
        Distiller(Distiller.copy_of(model), model)


def test_a_teacher_unlike_the_student_is_refused_when_made():
    """None, or a teacher with 5 classes for a 10-class student, failed only
    at fit ('NoneType' object is not callable; a TensorFlow graph error)."""
    student = _mlp()
    for teacher in (None, "teacher.keras"):
        with pytest.raises(TypeError, match="the teacher must be a keras.Model, got"):
            Distiller(student, teacher)
    # A student that is not a model was an AttributeError ('str' has no 'name').
    with pytest.raises(TypeError, match="the student must be a keras.Model, got str"):
        Distiller("student.keras", student)
    five = keras.Sequential([keras.Input((64,)), keras.layers.Dense(5)], name="five")
    with pytest.raises(ValueError, match=r"teacher 'five' has outputs of shape \[\(5,\)\], "
                       r"the student '.*' \[\(10,\)\]"):
        Distiller(student, five)
    narrow = keras.Sequential([keras.Input((7,)), keras.layers.Dense(10)], name="narrow")
    with pytest.raises(ValueError, match=r"teacher 'narrow' has inputs of shape \[\(7,\)\]"):
        Distiller(student, narrow)


def test_models_it_cannot_distil_are_refused_when_made_or_compiled(tmp_path):
    """Each trained, or failed only at fit, with a graph error or silently:
    a teacher sharing a layer with the student was pruned with it; a teacher
    of several sigmoid units had its probabilities read as logits; an
    unbuilt teacher skipped the shape check; dict or several outputs failed
    in fit; a regression model was distilled as a binary logit."""
    student = _mlp()
    shared = keras.Sequential([keras.Input((64,)), student.get_layer("fc1"),
                               keras.layers.Dense(10, activation="softmax")], name="shared")
    with pytest.raises(ValueError, match=r"the teacher shares layer 'fc1' with the student: "
                                         r"training \(and pruning\) the student would change"):
        Distiller(student, shared)
    sigmoids = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="sigmoid")],
                                name="sigmoids")
    with pytest.raises(ValueError, match=r"the teacher 'sigmoids' has 10 sigmoid units"):
        Distiller(student, sigmoids)
    unbuilt = keras.Sequential([keras.layers.Dense(5, activation="softmax")], name="unbuilt")
    with pytest.raises(ValueError, match=r"the teacher 'unbuilt' is not built: give a trained"):
        Distiller(student, unbuilt)
    # An unbuilt student of one unit was distilled as a softmax over one
    # class: the teacher's term was 0 at every step, without a word.
    one = keras.Sequential([keras.Input((64,)), keras.layers.Dense(1)], name="one")
    unbuilt = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(1)], name="unbuilt")
    with pytest.raises(ValueError, match=r"the student 'unbuilt' is not built: start it with "
                                         r"keras.Input, or call it once on a batch"):
        Distiller(unbuilt, one)
    inputs = keras.Input((64,))
    dict_out = keras.Model(inputs, {"probs": keras.layers.Dense(10, activation="softmax")(inputs)},
                           name="dict_out")
    with pytest.raises(ValueError, match=r"Distiller matches one output; the student 'dict_out' "
                                         r"has its output in a dict"):
        Distiller(dict_out, Distiller.copy_of(dict_out))
    two = keras.Model(inputs, [keras.layers.Dense(10)(inputs), keras.layers.Dense(2)(inputs)],
                      name="two")
    with pytest.raises(ValueError, match=r"the teacher 'two' has 2 \(distil a model of its one"):
        Distiller(student, two)
    regressor = keras.Sequential([keras.Input((64,)), keras.layers.Dense(1)], name="regressor")
    distiller = Distiller(regressor, Distiller.copy_of(regressor))
    with pytest.raises(ValueError, match=r"Distiller distils classifiers; 'regressor' has one "
                                         r"output unit without a softmax or sigmoid and the "
                                         r"loss 'mse'"):
        distiller.compile("adam", "mse")
    # Several units: was trained with a softmax KL of its values.
    regressor = keras.Sequential([keras.Input((64,)), keras.layers.Dense(4)], name="regressor4")
    distiller = Distiller(regressor, Distiller.copy_of(regressor))
    for loss in ("mse", keras.losses.Huber()):
        with pytest.raises(ValueError, match=r"'regressor4' has 4 output units without a softmax "
                                             r"or sigmoid and the loss '(mse|huber_loss)': a "
                                             r"regression model"):
            distiller.compile("adam", loss)
    distiller.compile("adam", lambda y, z: keras.ops.mean(z))  # the user's own: may train logits
    distiller.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))  # a logit unit
    distiller.compile("adam", "bce")  # its alias (refused as a regression's loss)
    # save / export refused before Keras opens the file (an existing one
    # was left empty).
    path = tmp_path / "good.keras"
    student.save(path)
    size = path.stat().st_size
    with pytest.raises(NotImplementedError, match="save its student"):
        Distiller(student, Distiller.copy_of(student)).save(path)
    assert path.stat().st_size == size
    with pytest.raises(NotImplementedError, match="export its student"):
        Distiller(student, Distiller.copy_of(student)).export(tmp_path / "saved")


def _soft_term(student_log_p, teacher_logits, temperature):
    log_t = _log_softmax(teacher_logits / temperature)
    log_s = _log_softmax(student_log_p / temperature)
    return temperature ** 2 * float(np.mean(np.sum(np.exp(log_t) * (log_t - log_s), -1)))


def test_each_models_outputs_are_read_as_they_are():
    # A student ending in keras.ops.softmax was read as logits (its
    # probabilities softened a second time), and with a teacher of logits no
    # from_logits gave the right loss. (Found by a probe.)
    x, y = _digits()
    x, y = x[:64], y[:64]
    teacher = _mlp(softmax=False)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    student = keras.Model(inputs, keras.ops.softmax(keras.layers.Dense(10)(hidden)),
                          name="ops_softmax")
    zt = np.asarray(teacher(x), np.float64)
    log_p = np.log(np.clip(np.asarray(student(x), np.float64), 1e-12, 1))
    expected = _soft_term(log_p, zt, 3.0)
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.0)
    distiller.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    assert distiller.train_on_batch(x, y) == pytest.approx(expected, rel=2e-4)
    # A Lambda tells nothing: the student's compiled loss does (a string
    # cross-entropy reads probabilities, as Keras's own training did).
    lam = keras.Model(inputs, keras.layers.Lambda(keras.ops.softmax)(
        keras.layers.Dense(10)(hidden)), name="lambda_softmax")
    distiller = Distiller(lam, teacher, temperature=3.0, alpha=0.0)
    distiller.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    log_p = np.log(np.clip(np.asarray(lam(x), np.float64), 1e-12, 1))
    assert distiller.train_on_batch(x, y) == pytest.approx(_soft_term(log_p, zt, 3.0), rel=2e-4)
    # ... and a copy of it as the teacher (tfdc.compress's) is read alike.
    distiller = Distiller(lam, Distiller.copy_of(lam))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distiller.compile("adam", "sparse_categorical_crossentropy")
    # What nothing tells about is read as logits, with a word.
    with pytest.warns(UserWarning, match=r"cannot tell whether the teacher 'lambda_softmax' "
                                         r"outputs logits or probabilities"):
        Distiller(student, Distiller.copy_of(lam)).compile("adam", "sparse_categorical_"
                                                           "crossentropy")
    # A from_logits that contradicts an activation is obeyed, with a word.
    with pytest.warns(UserWarning, match=r"from_logits=True, but the student 'ops_softmax' ends "
                                         r"in a softmax"):
        Distiller(student, teacher, from_logits=True).compile(
            "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_a_built_student_keeps_its_zeros_from_the_first_step():
    # A pruned student in a fresh Distiller: clustering must be installed
    # before the first step, or that step moves the pruned weights off zero.
    x, y = _digits()
    teacher, student = _trained_pair(x, y, True)
    kernel = student.get_layer("fc1").kernel
    w = kernel.numpy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.8)] = 0.0
    kernel.assign(w)
    distiller = Distiller(student, teacher)
    assert distiller.built
    distiller.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    distiller.fit(x, y, epochs=1, batch_size=64, verbose=0,
                  callbacks=[tfdc.ClusteredFineTuning(bits=3)])
    after = student.get_layer("fc1").kernel.numpy()
    np.testing.assert_array_equal(after == 0, w == 0)
    assert len(np.unique(after[after != 0])) <= 8


def test_a_distiller_is_neither_checkpointed_whole_nor_exported(tmp_path):
    # A full-model ModelCheckpoint failed at the end of the first epoch
    # (losing it); export said the Distiller had no known input shape.
    x, y = np.random.default_rng(0).random((64, 64)).astype("float32"), np.arange(64) % 10
    student = _mlp()
    distiller = Distiller(student, Distiller.copy_of(student))
    distiller.compile("adam", "sparse_categorical_crossentropy")
    before = student.get_layer("fc1").kernel.numpy()
    with pytest.raises(ValueError, match=r"ModelCheckpoint would save the whole Distiller.*"
                       r"save_weights_only=True"):
        distiller.fit(x, y, epochs=1, verbose=0, callbacks=[
            keras.callbacks.ModelCheckpoint(str(tmp_path / "d.keras"))])
    np.testing.assert_array_equal(student.get_layer("fc1").kernel.numpy(), before)  # untrained
    distiller.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(
        str(tmp_path / "d.weights.h5"), save_weights_only=True)])
    assert (tmp_path / "d.weights.h5").exists()
    with pytest.raises(ValueError, match=r"is a Distiller, a training wrapper: export its "
                       r"student \(distiller.student\)"):
        tfdc.export(distiller, tmp_path / "d.tflite")
    assert not (tmp_path / "d.tflite").exists()
    tfdc.export(distiller.student, tmp_path / "d.tflite")
