"""What a packed `.tflite` file holds, layer by layer: the paper's Table 2/3.

`tfdc.export` returns an `ExportReport`; `tfdc.inspect(path_or_bytes)` builds
the same report from any packed file (or, for a plain `.tflite` file, from
what packing it would give). Columns, per packed weight tensor:

* `#weights`, `% kept` (nonzeros / weights);
* weight bits: `P+Q` = `ceil(log2 K)` per nonzero for a `K`-entry codebook
  (the element width for raw values), `P+Q+H` = Huffman-coded value bits per
  nonzero. A tensor that the packer codes densely (its zero is a codebook
  entry, no index stream; chosen when that is smaller) spends value bits on
  its zeros too, so its bits per nonzero include them;
* index bits (sparse tensors): `P+Q` = `log2 G`, the width of one
  fixed-width relative index (`G` the gap alphabet the packer chose; a gap
  of `G` or more takes filler entries, which `Rate P+Q` counts), `P+Q+H` =
  coded gap bits (filler entries included) per nonzero;
* compression rate vs the tensor as the plain `.tflite` stores it (dense
  float32; int8 for an int8 tensor, so `Dense float32 / packed` is the rate
  against float32 there): `P+Q` with fixed-width fields plus the codebook,
  `P+Q+H` with the record's actual bytes in the file (codebook, code
  tables, segment lengths and headers included).

Totals sum over tensors, and average bits per nonzero over the tensors
that have the column (index bits: the sparse ones); file sizes compare the
dense float32 weights, the plain `.tflite`, and the packed file; the
entropy bound is the zeroth-order entropy of each coded stream, and `coded
÷ bound` shows how close Huffman coding gets to it (below 1 where
context-modelled codes, formats 2.1 and 2.2, use what an order-0 bound
cannot: neighbouring weights, rows and columns).
"""

import collections
import collections.abc
import dataclasses
import math
import os
import re

from tfdc import format as fmt
from tfdc.errors import FormatError, listed
from tfdc.layers import converter_op_names, kernel_layer_name

__all__ = ["ExportReport", "LayerReport", "inspect", "short_name"]

# Trailing TensorFlow op names in converted tensor names ("fc1/MatMul"): those
# of each compressed layer kind (tfdc.layers) and the generic ones around them.
_OP_NAMES = converter_op_names() | {
    "readvariableop", "add", "squeeze", "expanddims", "reshape", "transpose", "mul", "sub",
    "cast", "identity", "kernel", "bias", "embeddings", "batchnorm", "strided_slice",
    "pseudo_qconst", "const",
    # fused activations: a bias tensor is named after its layer's activation
    "relu", "relu6", "tanh", "sigmoid", "elu", "gelu", "selu", "softmax", "leakyrelu",
    "hardswish", "swish", "silu", "biasadd",
    # the int8 tensor `quantize_codebooks_int8` puts before a DEQUANTIZE
    "int8",
}


def short_name(tensor_name, layer_names=None):
    """A readable layer name from a converted tensor name.

    `"lenet_300_100_1/fc1_1/MatMul"` -> `"fc1"`,
    `"model_1/mha_1/query_1/MatMul"` -> `"mha/query"`. The model scope and
    trailing op names are dropped, and the `_N` suffix TensorFlow appends to
    name scopes is removed (unless the name with the suffix is one of
    `layer_names` and the model's scope has none: Keras 3's converted files
    suffix every scope, `dense` -> "dense_1" and `dense_1` -> "dense_1_2",
    where tf_keras's do not).
    """
    first = tensor_name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    suffixed = False  # every scope given a "_N" (the model's too)
    if len(parts) >= 3:
        suffixed = re.search(r"_\d+$", parts[0]) is not None
        parts = parts[1:]  # the model's own scope
    known = set(layer_names or ())
    kept = []
    for i, part in enumerate(parts):
        base = re.sub(r"_\d+$", "", part)
        # An op's name ends the layer path, unless it is a layer's scope: a
        # layer named like an op ("conv"), which TensorFlow suffixes
        # ("conv_1"; the op under it is plain "convolution", "depthwise").
        scope = part != base and base in known
        if i > 0 and not scope and (
                base.lower() in _OP_NAMES or re.sub(r"\d+$", "", base).lower() in _OP_NAMES):
            break
        kept.append(part if part in known and not (suffixed and base in known) else base)
    return "/".join(kept) or first


class _Derived:
    """Quantities derived the same way for one layer and for the total, from
    `weights`, `nnz`, `raw_bytes`, `record_bytes`, `pq_bits`, `value_bits`
    and `gap_bits`."""

    @property
    def kept(self):
        """Fraction of weights kept (nonzero)."""
        return self.nnz / self.weights if self.weights else 0.0

    @property
    def rate_pq(self):
        """Compression rate with fixed-width fields (the paper's P+Q)."""
        return 8 * self.raw_bytes / self.pq_bits if self.pq_bits else float("inf")

    @property
    def rate_pqh(self):
        """Compression rate of the packed records (P+Q+H)."""
        return self.raw_bytes / self.record_bytes if self.record_bytes else float("inf")

    @property
    def coded_bits(self):
        return self.value_bits + self.gap_bits


@dataclasses.dataclass
class LayerReport(_Derived):
    """One packed tensor. Bits are totals over the tensor unless named `*_per_*`."""

    name: str
    tensor_names: tuple
    shape: tuple
    dtype: str
    weights: int
    nnz: int
    elem_size: int
    sparse: bool
    codebook_size: int
    gap_alphabet: int
    gap_symbols: int
    value_bits: int
    gap_bits: int
    value_entropy_bits: float
    gap_entropy_bits: float
    codebook_bytes: int
    table_bytes: int
    record_bytes: int
    raw_bytes: int
    value_mode: str = "codebook"
    kind: str = ""

    @property
    def symbol_bits(self):
        """Fixed-width bits per coded value: ceil(log2 K), or the element width."""
        if self.codebook_size:
            return max(1, math.ceil(math.log2(self.codebook_size)))
        return 8 * self.elem_size

    @property
    def value_count(self):
        """Coded values: the nonzeros (sparse), or every element (dense)."""
        return self.nnz if self.sparse else self.weights

    @property
    def weight_bits_pq(self):
        """Fixed-width value bits per nonzero: ceil(log2 K) for a sparse
        tensor; for a dense one (zero coded as a codebook entry) the zeros'
        codes are included, `N ceil(log2 K) / nnz`."""
        if not self.nnz:
            return 0.0
        return self.value_count * self.symbol_bits / self.nnz

    @property
    def weight_bits_pqh(self):
        """Huffman-coded value bits per nonzero (raw values, stored when
        coding does not pay, count their full width)."""
        if not self.nnz:
            return 0.0
        if self.value_mode == "raw":
            return self.value_count * self.symbol_bits / self.nnz
        return self.value_bits / self.nnz

    @property
    def index_bits_pq(self):
        """Fixed-width relative-index bits (log2 G); 0 for dense tensors."""
        return math.log2(self.gap_alphabet) if self.sparse and self.gap_alphabet else 0.0

    @property
    def index_bits_pqh(self):
        """Huffman-coded gap bits (fillers included) per nonzero."""
        return self.gap_bits / self.nnz if self.nnz else 0.0

    @property
    def entropy_bits(self):
        return self.value_entropy_bits + self.gap_entropy_bits

    @property
    def pq_bits(self):
        """Total bits with fixed-width fields (P+Q) plus the codebook."""
        values = self.value_count * self.symbol_bits
        return values + self.gap_symbols * self.index_bits_pq + 8 * self.codebook_bytes



def _graph(model_bytes):
    """The flatbuffer `Model` of a plain or packed file (format 2: its inner
    flatbuffer, inflated once for `_first_use` and `_biases`)."""
    from tfdc import tflite_schema
    from tfdc.unpack import is_packed, model_flatbuffer
    model_bytes = bytes(model_bytes)
    if is_packed(model_bytes):  # format 2: the graph is the inner flatbuffer
        model_bytes = model_flatbuffer(model_bytes)
    return tflite_schema.get().Model.GetRootAs(model_bytes, 0)


def _left_in_graph(model, packed):
    """`(count, bytes)` of the constant buffers of a `_graph` that no record
    of `packed` (buffer indices) holds, metadata aside: they stay in the
    deflated graph."""
    metadata = {model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    count = size = 0
    for b in range(1, model.BuffersLength()):
        buffer = model.Buffers(b)
        n = buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0)
        if n and b not in packed and b not in metadata:
            count, size = count + 1, size + n
    return count, size


def _integer_model(model):
    """`(activations, inputs, outputs)` type names of a `_graph` whose ops
    compute in integers (an op writes an int8 / uint8 / int16 tensor no
    buffer holds: a full-integer file), its first subgraph's input and
    output types joined by ", "; None for a model computing in float."""
    def tensor_type(subgraph, index):  # "?" where a damaged graph has no such tensor
        tensor = (subgraph.Tensors(index) if 0 <= index < subgraph.TensorsLength() else None)
        return (fmt.TENSOR_TYPES.get(tensor.Type(), ("?",))[0], tensor) if tensor else ("?", None)

    found = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength() if subgraph else 0):
            op = subgraph.Operators(o)
            for i in range(op.OutputsLength() if op else 0):
                kind, tensor = tensor_type(subgraph, op.Outputs(i))
                if kind in ("int8", "uint8", "int16"):
                    b = tensor.Buffer()
                    buffer = model.Buffers(b) if 0 <= b < model.BuffersLength() else None
                    if buffer is None or not buffer.DataLength():
                        found.add(kind)
    main = model.Subgraphs(0) if model.SubgraphsLength() else None
    if not found or main is None:
        return None

    def types(indices, length):
        return ", ".join(tensor_type(main, indices(i))[0] for i in range(length))
    return ("/".join(sorted(found)), types(main.Inputs, main.InputsLength()),
            types(main.Outputs, main.OutputsLength()))


def _builtin(model, op):
    """The builtin operator of `op` of a `_graph` (the larger of its code's
    two fields, as `tflite_schema.builtin_code` reads an `OperatorCodeT`)."""
    code = model.OperatorCodes(op.OpcodeIndex())
    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())


def _dequantized(model, subgraph):
    """`{output tensor: input tensor}` of the subgraph's DEQUANTIZE ops:
    an int8 kernel (`weights="int8"`, `quantize_codebooks_int8`) is read by
    its layer's op through one, and is that op's kernel."""
    from tfdc import tflite_schema
    dequantize = tflite_schema.get().BuiltinOperator.DEQUANTIZE
    out = {}
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        if _builtin(model, op) == dequantize and \
                op.InputsLength() == 1 and op.OutputsLength() == 1:
            out[op.Outputs(0)] = op.Inputs(0)
    return out


def _op_inputs(subgraph, op, dequantized):
    """The tensors `op` reads, each DEQUANTIZE output as its int8 input."""
    return [subgraph.Tensors(dequantized.get(t, t)) for t in
            (op.Inputs(k) for k in range(op.InputsLength()))
            if 0 <= dequantized.get(t, t) < subgraph.TensorsLength()]


def _first_use(model):
    """{buffer index: position of the first operator (in graph order) that
    reads a tensor stored in it, through a DEQUANTIZE op or not}, for a
    `_graph`."""
    first, position = {}, 0
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        dequantized = _dequantized(model, subgraph)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            if op.OutputsLength() == 1 and op.Outputs(0) in dequantized:
                continue  # its reader's position counts
            for tensor in _op_inputs(subgraph, op, dequantized):
                first.setdefault(tensor.Buffer(), position)
            position += 1
    return first


def _biases(model, coded):
    """{bias buffer: (kernel buffer, kernel tensor name)}: for each operator
    that reads exactly one constant tensor of rank 2 or more (its kernel:
    a `coded` buffer, or one left in the flatbuffer with its data), the
    coded rank-1 tensors it also reads (its bias). The converter names a
    bias after the op it folded in last (a BatchNormalization's, a ReLU's:
    "re_lu_1"), or after its layer with no kernel row to tell it from one
    (a full-integer file whose int8 kernel stayed in the graph), so a bias
    is labelled by the kernel it goes with. `model`: a `_graph`."""

    def constant(t):
        b = t.Buffer()
        return b in coded or (0 < b < model.BuffersLength() and
                              model.Buffers(b).DataLength() > 0)
    biases = {}
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        dequantized = _dequantized(model, subgraph)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            tensors = [t for t in _op_inputs(subgraph, op, dequantized) if constant(t)]
            kernels = [t for t in tensors if t.ShapeLength() >= 2]
            if len(kernels) == 1:
                name = (kernels[0].Name() or b"").decode("utf-8", "replace")
                for t in tensors:
                    if t.ShapeLength() == 1 and t.Buffer() in coded:
                        biases.setdefault(t.Buffer(), (kernels[0].Buffer(), name))
    return biases


def _loop_states(model, zero):
    """The buffers of `zero` (all-zero coded buffers) that only WHILE ops
    read: a recurrent layer's initial states and output buffers, which the
    converter makes constants (its "TensorArrayV2", "zeros",
    "arith.constant"). They are no model weights: an LSTM's table counted
    9,992 weights for its 9,490 parameters. `model`: a `_graph`."""
    from tfdc import tflite_schema
    loop = tflite_schema.get().BuiltinOperator.WHILE
    readers = {}  # buffer -> set of the builtin codes of the ops reading it
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            for k in range(op.InputsLength()):
                t = op.Inputs(k)
                if 0 <= t < subgraph.TensorsLength():
                    readers.setdefault(subgraph.Tensors(t).Buffer(), set()).add(
                        _builtin(model, op))
    return {b for b in zero if readers.get(b) == {loop}}


def _byte_data(record):
    """Whether a packed record (or its `LayerReport`) holds bytes, not
    weights: strings, a buffer read as two types, the zip archive appended
    to the model."""
    names = tuple(_get(record, "tensor_names", default=()) or ())
    return str(_get(record, "dtype", default="")) == "bytes" or \
        names[:1] == (fmt.APPENDED_ARCHIVE,)


def _constants_line(constants):
    """The report's line on the packed tensors that are no weights."""
    def plural(n, word):
        return f"{n} {word}{'s' if n != 1 else ''}"
    states = [c for c in constants if not _byte_data(c)]
    groups = []
    if states:
        groups.append(f"{plural(len(states), 'all-zero loop state')} of "
                      f"{_fmt_int(sum(c.weights for c in states))} values (the initial "
                      "states of recurrent layers, which only WHILE loops read)")
    data = [c for c in constants if c not in states]
    if data:
        groups.append(f"{plural(len(data), 'tensor')} of bytes ("
                      + ", ".join(f"{c.name} {_fmt_int(c.raw_bytes)} B" for c in data) + ")")
    return (f"{plural(len(constants), 'packed tensor')}, not weights and not in the table: "
            f"{'; '.join(groups)}; {_fmt_int(sum(c.record_bytes for c in constants))} B packed")


def _get(obj, *names, default=0):
    for name in names:
        if hasattr(obj, name):
            value = getattr(obj, name)
            if value is not None:
                return value
    return default


def _layer_from_record(record, layer_names):
    tensor_names = tuple(_get(record, "tensor_names", default=()) or ())
    name = short_name(tensor_names[0], layer_names) if tensor_names else \
        f"buffer {record.buffer_index}"
    sparse = _get(record, "position_mode") in (1, "sparse")
    nnz = int(_get(record, "nnz"))
    return LayerReport(
        name=name, tensor_names=tensor_names, shape=tuple(_get(record, "shape", default=())),
        dtype=str(_get(record, "dtype", default="")), weights=int(_get(record, "num_elements")),
        nnz=nnz, elem_size=int(_get(record, "elem_size", default=4)), sparse=sparse,
        codebook_size=int(_get(record, "codebook_size")),
        gap_alphabet=int(_get(record, "gap_alphabet")),
        gap_symbols=int(_get(record, "gap_count", "gap_symbols", default=nnz if sparse else 0)),
        value_bits=int(_get(record, "value_bits")), gap_bits=int(_get(record, "gap_bits")),
        value_entropy_bits=float(_get(record, "value_entropy_bits")),
        gap_entropy_bits=float(_get(record, "gap_entropy_bits")),
        codebook_bytes=int(_get(record, "codebook_bytes")),
        table_bytes=int(_get(record, "table_bytes")),
        record_bytes=int(_get(record, "record_bytes")), raw_bytes=int(_get(record, "raw_bytes")),
        value_mode=str(_get(record, "value_mode", default="codebook")),
        kind=str(getattr(record, "kind", "") or ""))


def _patch_name(record, layer_names, rows=None):
    """"fc1 scale" for a patch of tensor "model/fc1_1/MatMul (scale)": the
    name of the tensor's row where it has one (`rows`: tensor name -> row
    name; "fc1/bias scale", where the bias's tensor name is its layer's)."""
    if not record.tensor_names:
        return f"bytes at {record.out_offset}"
    tensor, _, field = record.tensor_names[0].partition(" (")
    name = (rows or {}).get(tensor) or short_name(tensor, layer_names)
    return f"{name} {field.rstrip(')')}".strip()


def _numbered(names, mark):
    """`names` with each one given more than once numbered after `mark`
    ("fc#1", "fc#2"; "fc1 scale #1" with mark " #")."""
    counts = collections.Counter(names)
    seen = collections.Counter()
    out = []
    for name in names:
        if counts[name] > 1:
            seen[name] += 1
            name = f"{name}{mark}{seen[name]}"
        out.append(name)
    return out


def times_smaller(size, reference):
    """"12.3x smaller than" `reference` bytes, or "8.0x larger than" where
    `size` is larger (tiny models: 611 B read "0.1x smaller than 76 B")."""
    if size > reference:
        return f"{size / reference:.1f}x larger than" if reference else "larger than"
    return f"{reference / size:.1f}x smaller than" if size else "smaller than"


def _fmt_int(n):
    return f"{n:,}"


def _parts(info):
    """The bytes of each part of a format 2 file, from its pack info."""
    if _get(info, "version", default=1) < 2:
        return {}
    return {"stub": int(info.stub_bytes), "header": int(info.header_bytes),
            "graph": int(info.graph_bytes), "graph_raw": int(info.graph_raw_bytes),
            "descriptors": int(info.descriptor_bytes), "payload": int(info.payload_bytes),
            "crc": int(info.crc_bytes)}


class ExportReport(_Derived):
    """Per-layer and total compression of a packed `.tflite` file.

    Attributes:
        layers: list of `LayerReport`, one per packed tensor, in file order.
        packed_bytes: size of the packed file.
        plain_bytes: size of the plain `.tflite` it was packed from (None
            for a report read back from a packed file, which cannot know
            it: `decoded_bytes` is the size of the file it decodes to).
        dense_bytes: the dense float32 size of the weights (the paper's
            baseline): from `tfdc.export`, 4 bytes per model parameter; from
            `tfdc.inspect`, every constant buffer at its unpacked size.
        flatbuffer_bytes, section_bytes, decoded_bytes: from the pack info.
        parts: for a format 2 file, the bytes of each part of the file —
            "stub", "header", "graph" (the deflated flatbuffer), "descriptors"
            (deflated tables, record descriptors, codebooks), "payload" (coded
            segments), "crc" — and "graph_raw" (the flatbuffer before
            deflate); empty for format 1.
        path: the file written or inspected, if any.
        preview: True for `tfdc.inspect` of a plain `.tflite` (the report
            describes what packing it would give).
        densified: from packing, TFLite's own sparse constants the packer
            expanded to dense before coding them or left as they are
            (`tfdc.densify.DensifiedTensor`, with the reason); empty for a
            report read back from a packed file.
        patches: `(name, bytes)` of each quantization vector of the
            flatbuffer coded as a patch (format 2.3), e.g.
            `("fc1 scale", 959)`; their bytes are in the payload and
            descriptors, not in the layers' rows.
        graph_constants: `(count, bytes)` of the constant buffers left in
            the deflated graph, not coded as records (shapes, small biases,
            buffers under `min_bytes` or that code no smaller), metadata
            aside; None where the graph was not read.
        constants: `LayerReport`s of the packed tensors that are no
            weights, kept out of `layers` and the totals: all-zero tensors
            that only WHILE loops read (a recurrent layer's initial states,
            as the converter makes them), and byte data (`dtype` "bytes":
            strings, a buffer read as two types; a zip archive appended to
            the model). Their bytes are in the file.
        int8_weights: from `tfdc.export_tflite(weights="int8")`, the names
            of the float32 kernels it stored as int8 codes (one scale per
            tensor: lossy at int8 resolution); empty otherwise.
        integer_model: `(activations, inputs, outputs)` type names of a
            model whose ops compute in integers (a full-integer file:
            `("int8", "float32", "float32")` with the converter's QUANTIZE
            and DEQUANTIZE at the edges); None for a float model or where
            the graph was not read.

    Example:

    ```python
    import tfdc
    tfdc.export(tfdc.models.lenet_300_100(), "lenet.tflite")
    report = tfdc.inspect("lenet.tflite")
    print(report.to_markdown())
    report.to_dict()["total"]["rate_pqh"]
    ```
    """

    def __init__(self, layers, *, packed_bytes, plain_bytes=None, dense_bytes=None,
                 flatbuffer_bytes=None, section_bytes=None, decoded_bytes=None, path=None,
                 preview=False):
        self.layers = list(layers)
        self.preview = preview
        self.packed_bytes = packed_bytes
        self.plain_bytes = plain_bytes
        self.dense_bytes = dense_bytes
        self.flatbuffer_bytes = flatbuffer_bytes
        self.section_bytes = section_bytes
        self.decoded_bytes = decoded_bytes
        self.path = path
        self.parts = {}
        self.densified = []
        self.patches = []
        self.constants = []
        self.graph_constants = None
        self.int8_weights = []
        self.integer_model = None

    @classmethod
    def from_pack_info(cls, info, *, plain_bytes=None, dense_bytes=None, path=None,
                       layer_names=None, model_bytes=None, buffer_names=None):
        """Build a report from a `tfdc.format.PackInfo`; with `model_bytes` (the
        packed or plain file) the rows follow the graph's operator order
        (fc1, fc2, ...) rather than the converter's buffer order."""
        records = list(info.records)
        graph = _graph(model_bytes) if model_bytes is not None else None
        loop_states = set()
        if graph is not None:
            first_use = _first_use(graph)
            # An op's kernel before its bias (both are first read by one op).
            records.sort(key=lambda r: (first_use.get(r.buffer_index, len(first_use)),
                                        len(tuple(_get(r, "shape", default=()))) == 1))
            loop_states = _loop_states(graph, {r.buffer_index for r in records
                                               if not int(_get(r, "nnz"))})
            # A packed file's archive record has no tensor: its metadata names it.
            archive = {graph.Metadata(i).Buffer() for i in range(graph.MetadataLength())
                       if graph.Metadata(i).Name() == fmt.APPENDED_ARCHIVE.encode()}
            records = [dataclasses.replace(r, tensor_names=[fmt.APPENDED_ARCHIVE], dtype="uint8")
                       if r.buffer_index in archive and dataclasses.is_dataclass(r) else r
                       for r in records]
        others = [r for r in records if r.buffer_index in loop_states or _byte_data(r)]
        not_weights = {r.buffer_index for r in others}
        records = [r for r in records if r.buffer_index not in not_weights]
        layers = [_layer_from_record(r, layer_names) for r in records]
        # A kernel found by its values (`buffer_names`) is named by the layer
        # it was found in: its tensor name can lose the layer ("convolution",
        # "arith.constant1"), name only the layer of two kernels ("lstm" for
        # lstm/kernel and lstm/recurrent_kernel), or name another layer (the
        # converter's scope "conv2d_1" for Keras's first Conv2D, "conv2d").
        for r, layer in zip(records, layers):
            name = (buffer_names or {}).get(r.buffer_index)
            if name is not None:
                layer.name = name
            elif layer.tensor_names and len(layer.shape) == 2:
                # Without the model (inspect): a recurrent cell's looped
                # kernels are Keras's "x @ kernel" and "h @ recurrent_kernel"
                # (they read "lstm#1" and "lstm#2").
                cell = re.search(r"_cell(_\d+)?/MatMul(_1)?$", layer.tensor_names[0])
                if cell:
                    layer.name += "/recurrent_kernel" if cell[2] else "/kernel"
        # A bias found by its values is named already ("fc1/bias", "gru/bias[1]").
        named = {b for b, name in (buffer_names or {}).items()
                 if re.search(r"/bias(\[\d+\])?$", name)}
        if graph is not None:  # a bias takes its kernel's name
            by_buffer = {r.buffer_index: layer for r, layer in zip(records, layers)}
            for bias, (kernel, tensor) in _biases(graph, set(by_buffer)).items():
                if bias in named:
                    continue
                if kernel in by_buffer:  # "/bias" added below, beside the kernel's row
                    by_buffer[bias].name = kernel_layer_name(by_buffer[kernel].name)
                elif tensor:  # the kernel stayed in the graph: no row to stand beside
                    by_buffer[bias].name = short_name(tensor, layer_names) + "/bias"
        # A vector sharing its layer's name with a kernel is that layer's bias.
        kernels = {layer.name for layer in layers if len(layer.shape) != 1}
        kernels |= {name.rsplit("/", 1)[0] for name in kernels if "/" in name}  # lstm/kernel
        for r, layer in zip(records, layers):
            if len(layer.shape) != 1 or r.buffer_index in named:
                continue
            # Or is named by the converter's scope around that layer: a
            # Bidirectional's "bi/backward_lstm" beside "backward_lstm/kernel".
            inner = [k for k in kernels if layer.name.endswith("/" + k)]
            if layer.name in kernels or len(inner) == 1:
                layer.name = (layer.name if layer.name in kernels else inner[0]) + "/bias"
        # Disambiguate equal short names (e.g. two tensors of one layer).
        for layer, name in zip(layers, _numbered([layer.name for layer in layers], "#")):
            layer.name = name
        if dense_bytes is None:
            dense_bytes = _get(info, "dense_bytes", default=None)
        report = cls(layers, packed_bytes=int(info.total_bytes), plain_bytes=plain_bytes,
                     dense_bytes=dense_bytes, flatbuffer_bytes=int(info.flatbuffer_bytes),
                     section_bytes=int(info.section_bytes),
                     decoded_bytes=int(info.decoded_bytes), path=path)
        report.parts = _parts(info)
        if graph is not None:
            report.graph_constants = _left_in_graph(graph, {r.buffer_index for r in info.records})
            report.integer_model = _integer_model(graph)
        report.constants = [_layer_from_record(r, layer_names) for r in others]
        report.densified = list(_get(info, "densified", default=[]))
        rows = {}  # tensor name -> its row's name ("fc1/bias" for a bias)
        if graph is not None:
            by_buffer = {r.buffer_index: layer.name for r, layer in zip(records, layers)}
            for s in range(graph.SubgraphsLength()):
                subgraph = graph.Subgraphs(s)
                for t in range(subgraph.TensorsLength()):
                    tensor = subgraph.Tensors(t)
                    if tensor.Buffer() in by_buffer:
                        rows.setdefault((tensor.Name() or b"").decode("utf-8", "replace"),
                                        by_buffer[tensor.Buffer()])
        patches = _get(info, "patches", default=[])
        report.patches = list(zip(_numbered([_patch_name(r, layer_names, rows)
                                             for r in patches], " #"),
                                  [int(r.record_bytes) for r in patches]))
        return report

    # Totals over the packed tensors.
    @property
    def weights(self):
        return sum(layer.weights for layer in self.layers)

    @property
    def nnz(self):
        return sum(layer.nnz for layer in self.layers)

    @property
    def raw_bytes(self):
        return sum(layer.raw_bytes for layer in self.layers)

    @property
    def record_bytes(self):
        return sum(layer.record_bytes for layer in self.layers)

    @property
    def value_bits(self):
        return sum(layer.value_bits for layer in self.layers)

    @property
    def gap_bits(self):
        return sum(layer.gap_bits for layer in self.layers)

    @property
    def entropy_bits(self):
        return sum(layer.entropy_bits for layer in self.layers)

    @property
    def coded_over_entropy(self):
        """Coded bits ÷ order-0 entropy bound, summed over tensors (≥ 1 for
        order-0 codes; kind 3 and 4 streams can go below it)."""
        return self.coded_bits / self.entropy_bits if self.entropy_bits else float("nan")

    @property
    def pq_bits(self):
        return sum(layer.pq_bits for layer in self.layers)

    @property
    def ratio(self):
        """Dense float32 bytes ÷ packed file bytes (the whole file)."""
        if not self.dense_bytes or not self.packed_bytes:
            return None
        return self.dense_bytes / self.packed_bytes

    def _nnz_weighted(self, attr):
        nnz = self.nnz
        return sum(getattr(l, attr) * l.nnz for l in self.layers) / nnz if nnz else 0.0

    @property
    def nothing_packed(self):
        """Why the report has no rows (one sentence), or None if a weight
        tensor was packed."""
        if self.layers:
            return None
        if self.constants:
            return (f"No weight buffer {'would be' if self.preview else 'was'} packed: only "
                    "tensors that are no weights (Other constants, below).")
        verb = "Packing this plain .tflite would pack nothing" if self.preview else \
            "Nothing was packed"
        return (f"{verb}: no weight buffer gets smaller when packed (buffers under min_bytes, "
                "64 B by default, are not tried); they stay in the compressed flatbuffer as "
                "converted. tfdc packs pruned and clustered weights best "
                "(tfdc.GradualPruning, tfdc.ClusteredFineTuning).")

    def _rows(self):
        rows = []
        for l in self.layers:
            rows.append([l.name, _fmt_int(l.weights), f"{100 * l.kept:.1f}%",
                         f"{l.weight_bits_pq:.3g}", f"{l.weight_bits_pqh:.2f}",
                         f"{l.index_bits_pq:g}" if l.sparse else "-",
                         f"{l.index_bits_pqh:.2f}" if l.sparse else "-",
                         f"{l.rate_pq:.1f}x", f"{l.rate_pqh:.1f}x"])
        sparse_nnz = sum(l.nnz for l in self.layers if l.sparse)
        index_pq = (sum(l.index_bits_pq * l.nnz for l in self.layers if l.sparse) / sparse_nnz
                    if sparse_nnz else 0.0)
        rows.append(["Total", _fmt_int(self.weights), f"{100 * self.kept:.1f}%",
                     f"{self._nnz_weighted('weight_bits_pq'):.3g}",
                     f"{self._nnz_weighted('weight_bits_pqh'):.2f}",
                     f"{index_pq:.2f}" if sparse_nnz else "-",
                     # Over the sparse tensors' nonzeros, as P+Q: the
                     # dense ones' (no index) pulled it down (3.00 vs 0.01).
                     f"{sum(l.gap_bits for l in self.layers if l.sparse) / sparse_nnz:.2f}"
                     if sparse_nnz else "-",
                     f"{self.rate_pq:.1f}x", f"{self.rate_pqh:.1f}x"])
        return rows

    _PREVIEW = ("Preview: this file is not packed (a plain or decoded .tflite); the table is what "
                "`tfdc pack` (tfdc.export_tflite with default options) would write.")

    _HEADERS = ["Layer", "#Weights", "Kept", "Weight bits P+Q", "Weight bits P+Q+H",
                "Index bits P+Q", "Index bits P+Q+H", "Rate P+Q", "Rate P+Q+H"]

    def _size_lines(self):
        lines = []
        if self.dense_bytes:
            lines.append(("Dense float32 weights", f"{_fmt_int(self.dense_bytes)} B"))
        if self.plain_bytes:
            lines.append(("Plain .tflite", f"{_fmt_int(self.plain_bytes)} B"))
        if self.parts:
            p = self.parts
            lines.append(("Packed .tflite", f"{_fmt_int(self.packed_bytes)} B = stub "
                          f"{p['stub']} + header {p['header']} + graph {_fmt_int(p['graph'])} "
                          f"(deflated from {_fmt_int(p['graph_raw'])}) + descriptors "
                          f"{_fmt_int(p['descriptors'])} + coded payload "
                          f"{_fmt_int(p['payload'])} + CRC {p['crc']} B"))
            kinds = {}
            for layer in self.layers + self.constants:
                group = kinds.setdefault(layer.kind or layer.value_mode, [0, 0])
                group[0] += 1
                group[1] += layer.record_bytes
            if kinds:
                lines.append(("Records", ", ".join(f"{n} {k} ({_fmt_int(b)} B)"
                                                   for k, (n, b) in sorted(kinds.items()))))
            if self.patches:
                # The largest few by name: a MobileNetV2 has 90 (one line of
                # 3,000 characters); `patches` (to_dict) holds them all.
                largest = sorted(self.patches, key=lambda p: -p[1])
                total = sum(b for _, b in self.patches)
                lines.append(("Patches", f"{len(self.patches)} quantization vector"
                              f"{'s' if len(self.patches) != 1 else ''} of the graph coded "
                              f"as records ({_fmt_int(total)} B"
                              + ("; the largest: " if len(largest) > 1 else ": ")
                              + listed([f"{n} {_fmt_int(b)} B" for n, b in largest], 6)
                              + ")"))
        else:
            lines.append(("Packed .tflite", f"{_fmt_int(self.packed_bytes)} B (flatbuffer "
                          f"{_fmt_int(self.flatbuffer_bytes or 0)} B + section "
                          f"{_fmt_int(self.section_bytes or 0)} B)"))
        if self.constants:
            lines.append(("Other constants", _constants_line(self.constants)))
        if self.graph_constants and self.graph_constants[0]:
            n, size = self.graph_constants
            lines.append(("Left in the graph", f"{n} constant{'s' if n != 1 else ''} "
                          f"({_fmt_int(size)} B), deflated with it, not in the table: shapes, "
                          "small biases, buffers under min_bytes or that code no smaller"))
        if self.integer_model:
            activations, inputs, outputs = self.integer_model
            lines.append(("Integer model", f"{activations} activations; inputs {inputs}, "
                          f"outputs {outputs}"))
        # A dense record's weight bits per kept weight count its zeros' codes
        # too (3 bits at 40 % kept read 7.5, as if 2-bit clustering were 7.5).
        dense = [l.name for l in self.layers if not l.sparse and l.nnz < l.weights]
        if dense:
            lines.append(("Coded densely", f"{listed(dense, 6)}: every weight coded, zeros too "
                          "(no index stream), so their weight bits per kept weight include the "
                          "zeros' codes"))
        expanded = [d for d in self.densified if d.expanded]
        if expanded:
            lines.append(("TFLite-sparse expanded",
                          f"{len(expanded)} tensor{'s' if len(expanded) != 1 else ''} "
                          f"({_fmt_int(sum(d.index_bytes for d in expanded))} B of CSR "
                          "indices) packed as dense constants, DENSIFY removed; decoded, "
                          f"they take {_fmt_int(sum(d.dense_bytes for d in expanded))} B "
                          "(as in RAM once DENSIFY has run)"))
        for d in self.densified:
            if not d.expanded:
                lines.append(("TFLite-sparse left as is", f"{short_name(d.name)}: {d.reason}"))
        if self.ratio and self.layers:  # with nothing packed, the graph is the file
            lines.append(("Dense float32 / packed", f"{self.ratio:.1f}x"))
        if self.plain_bytes:
            lines.append(("Plain / packed", f"{self.plain_bytes / self.packed_bytes:.1f}x"))
        elif self.decoded_bytes and self.section_bytes:
            # A packed file read back: its gain over the .tflite it decodes
            # to (the float32 ratio above overstates it for int8 weights).
            lines.append(("Decoded / packed", f"{self.decoded_bytes / self.packed_bytes:.2f}x "
                          f"(the {_fmt_int(self.decoded_bytes)} B .tflite it decodes to)"))
        if self.layers:
            lines.append(("Coded streams", f"{_fmt_int(math.ceil(self.coded_bits / 8))} B; "
                          f"order-0 entropy bound {_fmt_int(math.ceil(self.entropy_bits / 8))} B; "
                          f"coded / bound {self.coded_over_entropy:.4f}"))
        return lines

    def to_text(self):
        """A fixed-width table plus the file sizes (or, when nothing was
        packed, why, plus the file sizes)."""
        if not self.layers:
            width = max(len(k) for k, _ in self._size_lines())
            return "\n".join([self.nothing_packed, ""] +
                             [f"{k.ljust(width)}  {v}" for k, v in self._size_lines()])
        table = [self._HEADERS] + self._rows()
        widths = [max(len(r[i]) for r in table) for i in range(len(self._HEADERS))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(r, widths)))
        out = [self._PREVIEW, ""] if self.preview else []
        out += [fmt(table[0]), "-" * len(fmt(table[0]))]
        out += [fmt(r) for r in table[1:-1]]
        out += ["-" * len(fmt(table[0])), fmt(table[-1]), ""]
        width = max(len(k) for k, _ in self._size_lines())
        out += [f"{k.ljust(width)}  {v}" for k, v in self._size_lines()]
        return "\n".join(out)

    def to_markdown(self):
        """A Markdown table plus the file sizes as a list."""
        if not self.layers:
            return "\n".join([self.nothing_packed, ""] +
                             [f"- {k}: {v}" for k, v in self._size_lines()])
        rows = self._rows()
        rows[-1] = [f"**{c}**" for c in rows[-1]]
        out = [self._PREVIEW, ""] if self.preview else []
        out += ["| " + " | ".join(self._HEADERS) + " |",
               "|" + "---|" * len(self._HEADERS)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
        out += [f"- {k}: {v}" for k, v in self._size_lines()]
        return "\n".join(out)

    def to_dict(self):
        """Every number of the report, as plain Python types."""
        def layer_dict(l):
            d = dataclasses.asdict(l)
            d.update(kept=l.kept, symbol_bits=l.symbol_bits, value_count=l.value_count,
                     weight_bits_pq=l.weight_bits_pq,
                     weight_bits_pqh=l.weight_bits_pqh, index_bits_pq=l.index_bits_pq,
                     index_bits_pqh=l.index_bits_pqh, rate_pq=l.rate_pq, rate_pqh=l.rate_pqh,
                     coded_bits=l.coded_bits, entropy_bits=l.entropy_bits)
            d["tensor_names"] = list(l.tensor_names)
            d["shape"] = list(l.shape)
            return d
        def finite(x):  # JSON has no inf / nan (an empty report's rates)
            return x if x is None or math.isfinite(x) else None

        return {
            "path": self.path,
            "preview": self.preview,  # a plain file: what packing it would give
            "nothing_packed": self.nothing_packed,
            "layers": [layer_dict(l) for l in self.layers],
            "constants": [layer_dict(l) for l in self.constants],
            "graph_constants": (None if self.graph_constants is None else
                                dict(zip(("count", "bytes"), self.graph_constants))),
            "total": {"weights": self.weights, "nnz": self.nnz, "kept": self.kept,
                      "value_bits": self.value_bits, "gap_bits": self.gap_bits,
                      "coded_bits": self.coded_bits, "entropy_bits": self.entropy_bits,
                      "coded_over_entropy": finite(self.coded_over_entropy),
                      "raw_bytes": self.raw_bytes, "record_bytes": self.record_bytes,
                      "rate_pq": finite(self.rate_pq), "rate_pqh": finite(self.rate_pqh)},
            "sizes": {"dense_bytes": self.dense_bytes, "plain_bytes": self.plain_bytes,
                      "packed_bytes": self.packed_bytes,
                      "flatbuffer_bytes": self.flatbuffer_bytes,
                      "section_bytes": self.section_bytes, "decoded_bytes": self.decoded_bytes,
                      "ratio": self.ratio, "parts": dict(self.parts)},
            "densified": [dict(dataclasses.asdict(d), shape=list(d.shape))
                          for d in self.densified],
            "patches": [{"name": name, "bytes": size} for name, size in self.patches],
            "int8_weights": list(self.int8_weights),
            "integer_model": (dict(zip(("activations", "inputs", "outputs"), self.integer_model))
                              if self.integer_model else None),
        }

    def __str__(self):
        return self.to_text()

    def __repr__(self):
        ratio = f", {self.ratio:.1f}x vs dense float32" if self.ratio else ""
        return (f"<ExportReport {len(self.layers)} packed tensors, {self.packed_bytes:,} B"
                f"{ratio}>")


def check_layer_names(layer_names):
    """`layer_names` as a tuple of str (None stays None); a TypeError for
    anything else (a number read as damage to the file in `inspect`)."""
    if layer_names is None:
        return None
    if isinstance(layer_names, (str, bytes)) or not isinstance(layer_names,
                                                               collections.abc.Iterable):
        raise TypeError(f"layer_names must be a list of layer names, got {layer_names!r}")
    names = tuple(layer_names)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise TypeError(f"layer_names must be a list of layer names (str), got {bad[0]!r} "
                        "in it")
    return names


def inspect(path_or_bytes, layer_names=None):
    """The `ExportReport` of a `.tflite` file.

    For a packed file, the report is read from its section. For a plain
    `.tflite` file — or one decoded by `tfdc.decode`, which is a standard
    model — it describes what `tfdc.export_tflite` with default options would
    write (nothing is written); for a decoded file that is what it was
    packed as (packing is deterministic).

    Args:
        path_or_bytes: a file path or the file's bytes.
        layer_names: optional Keras layer names, to label rows exactly.

    Raises:
        tfdc.FormatError: not a .tflite file, or a malformed packed
            file.
        TypeError: `layer_names` is not a list of str.
    """
    from tfdc.runtime import check_tflite_header, read_model_bytes
    from tfdc.unpack import key_damage

    layer_names = check_layer_names(layer_names)
    path = os.fspath(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else None
    data = read_model_bytes(path_or_bytes)
    check_tflite_header(data, path_or_bytes)
    damage = key_damage(data, f"{path}: " if path else "")
    if damage:  # not a plain model to preview: a packed one whose key broke
        raise damage
    try:
        return _inspect(data, path, layer_names)
    except FormatError as e:
        if path is None:
            raise
        # Named as tfdc.decode names it: of many files, which one.
        raise FormatError(f"{path}: {e}", status=e.status) from None


def _inspect(data, path, layer_names):
    from tfdc.tflite_schema import damaged_flatbuffer
    from tfdc.unpack import has_section_entry, model_flatbuffer, read_pack_info
    if has_section_entry(data):
        info = read_pack_info(data)
        plain_bytes = None
        model = model_flatbuffer(data)
    else:
        from tfdc.pack import pack_tflite
        _, info = pack_tflite(data, strip_debug=True)  # as `tfdc.export` packs
        plain_bytes = len(data)
        model = data
    with damaged_flatbuffer(len(model)):  # a graph damaged under a valid CRC
        report = ExportReport.from_pack_info(info, plain_bytes=plain_bytes, path=path,
                                             layer_names=layer_names,
                                             dense_bytes=_constant_bytes(model),
                                             model_bytes=model)
    report.preview = plain_bytes is not None
    return report


def _constant_bytes(model_bytes):
    """The dense float32 size of every constant buffer of a model
    flatbuffer: its bytes as stored unpacked (inline data, or the size of a
    buffer in the offset layout: packed and decoded files), at 4 bytes per
    element for a type narrower than 32 bits (an int8 kernel of a
    full-integer model counted 1 byte, labelled float32), up to a few bytes
    of integer shape constants. A TFLite-sparse constant counts its dense
    shape, as it does once packed (its buffer holds only the nonzeros: a
    plain file read 104,732 B where its packed file read 349,000 B).
    Metadata buffers (the converter's, which `strip_debug` may drop, and a
    format 1 section) are not weights."""
    from tfdc import tflite_schema
    from tfdc.flatbuf import read_model
    model = read_model(model_bytes)
    metadata = {index for _, index in model.metadata}
    types, sparse = {}, {}
    for subgraph in tflite_schema.read(model_bytes).subgraphs or []:
        for tensor in subgraph.tensors or []:
            types.setdefault(int(tensor.buffer), []).append(int(tensor.type))
            if tensor.sparsity is not None and tensor.shape is not None:
                sparse[int(tensor.buffer)] = 4 * math.prod(int(d) for d in tensor.shape)
    total = 0
    for i, b in enumerate(model.buffers):
        if i in metadata:
            continue
        if i in sparse:
            total += sparse[i]
            continue
        size = b.data_len or (b.size if b.offset > 1 else 0)
        name, bits, _ = fmt.buffer_type(types.get(i, []), size)
        total += size * 32 // bits if name != "bytes" and bits < 32 else size
    return total
