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
    prove   report.inspect, cli.py (`tfdc demo | compress | plan | pack | inspect | decode |
            bench`)

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
# Submodules listed by dir(tfdc); every submodule is reachable as an attribute
# without an import (`tfdc.bytecost.ByteCost`, `tfdc.models.lenet_300_100()`).
_MODULES = ("bytecost", "datasets", "models", "quantize")

__all__ = sorted(list(_LAZY) + list(_MODULES)
                 + ["BackendError", "FormatError", "DatasetUnavailableError", "__version__"])


def __getattr__(name):
    import importlib
    import importlib.util
    module = _LAZY.get(name)
    if module is None:
        # Any submodule, as README names them (`tfdc.scan.SummedLoss`,
        # `tfdc.distill.Distiller`): they failed after a plain `import tfdc`.
        if name.isidentifier() and importlib.util.find_spec(f"tfdc.{name}") is not None:
            return importlib.import_module(f"tfdc.{name}")
        raise AttributeError(f"module 'tfdc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


# A model saved during or after pruning carries tfdc's MaskConstraint in its
# layer config; `keras.saving.load_model` finds it only once `tfdc.prune` has
# registered it. If Keras is loaded already (`import keras, tfdc`), that costs
# nothing, so do it now; otherwise do it right after Keras is imported
# (`import tfdc, keras` failed to load such a file with a page of config),
# without importing Keras here: `import tfdc` stays cheap.
import sys as _sys  # noqa: E402


def _register_constraints():
    try:
        import tfdc.prune  # noqa: F401
    except Exception:  # noqa: BLE001 - never break the user's `import keras`
        pass


class _AfterKeras:
    """A `sys.meta_path` finder: Keras's own spec, whose loader registers
    tfdc's constraints after Keras's module has run (and then takes this
    finder away; TensorFlow's import only looks Keras up first)."""

    _finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._finding:
            return None
        import importlib.util
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader:
    def __init__(self, loader, finder):
        self._loader, self._finder = loader, finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if self._finder in _sys.meta_path:
            _sys.meta_path.remove(self._finder)
        try:
            self._loader.exec_module(module)
        except BaseException:
            # A failed import (a backend that is not installed) may be tried
            # again: be there for the next one.
            _sys.meta_path.insert(0, self._finder)
            raise
        _register_constraints()

    def __getattr__(self, name):  # resources, is_package, get_code, ...
        return getattr(self._loader, name)


if "keras" in _sys.modules:
    _register_constraints()
elif not any(isinstance(finder, _AfterKeras) for finder in _sys.meta_path):
    _sys.meta_path.insert(0, _AfterKeras())
