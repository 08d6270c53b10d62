"""Tests of the native C decoder (tfdc/native): the CMake build and its C
tests (plain and under ASan + UBSan), valgrind on the CLI, a short libFuzzer
run, and byte-for-byte agreement of the C and NumPy decoders on real packed
models and their corrupted variants."""

import glob
import os
import re
import shlex
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
    # The corpus's meta-stream mutants at every second byte (~34,000 decodes,
    # 13 s under ASan instead of 22 s; the suite's time is capped):
    # test_ctest_release takes every byte, the libFuzzer run is sanitized.
    _run(["ctest", "--test-dir", build, "--output-on-failure"],
         env={**os.environ, "TFDC_TEST_META_STRIDE": "2"})


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
    proc = subprocess.run(["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                           "--errors-for-leak-kinds=definite,indirect", cli, str(src), str(dst)],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("tfdc-decode: cannot decode") and proc.stderr.count("\n") == 1
    assert not dst.exists() and not list(tmp_path.glob("bad_out.tflite.tmp*"))


def test_cli_help_and_usage(build_dir):
    # --help was a usage error (exit 2) with one line.
    cli = os.path.join(build_dir, "tfdc-decode")
    for flag in ("--help", "-h"):
        proc = subprocess.run([cli, flag], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == ""
        assert proc.stdout.startswith("usage: tfdc-decode IN.tflite OUT.tflite\n")
        assert "Exit status: 0 decoded, 1 an error" in proc.stdout
    proc = subprocess.run([cli], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "usage: tfdc-decode IN.tflite OUT.tflite (--help: more)\n"


def test_cli_refuses_its_input_as_output_and_writes_through_a_fifo(build_dir, packed_models,
                                                                   tmp_path):
    """OUT = IN replaced the packed file with the decoded one; a directory
    as IN was an 'Input/output error'; a FIFO as OUT became a regular file."""
    import threading
    from tfdc.unpack import decode
    cli = os.path.join(build_dir, "tfdc-decode")
    data = packed_models[0][1]
    src = tmp_path / "in.tflite"
    src.write_bytes(data)
    for args, message in (([src, src], "OUT is IN"), ([tmp_path, tmp_path / "o"], "Is a directory")):
        proc = subprocess.run([cli, *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 1 and message in proc.stderr and proc.stderr.count("\n") == 1
    assert src.read_bytes() == data
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    subprocess.run([cli, str(src), str(fifo)], check=True, timeout=60)
    reader.join(timeout=60)
    assert got == [decode(data, backend="python")] and fifo.is_fifo()


def test_cli_writes_through_a_symbolic_link_and_keeps_the_mode(build_dir, packed_models,
                                                              tmp_path):
    """A link as OUT was replaced by a regular file (its target left as it
    was); `tfdc-decode IN /dev/stdout > FILE` left FILE empty and, run as
    root, made /dev/stdout a regular file. A link to /proc/self/fd/1 stands
    in for /dev/stdout here."""
    from tfdc.unpack import decode
    cli = os.path.join(build_dir, "tfdc-decode")
    data = packed_models[0][1]
    src = tmp_path / "in.tflite"
    src.write_bytes(data)
    expected = decode(data, backend="python")
    target, link = tmp_path / "target.tflite", tmp_path / "link.tflite"
    target.write_bytes(b"old")
    target.chmod(0o600)
    link.symlink_to(target.name)
    subprocess.run([cli, str(src), str(link)], check=True, timeout=60)
    assert link.is_symlink() and target.read_bytes() == expected
    assert target.stat().st_mode & 0o777 == 0o600
    stdout, redirected = tmp_path / "stdout", tmp_path / "redirected.tflite"
    stdout.symlink_to("/proc/self/fd/1")
    with open(redirected, "wb") as f:
        subprocess.run([cli, str(src), str(stdout)], check=True, timeout=60, stdout=f)
    assert stdout.is_symlink() and redirected.read_bytes() == expected
    dangling = tmp_path / "dangling"
    dangling.symlink_to("nothing")
    proc = subprocess.run([cli, str(src), str(dangling)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == (
        f"tfdc-decode: cannot write {dangling}: a symbolic link to nothing (its target is "
        "missing, or the links form a loop)\n")
    # The Python CLI alike (it created the link's target).
    from tfdc.cli import main
    assert main(["decode", str(src), str(dangling)]) == 1
    assert not (tmp_path / "nothing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dangling", "in.tflite", "link.tflite", "redirected.tflite", "stdout", "target.tflite"]


def _readme_c_example():
    """The C example of README.md's "Decoding in your own app" section."""
    text = open(os.path.join(ROOT, "README.md")).read()
    lines = []
    for line in text[text.index("    #include <tfdc_decode.h>"):].splitlines():
        if not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines[1:])  # the statements after the #include


def test_install_gives_a_library_and_headers_the_readme_example_builds_with(
        build_dir, packed_models, tmp_path):
    """cmake --install installed nothing, and tfdc_decode.h needs tfdc_format.h;
    README's C example compiles warning-free against the installed files
    and decodes a packed model to the bytes the Python decoder gives."""
    prefix = tmp_path / "prefix"
    _run(["cmake", "--install", build_dir, "--prefix", str(prefix)])
    lib = next((prefix / d / "libtfdc_decode.a" for d in ("lib", "lib64")
                if (prefix / d / "libtfdc_decode.a").exists()), None)
    assert lib is not None and (prefix / "bin" / "tfdc-decode").exists()
    app = tmp_path / "app.c"
    app.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <tfdc_decode.h>\n"
        "static void fail(const char *m) { fprintf(stderr, \"%s\\n\", m); exit(1); }\n"
        "int main(int argc, char **argv) {\n"
        "  static uint8_t in[1 << 22]; size_t in_len; FILE *f;\n"
        "  if (argc != 3 || !(f = fopen(argv[1], \"rb\"))) return 2;\n"
        "  in_len = fread(in, 1, sizeof in, f); fclose(f);\n"
        "  {\n" + _readme_c_example() + "\n"
        "  if (rc != TFDC_OK) fail(tfdc_strerror(rc));\n"
        "  f = fopen(argv[2], \"wb\"); fwrite(model, 1, (size_t)n, f); fclose(f);\n"
        "  free(model); }\n  return 0;\n}\n")
    cc = shutil.which("cc") or shutil.which("gcc")
    _run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{prefix / 'include'}", str(app),
          str(lib), "-lz", "-o", str(tmp_path / "app")])
    from tfdc.unpack import decode
    data = packed_models[1][1]  # the CNN's packed file
    (tmp_path / "in.tflite").write_bytes(data)
    _run([str(tmp_path / "app"), str(tmp_path / "in.tflite"), str(tmp_path / "out.tflite")])
    assert (tmp_path / "out.tflite").read_bytes() == decode(data, backend="python")


_VERSION_APP = (
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <tfdc_decode.h>\n"
    "int main(int argc, char **argv) {\n"
    "  static uint8_t in[1 << 22]; size_t in_len; uint64_t n; uint8_t *out; int rc; FILE *f;\n"
    "  if (argc != 3 || !(f = fopen(argv[1], \"rb\"))) return 2;\n"
    "  in_len = fread(in, 1, sizeof in, f); fclose(f);\n"
    "  if (strcmp(tfdc_version(), TFDC_VERSION) != 0) return 3;\n"
    "  if ((rc = tfdc_decoded_size(in, in_len, &n)) != TFDC_OK || !(out = malloc((size_t)n)))\n"
    "    return 4;\n"
    "  if ((rc = tfdc_decode(in, in_len, out, (size_t)n)) != TFDC_OK) return 5;\n"
    "  f = fopen(argv[2], \"wb\"); fwrite(out, 1, (size_t)n, f); fclose(f); free(out);\n"
    "  printf(\"%s\\n\", tfdc_version()); return 0;\n}\n")


def _check_app(app, packed, tmp_path, **kw):
    """`app` (built from _VERSION_APP) decodes `packed` to the Python
    decoder's bytes and prints tfdc.__version__."""
    from tfdc import __version__
    from tfdc.unpack import decode
    (tmp_path / "in.tflite").write_bytes(packed)
    out = _run([str(app), str(tmp_path / "in.tflite"), str(tmp_path / "out.tflite")], **kw)
    assert out.stdout.strip() == __version__
    assert (tmp_path / "out.tflite").read_bytes() == decode(packed, backend="python")


def test_header_version_is_the_package_version():
    # One version, tfdc.__version__: the header's TFDC_VERSION (which CMake's
    # project version and the .pc file's come from) may not drift from it.
    from tfdc import __version__
    header = open(os.path.join(NATIVE, "tfdc_decode.h")).read()
    assert re.findall(r'^#define TFDC_VERSION "([^"]+)"$', header, re.M) == [__version__]


def test_installed_library_is_found_by_pkg_config_and_find_package(
        build_dir, packed_models, tmp_path):
    """An app builds against an installed decoder as other libraries are
    found: `pkg-config --cflags --libs tfdc_decode` (the .pc file is right
    wherever --prefix put it) and CMake's find_package(tfdc_decode) with the
    target tfdc::tfdc_decode (zlib comes along)."""
    prefix = tmp_path / "somewhere else"
    _run(["cmake", "--install", build_dir, "--prefix", str(prefix)])
    (tmp_path / "app.c").write_text(_VERSION_APP)
    cc = shutil.which("cc") or shutil.which("gcc")
    pkg_config = shutil.which("pkg-config")
    if pkg_config is not None:
        pc = next(prefix.glob("lib*/pkgconfig"))
        env = {**os.environ, "PKG_CONFIG_PATH": str(pc)}
        assert _run([pkg_config, "--modversion", "tfdc_decode"], env=env).stdout.strip() == \
            re.search(r'TFDC_VERSION "([^"]+)"', open(os.path.join(NATIVE, "tfdc_decode.h"))
                      .read()).group(1)
        # pkg-config escapes the space in the path for a shell: shlex reads it so.
        flags = shlex.split(_run([pkg_config, "--cflags", "--libs", "tfdc_decode"],
                                 env=env).stdout)
        _run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", str(tmp_path / "app.c"),
              "-o", str(tmp_path / "app_pc"), *flags])
        _check_app(tmp_path / "app_pc", packed_models[1][1], tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.c").write_text(_VERSION_APP)
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C)\n"
        "find_package(tfdc_decode 0.1 REQUIRED)\n"
        "add_executable(app app.c)\ntarget_link_libraries(app PRIVATE tfdc::tfdc_decode)\n")
    _run(["cmake", "-S", str(project), "-B", str(tmp_path / "project_build"),
          f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", str(tmp_path / "project_build")])
    _check_app(tmp_path / "project_build" / "app", packed_models[0][1], tmp_path)


def test_a_shared_library_exports_the_api_only(packed_models, tmp_path):
    # BUILD_SHARED_LIBS was ignored (the library was always static); the
    # shared one exports the tfdc_* functions of the header and nothing else,
    # and its pkg-config file links an app without -lz.
    build = _cmake_build(str(tmp_path / "build"), "-DBUILD_SHARED_LIBS=ON",
                         "-DTFDC_BUILD_TESTS=OFF")
    lib = os.path.join(build, "libtfdc_decode.so")
    assert os.path.exists(lib)
    pkg_config = shutil.which("pkg-config")
    if pkg_config is not None:
        prefix = tmp_path / "prefix"
        _run(["cmake", "--install", build, "--prefix", str(prefix)])
        env = {**os.environ, "PKG_CONFIG_PATH": str(next(prefix.glob("lib*/pkgconfig")))}
        flags = shlex.split(_run([pkg_config, "--cflags", "--libs", "tfdc_decode"],
                                 env=env).stdout)
        assert "-lz" not in flags, flags
        (tmp_path / "app.c").write_text(_VERSION_APP)
        _run([shutil.which("cc") or shutil.which("gcc"), "-std=c99", "-Wall", "-Wextra",
              "-Werror", str(tmp_path / "app.c"), "-o", str(tmp_path / "app"), *flags])
        libdir = next(f[2:] for f in flags if f.startswith("-L"))
        _check_app(tmp_path / "app", packed_models[1][1], tmp_path,
                   env={**os.environ, "LD_LIBRARY_PATH": libdir})
        # A versioned library (0.x: the minor version is the ABI's), and the
        # installed tool finds it beside itself (its run path was cleared).
        assert os.path.islink(os.path.join(libdir, "libtfdc_decode.so"))
        from tfdc import __version__
        soname = "libtfdc_decode.so." + ".".join(__version__.split(".")[:2])
        assert os.path.exists(os.path.join(libdir, soname))
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        _run([str(prefix / "bin" / "tfdc-decode"), str(tmp_path / "in.tflite"),
              str(tmp_path / "tool.tflite")], env=env)
        assert (tmp_path / "tool.tflite").read_bytes() == (tmp_path / "out.tflite").read_bytes()
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not installed")
    exported = {line.split()[-1] for line in _run([nm, "-D", "--defined-only", lib]).stdout
                .splitlines() if " T " in line}
    header = open(os.path.join(NATIVE, "tfdc_decode.h")).read()
    assert exported and exported == set(re.findall(r"\b(tfdc_\w+)\(", header)), exported


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
    proc = subprocess.run([script, "200000000", str(tmp_path / "fuzz"), "-max_total_time=10",
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


# --------------------------------------------------------------- kind 3 (format 2.1)
# Files whose streams use context-modelled rANS tables (FORMAT.md §5.3), from
# the packer: the C decoder must give the reference decoder's bytes, and
# reject what it rejects.

def _sub_byte(values, bits):
    """Sub-byte values packed as TFLite stores them (first in the low bits)."""
    per = 8 // bits
    v = (np.asarray(values, np.int64) & ((1 << bits) - 1)).reshape(-1, per)
    return sum(v[:, k] << (bits * k) for k in range(per)).astype(np.uint8)


def _kernel_tensor(bits, rows, side, seed, sparsity=0.0):
    """A smooth int8 / int4 / int2 kernel `[rows, side * side]` (optionally
    with zeros) as a constant_model item."""
    from smooth_weights import smooth_kernel
    vals = smooth_kernel(rows=rows, side=side, bits=bits, seed=seed)
    if sparsity:
        vals[np.random.default_rng(seed).random(vals.shape) < sparsity] = 0
    shape = (rows, side * side)
    if bits == 8:
        return vals.astype(np.int8)
    return (_sub_byte(vals.reshape(-1), bits), {4: 17, 2: 19}[bits], shape)


def _forced_range_files(codes, seed):
    """{name: packed bytes} of every record kind (codebook / planes, dense /
    sparse, row / column scan; int8, int4, float32 planes) with every
    stream forced to a kind 3 (`codes="rans"`) or kind 4 (`"rans-grouped"`)
    table, at record blocks 1, 25 and 4096."""
    from tfdc.pack import pack_tflite
    from tfdc.tflite_schema import constant_model
    files = {}
    kinds = [(vm, pm, scan) for vm in ("codebook", "planes") for pm in ("dense", "sparse")
             for scan in ("row", "column")]
    rng = np.random.default_rng(seed)
    for i, (vm, pm, scan) in enumerate(kinds):
        for bits in (8, 4, 32):
            if bits == 32:
                w = rng.normal(0, 0.05, (24, 100)).astype(np.float16).astype(np.float32)
                w[rng.random(w.shape) < 0.5] = 0
                tensor = w
            else:
                tensor = _kernel_tensor(bits, 12, 14, seed=i + bits,
                                        sparsity=0.6 if pm == "sparse" else 0.0)
            force = {"value_mode": vm, "position_mode": pm, "scan": scan, "codes": codes}
            if bits < 8:
                force["elem_bits"] = bits
            block = (1, 25, 4096)[(i + bits) % 3]
            files[f"forced_{vm}_{pm}_{scan}_{bits}bit_block{block}"], _ = pack_tflite(
                constant_model([tensor]), min_bytes=0, block=block, _force=force)
    return files


@pytest.fixture(scope="module")
def rans_files():
    """{name: packed bytes}, each with kind 3 tables: smooth kernels where the
    packer chooses them (its own lags, classes, precision), and every record
    kind (codebook / planes, dense / sparse, row / column scan; int8, int4,
    float32 planes) with every stream forced to kind 3, at record blocks 1,
    25 and 4096 (kind 3 segments of a few symbols, of some hundred that do
    not divide the counts, and whole streams)."""
    from tfdc.pack import pack_tflite
    from tfdc.tflite_schema import constant_model
    files = {}
    for bits, rows, side in ((8, 12, 28), (8, 24, 16), (4, 12, 28), (4, 10, 20), (2, 16, 20)):
        model = constant_model([_kernel_tensor(bits, rows, side, seed=rows + side)])
        files[f"chosen_int{bits}_{rows}x{side}^2"], _ = pack_tflite(model, min_bytes=0)
    files.update(_forced_range_files("rans", seed=3))
    return files


def _rans_tables(packed, kind=3):
    """The file's code tables of `kind` (3 or 4)."""
    from tfdc.unpack import parse
    return [t for t in parse(packed).tables if t.kind == kind]


def test_kind_3_files_identical_to_python_decoder(native, rans_files):
    from tfdc.unpack import decode
    models = set()
    for name, packed in rans_files.items():
        tables = _rans_tables(packed)
        assert tables, name
        models |= {(m.lag1, m.lag2, m.classes, m.prec, m.width)
                   for m in (t.rans_model() for t in tables)}
        assert native.is_packed(packed)
        out = native.decode(packed)
        assert len(out) == native.decoded_size(packed)
        assert out == decode(packed, backend="python"), name
    # the files exercise the model's range, not one setting
    assert len({m[:2] for m in models}) >= 4 and len({m[2] for m in models}) >= 3
    assert {m[4] for m in models} >= {2, 4, 8} and len({m[3] for m in models}) >= 4


def _statuses(native, data):
    """(C status, Python status) of a file both must reject."""
    from tfdc.unpack import decode
    with pytest.raises(FormatError) as c:
        native.decode(data)
    with pytest.raises(FormatError) as py:
        decode(data, backend="python")
    return c.value.status, py.value.status


def _agree(native, data, name=""):
    """Both decoders refuse `data` with the same status, or decode the same
    bytes. Where a file breaks two rules, each may report another: a segment
    that runs out of bytes is "truncated" in C, "corrupt" in Python (see
    test_kind_3_broken_segments_and_header_rejected_by_both), and the C
    decoder decodes each record and patch as soon as it has parsed it (§7
    allows it), so a broken segment of an earlier stream ("corrupt") can
    come before a later stream's segments running past the payload
    ("truncated", found by Python's parse of all descriptors first)."""
    from tfdc.unpack import decode
    try:
        ref = decode(data, backend="python")
    except FormatError as e:
        assert _statuses(native, data) in ((e.status, e.status), ("truncated", "corrupt"),
                                           ("corrupt", "truncated")), name
    else:
        assert native.decode(data) == ref, name


def _resign(data):
    import zlib
    return data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little")


def _rebuilt(packed, meta=None, payload=None):
    """`packed` with its meta stream or payload replaced (re-deflated and
    re-signed by tests/format2_builder.py; flags and version kept)."""
    import format2_builder as fb
    from tfdc import format as fmt
    from tfdc.unpack import parse
    p = parse(packed)
    meta = p.meta if meta is None else meta
    payload = packed[p.payload_start:-4] if payload is None else payload
    flags = packed[fmt.STUB_SIZE + fmt.PREFIX.size]
    return fb.build(p.meta[:p.F], meta=meta, payload=payload, D=p.D, flags=flags,
                    minor=fmt.header_version(flags))


def test_kind_3_broken_tables_rejected_by_both(native, rans_files):
    """Every §5.3 rule of a table, broken in a packer-made file's first kind 3
    table (the meta stream re-deflated, the file re-signed): both decoders
    refuse it with the same status."""
    from tfdc import format as fmt
    from tfdc import rans
    from tfdc.unpack import parse
    packed = rans_files["chosen_int8_12x28^2"]
    assert _rebuilt(packed) == packed  # the rebuild itself changes nothing
    p = parse(packed)
    t = _rans_tables(packed)[0]
    m = t.rans_model()
    v = fmt.varint_bytes

    def with_table(table_bytes):
        return _rebuilt(packed, meta=p.meta[:t.start] + table_bytes + p.meta[t.start + t.size:])

    def fields(**kw):
        f = dict(prec=m.prec, width=m.width, lag1=m.lag1, lag2=m.lag2, shift=m.shift,
                 classes=m.classes)
        f.update(kw)
        head = b"".join(v(f[k]) for k in ("prec", "width", "lag1", "lag2", "shift", "classes"))
        return v(fmt.TABLE_RANS) + head + m.table_bytes()[len(v(3)) + len(head):]

    freqs = m.freqs.copy()
    row = int(np.flatnonzero(freqs.sum(axis=1))[0])
    broken = {
        "prec 0": fields(prec=0), "prec 16": fields(prec=16), "width 0": fields(width=0),
        "width 16": fields(width=16), "lag1 0": fields(lag1=0), "lag2 0": fields(lag2=0),
        "lag1 65536": fields(lag1=65536), "shift 17": fields(shift=17),
        "classes 0": fields(classes=0), "classes 33": fields(classes=33),
    }
    for name, change in (("sum + 1", 1), ("sum - 1", -1)):
        f = freqs.copy()
        f[row, int(np.argmax(f[row]))] += change
        broken[f"frequencies {name}"] = rans.Model(m.prec, m.width, m.lag1, m.lag2, m.shift,
                                                   m.classes, f).table_bytes()
    f = freqs.copy()
    f[row] = 0
    f[row, 0] = (1 << m.prec) + 1
    broken["frequency 2^prec + 1"] = rans.Model(m.prec, m.width, m.lag1, m.lag2, m.shift,
                                                m.classes, f).table_bytes()
    # class 0 listed from first = 2^w - 1 with its own m: first + m > 2^w
    head_len = len(fields())
    cls = m.table_bytes()[head_len:]
    first0 = int(np.flatnonzero(freqs[0])[0])
    broken["first + m > 2^width"] = (fields()[:head_len] + v((1 << m.width) - 1)
                                     + cls[len(v(first0)):])
    broken["m 0"] = fields()[:head_len] + v(0) + v(0) + cls
    for name, table_bytes in broken.items():
        c, py = _statuses(native, with_table(table_bytes))
        assert c == py, (name, c, py)
    # a well-formed change of the model decodes other symbols: both refuse the
    # final state, or both decode the same bytes
    _agree(native, with_table(fields(lag1=m.lag2, lag2=m.lag1 + 1)))


def _broken_segments(packed, kind=3):
    """`packed` with the last segment of its last kind 3 (or `kind`) stream
    broken four ways that both decoders must refuse: as corrupt (§5.3), or
    as truncated where the segment is shorter than its state (§5.2;
    `_broken_status`)."""
    from tfdc import format as fmt
    L = fmt.RANS_L
    return {name: _segment_edit(packed, change, kind) for name, change in (
        ("a byte left over", lambda s: s + b"\x00"),
        ("3-byte segment", lambda s: s[:3]),
        ("state 2^23 - 1", lambda s: (L - 1).to_bytes(4, "little") + s[4:]),
        ("state 2^31", lambda s: s[:3] + bytes([s[3] | 0x80]) + s[4:]))}


def _broken_status(case):
    """The status both decoders give a `_broken_segments` case."""
    return "truncated" if case == "3-byte segment" else "corrupt"


def _segment_edit(packed, change, kind=3):
    """`packed` with the last segment of its last kind 3 (or `kind`) stream
    changed by `change(segment bytes) -> bytes`, its length varint in the
    record descriptor rewritten (re-deflated, re-signed)."""
    from tfdc import format as fmt
    from tfdc.unpack import parse
    p = parse(packed)
    v = fmt.varint_bytes
    rec, st = [(r, s) for r in p.records for s in [r.gaps] + list(r.values)
               if s is not None and p.tables[s.table].kind == kind][-1]
    lens = [int(x) for x in st.seg_bytes]
    run = v(st.block) + b"".join(v(x) for x in lens)
    desc = p.meta[rec.desc_start:rec.desc_end]
    assert desc.count(run) == 1
    end = st.data_start + st.data_len
    seg = packed[end - lens[-1]:end]
    new = change(seg)
    desc = desc.replace(run, v(st.block) + b"".join(v(x) for x in lens[:-1] + [len(new)]))
    meta = p.meta[:rec.desc_start] + desc + p.meta[rec.desc_end:]
    payload = packed[p.payload_start:end - lens[-1]] + new + packed[end:-4]
    return _rebuilt(packed, meta=meta, payload=payload)


def test_kind_3_broken_segments_and_header_rejected_by_both(native, rans_files):
    from tfdc import format as fmt
    from tfdc.unpack import decode
    for name in ("chosen_int4_12x28^2", "forced_codebook_sparse_row_8bit_block25",
                 "forced_planes_sparse_row_32bit_block4096"):
        packed = rans_files[name]
        assert _segment_edit(packed, lambda s: s) == packed
        flags_at = fmt.STUB_SIZE + fmt.PREFIX.size
        assert packed[flags_at] == fmt.FLAG_RANS
        cases = {
            "flags 0": _resign(packed[:flags_at] + b"\x00" + packed[flags_at + 1:]),
            "flags 2 (kind 4 only)": _resign(packed[:flags_at] + b"\x02"
                                             + packed[flags_at + 1:]),
            "flags 9 (bit 3)": _resign(packed[:flags_at] + b"\x09" + packed[flags_at + 1:]),
            **_broken_segments(packed),
        }
        for case, data in cases.items():
            c, py = _statuses(native, data)
            assert c == py == _broken_status(case), (name, case, c, py)
        # flags 5 announces a patch list (§6.7) that the meta stream lacks
        flags5 = _resign(packed[:flags_at] + b"\x05" + packed[flags_at + 1:])
        assert _statuses(native, flags5) == ("truncated", "truncated"), name
        # the renormalisation runs past the segment's end: "truncated", as
        # FORMAT.md §5.3 says (the Python decoder said "corrupt")
        short = _segment_edit(packed, lambda s: s[:-1])
        assert _statuses(native, short) == ("truncated", "truncated"), name
        # payload bits flipped inside the segment (the CRC re-signed, so the
        # range decoder must judge): mostly refused by both; a flip within a
        # run of frequency-1 symbols only changes which one is decoded (as
        # in a fixed-length code), and then both decode the same other bytes
        rng = np.random.default_rng(len(packed))
        refused = 0
        for _ in range(20):
            def flip(s, k=int(rng.integers(1 << 30)), bit=int(rng.integers(8))):
                k = 4 + k % (len(s) - 4)
                return s[:k] + bytes([s[k] ^ (1 << bit)]) + s[k + 1:]
            data = _segment_edit(packed, flip)
            try:
                ref = decode(data, backend="python")
            except FormatError as e:
                assert e.status in ("corrupt", "truncated")
                with pytest.raises(FormatError) as c:
                    native.decode(data)
                assert c.value.status in ("corrupt", "truncated"), name
                refused += 1
            else:
                assert native.decode(data) == ref != decode(packed, backend="python"), name
        assert refused >= 10, name


# --------------------------------------------------------------- kind 4 (format 2.2)
# Grouped range codes (FORMAT.md §5.4): tables per row group, column group
# and class. The same checks as for kind 3.

@pytest.fixture(scope="module")
def rans4_files():
    """{name: packed bytes}, each with kind 4 tables: kernels with row and
    column structure where the packer chooses them, and every record kind
    with every stream forced to kind 4 (streams that are not rows of a
    tensor are cut into rows of 7), at record blocks 1, 25 and 4096 (kind 4
    segments that start mid-row)."""
    from smooth_weights import grouped_kernel
    from tfdc.pack import pack_tflite
    from tfdc.tflite_schema import constant_model
    files = {}
    for bits, rows, row_len in ((4, 24, 128), (4, 40, 256), (8, 48, 256)):
        vals = grouped_kernel(rows, row_len, bits, seed=rows)
        tensor = vals.astype(np.int8) if bits == 8 else (
            _sub_byte(vals.reshape(-1), bits), 17, (rows, row_len))
        files[f"chosen_int{bits}_{rows}x{row_len}"], _ = pack_tflite(
            constant_model([tensor]), min_bytes=0)
    files.update(_forced_range_files("rans-grouped", seed=4))
    return files


def test_kind_4_files_identical_to_python_decoder(native, rans4_files):
    from tfdc import format as fmt
    from tfdc.unpack import decode
    groupings = set()
    for name, packed in rans4_files.items():
        tables = _rans_tables(packed, 4)
        assert tables, name
        flags = packed[fmt.STUB_SIZE + fmt.PREFIX.size]
        assert flags & fmt.FLAG_RANS_GROUPED, name
        groupings |= {(m.groups.row_groups, m.groups.col_groups, m.groups.row_len)
                      for m in (t.rans_model() for t in tables)}
        out = native.decode(packed)
        assert out == decode(packed, backend="python"), name
    # row groups, column groups and both; rows of several lengths
    assert {(r > 1, c > 1) for r, c, _ in groupings} >= {(True, True), (True, False),
                                                          (False, True)}
    assert len({d for _, _, d in groupings}) >= 3


def test_kind_4_broken_tables_rejected_by_both(native, rans4_files):
    """Every §5.4 rule of the group fields, broken in a packer-made file's
    kind 4 table: both decoders refuse it with the same status."""
    from tfdc import format as fmt
    from tfdc.unpack import parse
    packed = rans4_files["chosen_int4_40x256"]
    assert _rebuilt(packed) == packed
    p = parse(packed)
    t = _rans_tables(packed, 4)[0]
    m = t.rans_model()
    g = m.groups
    assert g.row_groups > 1 and g.col_groups > 1
    v = fmt.varint_bytes
    body = m.table_bytes()
    head = b"".join(v(x) for x in (fmt.TABLE_RANS_GROUPED, m.prec, m.width, m.lag1, m.lag2,
                                   m.shift, m.classes))
    classes = body[len(head) + len(g.field_bytes()):]

    def with_groups(row_len=g.row_len, col_groups=g.col_groups, col_group=g.col_group,
                    row_groups=g.row_groups, row_group=g.row_group, tables=classes):
        fields = (v(row_len) + v(col_groups) + b"".join(v(int(x)) for x in col_group)
                  + v(len(row_group)) + v(row_groups) + b"".join(v(int(x)) for x in row_group))
        table = head + fields + tables
        return _rebuilt(packed, meta=p.meta[:t.start] + table + p.meta[t.start + t.size:])

    assert with_groups() == packed
    bad_col = np.array(g.col_group)
    bad_col[-1] = g.col_groups
    bad_row = np.array(g.row_group)
    bad_row[0] = g.row_groups
    broken = {
        "row_len 0": with_groups(row_len=0, col_group=[]),
        "row_len 65537": with_groups(row_len=65537, col_group=np.zeros(65537, int)),
        "col_groups 0": with_groups(col_groups=0),
        "col_group entry = col_groups": with_groups(col_group=bad_col),
        "row_period 0": with_groups(row_group=[]),
        "row_period 65537": with_groups(row_group=np.zeros(65537, int)),
        "row_groups 0": with_groups(row_groups=0),
        "row_group entry = row_groups": with_groups(row_group=bad_row),
        "257 tables": with_groups(col_groups=257 // (g.row_groups * m.classes) + 1),
        "flags without bit 1": _resign(packed[:fmt.STUB_SIZE + fmt.PREFIX.size] + b"\x01"
                                       + packed[fmt.STUB_SIZE + fmt.PREFIX.size + 1:]),
    }
    for name, data in broken.items():
        c, py = _statuses(native, data)
        assert c == py == "corrupt", (name, c, py)
    # well-formed other groups (columns read as one group more): other
    # tables for the symbols; both refuse the same files or decode the same
    # bytes
    _agree(native, with_groups(row_group=np.zeros_like(g.row_group)), "rows as one group")
    _agree(native, with_groups(row_len=g.row_len - 1, col_group=g.col_group[:-1]),
           "shorter rows")


def test_kind_4_broken_segments_rejected_by_both(native, rans4_files):
    for name in ("chosen_int8_48x256", "forced_codebook_sparse_row_8bit_block25",
                 "forced_planes_dense_row_4bit_block4096"):
        packed = rans4_files[name]
        assert _segment_edit(packed, lambda s: s, kind=4) == packed
        for case, data in _broken_segments(packed, kind=4).items():
            c, py = _statuses(native, data)
            assert c == py == _broken_status(case), (name, case, c, py)


@pytest.fixture(scope="module")
def patch_files():
    """{name: packed bytes} with patches (§6.7): the per-channel scales and
    nonzero zero points of an int8 kernel, forced into every record kind
    and code (kind 3 and 4 too)."""
    from tfdc.pack import pack_tflite
    from tfdc.tflite_schema import constant_model, with_quantization
    rng = np.random.default_rng(7)
    model = with_quantization(constant_model([rng.integers(-9, 9, (40, 16)).astype(np.int8)]),
                              rng.uniform(0.01, 0.02, 40),
                              np.where(rng.random(40) < 0.6, 0, rng.integers(-3, 3, 40)))
    files = {"measured": pack_tflite(model, min_bytes=0)[0]}
    for value_mode in ("codebook", "planes"):
        for position_mode in ("dense", "sparse"):
            for codes in ("huffman", "rans", "rans-grouped"):
                force = {"value_mode": value_mode, "position_mode": position_mode,
                         "codes": codes}
                files["-".join(force.values())] = pack_tflite(model, min_bytes=0,
                                                              _patches=force)[0]
    return files


def test_patch_files_identical_to_python_decoder(native, patch_files):
    from tfdc import format as fmt
    from tfdc.unpack import decode, parse
    kinds = set()
    for name, packed in patch_files.items():
        p = parse(packed)
        assert p.patches and packed[fmt.STUB_SIZE + fmt.PREFIX.size] & fmt.FLAG_PATCHES, name
        kinds |= {(r.value_mode, r.position_mode, r.elem_bits) for r in p.patches}
        assert native.decode(packed) == decode(packed, backend="python"), name
    assert len(kinds) == 8  # codebook/planes x dense/sparse x 32/64 bits


def test_patch_descriptor_mutations_agree(native, patch_files):
    # Every byte of the patch list (and the flatbuffer bytes they fill)
    # changed three ways: both decoders refuse alike or decode alike.
    from tfdc.unpack import parse
    for name in ("codebook-sparse-huffman", "planes-dense-rans"):
        packed = patch_files[name]
        p = parse(packed)
        first = p.patches[0]
        meta = bytearray(p.meta)
        spots = list(range(first.desc_start, len(meta)))
        spots += list(range(first.out_offset - 4, first.out_offset + 4))
        for pos in spots:
            for value in (meta[pos] ^ 1, meta[pos] ^ 0x80, 0):
                m = bytearray(meta)
                m[pos] = value
                _agree(native, _rebuilt(packed, meta=bytes(m)), f"{name} {pos} {value}")
