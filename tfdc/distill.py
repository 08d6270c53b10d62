"""Knowledge distillation: train a model against a teacher's softened outputs.

`Distiller(student, teacher)` is a `keras.Model` whose training loss mixes the
student's own compiled loss on the hard labels with Hinton et al.'s (2015)
distillation term, the KL divergence between the teacher's and the student's
class distributions softened by a temperature `T`:

    loss = alpha * hard_loss(y, student(x))
           + (1 - alpha) * T**2 * KL(softmax(z_t / T) || softmax(z_s / T))

(`z`: logits; for a model that ends in a softmax, `log p` is used, which is
its logits up to a per-example constant that the softmax cancels). The `T**2`
keeps the soft term's gradients on the scale of the hard term's. A binary
classifier's one unit (a sigmoid probability p, or its logit z) is the
two-class distribution (1 - p, p), whose logits are (0, z).

It works with tfdc's callbacks as they are: the Distiller tracks only the
student (the teacher is kept out of its layers, variables and weights), so
`tfdc.GradualPruning` and `tfdc.ClusteredFineTuning` select the student's
kernels by their usual names, and the student is what you export.
"""

import keras
import numpy as np
from keras import ops

from tfdc.mistakes import output_activation

__all__ = ["Distiller"]


def _output_units(model):
    """The size of `model`'s (single) output's last axis, or None."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not outputs or len(outputs) != 1:
        return None
    return outputs[0].shape[-1]


def _check_alike(student, teacher):
    """A ValueError when the teacher's inputs or outputs, where both models
    know them, differ from the student's: the mismatch surfaced at fit, as
    a TensorFlow graph error ('Dimensions must be equal, but are 5 and 10')."""
    from tfdc.layers import has_graph
    if not (has_graph(student) and has_graph(teacher)):
        return
    for what in ("inputs", "outputs"):
        ours = [tuple(t.shape[1:]) for t in getattr(student, what)]
        theirs = [tuple(t.shape[1:]) for t in getattr(teacher, what)]
        if ours != theirs:
            raise ValueError(f"the teacher {teacher.name!r} has {what} of shape {theirs}, the "
                             f"student {student.name!r} {ours} (batch left out): the teacher "
                             "must take the student's inputs and give outputs like its own")


# Above this temperature the softened distributions differ by less than
# float32 resolves: T**2 * KL came out at 2x the true value at T = 1e4 and
# negative at 1e5 (Hinton et al. used 1 to 20).
MAX_TEMPERATURE = 100.0


def _check_model(model, role):
    """A ValueError for a student or teacher the Distiller cannot match: one
    not built (a teacher must be trained; an unbuilt student's one unit was
    distilled as a softmax over one class, which is nothing), one whose
    output sits in a dict or list or that has several (`fit` failed with a
    TensorFlow graph error), or several sigmoid units (independent
    labels)."""
    from tfdc.exporter import graph_structure
    if not getattr(model, "built", False):
        what = ("give a trained model" if role == "teacher" else
                "start it with keras.Input, or call it once on a batch")
        raise ValueError(f"the {role} {model.name!r} is not built: {what} (its outputs could "
                         "not be checked against the other's)")
    structure = graph_structure(model, "output")
    count = len(getattr(model, "outputs", None) or [None])
    if count != 1 or isinstance(structure, (dict, list, tuple)):
        raise ValueError(f"Distiller matches one output; the {role} {model.name!r} has "
                         + (f"{count}" if count != 1 else "its output in a "
                            f"{type(structure).__name__}")
                         + " (distil a model of its one output, keras.Model(model.input, "
                           "model.outputs[0]); tfdc.compress(distill=True) does that itself)")
    units = _output_units(model)
    if units is not None and units > 1 and output_activation(model) == "sigmoid":
        raise ValueError(f"Distiller matches softened distributions over classes; the {role} "
                         f"{model.name!r} has {units} sigmoid units (independent labels, no "
                         "distribution over them): train without a teacher")


def _shared_layers(student, teacher):
    """Names of the student's layers whose variables the teacher holds too."""
    from tfdc.select import iter_layers
    theirs = {id(v) for v in teacher.weights}
    return [layer.name for layer in iter_layers(student)
            if any(id(v) in theirs for v in layer.weights)]


def _told_probabilities(model, loss):
    """Whether `model` outputs probabilities, as its output activation
    tells, else (a Lambda or custom layer) as its compiled cross-entropy's
    from_logits reads them; None where neither tells."""
    from tfdc.mistakes import _reads_probabilities, loss_kind
    activation = output_activation(model)
    if activation is not None:
        return activation == "softmax" or (activation == "sigmoid" and _output_units(model) == 1)
    if loss is not None and "crossentropy" in loss_kind(loss):
        return _reads_probabilities(loss)  # what its own training read them as
    return None


def _outputs_probabilities(student, teacher, from_logits, student_loss, warn):
    """`(student, teacher)`: whether each outputs probabilities.
    `from_logits` where given (a warning where it contradicts an output
    activation), else `_told_probabilities`; a teacher that nothing tells
    about, of a student that only its loss tells about (a copy of it, as
    tfdc.compress's), is read as the student; what stays untold is read as
    logits with a warning: a keras.ops.softmax output was read as logits
    without a word, and its probabilities softened a second time."""
    import warnings
    models = (("student", student, student_loss),
              ("teacher", teacher, getattr(teacher, "loss", None)))
    if from_logits is not None:
        for role, model, _ in models:
            told = _told_probabilities(model, None)
            if warn and told is not None and told == from_logits:
                warnings.warn(f"Distiller: from_logits={from_logits}, but the {role} "
                              f"{model.name!r} ends in a {output_activation(model)}: its outputs "
                              f"are read as {'logits' if from_logits else 'probabilities'} as "
                              "asked; leave from_logits=None to read each model's as they are",
                              stacklevel=3)
        return not from_logits, not from_logits
    told = [_told_probabilities(model, loss) for _, model, loss in models]
    if told[1] is None and output_activation(student) is None:
        told[1] = told[0]
    for (role, model, _), answer in zip(models, told):
        if warn and answer is None:
            warnings.warn(f"Distiller: cannot tell whether the {role} {model.name!r} outputs "
                          "logits or probabilities (its output comes from a layer with no "
                          "activation tfdc knows); it is read as logits. Pass from_logits= "
                          "(or end it in a Softmax layer)", stacklevel=3)
    return tuple(bool(answer) for answer in told)


def trained_model(model):
    """The model whose layers a callback acts on: a `Distiller`'s student,
    else `model` itself."""
    return model.student if isinstance(model, Distiller) else model


class Distiller(keras.Model):
    """A student trained on hard labels and on a teacher's softened outputs.

    Compile it like the student (the compiled loss is the hard-label loss,
    e.g. `"sparse_categorical_crossentropy"`; metrics are computed on the
    student's predictions) and fit it on the student's data; callbacks see
    the student's layers. The teacher runs in inference mode and is never
    trained (it may share no layer with the student). Evaluation
    (`training=False`) reports the hard-label loss only, so validation
    losses compare with the student's own. Sample and class weights weight
    the hard-label term; the distillation term counts every example alike.
    Both models are classifiers with one output; save or export the
    student, not the Distiller.

    Args:
        student: the `keras.Model` to train (e.g. the one being pruned).
        teacher: a `keras.Model` with the same outputs (e.g. a copy of the
            uncompressed model, `tfdc.distill.Distiller.copy_of(model)`).
        temperature: `T`, the softening temperature (in (0, 100]; default
            4).
        alpha: weight of the hard-label loss, in [0, 1] (default 0.5); the
            distillation term gets `1 - alpha`.
        from_logits: whether the models output logits (True) or
            probabilities (False); applies to both. None (the default):
            each model's own, told by its output activation (a softmax, or
            a sigmoid on one unit, gives probabilities; a Softmax layer or
            keras.ops.softmax counts), else by its compiled cross-entropy's
            from_logits (the student's: the loss given to `compile`); a
            model that neither tells about is read as logits, with a
            warning at `compile`.

    Raises:
        TypeError: a student or teacher that is not a `keras.Model`.
        ValueError: a temperature outside (0, 100], an alpha outside
            [0, 1], a teacher that is the student or shares a layer with
            it, a student or teacher not built, a model of several outputs
            (or one in a dict or list), a teacher whose inputs or outputs differ from
            the student's, several sigmoid outputs (independent labels: no
            distribution to match); at compile, a regression loss for a
            model whose output is no softmax or sigmoid.

    Example:

    ```python
    import keras, numpy as np, tfdc
    from tfdc.distill import Distiller
    x, y = np.random.rand(256, 20).astype("float32"), np.random.randint(0, 3, 256)
    teacher = keras.Sequential([keras.Input((20,)), keras.layers.Dense(3, activation="softmax")])
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    distiller = Distiller(student, teacher, temperature=4.0, alpha=0.5)
    distiller.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    distiller.fit(x, y, epochs=2, verbose=0, callbacks=[tfdc.GradualPruning(0.5, frequency=4)])
    print(tfdc.sparsity(student).sparsity)   # 0.5
    ```
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.5, from_logits=None, **kwargs):
        for role, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise TypeError(f"the {role} must be a keras.Model, got "
                                f"{type(model).__name__}")
        super().__init__(name=kwargs.pop("name", f"distill_{student.name}"), **kwargs)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
                or not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if temperature > MAX_TEMPERATURE:
            raise ValueError(f"temperature must be at most {MAX_TEMPERATURE:g} (float32 cannot "
                             f"tell the softened distributions apart above it), got "
                             f"{temperature!r}")
        if from_logits is not None and not isinstance(from_logits, bool):
            raise ValueError(f"from_logits must be True, False or None, got {from_logits!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) \
                or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        if teacher is student:
            raise ValueError("the teacher is the student itself: pass a copy of the model "
                             "(Distiller.copy_of(model)) as the teacher")
        if getattr(student, "built", False) and student.weights and \
                not student.trainable_weights:
            # Distiller(copy_of(model), model): the frozen copy trained
            # nothing, and the fit said only Keras's "no trainable weights".
            raise ValueError(f"the student, {student.name!r}, has no trainable weights (a "
                             "frozen copy, Distiller.copy_of(model)?): the student is the model "
                             "to train, first: Distiller(model, Distiller.copy_of(model))")
        _check_model(student, "student")
        _check_model(teacher, "teacher")
        shared = _shared_layers(student, teacher)
        if shared:
            raise ValueError(f"the teacher shares layer{'s' * (len(shared) > 1)} "
                             f"{', '.join(map(repr, shared[:4]))} with the student: training "
                             "(and pruning) the student would change the teacher too; give a "
                             "copy (Distiller.copy_of(model)) as the teacher")
        _check_alike(student, teacher)
        units = _output_units(student)
        self._binary = units == 1
        self.student = student
        # Bypass Keras's attribute tracking: the teacher's layers and
        # variables must not become the Distiller's (callbacks would select
        # its kernels, the optimizer would build slots for them).
        object.__setattr__(self, "_teacher", teacher)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        # Built already: tfdc's callbacks install their constraints at the
        # start of fit, not after a first, unconstrained step (which would
        # move pruned weights off zero).
        self.built = True
        self._from_logits = from_logits
        # Told again at compile, with a word where they cannot be: the
        # student's hard-label loss may tell.
        self._student_probs, self._teacher_probs = _outputs_probabilities(
            student, teacher, from_logits, getattr(student, "loss", None), False)

    @property
    def teacher(self):
        """The teacher model (not tracked by the Distiller)."""
        return self._teacher

    @staticmethod
    def copy_of(model):
        """A frozen copy of `model` with its current weights, as a teacher."""
        from tfdc.layers import copy_model
        teacher = copy_model(model)
        teacher.trainable = False
        return teacher

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _log_softened(self, outputs, probabilities):
        """log softmax(z / T) for logits z, or for z = log p; one unit: for
        the two-class logits (0, z), z = log(p / (1 - p)) for a sigmoid."""
        outputs = ops.cast(outputs, "float32")
        if self._binary:
            if probabilities:
                p = ops.clip(outputs, 1e-7, 1.0 - 1e-7)
                outputs = ops.log(p) - ops.log(1.0 - p)
            outputs = ops.concatenate([ops.zeros_like(outputs), outputs], axis=-1)
        elif probabilities:
            outputs = ops.log(ops.clip(outputs, 1e-12, 1.0))
        return ops.log_softmax(outputs / self.temperature, axis=-1)

    def distillation_loss(self, teacher_outputs, student_outputs):
        """`T**2 * KL(teacher || student)` of the softened distributions,
        averaged over the batch."""
        log_t = self._log_softened(teacher_outputs, self._teacher_probs)
        log_s = self._log_softened(student_outputs, self._student_probs)
        kl = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1)
        return self.temperature ** 2 * ops.mean(kl)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """In training, `alpha` times the compiled (hard-label) loss plus
        `1 - alpha` times the distillation term, plus the model's own
        regularization losses; in evaluation, Keras's own (the compiled loss
        and the regularization losses), with no teacher."""
        total = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=training)
        if not training:
            return total
        # Regularization losses (self.losses) are not scaled by alpha.
        extra = [ops.sum(ops.cast(loss, "float32")) for loss in self.losses]
        regularization = ops.sum(ops.stack(extra)) if extra else 0.0
        hard = total - regularization
        soft = self.distillation_loss(ops.stop_gradient(self._teacher(x, training=False)), y_pred)
        return self.alpha * hard + (1.0 - self.alpha) * soft + regularization

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, refusing up front a callback that would save
        the whole Distiller (a `ModelCheckpoint` without
        `save_weights_only=True`): it failed at the end of the first epoch,
        losing that epoch's training."""
        for callback in callbacks or ():
            if isinstance(callback, keras.callbacks.ModelCheckpoint) and \
                    not callback.save_weights_only:
                raise ValueError(
                    "a ModelCheckpoint would save the whole Distiller, a training wrapper that "
                    "cannot be saved: give it save_weights_only=True (a .weights.h5 path), or "
                    "checkpoint distiller.student with a callback of your own")
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def compile(self, optimizer="rmsprop", loss=None, *args, **kwargs):
        """`keras.Model.compile`, refusing a regression loss for a model
        whose output is no softmax or sigmoid: it would be distilled as a
        classifier's logits (a probe's MSE model of one unit got T**2 times a
        binary KL of its outputs; one of four units, a softmax over them).
        For one unit, any loss but a cross-entropy is taken for one; for
        several, Keras's regression losses (a loss of the user's own may
        train logits)."""
        from tfdc.mistakes import loss_kind, loss_name
        kind = loss_kind(loss) if loss is not None else ""
        regression = ("crossentropy" not in kind if self._binary else
                      kind in _REGRESSION_LOSSES)
        if loss is not None and regression and \
                output_activation(self.student) not in ("softmax", "sigmoid"):
            units = ("one output unit" if self._binary else
                     f"{_output_units(self.student)} output units")
            fix = ("a binary classifier's logit unit: compile with "
                   "binary_crossentropy(from_logits=True)" if self._binary else
                   "a classifier's logits: compile with "
                   "sparse_categorical_crossentropy(from_logits=True)")
            raise ValueError(f"Distiller distils classifiers; {self.student.name!r} has {units} "
                             f"without a softmax or sigmoid and the loss {loss_name(loss)!r}: "
                             "a regression model, which has no class distribution to soften "
                             f"({fix})")
        self._student_probs, self._teacher_probs = _outputs_probabilities(
            self.student, self._teacher, self._from_logits, loss, True)
        return super().compile(optimizer, loss, *args, **kwargs)

    def get_config(self):
        raise NotImplementedError(_NOT_SAVED)

    def save(self, *args, **kwargs):
        # Before Keras opens the file: its save left an existing one empty.
        raise NotImplementedError(_NOT_SAVED)

    def export(self, *args, **kwargs):
        raise NotImplementedError(_NOT_SAVED.replace("save its", "export its"))


# Keras's losses of values, not of classes (`tfdc.mistakes.loss_kind`'s names).
_REGRESSION_LOSSES = {"mean_squared_error", "mean_absolute_error",
                      "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
                      "huber", "huber_loss", "log_cosh", "cosine_similarity", "poisson"}

_NOT_SAVED = "a Distiller is a training wrapper: save its student (distiller.student) instead"

