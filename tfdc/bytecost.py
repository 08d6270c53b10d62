"""The exact packed size of a model at given per-layer sparsities and bits.

`ByteCost(model)` answers "how many bytes will `tfdc.export` write if layer
`fc1` is pruned to 92 % and clustered to 4 bits?" with the packer's own code,
not a formula: the model is converted to TFLite once, and for every setting
asked about, each kernel's buffers in that flatbuffer are overwritten with
the kernel as `compress_kernel` makes it (magnitude pruning, then k-means of
the nonzero weights as `tfdc.ClusteredFineTuning` clusters them) and packed
by `tfdc.pack` (its record planner for one layer, `pack_tflite` for the
whole file). Everything else in the file (graph, biases, small tensors, code
tables, codebooks, descriptors, section header, stub, CRC) is what the
packer writes around those buffers.

Why the buffers can be overwritten instead of converting again: the
converter copies each float32 kernel's values exactly (transposed for
`FULLY_CONNECTED`, split into gates for a fused LSTM), and pruning and
clustering here are functions of the value alone (equal weights always get
equal results), so a buffer's new contents are its old elements mapped
value by value. A kernel the converter multiplied by one factor (a
`Rescaling` or a Lambda's scaling before it, `folded_scale`) is found and
rewritten through the same product (a per-feature `Normalization` stays an
op of its own). A kernel whose values the converter altered otherwise (a
BatchNormalization folded into it: fold it first with `tfdc.fold_batchnorm`)
cannot be found and is left out of `layers`, with a warning.

`total(sparsity, bits)` is exact: it is the size of the file that
`tfdc.export(model, path)` writes after `apply_settings(model, sparsity,
bits)`, byte for byte (tests/test_bytecost.py checks it). Two exceptions,
both after a folded factor: an offset folded with it (`Rescaling(offset=)`,
`2 * x - 1`) makes the bias depend on the weights, which the rewritten file
keeps as converted; and two weights an ulp apart that the product rounds to
one value but pruning or clustering separates. The size is then off by up
to a few bytes per bias element (tfdc.compress measures its files by
exporting). `layer(name, sparsity, bits)` is that layer's records alone
(payloads, descriptors and code tables before the meta stream's DEFLATE; a
buffer the packer leaves inline counts its deflated size), which is
additive over layers and what the planner allocates with; the planner then
checks its choice with `total`.

Example:

```python
import keras
from tfdc.bytecost import ByteCost
from tfdc.models import lenet_300_100
model = lenet_300_100()
model.build((None, 28, 28))
cost = ByteCost(model)
print(cost.layers, cost.weights)                   # ['fc1', 'fc2', 'fc3'] ...
print(cost.layer("fc1", 0.9, 5))                   # bytes of fc1's record
print(cost.total({"fc1": 0.92, "fc2": 0.9}, {"fc1": 4, "fc2": 5, "fc3": 6}))
```
"""

import collections
import hashlib
import warnings

import numpy as np

from tfdc import format as fmt

__all__ = ["ByteCost", "byte_cost", "compress_kernel", "apply_settings", "restore_settings",
           "compressible_layers", "uncompressed_weights"]

# Default k-means settings: those of `tfdc.ClusteredFineTuning()`, so that
# the clustered kernel here is the one its `quantize` writes.
_INIT, _MAX_ITER = "linear", 300
_KERNELS_KEPT = 16


def compress_kernel(value, sparsity=0.0, bits=None):
    """A kernel pruned to `sparsity` by magnitude, then clustered to `bits`.

    Pruning zeroes the `round(sparsity * size)` smallest magnitudes (at
    most `size - 1`, `tfdc.prune.pruned_count`; all
    weights whose magnitude equals the largest of those too, so that the
    result depends on each weight's value alone); clustering replaces the
    nonzero weights by at most `2**bits` shared values (k-means with
    `tfdc.ClusteredFineTuning`'s defaults: linear initialisation, Lloyd
    iterations; zeros stay exact zeros; shared values rounded to binary16).

    Args:
        value: the kernel (any shape, float32).
        sparsity: fraction of weights to zero, in [0, 1).
        bits: bits per shared value (1…8), or None to keep the values.

    Returns:
        A float32 array of `value`'s shape.

    Example:

    ```python
    import numpy as np
    from tfdc.bytecost import compress_kernel
    w = np.random.default_rng(0).normal(size=(64, 32)).astype("float32")
    c = compress_kernel(w, 0.9, 3)
    print((c == 0).mean(), np.unique(c[c != 0]).size)   # 0.8999 8
    ```
    """
    w = np.asarray(value, dtype=np.float32)
    return _cluster(_prune(w.ravel(), sparsity), bits).reshape(w.shape)


def _prune(flat, sparsity):
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if sparsity:
        magnitude = np.abs(flat)
        from tfdc.prune import pruned_count
        k = pruned_count(sparsity, flat.size)
        if k > 0:
            threshold = np.partition(magnitude, k - 1)[k - 1]
            flat = np.where(magnitude <= threshold, np.float32(0), flat).astype(np.float32)
    return flat


def _cluster(flat, bits):
    if bits is None:
        return flat
    from tfdc.cluster import _check_bits, _cluster_kernel
    _check_bits(bits, "(compress_kernel)")
    positions, assignment, centroids, _ = _cluster_kernel(
        flat, int(bits), _INIT, None, _MAX_ITER, fp16=True)  # centroid_fp16's default
    out = np.zeros(flat.size, np.float32)
    out[positions] = centroids[assignment]
    return out


def compressible_layers(model):
    """`{layer key: [(attr, variable)]}` of the model's built, float32
    kernels of a kind `tfdc.layers` registers, in model order (a shared
    layer once); the key is the layer's name, or its path for layers of one
    name in two nested models (`tfdc.select.layer_keys`).

    Example:

    ```python
    from tfdc.bytecost import compressible_layers
    from tfdc.models import lenet_300_100
    model = lenet_300_100()
    print(list(compressible_layers(model)))   # ['fc1', 'fc2', 'fc3']
    ```
    """
    from tfdc.layers import kernel_variables
    from tfdc.select import iter_layers, layer_keys, refuse_non_float32
    refuse_non_float32(model, "tfdc")
    out, keys = collections.OrderedDict(), layer_keys(model)
    for layer in iter_layers(model):
        kernels = [(attr, v) for attr, v in kernel_variables(layer)
                   if str(getattr(v, "dtype", "")) == "float32"]
        if kernels:
            out[keys[id(layer)]] = kernels
    return out


def layer_weights(layers):
    """`{layer name: number of kernel weights}` of `compressible_layers`'
    result (or a part of it)."""
    return {name: int(sum(int(np.prod(v.shape)) for _, v in kernels))
            for name, kernels in layers.items()}


def weight_label(row):
    """An `uncompressed_weights` row as messages name it: "scale/w (Scale,
    1,280 weights)"."""
    return f"{row['layer']}/{row['weight']} ({row['class']}, {row['weights']:,} weights)"


def uncompressed_weights(model, min_weights=256):
    """The model's large weight tensors that tfdc cannot prune or cluster,
    largest first: `[{"layer", "weight", "class", "weights", "why"}]` (the
    layer's path as `tfdc.select.layer_paths` gives it, the variable's
    name, the layer's class, its size, why it is left) for every
    tensor of at least two axes and `min_weights` elements that is not a
    compressible kernel (a layer kind `tfdc.layers` does not register, such
    as a custom layer, or a registered kernel that is not float32). The
    packer codes them losslessly, at full precision: no plan or byte target
    shrinks them further.

    Example:

    ```python
    import keras
    from tfdc.bytecost import uncompressed_weights

    class Scale(keras.layers.Layer):  # a custom layer with a (64, 64) matrix
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 64), name="w")
        def call(self, x):
            return x @ self.w

    model = keras.Sequential([keras.Input((64,)), Scale(name="scale"), keras.layers.Dense(10)])
    print(uncompressed_weights(model))  # [{'layer': 'scale', 'weight': 'w', 'class': 'Scale', ...}]
    ```
    """
    from tfdc.layers import kernel_variables
    from tfdc.select import iter_layers, layer_paths
    layers, paths = list(iter_layers(model)), layer_paths(model)
    kernels = {id(v) for layer in layers for _, v in kernel_variables(layer)}
    rows, seen = [], set()
    for layer in layers:
        own = (list(getattr(layer, "_trainable_variables", ())) +
               list(getattr(layer, "_non_trainable_variables", ())))
        for v in [v for _, v in kernel_variables(layer)] + own:
            size, dtype = int(np.prod(v.shape)), str(v.dtype)
            # A GRU's bias has two axes (input and recurrent, reset_after):
            # a bias still, which the callbacks leave as every bias.
            if id(v) in seen or len(v.shape) < 2 or size < min_weights or \
                    v.name.rsplit("/", 1)[-1] == "bias":
                continue
            if id(v) not in kernels and type(layer).__name__.endswith("Cell"):
                # A registered RNN's own cell holds registered kernels: this
                # one is in a StackedRNNCells (RNN([cell, cell])).
                why = ("a cell of a stack, RNN([cell, ...]): tfdc compresses an RNN of one "
                       "cell, so stack RNN layers instead")
            elif id(v) not in kernels:
                why = "a layer kind tfdc cannot prune or cluster"
            elif dtype != "float32":
                why = f"a {dtype} kernel: tfdc prunes and clusters float32 kernels"
            else:
                continue
            seen.add(id(v))
            rows.append({"layer": paths.get(id(layer), layer.name), "weight": v.name,
                         "class": type(layer).__name__, "weights": size, "why": why})
    return sorted(rows, key=lambda r: -r["weights"])


def _setting(settings, name, default):
    if settings is None:
        return default
    if isinstance(settings, dict):
        return settings.get(name, default)
    return settings


def apply_settings(model, sparsity=None, bits=None):
    """Prune and cluster the model's kernels in place, as `compress_kernel`
    does, without training: what `ByteCost.total(sparsity, bits)` prices.

    Args:
        model: a built Keras model.
        sparsity: `{layer name: sparsity}` (layers not named are not
            pruned), one float for every compressible layer, or None.
        bits: `{layer name: bits}` (layers not named keep their values), one
            int for every compressible layer, or None.

    Returns:
        `{layer name: [previous kernel values]}`, to restore them with
        `restore_settings` (or ignore).

    Example:

    ```python
    import tfdc
    from tfdc.bytecost import ByteCost, apply_settings
    from tfdc.models import lenet_300_100
    model = lenet_300_100()
    predicted = ByteCost(model).total({"fc1": 0.9}, {"fc1": 5, "fc2": 5})
    apply_settings(model, {"fc1": 0.9}, {"fc1": 5, "fc2": 5})
    assert tfdc.export(model, "model.tflite").packed_bytes == predicted
    ```
    """
    layers = compressible_layers(model)
    for settings in (sparsity, bits):
        if isinstance(settings, dict):
            unknown = sorted(set(settings) - set(layers))
            if unknown:
                raise ValueError(f"no compressible layer named {', '.join(map(repr, unknown))}; "
                                 f"layers are: {', '.join(layers)}")
    saved = {}
    for name, kernels in layers.items():
        s = _setting(sparsity, name, 0.0) or 0.0
        b = _setting(bits, name, None)
        if not s and b is None:
            continue
        saved[name] = []
        for _, variable in kernels:
            old = np.asarray(variable.numpy())
            saved[name].append(old)
            variable.assign(compress_kernel(old, s, b))
    return saved


def restore_settings(model, saved):
    """Put back the kernels `apply_settings` returned.

    Example:

    ```python
    import numpy as np
    from tfdc.bytecost import apply_settings, restore_settings
    from tfdc.models import lenet_300_100
    model = lenet_300_100()
    model.compile(loss="sparse_categorical_crossentropy")
    x_val, y_val = np.random.rand(64, 28, 28), np.random.randint(0, 10, 64)
    saved = apply_settings(model, {"fc1": 0.9}, {"fc1": 4})
    try:
        print(model.evaluate(x_val, y_val, verbose=0))   # pruned and clustered, no retraining
    finally:
        restore_settings(model, saved)
    print(np.count_nonzero(model.get_layer("fc1").kernel))   # 235200: as it was
    ```
    """
    layers = compressible_layers(model)
    for name, values in saved.items():
        for (_, variable), value in zip(layers[name], values):
            variable.assign(value)


# Converted models and their ByteCost, by the digest of the model's weights
# and the export options: a scan, a planner and the next plan of the same
# model convert it once and price each layer setting once.
_CACHE = collections.OrderedDict()
_CACHE_MAX = 4


def _digest(model, options):
    """What the converted file depends on: the weights, and the names the
    file keeps (two models of equal weights built apart, `keras_tensor_5`
    and `keras_tensor_13` as input, convert to files of different sizes)."""
    from tfdc.layers import has_graph
    from tfdc.select import iter_layers
    names = [t.name for t in model.inputs + model.outputs] if has_graph(model) else []
    h = hashlib.sha256(repr((model.name, sorted(options.items()), names,
                             [(type(l).__name__, l.name) for l in iter_layers(model)],
                             [(v.path, tuple(v.shape)) for v in model.weights])).encode())
    for v in model.weights:
        h.update(np.ascontiguousarray(np.asarray(v.numpy())).tobytes())
    return h.hexdigest()


def _cached(key, make):
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = _CACHE[key] = make()
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return value


def _converted(model, batch_size):
    from tfdc.exporter import convert
    return _cached(("tflite", _digest(model, {"batch_size": batch_size})),
                   lambda: convert(model, batch_size=batch_size))


def byte_cost(model, **options):
    """The `ByteCost` of `model` with export `options`, shared with earlier
    calls for the same weights and options (its per-layer prices are kept).

    Example:

    ```python
    from tfdc.bytecost import byte_cost
    from tfdc.models import lenet_300_100
    model = lenet_300_100()
    cost = byte_cost(model, batch_size=1)
    assert byte_cost(model, batch_size=1) is cost   # same weights: no new conversion
    ```
    """
    key = ("cost", _digest(model, options))
    return _cached(key, lambda: ByteCost(model, **options))


class ByteCost:
    """Exact packed bytes of a model's `tfdc.export` file at per-layer
    sparsity and bits (see the module docstring for how).

    Args:
        model: a built Keras model (BatchNormalization folded, see above).
        batch_size, min_bytes, strip_debug, codebook_fp16, gap_alphabet,
            block: the `tfdc.export` options the file will be written with
            (they change its size; defaults are `export`'s).
        tflite: the model's plain `.tflite` bytes, if converted already
            (default: converted here, once per set of weights).

    Attributes:
        layers: names of the layers whose kernels were found in the file.
        weights: `{layer name: number of kernel weights}`.
        dense_bytes: float32 size of all the model's parameters
            (`4 * model.count_params()`, the denominator of `tfdc.export`'s
            compression ratio).
        plain_bytes: size of the converted, unpacked `.tflite`.

    Example:

    ```python
    import tfdc
    from tfdc.bytecost import ByteCost
    model = tfdc.models.lenet_300_100()
    cost = ByteCost(model, batch_size=1)
    settings = ({"fc1": 0.92, "fc2": 0.9, "fc3": 0.7}, {"fc1": 4, "fc2": 5, "fc3": 6})
    print(cost.total(*settings), "B")
    tfdc.bytecost.apply_settings(model, *settings)
    print(tfdc.export(model, "m.tflite", batch_size=1).packed_bytes)   # the same
    ```
    """

    def __init__(self, model, *, batch_size=None, min_bytes=64, strip_debug=True,
                 codebook_fp16=False, gap_alphabet=None, block=None, tflite=None):
        from tfdc import tflite_schema
        from tfdc.flatbuf import read_model

        from tfdc.select import check_built
        check_built(model)
        self.options = {"min_bytes": min_bytes, "strip_debug": strip_debug,
                        "codebook_fp16": codebook_fp16}
        if gap_alphabet is not None:
            self.options["gap_alphabet"] = gap_alphabet
        self.block = fmt.DEFAULT_BLOCK if block is None else block
        if block is not None:
            self.options["block"] = block
        self.plain = bytes(tflite) if tflite is not None else _converted(model, batch_size)
        self.plain_bytes = len(self.plain)
        self.dense_bytes = 4 * int(model.count_params())
        buffers = read_model(self.plain).buffers
        tree = tflite_schema.read(self.plain)
        users = {}
        for sg in tree.subgraphs or []:
            for tensor in sg.tensors or []:
                shape = tuple(int(s) for s in (tensor.shape if tensor.shape is not None else []))
                users.setdefault(int(tensor.buffer), []).append((int(tensor.type), shape))
        # float32 constant buffers: index -> (start, length, element bit patterns)
        candidates = {}
        for index, ref in enumerate(buffers):
            if ref.data_start is None or not ref.data_len or ref.data_len % 4:
                continue
            if index not in users or any(t != 0 for t, _ in users[index]):  # 0: FLOAT32
                continue
            candidates[index] = np.frombuffer(self.plain, np.uint32, ref.data_len // 4,
                                              ref.data_start)
        self._buffers = buffers
        self._users = users
        self._kernels = collections.OrderedDict()  # name -> [(value, [buffer index])]
        self.weights = {}
        missing = []
        claimed, sorted_cache = set(), {}
        for name, kernels in compressible_layers(model).items():
            found = []
            for attr, variable in kernels:
                value = np.ascontiguousarray(np.asarray(variable.numpy(), dtype=np.float32))
                indices, scale = _find_buffers(value, candidates, claimed, sorted_cache)
                if indices is None:
                    break
                claimed.update(indices)
                # Where each buffer element's value first occurs in the kernel
                # (scaled as the converter scaled it).
                old = value.view(np.uint32).ravel()
                unique, first, inverse = np.unique(old, return_index=True, return_inverse=True)
                held = _scaled_bits(value, scale)[first]
                order = np.argsort(held)
                sources = [first[order][np.searchsorted(held[order], candidates[i])]
                           for i in indices]
                found.append((value, indices, first, inverse.ravel(), sources, scale))
            if len(found) != len(kernels):
                missing.append(name)
                continue
            self._kernels[name] = found
            self.weights[name] = int(sum(f[0].size for f in found))
        self.layers = list(self._kernels)
        self.missing = missing
        if missing:
            warnings.warn(
                "the converted model does not hold the exact values of the kernels of "
                + ", ".join(map(repr, missing)) + " (a BatchNormalization folded into them by "
                "the converter? tfdc.fold_batchnorm, which tfdc.compress runs, folds one that "
                "directly follows a linear Conv / Dense in the same model, not one after an "
                "activation or after a nested model's output): their size cannot be planned, "
                "they are left as they are", stacklevel=2)
        # Rewritten buffers of the last few settings (a kernel-sized array
        # each); prices and distortions are kept for every setting.
        self._kernel_cache = collections.OrderedDict()
        self._layer_cache = {}
        self._distortion = {}

    # ------------------------------------------------------------------ kernels
    def _check(self, name):
        if name not in self._kernels:
            raise ValueError(f"no plannable layer named {name!r}; layers are: "
                             f"{', '.join(self.layers)}")

    def _new_buffers(self, name, sparsity, bits):
        """`[(buffer index, new raw bytes)]` of layer `name` at the setting."""
        key = (name, float(sparsity or 0.0), None if bits is None else int(bits))
        hit = self._kernel_cache.get(key)
        if hit is not None:
            self._kernel_cache.move_to_end(key)
            return hit
        out = []
        distortion = 0.0
        for value, indices, first, inverse, sources, scale in self._kernels[name]:
            pruned = _prune(value.ravel(), key[1])
            new = _cluster(pruned, key[2])
            distortion += float(np.sum((new.astype(np.float64) - pruned) ** 2))
            new_bits = new.view(np.uint32).ravel()
            # The buffers' elements are mapped by value: equal weights must
            # get equal results (compress_kernel guarantees it).
            if not np.array_equal(new_bits[first][inverse], new_bits):
                raise AssertionError(f"layer {name!r}: compressed values are not a function of "
                                     "the weight values")
            held = _scaled_bits(new, scale)
            for index, src in zip(indices, sources):
                out.append((index, held[src].view(np.uint8)))
        self._kernel_cache[key] = out
        while len(self._kernel_cache) > _KERNELS_KEPT:
            self._kernel_cache.popitem(last=False)
        self._distortion[key] = distortion
        return out

    def distortion(self, name, sparsity=0.0, bits=None):
        """What clustering to `bits` changes in layer `name`'s kernels
        pruned to `sparsity`: the sum of squared differences (0 for
        `bits=None`). The planner reads a layer's loss at a setting off its
        clustering curve at this distortion."""
        self._check(name)
        key = (name, float(sparsity or 0.0), None if bits is None else int(bits))
        if key not in self._distortion:
            self._new_buffers(name, sparsity, bits)
        return self._distortion[key]

    # ------------------------------------------------------------------ costs
    def layer(self, name, sparsity=0.0, bits=None):
        """Bytes of layer `name`'s records at `sparsity` and `bits`: coded
        payloads plus descriptors, code tables and codebook (before the meta
        stream's DEFLATE); a buffer the packer would leave inline counts its
        deflated size. Additive over layers (`total` is the exact file)."""
        from tfdc.pack import _inline_cost, _plan_record, plan_bytes
        self._check(name)
        key = (name, float(sparsity or 0.0), None if bits is None else int(bits))
        if key in self._layer_cache:
            return self._layer_cache[key]
        total = 0
        for index, raw in self._new_buffers(name, sparsity, bits):
            if len(raw) < max(1, self.options["min_bytes"]):
                total += _inline_cost(raw)
                continue
            shape = self._users[index][0][1]
            dtype, tbits, kind = fmt.buffer_type([t for t, _ in self._users[index]], len(raw))
            plan = _plan_record(raw, tbits, kind, shape, self.block,
                                self.options.get("gap_alphabet"),
                                self.options["codebook_fp16"])
            if plan is None:
                total += _inline_cost(raw)
                continue
            total += plan_bytes(plan, fmt.varint_bytes(index))
        self._layer_cache[key] = total
        return total

    def tflite(self, sparsity=None, bits=None):
        """The plain `.tflite` bytes of the model at the settings (what
        `tfdc.exporter.convert` gives after `apply_settings`)."""
        data = bytearray(self.plain)
        for name in self.layers:
            s = _setting(sparsity, name, 0.0) or 0.0
            b = _setting(bits, name, None)
            if not s and b is None:
                continue
            for index, raw in self._new_buffers(name, s, b):
                start = self._buffers[index].data_start
                data[start:start + len(raw)] = raw.tobytes()
        return bytes(data)

    def pack(self, sparsity=None, bits=None):
        """`(file bytes, tfdc.format.PackInfo or None)`: the file `tfdc.export`
        writes at the settings (the plain model itself when packing would not
        make it smaller, as `export` does; then no PackInfo)."""
        from tfdc.pack import pack_tflite
        self._check_settings(sparsity, bits)
        plain = self.tflite(sparsity, bits)
        packed, info = pack_tflite(plain, **self.options)
        if len(packed) >= len(plain):
            return plain, None
        return packed, info

    def total(self, sparsity=None, bits=None):
        """Exact bytes of the exported file at the settings.

        Args:
            sparsity: `{layer name: sparsity}` (others unpruned) or one float.
            bits: `{layer name: bits}` (others unclustered) or one int.
        """
        return len(self.pack(sparsity, bits)[0])

    def _check_settings(self, sparsity, bits):
        for what, settings in (("sparsity", sparsity), ("bits", bits)):
            if isinstance(settings, dict):
                unknown = sorted(set(settings) - set(self.layers))
                if unknown:
                    raise ValueError(f"{what}: no plannable layer named "
                                     f"{', '.join(map(repr, unknown))}; layers are: "
                                     f"{', '.join(self.layers)}")


def _find_buffers(value, candidates, claimed, sorted_cache=None):
    """`(indices, scale)`: the float32 buffers that together hold the
    elements of kernel `value` (one buffer for most kinds; a fused LSTM's
    gates are several) and the factor the converter multiplied them by
    (`folded_scale`: 1.0 for the exact values), or `(None, None)`.
    `sorted_cache`: a dict the caller keeps across kernels, so that each
    buffer is sorted once, not once per kernel of its size."""
    bits = value.view(np.uint32).ravel()
    ordered = np.sort(bits)
    cache = {} if sorted_cache is None else sorted_cache
    for index, elems in candidates.items():
        if index not in claimed and elems.size == bits.size:
            if index not in cache:
                cache[index] = np.sort(elems)
            if np.array_equal(cache[index], ordered):
                return [index], 1.0
    # Several buffers: every element of each is a value of the kernel. A
    # pruned kernel holds 0, so the graph's all-zero constants (a recurrent
    # layer's initial state) qualify too: tried without them, then as equal
    # slices (a recurrent kernel split into its gates).
    unique = np.unique(bits)
    parts = [index for index, elems in candidates.items()
             if index not in claimed and elems.size < bits.size
             and np.isin(elems, unique, assume_unique=False).all()]
    sizes = sorted({candidates[i].size for i in parts})
    for group in ([parts, [i for i in parts if candidates[i].any()]]
                  + [[i for i in parts if candidates[i].size == n] for n in sizes]):
        if group and sum(candidates[i].size for i in group) == bits.size and np.array_equal(
                np.sort(np.concatenate([candidates[i] for i in group])), ordered):
            return group, 1.0
    for index, elems in candidates.items():
        if index not in claimed and elems.size == bits.size:
            scale = folded_scale(value, elems)
            if scale is not None:
                return [index], scale
    return None, None


def folded_scale(kernel, buffer):
    """The factor `s` for which constant `buffer` holds exactly the values
    `float32(k * s)` of `kernel`'s elements `k` (as a multiset, in any
    order), 1.0 for the kernel's own values, or None.

    The TFLite converter folds a scalar multiply before a Dense or Conv (a
    `Rescaling(1 / 255)`, a Lambda's `x / 127.5 - 1`: a division becomes a
    product by the reciprocal) into its kernel, computing exactly that
    product; zeros stay zeros and equal weights equal values, so pruning and
    weight sharing survive and the kernel's packed size can still be
    planned. `buffer`: float32 values or their uint32 bit patterns."""
    k = np.asarray(kernel, np.float32).ravel()
    b = np.asarray(buffer).ravel().view(np.float32)
    if k.size != b.size or not k.size:
        return None
    target = np.sort(b.view(np.uint32))
    if np.array_equal(np.sort(k.view(np.uint32)), target):
        return 1.0
    k_max, b_max = float(np.max(np.abs(k))), float(np.max(np.abs(b)))
    if not (np.isfinite(k_max) and np.isfinite(b_max) and k_max > 0 and b_max > 0):
        return None
    estimate = np.float32(b_max / k_max)  # within an ulp or two of s
    for sign in (1, -1):
        s = np.float32(sign * estimate)
        for _ in range(2):
            s = np.nextafter(s, np.float32(0))
        for _ in range(5):
            scaled = (k * s).view(np.uint32)
            if np.array_equal(np.sort(scaled), target):
                return float(s)
            s = np.nextafter(s, np.float32(sign * np.inf))
    return None


def _scaled_bits(value, scale):
    """The uint32 bit patterns of `float32(value * scale)`, as the converter
    computes a folded scale (the value's own for 1.0)."""
    v = np.asarray(value, np.float32).ravel()
    if scale != 1.0:
        v = v * np.float32(scale)
    return v.view(np.uint32)
