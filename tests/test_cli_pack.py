"""`tfdc pack IN OUT` on real converter outputs: the packed file decodes and
runs bit-identically in LiteRT, it is never larger than IN, and every input
it cannot pack is refused with one `tfdc: error:` line and no file written."""

import os

import numpy as np
import pytest

from tfdc.cli import main

from conftest import assert_one_line_error, assert_usage_error, run_cli as run


def _model(seed=0, kept=0.1, codebook_size=16):
    """A small MLP whose kernels look compressed: mostly zeros, few values."""
    import keras
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48, name="fc1"),
                              keras.layers.Dense(10, name="fc2")])
    rng = np.random.default_rng(seed)
    codebook = np.linspace(-0.5, 0.5, codebook_size).astype("float32")
    for layer in model.layers:
        k = codebook[rng.integers(0, codebook_size, layer.kernel.shape)]
        k[rng.random(k.shape) >= kept] = 0
        layer.kernel.assign(k)
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Plain .tflite files as other tools write them: the plain converter's
    float32 output, the converter's dynamic-range int8 output (per-channel
    int8 kernels, as tfmot's and most deployed models), and a float model
    with random dense weights (nothing for the packer to gain)."""
    import keras
    import tensorflow as tf

    from tfdc.exporter import convert
    folder = tmp_path_factory.mktemp("pack")
    model = _model()
    dense = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, name="fc1")])
    files = {
        "float": convert(model),
        "int8": convert(model, configure=lambda c: setattr(
            c, "optimizations", [tf.lite.Optimize.DEFAULT])),
        "random": convert(dense),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = str(folder / f"{name}.tflite")
        with open(paths[name], "wb") as f:
            f.write(data)
    x = np.random.default_rng(1).normal(size=(8, 64)).astype("float32")
    return paths, x


def outputs(interpreter, x):
    """Output bits for each row of `x` (as uint32: bit-identical, not close)."""
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for row in x:
        interpreter.set_tensor(inp["index"], row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"]).copy().view(np.uint32))
    return np.concatenate(rows)


def plain_outputs(path, x):
    from tfdc.runtime import interpreter_class
    return outputs(interpreter_class()(model_path=path), x)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pack", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tfdc pack")
    for option in ("--weights", "--codebook-fp16", "--gap-alphabet", "--block", "--min-bytes",
                   "--select", "--no-strip-debug", "never larger"):
        assert option in " ".join(out.split())
    code, _, err = run(capsys)
    assert code == 2 and "pack" in err
    # Arguments left over name the command's help, not the top one's.
    with pytest.raises(SystemExit) as exit_info:
        main(["pack", "a.tflite", "b.tflite", "c"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("tfdc: error: pack: unrecognized arguments: c (see 'tfdc "
                                       "pack --help')\n")


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_pack_then_decode_runs_bit_identically(capsys, tmp_path, inputs, kind):
    import tfdc
    from tfdc.unpack import is_packed
    paths, x = inputs
    packed, decoded = tmp_path / "packed.tflite", tmp_path / "decoded.tflite"
    code, out, err = run(capsys, "pack", paths[kind], packed)
    assert code == 0, err
    size_in, size_out = os.path.getsize(paths[kind]), os.path.getsize(packed)
    assert size_out < size_in
    assert f"({size_in:,} B) -> {packed} ({size_out:,} B): {size_in - size_out:,} B smaller" in out
    assert is_packed(packed.read_bytes())
    assert run(capsys, "decode", packed, decoded)[0] == 0
    want = plain_outputs(paths[kind], x)
    np.testing.assert_array_equal(outputs(tfdc.load_interpreter(str(packed)), x), want)
    np.testing.assert_array_equal(plain_outputs(str(decoded), x), want)
    assert not list(tmp_path.glob("*.tmp"))


def test_report_lists_the_packed_layers(capsys, tmp_path, inputs):
    paths, _ = inputs
    code, out, _ = run(capsys, "pack", paths["int8"], tmp_path / "p.tflite", "--report")
    assert code == 0
    assert "fc1" in out and "Rate P+Q+H" in out and "B smaller" in out


def test_nothing_gained_writes_the_input_unchanged(capsys, tmp_path, inputs):
    import tfdc
    from tfdc.tflite_schema import constant_model
    paths, x = inputs
    # Random dense float32 weights still pack smaller (their exponent bytes
    # code well and the flatbuffer is deflated) and run bit-identically.
    packed = tmp_path / "random.packed.tflite"
    code, out, err = run(capsys, "pack", paths["random"], packed)
    assert code == 0, err
    assert os.path.getsize(packed) < os.path.getsize(paths["random"]) and "B smaller" in out
    np.testing.assert_array_equal(outputs(tfdc.load_interpreter(str(packed)), x),
                                  plain_outputs(paths["random"], x))
    # With every buffer left inline, only the compressed flatbuffer gains.
    inline = tmp_path / "inline.tflite"
    code, out, err = run(capsys, "pack", paths["random"], inline, "--min-bytes", "100000000")
    assert code == 0, err
    assert "no weight buffer coded: the gain is the compressed flatbuffer" in out
    np.testing.assert_array_equal(outputs(tfdc.load_interpreter(str(inline)), x),
                                  plain_outputs(paths["random"], x))
    # Incompressible bytes in a tiny model: packing would only add bytes, so
    # the input is written unchanged.
    noise = np.random.default_rng(0).integers(0, 256, 1024, dtype=np.uint8)
    source = tmp_path / "noise.tflite"
    source.write_bytes(constant_model([noise]))
    out_path = tmp_path / "same.tflite"
    code, out, err = run(capsys, "pack", source, out_path, "--no-strip-debug")
    assert code == 0, err
    assert out_path.read_bytes() == source.read_bytes()
    assert "nothing gained" in out and "wrote the input unchanged" in out
    assert err == ""


def test_options_reach_the_packer(capsys, tmp_path, inputs):
    import tfdc
    paths, x = inputs
    want = plain_outputs(paths["float"], x)
    default = tmp_path / "default.tflite"
    assert run(capsys, "pack", paths["float"], default)[0] == 0
    lossless = {
        "select": ["--select", "fc1"],
        "gap": ["--gap-alphabet", "4"],
        "block": ["--block", "16"],
        "min_bytes": ["--min-bytes", "100000", "--no-strip-debug"],
        "debug": ["--no-strip-debug"],
    }
    sizes = {}
    for name, options in lossless.items():
        path = tmp_path / f"{name}.tflite"
        code, _, err = run(capsys, "pack", paths["float"], path, *options)
        assert code == 0, err
        np.testing.assert_array_equal(outputs(tfdc.load_interpreter(str(path)), x), want)
        sizes[name] = os.path.getsize(path)
        if name == "select":
            assert [layer.name for layer in tfdc.inspect(str(path)).layers] == ["fc1"]
    base = os.path.getsize(default)
    assert sizes["select"] > base and sizes["debug"] > base and sizes["block"] > base
    # No buffer that large: none is coded, only the flatbuffer is compressed.
    assert tfdc.inspect(str(tmp_path / "min_bytes.tflite")).layers == []
    assert sizes["min_bytes"] > base
    # Lossy options: the model still runs and stays close.
    for options in (["--weights", "int8"], ["--codebook-fp16"]):
        path = tmp_path / "lossy.tflite"
        code, out, err = run(capsys, "pack", paths["float"], path, *options)
        assert code == 0, err
        got = outputs(tfdc.load_interpreter(str(path)), x).view(np.float32)
        np.testing.assert_allclose(got, want.view(np.float32), rtol=0.05, atol=0.05)
        # The summary says which kernels lost float32 precision (it said only
        # "N buffers packed", or "no weight buffer coded" for small ones).
        converted = "float32 kernels stored as int8 codes (--weights int8: one scale per tensor"
        assert (converted in out) == (options[0] == "--weights"), out
    report = tfdc.export_tflite(paths["float"], tmp_path / "api.tflite", weights="int8")
    assert [name.split("/")[1] for name in report.int8_weights] == ["fc1_1", "fc2_1"]
    assert report.to_dict()["int8_weights"] == report.int8_weights
    assert tfdc.export_tflite(paths["float"], tmp_path / "api.tflite").int8_weights == []


@pytest.mark.parametrize("argv, message", [
    (["--gap-alphabet", "3"], "power of two"),
    (["--gap-alphabet", "65536"], "power of two"),
    (["--block", "0"], "must be in 1.."),
    (["--min-bytes", "-1"], "must be >= 0"),
    (["--select", "fc1("], "not a regular expression"),
    (["--weights", "int4"], "invalid choice"),
])
def test_bad_options_are_usage_errors(capsys, tmp_path, inputs, argv, message):
    paths, _ = inputs
    with pytest.raises(SystemExit) as exit_info:
        main(["pack", paths["float"], str(tmp_path / "o.tflite")] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_refuses_packed_and_decoded_files(capsys, tmp_path, inputs):
    paths, _ = inputs
    packed, decoded = tmp_path / "packed.tflite", tmp_path / "decoded.tflite"
    assert run(capsys, "pack", paths["float"], packed)[0] == 0
    assert run(capsys, "decode", packed, decoded)[0] == 0
    out_path = tmp_path / "again.tflite"
    code, _, err = run(capsys, "pack", packed, out_path)
    assert_one_line_error(code, err, "packed.tflite", "already tfdc-packed")
    # A decoded file packs again, to the same bytes (FORMAT.md §10; the
    # command line refused it while tfdc.export_tflite took it).
    assert run(capsys, "pack", decoded, out_path)[0] == 0
    assert out_path.read_bytes() == packed.read_bytes()
    out_path.unlink()
    # A truncated packed file: the decoder's reason, as inspect / decode give it.
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(packed.read_bytes()[:-100])
    code, _, err = run(capsys, "pack", truncated, out_path)
    assert_one_line_error(code, err, "truncated.tflite", "not a valid tfdc-packed file: section",
                          "does not end the", "(truncated")
    assert err == run(capsys, "decode", truncated, out_path)[2]
    assert not out_path.exists()


def test_refuses_files_that_are_not_tflite(capsys, tmp_path, inputs):
    paths, _ = inputs
    out_path = tmp_path / "o.tflite"
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    assert_one_line_error(*run(capsys, "pack", text, out_path)[::2], "notes.txt", "TFL3")
    data = open(paths["float"], "rb").read()
    for name, bad in (("truncated", data[:len(data) // 2]), ("header_only", data[:64])):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(bad)
        code, _, err = run(capsys, "pack", path, out_path)
        assert_one_line_error(code, err, f"{name}.tflite", "a damaged or truncated .tflite file")
    # A buffer outside the flatbuffer (offset, size) that claims 1 TiB: it
    # said "a buffer's offset (64) points past the end", the offset in range
    # and no path named.
    from tfdc import tflite_schema
    model = tflite_schema.read(tflite_schema.constant_model([np.ones((64, 64), np.float32)]))
    model.buffers[1].data = None
    model.buffers[1].offset, model.buffers[1].size = 64, 2 ** 40
    (tmp_path / "offset.tflite").write_bytes(tflite_schema.build(model))
    assert_one_line_error(*run(capsys, "pack", tmp_path / "offset.tflite", out_path)[::2],
                          "offset.tflite: not a valid .tflite file: a buffer's data "
                          "(1,099,511,627,776 B at offset 64) runs past the end of the")
    assert_one_line_error(*run(capsys, "pack", tmp_path / "missing.tflite", out_path)[::2],
                          "missing.tflite", "no such file")
    assert_one_line_error(*run(capsys, "pack", tmp_path, out_path)[::2], "is a directory")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")  # was "no such file"
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    assert_one_line_error(*run(capsys, "pack", tmp_path / "loop1", out_path)[::2], "loop1",
                          "a symbolic link to nothing (its target is missing, or the links "
                          "form a loop)")
    assert not out_path.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_refuses_bad_output_paths(capsys, tmp_path, inputs):
    paths, _ = inputs
    code, _, err = run(capsys, "pack", paths["float"], tmp_path / "no" / "o.tflite")
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(capsys, "pack", paths["float"], tmp_path)
    assert_one_line_error(code, err, "is a directory")
    copy = tmp_path / "model.tflite"
    copy.write_bytes(open(paths["float"], "rb").read())
    link = tmp_path / "link.tflite"
    link.symlink_to(copy)
    code, _, err = run(capsys, "pack", copy, link)
    assert_usage_error(code, err, "OUT is IN")
    assert copy.read_bytes() == open(paths["float"], "rb").read()


def test_a_link_stays_a_link_and_a_pipe_is_written_through(capsys, tmp_path, inputs):
    """OUT a symbolic link: the file it points to is replaced, the link
    kept; OUT a FIFO (or a device, /dev/stdout): written through, and the
    summary line goes to standard error. Before, each was replaced by a
    regular file (as root, `tfdc pack IN /dev/null` replaced /dev/null)."""
    import threading
    paths, _ = inputs
    target, link = tmp_path / "target.tflite", tmp_path / "link.tflite"
    target.write_bytes(b"old")
    link.symlink_to(target.name)
    code, out, err = run(capsys, "pack", paths["float"], link)
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes()[4:8] == b"TFL3"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, out, err = run(capsys, "pack", paths["float"], fifo)
    reader.join(timeout=60)
    assert code == 0, err
    assert received == [target.read_bytes()]
    assert out == "" and f"-> {fifo} ({len(received[0]):,} B): " in err
    assert fifo.is_fifo() and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("offsets", ["from the archive", "from the file"])
def test_a_zip_appended_to_the_model_is_kept(capsys, tmp_path, inputs, offsets):
    # TFLite metadata's associated files (labels, vocabularies) are a zip
    # after the flatbuffer; tflite_support's populator (as Python's zipfile
    # in "a" mode) counts its offsets from the file's start. Pack dropped it
    # and counted its bytes as gain.
    import io
    import struct
    import zipfile

    import tfdc
    paths, x = inputs
    model = open(paths["float"], "rb").read()
    buf = io.BytesIO()
    if offsets == "from the file":
        buf.write(model)
    with zipfile.ZipFile(buf, "a" if offsets == "from the file" else "w") as archive:
        archive.writestr("labels.txt", "cat\ndog\n")
        archive.writestr("vocab.txt", "x y z\n" * 40)
    plain = tmp_path / "labelled.tflite"
    plain.write_bytes(buf.getvalue() if offsets == "from the file" else model + buf.getvalue())
    packed, decoded = tmp_path / "packed.tflite", tmp_path / "decoded.tflite"
    code, out, err = run(capsys, "pack", plain, packed)
    assert code == 0, err
    assert "zip archive appended to it (TFLite metadata's associated files) kept" in out
    assert run(capsys, "decode", packed, decoded)[0] == 0
    data = decoded.read_bytes()
    with zipfile.ZipFile(decoded) as archive:
        assert archive.read("labels.txt") == b"cat\ndog\n" and archive.testzip() is None
    # The archive ends the decoded file, its offsets right where it landed
    # (a reader that does not compensate, as Python's zipfile does, needs it).
    end = data.rfind(b"PK\x05\x06")
    _, _, _, _, _, size, offset, _ = struct.unpack_from("<IHHHHIIH", data, end)
    assert end + 22 == len(data)
    assert offset == (end - size if offsets == "from the file" else
                      end - size - data.index(b"PK\x03\x04", len(data) - len(buf.getvalue())))
    np.testing.assert_array_equal(plain_outputs(str(decoded), x), plain_outputs(paths["float"], x))
    np.testing.assert_array_equal(outputs(tfdc.load_interpreter(str(packed)), x),
                                  plain_outputs(paths["float"], x))
    # Read back, the archive is named as packing named it (it read "buffer 13").
    assert [c.name for c in tfdc.inspect(packed).constants] == ["tfdc.appended"]
    # The decoded file packs again to the same bytes; int8 weights keep it too.
    assert run(capsys, "pack", decoded, tmp_path / "again.tflite")[0] == 0
    assert (tmp_path / "again.tflite").read_bytes() == packed.read_bytes()
    if offsets == "from the archive":
        # Labels appended after packing: the file cannot load, and says why.
        late = tmp_path / "late.tflite"
        late.write_bytes(packed.read_bytes() + buf.getvalue())
        code, _, err = run(capsys, "decode", late, tmp_path / "late.d.tflite")
        assert_one_line_error(code, err, "a zip archive was appended after packing: append it "
                              "to the plain .tflite before tfdc pack")
    assert run(capsys, "pack", "--weights", "int8", plain, tmp_path / "int8.tflite")[0] == 0
    assert run(capsys, "decode", tmp_path / "int8.tflite", tmp_path / "int8.d.tflite")[0] == 0
    with zipfile.ZipFile(tmp_path / "int8.d.tflite") as archive:
        assert archive.read("labels.txt") == b"cat\ndog\n"


def test_int8_weights_that_change_nothing_are_told(capsys, tmp_path, inputs):
    # --weights int8 on a model with no clustered kernel did nothing silently.
    paths, _ = inputs
    code, _, err = run(capsys, "pack", "--weights", "int8", paths["random"], tmp_path / "o.tflite")
    assert code == 0 and "weights='int8' changed nothing: no float32 kernel of this model is " \
        "clustered (at most 256 distinct values, each shared by several weights" in err
    code, _, err = run(capsys, "pack", "--weights", "int8", paths["float"], tmp_path / "p.tflite")
    assert code == 0 and "changed nothing" not in err
    # A small trained kernel has at most 256 values without sharing any (a
    # 3x3x16 conv's 144): it was rounded to int8 codes, up to 0.02 off.
    import keras

    from tfdc.exporter import convert
    keras.utils.set_random_seed(0)
    small = tmp_path / "small.tflite"
    small.write_bytes(convert(keras.Sequential([keras.Input((8, 8, 1)),
                                                keras.layers.Conv2D(16, 3, name="conv")])))
    code, _, err = run(capsys, "pack", "--weights", "int8", small, tmp_path / "s.tflite")
    assert code == 0 and "weights='int8' changed nothing: no float32 kernel" in err
    # A full-integer one, whose kernels are int8 already, was told to
    # cluster them.
    from tfdc.quantize import configure_full_integer
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    full_integer = tmp_path / "full_integer.tflite"
    full_integer.write_bytes(convert(_model(), configure=lambda c: configure_full_integer(
        c, lambda: ([row[None]] for row in x))))
    code, _, err = run(capsys, "pack", "--weights", "int8", full_integer, tmp_path / "q.tflite")
    assert code == 0 and ("weights='int8' changed nothing: this model has no float32 kernel of "
                          "64 B or more (its weights are integers already") in err


def test_sigterm_is_an_interrupt_with_its_own_exit_status(tmp_path, inputs):
    # SIGTERM killed tfdc outright: the temporary file of a write in progress
    # (and tfdc compress's run folder) stayed behind. It is now an interrupt
    # that runs the cleanup, exit status 128 + 15. Deterministic: tfdc is
    # stopped while it reads IN from a FIFO whose writer has sent 8 bytes.
    import signal
    import subprocess
    import sys
    import time
    paths, _ = inputs
    fifo, out = tmp_path / "in.tflite", tmp_path / "out" / "o.tflite"
    os.mkfifo(fifo)
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tfdc.cli import main; "
                             f"sys.exit(main(['pack', {str(fifo)!r}, {str(out)!r}]))"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:  # a FIFO opens for writing once its reader has opened it
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
    try:
        os.write(writer, open(paths["float"], "rb").read(8))
        time.sleep(0.5)  # into the read of the rest
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "tfdc: terminated (SIGTERM)"
    assert os.listdir(out.parent) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one
def test_an_interrupt_python_drops_still_stops_the_command(tmp_path, inputs, capsys,
                                                           monkeypatch):
    """Python drops an exception raised in a weakref callback ("Exception
    ignored in ..."): a Ctrl-C landing there was lost, and tfdc compress went
    on to replace OUT and exit 0. The signal is noted, and raised again
    before the file is written. Here the real SIGINT arrives while a real
    weakref callback runs, just after the output check."""
    import gc
    import signal
    import weakref
    import tfdc.cli
    paths, _ = inputs
    out = tmp_path / "o.tflite"
    out.write_bytes(b"old")
    check = tfdc.cli._check_output

    def check_then_interrupt(args):
        check(args)

        class Thing:
            pass

        thing = Thing()
        weakref.finalize(thing, signal.raise_signal, signal.SIGINT)
        del thing
        gc.collect()

    monkeypatch.setattr(tfdc.cli, "_check_output", check_then_interrupt)
    # Python's own handler, whatever this process inherited: a shell starts
    # a background job (`pytest &`) with SIGINT ignored, and there the run
    # below rightly went on (as the end of this test checks).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, _, err = run(capsys, "pack", paths["float"], out)
        assert code == 130 and err.strip().splitlines()[-1] == "tfdc: interrupted"
        assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["o.tflite"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # Ignored (nohup, a background job): tfdc leaves it so, and the
        # command ends as if no signal came.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert run(capsys, "pack", paths["float"], out)[0] == 0
        assert out.read_bytes() != b"old"
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)
    # The record ends with the command: the next one runs.
    monkeypatch.undo()
    out.write_bytes(b"old")
    assert run(capsys, "pack", paths["float"], out)[0] == 0 and out.read_bytes() != b"old"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_standard_output_is_named(inputs):
    # "tfdc: error: [Errno 28] No space left on device", and no more.
    import subprocess
    import sys
    paths, _ = inputs
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", "import sys; from tfdc.cli import main; "
                               f"sys.exit(main(['inspect', {paths['float']!r}]))"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr == "tfdc: error: standard output: No space left on device\n"


def test_a_reader_that_leaves_is_no_error_message(tmp_path, inputs):
    # `tfdc inspect m.tflite | head -1` printed "tfdc: error: [Errno 32]
    # Broken pipe" when head left first. The reader here leaves at once.
    import subprocess
    import sys
    paths, _ = inputs
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-c", "import sys; from tfdc.cli import main; "
                           f"sys.exit(main(['inspect', {paths['float']!r}]))"],
                          stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr


def test_negative_zeros_are_kept_and_what_they_cost_is_said(capsys, tmp_path):
    """A pruning mask multiplied into the weights (tfmot's) leaves -0.0 where
    it pruned a negative weight: kept (lossless, the default) they were coded
    as values, a file twice as large, and nothing said so."""
    from tfdc.exporter import convert
    model, rng = _model(kept=1.0), np.random.default_rng(2)
    masked = {}
    for layer in model.layers:
        k = layer.kernel.numpy()
        masked[layer.name] = k * (rng.random(k.shape) < 0.1)  # -0.0 for a negative k
        layer.kernel.assign(masked[layer.name])
    plain = tmp_path / "masked.tflite"
    plain.write_bytes(convert(model))
    kept, zeroed = tmp_path / "kept.tflite", tmp_path / "zero.tflite"
    code, text, err = run(capsys, "pack", plain, kept)
    assert code == 0, err
    count = sum(int(np.sum(np.signbit(k) & (k == 0))) for k in masked.values())
    assert f"tfdc: warning: {count:,} float weights are -0.0 (" in err
    assert "--negative-zeros zero stores them as 0.0 (equal as numbers)" in err
    x = np.random.default_rng(1).normal(size=(8, 64)).astype("float32")
    from tfdc.runtime import load_interpreter
    assert np.array_equal(outputs(load_interpreter(str(kept)), x), plain_outputs(str(plain), x))
    code, text, err = run(capsys, "pack", plain, zeroed, "--negative-zeros", "zero")
    assert code == 0 and "warning" not in err, err
    assert os.path.getsize(zeroed) < 0.8 * os.path.getsize(kept)
    # The same file as the model pruned with zeros of the right sign, and
    # equal outputs (as numbers: a zero's sign is all that may differ).
    for layer in model.layers:
        layer.kernel.assign(np.where(masked[layer.name] == 0, np.float32(0), masked[layer.name]))
    plus = tmp_path / "plus.tflite"
    plus.write_bytes(convert(model))
    code, _, err = run(capsys, "pack", plus, tmp_path / "plus.packed.tflite")
    assert code == 0 and "warning" not in err, err
    assert (tmp_path / "plus.packed.tflite").read_bytes() == zeroed.read_bytes()
    assert np.array_equal(outputs(load_interpreter(str(zeroed)), x).view(np.float32),
                          plain_outputs(str(plain), x).view(np.float32))


def test_a_dash_is_standard_input_or_output(tmp_path, inputs):
    # `tfdc decode p.tflite -` wrote a file named "-", and `tfdc pack - OUT`
    # said "-: no such file".
    import subprocess
    import sys
    paths, _ = inputs

    def cli(*argv, stdin=b"", stdout=subprocess.PIPE):
        return subprocess.run([sys.executable, "-c", "import sys; from tfdc.cli import main; "
                               f"sys.exit(main({list(argv)!r}))"], input=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=300, cwd=tmp_path)

    plain = open(paths["float"], "rb").read()
    packed = cli("pack", "-", "-", stdin=plain)
    assert packed.returncode == 0, packed.stderr
    assert packed.stderr.startswith(b"standard input (") and b"-> standard output (" in \
        packed.stderr
    cli("pack", paths["float"], str(tmp_path / "p.tflite"))
    assert packed.stdout == (tmp_path / "p.tflite").read_bytes()
    decoded = cli("decode", "-", "-", stdin=packed.stdout)
    assert decoded.returncode == 0 and decoded.stdout[4:8] == b"TFL3"
    shown = cli("inspect", "-", stdin=packed.stdout)
    assert shown.returncode == 0 and b"Dense float32 / packed" in shown.stdout
    # Standard output redirected to a file, appending (`>> log`): written
    # as it is (through /dev/stdout the file was replaced by a rename, what
    # it held lost, and the summary line went nowhere).
    log = tmp_path / "log"
    for name in ("-", "/dev/stdout"):  # standard output by its other name too
        log.write_bytes(b"HEAD\n")
        with open(log, "ab") as f:
            appended = cli("pack", paths["float"], name, stdout=f)
        assert appended.returncode == 0 and b"-> standard output (" in appended.stderr
        assert log.read_bytes() == b"HEAD\n" + packed.stdout
    log.unlink()
    # A closed stream is named (a traceback, or "a terminal"), and a short
    # write is an error (it reported success over a cut file).
    closed = subprocess.run([sys.executable, "-c", "import os, sys; os.close(1); sys.stdout = "
                             "None; from tfdc.cli import main; sys.exit(main(['inspect', "
                             f"{paths['float']!r}]))"], stderr=subprocess.PIPE, timeout=300)
    assert closed.returncode == 1 and b"standard output is closed" in closed.stderr
    no_input = subprocess.run([sys.executable, "-c", "import os, sys; os.close(0); sys.stdin = "
                               "None; from tfdc.cli import main; sys.exit(main(['pack', '-', "
                               "'x.tflite']))"], stderr=subprocess.PIPE, timeout=300,
                              cwd=tmp_path)
    assert no_input.returncode == 2 and b"'-' is standard input, which is closed here" in \
        no_input.stderr
    # Errors call it what the summary line calls it (they said /dev/stdin).
    junk = cli("inspect", "-", stdin=b"junk")
    assert junk.returncode == 1 and junk.stderr.endswith(
        b"tfdc: error: standard input: not a .tflite file (4 bytes, shorter than a .tflite "
        b"header)\n"), junk.stderr
    full = cli("decode", "-", "-", stdin=packed.stdout, stdout=open("/dev/full", "wb"))
    assert full.returncode == 1 and b"standard output: cannot write: No space left" in \
        full.stderr
    # A terminal is refused, as gzip refuses it; compress cannot write "-".
    import pty
    leader, follower = pty.openpty()
    try:
        to_terminal = cli("pack", paths["float"], "-", stdout=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert to_terminal.returncode == 2 and b"OUT is standard output, a terminal here" in \
        to_terminal.stderr
    assert sorted(os.listdir(tmp_path)) == ["p.tflite"]  # no file named "-"
