"""tfdc: Deep Compression for Keras 3 models shipped with TensorFlow Lite / LiteRT.

The pipeline, one module each:

    train   prune.GradualPruning, cluster.ClusteredFineTuning, batchnorm.fold_batchnorm,
            structured.StructuredPruning (whole units; channels.py finds what goes together)
    shrink  shrinker.shrink, shrinker.units  (rebuild without the removed units)
    export  exporter.export  (convert with TFLite, then pack: huffman.py, pack.py)
    all     compressor.compress (plan, prune, cluster, export to a byte, error or loss budget;
            distill.Distiller trains against the float model's outputs)
    format  docs/FORMAT.md (the packed section), flatbuf.py (minimal reader)
    decode  unpack.decode  (pure NumPy, or the native C decoder in tfdc/native)
    device  runtime.load_interpreter, android_demo/
    prove   report.inspect, cli.py (`tfdc demo | compress | pack | inspect | decode | bench`)

Public names are imported lazily so that `import tfdc` stays cheap (no
TensorFlow import until a callback or the exporter is used).
"""

from tfdc.errors import BackendError, DatasetUnavailableError, FormatError

__version__ = "0.1.0"

_LAZY = {
    "GradualPruning": "tfdc.prune",
    "sparsity": "tfdc.prune",
    "ClusteredFineTuning": "tfdc.cluster",
    "codebooks": "tfdc.cluster",
    "fold_batchnorm": "tfdc.batchnorm",
    "StructuredPruning": "tfdc.structured",
    "shrink": "tfdc.shrinker",
    "units": "tfdc.shrinker",
    "export": "tfdc.exporter",
    "export_tflite": "tfdc.exporter",
    "strip": "tfdc.constraints",
    "ExportReport": "tfdc.report",
    "inspect": "tfdc.report",
    "decode": "tfdc.unpack",
    "is_packed": "tfdc.unpack",
    "load_interpreter": "tfdc.runtime",
    "compress": "tfdc.compressor",
    "CompressResult": "tfdc.compressor",
    "BudgetMissedWarning": "tfdc.compressor",
    "Distiller": "tfdc.distill",
    "sensitivity": "tfdc.scan",
    "Sensitivity": "tfdc.scan",
    "plan": "tfdc.planner",
    "Plan": "tfdc.planner",
}
# Submodules reachable as attributes without an import (`tfdc.bytecost.ByteCost`,
# `tfdc.models.lenet_300_100()`, as the docstrings' examples use them).
_MODULES = ("bytecost", "datasets", "models", "quantize")

__all__ = sorted(list(_LAZY) + list(_MODULES)
                 + ["BackendError", "FormatError", "DatasetUnavailableError", "__version__"])


def __getattr__(name):
    import importlib
    if name in _MODULES:
        return importlib.import_module(f"tfdc.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tfdc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


# A model saved during or after pruning carries tfdc's MaskConstraint in its
# layer config; `keras.saving.load_model` finds it only once `tfdc.prune` has
# registered it. If Keras is loaded already (`import keras, tfdc`), that costs
# nothing, so do it now; otherwise it happens with the first tfdc callback, or
# `import tfdc.prune`.
import sys as _sys  # noqa: E402

if "keras" in _sys.modules:
    import tfdc.prune  # noqa: E402,F401
