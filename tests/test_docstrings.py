"""Every ```python example in tfdc's docstrings runs as written (in a fresh
namespace, in a temporary folder, on real MNIST where it loads it). The
eight that train for 7 s or more run with TFDC_SLOW_EXAMPLES=1; what they
show is tested by their modules' own tests."""

import importlib
import inspect
import os
import re
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Examples that train for 7 s or more on 2 cores (measured 2026-12-06).
SLOW = {"tfdc.compressor.compress", "tfdc.demo", "tfdc.recipe", "tfdc.exporter.export",
        "tfdc.planner", "tfdc.planner.plan", "tfdc.planner.Plan", "tfdc.scan"}


def _documented():
    """`(qualified name, object)` of every tfdc module and of the public
    functions, classes and methods each defines."""
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "tfdc"))
                   if f.endswith(".py") and f != "__init__.py")
    for name in names:
        module = importlib.import_module(f"tfdc.{name}")
        yield module.__name__, module
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            yield f"{module.__name__}.{attr}", obj
            if inspect.isclass(obj):
                for method, member in vars(obj).items():
                    member = getattr(member, "__func__", getattr(member, "fget", member))
                    if not method.startswith("_") and inspect.isfunction(member):
                        yield f"{module.__name__}.{attr}.{method}", member


def _examples():
    seen = set()
    for name, obj in _documented():
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", obj.__doc__ or "", re.S)):
            block = textwrap.dedent(block)
            if block not in seen:
                seen.add(block)
                yield pytest.param(block, id=f"{name}[{i}]",
                                   marks=[pytest.mark.slow] if name in SLOW else [])


EXAMPLES = list(_examples())


def test_examples_are_found():
    assert len(EXAMPLES) >= 45


@pytest.mark.parametrize("block", EXAMPLES)
def test_example_runs_as_written(block, request, tmp_path, monkeypatch):
    if request.node.get_closest_marker("slow") and not os.environ.get("TFDC_SLOW_EXAMPLES"):
        pytest.skip("trains for 7 s or more: TFDC_SLOW_EXAMPLES=1 runs it")
    if "load_mnist" in block:
        from tfdc.datasets import load_mnist
        from tfdc.errors import DatasetUnavailableError
        try:
            load_mnist()
        except DatasetUnavailableError as e:
            pytest.skip(str(e))
    monkeypatch.chdir(tmp_path)
    exec(compile(block, request.node.name, "exec"), {"__name__": "__example__"})
