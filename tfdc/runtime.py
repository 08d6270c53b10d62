"""Load a tfdc-packed (or plain) `.tflite` model into a LiteRT interpreter.

A packed file is decoded in memory (`tfdc.decode`) into a standard TFLite
model and handed to `ai_edge_litert.interpreter.Interpreter`, the maintained
LiteRT runtime; `tf.lite.Interpreter` is the fallback when ai-edge-litert is
not installed. Plain `.tflite` files are loaded unchanged.
"""

import io
import numbers
import os

__all__ = ["load_interpreter", "read_model_bytes", "interpreter_class", "is_decoded",
           "MAX_THREADS"]

# The most interpreter threads load_interpreter passes on: LiteRT 2.x crashed
# the process (a segmentation fault) at 16,384, and no phone has more cores.
# (Its Python interpreter takes 1 or more; -1 and 0 are ValueErrors there.)
MAX_THREADS = 1024


def read_model_bytes(path_or_bytes):
    """The bytes of a model given as bytes-like or a filesystem path.

    A file is read whole only if its bytes 4..8 are TFLite's identifier
    "TFL3": anything else is refused after its first 8 bytes with a
    `tfdc.FormatError` naming the path, so that an endless device
    (`/dev/zero`) or a huge file of another kind is not read into memory
    first. A file shorter than 8 bytes is returned as it is (the caller
    calls it empty or truncated). A pipe is read as a file is."""
    if isinstance(path_or_bytes, bytes) and len(path_or_bytes) < 4096 and \
            path_or_bytes[4:8] != b"TFL3" and (path_or_bytes.endswith(b".tflite")
                                               or os.path.exists(path_or_bytes)):
        raise TypeError(f"got the bytes {path_or_bytes!r}, which look like a file name: a "
                        "path is a str or os.PathLike (bytes are the model itself)")
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    if isinstance(path_or_bytes, str) and (path_or_bytes[4:8] == "TFL3" or "\0" in path_or_bytes):
        # The model's bytes decoded to text (data.decode("latin1")): open()'s
        # own error was "embedded null byte".
        raise TypeError(f"got a str of {len(path_or_bytes):,} characters that holds no file name "
                        "(a NUL, or TFLite's identifier at 4..8): a str is a path; pass the "
                        "model's bytes as bytes")
    if isinstance(path_or_bytes, (str, os.PathLike)):
        # Unbuffered: a file is then read with one allocation of its size
        # (a buffered read after the header held it twice).
        with open(path_or_bytes, "rb", buffering=0) as raw:
            f = raw if raw.seekable() else io.BufferedReader(raw)  # a pipe: as a stream
            head = f.read(8)
            if len(head) == 8:
                check_tflite_header(head, path_or_bytes)
            if f is raw:
                raw.seek(0)
                return raw.readall()
            return head + f.read()
    try:  # any other bytes-like object: an mmap, a NumPy uint8 array, array.array
        return bytes(memoryview(path_or_bytes))  # its bytes in order, strided or not
    except TypeError:
        pass
    raise TypeError("expected a path or the bytes of a .tflite model (bytes-like), got "
                    f"{type(path_or_bytes).__name__}")


def check_tflite_header(data, path_or_bytes=None):
    """A `tfdc.FormatError` (status "flatbuffer"), naming the file where
    `path_or_bytes` is a path, for bytes that are no .tflite model: empty,
    shorter than the 8-byte header, or without TFLite's identifier "TFL3"
    at bytes 4..8. One wording for every reader."""
    if len(data) >= 8 and bytes(data[4:8]) == b"TFL3":
        return
    from tfdc.errors import FormatError
    where = (f"{os.fspath(path_or_bytes)}: "
             if isinstance(path_or_bytes, (str, os.PathLike)) else "")
    what = ("an empty file" if not data else
            f"{len(data)} bytes, shorter than a .tflite header" if len(data) < 8 else
            "no TFL3 identifier")
    raise FormatError(f"{where}not a .tflite file ({what})", status="flatbuffer")


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
    """True if `data` is the output of `tfdc.decode`: a standard model that
    every runtime loads as it is (see `tfdc.unpack.is_decoded`)."""
    from tfdc.unpack import is_decoded as _is_decoded
    return _is_decoded(data)


def load_interpreter(path_or_bytes, *, backend="auto", max_size=None, **kwargs):
    """Create an interpreter for a packed, decoded or plain `.tflite` model.

    Args:
        path_or_bytes: a file path, or the model's bytes.
        backend: decoder used for packed files (`"auto"`, `"python"`, or
            `"native"`), passed to `tfdc.decode`.
        max_size: the limit on a packed file's decoded size, passed to
            `tfdc.decode` (default: its default).
        **kwargs: passed to the interpreter (e.g. `num_threads=2`, an int
            from 1 to `MAX_THREADS`, or None for the runtime's default; not
            `model_path` / `model_content`, which this call sets).

    Returns:
        An interpreter, not yet allocated (call `allocate_tensors()`). The
        decoded model bytes are kept alive as its attribute
        `tfdc_model_content` for as long as the interpreter lives, since
        TFLite reads weights from them in place.

    Raises:
        tfdc.FormatError: the file is empty or not a `.tflite` model, or a
            packed file is malformed or corrupted (the message names the path).

    Example:

    ```python
    import tfdc
    tfdc.export(tfdc.models.lenet_300_100(), "lenet.tflite")
    interpreter = tfdc.load_interpreter("lenet.tflite")
    interpreter.allocate_tensors()
    ```
    """
    from tfdc.errors import FormatError
    from tfdc.unpack import decode, has_section_entry, key_damage

    taken = sorted({"model_path", "model_content"} & set(kwargs))
    if taken:
        raise TypeError(f"load_interpreter sets {' and '.join(taken)} itself: give the model as "
                        "its first argument")
    threads = kwargs.get("num_threads")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or \
                not 1 <= threads <= MAX_THREADS:
            raise ValueError(f"num_threads must be an int from 1 to {MAX_THREADS} (None: the "
                             f"runtime's default), got {threads!r}")
        kwargs["num_threads"] = int(threads)  # LiteRT refuses a numpy integer
    data = read_model_bytes(path_or_bytes)
    where = (f"{os.fspath(path_or_bytes)}: "
             if isinstance(path_or_bytes, (str, os.PathLike)) else "")
    # The interpreter's own message for an empty file is "`model_path` or
    # `model_content` must be specified".
    check_tflite_header(data, path_or_bytes)
    damage = key_damage(data, where)
    if damage:
        raise damage
    # Anything carrying a tfdc.v1 / tfdc.v2 entry that is not an intact
    # decoded file goes to the decoder, so a damaged packed file raises
    # FormatError rather than reaching the interpreter.
    if has_section_entry(data) and not is_decoded(data):
        try:
            data = decode(data, backend=backend, max_size=max_size)
        except FormatError as e:
            raise FormatError(where + str(e), status=e.status) from None
    elif is_decoded(data):
        from tfdc.flatbuf import read_model
        end = max([b.offset + b.size for b in read_model(data).buffers if b.offset > 1] or [0])
        if end > len(data):
            raise FormatError(f"{where}a decoded tfdc model whose weights are cut off: its "
                              f"buffers end at byte {end}, the file at {len(data)} (truncated?)",
                              status="truncated")
    try:
        interpreter = interpreter_class()(model_content=data, **kwargs)
    except ValueError as e:
        if set(kwargs) - {"num_threads"}:
            raise  # the options given may be what it refuses
        # A truncated or damaged plain model: LiteRT's verifier refuses it
        # ("Model provided is schema version 0", "No subgraph in the model").
        raise FormatError(f"{where}LiteRT cannot load it: {e} (a damaged or truncated "
                          ".tflite file)", status="flatbuffer") from None
    # TFLite does not copy model_content: the interpreter must own a
    # reference to the exact bytes object it reads its weights from.
    interpreter.tfdc_model_content = data
    return interpreter
