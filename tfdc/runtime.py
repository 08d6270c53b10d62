"""Load a tfdc-packed (or plain) `.tflite` model into a LiteRT interpreter.

A packed file is decoded in memory (`tfdc.decode`) into a standard TFLite
model and handed to `ai_edge_litert.interpreter.Interpreter`, the maintained
LiteRT runtime; `tf.lite.Interpreter` is the fallback when ai-edge-litert is
not installed. Plain `.tflite` files are loaded unchanged.
"""

import os

__all__ = ["load_interpreter", "read_model_bytes", "interpreter_class", "is_decoded"]


def read_model_bytes(path_or_bytes):
    """The bytes of a model given as bytes-like or a filesystem path."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    if isinstance(path_or_bytes, (str, os.PathLike)):
        with open(path_or_bytes, "rb") as f:
            return f.read()
    raise TypeError("expected a path or bytes of a .tflite model, got "
                    f"{type(path_or_bytes).__name__}")


def interpreter_class():
    """`ai_edge_litert.interpreter.Interpreter`, or `tf.lite.Interpreter` if
    ai-edge-litert is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    return Interpreter


def is_decoded(data):
    """True if `data` is the output of `tfdc.decode`: it keeps the packed
    file's flatbuffer and section (with its `tfdc.v1` entry) and adds the
    decoded weights after them, so the section no longer ends the file and
    its header's `decoded_size` is the file's length. Such a file is a
    standard model and is loaded as it is."""
    import struct
    import zlib

    from tfdc import format as fmt
    from tfdc.unpack import section_span

    span = section_span(data)
    if span is None:
        return False
    start, size = span
    if (size < fmt.HEADER.size + fmt.CRC.size or start + size >= len(data)
            or data[start:start + len(fmt.MAGIC)] != fmt.MAGIC):
        return False
    (decoded_size,) = struct.unpack_from("<Q", data, start + fmt.HEADER_DECODED_SIZE_OFFSET)
    (crc,) = fmt.CRC.unpack_from(data, start + size - fmt.CRC.size)
    return decoded_size == len(data) and zlib.crc32(data[start:start + size - 4]) == crc


def load_interpreter(path_or_bytes, *, backend="auto", **kwargs):
    """Create an interpreter for a packed, decoded or plain `.tflite` model.

    Args:
        path_or_bytes: a file path, or the model's bytes.
        backend: decoder used for packed files (`"auto"`, `"python"`, or
            `"native"`), passed to `tfdc.decode`.
        **kwargs: passed to the interpreter (e.g. `num_threads=2`).

    Returns:
        An interpreter, not yet allocated (call `allocate_tensors()`). The
        decoded model bytes are kept alive as its attribute
        `tfdc_model_content` for as long as the interpreter lives, since
        TFLite reads weights from them in place.

    Raises:
        tfdc.FormatError: a packed file is malformed or corrupted.

    Example:

    ```python
    interpreter = tfdc.load_interpreter("lenet.tflite")
    interpreter.allocate_tensors()
    ```
    """
    from tfdc.unpack import decode, has_section_entry

    data = read_model_bytes(path_or_bytes)
    # Anything carrying a tfdc.v1 entry that is not an intact decoded file
    # goes to the decoder, so a damaged packed file raises FormatError rather
    # than reaching the interpreter.
    if has_section_entry(data) and not is_decoded(data):
        data = decode(data, backend=backend)
    interpreter = interpreter_class()(model_content=data, **kwargs)
    # TFLite does not copy model_content: the interpreter must own a
    # reference to the exact bytes object it reads its weights from.
    interpreter.tfdc_model_content = data
    return interpreter
