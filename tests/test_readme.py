"""The README's Quickstart runs as written (on a slice of real MNIST, so it
takes seconds): the documented calls exist, take these arguments and give a
packed file that LiteRT loads."""

import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(after):
    """The ```python blocks of README.md under the heading `after`."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index(after):]
    section = section[:section.find("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_quickstart_runs_as_written(tmp_path, monkeypatch, capsys):
    import tfdc.datasets
    from tfdc.errors import DatasetUnavailableError
    try:
        (x, y), (xt, yt) = tfdc.datasets.load_mnist()
    except DatasetUnavailableError as e:
        pytest.skip(str(e))
    # 1,024 training images: each `fit` of the snippet is a few dozen steps.
    monkeypatch.setattr(tfdc.datasets, "load_mnist",
                        lambda *a, **k: ((x[:1024], y[:1024]), (xt[:256], yt[:256])))
    monkeypatch.chdir(tmp_path)
    quickstart = python_blocks("## Quickstart")[0]
    scope = {}
    exec(compile(quickstart, "README.md (Quickstart)", "exec"), scope)

    packed = (tmp_path / "lenet.tflite").read_bytes()
    assert tfdc.is_packed(packed)
    assert f"{len(packed):,}" in capsys.readouterr().out  # print(report)
    model, interpreter = scope["model"], scope["interpreter"]
    kept = {name: 1 - s.sparsity for name, s in tfdc.sparsity(model).items()}
    assert kept["fc1"] == pytest.approx(0.08, abs=0.01) and kept["fc3"] > 0.2
    fc1 = model.get_layer("fc1").kernel.numpy()
    assert len(np.unique(fc1[fc1 != 0])) <= 32  # bits=5
    # The interpreter the README loads and runs on xt[:1] gives Keras's output.
    out = interpreter.get_output_details()[0]
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]),
                               model.predict(xt[:1], verbose=0), atol=1e-5)


def test_every_dotted_name_the_docs_use_resolves_after_import_tfdc():
    # `tfdc.compressor.fewest_examples`, `tfdc.scan.SummedLoss`,
    # `tfdc.distill.Distiller`: AttributeError after a plain `import tfdc`.
    import subprocess
    import sys
    names = set()
    for doc in ("README.md", "android_demo/README.md", "docs/BENCHMARKS.md"):
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        names |= set(re.findall(r"`(tfdc(?:\.[A-Za-z_]\w*)+)", text))
    assert "tfdc.scan.SummedLoss" in names and len(names) > 20
    names.discard("tfdc.FormatError.status")  # an instance's attribute
    script = ("import functools, sys, tfdc\n"
              "for name in sys.argv[1:]:\n"
              "    functools.reduce(getattr, name.split('.')[1:], tfdc)\n")
    done = subprocess.run([sys.executable, "-c", script, *sorted(names)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
