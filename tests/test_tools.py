"""The tools' shared argument checks (tools/tool_args.py), the section writer's
marker checks (tools/benchmarks_md.py) and bad arguments refused before any
work. Only tools that start without TensorFlow run here (each TensorFlow
import costs seconds)."""

import argparse
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)

import benchmarks_md  # noqa: E402
import tool_args  # noqa: E402
from tfdc.errors import DatasetUnavailableError, FormatError  # noqa: E402

DOCS = os.path.join(ROOT, "docs", "BENCHMARKS.md")


def refused(parse, text):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        parse(text)
    return str(e.value)


def test_integer_types():
    assert tool_args.positive_int("3") == 3
    assert "must be >= 1, got 0" in refused(tool_args.positive_int, "0")
    assert "must be >= 1, got -1" in refused(tool_args.positive_int, "-1")
    assert "'abc'" in refused(tool_args.positive_int, "abc")
    assert "'1.5'" in refused(tool_args.positive_int, "1.5")
    assert tool_args.nonnegative_int("0") == 0
    assert "must be >= 0, got -5" in refused(tool_args.nonnegative_int, "-5")


def test_float_types():
    assert tool_args.fraction("0") == 0.0
    assert tool_args.fraction("0.95") == 0.95
    for bad in ("1", "1.5", "-0.1", "nan"):
        assert "[0, 1)" in refused(tool_args.fraction, bad)
    assert "'abc'" in refused(tool_args.fraction, "abc")
    assert tool_args.nonnegative_float("0") == 0.0
    assert "must be >= 0" in refused(tool_args.nonnegative_float, "-1")
    assert "must be >= 0" in refused(tool_args.nonnegative_float, "nan")
    assert tool_args.fraction_list("0.8,0.9") == [0.8, 0.9]
    assert "[0, 1)" in refused(tool_args.fraction_list, "0.8,1.5")
    assert "'abc'" in refused(tool_args.fraction_list, "abc")
    assert "comma-separated" in refused(tool_args.fraction_list, "0.8,")
    # Rates and ramp shares (prune_benchmark.py took --ramp-fraction 0, then
    # failed after training its baseline).
    assert tool_args.positive_float("2e-3") == 2e-3
    for bad in ("0", "-1", "nan"):
        assert "must be > 0" in refused(tool_args.positive_float, bad)
    assert tool_args.open_fraction("1") == 1.0 and tool_args.open_fraction("0.5") == 0.5
    for bad in ("0", "1.5", "nan"):
        assert "(0, 1]" in refused(tool_args.open_fraction, bad)
    # Epochs per stage (cluster_benchmark.py's --epochs300 a,b was a traceback).
    epochs = tool_args.epoch_list(4)
    assert epochs("20,8,8,3") == [20, 8, 8, 3]
    assert "expected 4 comma-separated epoch counts" in refused(epochs, "1,2")
    assert "'a'" in refused(epochs, "a,b,c,d")


def test_comma_list():
    rows = tool_args.comma_list(["quick", "default", "hand"])
    assert rows("quick,hand") == ["quick", "hand"]
    message = refused(rows, "quick,bogus")
    assert "'bogus'" in message and "quick, default, hand" in message
    assert "empty name" in refused(rows, "quick,")
    assert "empty name" in refused(rows, "")


def test_paths(tmp_path):
    assert tool_args.existing_dir_for(str(tmp_path / "x.bin")) == str(tmp_path / "x.bin")
    assert "does not exist" in refused(tool_args.existing_dir_for, str(tmp_path / "d" / "x.bin"))
    # The repository's out/ (gitignored) is made: BENCHMARKS.md's recorded
    # `--json out/pack_rows.json` failed on a fresh clone.
    assert tool_args.OUT == os.path.join(ROOT, "out")
    assert tool_args.existing_dir_for(os.path.join(tool_args.OUT, "rows.json"))
    assert os.path.isdir(tool_args.OUT)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    assert tool_args.tflite_file(str(model)) == str(model)
    assert "not a .tflite" in refused(tool_args.tflite_file, os.path.join(ROOT, "README.md"))
    assert "cannot read" in refused(tool_args.tflite_file, str(tmp_path / "missing.tflite"))


def test_description():
    doc = """First sentence, which goes on
    over a second line.

    Second paragraph.
    """
    assert tool_args.description(doc) == "First sentence, which goes on over a second line."
    import codec_benchmark
    assert tool_args.description(codec_benchmark.__doc__).endswith("order-0 entropy.")


@pytest.mark.parametrize("error", [DatasetUnavailableError("MNIST file 'x.npz' does not exist"),
                                   FormatError("not a readable TFLite flatbuffer"),
                                   FileNotFoundError(2, "No such file or directory", "x.npz")])
def test_run_one_line(error, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tools/some_tool.py"])

    def main():
        raise error
    with pytest.raises(SystemExit) as e:
        tool_args.run(main)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("some_tool.py: error: ")
    assert "x.npz" in err or "flatbuffer" in err


def test_run_exit_status():
    with pytest.raises(SystemExit) as e:
        tool_args.run(lambda: 1)
    assert e.value.code == 1
    with pytest.raises(ValueError):  # not an expected failure: its traceback stays
        tool_args.run(lambda: int("x"))


SECTIONS = ("# Benchmarks\n\n<!-- BEGIN cluster -->\ncluster text\n<!-- END cluster -->\n\n"
            "<!-- BEGIN codec -->\ncodec text\n<!-- END codec -->\n\n"
            "<!-- BEGIN pack -->\npack text\n<!-- END pack -->\n")


@pytest.mark.parametrize("damaged", [
    SECTIONS.replace("<!-- END codec -->\n", ""),
    SECTIONS + "\n<!-- BEGIN codec -->\nsecond codec\n<!-- END codec -->\n",
    SECTIONS + "\n<!-- BEGIN codec -->\nsecond codec\n",
    SECTIONS.replace("<!-- BEGIN codec -->\ncodec text\n<!-- END codec -->",
                     "<!-- END codec -->\ncodec text\n<!-- BEGIN codec -->")])
def test_write_section_refuses_damaged_markers(damaged, tmp_path, monkeypatch):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(damaged, encoding="utf-8")
    monkeypatch.setattr(benchmarks_md, "PATH", str(path))
    with pytest.raises(SystemExit) as e:
        benchmarks_md.write_section("codec", "Huffman codec", "new text", command="python x")
    assert str(path) in str(e.value) and "'codec'" in str(e.value)
    assert path.read_bytes() == damaged.encode()


def test_write_section_replaces_only_its_own(tmp_path, monkeypatch):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(SECTIONS, encoding="utf-8")
    monkeypatch.setattr(benchmarks_md, "PATH", str(path))
    benchmarks_md.write_section("codec", "Huffman codec", "new text", command="python x")
    text = path.read_text(encoding="utf-8")
    assert "codec text" not in text and "new text" in text
    assert text.count("<!-- BEGIN codec -->") == text.count("<!-- END codec -->") == 1
    before, after = SECTIONS.split("<!-- BEGIN codec -->")[0], SECTIONS.split(
        "<!-- END codec -->\n")[1]
    assert text.startswith(before) and text.endswith(after)
    benchmarks_md.write_section("new", "New", "appended", command="python x")
    assert path.read_text(encoding="utf-8").startswith(text.rstrip("\n"))


def test_publish_leaves_a_section_alone_for_a_partial_run(tmp_path, monkeypatch, capsys):
    # `export_benchmark.py --only lenet300-paper` replaced the nine rows of
    # its section with one (and demo_benchmark.py --rows quick, three).
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(SECTIONS, encoding="utf-8")
    monkeypatch.setattr(benchmarks_md, "PATH", str(path))
    args = argparse.Namespace(no_write=False)
    benchmarks_md.publish(args, "codec", "Huffman codec", "one row", partial="rows b, c")
    assert path.read_text(encoding="utf-8") == SECTIONS
    assert capsys.readouterr().out.startswith(
        "## Huffman codec (this run lacks rows b, c, which the section holds: "
        "docs/BENCHMARKS.md left as it is)\n\none row")
    benchmarks_md.publish(argparse.Namespace(no_write=True), "codec", "Huffman codec", "x")
    assert path.read_text(encoding="utf-8") == SECTIONS
    benchmarks_md.publish(args, "codec", "Huffman codec", "every row")
    assert "every row" in path.read_text(encoding="utf-8")
    assert capsys.readouterr().out.startswith("## Huffman codec (--no-write: ")


COMPRESS = ("<!-- BEGIN compress -->\n## tfdc.compress\n\n| row |\n|---|\n| plain |\n\n"
            "Commands (each row stores its result in the cache):\n\n"
            "- best (2026-12-05 00:32 UTC): `python tools/compress_benchmark.py --rows best`\n"
            "- plain (2026-12-05 08:21 UTC): `python tools/compress_benchmark.py --rows plain`\n"
            "<!-- END compress -->\n")


def test_compress_render_refuses_a_partial_cache(tmp_path, monkeypatch):
    import compress_benchmark
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n\n" + COMPRESS, encoding="utf-8")
    monkeypatch.setattr(benchmarks_md, "PATH", str(docs))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "row_plain.json").write_text(json.dumps([{"name": "plain"}]))
    assert compress_benchmark.missing_rows(str(cache), COMPRESS) == ["best"]
    monkeypatch.setattr(sys, "argv", ["tools/compress_benchmark.py", "--render",
                                      "--cache", str(cache)])
    with pytest.raises(SystemExit) as e:
        compress_benchmark.main()
    assert "best" in str(e.value) and "left as it is" in str(e.value)
    assert docs.read_text(encoding="utf-8") == "# Benchmarks\n\n" + COMPRESS
    (cache / "row_best.json").write_text(json.dumps([{"name": "best"}]))
    assert compress_benchmark.missing_rows(str(cache), COMPRESS) == []


def test_compress_rows_that_cannot_complete_the_section_stop_before_training(tmp_path,
                                                                            monkeypatch):
    # --rows plain on an empty cache trained 7.7 min, then refused to write:
    # the section lists best too, which no group asked for makes.
    import compress_benchmark
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n\n" + COMPRESS, encoding="utf-8")
    monkeypatch.setattr(benchmarks_md, "PATH", str(docs))
    cache = tmp_path / "cache"
    monkeypatch.setattr(sys, "argv", ["tools/compress_benchmark.py", "--rows", "plain",
                                      "--cache", str(cache)])
    monkeypatch.setattr(compress_benchmark, "run_plain", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SystemExit) as e:
        compress_benchmark.main()
    assert "lacks rows best" in str(e.value) and "nothing was run" in str(e.value)
    cache.mkdir(exist_ok=True)
    (cache / "row_best.json").write_text(json.dumps([{"name": "best"}]))
    compress_benchmark.check_coverable(str(cache), ["plain"], "compress")  # now it can


def run_tool(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("args, option", [
    (["tools/codec_benchmark.py", "--repeats", "0"], "--repeats"),
    (["tools/demo_benchmark.py", "--rows", "quick,bogus"], "--rows"),
    (["tools/android_benchmark.py", "--host", "--model", "README.md"], "--model"),
    (["tools/scan_hold_benchmark.py", "--models", "lenet5,bogus"], "--models"),
])
def test_bad_arguments_fail_before_work(args, option, tmp_path):
    docs = open(DOCS, "rb").read()
    done = run_tool(*args, env={"TFDC_MNIST": str(tmp_path / "missing.npz")})
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(os.path.basename(args[0]) + ": error:") and option in last
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert open(DOCS, "rb").read() == docs


def test_make_dictionary_needs_out(tmp_path):
    # A copy outside the checkout: a tool that still defaulted to
    # tfdc/v2_dictionary.bin must not overwrite the committed dictionary here.
    os.mkdir(tmp_path / "tools")
    for name in ("make_dictionary.py", "tool_args.py"):
        (tmp_path / "tools" / name).write_bytes(open(os.path.join(TOOLS, name), "rb").read())
    done = subprocess.run([sys.executable, "tools/make_dictionary.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("make_dictionary.py: error:") and "--out" in last
    assert os.listdir(tmp_path) == ["tools"]


def test_output_folder_checked_before_work(tmp_path):
    out = tmp_path / "missing" / "x.bin"
    done = run_tool("tools/make_dictionary.py", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("make_dictionary.py: error: argument "
                                                           "--out: folder")
    assert "Traceback" not in done.stderr and not out.parent.exists()


def test_compress_rows_checked_before_training(tmp_path):
    cache = tmp_path / "cache"
    done = run_tool("tools/compress_benchmark.py", "--rows", "plain,", "--cache", str(cache))
    assert done.returncode == 2 and "--rows" in done.stderr.strip().splitlines()[-1]
    assert not cache.exists()
