"""Tests for tfdc.densify: TFLite's own sparse constants (SparsityParameters +
DENSIFY, as `Optimize.EXPERIMENTAL_SPARSITY` writes them) are expanded to the
exact dense constants LiteRT's DENSIFY computes, packed by the sparse records
and decoded to a model without DENSIFY that runs bit-identically; layouts the
expansion cannot reproduce exactly are left untouched."""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfdc import densify, tflite_schema, unpack
from tfdc.tflite_schema import builtin_code
from tfdc.pack import pack_tflite

FLOAT32, FLOAT16, INT8 = 0, 1, 9
NUMPY_OF = {FLOAT32: np.float32, FLOAT16: np.float16, INT8: np.int8}
INDEX_VECTORS = {np.int32: 1, np.uint16: 2, np.uint8: 3}


# ---------------------------------------------------------------- helpers
def _interpreter(content, builtin=False, **kwargs):
    from tfdc.runtime import interpreter_class
    cls = interpreter_class()
    if builtin:
        resolver = importlib.import_module(cls.__module__).OpResolverType
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return cls(model_content=content, **kwargs)


def _outputs(content, x, builtin):
    interpreter = _interpreter(content, builtin)
    interpreter.allocate_tensors()
    if x is not None:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [np.array(interpreter.get_tensor(o["index"]))
            for o in interpreter.get_output_details()]


def _assert_runs_bit_identically(original, decoded, x):
    """Both models give the same output bits under every LiteRT set-up the
    original runs under (XNNPACK refuses some sparse dynamic-range graphs)."""
    ran = 0
    for builtin in (False, True):
        try:
            want = _outputs(original, x, builtin)
        except RuntimeError:
            continue
        got = _outputs(decoded, x, builtin)
        assert [w.dtype for w in want] == [g.dtype for g in got]
        for w, g in zip(want, got):
            assert w.shape == g.shape and np.array_equal(w.view(np.uint8), g.view(np.uint8))
        ran += 1
    assert ran, "the input model must run in LiteRT"


def _ops(content):
    model = tflite_schema.read(content)
    names = {v: k for k, v in vars(tflite_schema.get().BuiltinOperator).items()
             if not k.startswith("_")}
    return [names[builtin_code(model.operatorCodes[op.opcodeIndex])]
            for sg in model.subgraphs for op in sg.operators]


def _sparse_tensors(content):
    model = tflite_schema.read(content)
    return [t for sg in model.subgraphs for t in sg.tensors if t.sparsity is not None]


def _name(tensor):
    return tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name


# ------------------------------------------------ real converter outputs
@pytest.fixture(scope="module")
def sparse_models():
    """A conv + dense model with >= 50 % zeros in every kernel, converted
    with EXPERIMENTAL_SPARSITY as float and as dynamic-range int8: conv and
    fc1 randomly sparse (read through DENSIFY; int8 in the dynamic-range
    model), fc2 pruned in 1x4 blocks and too small to quantize (float32:
    FULLY_CONNECTED reads it with its own block-sparse kernel)."""
    import keras
    import tensorflow as tf
    rng = np.random.default_rng(3)
    inp = keras.Input((6, 6, 8), batch_size=2)
    x = keras.layers.Conv2D(16, 3, name="conv")(inp)      # 16x3x3x8 = 1,152 weights
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    model = keras.Model(inp, keras.layers.Dense(12, name="fc2")(x))
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kernel = rng.normal(size=weights[0].shape).astype(np.float32)
        if layer.name == "fc2":
            keep = rng.random((kernel.shape[0] // 4, 1, kernel.shape[1])) < 0.4
            kernel *= np.repeat(keep, 4, axis=1).reshape(kernel.shape)
        else:
            kernel[rng.random(kernel.shape) < 0.6] = 0
        layer.set_weights([kernel, rng.normal(0, 0.1, weights[1].shape).astype(np.float32)])
    out = {}
    for kind, optimizations in (("float", [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]),
                                ("dynamic int8", [tf.lite.Optimize.DEFAULT,
                                                  tf.lite.Optimize.EXPERIMENTAL_SPARSITY])):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = optimizations
        out[kind] = converter.convert()
    return out, rng.normal(size=(2, 6, 6, 8)).astype(np.float32)


@pytest.mark.parametrize("kind", ["float", "dynamic int8"])
def test_converter_sparsity_is_packed_dense_and_runs_bit_identically(sparse_models, kind):
    models, x = sparse_models
    tflite = models[kind]
    sparse = {_name(t): t for t in _sparse_tensors(tflite)}
    # The premise: the converter stored the conv and fc1 kernels sparse.
    assert "DENSIFY" in _ops(tflite) and len(sparse) == 3
    packed, info = pack_tflite(tflite, strip_debug=True)
    expanded = [d for d in info.densified if d.expanded]
    assert {d.name for d in info.densified} == set(sparse)
    assert any("conv" in d.name for d in expanded) and any("fc1" in d.name for d in expanded)
    assert {d.dtype for d in expanded} == {"float32" if kind == "float" else "int8"}
    for d in expanded:
        assert d.dense_bytes == int(np.prod(d.shape)) * (1 if d.dtype == "int8" else 4)
        assert d.reason is None
    left = [d for d in info.densified if not d.expanded]
    # fc2 (the converter names its kernel after the model's output).
    assert len(left) == 1 and left[0].shape == (12, 32)
    assert "read directly by FULLY_CONNECTED" in left[0].reason
    # The packer's own records now code the expanded kernels (sparse
    # positions where those are smaller than a dense code with zeros).
    assert all(any(tuple(r.shape) == d.shape for r in info.records) for d in expanded)
    assert any(r.position_mode == "sparse" for r in info.records)
    assert len(packed) < len(pack_tflite(tflite, strip_debug=True, densify=False)[0])

    decoded = unpack.decode(packed)
    assert "DENSIFY" not in _ops(decoded)
    assert pack_tflite(decoded, strip_debug=True)[0] == packed  # nothing left to expand
    assert [_name(t) for t in _sparse_tensors(decoded)] == [d.name for d in left]
    _assert_runs_bit_identically(tflite, decoded, x)


def test_expanded_constants_are_what_the_runtime_densify_writes(sparse_models):
    models, x = sparse_models
    for tflite in models.values():
        model = tflite_schema.read(tflite)
        sg = model.subgraphs[0]
        names = {v: k for k, v in vars(tflite_schema.get().BuiltinOperator).items()}
        outputs = [int(op.outputs[0]) for op in sg.operators
                   if names[builtin_code(model.operatorCodes[op.opcodeIndex])] == "DENSIFY"]
        interpreter = _interpreter(tflite, builtin=True, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        want = {_name(sg.tensors[i]): interpreter.get_tensor(i) for i in outputs}
        entries = densify.densify(model)
        assert sum(e.expanded for e in entries) == len(want) == 2
        got = {_name(t): np.asarray(model.buffers[t.buffer].data, np.uint8)
               for t in model.subgraphs[0].tensors if _name(t) in want}
        for name, array in want.items():
            assert got[name].tobytes() == array.tobytes(), name


def test_report_says_what_was_expanded(sparse_models, tmp_path):
    import tfdc
    report = tfdc.export_tflite(sparse_models[0]["float"], tmp_path / "packed.tflite")
    lines = {line.split("  ")[0]: line for line in report.to_text().splitlines()}
    assert "2 tensors" in lines["TFLite-sparse expanded"]
    assert "read directly by FULLY_CONNECTED" in lines["TFLite-sparse left as is"]
    assert len(report.to_dict()["densified"]) == 3


@pytest.mark.parametrize("kind", ["float", "dynamic int8"])
def test_inspect_counts_a_sparse_constant_at_its_dense_size(sparse_models, tmp_path, kind):
    # Plain, the buffers hold only the nonzeros: inspect's float32 baseline
    # read 2.4x less than it read for the packed file of the same model.
    import tfdc
    plain = sparse_models[0][kind]
    tfdc.export_tflite(plain, tmp_path / "packed.tflite")
    kernels = 4 * (16 * 3 * 3 * 8 + 4 * 4 * 16 * 32 + 32 * 12)
    dense = tfdc.inspect(plain).dense_bytes
    assert dense == tfdc.inspect(tmp_path / "packed.tflite").dense_bytes
    assert kernels < dense < kernels + 4 * 100  # + the biases and shape constants


def test_densify_false_keeps_the_sparse_layout(sparse_models):
    tflite = sparse_models[0]["dynamic int8"]
    packed, info = pack_tflite(tflite, densify=False)
    assert info.densified == []
    decoded = unpack.decode(packed)
    assert _ops(decoded).count("DENSIFY") == 2 and len(_sparse_tensors(decoded)) == 3


# ------------------------------------------------------- hand-built layouts
def _to_sparse(dense, order, formats, block_map=(), block_size=(), index_dtype=np.uint8):
    """TFLite's sparse layout of `dense` (a reference encoder for the tests):
    `(values, [(format, dense size, segments, indices)] per level)`."""
    n, k = dense.ndim, len(block_map)
    split, outer, inner = [], [], [None] * k
    for d in range(n):
        if d in block_map:
            b = block_map.index(d)
            outer.append(len(split))
            inner[b] = len(split) + 1
            split += [dense.shape[d] // block_size[b], block_size[b]]
        else:
            outer.append(len(split))
            split.append(dense.shape[d])
    expanded = dense.reshape(split).transpose(outer + inner).transpose(order)
    levels = [[f, expanded.shape[i], [0], []] for i, f in enumerate(formats)]
    values = []

    def visit(sub, level):
        if level == len(levels):
            values.append(sub)
            return
        fmt_, size, segments, indices = levels[level]
        for i in range(size):
            if fmt_ == 0 or np.any(sub[i] != 0):
                if fmt_ == 1:
                    indices.append(i)
                visit(sub[i], level + 1)
        if fmt_ == 1:
            segments.append(len(indices))

    visit(expanded, 0)
    out = [(f, size if f == 0 else 0, np.array(seg, index_dtype), np.array(idx, index_dtype))
           for f, size, seg, idx in levels]
    return np.array(values, dense.dtype), out


def _sparsity(order, levels, block_map=()):
    schema = tflite_schema.get()
    s = schema.SparsityParametersT()
    s.traversalOrder = np.array(order, np.int32)
    s.blockMap = np.array(block_map, np.int32) if block_map else None
    s.dimMetadata = []
    vector = {np.dtype(np.int32): schema.Int32VectorT, np.dtype(np.uint16): schema.Uint16VectorT,
              np.dtype(np.uint8): schema.Uint8VectorT}
    for f, size, segments, indices in levels:
        d = schema.DimensionMetadataT()
        d.format, d.denseSize = f, int(size)
        if f == 1:
            for which, values in (("arraySegments", segments), ("arrayIndices", indices)):
                v = vector[values.dtype]()
                v.values = values
                setattr(d, which, v)
                setattr(d, which + "Type", INDEX_VECTORS[values.dtype.type])
        s.dimMetadata.append(d)
    return s


def _densify_model(values, tensor_type, shape, sparsity):
    """A runnable model with no input: sparse constant -> DENSIFY -> RESHAPE
    (to its own shape) -> output, so that the output is the dense tensor."""
    schema = tflite_schema.get()
    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name, ttype, tshape, data=None):
        t = schema.TensorT()
        t.name, t.type, t.shape = name, ttype, np.array(tshape, np.int32)
        b = schema.BufferT()
        if data is not None:
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        model.buffers.append(b)
        t.buffer = len(model.buffers) - 1
        sg.tensors.append(t)
        return t

    w = tensor("w", tensor_type, shape, values)
    w.sparsity = sparsity
    if tensor_type == INT8:
        w.quantization = schema.QuantizationParametersT()
        w.quantization.scale, w.quantization.zeroPoint = np.array([0.5], np.float32), \
            np.array([0], np.int64)
    tensor("w_dense", tensor_type, shape).quantization = w.quantization
    tensor("new_shape", 2, [len(shape)], np.array(shape, np.int32))
    tensor("out", tensor_type, shape).quantization = w.quantization
    model.operatorCodes = []
    for code in (schema.BuiltinOperator.DENSIFY, schema.BuiltinOperator.RESHAPE):
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
        model.operatorCodes.append(c)
    for index, (inputs, outputs) in enumerate((([0], [1]), ([1, 2], [3]))):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, np.array(inputs, np.int32), \
            np.array(outputs, np.int32)
        sg.operators.append(op)
    sg.inputs, sg.outputs = np.array([], np.int32), np.array([3], np.int32)
    model.subgraphs = [sg]
    return tflite_schema.build(model)


def _dense(rng, shape, tensor_type, density=0.35, block_map=(), block_size=()):
    values = rng.normal(size=shape) * 20
    if tensor_type == INT8:
        values = np.clip(np.round(values), -128, 127)
    values = values.astype(NUMPY_OF[tensor_type])
    mask = rng.random(shape) < density
    if block_map:  # zero whole blocks, as block-sparse pruning does
        coarse = [s // block_size[block_map.index(d)] if d in block_map else s
                  for d, s in enumerate(shape)]
        mask = rng.random(coarse) < density
        for b, d in enumerate(block_map):
            mask = np.repeat(mask, block_size[b], axis=d)
    return np.where(mask, values, NUMPY_OF[tensor_type](0))


LAYOUTS = {
    # name: shape, type, traversal order, level formats, block map, block size, index dtype
    "csr rows, uint8": ((6, 9), FLOAT32, [0, 1], [0, 1], (), (), np.uint8),
    "csr columns, uint16": ((6, 9), FLOAT32, [1, 0], [0, 1], (), (), np.uint16),
    "conv kernel, int8, int32": ((4, 3, 3, 5), INT8, [0, 1, 2, 3], [0, 0, 0, 1], (), (),
                                 np.int32),
    "all levels sparse, float16": ((3, 4, 5), FLOAT16, [2, 0, 1], [1, 1, 1], (), (), np.uint16),
    "sparse then dense": ((5, 3, 4), FLOAT32, [0, 1, 2], [1, 0, 1], (), (), np.uint8),
    "1x4 blocks": ((4, 16), FLOAT32, [0, 1, 2], [0, 1, 0], (1,), (4,), np.uint8),
    "1x16 blocks, int8": ((3, 32), INT8, [0, 1, 2], [0, 1, 0], (1,), (16,), np.uint16),
    "2x2 blocks": ((6, 8), FLOAT32, [0, 1, 2, 3], [0, 1, 0, 0], (0, 1), (2, 2), np.uint8),
    "2x4 blocks, block dims swapped": ((6, 8), FLOAT16, [0, 1, 3, 2], [0, 1, 0, 0], (0, 1),
                                       (2, 4), np.int32),
    "columns of 2x1 blocks": ((8, 6), FLOAT32, [1, 0, 2], [0, 1, 0], (0,), (2,), np.uint8),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_expands_as_litert_densify_does(layout):
    shape, ttype, order, formats, block_map, block_size, index_dtype = LAYOUTS[layout]
    rng = np.random.default_rng(len(layout))
    dense = _dense(rng, shape, ttype, block_map=block_map, block_size=block_size)
    values, levels = _to_sparse(dense, order, formats, block_map, block_size, index_dtype)
    assert len(values) < dense.size  # really sparse
    content = _densify_model(values, ttype, shape, _sparsity(order, levels, block_map))
    # The runtime's DENSIFY gives back the dense tensor: encoder and layout agree.
    (runtime,) = _outputs(content, None, builtin=True)
    assert runtime.tobytes() == dense.tobytes()

    packed, info = pack_tflite(content, min_bytes=1)
    assert [d.expanded for d in info.densified] == [True], info.densified
    decoded = unpack.decode(packed)
    assert "DENSIFY" not in _ops(decoded) and not _sparse_tensors(decoded)
    assert _ops(decoded) == ["RESHAPE"]
    _assert_runs_bit_identically(content, decoded, None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rank=st.integers(1, 3), blocked=st.booleans(),
       data=st.data())
def test_expand_matches_litert_on_random_layouts(seed, rank, blocked, data):
    rng = np.random.default_rng(seed)
    shape = [int(s) for s in rng.integers(1, 5, rank)]
    block_map, block_size = (), ()
    if blocked:
        block_map = tuple(sorted(rng.choice(rank, int(rng.integers(1, rank + 1)),
                                            replace=False).tolist()))
        block_size = tuple(int(rng.integers(1, 4)) for _ in block_map)
        for d, b in zip(block_map, block_size):
            shape[d] *= b
    n, k = rank, len(block_map)
    order = list(rng.permutation(n)) + [n + int(b) for b in rng.permutation(k)]
    formats = [data.draw(st.sampled_from([0, 1])) for _ in range(n)] + [0] * k
    ttype = data.draw(st.sampled_from([FLOAT32, FLOAT16, INT8]))
    index_dtype = data.draw(st.sampled_from([np.uint8, np.uint16, np.int32]))
    dense = _dense(rng, tuple(shape), ttype, density=float(rng.random()),
                   block_map=block_map, block_size=block_size)
    values, levels = _to_sparse(dense, order, formats, block_map, block_size, index_dtype)
    sparsity = _sparsity(order, levels, block_map)
    itemsize = np.dtype(NUMPY_OF[ttype]).itemsize
    try:
        got = densify.expand(sparsity, shape, np.frombuffer(values.tobytes(), np.uint8),
                             itemsize)
    except ValueError as e:
        # Only block dimensions traversed in an order whose sizes LiteRT reads
        # from the wrong level (FormatConverter's block_size_) are refused.
        assert "runtime reads" in str(e) and k >= 3
        return
    assert got.tobytes() == dense.tobytes()
    if len(values):  # LiteRT refuses a constant with an empty buffer
        content = _densify_model(values, ttype, shape, sparsity)
        assert _outputs(content, None, builtin=True)[0].tobytes() == dense.tobytes()


# ----------------------------------------------------- what is left as is
def _valid_csr():
    dense = _dense(np.random.default_rng(5), (6, 9), FLOAT32)
    values, levels = _to_sparse(dense, [0, 1], [0, 1], (), (), np.uint8)
    return values, levels


def _malformed(case):
    """A CSR layout of a (6, 9) float32 tensor broken in one way: `(values,
    sparsity)`."""
    values, levels = _valid_csr()
    (f0, s0, seg0, idx0), (f1, s1, seg, idx) = levels
    seg, idx = seg.copy(), idx.copy()
    order, block_map = [0, 1], ()
    if case == "index out of range":
        idx[-1] = 9
    elif case == "segments decrease":
        seg[2], seg[3] = seg[3], seg[2]
    elif case == "segments too short":
        seg = seg[:-1]
    elif case == "repeated position":
        row = int(np.flatnonzero(np.diff(seg) >= 2)[0])
        idx[seg[row] + 1] = idx[seg[row]]
    elif case == "one value short":
        values = values[:-1]
    elif case == "one value too many":
        values = np.append(values, np.float32(1))
    elif case == "dense size is not the shape":
        s0 = 5
    levels = [(f0, s0, seg0, idx0), (f1, s1, seg, idx)]
    if case == "block dimension traversed first":
        # The runtime would write the block index into original dimension 2.
        order, block_map = [2, 0, 1], (1,)
        levels = [(0, 1, None, None)] + levels
    sparsity = _sparsity(order, levels, block_map)
    if case == "segments not a vector":
        sparsity.dimMetadata[1].arraySegments = None
    return values, sparsity


def _buffer(model, tensor):
    data = model.buffers[tensor.buffer].data
    return b"" if data is None else np.asarray(data, np.uint8).tobytes()


MALFORMED = ["index out of range", "segments decrease", "segments too short",
             "repeated position", "one value short", "one value too many",
             "dense size is not the shape", "block dimension traversed first",
             "segments not a vector"]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_sparsity_is_left_untouched(case):
    values, sparsity = _malformed(case)
    content = _densify_model(values, FLOAT32, (6, 9), sparsity)
    model = tflite_schema.read(content)
    (entry,) = densify.densify(model)
    assert not entry.expanded and entry.reason.startswith("sparsity not expanded exactly")
    assert tflite_schema.build(model) == content  # nothing changed
    packed, info = pack_tflite(content, min_bytes=1)
    assert [d.expanded for d in info.densified] == [False]
    decoded_bytes = unpack.decode(packed)
    assert _ops(decoded_bytes) == ["DENSIFY", "RESHAPE"]
    original, decoded = tflite_schema.read(content), tflite_schema.read(decoded_bytes)
    for a, b in zip(original.subgraphs[0].tensors, decoded.subgraphs[0].tensors):
        assert _name(a) == _name(b) and _buffer(original, a) == _buffer(decoded, b)
    w_in = original.subgraphs[0].tensors[0].sparsity
    w_out = decoded.subgraphs[0].tensors[0].sparsity
    assert list(w_in.traversalOrder) == list(w_out.traversalOrder)
    for a, b in zip(w_in.dimMetadata, w_out.dimMetadata):
        assert (a.format, a.denseSize) == (b.format, b.denseSize)
        for which in ("arraySegments", "arrayIndices"):
            va, vb = getattr(a, which), getattr(b, which)
            assert (va is None) == (vb is None)
            if va is not None:
                assert list(va.values) == list(vb.values)


def test_unsupported_element_type_and_shared_input_are_left_as_is():
    values, levels = _valid_csr()
    content = _densify_model(values.astype(np.float32).view(np.int32), 2, (6, 9),
                             _sparsity([0, 1], levels))
    (entry,) = densify.densify(tflite_schema.read(content))
    assert not entry.expanded and "DENSIFY does not expand int32" in entry.reason
    # The sparse tensor also read by another op: DENSIFY is not its only reader.
    model = tflite_schema.read(_densify_model(values, FLOAT32, (6, 9), _sparsity([0, 1], levels)))
    model.subgraphs[0].operators[1].inputs = np.array([0, 2], np.int32)
    (entry,) = densify.densify(model)
    assert not entry.expanded and "not by one DENSIFY" in entry.reason


def test_a_tensor_that_would_pass_the_size_limit_stays_sparse():
    values, levels = _valid_csr()
    content = _densify_model(values, FLOAT32, (6, 9), _sparsity([0, 1], levels))
    model = tflite_schema.read(content)
    used = sum(len(b.data) for b in model.buffers if b.data is not None)
    (entry,) = densify.densify(model, max_bytes=used + 6 * 9 * 4 - 1)
    assert not entry.expanded and "past" in entry.reason
    assert tflite_schema.build(model) == content
    (entry,) = densify.densify(model, max_bytes=used + 6 * 9 * 4)
    assert entry.expanded
