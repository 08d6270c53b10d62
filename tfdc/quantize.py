"""Integer weights that keep the codebooks: full-integer export and int8 codes.

NPUs (LiteRT `CompiledModel` with `Accelerator.NPU`) and most NNAPI drivers
run only full-integer models: int8 activations, int8 weights, int32 biases.
The TFLite converter makes one when it gets a `representative_dataset`, but
by default it gives every output channel of a kernel its own scale, and a
shared value `c` becomes `round(c / scale_ch)`: a different code in every
channel. A 32-entry codebook then turns into hundreds of distinct int8
codes (LeNet-5's fc1: 33 values -> 169 codes) and the packed file loses
most of what weight sharing saved.

With one scale per tensor, `scale = max|w| / 127`, every weight equal to
`c` gets the same code, so a kernel of K distinct values keeps at most K
codes and packs as tightly as its float original (a little tighter: int8
codebook entries and int8 zero-runs). `configure_full_integer` asks the
converter for exactly that (`_experimental_disable_per_channel`, which
TensorFlow 2.x reads for convolution and fully connected weights alike);
`kernel_codes` checks the result against the Keras kernels, and
`tfdc.export(model, path, representative_dataset=...)` warns when a kernel
ends up with more codes than its codebook has values.

When one scale per tensor costs accuracy: the rounding moves each shared
value by at most `scale / 2 = max|w| / 254`, the same shift for every weight
that shares it. That is harmless for 5-bit codebooks (32 values spread over
254 steps: LeNet-5's fc1 and fc2 keep all 32), lossy for 8-bit codebooks
(256 values cannot get 254 nonzero codes: neighbouring centroids merge,
LeNet-5's conv2 251 -> 127 codes), and costly when a tensor's output
channels differ in range (depthwise convolutions, convolutions without a
folded BatchNormalization, a channel with a few large weights): the
small-range channels are left with a handful of codes and their small shared
values merge or round to 0. Per-channel scales exist for those, at the price
of the sharing. How the clustered fine-tuning absorbs it: `snap_to_int8_grid`
rounds each clustered kernel to its per-tensor grid in Keras (exactly the
values the integer model will hold), and a following `ClusteredFineTuning`
epoch resumes from those values as its codebook, so the centroids, biases
and later layers are retrained against the rounded weights and the export
rounds only the small drift of that epoch. Fewer bits for layers that do not
need 8 also keep the centroids on distinct grid points. Measured on LeNet-5
(docs/BENCHMARKS.md, section `fullint`, `tools/fullint_benchmark.py
--snap`): 0.72 % test error for float32 and 0.73 % for per-tensor int8, so
nearly nothing to absorb there; 0.69 % after the snap and one clustered epoch.

Also here: `quantize_codebooks_int8`, the float-activation alternative
(`tfdc.export(..., weights="int8")`): int8 weight codes with one scale per
tensor plus a `DEQUANTIZE` op, for runtimes that compute in float.

Example:

```python
import keras, numpy as np, tfdc
from tfdc.exporter import convert
from tfdc.quantize import kernel_codes

x = np.random.default_rng(0).random((64, 8), np.float32)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
kernel, bias = model.layers[0].get_weights()
model.layers[0].set_weights([np.round(kernel * 4) / 4, bias])  # a 5-value codebook
rep = lambda: ([x[i:i + 1]] for i in range(len(x)))
tflite = convert(model, representative_dataset=rep)   # per-tensor int8
for k in kernel_codes(model, tflite):
    print(k.name, k.values, "values ->", k.codes, "int8 codes")  # dense 5 values -> 5 int8 codes
```
"""

import dataclasses
import warnings

import numpy as np

from tfdc.values import clustered_values

__all__ = ["configure_full_integer", "kernel_codes", "KernelCodes", "extra_code_kernels",
           "warn_extra_codes", "snap_to_int8_grid", "quantize_codebooks_int8", "float_ops",
           "warn_float_ops", "FloatOpsWarning"]

# Kernels with more distinct values than this are not codebooks: the paper's
# largest codebook, 2**8 shared values, plus the pruned zero. (int8 has only
# 255 symmetric codes, so an 8-bit codebook merges a few values anyway.)
MAX_CODEBOOK = 2 ** 8 + 1


def require_callable(representative_dataset):
    """TypeError unless `representative_dataset` is what the converter calls."""
    if not callable(representative_dataset):
        raise TypeError("representative_dataset must be a callable returning an iterator of "
                        "input lists, e.g. a generator function yielding [x[i:i + 1]]; got "
                        f"{type(representative_dataset).__name__}")


def configure_full_integer(converter, representative_dataset, *, per_channel=False):
    """Set up a `TFLiteConverter` for full-integer quantization.

    Args:
        converter: a `tf.lite.TFLiteConverter`.
        representative_dataset: callable returning an iterator of input
            lists (the converter's calibration data; a few hundred real
            samples).
        per_channel: `False` (default): one weight scale per tensor, which
            keeps each K-value codebook at most K int8 codes. `True`: the
            converter's default per-channel scales (more accurate for
            kernels whose channels differ in range, but the sharing is lost).
    """
    import tensorflow as tf

    require_callable(representative_dataset)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # A private flag, but the one the TFLite converter itself documents for
    # per-tensor weights (TensorFlow 2.x); `kernel_codes` verifies its effect,
    # so a TensorFlow that ignores it is caught by export's warning.
    converter._experimental_disable_per_channel = not per_channel


@dataclasses.dataclass(frozen=True)
class KernelCodes:
    """How one Keras kernel reached a full-integer `.tflite` model.

    Attributes:
        name: `layer` or `layer/attr` (as `tfdc.sparsity` names kernels).
        values: distinct values of the Keras kernel (its codebook size,
            counting the pruned zero).
        nonzero_values: distinct nonzero values (at most `2**bits` after
            `tfdc.ClusteredFineTuning`).
        tensor: name of the int8 tensor that holds it, or None if none does
            (the converter kept it in float, or changed its values).
        codes: distinct int8 codes of that tensor (None if not found).
        nonzero_codes: distinct nonzero codes.
        scales: number of scales of the tensor (1 = per tensor).
        buffer: index of that tensor's buffer in the model (None if not
            found), which names the report's row.
        nonzero_weights: nonzero weights of the Keras kernel (more than
            `nonzero_values` where weights share values).
    """

    name: str
    values: int
    nonzero_values: int
    tensor: object = None
    codes: object = None
    nonzero_codes: object = None
    scales: object = None
    buffer: object = None
    nonzero_weights: object = None


def _int8_constants(tflite):
    """`[(name, codes, scales, zero points, axis, buffer index)]` of the
    model's int8 constant tensors."""
    from tfdc import tflite_schema

    schema = tflite_schema.get()
    model = tflite_schema.read(tflite)
    out, seen = [], set()
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            b = tensor.buffer
            data = None
            if 0 < b < len(model.buffers):
                buffer = model.buffers[b]
                data = buffer.data
                if buffer.offset and buffer.offset > 1:  # the >2 GB / decoded-tail layout
                    data = np.frombuffer(tflite, np.uint8, int(buffer.size), int(buffer.offset))
            q = tensor.quantization
            if (tensor.type != schema.TensorType.INT8 or data is None or len(data) == 0
                    or b in seen or q is None or q.scale is None or len(q.scale) == 0):
                continue
            seen.add(b)
            codes = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.int8)
            shape = list(tensor.shape) if tensor.shape is not None else [codes.size]
            if int(np.prod(shape)) != codes.size:
                continue
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            zero_points = np.zeros(len(q.scale)) if q.zeroPoint is None or len(q.zeroPoint) == 0 \
                else np.asarray(q.zeroPoint, np.float64)
            out.append((name, codes.reshape(shape), np.asarray(q.scale, np.float64), zero_points,
                        int(q.quantizedDimension or 0), b))
    return out


def _dequantize(codes, scales, zero_points, axis):
    """The real values of int8 `codes`: `(code - zero point) * scale`, per
    tensor or along `axis` (the converter gives an Embedding's table a zero
    point of its own; kernels have 0)."""
    if scales.size == 1:
        return (codes.astype(np.float64) - zero_points[0]) * scales[0]
    shape = [1] * codes.ndim
    shape[axis] = scales.size
    return (codes.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)


def kernel_codes(model, tflite, min_bytes=64):
    """Match each clustered Keras kernel to the int8 tensor holding it.

    A kernel matches the int8 constant with as many elements whose sorted
    dequantized values are within half a quantization step of the kernel's
    sorted values (rounding moves no value further, and sorting preserves
    that bound), so no tensor names or layouts are needed.

    Args:
        model: the Keras model that was converted.
        tflite: the full-integer `.tflite` bytes (plain, not packed).
        min_bytes: smaller kernels (as float32) are skipped.

    Returns:
        A list of `KernelCodes`, one per kernel with at most `MAX_CODEBOOK`
        distinct values, in layer order.
    """
    from tfdc.layers import kernel_variables
    from tfdc.select import iter_layers, kernel_labels

    constants = _int8_constants(tflite)
    by_size = {}
    for entry in constants:
        by_size.setdefault(entry[1].size, []).append(entry)
    sorted_cache = {}
    out = []
    kernels = [(layer, attr, variable) for layer in iter_layers(model)
               for attr, variable in kernel_variables(layer)]
    names = kernel_labels(model, [(layer, attr) for layer, attr, _ in kernels])
    for name, (layer, attr, variable) in zip(names, kernels):
        kernel = np.asarray(variable.numpy(), np.float64).ravel()
        if kernel.size * 4 < min_bytes:
            continue
        distinct = np.unique(kernel)
        if distinct.size > MAX_CODEBOOK:
            continue
        info = dict(name=name, values=int(distinct.size),
                    nonzero_values=int(np.count_nonzero(distinct)),
                    nonzero_weights=int(np.count_nonzero(kernel)))
        target = np.sort(kernel)
        best = None
        for tname, codes, scales, zero_points, axis, buffer in by_size.get(kernel.size, []):
            key = (tname, codes.size)
            if key not in sorted_cache:
                sorted_cache[key] = np.sort(_dequantize(codes, scales, zero_points, axis),
                                            axis=None)
            gap = float(np.max(np.abs(sorted_cache[key] - target)))
            tolerance = 0.5 * float(np.max(scales)) * (1 + 1e-5) + 1e-12
            if gap <= tolerance and (best is None or gap < best[0]):
                best = (gap, tname, codes, scales, buffer)
        if best is not None:
            _, tname, codes, scales, buffer = best
            unique = np.unique(codes)
            info.update(tensor=tname, codes=int(unique.size),
                        nonzero_codes=int(np.count_nonzero(unique)), scales=int(scales.size),
                        buffer=int(buffer))
        out.append(KernelCodes(**info))
    return out


def extra_code_kernels(model, tflite, min_bytes=64):
    """`(more_codes, not_found)`: names of the clustered kernels stored with
    more int8 codes than they have values, and of those whose weights share
    values stored in no int8 tensor (kept in float by the converter, or
    changed by it)."""
    return _extra_codes(kernel_codes(model, tflite, min_bytes))


def _extra_codes(kernels):
    more = [f"{k.name} ({k.values} values -> {k.codes} codes)" for k in kernels
            if k.codes is not None and k.codes > k.values]
    # Only where weights share a value: a small kernel whose every nonzero
    # weight is its own value (any unclustered model's, a BatchNormalization
    # folded into it) has no sharing to lose, and was warned of all the same.
    missing = [k.name for k in kernels if k.codes is None and (
        k.nonzero_weights is None or k.nonzero_values < k.nonzero_weights)]
    return more, missing


def warn_extra_codes(model, tflite, min_bytes=64, stacklevel=2):
    """Warn, naming the kernels, when a full-integer conversion gave a
    clustered kernel more int8 codes than it has values, or stored it in no
    int8 tensor. Advisory: never raises on a model it cannot check.
    Returns `{buffer index: kernel name}` of the kernels it found (the
    report's row names; the converter's tensor names can name another
    layer)."""
    try:
        kernels = kernel_codes(model, tflite, min_bytes)
    except Exception as e:  # the check is advisory: never fail an export on it
        warnings.warn(f"tfdc could not check the int8 kernels: {e}", stacklevel=stacklevel + 1)
        return {}
    more, missing = _extra_codes(kernels)
    if more:
        warnings.warn(
            "the full-integer conversion gave " + ", ".join(more) + ": more int8 codes than "
            "shared values, so the packed file loses part of the weight sharing. Per-channel "
            "weight scales do this; tfdc.quantize.configure_full_integer (the default of "
            "tfdc.export with a representative_dataset) asks for one scale per tensor.",
            stacklevel=stacklevel + 1)
    if missing:
        warnings.warn(
            "no int8 tensor of the full-integer model holds the kernel(s) " +
            ", ".join(missing) + f", whose at most {MAX_CODEBOOK} distinct values, shared by "
            "their weights, would each be one int8 code (the converter kept them in float, "
            "or changed their values: "
            "a BatchNormalization after them folded in, which tfdc.fold_batchnorm before "
            "clustering avoids; a Normalization or Rescaling before them folded in; or a layer "
            "it quantizes its own way); their "
            "weight sharing is partly lost in the packed file.",
            stacklevel=stacklevel + 1)
    return {k.buffer: k.name for k in kernels if k.buffer is not None}


def snap_to_int8_grid(model, min_bytes=64):
    """Round every clustered kernel of `model` to its per-tensor int8 grid,
    in place: `w <- scale * round(w / scale)`, `scale = max|w| / 127`, the
    values a full-integer conversion with one scale per tensor will store.

    Run it before a last `tfdc.ClusteredFineTuning` epoch so the fine-tuning
    absorbs the rounding (see the module docstring): with at most `2**bits`
    distinct values left, that epoch takes them as its codebook. Shared
    values that land on the same grid point merge; a nonzero value that
    rounds to 0 is kept at one step instead, so the pruning masks stay exact.

    Args:
        model: a Keras model (its constraints, if any, stay in place).
        min_bytes: smaller kernels are left alone.

    Returns:
        `{kernel name: largest |shift|}` for the kernels changed.
    """
    from tfdc.layers import kernel_name, kernel_variables
    from tfdc.select import iter_layers

    shifts = {}
    for layer in iter_layers(model):
        for attr, variable in kernel_variables(layer):
            w = np.asarray(variable.numpy(), np.float32)
            if w.size * 4 < min_bytes or np.unique(w).size > MAX_CODEBOOK:
                continue
            peak = float(np.max(np.abs(w)))
            if peak == 0.0:
                continue
            scale = np.float32(peak / 127.0)
            codes = np.clip(np.rint(w / scale), -127, 127)
            # Never turn a kept weight into a pruned one.
            codes[(codes == 0) & (w != 0)] = np.sign(w[(codes == 0) & (w != 0)])
            snapped = (codes * scale).astype(np.float32)
            variable.assign(snapped)
            shifts[kernel_name(layer, attr)] = float(np.max(np.abs(snapped - w)))
    return shifts


_DEQUANTIZE = 6

# The operators that read a constant as a layer's weights: a constant with
# another reader (a resource variable's starting value, a detector's
# anchors, a lookup table) keeps its exact float values under
# weights="int8", even with few distinct ones.
_WEIGHT_OPS = frozenset((
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D",
    "CONV_3D_TRANSPOSE", "BATCH_MATMUL", "GATHER", "EMBEDDING_LOOKUP", "LSTM",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF"))


def _weight_buffers(model):
    """The buffers that only `_WEIGHT_OPS` read (through any tensor, in any
    subgraph)."""
    from tfdc import tflite_schema
    names = [tflite_schema.op_name(tflite_schema.builtin_code(c))
             for c in model.operatorCodes or []]
    readers = {}
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            for i in op.inputs if op.inputs is not None else []:
                if 0 <= i < len(tensors):
                    readers.setdefault(tensors[i].buffer, set()).add(names[op.opcodeIndex])
    return {b for b, ops in readers.items() if ops <= _WEIGHT_OPS}


def float_ops(tflite):
    """`{op name: count}` of the operators of a full-integer `.tflite` model
    that compute in float32: those with a float32 output, except the
    DEQUANTIZE ops (the bridges into float, and the model's float outputs).
    The converter falls back to float for an op it has no int8 kernel for
    (NEG, CUMSUM, ...), with a DEQUANTIZE before it and a QUANTIZE after;
    an NPU delegate then runs that part on the CPU or refuses the graph."""
    from tfdc import tflite_schema
    schema = tflite_schema.get()
    model = tflite_schema.read(tflite)
    counts = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            code = tflite_schema.builtin_code(model.operatorCodes[op.opcodeIndex])
            produced = [int(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
            if code == _DEQUANTIZE or not any(
                    subgraph.tensors[i].type == schema.TensorType.FLOAT32 for i in produced):
                continue
            name = tflite_schema.op_name(code)
            counts[name] = counts.get(name, 0) + 1
    return counts


class FloatOpsWarning(UserWarning):
    """A full-integer export computes some ops in float32 (`float_ops`): an
    NPU delegate runs that part on the CPU or refuses the graph. Make it an
    error, raised before any file is written, with
    `warnings.simplefilter("error", tfdc.quantize.FloatOpsWarning)`.
    TensorFlow's own `supported_ops = [TFLITE_BUILTINS_INT8]` does not: it
    converts such an op (LayerNormalization's NEG) in float all the same,
    without a word."""


def warn_float_ops(tflite, stacklevel=2):
    """Warn when a full-integer model computes some ops in float32
    (`float_ops`), naming them (a `FloatOpsWarning`)."""
    counts = float_ops(tflite)
    if counts:
        ops = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(counts.items()))
        warnings.warn(f"full-integer export: {sum(counts.values())} op(s) compute in float32 "
                      f"({ops}): TensorFlow has no int8 kernel for some op there, so an NPU "
                      "delegate runs that part on the CPU or refuses the graph; "
                      "warnings.simplefilter('error', tfdc.quantize.FloatOpsWarning) makes it "
                      "an error instead (TensorFlow's supported_ops=[TFLITE_BUILTINS_INT8] "
                      "does not)", FloatOpsWarning, stacklevel=stacklevel + 1)


def _rank(tensor):
    return 0 if tensor.shape is None else len(tensor.shape)


def quantize_codebooks_int8(tflite, *, min_bytes=64, max_distinct=256, stacklevel=2):
    """Store clustered float32 weights as int8 codes, keeping the codebook.

    Every constant float32 tensor of rank >= 2 and at least `min_bytes`
    bytes with at most `max_distinct` distinct values, shared by several
    weights each (`tfdc.values.clustered_values`), that only layers read
    as their weights (a clustered kernel: not a variable's starting value or
    a table another op reads) becomes an int8 tensor with *one* symmetric
    scale per tensor, `scale = max|c| / 127`, followed by a `DEQUANTIZE` op that produces the
    original float tensor. So a K-value codebook stays K int8 codes (the
    converter's per-channel dynamic-range quantization would give up to K x
    channels distinct codes), and the model computes in float32 with weights
    `code * scale`, exactly as the float model with those weights would.

    Args:
        tflite: the plain float `.tflite` bytes.
        min_bytes: smaller tensors are left in float32.
        max_distinct: tensors with more distinct values are left in float32.
        stacklevel: of the warning that nothing changed (`warnings.warn`).

    Returns:
        `(tflite_bytes, quantized, moved)`: the rewritten model, a dict
        mapping each quantized tensor name to its scale, and one mapping the
        buffer index of each quantized float kernel to its int8 buffer.
    """
    from tfdc import tflite_schema
    from tfdc.pack import plain_model

    schema = tflite_schema.get()
    # A decoded file keeps its weights after the flatbuffer (the offset
    # layout): read inline, or none of them were candidates.
    model = plain_model(tflite)
    buffers = model.buffers
    weights = _weight_buffers(model)
    candidates = {}  # buffer index -> (codes, scale) or None if not eligible
    float_kernels = 0  # float32 weights of rank >= 2, clustered or not
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            b = tensor.buffer
            data = buffers[b].data if 0 < b < len(buffers) else None
            if b in candidates or data is None:
                continue
            candidates[b] = None
            if (b not in weights or tensor.type != schema.TensorType.FLOAT32 or _rank(tensor) < 2
                    or len(data) < max(min_bytes, 4) or tensor.quantization is not None
                    and tensor.quantization.scale is not None):
                continue
            float_kernels += 1
            values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32)
            if not np.all(np.isfinite(values)):
                continue
            distinct = np.unique(values)
            peak = float(np.max(np.abs(distinct)))
            # Few values, each shared by two weights or more (a small kernel
            # pruned hard keeps few of each): a 3x3x16 kernel's 144 trained
            # values are "at most 256" too, and were rounded.
            if len(distinct) > max_distinct or peak == 0.0 or \
                    clustered_values(values, share=2) is None:
                continue
            scale = np.float32(peak / 127.0)
            codes = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
            candidates[b] = (codes, scale)
    # A buffer shared with a tensor that is not eligible stays float.
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if candidates.get(tensor.buffer) is not None and (
                    tensor.type != schema.TensorType.FLOAT32 or _rank(tensor) < 2):
                candidates[tensor.buffer] = None
    chosen = {b: v for b, v in candidates.items() if v is not None}
    if not chosen:
        warnings.warn("weights='int8' changed nothing: " + (
            f"no float32 kernel of this model is clustered (at most {max_distinct} distinct "
            "values, each shared by several weights; cluster it first, e.g. with "
            "tfdc.ClusteredFineTuning)" if float_kernels else
            f"this model has no float32 kernel of {min_bytes} B or more (its weights are "
            "integers already, or too small to pack)"), stacklevel=stacklevel)
        return bytes(tflite), {}, {}

    opcode = None
    for i, code in enumerate(model.operatorCodes):
        if tflite_schema.builtin_code(code) == _DEQUANTIZE:
            opcode, code.version = i, max(code.version, 2)
    if opcode is None:
        model.operatorCodes.append(schema.OperatorCodeT(
            deprecatedBuiltinCode=_DEQUANTIZE, builtinCode=_DEQUANTIZE, version=2))
        opcode = len(model.operatorCodes) - 1
    int8_buffer = {}
    for b, (codes, _) in chosen.items():
        buffers.append(schema.BufferT())
        buffers[-1].data = np.frombuffer(codes.tobytes(), np.uint8).copy()
        int8_buffer[b] = len(buffers) - 1
        buffers[b].data = None  # the float bytes are gone: DEQUANTIZE makes them
    if (buffers[0].data is not None and len(buffers[0].data)) or buffers[0].offset:
        raise ValueError("buffer 0 of the model is not the empty sentinel buffer")
    quantized = {}
    for subgraph in model.subgraphs:
        dequantize_ops = []
        for index, tensor in enumerate(list(subgraph.tensors)):
            if tensor.buffer not in chosen:
                continue
            codes, scale = chosen[tensor.buffer]
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
            q = schema.TensorT()
            q.shape, q.type = list(tensor.shape), schema.TensorType.INT8
            q.buffer, q.name = int8_buffer[tensor.buffer], name + "/int8"
            q.quantization = schema.QuantizationParametersT()
            q.quantization.scale, q.quantization.zeroPoint = [float(scale)], [0]
            subgraph.tensors.append(q)
            tensor.buffer = 0  # now computed by the DEQUANTIZE op
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = opcode, [len(subgraph.tensors) - 1], [index]
            dequantize_ops.append(op)
            quantized[name] = float(scale)
        subgraph.operators = dequantize_ops + list(subgraph.operators or [])
    return tflite_schema.build(model), quantized, int8_buffer
