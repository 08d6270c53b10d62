"""The minimal, bounds-checked TFLite flatbuffer reader of FORMAT.md §3.1.

A packed file is decoded without a flatbuffers library: a decoder needs only
`Model.buffers` (each `Buffer.data / offset / size`) and `Model.metadata`
(each `Metadata.name / buffer`). Every read is checked against the file
length and every loop is bounded by it, so a corrupted file raises
`tfdc.FormatError` and never reads out of range or loops for long.
`quantization_vectors` (for the packer's patches, §6.7) finds the tensors'
quantization scales and zero points with the same reader.

Example:

    from tfdc.flatbuf import read_model
    model = read_model(open("model.tflite", "rb").read())
    for name, buffer_index in model.metadata:
        print(name, model.buffers[buffer_index])
"""

import dataclasses
import struct

from tfdc.errors import FormatError
from tfdc.format import TENSOR_TYPES

# Field ids in schema.fbs.
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_METADATA_NAME, _METADATA_BUFFER = 0, 1
# For the packer's patches (FORMAT.md §6.7): where quantization vectors lie.
_MODEL_SUBGRAPHS, _SUBGRAPH_TENSORS = 2, 0
_TENSOR_NAME, _TENSOR_QUANTIZATION = 3, 4
# QuantizationParameters vectors: (field id, name, TFLite TensorType of the
# elements: FLOAT32, INT64).
_QUANTIZATION_VECTORS = ((2, "scale", 0), (3, "zero_point", 4))


@dataclasses.dataclass(frozen=True)
class BufferRef:
    """One `Model.buffers` entry.

    `data_start` / `data_len`: position and length of the inline `data`
    vector in the file (`data_start` is None when the field is absent).
    `offset` / `size`: the `Buffer.offset` / `Buffer.size` fields (0 if absent).
    """
    data_start: object
    data_len: int
    offset: int
    size: int


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """What a decoder needs from a TFLite `Model`."""
    buffers: list   # [BufferRef]
    metadata: list  # [(name: bytes, buffer_index: int)]


class Reader:
    """Bounds-checked little-endian reads of FlatBuffers objects in `data`."""

    def __init__(self, data):
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.size = len(data)

    def _check(self, pos, length, what):
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FormatError(f"flatbuffer: {what} at {pos} (+{length}) is outside the "
                              f"{self.size}-byte file", status="flatbuffer")

    def u16(self, pos, what="u16"):
        self._check(pos, 2, what)
        return struct.unpack_from("<H", self.data, pos)[0]

    def u32(self, pos, what="u32"):
        self._check(pos, 4, what)
        return struct.unpack_from("<I", self.data, pos)[0]

    def i32(self, pos, what="soffset"):
        self._check(pos, 4, what)
        return struct.unpack_from("<i", self.data, pos)[0]

    def u64(self, pos, what="u64"):
        self._check(pos, 8, what)
        return struct.unpack_from("<Q", self.data, pos)[0]

    def field(self, table, field_id, what="table"):
        """Position of field `field_id` of the table at `table`, or None."""
        vtable = table - self.i32(table, f"{what} soffset")
        vt_size = self.u16(vtable, f"{what} vtable size")
        if vt_size < 4 or vt_size % 2:
            raise FormatError(f"flatbuffer: {what} vtable size {vt_size} is invalid",
                              status="flatbuffer")
        if 4 + 2 * field_id >= vt_size:
            return None
        o = self.u16(vtable + 4 + 2 * field_id, f"{what} voffset")
        if o == 0:
            return None
        return table + o

    def deref(self, field_pos, what):
        """Follow the `uoffset` stored at `field_pos`."""
        return field_pos + self.u32(field_pos, what)

    def vector(self, pos, elem_size, what):
        """`(count, first_element_pos)` of the vector at `pos`, whole array checked."""
        n = self.u32(pos, f"{what} length")
        self._check(pos + 4, n * elem_size, what)
        return n, pos + 4

    def scalar_u64(self, table, field_id, what):
        p = self.field(table, field_id, what)
        return 0 if p is None else self.u64(p, what)

    def scalar_u32(self, table, field_id, what):
        p = self.field(table, field_id, what)
        return 0 if p is None else self.u32(p, what)


def read_model(data, metadata=True):
    """Parse `Model.buffers` and `Model.metadata` of a TFLite flatbuffer.

    Args:
        data: the whole file (bytes-like).
        metadata: also read `Model.metadata` (a format 2 decoder reads only
            the buffers of the inner flatbuffer).

    Returns:
        `ModelRef`. Raises `FormatError` if any read is out of range or the
        file identifier is not `TFL3`.
    """
    r = Reader(data)
    if r.size < 8:
        raise FormatError("flatbuffer: file shorter than 8 bytes", status="flatbuffer")
    if bytes(r.data[4:8]) != b"TFL3":
        raise FormatError("flatbuffer: file identifier is not TFL3", status="flatbuffer")
    root = r.u32(0, "root offset")
    buffers = []
    p = r.field(root, _MODEL_BUFFERS, "Model")
    if p is not None:
        n, first = r.vector(r.deref(p, "Model.buffers"), 4, "Model.buffers")
        for j in range(n):  # n ≤ file size / 4: the vector was bounds-checked
            entry = first + 4 * j
            table = r.deref(entry, "Buffer")
            d = r.field(table, _BUFFER_DATA, "Buffer")
            if d is None:
                data_start, data_len = None, 0
            else:
                data_len, data_start = r.vector(r.deref(d, "Buffer.data"), 1, "Buffer.data")
            buffers.append(BufferRef(data_start, data_len,
                                     r.scalar_u64(table, _BUFFER_OFFSET, "Buffer.offset"),
                                     r.scalar_u64(table, _BUFFER_SIZE, "Buffer.size")))
    entries = []
    p = r.field(root, _MODEL_METADATA, "Model") if metadata else None
    if p is not None:
        n, first = r.vector(r.deref(p, "Model.metadata"), 4, "Model.metadata")
        for j in range(n):
            table = r.deref(first + 4 * j, "Metadata")
            name_field = r.field(table, _METADATA_NAME, "Metadata")
            if name_field is None:
                name = b""
            else:
                length, start = r.vector(r.deref(name_field, "Metadata.name"), 1,
                                         "Metadata.name")
                name = bytes(r.data[start:start + length])
            entries.append((name, r.scalar_u32(table, _METADATA_BUFFER, "Metadata.buffer")))
    return ModelRef(buffers, entries)


@dataclasses.dataclass(frozen=True)
class VectorRef:
    """A vector of a tensor's `QuantizationParameters`: its `count` elements
    are bytes `[start, start + nbytes)` of the flatbuffer."""
    tensor_name: str
    field: str          # "scale" (float32) or "zero_point" (int64)
    start: int
    count: int
    tensor_type: int    # of the elements: a key of tfdc.format.TENSOR_TYPES

    @property
    def dtype(self):
        """`(name, bits, kind)` of the elements, as `tfdc.format.TENSOR_TYPES`."""
        return TENSOR_TYPES[self.tensor_type]

    @property
    def nbytes(self):
        return self.count * self.dtype[1] // 8

    @property
    def label(self):
        """The name a patch of this vector is reported under: "fc1/MatMul
        (scale)" (`tfdc.report` shortens it to "fc1 scale")."""
        return f"{self.tensor_name} ({self.field})"


def quantization_vectors(data):
    """Every non-empty `scale` and `zero_point` vector of every tensor's
    `QuantizationParameters` in the TFLite flatbuffer `data`, in the order
    of their bytes, each once (a flatbuffer may share one vector among
    tensors).

    Example:

        from tfdc.flatbuf import quantization_vectors
        for v in quantization_vectors(open("model.tflite", "rb").read()):
            print(v.tensor_name, v.field, v.count)
    """
    r = Reader(data)
    root = r.u32(0, "root offset")
    found = {}
    p = r.field(root, _MODEL_SUBGRAPHS, "Model")
    subgraphs = r.vector(r.deref(p, "Model.subgraphs"), 4, "Model.subgraphs") if p else (0, 0)
    for g in range(subgraphs[0]):
        sg = r.deref(subgraphs[1] + 4 * g, "SubGraph")
        p = r.field(sg, _SUBGRAPH_TENSORS, "SubGraph")
        if p is None:
            continue
        n, first = r.vector(r.deref(p, "SubGraph.tensors"), 4, "SubGraph.tensors")
        for t in range(n):
            tensor = r.deref(first + 4 * t, "Tensor")
            q = r.field(tensor, _TENSOR_QUANTIZATION, "Tensor")
            if q is None:
                continue
            q = r.deref(q, "Tensor.quantization")
            name = r.field(tensor, _TENSOR_NAME, "Tensor")
            if name is not None:
                length, start = r.vector(r.deref(name, "Tensor.name"), 1, "Tensor.name")
                name = bytes(r.data[start:start + length]).decode("utf-8", "replace")
            for field_id, field, tensor_type in _QUANTIZATION_VECTORS:
                v = r.field(q, field_id, "QuantizationParameters")
                if v is None:
                    continue
                size = TENSOR_TYPES[tensor_type][1] // 8
                count, start = r.vector(r.deref(v, field), size, field)
                if count and start not in found:
                    found[start] = VectorRef(name or "", field, start, count, tensor_type)
    return [found[k] for k in sorted(found)]
