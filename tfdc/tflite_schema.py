"""The TFLite flatbuffer object API, for the packer and the tools.

Writing a `.tflite` needs the generated schema classes (`ModelT`, `BufferT`,
...): TensorFlow's copy is loaded from its file without importing TensorFlow
itself, else ai-edge-litert's. Decoders never use this module: they read the
few fields they need with `tfdc.flatbuf`.

Example:

```python
import numpy as np
from tfdc import tflite_schema
data = tflite_schema.constant_model([np.arange(4, dtype=np.float32)])   # or a .tflite's bytes
model = tflite_schema.read(data)                                 # a ModelT
print(len(model.buffers), "buffers")
data = tflite_schema.build(model)                                 # bytes again
```
"""

import importlib
import importlib.util
import os
import struct

import numpy as np

from tfdc import format as fmt
from tfdc.errors import FormatError

__all__ = ["get", "read", "build", "strip_debug", "constant_model", "builtin_code", "op_name"]

_SCHEMA = []


def _load():
    spec = importlib.util.find_spec("tensorflow")
    if spec is not None and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            path = os.path.join(base, "lite", "python", "schema_py_generated.py")
            if os.path.exists(path):
                name = "tfdc._tflite_schema"
                mod_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
                return module
    return importlib.import_module("ai_edge_litert.schema_py_generated")


def get():
    """The generated schema module (loaded once)."""
    if not _SCHEMA:
        _SCHEMA.append(_load())
    return _SCHEMA[0]


def builtin_code(opcode):
    """The builtin operator of an `OperatorCodeT`: codes above 127 live only
    in `builtinCode`, older files keep theirs in `deprecatedBuiltinCode`
    (schema.fbs: take the larger of the two)."""
    return max(int(opcode.builtinCode or 0), int(opcode.deprecatedBuiltinCode or 0))


def op_name(code):
    """The `BuiltinOperator` name of a builtin code (e.g. "DEQUANTIZE")."""
    for name, value in vars(get().BuiltinOperator).items():
        if value == code and not name.startswith("_"):
            return name
    return f"op {code}"


def read(data, copy=True):
    """The `ModelT` object tree of `.tflite` bytes (buffers keep their
    identity: no empty buffer is re-pointed, unlike ai-edge-litert's
    `flatbuffer_utils.read_model_from_bytearray`).

    Buffer data are NumPy views of a copy of `data`, or with `copy=False`
    and `bytes` data, read-only views of `data` itself (a large model is
    then not held twice).

    Raises:
        tfdc.FormatError: `data` is not a readable TFLite flatbuffer (the
            generated reader's own errors, e.g. a truncated file, are
            reported as such instead of `struct.error` or `TypeError`).
    """
    from tfdc.flatbuf import read_model
    read_model(data)  # bounds-checked: identifier, root, buffers, metadata
    with damaged_flatbuffer(len(data)):
        buf = data if not copy and isinstance(data, bytes) else bytearray(data)
        return get().ModelT.InitFromPackedBuf(buf, 0)


# What the generated (unchecked) readers raise on a damaged flatbuffer.
_READER_ERRORS = (struct.error, ValueError, TypeError, IndexError, OverflowError,
                  UnicodeDecodeError)


class damaged_flatbuffer:
    """A context in which the generated readers' errors on a damaged
    flatbuffer of `size` bytes (a `struct.error` for a table that points
    outside it, a `ValueError` for a bad number) become one `FormatError`
    saying so, instead of Python's own words."""

    def __init__(self, size):
        self.size = size

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None or not issubclass(kind, _READER_ERRORS) or isinstance(error, FormatError):
            return False
        outside = issubclass(kind, (struct.error, IndexError))
        what = (f"a table or vector points outside the {self.size:,}-byte flatbuffer"
                if outside else "a field holds an invalid value")
        raise FormatError(f"not a readable TFLite flatbuffer (damaged or truncated: {what})",
                          status="flatbuffer") from None


def _pack_buffer_aligned(builder, buffer, schema):
    """`BufferT.Pack` with the data vector aligned to 16 bytes, as the TFLite
    converter writes it (the generated Python code aligns to 1)."""
    data = None
    if buffer.data is not None:
        payload = np.ascontiguousarray(buffer.data, dtype=np.uint8).tobytes()
        builder.StartVector(1, len(payload), 16)
        builder.head = builder.head - len(payload)
        builder.Bytes[builder.head:builder.head + len(payload)] = payload
        builder.vectorNumElems = len(payload)
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, buffer.offset)
    schema.BufferAddSize(builder, buffer.size)
    return schema.BufferEnd(builder)


def build(model):
    """Serialise a `ModelT` to `.tflite` bytes (file identifier `TFL3`,
    weight data aligned to 16 bytes)."""
    import flatbuffers
    schema = get()
    for b in model.buffers:
        b.Pack = (lambda builder, _b=b: _pack_buffer_aligned(builder, _b, schema))
    try:
        builder = flatbuffers.Builder(1024)
        root = model.Pack(builder)
        builder.Finish(root, file_identifier=b"TFL3")
        return bytes(builder.Output())
    finally:
        for b in model.buffers:
            del b.Pack


def strip_debug(model):
    """Remove, in place, the names and metadata of a `ModelT` that no runtime
    reads (`tfdc.pack.pack_tflite(strip_debug=True)`): the model description,
    subgraph names, names of intermediate (activation) tensors and the
    converter's `CONVERSION_METADATA`.

    Kept: the signature defs, the names of the model's input and output
    tensors (those of subgraph 0 and of every subgraph a signature runs; not
    the loop-carried ones of control-flow bodies) and of every tensor a
    signature refers to: users and LiteRT's signature runner bind inputs by
    them. Constant tensors keep their names too (for `tfdc inspect`).
    """
    model.description = None
    entries = {0} | {int(s.subgraphIndex or 0) for s in model.signatureDefs or []}
    for index, sg in enumerate(model.subgraphs or []):
        named = set()
        if index in entries:
            named.update(int(i) for i in _as_list(sg.inputs) + _as_list(sg.outputs))
        for signature in model.signatureDefs or []:
            if int(signature.subgraphIndex or 0) == index:
                named.update(int(t.tensorIndex) for t in
                             list(signature.inputs or []) + list(signature.outputs or []))
        for i, tensor in enumerate(sg.tensors or []):
            buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
            if i not in named and (buf is None or buf.data is None or len(buf.data) == 0):
                tensor.name = None
        sg.name = None
    kept = []
    for m in model.metadata or []:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name == "CONVERSION_METADATA":
            # The buffer stays (indices must not shift) but holds nothing.
            model.buffers[m.buffer].data = None
        else:
            kept.append(m)
    model.metadata = kept


def _as_list(values):
    return [] if values is None else list(values)


def constant_model(arrays):
    """A minimal TFLite flatbuffer whose only content is `arrays` as constant
    tensors (buffers 1 ... n, tensors named "w0", "w1", ...). Each item is a
    NumPy array, or `(data, tensor_type, shape)` with the buffer's bytes
    given as a uint8 array (for types NumPy lacks, e.g. int4 = 17). It is not
    runnable; tests and tools/format_example.py use it to pack exact byte
    patterns."""
    schema = get()
    model = schema.ModelT()
    model.version = 3
    model.description = "tfdc constant_model"
    model.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = [], [], [], []
    for i, a in enumerate(arrays):
        t = schema.TensorT()
        t.name = f"w{i}"
        if isinstance(a, tuple):
            data, t.type, shape = a
            data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        else:
            a = np.ascontiguousarray(a)
            t.type, shape = fmt.NUMPY_TO_TENSOR_TYPE[a.dtype], a.shape
            data = np.frombuffer(a.astype(a.dtype.newbyteorder("<")).tobytes(), np.uint8)
        t.shape = np.array(shape, dtype=np.int32)
        t.buffer = len(model.buffers)
        b = schema.BufferT()
        b.data = data
        model.buffers.append(b)
        sg.tensors.append(t)
    model.subgraphs = [sg]
    return build(model)


def with_quantization(data, scale, zero_point=None, tensor=0):
    """`.tflite` bytes `data` (e.g. a `constant_model`) with a
    `QuantizationParameters` of per-channel (axis 0) float32 `scale` and
    int64 `zero_point` values (None: no zero points) on tensor `tensor` of
    the first subgraph. Tests and tools/make_v2_corpus.py use it to give the
    packer quantization vectors to patch (FORMAT.md §6.7)."""
    schema = get()
    model = read(data)
    q = schema.QuantizationParametersT()
    q.scale = np.asarray(scale, np.float32)
    q.zeroPoint = None if zero_point is None else np.asarray(zero_point, np.int64)
    model.subgraphs[0].tensors[tensor].quantization = q
    return build(model)
