"""The `tfdc` command line: help, inspect / decode / bench on a real packed
file, and user mistakes reported as one line with a non-zero exit."""

import json
import os

import numpy as np
import pytest

from tfdc.cli import main

from conftest import assert_one_line_error, assert_usage_error, run_cli as run


@pytest.fixture(scope="module")
def packed_file(tmp_path_factory):
    """A real packed .tflite: a small MLP, 90 % zeros, 16 shared values."""
    import keras

    from tfdc.exporter import export
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48, name="fc1"),
                              keras.layers.Dense(10, name="fc2")])
    rng = np.random.default_rng(0)
    codebook = np.linspace(-0.5, 0.5, 16).astype("float32")
    for layer in model.layers:
        k = codebook[rng.integers(0, 16, layer.kernel.shape)]
        k[rng.random(k.shape) < 0.9] = 0
        layer.kernel.assign(k)
    path = tmp_path_factory.mktemp("cli") / "mlp.tflite"
    export(model, str(path))
    x = rng.random((4, 64)).astype("float32")
    return str(path), x, model.predict(x, verbose=0)


@pytest.mark.parametrize("command", ["demo", "compress", "plan", "inspect", "decode", "bench"])
def test_help_of_each_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tfdc {command}")
    assert "--tiny" not in out  # the test-only option stays hidden


def test_top_level_help_lists_commands(capsys):
    # No command is a usage mistake: the help goes to stderr (it went to
    # stdout, which a script reads for output).
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    for command in ("demo", "compress", "plan", "pack", "inspect", "decode", "bench"):
        assert command in err


def test_inspect_text_markdown_json(capsys, packed_file):
    path, _, _ = packed_file
    code, text, _ = run(capsys, "inspect", path)
    assert code == 0 and "fc1" in text
    code, markdown, _ = run(capsys, "inspect", path, "--markdown")
    assert code == 0 and markdown.lstrip().startswith(("|", "#")) and "---" in markdown
    code, out, _ = run(capsys, "inspect", path, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["sizes"]["packed_bytes"] == os.path.getsize(path)
    fc1 = [layer for layer in report["layers"] if layer["name"].startswith("fc1")]
    assert fc1 and fc1[0]["codebook_size"] <= 16


def test_a_broken_import_of_tfdc_itself_is_no_user_mistake(capsys, monkeypatch, packed_file):
    # A half-updated install ("cannot import name 'unwrap_one_input' from
    # 'tfdc.scan'") read as one `tfdc: error:` line, exit 1, as if the user
    # had erred; it is tfdc's own fault, with the traceback to report.
    import sys
    monkeypatch.setitem(sys.modules, "tfdc.unpack", None)
    with pytest.raises(ImportError) as broken:
        main(["inspect", packed_file[0]])
    assert broken.value.name == "tfdc.unpack"


def test_decode_writes_a_working_model(capsys, tmp_path, packed_file):
    from tfdc.runtime import interpreter_class
    path, x, expected = packed_file
    out_path = tmp_path / "decoded.tflite"
    code, out, _ = run(capsys, "decode", path, str(out_path), "--backend", "python")
    assert code == 0 and str(out_path) in out
    interpreter = interpreter_class()(model_path=str(out_path))
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for row, want in zip(x, expected):
        interpreter.set_tensor(inp["index"], row[None])
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(outp["index"])[0], want,
                                   rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary


def test_bench_reports_decode_and_latency(capsys, packed_file):
    code, out, _ = run(capsys, "bench", packed_file[0], "--runs", "2")
    assert code == 0
    assert "decode (python)" in out and "LiteRT load" in out and "ms mean" in out


@pytest.mark.parametrize("command", [["inspect"], ["bench"], ["decode"]])
def test_missing_file(capsys, tmp_path, command):
    argv = command + [str(tmp_path / "missing.tflite")]
    if command == ["decode"]:
        argv.append(str(tmp_path / "out.tflite"))
    assert_one_line_error(*run(capsys, *argv)[::2], "missing.tflite", "no such file")


@pytest.mark.parametrize("command", ["inspect", "decode", "bench"])
def test_not_a_tflite_file(capsys, tmp_path, command):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a model\n")
    argv = [command, str(path)] + ([str(tmp_path / "o.tflite")] if command == "decode" else [])
    assert_one_line_error(*run(capsys, *argv)[::2], "notes.txt")


def test_decode_refuses_a_plain_tflite(capsys, tmp_path, packed_file):
    from tfdc.unpack import decode
    plain = tmp_path / "plain.tflite"
    # The decoded model with its section entry dropped is a plain .tflite;
    # simplest real plain file: convert a tiny model.
    import keras

    from tfdc.exporter import convert
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.write_bytes(convert(model))
    assert decode  # imported: the decoder exists
    assert_one_line_error(*run(capsys, "decode", str(plain), str(tmp_path / "o.tflite"))[::2],
                          "not a tfdc-packed file")


@pytest.mark.parametrize("command", ["inspect", "decode"])
def test_corrupted_packed_file(capsys, tmp_path, packed_file, command):
    data = bytearray(open(packed_file[0], "rb").read())
    # Flip bytes in the packed section at the end of the file (after the
    # flatbuffer), where the coded weights and the checksums live.
    for i in range(len(data) - 40, len(data) - 8, 3):
        data[i] ^= 0x5A
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(bytes(data))
    out_path = tmp_path / "o.tflite"
    argv = [command, str(bad)] + ([str(out_path)] if command == "decode" else [])
    code, _, err = run(capsys, *argv)
    if command == "inspect" and code == 0:
        pytest.skip("inspect reads the header only; the damage is in the coded data")
    assert_one_line_error(code, err, "corrupt.tflite")
    assert not out_path.exists()


def test_decode_into_missing_folder(capsys, tmp_path, packed_file):
    code, _, err = run(capsys, "decode", packed_file[0], str(tmp_path / "no" / "o.tflite"))
    assert_one_line_error(code, err, "does not exist")


def test_demo_bad_options(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--sparsity", "1.5"])
    assert exit_info.value.code == 2
    assert "sparsity must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--bits", "fc1"])
    assert "--bits: not an integer" in capsys.readouterr().err
    code, _, err = run(capsys, "demo", "--mnist", str(tmp_path / "nope.npz"))
    assert_one_line_error(code, err, "nope.npz")


def test_demo_unknown_layer_fails_before_training(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--sparsity", "conv9=0.5", "--out", str(tmp_path),
                         "--tiny")
    assert_one_line_error(code, err, "conv9")
    assert "[1/4]" not in out  # nothing was trained


# ------------------------------------------ decoded files and damaged keys
@pytest.fixture(scope="module")
def decoded_file(packed_file, tmp_path_factory):
    from tfdc.unpack import decode
    path = tmp_path_factory.mktemp("cli_decoded") / "decoded.tflite"
    path.write_bytes(decode(open(packed_file[0], "rb").read()))
    return str(path)


def test_inspect_shows_a_decoded_file_as_a_standard_model(capsys, packed_file, decoded_file):
    # tfdc accepts its own decoded files (issue 14, point 4).
    code, out, _ = run(capsys, "inspect", decoded_file)
    assert code == 0
    assert "a standard .tflite model decoded from a tfdc-packed file" in out
    assert "fc1" in out and "Total" in out
    _, packed_out, _ = run(capsys, "inspect", packed_file[0])
    # what it packs as is what it was packed as
    assert packed_out.split("Layer", 1)[1].split("Plain")[0].split("Packed")[0] in out


def test_decode_says_a_decoded_file_is_already_decoded(capsys, tmp_path, decoded_file):
    out_path = tmp_path / "again.tflite"
    assert_one_line_error(*run(capsys, "decode", decoded_file, str(out_path))[::2],
                          "decoded.tflite", "already decoded")
    assert not out_path.exists()


def test_bench_runs_a_decoded_file(capsys, decoded_file):
    code, out, _ = run(capsys, "bench", decoded_file, "--runs", "1")
    assert code == 0 and "decoded by tfdc" in out and "LiteRT inference" in out


def test_bench_fills_bool_and_string_inputs_and_names_ops_litert_lacks(capsys, tmp_path):
    """A bool or string input was filled as an integer ('Invalid integer
    data type'); a model with a Flex (or custom) op failed with a traceback."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([3], tf.bool),
                                      tf.TensorSpec([2], tf.string)])
        def logic(self, b, s):
            return {"b": tf.logical_not(b), "s": tf.identity(s)}

        @tf.function(input_signature=[tf.TensorSpec([3, 3], tf.float32)])
        def inverse(self, x):
            return {"y": tf.linalg.inv(x)}

    model = Model()
    plain = tmp_path / "logic.tflite"
    plain.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [model.logic.get_concrete_function()], model).convert())
    code, out, err = run(capsys, "bench", plain, "--runs", "1")
    assert code == 0 and "LiteRT inference" in out, err
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.inverse.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    flex = tmp_path / "flex.tflite"
    flex.write_bytes(converter.convert())
    code, _, err = run(capsys, "bench", flex, "--runs", "1")
    assert_one_line_error(code, err, "flex.tflite: LiteRT cannot load the model: ",
                          "Select TensorFlow op(s)")


@pytest.mark.parametrize("command", ["inspect", "decode", "bench"])
def test_a_truncated_file_is_called_truncated(capsys, tmp_path, packed_file, command):
    """Its first 100 bytes were 'a plain .tflite already' to decode."""
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(open(packed_file[0], "rb").read()[:100])
    argv = [command, str(cut)] + ([str(tmp_path / "out.tflite")] if command == "decode" else [])
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "cut.tflite: a damaged or truncated .tflite file "
                          "(flatbuffer: ")
    assert not (tmp_path / "out.tflite").exists()


@pytest.mark.parametrize("command", ["inspect", "decode", "bench"])
def test_a_flipped_bit_in_the_section_key_is_named(capsys, tmp_path, packed_file, command):
    # issue 14, point 13: precise, naming the file.
    data = bytearray(open(packed_file[0], "rb").read())
    data[data.index(b"tfdc.v2") + 6] ^= 0x02
    bad = tmp_path / "flipped.tflite"
    bad.write_bytes(bytes(data))
    argv = [command, str(bad)] + ([str(tmp_path / "o.tflite")] if command == "decode" else [])
    assert_one_line_error(*run(capsys, *argv)[::2], "flipped.tflite",
                          "damaged tfdc-packed file", "tfdc.v0")


def test_an_empty_file(capsys, tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert_one_line_error(*run(capsys, "inspect", str(empty))[::2], "empty.tflite",
                          "empty file")

def test_help_describes_the_accepted_ranges(capsys):
    helps = {}
    for command in ("demo", "bench", "decode"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    assert "bits per shared weight, 1..8" in helps["demo"]
    assert "in [0, 1)" in helps["demo"] and "N >= 1" in helps["demo"]
    assert "repetitions of decoding and loading (their median), >= 1" in helps["bench"]
    assert "not IN itself" in helps["decode"]


@pytest.mark.parametrize("argv, message", [
    (["demo", "--bits", "9"], "bits must be in 1..8, got 9"),
    (["demo", "--bits", "fc1=12"], "bits must be in 1..8, got 12"),
    (["demo", "--train-size", "99"], "must be >= 100, got 99"),  # it ran TensorFlow, exit 1
    (["demo", "--test-size", "0"], "must be >= 1, got 0"),
    (["bench", "model.tflite", "--runs", "0"], "must be >= 1, got 0"),
    (["bench", "model.tflite", "--threads", "0"], "must be >= 1, got 0"),
    # 16384 crashed LiteRT (a segmentation fault); 2^31 printed the whole
    # model in pybind11's TypeError.
    (["bench", "model.tflite", "--threads", "16384"], "must be <= 1024, got 16384"),
    (["demo", "--sparsity", "fc1=0.5,fc1=0.6"], "layer 'fc1' is given twice"),
    (["demo", "--prune-epochs", "0"], "must be >= 1, got 0"),
    (["demo", "--seed", str(2 ** 32)], f"must be in 0..{2 ** 32 - 1}"),
])
def test_out_of_range_options_are_usage_errors(capsys, argv, message):
    # Refused by the parser, with the same range the library checks, before
    # any data is loaded or any model trained.
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    # One line naming the command and its --help, not argparse's usage block.
    assert err.startswith(f"tfdc: error: {argv[0]}: ") and err.count("\n") == 1, err
    assert f"(see 'tfdc {argv[0]} --help')" in err


def test_bits_range_is_the_librarys():
    from tfdc.cluster import ClusteredFineTuning
    from tfdc.kmeans import BITS_RANGE
    low, high = BITS_RANGE
    ClusteredFineTuning(bits=high)
    with pytest.raises(ValueError, match=f"bits must be in {low}..{high}"):
        ClusteredFineTuning(bits=high + 1)


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_decode_refuses_to_write_over_its_input(capsys, tmp_path, packed_file, how):
    source = tmp_path / "packed.tflite"
    source.write_bytes(open(packed_file[0], "rb").read())
    before = source.read_bytes()
    target = tmp_path / "other.tflite"
    if how == "same path":
        target = source
    elif how == "symlink":
        target.symlink_to(source)
    else:
        os.link(source, target)
    code, _, err = run(capsys, "decode", str(source), str(target))
    assert_usage_error(code, err, f"{target}: is the input file")
    assert source.read_bytes() == before


def test_decode_into_a_folder_names_it(capsys, tmp_path, packed_file):
    folder = tmp_path / "folder"
    folder.mkdir()
    code, _, err = run(capsys, "decode", packed_file[0], str(folder))
    assert_one_line_error(code, err, f"{folder}: is a directory")
    assert ".tmp" not in err and os.listdir(folder) == []


def test_demo_out_must_be_a_folder(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, _, err = run(capsys, "demo", "--out", str(afile), "--tiny", "--no-plots")
    assert_one_line_error(code, err, f"--out {afile}: exists and is not a directory")
    assert afile.read_text() == "mine"
    # Inside a file: refused before the data loads (it printed a header line,
    # then 'Not a directory' once MNIST had loaded).
    code, out, err = run(capsys, "demo", "--out", str(afile / "sub"), "--tiny", "--no-plots")
    assert_one_line_error(code, err, f"--out {afile / 'sub'}: cannot create it: Not a directory")
    assert out == ""


def test_demo_mnist_path_applies_to_mnist_only(capsys, tmp_path):
    """--dataset digits failed on an --mnist path it does not read."""
    code, _, err = run(capsys, "demo", "--dataset", "digits", "--mnist", "/nonexistent.npz",
                       "--out", str(tmp_path), "--tiny", "--no-plots")
    assert_one_line_error(code, err, "--mnist applies to --dataset mnist, not --dataset digits")


def test_demo_mnist_that_is_not_an_npz(capsys, tmp_path):
    image = tmp_path / "img.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    code, _, err = run(capsys, "demo", "--mnist", str(image), "--out", str(tmp_path / "o"),
                       "--tiny", "--no-plots")
    assert_one_line_error(code, err, f"{image} is not an .npz file", "x_train")
    assert "pickle" not in err
    assert not (tmp_path / "o").exists()  # made for the run, left empty
