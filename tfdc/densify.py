"""Expand TFLite's own sparse constants into the dense constants they stand for.

`TFLiteConverter` with `Optimize.EXPERIMENTAL_SPARSITY` stores a weight with
enough zeros in TFLite's sparse layout — the nonzeros in the buffer, their
positions as per-dimension `DimensionMetadata` (DENSE sizes, SPARSE_CSR
segment and index vectors of uint8 / uint16 / int32) inside the tensor's
`SparsityParameters`, optionally in blocks (`block_map`) and in a permuted
`traversal_order` — and reads it through a `DENSIFY` op, which writes the
dense tensor once, at the first invoke. To the packer those index vectors are
just flatbuffer bytes (a uint16 column index per nonzero, deflated with the
graph), while its own sparse records code positions as Huffman-coded gaps.

`densify(model)` rewrites a `ModelT` in place, before packing (like
`tflite_schema.strip_debug`): for every `DENSIFY` whose input it can expand
exactly, the op's output tensor becomes a constant holding the dense bytes
the op would have written (zeros as all-zero bits, as the runtime fills
them), the op goes, and so do the sparse tensor and, once unused, the
`DENSIFY` operator code. Consumers keep reading the same tensor index with
the same name, type, shape and quantization, so the model computes what it
computed before. Decoded, the model is larger (the weight is dense in its
file) but not in what a runtime holds: the DENSIFY kernel writes its dense
output into a persistent arena tensor, next to the sparse constant, and
XNNPACK, the GPU delegate and NNAPI densify static sparse weights at init —
no runtime computes with the sparse form read through DENSIFY.

Left as they are, each with the reason in its `DensifiedTensor`: sparse
tensors not read by exactly one `DENSIFY` (e.g. a block-sparse filter that
`FULLY_CONNECTED` reads directly with its sparse kernel: expanding it would
change the kernel, not only the file), element types `DENSIFY` does not
support (it takes float32, float16 and int8), and any `SparsityParameters`
the runtime's expansion (`tflite::internal::sparsity::FormatConverter`)
would not turn into every element exactly once: inconsistent segments,
indices out of range, repeated positions, a buffer with more or fewer values
than the metadata visits, block dimensions whose sizes the runtime would
read differently from what they mean.

Example:

```python
import keras, numpy as np, tensorflow as tf
from tfdc import densify, tflite_schema
from tfdc.exporter import convert
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
w = model.layers[0].kernel.numpy()
w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0   # 90 % zeros
model.layers[0].kernel.assign(w)
sparse = convert(model, configure=lambda c: setattr(       # TFLite's own sparse format
    c, "optimizations", [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]))
tree = tflite_schema.read(sparse)
for entry in densify.densify(tree):
    print(entry)            # expanded ... 64x64 float32: 410 stored values ... -> 16,384 B dense
dense = tflite_schema.build(tree)
```
"""

import dataclasses

import numpy as np

from tfdc import format as fmt
from tfdc import tflite_schema
from tfdc.tflite_schema import builtin_code, op_name

__all__ = ["DensifiedTensor", "densify", "expand"]

# Element types the DENSIFY kernel expands (TensorType: float32, float16, int8).
_DENSIFY_TYPES = (0, 1, 9)
_DENSE, _SPARSE_CSR = 0, 1
# SparseIndexVector union tags -> element type the flatbuffer stores.
_INDEX_TYPES = {1: np.int32, 2: np.uint16, 3: np.uint8}


@dataclasses.dataclass
class DensifiedTensor:
    """One TFLite-sparse constant: expanded, or left as is and why.

    Attributes:
        subgraph: the subgraph index.
        name: the sparse tensor's name (for an expanded one, the dense
            tensor that replaces it keeps the `DENSIFY` output's name).
        shape: the dense shape.
        dtype: the element type (`"float32"`, `"int8"`, ...).
        stored: values in the sparse buffer (nonzeros, plus the zeros inside
            stored blocks).
        index_bytes: bytes of its segment and index vectors.
        dense_bytes: bytes of the dense constant.
        expanded: True when the model now holds it dense.
        reason: why it was left as is (None when expanded).
    """
    subgraph: int
    name: str
    shape: tuple
    dtype: str
    stored: int
    index_bytes: int
    dense_bytes: int
    expanded: bool
    reason: str = None

    def __str__(self):
        what = (f"{self.name} {'x'.join(map(str, self.shape))} {self.dtype}: "
                f"{self.stored:,} stored values + {self.index_bytes:,} B of indices")
        if self.expanded:
            return f"expanded {what} -> {self.dense_bytes:,} B dense"
        return f"left as is {what}: {self.reason}"


class _Refuse(Exception):
    """A sparse layout `expand` does not reproduce exactly."""


def _vector(dim, which):
    kind = int(getattr(dim, which + "Type") or 0)
    vec = getattr(dim, which)
    if kind not in _INDEX_TYPES or vec is None or vec.values is None:
        raise _Refuse(f"a SPARSE_CSR dimension has no {which[5:].lower()} vector")
    return np.asarray(vec.values).astype(_INDEX_TYPES[kind], copy=False).astype(np.int64)


def _index_bytes(sparsity):
    total = 0
    for dim in sparsity.dimMetadata or []:
        for which in ("arraySegments", "arrayIndices"):
            kind = int(getattr(dim, which + "Type") or 0)
            vec = getattr(dim, which)
            if kind in _INDEX_TYPES and vec is not None and vec.values is not None:
                total += len(vec.values) * np.dtype(_INDEX_TYPES[kind]).itemsize
    return total


def expand(sparsity, shape, data, itemsize):
    """The dense bytes of a sparse constant, as `DENSIFY` writes them.

    Args:
        sparsity: the tensor's `SparsityParametersT`.
        shape: the tensor's (dense) shape.
        data: the buffer's bytes (np.uint8), the stored values in traversal
            order.
        itemsize: bytes per element.

    Returns:
        `np.uint8` array of `prod(shape) * itemsize` bytes.

    Raises:
        ValueError: the layout is not one this function reproduces exactly
            (the message says what).
    """
    try:
        return _expand(sparsity, [int(s) for s in shape], data, itemsize)
    except _Refuse as e:
        raise ValueError(str(e)) from None


def _expand(sparsity, shape, data, itemsize):
    n = len(shape)
    order = [int(t) for t in (sparsity.traversalOrder if sparsity.traversalOrder is not None
                              else [])]
    block_map = [int(b) for b in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    dims = list(sparsity.dimMetadata or [])
    k = len(block_map)
    levels = n + k
    if n == 0 or any(s <= 0 for s in shape):
        raise _Refuse(f"shape {shape} has no elements")
    if sorted(order) != list(range(levels)) or sorted(order[:n]) != list(range(n)):
        # The runtime writes orig_idx[traversal_order[i]] for the first n
        # levels: a block dimension there would index past the shape.
        raise _Refuse(f"traversal order {order} is not the original dimensions, "
                      f"then the {k} block dimension(s)")
    if len(dims) != levels:
        raise _Refuse(f"{len(dims)} dimension metadata for {levels} traversal levels")
    if block_map != sorted(set(block_map)) or any(not 0 <= b < n for b in block_map):
        # FormatConverter assigns block sizes while walking the original
        # dimensions in order: an unsorted map leaves sizes unset.
        raise _Refuse(f"block map {block_map} is not increasing original dimensions")
    formats = [int(d.format) for d in dims]
    if any(f not in (_DENSE, _SPARSE_CSR) for f in formats):
        raise _Refuse(f"unknown dimension type in {formats}")
    level_of = {d: level for level, d in enumerate(order)}
    block_size = []
    for b in range(k):
        level = level_of[n + b]
        if formats[level] != _DENSE:
            raise _Refuse("a block dimension is not DENSE")
        size = int(dims[level].denseSize)
        # What the runtime reads as this block's size: the dense size of
        # level traversal_order[n + b] — the same level only when the block
        # dimensions are traversed in an order that maps back onto itself.
        runtime = int(dims[order[n + b]].denseSize)
        if size != runtime:
            # (LiteRT then writes out of the tensor, or to the wrong places.)
            raise _Refuse(f"block dimension {b} has {size} elements, the runtime reads "
                          f"{runtime} (traversal order {order})")
        if size <= 0 or shape[block_map[b]] % size:
            raise _Refuse(f"block {b} of size {size} does not tile dimension "
                          f"{block_map[b]} of {shape[block_map[b]]}")
        block_size.append(size)
    extent = list(shape) + block_size
    for b, d in enumerate(block_map):
        extent[d] //= block_size[b]
    # Element index = sum over levels of coordinate x the level's stride: an
    # original dimension's stride (times its block size when it is blocked:
    # the level then counts blocks), a block dimension's that of the
    # dimension it blocks.
    elements = int(np.prod(shape))
    strides = [int(np.prod(shape[d + 1:])) for d in range(n)]
    stride = strides + [strides[d] for d in block_map]
    for b, d in enumerate(block_map):
        stride[d] *= block_size[b]

    # Walk the levels breadth-first, keeping the nodes of each level in the
    # runtime's depth-first order (children of a node follow its
    # predecessor's children), so the leaves come out in storage order.
    position = np.zeros(1, np.int64)  # the runtime's prev_idx of each node
    flat = np.zeros(1, np.int64)      # element index so far
    space = 1                         # how many prev_idx values a level can see
    for level in range(levels):
        size = extent[order[level]]
        step = stride[order[level]]
        dim = dims[level]
        if formats[level] == _DENSE:
            if int(dim.denseSize) != size:
                raise _Refuse(f"level {level} is DENSE of size {int(dim.denseSize)}, "
                              f"the dimension has {size}")
            if len(position) * size > elements:
                raise _Refuse("more positions than elements")
            i = np.tile(np.arange(size, dtype=np.int64), len(position))
            position = np.repeat(position, size) * size + i
            flat = np.repeat(flat, size) + i * step
            space *= size
            continue
        segments, indices = _vector(dim, "arraySegments"), _vector(dim, "arrayIndices")
        if (len(segments) != space + 1 or segments[0] != 0 or segments[-1] != len(indices)
                or np.any(np.diff(segments) < 0)):
            raise _Refuse(f"level {level}: {len(segments)} segments for {space} parent "
                          f"positions, or not 0 … {len(indices)} increasing")
        if len(indices) and (indices.min() < 0 or indices.max() >= size):
            raise _Refuse(f"level {level}: an index is outside 0 … {size - 1}")
        counts = segments[position + 1] - segments[position]
        total = int(counts.sum())
        if total > elements:
            raise _Refuse("more positions than elements")
        child = (np.repeat(segments[position] - np.cumsum(counts) + counts, counts)
                 + np.arange(total, dtype=np.int64))
        flat = np.repeat(flat, counts) + indices[child] * step
        position = child
        space = len(indices)

    if len(data) % itemsize or len(data) // itemsize != len(flat):
        raise _Refuse(f"the buffer holds {len(data) / itemsize:g} values, the sparsity "
                      f"metadata visits {len(flat)}")
    seen = np.zeros(elements, bool)
    seen[flat] = True
    if np.count_nonzero(seen) != len(flat):
        raise _Refuse("two stored values land on the same element")
    out = np.zeros((elements, itemsize), np.uint8)
    out[flat] = np.asarray(data, np.uint8).reshape(-1, itemsize)
    return out.reshape(-1)


def _ints(values):
    return [] if values is None else [int(v) for v in values]


# The decoded model must stay under the size every decoder accepts by
# default (docs/FORMAT.md §4: at least 2 GiB); 1 MiB is left for the graph.
MAX_BYTES = fmt.DEFAULT_LIMIT_FLOOR - (1 << 20)


def densify(model, max_bytes=MAX_BYTES):
    """Expand, in place, every sparse constant of a `ModelT` that a `DENSIFY`
    op reads, into the op's output tensor (see the module docstring).

    Args:
        model: a `ModelT` (`tfdc.tflite_schema.read`) with its buffers inline.
        max_bytes: the buffers' total may grow up to this; a tensor whose
            dense bytes would pass it stays sparse.

    Returns:
        A list of `DensifiedTensor`, one per tensor with `SparsityParameters`
        (empty for a model without TFLite sparsity).
    """
    schema = tflite_schema.get()
    densify_op = schema.BuiltinOperator.DENSIFY
    codes = [builtin_code(c) for c in model.operatorCodes or []]
    buffer_users = {}
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            buffer_users[int(tensor.buffer)] = buffer_users.get(int(tensor.buffer), 0) + 1
    pinned = {int(m.buffer) for m in model.metadata or []} | set(_ints(model.metadataBuffer))
    budget = max_bytes - sum(len(b.data) for b in model.buffers or [] if b.data is not None)
    results = []
    removed = False
    for sg_index, sg in enumerate(model.subgraphs or []):
        tensors = sg.tensors or []
        readers, writers = {}, {}
        for op_index, op in enumerate(sg.operators or []):
            for t in _ints(op.inputs) + _ints(op.intermediates):
                readers.setdefault(t, []).append(op_index)
            for t in _ints(op.outputs):
                writers.setdefault(t, []).append(op_index)
        graph_io = set(_ints(sg.inputs)) | set(_ints(sg.outputs))
        for signature in model.signatureDefs or []:
            if int(signature.subgraphIndex or 0) == sg_index:
                graph_io.update(int(t.tensorIndex) for t in
                                list(signature.inputs or []) + list(signature.outputs or []))
        drop_tensors, drop_ops = set(), set()
        for t_index, tensor in enumerate(tensors):
            if tensor.sparsity is None:
                continue
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else (tensor.name or "")
            shape = tuple(_ints(tensor.shape))
            dtype_name, bits, _ = fmt.TENSOR_TYPES.get(int(tensor.type), (str(tensor.type), 8, ""))
            itemsize = max(1, bits // 8)
            buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
            data = None if buf is None or buf.data is None else np.asarray(buf.data, np.uint8)
            entry = DensifiedTensor(sg_index, name, shape, dtype_name,
                                    0 if data is None else len(data) // itemsize,
                                    _index_bytes(tensor.sparsity),
                                    int(np.prod(shape)) * itemsize if shape else 0, False)
            results.append(entry)
            users = readers.get(t_index, [])
            ops = [sg.operators[i] for i in users]
            if data is None or len(data) == 0:
                entry.reason = "no constant data"
                continue
            op_codes = [codes[op.opcodeIndex] for op in ops]
            if op_codes != [densify_op]:
                names = ", ".join(sorted({op_name(c) for c in op_codes}))
                entry.reason = (f"read directly by {names} (its own sparse kernel): expanding "
                                "would change the kernel" if densify_op not in op_codes and ops
                                else f"read by {len(ops)} ops ({names or 'none'}), not by "
                                "one DENSIFY")
                continue
            op = ops[0]
            out_index = _ints(op.outputs)[0] if len(_ints(op.outputs)) == 1 else -1
            if len(_ints(op.inputs)) != 1 or out_index < 0 or out_index >= len(tensors):
                entry.reason = "its DENSIFY does not have one input and one output"
                continue
            out = tensors[out_index]
            out_buf = out.buffer
            if t_index in graph_io or out_index in graph_io:
                entry.reason = "it or its DENSIFY output is a graph input / output"
                continue
            if writers.get(t_index) or len(writers.get(out_index, [])) != 1:
                entry.reason = "an op writes it, or another op writes its DENSIFY output"
                continue
            if int(out.type) != int(tensor.type) or tuple(_ints(out.shape)) != shape:
                entry.reason = "its DENSIFY output has another type or shape"
                continue
            if 0 < out_buf < len(model.buffers) and model.buffers[out_buf].data is not None \
                    and len(model.buffers[out_buf].data):
                entry.reason = "its DENSIFY output already has data"
                continue
            if int(tensor.type) not in _DENSIFY_TYPES:
                entry.reason = f"DENSIFY does not expand {dtype_name}"
                continue
            if entry.dense_bytes > budget:
                entry.reason = (f"dense, it would take the model's buffers past {max_bytes:,} "
                                "B (what every decoder accepts by default)")
                continue
            try:
                dense = _expand(tensor.sparsity, list(shape), data, itemsize)
            except _Refuse as e:
                entry.reason = f"sparsity not expanded exactly: {e}"
                continue
            # The dense bytes go into the output tensor's own (empty) buffer,
            # or a new one when that buffer is shared or the sentinel 0.
            if 0 < out_buf < len(model.buffers) and buffer_users.get(out_buf) == 1 \
                    and out_buf not in pinned:
                target = model.buffers[out_buf]
            else:
                target = schema.BufferT()
                model.buffers.append(target)
                out.buffer = len(model.buffers) - 1
                buffer_users[out.buffer] = 1
            target.data, target.offset, target.size = dense, 0, 0
            if buffer_users.get(tensor.buffer) == 1 and tensor.buffer not in pinned:
                buf.data = None  # left in place, empty: buffer indices stay valid
            entry.expanded = True
            budget -= entry.dense_bytes
            drop_tensors.add(t_index)
            drop_ops.add(users[0])
        if drop_tensors:
            _remove(model, sg_index, drop_tensors, drop_ops)
            removed = True
    if removed:
        _drop_unused_opcode(model, densify_op)
    return results


def _remove(model, sg_index, tensors, ops):
    """Delete operators `ops` and tensors `tensors` of subgraph `sg_index`,
    renumbering every tensor reference (operators, subgraph inputs and
    outputs, signatures); -1 (an omitted optional input) stays -1."""
    sg = model.subgraphs[sg_index]
    sg.operators = [op for i, op in enumerate(sg.operators) if i not in ops]
    keep = [i for i in range(len(sg.tensors)) if i not in tensors]
    new = np.full(len(sg.tensors), -1, np.int64)
    new[keep] = np.arange(len(keep))

    def remap(values):
        if values is None:
            return None
        return np.array([int(new[v]) if v >= 0 else -1 for v in _ints(values)], np.int32)

    for op in sg.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        op.intermediates = remap(op.intermediates)
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    sg.tensors = [sg.tensors[i] for i in keep]
    for signature in model.signatureDefs or []:
        if int(signature.subgraphIndex or 0) == sg_index:
            for t in list(signature.inputs or []) + list(signature.outputs or []):
                t.tensorIndex = int(new[int(t.tensorIndex)])


def _drop_unused_opcode(model, code):
    """Remove the operator code `code` once no operator uses it."""
    used = {int(op.opcodeIndex) for sg in model.subgraphs for op in sg.operators or []}
    drop = [i for i, c in enumerate(model.operatorCodes or [])
            if builtin_code(c) == code and i not in used]
    if not drop:
        return
    new = np.cumsum([i not in drop for i in range(len(model.operatorCodes))]) - 1
    model.operatorCodes = [c for i, c in enumerate(model.operatorCodes) if i not in drop]
    for sg in model.subgraphs:
        for op in sg.operators or []:
            op.opcodeIndex = int(new[int(op.opcodeIndex)])
