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

import contextlib
import contextvars
import os
import stat
import tempfile
import threading
import warnings

import numpy as np

from tfdc.errors import listed
from tfdc.layers import has_graph
from tfdc.quantize import quantize_codebooks_int8
from tfdc.runtime import check_tflite_header, read_model_bytes
from tfdc.values import clustered_values, to_numpy

__all__ = ["export", "export_tflite", "convert", "check_writable", "write_atomically",
           "quantize_codebooks_int8", "altered_kernels", "kernel_buffers"]


def convert(model, *, signatures=None, representative_dataset=None, configure=None,
            batch_size=None):
    """Convert a Keras model or `tf.Module` to plain `.tflite` bytes.

    A Keras model is saved as a SavedModel with one `serving_default`
    signature (its inputs named as the Keras inputs) and converted from it,
    so every export, with or without a fixed batch, keeps its signature. A
    `mixed_float16` / `mixed_bfloat16` model is converted with float32
    compute (its variables are float32 already; TFLite has no float16
    kernels for most ops). Inputs and outputs are listed in Keras's order.
    Known converter failures raise a one-line `ValueError` that says what to
    do; other converter errors pass through unchanged, with the converter's
    log.

    Args:
        model: a `keras.Model`, or a `tf.Module` (then `signatures` is needed).
        signatures: optional list of `tf.function`s with an `input_signature`
            (or concrete functions) to export as the model's signatures,
            e.g. `[module.encode, module.decode]`; each keeps its function
            name as signature key (one alone too). Functions of a Keras
            model call it (`lambda x: {"probs": model(x)}` as a tf.function).
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
            around every Flatten/Reshape; recurrent layers (LSTM, GRU,
            SimpleRNN) convert only with a fixed batch.

    Returns:
        The `.tflite` flatbuffer as bytes.
    """
    import tensorflow as tf

    _refuse_distiller(model)
    if configure is not None and not callable(configure):  # it failed after tracing
        raise TypeError("configure must be a function that takes the TFLiteConverter, got "
                        f"{type(configure).__name__}")
    if batch_size is not None:
        if signatures:
            raise ValueError("give either `batch_size` or `signatures`, not both")
        if not _is_keras_model(model):
            raise ValueError("`batch_size` needs a keras.Model")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        batch_size = int(batch_size)
    if signatures:
        named = _named_signatures(signatures)
        with tempfile.TemporaryDirectory(prefix="tfdc-export-") as saved:
            _save_signatures(model, named, saved)
            converter = tf.lite.TFLiteConverter.from_saved_model(
                saved, signature_keys=list(named))
            _set_options(converter, representative_dataset, configure)
            plain = _run_converter(converter, model, batch_size)
        return _checked_full_integer(plain, representative_dataset)
    if not _is_keras_model(model):
        if isinstance(model, tf.Module):
            raise ValueError("a tf.Module needs `signatures=[module.fn, ...]` (tf.functions with "
                             "an input_signature) to be exported")
        raise TypeError(f"cannot export a {type(model).__name__}: expected a keras.Model or a "
                        "tf.Module (use tfdc.export_tflite for an existing .tflite file)")
    specs = _input_specs(model, batch_size)
    if representative_dataset is not None:
        check_full_integer(model)
        _warn_raw_calibration(model, specs, _check_representative(representative_dataset, specs))
        representative_dataset = _calibration_samples(representative_dataset, specs)
    outputs = _output_names(model)
    with _float32_compute(model), tempfile.TemporaryDirectory(prefix="tfdc-export-") as saved:
        _save_serving(model, specs, outputs, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        _set_options(converter, representative_dataset, configure)
        plain = _run_converter(converter, model, batch_size)
    plain = _keras_io_order(plain, [spec.name for spec in specs], outputs)
    return _checked_full_integer(plain, representative_dataset)


def _checked_full_integer(plain, representative_dataset):
    if representative_dataset is not None:
        from tfdc.quantize import warn_float_ops
        warn_float_ops(plain, stacklevel=3)
    return plain


# Fewer calibration examples than this draw a warning (the converter's
# ranges come from them alone; a few hundred is the usual advice).
MIN_CALIBRATION_EXAMPLES = 16


def _check_representative(representative_dataset, specs, what="representative_dataset"):
    """Every calibration sample against the model's inputs, before the
    converter sees any: the converter's own error for a wrong shape is a
    RuntimeError about resizing tensor 0, raised deep in calibration; a
    wrong dict key was a bare KeyError; an all-NaN set silently gave a float
    model, and one inf crashed the process (a segmentation fault). (It calls
    `representative_dataset()` twice more than the converter does, as a
    generator function allows, the second time to see that it starts
    again.) Returns each float input's `(smallest
    value, largest magnitude)` over the samples, whatever their dtype (None
    for other inputs)."""
    from tfdc.quantize import require_callable
    require_callable(representative_dataset)
    count, examples, ranges = 0, 0, [None] * len(specs)
    for count, sample in enumerate(representative_dataset(), 1):
        for i, (spec, array) in enumerate(zip(specs, _sample_arrays(sample, specs, what))):
            array = np.asarray(array)
            _check_sample(array, spec, count - 1, what)  # from 0, as examples are
            if i == 0:
                examples += int(array.shape[0]) if array.ndim else 1
            # Integer samples for a float input too: uint8 0-255 frames for a
            # model trained on [0, 1] gave 84 % error without a word.
            if array.dtype.kind in "fiub" and array.size and spec.dtype.is_floating:
                values = array if array.dtype.kind == "f" else array.astype(np.float64)
                low, peak = ranges[i] or (0.0, 0.0)
                ranges[i] = (min(low, float(np.min(values))),
                             max(peak, float(np.max(np.abs(values)))))
    if not count:
        raise ValueError(f"{what} yields no sample: give it a few hundred real inputs")
    if examples < MIN_CALIBRATION_EXAMPLES:  # one image's ranges, for every input to come
        warnings.warn(f"{what}: {examples} calibration example{'s' * (examples != 1)}; the "
                      "int8 activation ranges are calibrated from them alone, and inputs "
                      "unlike them saturate: give a few hundred typical ones", stacklevel=4)
    zero = [spec.name for spec, span in zip(specs, ranges) if span == (0.0, 0.0)]
    if zero:  # np.zeros as placeholder data: every range calibrated to nothing
        warnings.warn(f"{what}: every calibration sample for input"
                      f"{'s' if len(zero) > 1 else ''} {', '.join(map(repr, zero))} is all "
                      "zeros; the int8 activation ranges are calibrated from them, so the "
                      "file cannot represent real inputs: give a few hundred real ones",
                      stacklevel=4)
    # The converter calls it again: a callable returning one iterator made
    # beforehand (`lambda: samples`) is empty by then, and the converter
    # silently wrote a float model.
    again = representative_dataset()
    if again is not None and next(iter(again), None) is None:
        raise ValueError(f"{what} yielded {count:,} samples once and none when called again: "
                         "it must return a new iterator on each call (a function that makes "
                         "one, e.g. lambda: (x[i:i + 1] for i in range(200)), not "
                         "lambda: an_iterator_made_before)")
    return ranges


def check_calibration(model, representative_dataset, what="representative_dataset",
                      reference=None):
    """`convert`'s checks of a Keras model's calibration samples (every
    sample's arrays, shapes and finiteness), for a caller that converts
    later (`tfdc.compress`, before its minutes of training): a ValueError
    or TypeError saying what is wrong. Given `reference` (inputs as the
    model takes them, e.g. a training batch), also a warning for an input
    whose samples are on another scale: at least 10x larger or smaller in
    their largest magnitude (0-255 pixels for a model trained on [0, 1]),
    or negative where the training data never is ([-1, 1] for [0, 1]).
    Every activation range is calibrated from them, so such a file is
    quantized to ranges its real inputs never fill. Returns the names of
    the inputs warned of (none without `reference`)."""
    specs = _input_specs(model, None)
    ranges = _check_representative(representative_dataset, specs, what)
    if reference is None:
        return []
    found = []
    for spec, array, span in zip(specs, _sample_arrays(reference, specs, "reference"), ranges):
        mismatch = scale_mismatch(span, array)
        if mismatch:
            found.append(spec.name)
            warnings.warn(
                f"{what}: the calibration samples for input {spec.name!r} {mismatch}: are they "
                "preprocessed as the training data is (e.g. scaled to [0, 1])? Every int8 "
                "activation range is calibrated from them.", stacklevel=3)
    return found


# Calibration samples this large, for a model with no Rescaling or
# Normalization layer of its own, look like 0-255 pixels given to a model
# trained on [0, 1] (a 91 % error int8 file, in silence).
_RAW_PIXEL_MAGNITUDE = 100.0
_SCALE_CHECKED = contextvars.ContextVar("tfdc_calibration_scale_checked", default=False)


@contextlib.contextmanager
def calibration_scale_checked():
    """Within it, `convert` does not guess the calibration samples' scale
    from their magnitude: the caller compared them with the training data
    (`check_calibration`, as `tfdc.compress` does), which tells better (a
    model trained on 0-255 pixels is calibrated on them rightly)."""
    token = _SCALE_CHECKED.set(True)
    try:
        yield
    finally:
        _SCALE_CHECKED.reset(token)


def _warn_raw_calibration(model, specs, ranges):
    """`convert`'s warning for calibration samples of magnitude 100 or more
    where the model has no layer of its own that rescales its inputs
    (`_RAW_PIXEL_MAGNITUDE`): with no training data to compare with (as
    `check_calibration` has), the magnitude is the sign. Also the reverse
    (`_warn_prescaled_calibration`)."""
    import keras

    from tfdc.select import iter_layers
    if _SCALE_CHECKED.get():
        return
    _warn_prescaled_calibration(model, specs, ranges)
    if any(isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
           for layer in iter_layers(model)):
        return
    for spec, span in zip(specs, ranges):
        if span is not None and span[1] >= _RAW_PIXEL_MAGNITUDE:
            warnings.warn(
                f"representative_dataset: the calibration samples for input {spec.name!r} "
                f"reach magnitude {span[1]:.4g}, and the model has no Rescaling or "
                "Normalization layer: if it was trained on scaled inputs (e.g. x / 255), "
                "give the samples that scaling; every int8 activation range is calibrated "
                "from them (0-255 pixels for a [0, 1] model gave 91 % error).", stacklevel=4)


def _warn_prescaled_calibration(model, specs, ranges):
    """The reverse mistake: an input the model divides itself (a Rescaling of
    1/255 on it) calibrated with samples already scaled to [0, 1]. The input's
    int8 range is calibrated to [0, 1], so every real 0-255 frame saturates
    it, in silence (91 % error on MNIST, where 0-255 samples give 12 %)."""
    import keras

    if not has_graph(model):
        return
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Rescaling):
            continue
        try:
            source = layer.input
        except (AttributeError, ValueError):  # called more than once
            continue
        scale = float(np.max(np.abs(np.asarray(layer.scale, dtype=np.float64))))
        for spec, tensor, span in zip(specs, model.inputs, ranges):
            if (source is tensor and span is not None and 0 < span[1] <= _PRESCALED_MAGNITUDE
                    and scale * _RAW_PIXEL_MAGNITUDE <= 1.0):
                warnings.warn(
                    f"representative_dataset: the model rescales input {spec.name!r} by "
                    f"{scale:.4g} itself (layer {layer.name!r}), and its calibration samples "
                    f"reach magnitude only {span[1]:.4g}: they look scaled already. Give them "
                    "as the model takes them (e.g. 0-255 pixels); every int8 activation "
                    "range is calibrated from them.", stacklevel=5)


# Samples no larger than this, for an input the model itself divides by 100
# or more, look like inputs already scaled to [0, 1] (or [-1, 1]).
_PRESCALED_MAGNITUDE = 2.0


def scale_mismatch(span, reference):
    """How inputs spanning `span` (their `(min, max |value|)`, or None) are on
    another scale than the `reference` array (the training data): at least
    10x larger or smaller in magnitude, or negative where it never is
    ("reach magnitude 255, the training data 1"); None if they are not."""
    array = np.asarray(reference)
    # Integer training data counts too: uint8 pixels that the model rescales
    # itself, against samples already scaled to [0, 1].
    if array.dtype.kind not in "fiu" or span is None or not array.size:
        return None
    array = array.astype(np.float64)
    low, peak = span
    usual, floor = float(np.max(np.abs(array))), float(np.min(array))
    if usual > 0 and peak > 0 and max(peak / usual, usual / peak) >= 10:
        return f"reach magnitude {peak:.4g}, the training data {usual:.4g}"
    if floor >= 0 and low < -0.1 * usual:  # [-1, 1] for a model trained on [0, 1]
        return f"go down to {low:.4g}, where the training data is never negative"
    return None


def span_of(array):
    """`(min, max |value|)` of a numeric array, for `scale_mismatch`; None
    for another kind or an empty one."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiu" or not array.size:
        return None
    return float(np.min(array)), float(np.max(np.abs(array.astype(np.float64))))


def _sample_arrays(sample, specs, what="representative_dataset"):
    """A calibration sample's arrays in the order of `specs`: a dict keyed
    by exactly the input names (a one-input model also takes a dict of one
    array, whatever its key), a list or tuple, or one bare array."""
    names = [spec.name for spec in specs]
    if isinstance(sample, dict):
        if set(sample) == set(names):
            return [sample[name] for name in names]
        if len(sample) == 1 == len(names):
            return list(sample.values())
        raise ValueError(f"{what}: a sample is a dict keyed "
                         f"{sorted(map(str, sample))}; the model's inputs are named {names}")
    arrays = list(sample) if isinstance(sample, (list, tuple)) else [sample]
    if len(arrays) != len(specs):
        raise ValueError(f"{what}: a sample holds {len(arrays)} arrays, the "
                         f"model has {len(specs)} input(s)")
    return arrays


def _check_sample(array, spec, number, what):
    shape, expected = array.shape, tuple(spec.shape)
    if len(shape) != len(expected) or any(
            e is not None and e != d for e, d in zip(expected[1:], shape[1:])):
        model_shape = tuple(["batch"] + list(expected[1:]))
        raise ValueError(f"{what}: a sample for input {spec.name!r} has shape "
                         f"{shape}; the model takes {model_shape}")
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: sample {number} for input {spec.name!r} "
                         "holds NaN or inf: the activation ranges calibrated from it would be "
                         "meaningless (all NaN gave a float model, an inf crashes TensorFlow's "
                         "converter); give real, finite inputs")
    if spec.dtype.is_integer and array.size and array.dtype.kind in "fiub":
        # Cast to the input's type as the converter takes them: x / 255 for
        # a model of uint8 pixels became zeros, and calibrated a 74 % error
        # file without a word.
        info = np.iinfo(spec.dtype.as_numpy_dtype)
        low, high = np.min(array), np.max(array)
        fraction = array.dtype.kind == "f" and not np.array_equal(array, np.floor(array))
        if fraction or low < info.min or high > info.max:
            raise ValueError(
                f"{what}: sample {number} for input {spec.name!r}, which the model takes as "
                f"{spec.dtype.name}, holds values "
                + (f"with a fraction, in [{low:.4g}, {high:.4g}] (x / 255 for 0-255 pixels?)"
                   if fraction else f"out of its range, in [{low:.4g}, {high:.4g}]")
                + f": cast to {spec.dtype.name} they are not what it calibrates on; give the "
                "inputs as the model takes them")


def check_full_integer(model):
    """A ValueError for a Keras model whose full-integer conversion would
    crash the Python process: TensorFlow's converter dies with a
    segmentation fault calibrating a recurrent layer's loop (LSTM, GRU,
    SimpleRNN, an RNN of cells, in a Bidirectional too; TensorFlow issue
    41305, still so in 2.21). The same layers with `unroll=True` (a
    fixed number of time steps) convert."""
    import keras

    from tfdc.select import iter_layers
    layers = list(iter_layers(model))
    wrapper = {id(inner): layer.name for layer in layers  # a Bidirectional by its own name
               if isinstance(layer, keras.layers.Bidirectional)
               for inner in (layer.forward_layer, layer.backward_layer)}
    looped = []
    for layer in layers:
        name = wrapper.get(id(layer), layer.name)
        if isinstance(layer, keras.layers.RNN) and not layer.unroll and name not in looped:
            looped.append(name)
    if looped:
        raise ValueError(f"full-integer export of the recurrent layer"
                         f"{'s' if len(looped) > 1 else ''} {', '.join(looped)}: TensorFlow's "
                         "converter crashes (a segmentation fault) calibrating a recurrent "
                         f"loop; build {'them' if len(looped) > 1 else 'it'} with unroll=True "
                         "(a fixed number of time steps), or export in float (no "
                         "representative_dataset)")


def _calibration_samples(representative_dataset, specs):
    """The user's calibration samples as the converter takes them: each
    array cast to its input's dtype (float64 images, int64 token ids, uint8
    pixels for a float input all failed in calibration with "Cannot set
    tensor"), a batch of several examples split into the fixed batch of the
    exported model, a bare array made a list, and for several inputs a dict
    keyed by input name (the converter feeds a list in the SavedModel
    signature's sorted-name order, not in Keras's input order)."""
    def samples():
        for sample in representative_dataset():
            cast = [np.asarray(a).astype(spec.dtype.as_numpy_dtype, copy=False)
                    for spec, a in zip(specs, _sample_arrays(sample, specs))]
            batch = specs[0].shape[0]
            n = len(cast[0]) if cast and cast[0].ndim else 1
            step = batch if batch is not None and batch < n and n % batch == 0 else n
            for start in range(0, n, step):
                part = [a[start:start + step] for a in cast]
                yield ({spec.name: a for spec, a in zip(specs, part)} if len(specs) > 1
                       else part)
    return samples


def _set_options(converter, representative_dataset, configure):
    if representative_dataset is not None:
        from tfdc.quantize import configure_full_integer
        configure_full_integer(converter, representative_dataset)
    if configure is not None:
        configure(converter)


def _input_specs(model, batch_size):
    """The `tf.TensorSpec`s of a Keras model's inputs, batch dimension set to
    `batch_size` (None: dynamic), named as the Keras inputs (the names the
    converter gives the signature's inputs)."""
    import tensorflow as tf

    if has_graph(model):
        return [tf.TensorSpec((batch_size,) + tuple(x.shape[1:]), x.dtype, name=x.name)
                for x in model.inputs]
    # A subclassed model: Keras records the shapes it was first called with.
    shapes = dict(getattr(model, "_build_shapes_dict", None) or {})
    if len(shapes) == 1:
        (shape,) = shapes.values()
        dtype = getattr(model, "input_dtype", None) or "float32"
        if isinstance(shape, (tuple, list)) and all(isinstance(d, (int, type(None)))
                                                    for d in shape):
            return [tf.TensorSpec((batch_size,) + tuple(shape[1:]), dtype, name="input")]
    raise ValueError(f"model {model.name!r} has no known input shape (a subclassed model that "
                     "was never called, or one with several call arguments): call it once on "
                     "data before exporting, or pass `signatures=`")


def _output_names(model):
    """The names the signature gives the model's outputs, in the order of
    `model.outputs`: the keys of a model whose outputs are a dict (`model(x)
    ["key"]`), else the Keras output names of a Functional or Sequential
    model (`model.output_names`, e.g. the output layers' names) when they
    are distinct, else the converter's `output_0`, `output_1`, ... (a
    subclassed model: None, its outputs are not known before tracing)."""
    if not has_graph(model):
        return None
    structure = graph_structure(model, "output")
    if isinstance(structure, dict) and len(structure) == len(model.outputs) and all(
            isinstance(key, str) and key for key in structure):
        return sorted(structure)  # Keras flattens a dict in key order: model.outputs
    names = [str(n) for n in getattr(model, "output_names", None) or []]
    if len(names) == len(model.outputs) and len(set(names)) == len(names) and all(names):
        return names
    return [f"output_{i}" for i in range(len(model.outputs))]


def graph_structure(model, which):
    """`model.input` or `model.output` (`which`): a Functional model's
    inputs or outputs as it was built with them (a tensor, a list, a dict),
    None for a model without them (a subclassed or unbuilt one)."""
    try:
        return getattr(model, which)
    except (AttributeError, ValueError):
        return None


def _input_structure(model):
    """A Functional model's inputs when they are a dict (or nested): the
    structure to rebuild from the signature's flat list (`model.inputs`
    order); None for one input or a flat list."""
    if not has_graph(model):
        return None
    structure = graph_structure(model, "input")
    return structure if isinstance(structure, dict) or (
        isinstance(structure, (list, tuple)) and any(isinstance(s, (dict, list, tuple))
                                                     for s in structure)) else None


def _named_signatures(signatures):
    """`{signature key: concrete function}` of `convert`'s `signatures`:
    each keyed by its function's name (`encode`; a concrete function's
    `__inference_encode_123` read back as `encode`)."""
    import re
    named = {}
    for fn in signatures:
        if hasattr(fn, "get_concrete_function"):
            name, fn = fn.__name__, fn.get_concrete_function()
        elif hasattr(fn, "structured_input_signature"):
            name = fn.name.decode() if isinstance(fn.name, bytes) else str(fn.name)
            name = re.sub(r"^__inference_(.*)_\d+$", r"\1", name)
        else:
            raise TypeError("signatures must be tf.functions with an input_signature or "
                            f"concrete functions, got {type(fn).__name__}")
        if name in named:
            raise ValueError(f"two signatures are named {name!r}: give functions of different "
                             "names")
        named[name] = fn
    return named


def _save_signatures(model, named, directory):
    """Write `model` (a Keras model or a `tf.Module`) as a SavedModel
    whose signatures are `named`'s functions, through
    `keras.export.ExportArchive`, which tracks a Keras model's variables
    also inside a module: the converter's `from_concrete_functions` with a
    Keras 3 model, or `tf.saved_model.save` of a module holding one, wrote
    a model whose outputs were inf / NaN (TF 2.21)."""
    import keras
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn in named.items():
        archive.add_endpoint(name, fn, input_signature=list(fn.structured_input_signature[0]))
    archive.write_out(directory, verbose=False)


def _save_serving(model, specs, output_names, directory):
    """Write `model` as a SavedModel whose only signature is `serving_default`
    (inference mode), its outputs named `output_names` (None: the
    converter's `output_i`), quietly: Keras's `model.export` and the
    converter's own Keras path print the whole endpoint description to
    stdout."""
    import keras

    structure = _input_structure(model)

    def serve(*args):
        if structure is not None:  # the flat list of inputs, as the model takes them
            args = (keras.tree.pack_sequence_as(structure, keras.tree.flatten(args)),)
        outputs = model(*args, training=False)
        if output_names is None:
            return outputs
        # A signature returns one flat dict of tensors: a list or dict of
        # outputs (nested too) flattened as `model.outputs` lists them.
        return dict(zip(output_names, keras.tree.flatten(outputs)))

    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [specs] if len(specs) > 1 else specs  # several inputs: one list argument
    archive.add_endpoint("serve", serve, signature)
    archive.write_out(directory, verbose=False)


class _float32_compute:
    """Run a mixed-precision model's layers with float32 compute while it is
    traced for conversion (its variables are float32 already), then restore
    each layer's policy."""

    def __init__(self, model):
        from tfdc.select import iter_layers
        self.saved = [(layer, layer.dtype_policy) for layer in [model, *iter_layers(model)]
                      if str(getattr(layer.dtype_policy, "name", "")).startswith("mixed_")]

    def __enter__(self):
        for layer, _ in self.saved:
            layer.dtype_policy = "float32"
        return self

    def __exit__(self, *exc):
        for layer, policy in self.saved:
            layer.dtype_policy = policy
        return False


def _run_converter(converter, model, batch_size):
    """`converter.convert()` with the converter's native log captured: on
    success it is dropped (except error lines), a known failure becomes one
    line that says what to do, any other failure is raised unchanged after
    the log is shown."""
    with _CapturedOutput() as captured, warnings.catch_warnings():
        # The converter's own calibration of a model of several inputs makes
        # a tf.lite.Interpreter: its deprecation notice, 8 times, is
        # TensorFlow's business, not the user's (tfdc runs LiteRT's).
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is "
                                "deprecated", category=UserWarning)
        try:
            return bytes(converter.convert())
        except Exception as e:
            hint = _known_converter_failure(str(e), model, batch_size)
            if hint is None:
                captured.replay = "all"
                raise
            captured.replay = "none"  # the hint replaces the converter's log
            raise ValueError(hint) from None


def _known_converter_failure(message, model, batch_size):
    """One line for a converter failure tfdc knows the fix of, else None."""
    import re
    if "TensorListReserve" in message or "Lowering tensor list ops" in message:
        from tfdc.select import recurrent_layers
        recurrent = [f"{layer.name!r} ({type(layer).__name__})" for layer in
                     (recurrent_layers(model) if _is_keras_model(model) else ())]
        what = ", ".join(recurrent) if recurrent else "a loop over a tensor list"
        if batch_size is None:
            return (f"the TFLite converter cannot convert {what} with a dynamic batch size: "
                    "export with a fixed one, tfdc.export(model, path, batch_size=1) "
                    "(tfdc.plan: export_options={'batch_size': 1})")
        return (f"the TFLite converter cannot convert {what} to builtin ops even with "
                f"batch_size={batch_size} (an input shape that is not fully fixed?)")
    found = re.search(r"TF Select ops: ([^\n]+)", message)
    if found or "neither a custom op nor a flex op" in message:
        ops = found.group(1).strip() if found else "some TensorFlow ops"
        wide, dtype = _other_float_parts(model)
        if wide:
            # MatMul, BiasAdd... are builtin in float32: the dtype is the cause.
            return (f"the TFLite converter has no builtin kernel for {ops} in {dtype}, and "
                    f"this model computes in {dtype} ({wide}): LiteRT's builtin ops are "
                    "float32; build the model in float32 (the layers' dtype=, or "
                    "keras.config.set_floatx('float32')) and copy the weights over")
        return (f"the TFLite converter has no builtin kernel for {ops}, and tfdc exports "
                "models that run on LiteRT's builtin ops only: replace those ops in the model "
                "(or allow TF Select ops with configure=, which needs LiteRT's Flex delegate "
                "at run time)")
    return None


def _other_float_parts(model):
    """`(names, dtype)`: the inputs and layers of a Keras model in a float
    type other than float32 (`tfdc.layers.OTHER_FLOATS`), named, and the
    first such type ("" and None if none)."""
    if not _is_keras_model(model):
        return "", None
    from tfdc.layers import OTHER_FLOATS
    from tfdc.select import iter_layers
    parts = [(f"input {getattr(t, 'name', '?')!r}", str(getattr(t, "dtype", "")))
             for t in getattr(model, "inputs", None) or ()]
    for layer in iter_layers(model):
        dtypes = [str(v.dtype) for v in layer.weights if str(v.dtype) in OTHER_FLOATS]
        parts += [(f"layer {layer.name!r}", dtypes[0])] if dtypes else []
    parts = [(name, dtype) for name, dtype in parts if dtype in OTHER_FLOATS]
    return listed([name for name, _ in parts], 4), parts[0][1] if parts else None


class _CapturedOutput:
    """Capture what native code (the MLIR converter, absl logging) writes to
    file descriptors 1 and 2, and what Python writes to sys.stdout/stderr;
    Python warnings are recorded and re-issued afterwards. On exit the log is
    written to stderr: only the lines that report errors (`replay = "errors"`,
    the default), all of it (`"all"`) or none (`"none"`).
    While it is active, output of other threads to the same descriptors is
    captured too. One capture at a time in the process (`_CAPTURE_LOCK`):
    two exports in two threads each saved the other's log file as "the
    terminal" and restored it, leaving stdout and stderr on a deleted file
    for the rest of the process."""

    def __init__(self):
        self.replay = "errors"

    def __enter__(self):
        _CAPTURE_LOCK.acquire()
        try:
            return self._capture()
        except BaseException:
            _CAPTURE_LOCK.release()
            raise

    def _capture(self):
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = []
        for fd in (1, 2):
            try:
                self._saved.append((fd, os.dup(fd)))
                os.dup2(self._file.fileno(), fd)
            except OSError:  # no such descriptor (an embedded interpreter)
                pass
        self._streams = (sys.stdout, sys.stderr)
        import io
        self._python = io.StringIO()
        sys.stdout = sys.stderr = self._python
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        try:
            self._restore()
        finally:
            _CAPTURE_LOCK.release()
        return False

    def _restore(self):
        import re
        import sys
        self._warnings.__exit__(None, None, None)
        sys.stdout, sys.stderr = self._streams
        for fd, saved in self._saved:
            os.dup2(saved, fd)
            os.close(saved)
        self._file.seek(0)
        text = self._file.read().decode("utf-8", "replace") + self._python.getvalue()
        self._file.close()
        if self.replay == "all":
            lines = text.splitlines()
        elif self.replay == "none":
            lines = []
        else:  # glog's E/F lines and anything saying "error"
            lines = [line for line in text.splitlines()
                     if re.match(r"[EF]\d{4} ", line) or re.search(r"\berror\b", line, re.I)]
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
        for w in self._caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# Held by a `_CapturedOutput` from enter to exit: file descriptors 1 and 2,
# sys.stdout / sys.stderr and the warnings filters are the process's.
_CAPTURE_LOCK = threading.RLock()


def _keras_io_order(plain, input_names, output_names):
    """List the converted model's inputs (and outputs) in Keras's order.

    The converter orders a signature's inputs by name and its outputs as it
    likes, so `get_input_details()[0]` can be a Keras model's second input.
    The `serving_default` signature maps each Keras input name (and output
    name, `_output_names`) to its tensor; the subgraph's input and output
    lists are rewritten in that order. A model whose order already matches
    is returned unchanged."""
    output_names = output_names or []
    if len(input_names) < 2 and len(output_names) < 2:
        return plain
    from tfdc import tflite_schema

    tree = tflite_schema.read(plain)
    signature = next((s for s in tree.signatureDefs or []
                      if _text(s.signatureKey) == "serving_default"), None)
    if signature is None:
        return plain
    subgraph = tree.subgraphs[signature.subgraphIndex or 0]
    changed = False
    for attr, names in (("inputs", input_names),
                        ("outputs", output_names)):
        by_name = {_text(t.name): int(t.tensorIndex) for t in getattr(signature, attr) or []}
        current = [int(i) for i in getattr(subgraph, attr)]
        if len(names) < 2 or set(by_name) != set(names) or sorted(by_name.values()) != \
                sorted(current):
            continue
        order = [by_name[name] for name in names]
        if order != current:
            setattr(subgraph, attr, np.array(order, dtype=np.int32))
            changed = True
    return tflite_schema.build(tree) if changed else plain


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _refuse_distiller(model):
    """A ValueError for a `tfdc.distill.Distiller`: a training wrapper, whose
    student is the model (it was refused as a model with no known input
    shape, advising to call it once)."""
    from tfdc.distill import Distiller
    if isinstance(model, Distiller):
        raise ValueError(f"{model.name!r} is a Distiller, a training wrapper: export its "
                         "student (distiller.student), the model it trains")


def _is_keras_model(model):
    import keras
    return isinstance(model, keras.Model)


def dangling_link(path):
    """What `path` is if it is a symbolic link to nothing (which
    `os.path.exists` calls missing), else None."""
    if os.path.islink(path) and not os.path.exists(path):
        return "a symbolic link to nothing (its target is missing, or the links form a loop)"
    return None


def check_readable(path):
    """A FileNotFoundError naming `path` if nothing is there to read: no
    such file, or a symbolic link to nothing (`dangling_link`)."""
    if link := dangling_link(path):
        raise FileNotFoundError(f"{os.fspath(path)}: {link}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{os.fspath(path)}: no such file")


def check_writable(path, example="model.tflite"):
    """Fail early, naming `path` and the reason, if a file cannot be written
    there: the folder is missing or not writable, or `path` is a folder
    (the message suggests a file `example` in it).

    Returns:
        `path` as a string.

    Raises:
        FileNotFoundError, NotADirectoryError, IsADirectoryError,
        PermissionError: with a message that names `path`.
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise FileNotFoundError("the output path is empty")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; give a file path, e.g. "
                                f"{os.path.join(path, example)}")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        # realpath drops the slash: "new/" was written as a file "new".
        if os.path.isfile(path.rstrip(os.sep + (os.altsep or ""))):
            raise NotADirectoryError(f"{path}: names a folder (it ends with {path[-1]!r}), but "
                                     "it is a file; give a file path without the slash")
        raise IsADirectoryError(f"{path}: names a folder (it ends with {path[-1]!r}), and no "
                                f"such folder exists; give a file path, e.g. "
                                f"{os.path.join(path, example)}")
    if is_special_file(path):  # written through, not replaced (write_atomically)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path}: not writable")
        return path
    if link := dangling_link(path):  # as GNU cp: not written through
        raise FileNotFoundError(f"{path}: {link}; remove it or give another path")
    # The folder as written, before realpath tidies it: "model.keras/../x"
    # names no folder (model.keras is a file), but realpath makes it "x",
    # which was written, over the input model when x was its name.
    parent = os.path.dirname(path) or os.curdir
    if not os.path.isdir(parent):
        try:
            os.stat(parent)
        except NotADirectoryError:  # a file where the path needs a folder
            raise NotADirectoryError(f"{path}: {parent} is not a folder (part of it is a "
                                     "file)") from None
        except OSError:
            raise FileNotFoundError(f"{path}: folder {parent} does not exist") from None
        raise NotADirectoryError(f"{path}: {parent} is not a folder")
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{path}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{path}: folder {directory} is not writable")
    # What access() cannot tell, for root above all: a read-only mount, an
    # immutable folder, /proc. Writing there failed after the work was done.
    try:
        handle, probe = tempfile.mkstemp(prefix=".tfdc-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise PermissionError(f"{path}: cannot create a file in folder {directory} "
                              f"({e.strerror or e})") from None
    os.close(handle)
    os.unlink(probe)
    if os.path.isfile(path) and not os.access(path, os.W_OK):
        # Replaced by a rename, a read-only file was overwritten where a shell
        # redirect is refused.
        if os.stat(path).st_mode & 0o222:  # chmod would not help
            raise PermissionError(f"{path}: the file cannot be written, though its mode allows "
                                  "it (an immutable attribute? see lsattr)")
        raise PermissionError(f"{path}: the file is read-only; make it writable (chmod u+w) "
                              "or remove it first")
    return path


def warn_model_suffix(path, stacklevel=2):
    """Warn when `path` ends like a Keras model file (`.keras`, `.h5`): what
    tfdc writes there is a packed `.tflite` file, which Keras cannot load."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        warnings.warn(f"{path}: tfdc writes a packed .tflite model there, not a Keras model "
                      f"(which the name's {suffix} suggests); save the Keras model with "
                      "model.save()", stacklevel=stacklevel + 1)


def is_special_file(path):
    """An existing path that is not a regular file or a folder: a device
    (/dev/null, /dev/stdout's terminal), a FIFO or a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_atomically(path, data):
    """Write `data` to `path` via a temporary file in the same directory and
    `os.replace`: readers see the old file or the new one, never a partial
    one, and a failure leaves the old file (or no file) in place. A symbolic
    link stays a link: the file it points to is the one replaced. A device
    or FIFO (`/dev/stdout`, a pipe) is written through, as `open` would,
    never replaced by a regular file. Errors name `path`, never the
    temporary file."""
    from tfdc.errors import raise_if_signalled
    path = check_writable(path)
    raise_if_signalled()  # a Ctrl-C that Python dropped: keep the old file
    if is_special_file(path):
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            raise type(e)(e.errno, f"cannot write: {e.strerror}", os.fspath(path)) from None
        return
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    # ".NAME.XXXXXXXX.tmp" must fit NAME_MAX (255 bytes) where NAME does:
    # a long name is cut for the temporary file.
    name = os.path.basename(target)
    while len(os.fsencode(name)) > 240:
        name = name[:-1]
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode of the file it
        # replaces (a private one stays private), else the mode a plain
        # open() would.
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        raise_if_signalled()
        os.replace(tmp, target)
        tmp = None
        _sync_folder(directory)  # the rename itself, on disk after a power loss
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(e, OSError) and e.errno is not None:
            # The user's path, not the temporary file's.
            raise type(e)(e.errno, f"cannot write: {e.strerror}", os.fspath(path)) from None
        raise


def _sync_folder(directory):
    """fsync a folder (its entries: a rename into it), where the system can
    (not on Windows, nor on every file system): best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pack_options(codebook_fp16, gap_alphabet, select, block, min_bytes, strip_debug,
                  negative_zeros="keep"):
    options = {"codebook_fp16": codebook_fp16, "select": select, "min_bytes": min_bytes,
               "strip_debug": strip_debug, "negative_zeros": negative_zeros}
    if gap_alphabet is not None:
        options["gap_alphabet"] = gap_alphabet
    if block is not None:
        options["block"] = block
    return options


def export_tflite(tflite, path, *, weights="float32", codebook_fp16=False, gap_alphabet=None,
                  select=None, block=None, min_bytes=64, strip_debug=True, layer_names=None,
                  dense_bytes=None, buffer_names=None, negative_zeros="keep"):
    """Pack an existing plain `.tflite` model (from any converter) and write it.

    Args:
        tflite: the `.tflite` bytes, or a path to the file.
        path: where to write the packed file (atomically).
        weights: `"float32"` (as converted) or `"int8"` (clustered weights
            stored as int8 codes, see `quantize_codebooks_int8`).
        codebook_fp16, gap_alphabet, select, block, min_bytes, strip_debug:
            packing options, see `export`.
        negative_zeros: `"keep"` (lossless) or `"zero"`: store float
            weights of -0.0 as 0.0 (see `tfdc.pack.pack_tflite`). Kept, a
            warning says how much smaller the file would be without them
            (pruned weights a mask multiplied to -0.0, e.g. tfmot's).
        layer_names: optional layer names used to label the report's rows.
        buffer_names: optional `{buffer index: layer name}` of the kernels
            (`kernel_buffers`), for rows whose tensor names lost the layer.
        dense_bytes: the dense float32 size of the model's weights, for the
            report's ratio (default: that of every constant buffer, as
            `tfdc.inspect` counts it).

    Returns:
        The `tfdc.ExportReport` of the written file. The file is never
        larger than the input: when packing does not make it smaller (a
        tiny model of incompressible bytes: the deflated graph alone gains
        on most files, random float weights included), the input is
        written unchanged, a warning says so, and the
        report has no packed layers and no section (`report.section_bytes
        == 0`, `report.packed_bytes == report.plain_bytes`).

    Example:

    ```python
    import tfdc
    from tfdc.exporter import convert
    with open("model.tflite", "wb") as f:   # any converter's file
        f.write(convert(tfdc.models.lenet_300_100()))
    report = tfdc.export_tflite("model.tflite", "model.packed.tflite")
    print(f"{report.plain_bytes:,} B -> {report.packed_bytes:,} B")
    interpreter = tfdc.load_interpreter("model.packed.tflite")
    ```
    """
    from tfdc.pack import pack_tflite
    from tfdc.report import ExportReport, check_layer_names
    from tfdc.unpack import has_section_entry

    layer_names = check_layer_names(layer_names)
    if buffer_names is not None and not isinstance(buffer_names, dict):
        raise TypeError("buffer_names must be a dict {buffer index: layer name} or None, got "
                        f"{type(buffer_names).__name__}")
    if dense_bytes is not None and (isinstance(dense_bytes, bool) or not isinstance(
            dense_bytes, (int, np.integer)) or dense_bytes < 0):
        raise ValueError(f"dense_bytes must be an integer >= 0 or None, got {dense_bytes!r}")
    check_writable(path)
    if isinstance(tflite, (str, os.PathLike)) and os.path.exists(tflite) and \
            os.path.exists(path) and os.path.samefile(tflite, path):
        raise ValueError(f"{os.fspath(path)}: path is the input file; write the packed file to "
                         "another path (the plain one would be lost)")
    plain = original = read_model_bytes(tflite)
    if has_section_entry(plain):
        raise ValueError("the input is already a tfdc-packed model")
    check_tflite_header(plain, tflite)
    if weights not in ("float32", "int8"):
        raise ValueError(f"weights must be 'float32' or 'int8', got {weights!r}")
    from tfdc.pack import check_options
    check_options(block=block, gap_alphabet=gap_alphabet, min_bytes=min_bytes,
                  negative_zeros=negative_zeros)
    if weights == "int8":
        from tfdc.pack import split_appended
        model, archive = split_appended(bytes(plain))  # a rewritten flatbuffer drops it
        plain, int8_weights, moved = quantize_codebooks_int8(model, min_bytes=min_bytes,
                                                             stacklevel=3)
        plain += archive
        # The report names a kernel's row by its buffer, now the int8 one.
        buffer_names = {moved.get(b, b): name for b, name in (buffer_names or {}).items()}
    options = _pack_options(codebook_fp16, gap_alphabet, select, block, min_bytes, strip_debug,
                            negative_zeros)
    packed, info = pack_tflite(plain, **options)
    if info.negative_zeros and negative_zeros == "keep":
        _warn_negative_zeros(info.negative_zeros, len(packed),
                             len(pack_tflite(plain, **dict(options, negative_zeros="zero"))[0]))
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
    if dense_bytes is None:
        from tfdc.report import _constant_bytes
        dense_bytes = _constant_bytes(plain)
    report = ExportReport.from_pack_info(info, plain_bytes=len(plain), path=os.fspath(path),
                                         model_bytes=packed, buffer_names=buffer_names,
                                         layer_names=layer_names, dense_bytes=dense_bytes)
    if weights == "int8":
        report.int8_weights = sorted(int8_weights)
    return report


def _warn_negative_zeros(counts, kept_bytes, zero_bytes):
    """Say what float weights of -0.0 cost, where storing them as 0.0 saves
    at least 1 % of the file: a pruning mask multiplied into the weights
    leaves them (tfmot's float files packed to twice the bytes, unseen)."""
    if kept_bytes - zero_bytes < 0.01 * kept_bytes:
        return
    named = sorted(counts.items(), key=lambda item: -item[1])
    warnings.warn(
        f"{sum(counts.values()):,} float weights are -0.0 "
        f"({listed((f'{name} {count:,}' for name, count in named), 3)}): pruned weights "
        f"multiplied by negative "
        f"numbers (a pruning mask multiplied into the weights, or a BatchNormalization "
        f"folded into them), and kept bit-exact they are coded as values, not as pruned "
        f"positions; negative_zeros='zero' stores them as 0.0 (equal as numbers): "
        f"{zero_bytes:,} B instead of {kept_bytes:,} B", stacklevel=3)


def export(model, path, *, strip=True, weights="float32", codebook_fp16=False, gap_alphabet=None,
           select=None, block=None, min_bytes=64, strip_debug=True, batch_size=None,
           signatures=None, representative_dataset=None, configure=None, check_kernels=True,
           negative_zeros="keep"):
    """Convert, pack and write a compressed model as a packed `.tflite` file.

    While the TFLite converter runs, the process's standard output and error
    (file descriptors 1 and 2) are captured to keep its log quiet, and only
    its lines that report errors are shown afterwards: what other threads
    print meanwhile goes into that log too, and is dropped unless it reads
    as an error. Exports in several threads are safe; their conversions
    take turns.

    Args:
        model: a `keras.Model` (typically trained with `tfdc.GradualPruning`
            and `tfdc.ClusteredFineTuning`), or a `tf.Module` with
            `signatures`.
        path: output file; written atomically (a temporary file in the same
            directory, then `os.replace`), so an error never leaves a partial
            file and never damages an existing one.
        strip: remove tfdc's training constraints from the model's variables
            first (the model is modified in place; training it afterwards no
            longer keeps pruned weights at zero). Not while a tfdc callback is
            training the model (an export from a callback during `fit`): that
            fit goes on pruning and clustering.
        weights: `"float32"` (default: every weight keeps its exact value) or
            `"int8"`: each clustered kernel (at most 256 distinct values,
            each shared by several weights) is stored as int8 codes with
            one symmetric scale per tensor (`max|c| / 127`) plus a
            `DEQUANTIZE` op, so the codebook stays a codebook (per-channel
            dynamic-range quantization would multiply its distinct values).
            Weights become `code * scale` (lossy at int8 resolution);
            activations stay float32.
        codebook_fp16: round every packed float32 weight to float16 and
            store the codebooks as float16 (lossy unless the values are
            float16 already, as `ClusteredFineTuning` leaves its shared
            values; an unclustered weight changes too; off by default).
        gap_alphabet: `G`, the number of relative-index symbols for sparse
            tensors (`2**bits`); `None` lets the packer choose per tensor.
        select: which buffers to pack: a callable `(tensor_name,
            buffer_index) -> bool`, or a regular expression (a str) searched
            in tensor names, as `tfdc pack --select` takes (checked before
            converting); `None` packs every buffer of at least `min_bytes`
            bytes.
        block: symbols per independently decodable segment (`None`: packer
            default, 4096).
        min_bytes: smaller buffers are left in the flatbuffer.
        strip_debug: drop what no runtime reads (names of activation tensors,
            the converter's description and `CONVERSION_METADATA`); the
            signatures and the names of the input, output and weight tensors
            are kept.
        negative_zeros: `"keep"` (default: lossless) or `"zero"`: store
            float weights of -0.0 as 0.0 (a pruning mask multiplied into
            the weights leaves them; tfdc's own pruning does not), so that
            they are coded as pruned positions, not as values.
        batch_size: fix the input batch dimension (1 for on-device
            inference saves the converter's shape ops: ~0.9 KB of the plain
            LeNet .tflite, ~0.2 KB of the packed file, whose graph is
            deflated);
            `None` keeps it dynamic (see `tfdc.exporter.convert`). Models
            with LSTM / GRU / SimpleRNN layers need a fixed batch (the
            converter cannot lower their loop otherwise).
        signatures: for several signatures or a `tf.Module`: a list of
            `tf.function`s with input signatures (see `tfdc.exporter.convert`).
        representative_dataset: a callable yielding lists of model inputs
            (in `model.inputs`' order) or dicts keyed by input name (a
            one-input model takes a dict of one array whatever its key; a
            few hundred real samples): full-integer export for NPUs and
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

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: `path` cannot
            be written (checked before converting; the message names it).
        ValueError: a known converter failure, in one line that says what to
            do (e.g. a recurrent layer without `batch_size`).

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
    _refuse_distiller(model)
    if weights == "int8" and representative_dataset is not None:
        # Its warning then read "no kernel has at most 256 values (cluster it first)".
        raise ValueError("weights='int8' stores a float model's clustered kernels as int8 "
                         "codes; with a representative_dataset every kernel is int8 already "
                         "(full-integer): give one or the other")
    check_writable(path)  # before the minutes a conversion can take
    warn_model_suffix(path)
    if _is_keras_model(model):
        from tfdc.select import refuse_non_finite
        refuse_non_finite(model, "tfdc.export")
    from tfdc.pack import check_options, selector
    select = selector(select)  # a bad pattern or option fails before converting
    check_options(block=block, gap_alphabet=gap_alphabet, min_bytes=min_bytes,
                  negative_zeros=negative_zeros)
    from tfdc.constraints import in_fit, strip as strip_model
    if strip and not in_fit(model):
        strip_model(model)
    plain = convert(model, signatures=signatures, representative_dataset=representative_dataset,
                    configure=configure, batch_size=batch_size)
    layer_names = dense_bytes = buffer_names = None
    if _is_keras_model(model):
        layer_names = [layer.name for layer in _layers(model)]
        dense_bytes = 4 * int(model.count_params())
        if check_kernels and representative_dataset is None:
            buffer_names = _warn_altered_kernels(model, plain, min_bytes)
        elif check_kernels:
            from tfdc.quantize import warn_extra_codes
            buffer_names = warn_extra_codes(model, plain, min_bytes, stacklevel=3)
    return export_tflite(plain, path, weights=weights, codebook_fp16=codebook_fp16,
                         gap_alphabet=gap_alphabet,
                         select=select, block=block, min_bytes=min_bytes,
                         strip_debug=strip_debug, layer_names=layer_names,
                         dense_bytes=dense_bytes, buffer_names=buffer_names,
                         negative_zeros=negative_zeros)


def _layers(model):
    from tfdc.select import iter_layers
    return list(iter_layers(model))


def altered_kernels(model, tflite, min_bytes=64):
    """Names of the Keras kernels (`layer/attr`) whose exact multiset of
    values is not found in any constant buffer of the `.tflite` model (every
    subgraph's: a recurrent layer's kernels live in its loop body)."""
    return kernel_buffers(model, tflite, min_bytes)[1]


def kernel_buffers(model, tflite, min_bytes=64):
    """Where the Keras kernels are in a float `.tflite` model: `(found,
    altered)`, `found` `{buffer index: "layer"}` ("layer/attr" for a layer
    with several kernels) for each kernel whose exact multiset of values one
    constant buffer holds, or several together (a recurrent kernel split
    into gates), or one holds times a factor the converter folded in
    (`tfdc.bytecost.folded_scale`), as `tfdc.bytecost` finds them, and each
    buffer holding a bias as it is ("layer/bias", `_bias_buffers`);
    `altered` the `layer/attr` of the kernels none holds.
    The report names a row by it where the converter's tensor name has lost
    the layer (a grouped convolution's "convolution", a TimeDistributed
    Dense's "arith.constant1")."""
    from tfdc.bytecost import _find_buffers
    from tfdc.flatbuf import read_model
    from tfdc.layers import kernel_variables
    from tfdc.select import kernel_labels

    data = bytes(tflite)
    candidates = {}
    for index, buffer in enumerate(read_model(data).buffers):
        if buffer.data_start is None or buffer.data_len % 4 or not buffer.data_len:
            continue
        # Bit patterns (a float sort does not order -0.0 and 0.0).
        candidates[index] = np.frombuffer(data, np.uint32, buffer.data_len // 4,
                                          buffer.data_start)
    kernels = [(layer, attr, variable) for layer in _layers(model)
               for attr, variable in kernel_variables(layer)]
    names = kernel_labels(model, [(layer, attr) for layer, attr, _ in kernels])
    found, altered, sorted_cache = {}, [], {}
    for name, (layer, attr, variable) in zip(names, kernels):
        if np.prod(variable.shape) * 4 < min_bytes:
            continue
        value = np.ascontiguousarray(np.asarray(variable.numpy(), dtype=np.float32))
        indices, _ = _find_buffers(value, candidates, found, sorted_cache)
        if indices is None:
            altered.append(f"{layer.name}/{attr}")
        for index in indices or ():
            found[index] = name
    _bias_buffers(kernels, names, candidates, found)
    return found, altered


def _bias_buffers(kernels, names, candidates, found):
    """Add to `found` the buffer holding each kernel's layer's bias as it
    is ("fc1/bias"; a GRU's two rows "gru/bias[0]", "gru/bias[1]"): the
    converter names a bias after the op it fused last, or after a scope
    numbered apart from Keras's (two Bidirectional layers' biases were rows
    of each other's). A bias of one repeated value (untrained: zeros) could
    be any such constant, and is left to the report's other rules."""
    from tfdc.layers import bias_variable, kernel_layer_name
    seen = set()
    for name, (layer, _, _) in zip(names, kernels):
        bias = bias_variable(layer)
        if bias is None or id(layer) in seen:
            continue
        seen.add(id(layer))
        value = np.asarray(bias.numpy(), dtype=np.float32)
        label = kernel_layer_name(name) + "/bias"
        rows = [(label, value)] if value.ndim == 1 else \
            [(f"{label}[{k}]", row) for k, row in enumerate(value.reshape(len(value), -1))]
        for row_name, row in rows:
            if len(np.unique(row)) < 2:
                continue
            bits = np.ascontiguousarray(row).view(np.uint32)
            for index, elems in candidates.items():
                if index not in found and np.array_equal(elems, bits):
                    found[index] = row_name
                    break


def _compressed(variable):
    """Whether a kernel looks pruned (1 % of exact zeros) or clustered
    (`tfdc.values.clustered_values`); not all zeros (a zeros
    initializer's)."""
    value = to_numpy(variable)
    return bool(value.any()) and (np.mean(value == 0) >= 0.01 or
                                  clustered_values(value) is not None)


def _warn_altered_kernels(model, tflite, min_bytes):
    """Warn about the kernels the converter altered; the buffers of the
    others, `{buffer index: name}` (`kernel_buffers`), for the report."""
    try:
        found, altered = kernel_buffers(model, tflite, min_bytes)
    except Exception as e:  # the check is advisory: never fail an export on it
        warnings.warn(f"tfdc.export could not check the converted kernels: {e}", stacklevel=3)
        return {}
    # Only pruning and weight sharing can be lost: a float model's folded
    # BatchNormalization warned on every export.
    from tfdc.layers import kernel_variables
    values = {f"{layer.name}/{attr}": variable for layer in _layers(model)
              for attr, variable in kernel_variables(layer)}
    altered = [name for name in altered if name not in values or _compressed(values[name])]
    if altered:
        warnings.warn(
            "the TFLite converter changed the values of " + ", ".join(altered) +
            " (typically a BatchNormalization folded into the kernel, or a weight computed "
            "from several variables); their pruning / weight sharing is partly lost. Fold "
            "BatchNormalization into the kernels with tfdc.fold_batchnorm before pruning and "
            "clustering (it folds one that directly follows a linear Conv / Dense in the same "
            "model, not one after an activation or after a nested model's output).",
            stacklevel=3)
    return found
