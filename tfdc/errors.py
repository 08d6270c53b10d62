"""Exception types raised by tfdc, the check that raises `BackendError`, the
line of another library's error message that tfdc repeats, and the record of
the signals the command line caught."""

import math
import re
import signal


class FormatError(ValueError):
    """A packed `.tflite` file is malformed, truncated, corrupted or of an
    unsupported version. Raised by every decoder path (Python and native).

    `status` names the class of error as docs/FORMAT.md §2 does:
    "not_packed" (no tfdc section: a plain or an already decoded model),
    "flatbuffer", "truncated", "version", "checksum", "too_large" or
    "corrupt" (the default: a field breaks a rule of the format).
    """

    def __init__(self, message="", status="corrupt"):
        if status not in FORMAT_STATUSES:  # a caller's typo would hide the error's class
            raise ValueError(f"FormatError status must be one of {', '.join(FORMAT_STATUSES)}, "
                             f"got {status!r}")
        super().__init__(message)
        self.status = status


# FORMAT.md §2's statuses, as FormatError.status names them (the native
# decoder's statuses map to these in tfdc/native/pymodule.c).
FORMAT_STATUSES = ("not_packed", "flatbuffer", "truncated", "version", "checksum",
                   "too_large", "corrupt")


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be found locally nor downloaded."""


class BackendError(RuntimeError):
    """Keras runs on a backend that this part of tfdc cannot train on.

    The training callbacks (`GradualPruning`, `ClusteredFineTuning`,
    `StructuredPruning`) and `tfdc.compress`, which uses them, need Keras's
    TensorFlow backend: their pruning masks and clustered gradients are
    TensorFlow ops (a fused TensorFlow op among them). Raised when such a
    callback is made, before anything is trained.
    """


def require_tensorflow_backend(what):
    """Raise `BackendError` naming `what` unless Keras runs on TensorFlow.

    Under JAX the callbacks failed inside the optimizer step (a Variable
    that could not be converted to a NumPy dtype), after which every train
    or predict call on the model failed ('NoneType' object is not callable).
    """
    import keras
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    raise BackendError(
        f"{what} needs Keras's TensorFlow backend, but Keras runs on {backend!r} here (from "
        "KERAS_BACKEND or ~/.keras/keras.json). Set KERAS_BACKEND=tensorflow before Keras is "
        "imported, or save the model (model.save('model.keras')) and compress that file "
        "from the command line, which loads it on the TensorFlow backend: "
        "tfdc compress model.keras DATA.npz OUT ...")


def listed(items, limit, sep=", "):
    """The first `limit` of `items` joined by `sep`, and "..." where there
    are more: the few a message names."""
    items = [str(item) for item in items]
    return sep.join(items[:limit]) + (f"{sep}..." if len(items) > limit else "")


def finite(value):
    """`math.isfinite(value)`, False for an int beyond float's range (where
    math raises OverflowError and numpy a TypeError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def first_line(error):
    """The line of an exception's message that says what went wrong (Keras's
    run long and start with "Exception encountered when calling ...")."""
    # An array printed in the message (Keras: "Invalid input shape for input
    # [[0. 0. ...]]. Expected shape (None, 28, 28), ...") spans lines and
    # would hide what follows it: shown as [...].
    text = re.sub(r"\s*\[\[\{\{node [^]]*\]\]", "", str(error))  # a graph error's node
    text = re.sub(r"\[\[.*?\]\]", "[...]", text, flags=re.S)
    # TensorFlow's kernels: "{{function_node __wrapped__...}} Received a
    # label value of 7 ...  Label values: 6 5 7 ..." (every label).
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s+Label values:[\d\s-]*", " ", text)
    text = re.sub(r"\s*\[Op:\w+\]( name:[^\n]*)?", "", text)
    text = text.replace(" with name 'None'", "")  # Keras's word for an unnamed input
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    # A graph execution error's call stack: "Detected at node ...", 'File
    # "x.py", line 3' (not Keras's "File not found: ...").
    lines = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", 'File "'))]
    if len(lines) > 1 and lines[0].startswith("Exception encountered"):
        return lines[1]
    return lines[0] if lines else type(error).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Python runs next so that the cleanup
    an interrupt gets runs too (the temporary file of an atomic write,
    tfdc compress's run folder): killed outright, they were left behind."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# The signals the command line's handlers caught (`note_signal`).
_caught_signals = []


def note_signal(signum, frame=None):
    """The command line's handler of SIGINT, SIGTERM and SIGHUP: note the
    signal and raise `KeyboardInterrupt` / `Terminated` where Python runs
    next. Python drops an exception raised inside a weakref callback or a
    `__del__` ("Exception ignored in ..."): a Ctrl-C landing there was lost,
    and `tfdc compress` went on to replace OUT and exit 0. Noted, it is
    raised again by `raise_if_signalled` (before a file is written, after a
    training batch)."""
    _caught_signals.append(signum)
    raise _interruption(signum)


def raise_if_signalled():
    """Raise the interruption of a signal `note_signal` caught, if any."""
    if _caught_signals:
        raise _interruption(_caught_signals[0])


def forget_signals():
    """Clear the record (the command line, when a command ends)."""
    _caught_signals.clear()


def _interruption(signum):
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
