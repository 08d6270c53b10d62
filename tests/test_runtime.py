"""tfdc.load_interpreter: packed and plain files in the real LiteRT interpreter."""

import gc
import os
import re

import keras
import numpy as np
import pytest
from keras import layers

import tfdc
from tfdc.exporter import convert
from tfdc.runtime import interpreter_class, is_decoded, load_interpreter


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((32,)), layers.Dense(128, activation="relu", name="fc1"),
                              layers.Dense(10, name="fc2")])
    rng = np.random.default_rng(0)
    for variable in model.weights:
        w = rng.normal(0, 0.3, tuple(variable.shape)).astype("float32")
        if w.ndim == 2:
            codebook = rng.normal(0, 0.3, 16).astype("float32")
            w = np.where(rng.random(w.shape) < 0.2, codebook[rng.integers(0, 16, w.shape)], 0)
        variable.assign(w.astype("float32"))
    directory = tmp_path_factory.mktemp("runtime")
    plain = convert(model)
    (directory / "plain.tflite").write_bytes(plain)
    tfdc.export(model, directory / "packed.tflite")
    return {"plain": directory / "plain.tflite", "packed": directory / "packed.tflite",
            "x": rng.normal(size=(1, 32)).astype("float32")}


def invoke(interpreter, x):
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def test_uses_the_maintained_litert_runtime():
    from ai_edge_litert.interpreter import Interpreter
    assert interpreter_class() is Interpreter


def test_packed_file_runs_like_the_plain_one(files):
    packed_out = invoke(load_interpreter(files["packed"]), files["x"])
    plain_out = invoke(load_interpreter(files["plain"]), files["x"])
    np.testing.assert_array_equal(packed_out.view(np.uint32), plain_out.view(np.uint32))
    # bytes and paths, both decoders
    data = files["packed"].read_bytes()
    for backend in ("auto", "python"):
        out = invoke(load_interpreter(data, backend=backend), files["x"])
        np.testing.assert_array_equal(out.view(np.uint32), plain_out.view(np.uint32))


def test_plain_file_is_loaded_unchanged(files):
    interpreter = load_interpreter(files["plain"])
    assert interpreter.tfdc_model_content == files["plain"].read_bytes()


def test_decoded_bytes_live_as_long_as_the_interpreter(files):
    interpreter = load_interpreter(str(files["packed"]), num_threads=1)
    expected = invoke(interpreter, files["x"])
    assert isinstance(interpreter.tfdc_model_content, bytes)
    assert interpreter.tfdc_model_content == tfdc.decode(files["packed"].read_bytes())
    gc.collect()
    # Garbage in freed memory would change the outputs.
    junk = [bytearray(b"\xff" * 4096) for _ in range(256)]  # noqa: F841
    np.testing.assert_array_equal(invoke(interpreter, files["x"]), expected)


@pytest.mark.parametrize("threads", [16384, 2 ** 31, -1, 0, 2.0, True])
def test_num_threads_out_of_range_is_a_value_error(files, threads):
    # 16384 threads crashed the process in LiteRT (a segmentation fault);
    # its Python interpreter takes 1 or more ("num_threads should >= 1").
    message = ("num_threads must be an int from 1 to 1024 (None: the runtime's default), got "
               f"{threads!r}")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_interpreter(files["plain"], num_threads=threads)


@pytest.mark.parametrize("threads", [1, 1024, np.int64(2), None])
def test_num_threads_in_range_loads(files, threads):
    # A numpy integer failed in LiteRT: "type of num_threads should be int".
    interpreter = load_interpreter(files["plain"], num_threads=threads)
    interpreter.allocate_tensors()


def test_stock_interpreter_refuses_the_packed_file_loudly(files):
    data = files["packed"].read_bytes()
    with pytest.raises((ValueError, RuntimeError)) as excinfo:
        interpreter = interpreter_class()(model_content=data)
        interpreter.allocate_tensors()
    assert "offset" in str(excinfo.value).lower() or "buffer" in str(excinfo.value).lower()
    import tensorflow as tf
    with pytest.raises((ValueError, RuntimeError)):
        interpreter = tf.lite.Interpreter(model_content=data)
        interpreter.allocate_tensors()


def test_corrupted_file_raises_format_error(files):
    data = bytearray(files["packed"].read_bytes())
    data[len(data) // 2 + 7] ^= 0x10
    with pytest.raises(tfdc.FormatError):
        load_interpreter(bytes(data))
    with pytest.raises(tfdc.FormatError):
        load_interpreter(bytes(data[:-1]))
    # A truncated plain model: LiteRT's own ValueError, as the documented FormatError.
    plain = files["plain"].read_bytes()
    with pytest.raises(tfdc.FormatError, match="LiteRT cannot load it: .*damaged or truncated"):
        load_interpreter(plain[:len(plain) // 2])


def test_bad_argument_type():
    with pytest.raises(TypeError, match="path or the bytes"):
        load_interpreter(12345)


def test_every_bytes_like_input_and_the_size_limit(files):
    # mmap, NumPy uint8 arrays and array.array were refused ("expected a
    # path or bytes ... got mmap"), though the docstrings said bytes-like;
    # a path given as bytes was read as the model ("not TFL3").
    import array
    import mmap
    x = files["x"]
    packed = files["packed"].read_bytes()
    expected = tfdc.decode(packed)
    with open(files["packed"], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for data in (m, np.frombuffer(packed, np.uint8), array.array("B", packed)):
            assert tfdc.is_packed(data)
            assert tfdc.decode(data) == tfdc.decode(data, backend="python") == expected
            np.testing.assert_array_equal(invoke(load_interpreter(data), x),
                                          invoke(load_interpreter(packed), x))
    strided = np.repeat(np.frombuffer(packed, np.uint8), 2)[::2]  # was refused too
    assert tfdc.decode(strided) == expected
    for name in (os.fsencode(files["packed"]), b"missing.tflite"):
        with pytest.raises(TypeError, match="which look like a file name: a path is a str"):
            tfdc.decode(name)
    # And the reverse: the bytes decoded to a str were opened as a path
    # ("ValueError: embedded null byte").
    for text in (packed.decode("latin1"), expected.decode("latin1")):
        for call in (tfdc.decode, tfdc.is_packed, load_interpreter):
            with pytest.raises(TypeError, match=r"got a str of [\d,]+ characters that holds no "
                               "file name .*: a str is a path; pass the model's bytes as bytes"):
                call(text)
    # The decoded-size limit through load_interpreter (it had no way to set
    # one), and the interpreter arguments it sets itself.
    with pytest.raises(tfdc.FormatError, match="exceeds the limit") as e:
        load_interpreter(packed, max_size=len(expected) - 1)
    assert e.value.status == "too_large"
    assert invoke(load_interpreter(packed, max_size=len(expected)), x).shape == (1, 10)
    with pytest.raises(TypeError, match="load_interpreter sets model_content itself"):
        load_interpreter(packed, model_content=packed)


def test_an_already_decoded_file_loads_as_it_is(files):
    from tfdc.runtime import is_decoded
    packed = files["packed"].read_bytes()
    decoded = tfdc.decode(packed)
    assert is_decoded(decoded) and not is_decoded(packed)
    assert not is_decoded(files["plain"].read_bytes())
    interpreter = load_interpreter(decoded)
    assert interpreter.tfdc_model_content is not None
    np.testing.assert_array_equal(invoke(interpreter, files["x"]).view(np.uint32),
                                  invoke(load_interpreter(packed), files["x"]).view(np.uint32))
    # A truncated decoded file is refused with a FormatError, not by LiteRT.
    with pytest.raises(tfdc.FormatError, match="cut off"):
        load_interpreter(decoded[:-1])


def test_empty_and_non_tflite_files_are_named(tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(tfdc.FormatError, match=r"empty.tflite: not a .tflite file \(an empty "
                                               r"file\)"):
        load_interpreter(empty)
    with pytest.raises(tfdc.FormatError, match="no TFL3"):
        load_interpreter(b"PK\x03\x04 not a model")
    # One wording for every reader, the path named where one was given.
    short = tmp_path / "short.tflite"
    short.write_bytes(b"TFL3")
    for read in (load_interpreter, tfdc.inspect, tfdc.export_tflite):
        args = (short,) if read is not tfdc.export_tflite else (short, tmp_path / "o.tflite")
        with pytest.raises(tfdc.FormatError, match=r"short.tflite: not a .tflite file \(4 "
                                                   r"bytes, shorter than a .tflite header\)"):
            read(*args)


def test_what_is_no_tflite_is_refused_before_it_is_read(tmp_path, files):
    # /dev/zero grew to 21 GB in memory, a 3 GB sparse file was read whole
    # before its first bytes were looked at.
    import tracemalloc
    from tfdc.runtime import read_model_bytes
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: no disk used
    tracemalloc.start()
    try:
        for path in (big, "/dev/zero"):
            with pytest.raises(tfdc.FormatError, match=f"{path}: not a .tflite file"):
                read_model_bytes(path)
            assert not tfdc.is_packed(path) and not is_decoded(path)
            for call in (load_interpreter, tfdc.decode, tfdc.inspect):
                with pytest.raises(tfdc.FormatError, match="not a .tflite file"):
                    call(path)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    # A real header: the file is read with one allocation of its size (head
    # + rest held a 3 GB file twice).
    with open(big, "wb") as f:
        f.write(files["plain"].read_bytes()[:8])
        f.truncate(64 << 20)
    tracemalloc.start()
    try:
        assert len(read_model_bytes(big)) == 64 << 20
        assert tracemalloc.get_traced_memory()[1] < 96 << 20
    finally:
        tracemalloc.stop()
    # A pipe is read as a file is.
    packed = files["packed"].read_bytes()
    assert len(packed) < 65536  # fits a pipe's buffer: written before it is read
    read, write = os.pipe()
    os.write(write, packed)
    os.close(write)
    assert read_model_bytes(f"/proc/self/fd/{read}") == packed
    os.close(read)


def test_a_damaged_section_key_is_a_format_error(files):
    data = bytearray(files["packed"].read_bytes())
    data[data.index(b"tfdc.v2") + 3] ^= 0x01
    with pytest.raises(tfdc.FormatError, match="damaged tfdc-packed file"):
        load_interpreter(bytes(data))
