"""Export a compressed Keras model as a tfdc-packed `.tflite` file.

`export(model, path)` is the last step of Deep Compression: it removes the
training constraints of `tfdc.GradualPruning` / `tfdc.ClusteredFineTuning`,
converts the model with `tf.lite.TFLiteConverter` (float32 weights and no
optimisations, so every weight keeps its exact trained value and the
codebooks survive), packs the weight buffers (`tfdc.pack.pack_tflite`:
sparse relative indices, shared-weight codebooks, canonical Huffman coding)
and writes the file atomically.

Why no converter optimisations: dynamic-range quantization rescales every
output channel separately, which turns a 32-entry codebook into hundreds of
distinct int8 values, and the converter's BatchNormalization folding
multiplies each output channel by its own factor. Both destroy the weight
sharing that the packer exploits. `export` warns when a kernel reaches the
`.tflite` file with different values than the Keras model holds. With a
`representative_dataset` the export is full-integer (int8 activations, for
NPUs and NNAPI) with one weight scale per tensor, which keeps the codebooks
(`tfdc.quantize`).
"""

import os
import tempfile
import warnings

import numpy as np

from tfdc.quantize import quantize_codebooks_int8
from tfdc.runtime import read_model_bytes

__all__ = ["export", "export_tflite", "convert", "write_atomically",
           "quantize_codebooks_int8", "altered_kernels"]


def convert(model, *, signatures=None, representative_dataset=None, configure=None,
            batch_size=None):
    """Convert a Keras model or `tf.Module` to plain `.tflite` bytes.

    Args:
        model: a `keras.Model`, or a `tf.Module` (then `signatures` is needed).
        signatures: optional list of `tf.function`s with an `input_signature`
            (or concrete functions) to export as the model's signatures,
            e.g. `[module.encode, module.decode]`; each keeps its function
            name as signature key.
        representative_dataset: if given, the converter does full-integer
            quantization with it: int8 activations, int32 biases and int8
            weights with one scale per tensor, so each K-value codebook stays
            at most K int8 codes (`tfdc.quantize`; for the converter's
            per-channel scales pass `configure=lambda c:
            configure_full_integer(c, data, per_channel=True)`, with
            `configure_full_integer` from `tfdc.quantize`).
        configure: optional callable receiving the `TFLiteConverter` before
            `convert()`, for any other converter setting.
        batch_size: fix the batch dimension of a Keras model's inputs (e.g.
            1 for on-device inference). `None` keeps it dynamic, which makes
            the converter add shape-computing ops (Shape, StridedSlice, Pack)
            around every Flatten/Reshape.

    Returns:
        The `.tflite` flatbuffer as bytes.
    """
    import tensorflow as tf

    if batch_size is not None:
        if signatures:
            raise ValueError("give either `batch_size` or `signatures`, not both")
        signatures = [_fixed_batch_function(model, batch_size)]
        model = None  # weights are captured as constants, not as variables
    if signatures:
        functions = []
        for fn in signatures:
            if hasattr(fn, "get_concrete_function"):
                fn = fn.get_concrete_function()
            functions.append(fn)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, model)
    elif _is_keras_model(model):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    elif isinstance(model, tf.Module):
        raise ValueError("a tf.Module needs `signatures=[module.fn, ...]` (tf.functions with an "
                         "input_signature) to be exported")
    else:
        raise TypeError(f"cannot export a {type(model).__name__}: expected a keras.Model or a "
                        "tf.Module (use tfdc.export_tflite for an existing .tflite file)")
    if representative_dataset is not None:
        from tfdc.quantize import configure_full_integer
        configure_full_integer(converter, representative_dataset)
    if configure is not None:
        configure(converter)
    return bytes(converter.convert())


def _fixed_batch_function(model, batch_size):
    """A `tf.function` of a Keras model with its batch dimension fixed."""
    import tensorflow as tf

    if not _is_keras_model(model):
        raise ValueError("`batch_size` needs a keras.Model")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise ValueError(f"model {model.name!r} has no defined inputs (a subclassed model?): "
                         "build it with keras.Input or pass `signatures=`")
    specs = [tf.TensorSpec([int(batch_size)] + list(x.shape[1:]), x.dtype,
                           name=x.name.split(":")[0]) for x in inputs]

    @tf.function(input_signature=specs)
    def serving_default(*args):
        return model(list(args) if len(args) > 1 else args[0], training=False)

    return serving_default


def _is_keras_model(model):
    import keras
    return isinstance(model, keras.Model)


def write_atomically(path, data):
    """Write `data` to `path` via a temporary file in the same directory and
    `os.replace`: readers see the old file or the new one, never a partial
    one, and a failure leaves the old file (or no file) in place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _pack_options(codebook_fp16, gap_alphabet, select, block, min_bytes, strip_debug):
    options = {"codebook_fp16": codebook_fp16, "select": select, "min_bytes": min_bytes,
               "strip_debug": strip_debug}
    if gap_alphabet is not None:
        options["gap_alphabet"] = gap_alphabet
    if block is not None:
        options["block"] = block
    return options


def export_tflite(tflite, path, *, weights="float32", codebook_fp16=False, gap_alphabet=None,
                  select=None, block=None, min_bytes=64, strip_debug=True, layer_names=None,
                  dense_bytes=None):
    """Pack an existing plain `.tflite` model (from any converter) and write it.

    Args:
        tflite: the `.tflite` bytes, or a path to the file.
        path: where to write the packed file (atomically).
        weights: `"float32"` (as converted) or `"int8"` (clustered weights
            stored as int8 codes, see `quantize_codebooks_int8`).
        codebook_fp16, gap_alphabet, select, block, min_bytes, strip_debug:
            packing options, see `export`.
        layer_names: optional layer names used to label the report's rows.
        dense_bytes: the dense float32 size of the model's weights, for the
            report's ratio (default: the packed tensors' raw size plus the
            buffers left in the flatbuffer, as the packer reports it).

    Returns:
        The `tfdc.ExportReport` of the written file. The file is never
        larger than the input: when packing does not make it smaller (a
        model with nothing the records code better, e.g. random float
        weights), the input is written unchanged, a warning says so, and the
        report has no packed layers and no section (`report.section_bytes
        == 0`, `report.packed_bytes == report.plain_bytes`).

    Example:

    ```python
    report = tfdc.export_tflite("model_int8.tflite", "model_int8.packed.tflite")
    print(f"{report.plain_bytes:,} B -> {report.packed_bytes:,} B")
    interpreter = tfdc.load_interpreter("model_int8.packed.tflite")
    ```
    """
    from tfdc.pack import pack_tflite
    from tfdc.report import ExportReport
    from tfdc.unpack import has_section_entry

    plain = original = read_model_bytes(tflite)
    if has_section_entry(plain):
        raise ValueError("the input is already a tfdc-packed model")
    if len(plain) < 8 or plain[4:8] != b"TFL3":
        raise ValueError("the input is not a .tflite flatbuffer (no TFL3 identifier)")
    if weights not in ("float32", "int8"):
        raise ValueError(f"weights must be 'float32' or 'int8', got {weights!r}")
    if weights == "int8":
        plain, _ = quantize_codebooks_int8(plain, min_bytes=min_bytes)
    packed, info = pack_tflite(plain, **_pack_options(codebook_fp16, gap_alphabet, select,
                                                       block, min_bytes, strip_debug))
    if len(packed) >= len(original):
        # Never a bigger file: a plain .tflite that packing does not shrink
        # is worth more as it is (every runtime loads it, nothing to decode).
        write_atomically(path, original)
        warnings.warn(f"packing gives {len(packed):,} B, not smaller than the input's "
                      f"{len(original):,} B: wrote the input unchanged", stacklevel=2)
        return ExportReport([], packed_bytes=len(original), plain_bytes=len(original),
                            dense_bytes=dense_bytes, flatbuffer_bytes=len(original),
                            section_bytes=0, decoded_bytes=len(original),
                            path=os.fspath(path))
    write_atomically(path, packed)
    return ExportReport.from_pack_info(info, plain_bytes=len(plain), path=os.fspath(path),
                                       model_bytes=packed,
                                       layer_names=layer_names, dense_bytes=dense_bytes)


def export(model, path, *, strip=True, weights="float32", codebook_fp16=False, gap_alphabet=None,
           select=None, block=None, min_bytes=64, strip_debug=True, batch_size=None,
           signatures=None, representative_dataset=None, configure=None, check_kernels=True):
    """Convert, pack and write a compressed model as a packed `.tflite` file.

    Args:
        model: a `keras.Model` (typically trained with `tfdc.GradualPruning`
            and `tfdc.ClusteredFineTuning`), or a `tf.Module` with
            `signatures`.
        path: output file; written atomically (a temporary file in the same
            directory, then `os.replace`), so an error never leaves a partial
            file and never damages an existing one.
        strip: remove tfdc's training constraints from the model's variables
            first (the model is modified in place; training it afterwards no
            longer keeps pruned weights at zero).
        weights: `"float32"` (default: every weight keeps its exact value) or
            `"int8"`: each clustered kernel (at most 256 distinct values) is
            stored as int8 codes with one symmetric scale per tensor
            (`max|c| / 127`) plus a `DEQUANTIZE` op, so the codebook stays a
            codebook (per-channel dynamic-range quantization would multiply
            its distinct values). Weights become `code * scale` (lossy at
            int8 resolution); activations stay float32.
        codebook_fp16: store float32 codebooks as float16 (lossy unless the
            values are representable; off by default).
        gap_alphabet: `G`, the number of relative-index symbols for sparse
            tensors (`2**bits`); `None` lets the packer choose per tensor.
        select: which buffers to pack (see `tfdc.pack.pack_tflite`); `None`
            packs every buffer of at least `min_bytes` bytes.
        block: symbols per independently decodable segment (`None`: packer
            default, 4096).
        min_bytes: smaller buffers are left in the flatbuffer.
        strip_debug: drop what no runtime reads (names of activation tensors,
            the converter's description and `CONVERSION_METADATA`); weight
            tensor names are kept for `tfdc inspect`.
        batch_size: fix the input batch dimension (1 for on-device
            inference saves the converter's shape ops, ~0.8 KB on LeNet);
            `None` keeps it dynamic (see `tfdc.exporter.convert`).
        signatures: for several signatures or a `tf.Module`: a list of
            `tf.function`s with input signatures (see `tfdc.exporter.convert`).
        representative_dataset: a callable yielding lists of model inputs
            (a few hundred real samples): full-integer export for NPUs and
            NNAPI, int8 activations and int8 weights with one scale per
            tensor, which keeps every codebook (see `tfdc.quantize`).
        configure: callable that receives the `TFLiteConverter` to tweak it.
        check_kernels: warn when a Keras kernel does not reach the `.tflite`
            file with its exact values (e.g. a BatchNormalization folded into
            it by the converter), which loses its weight sharing; with a
            `representative_dataset`, when a clustered kernel gets more int8
            codes than it has values.

    Returns:
        `tfdc.ExportReport`: per-layer sparsity, bits and compression rates,
        file sizes (`print(report)` shows the table).

    Example:

    ```python
    import tfdc
    from tfdc.datasets import load_mnist
    from tfdc.models import lenet_300_100

    (x, y), _ = load_mnist()
    model = lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, callbacks=[tfdc.GradualPruning(0.9)])
    model.fit(x, y, epochs=1, callbacks=[tfdc.ClusteredFineTuning(bits=5)])
    report = tfdc.export(model, "lenet.tflite")
    print(report)
    interpreter = tfdc.load_interpreter("lenet.tflite")
    ```
    """
    if strip:
        from tfdc.constraints import strip as strip_model
        strip_model(model)
    plain = convert(model, signatures=signatures, representative_dataset=representative_dataset,
                    configure=configure, batch_size=batch_size)
    layer_names = dense_bytes = None
    if _is_keras_model(model):
        layer_names = [layer.name for layer in _layers(model)]
        dense_bytes = 4 * int(model.count_params())
        if check_kernels and representative_dataset is None:
            _warn_altered_kernels(model, plain, min_bytes)
        elif check_kernels:
            from tfdc.quantize import warn_extra_codes
            warn_extra_codes(model, plain, min_bytes, stacklevel=3)
    return export_tflite(plain, path, weights=weights, codebook_fp16=codebook_fp16,
                         gap_alphabet=gap_alphabet,
                         select=select, block=block, min_bytes=min_bytes,
                         strip_debug=strip_debug, layer_names=layer_names,
                         dense_bytes=dense_bytes)


def _layers(model):
    from tfdc.select import iter_layers
    return list(iter_layers(model))


def altered_kernels(model, tflite, min_bytes=64):
    """Names of the Keras kernels (`layer/attr`) whose exact multiset of
    values is not found in any float32 constant of the `.tflite` model."""
    from tfdc.layers import kernel_variables
    from tfdc.runtime import interpreter_class

    interpreter = interpreter_class()(model_content=tflite)
    constants = {}
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.float32:
            continue
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:  # not a constant (no data before allocation)
            continue
        if value is None or value.size == 0:
            continue
        # Compare bit patterns (a float sort does not order -0.0 and 0.0).
        constants.setdefault(value.size, []).append(
            np.sort(np.ascontiguousarray(value).view(np.uint32), axis=None))
    altered = []
    for layer in _layers(model):
        for attr, variable in kernel_variables(layer):
            if np.prod(variable.shape) * 4 < min_bytes:
                continue
            kernel = np.ascontiguousarray(np.asarray(variable.numpy(), dtype=np.float32))
            kernel = np.sort(kernel.view(np.uint32), axis=None)
            if not any(np.array_equal(kernel, c) for c in constants.get(kernel.size, [])):
                altered.append(f"{layer.name}/{attr}")
    return altered


def _warn_altered_kernels(model, tflite, min_bytes):
    try:
        altered = altered_kernels(model, tflite, min_bytes)
    except Exception as e:  # the check is advisory: never fail an export on it
        warnings.warn(f"tfdc.export could not check the converted kernels: {e}", stacklevel=3)
        return
    if altered:
        warnings.warn(
            "the TFLite converter changed the values of " + ", ".join(altered) +
            " (typically a BatchNormalization folded into the kernel, or a weight computed "
            "from several variables); their pruning / weight sharing is partly lost. Fold "
            "BatchNormalization into the kernels with tfdc.fold_batchnorm before pruning and "
            "clustering.", stacklevel=3)
