"""Tests of the native C decoder (tfdc/native): the CMake build and its C
tests (plain and under ASan + UBSan), valgrind on the CLI, a short libFuzzer
run, and byte-for-byte agreement of the C and NumPy decoders on real packed
models and their corrupted variants."""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfdc.errors import FormatError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "tfdc", "native")
CORPUS = sorted(glob.glob(os.path.join(NATIVE, "fuzz", "corpus", "*.tflite")))
V1_DATA = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "v1", "*.tflite")))


def _version(path):
    from tfdc.unpack import section_span
    span = section_span(open(path, "rb").read())
    return span[0] if span else None


V1_CORPUS = [p for p in CORPUS if _version(p) == 1]
V2_CORPUS = [p for p in CORPUS if _version(p) == 2]


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _cmake_build(build_dir, *options):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    _run(["cmake", "-S", NATIVE, "-B", build_dir, *options])
    _run(["cmake", "--build", build_dir, "-j2"])
    return build_dir


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return _cmake_build(str(tmp_path_factory.mktemp("native_build")), "-DCMAKE_BUILD_TYPE=Release")


@pytest.fixture(scope="module")
def native():
    """The real compiled extension; built in place if it is not yet."""
    try:
        from tfdc import _native
    except ImportError:
        script = ("from setuptools import setup, Extension\n"
                  "setup(name='tfdc_native', script_args=['build_ext', '--inplace', '-q'],\n"
                  "      ext_modules=[Extension('tfdc._native', ['tfdc/native/tfdc_decode.c',\n"
                  "      'tfdc/native/pymodule.c'], include_dirs=['tfdc/native'],\n"
                  "      libraries=['z'], extra_compile_args=['-O2', '-std=c99'])])\n")
        _run([sys.executable, "-c", script], cwd=ROOT)
        from tfdc import _native
    return _native


def _pruned_clustered(shape, rng, sparsity, bits):
    """Laplacian weights, magnitude-pruned, snapped to 2**bits shared values."""
    w = rng.laplace(0, 0.05, size=shape).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0
    nz = w != 0
    centers = np.quantile(w[nz], np.linspace(0, 1, 2 ** bits)).astype(np.float32)
    w[nz] = centers[np.abs(w[nz][:, None] - centers[None]).argmin(1)]
    return w


@pytest.fixture(scope="module")
def packed_models():
    """Packed files from `tfdc.pack.pack_tflite` on small converted Keras
    models with pruned + clustered weights (a dense MLP and a small CNN)."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    from tfdc.pack import pack_tflite
    rng = np.random.default_rng(0)
    models = [
        keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                          keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)]),
        keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(20, 5, activation="relu"),
                          keras.layers.MaxPooling2D(), keras.layers.Conv2D(50, 5, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(64), keras.layers.Dense(10)]),
    ]
    out = []
    for i, model in enumerate(models):
        for layer in model.layers:
            if layer.weights:
                k, b = layer.get_weights()
                layer.set_weights([_pruned_clustered(k.shape, rng, 0.85 if i == 0 else 0.6,
                                                     5 if k.ndim == 2 else 8), b])
        tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        packed, _ = pack_tflite(tflite)
        out.append((tflite, bytes(packed)))
    return out


def test_ctest_release(build_dir):
    _run(["ctest", "--test-dir", build_dir, "--output-on-failure"])


def test_ctest_asan_ubsan(tmp_path):
    build = _cmake_build(str(tmp_path / "asan"), "-DTFDC_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug")
    _run(["ctest", "--test-dir", build, "--output-on-failure"])


def test_cli_under_valgrind(build_dir, tmp_path):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed")
    cli = os.path.join(build_dir, "tfdc-decode")
    # Every other format 2 seed (the ASan/UBSan C tests take them all).
    v2 = [p for p in V2_CORPUS if "v2_stored_" not in p][::2]
    inputs = [open(p, "rb").read() for p in V1_DATA + V1_CORPUS[:3] + v2]
    for i, data in enumerate(inputs):
        src, dst = tmp_path / f"in{i}.tflite", tmp_path / f"out{i}.tflite"
        src.write_bytes(data)
        _run(["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
              "--errors-for-leak-kinds=definite,indirect", cli, str(src), str(dst)])
        from tfdc.unpack import decode
        assert dst.read_bytes() == decode(data, backend="python")
    # a corrupted input: one clear line, non-zero exit, no output file
    bad = bytearray(inputs[0])
    bad[len(bad) // 2] ^= 0x10
    src, dst = tmp_path / "bad.tflite", tmp_path / "bad_out.tflite"
    src.write_bytes(bytes(bad))
    proc = subprocess.run(["valgrind", "-q", "--error-exitcode=99", cli, str(src), str(dst)],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("tfdc-decode: cannot decode") and proc.stderr.count("\n") == 1
    assert not dst.exists() and not list(tmp_path.glob("bad_out.tflite.tmp*"))


def test_short_libfuzzer_run(tmp_path):
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not installed")
    probe = subprocess.run([clang, "-fsanitize=fuzzer", "-x", "c", "-", "-o", str(tmp_path / "probe")],
                           input="#include <stdint.h>\n#include <stddef.h>\n"
                                 "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                                 "{(void)d;(void)n;return 0;}\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("clang's libFuzzer runtime is not available")
    script = os.path.join(NATIVE, "fuzz", "run_fuzz.sh")
    # Crash / OOM reproducers go to tmp_path, not the current directory.
    proc = subprocess.run([script, "200000000", str(tmp_path / "fuzz"), "-max_total_time=20",
                           f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr and "ERROR" not in proc.stderr


def test_cli_decodes_format_2_under_valgrind(build_dir, packed_models, tmp_path):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed")
    from tfdc.unpack import decode
    cli = os.path.join(build_dir, "tfdc-decode")
    for i, (_, data) in enumerate(packed_models):
        src, dst = tmp_path / f"in{i}.tflite", tmp_path / f"out{i}.tflite"
        src.write_bytes(data)
        _run(["valgrind", "-q", "--error-exitcode=99", "--leak-check=full", cli, str(src),
              str(dst)])
        assert dst.read_bytes() == decode(data, backend="python")


def test_builder_corpus_matches_python_decoder(native):
    """The C tests' independent encoder and the NumPy decoder agree (format 1
    files; format 2 below)."""
    from tfdc.unpack import decode
    assert V1_CORPUS
    for path in V1_CORPUS:
        data = open(path, "rb").read()
        assert native.is_packed(data)
        out = native.decode(data)
        assert len(out) == native.decoded_size(data)
        assert out == decode(data, backend="python"), path


def test_format_2_corpus_matches_python_decoder(native):
    from tfdc.unpack import decode
    assert len(V2_CORPUS) >= 33
    for path in V2_CORPUS:
        data = open(path, "rb").read()
        assert native.is_packed(data)
        out = native.decode(data)
        assert len(out) == native.decoded_size(data)
        assert out == decode(data, backend="python"), path


def test_packed_models_identical_to_python_decoder(native, packed_models):
    from tfdc.unpack import decode
    for tflite, packed in packed_models:
        assert native.is_packed(packed) and not native.is_packed(tflite)
        out = native.decode(memoryview(packed))
        assert out == decode(packed, backend="python")
        assert len(packed) < len(tflite)


def test_corrupted_models_rejected_by_both(native, packed_models):
    from tfdc.unpack import decode
    rng = np.random.default_rng(1)
    for _, packed in packed_models:
        variants = [packed[:n] for n in (0, 7, 100, len(packed) // 2, len(packed) - 1)]
        for pos in rng.integers(0, len(packed), size=60):
            bad = bytearray(packed)
            bad[pos] ^= 1 << int(rng.integers(8))
            variants.append(bytes(bad))
        variants.append(packed + b"\0")
        for v in variants:
            with pytest.raises(FormatError):
                native.decode(v)
            with pytest.raises(FormatError):
                decode(v, backend="python")


def test_native_error_type_and_message(native):
    with pytest.raises(FormatError, match="flatbuffer") as e:
        native.decode(b"\x00" * 3)
    assert e.value.status == "flatbuffer"
    with pytest.raises(TypeError):
        native.decode("not bytes")
    assert native.is_packed(b"") is False


def test_native_size_limit_is_checked_before_allocating(native):
    from tfdc.unpack import parse
    data = open(V2_CORPUS[0], "rb").read()
    size = native.decoded_size(data)
    meta = len(parse(data).meta)  # the limit covers the inflated meta stream too
    for call in (native.decode, native.decoded_size):
        with pytest.raises(FormatError, match="limit") as e:
            call(data, max_size=size - 1)
        assert e.value.status == "too_large"
    assert len(native.decode(data, max_size=max(size, meta))) == size
    assert len(native.decode(data, max_size=float("inf"))) == size
    with pytest.raises(ValueError, match="max_size"):
        native.decode(data, max_size=-1)
