"""tfdc.errors: what needs Keras's TensorFlow backend says so, by name,
before anything is trained (under JAX the callbacks broke the model: every
later train or predict call failed)."""

import keras
import numpy as np
import pytest

import tfdc
from tfdc.errors import (FORMAT_STATUSES, BackendError, FormatError, first_line,
                         require_tensorflow_backend)


def test_tensorflow_backend_passes():
    assert keras.backend.backend() == "tensorflow"
    require_tensorflow_backend("anything")


@pytest.mark.parametrize("make, name", [
    (lambda: tfdc.GradualPruning(0.5), "tfdc.GradualPruning"),
    (lambda: tfdc.ClusteredFineTuning(bits=4), "tfdc.ClusteredFineTuning"),
    (lambda: tfdc.StructuredPruning(0.5), "tfdc.StructuredPruning"),
    (lambda: tfdc.compress(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
                           (np.zeros((8, 4)), np.zeros(8)), (np.zeros((8, 4)), np.zeros(8)),
                           target_bytes=1000, path="never-written.tflite"), "tfdc.compress"),
])
def test_the_callbacks_and_compress_refuse_another_backend(monkeypatch, tmp_path, make, name):
    # The backend is fixed when Keras is imported; its name is what the
    # check reads (JAX itself is not installed here: by hand with jax
    # 0.10.2, the callbacks raised this and tfdc.export still worked).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(BackendError, match=f"^{name} needs Keras's TensorFlow backend, but "
                       "Keras runs on 'jax' here .*KERAS_BACKEND=tensorflow.*"
                       "tfdc compress model.keras"):
        make()
    assert not list(tmp_path.iterdir())


def test_backend_error_is_public_and_a_runtime_error():
    assert tfdc.BackendError is BackendError and issubclass(BackendError, RuntimeError)


def test_first_line_keeps_a_message_that_starts_with_file():
    # A call stack's 'File "x.py", line 3' is left out, not Keras's "File
    # not found: ..." (a truncated .keras file was reported as "ValueError").
    error = ValueError("File not found: filepath=m.keras. Please ensure the file is an "
                       "accessible `.keras` zip file.")
    assert first_line(error) == str(error)
    assert first_line(ValueError('Graph execution error:\n\nFile "x.py", line 3\nbad label')) \
        == "bad label"


def test_first_line_drops_the_name_keras_gives_as_none():
    # Keras names an input it has no name for "'None'": "Input 0 with name
    # 'None' of layer 'dense' is incompatible ..." (x of 780 columns for 784).
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(4, name="dense")])
    with pytest.raises(ValueError) as e:
        model(np.zeros((2, 780), "float32"))
    assert first_line(e.value) == (
        "Input 0 of layer 'dense' is incompatible with the layer: expected axis -1 of input "
        "shape to have value 784, but received input with shape (2, 780)")


def test_format_error_takes_only_the_format_s_statuses():
    for status in FORMAT_STATUSES:
        assert FormatError("damage", status=status).status == status
    assert FormatError("damage").status == "corrupt"
    with pytest.raises(ValueError, match=r"status must be one of not_packed, .*corrupt, "
                                         r"got 'bogus'"):
        FormatError("damage", status="bogus")

