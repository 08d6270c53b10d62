"""Host-JVM tests of the Android loader (android_demo/tfdc-loader).

The JNI bridge `tfdc_jni.c` and the real C decoder (the library target of
`tfdc/native/CMakeLists.txt`) are built by the loader's own CMakeLists with
gcc against JDK 17's jni.h; the pure-JVM Kotlin sources of
the loader (no android.* imports) plus the driver `src/hostTest/.../HostCheck.kt`
are compiled with kotlinc and run on the JVM. The APK itself cannot be built
here (no Android SDK/NDK): this is everything of it that runs off-device.
"""

import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADER = os.path.join(ROOT, "android_demo", "tfdc-loader", "src")
# The loader's files that must run on any JVM (TfdcModel.kt and the flavor
# factories are the Android / LiteRT half).
PURE_JVM = ["TfdcNative.kt", "TfdcFormatException.kt", "TfdcDecoder.kt", "DecodedModelCache.kt",
            "LoadTimings.kt", "AcceleratorFallback.kt"]
FRAMEWORK_IMPORT = re.compile(r"^import\s+(android|androidx|org\.tensorflow|com\.google\.ai\.edge)\.", re.M)


def _java_home():
    javac = shutil.which("javac")
    if javac is None:
        return None
    home = os.path.dirname(os.path.dirname(os.path.realpath(javac)))
    return home if os.path.exists(os.path.join(home, "include", "jni.h")) else None


def _kotlinc():
    found = shutil.which("kotlinc")
    if found:
        return found
    candidates = ["/usr/lib/node_modules/kotlin-compiler/bin/kotlinc",
                  "/usr/local/lib/node_modules/kotlin-compiler/bin/kotlinc"]
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=30).stdout.strip()
            candidates.insert(0, os.path.join(root, "kotlin-compiler", "bin", "kotlinc"))
        except (OSError, subprocess.SubprocessError):
            pass
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


JAVA_HOME = _java_home()
KOTLINC = _kotlinc()
pytestmark = [pytest.mark.skipif(
    JAVA_HOME is None or KOTLINC is None or shutil.which("gcc") is None
    or shutil.which("cmake") is None,
    reason=f"needs JDK (javac + jni.h: {JAVA_HOME}), kotlinc ({KOTLINC}), gcc and cmake")]


@pytest.fixture(scope="module")
def host_build(tmp_path_factory):
    """libtfdc_jni.so (bridge + real decoder) and the compiled Kotlin classes."""
    out = tmp_path_factory.mktemp("android_jvm")
    # The loader's own CMakeLists (the one the NDK builds), with JDK 17's
    # jni.h: it takes the decoder library from tfdc/native/CMakeLists.txt.
    include = os.path.join(JAVA_HOME, "include")
    build = out / "cmake"
    for cmd in (["cmake", "-S", os.path.join(LOADER, "main", "cpp"), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror",
                 f"-DTFDC_JNI_INCLUDE_DIRS={include};{os.path.join(include, 'linux')}"],
                ["cmake", "--build", str(build), "-j2"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lib = out / "libtfdc_jni.so"
    shutil.copyfile(build / "libtfdc_jni.so", lib)
    sources = [os.path.join(LOADER, "main", "kotlin", "org", "tfdc", "loader", f) for f in PURE_JVM]
    sources += sorted(glob.glob(os.path.join(LOADER, "hostTest", "kotlin", "org", "tfdc", "loader", "*.kt")))
    # The loader's pure-JVM files must not depend on Android or LiteRT.
    android_files = [s for s in sources if FRAMEWORK_IMPORT.search(open(s).read())]
    assert not android_files, f"pure-JVM sources import Android/LiteRT: {android_files}"
    classes = out / "classes"
    done = subprocess.run([KOTLINC, *sources, "-d", str(classes)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stdlib = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(KOTLINC))), "lib", "kotlin-stdlib.jar")
    return {"libdir": str(out), "lib": str(lib), "classpath": f"{classes}{os.pathsep}{stdlib}"}


def _run_jvm(build, *ops, jvm_options=()):
    done = subprocess.run(
        ["java", *jvm_options, f"-Djava.library.path={build['libdir']}", "-cp", build["classpath"],
         "org.tfdc.loader.HostCheckKt", *map(str, ops)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _convert(model):
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _models():
    """Two small converted Keras models: a pruned, weight-shared MLP (the
    paper's shape of weights) and a conv net mixing shared and raw weights."""
    import keras
    rng = np.random.default_rng(0)
    mlp = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                            keras.layers.Dense(64, activation="tanh"), keras.layers.Dense(10)])
    for layer in mlp.layers[1:]:
        kernel, bias = layer.get_weights()
        codebook = rng.normal(size=16).astype("float32")
        shared = codebook[rng.integers(0, 16, size=kernel.shape)]
        shared[rng.random(kernel.shape) < 0.85] = 0.0
        layer.set_weights([shared, bias])
    conv = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(8, 3, activation="tanh"),
                             keras.layers.Flatten(), keras.layers.Dense(10)])
    # Dense codebook (no pruning) for the classifier; the conv kernel stays
    # raw random floats, which the packer leaves inline.
    kernel, bias = conv.layers[-1].get_weights()
    conv.layers[-1].set_weights([rng.normal(size=8).astype("float32")[rng.integers(0, 8, kernel.shape)], bias])
    return {"mlp": (_convert(mlp), (1, 28, 28)), "conv": (_convert(conv), (1, 12, 12, 1))}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tfdc.pack import pack_tflite
    d = tmp_path_factory.mktemp("android_models")
    out = {"dir": d, "models": {}}
    for name, (tflite, shape) in _models().items():
        packed, _ = pack_tflite(tflite)
        (d / f"{name}.tflite").write_bytes(tflite)
        (d / f"{name}.packed").write_bytes(packed)
        out["models"][name] = {"tflite": tflite, "packed": packed, "shape": shape}
    packed = out["models"]["mlp"]["packed"]
    flipped = bytearray(packed)
    flipped[len(packed) - 40] ^= 0x10  # inside the section: a CRC must catch it
    bad = {"truncated": packed[: len(packed) - 100], "bitflip": bytes(flipped),
           "plain": out["models"]["mlp"]["tflite"], "garbage": bytes(range(256)) * 4,
           "cut1": packed[:-1], "appended": packed + b"\0",
           # Its section key damaged: loaded as a plain model (and cached).
           "keyflip": packed.replace(b"tfdc.v2", b"tfdc.v3")}
    for name, data in bad.items():
        (d / f"{name}.bad").write_bytes(data)
    out["bad"] = bad
    return out


@pytest.fixture(scope="module")
def jvm(host_build, files):
    """Every JVM operation in one JVM run (startup is the slow part)."""
    d = files["dir"]
    ops = []
    for name in files["models"]:
        ops += ["decode", d / f"{name}.packed", d / f"{name}.jvm_decoded"]
        ops += ["load", d / f"{name}.tflite", d / f"{name}.jvm_plain"]
    for name in files["bad"]:
        ops += ["bad", d / f"{name}.bad"]
    from tfdc import decode
    size = len(decode(files["models"]["mlp"]["packed"]))
    for limit in (-1, size - 1, size + 4096):  # exactly size may fail on the meta stream
        ops += ["limit", d / "mlp.packed", limit]
    plain = len(files["models"]["mlp"]["tflite"])
    ops += ["limit", d / "mlp.tflite", plain - 1, "limit", d / "mlp.tflite", plain]
    # Cache: miss, hit, another model; plus a stale truncated file under the
    # right name, which must be replaced rather than reused.
    cache = d / "cache"
    stale = d / "cache_stale"
    stale.mkdir()
    conv = files["models"]["conv"]["packed"]
    from hashlib import sha256
    (stale / f"tfdc-{sha256(conv).hexdigest()}.tflite").write_bytes(b"\0" * 10)
    ops += ["cache", cache, d / "mlp.packed", "cache", cache, d / "mlp.packed",
            "cache", cache, d / "conv.packed", "cache", stale, d / "conv.packed"]
    # A cached file altered in place to the same length: its CRC-32 no longer
    # matches, so it is decoded again (it was reused on its length alone).
    from hashlib import sha256
    mlp = files["models"]["mlp"]["packed"]
    ops += ["flip", cache / f"tfdc-{sha256(mlp).hexdigest()}.tflite",
            "cache", cache, d / "mlp.packed", "fallback"]
    # A plain .tflite (cached as it is), and an app's own decoder (its
    # files were never reused: the check asked the native decoder's size).
    ops += ["cache", d / "cache_plain", d / "mlp.tflite"] * 2
    ops += ["cache-copy", d / "cache_copy", d / "mlp.packed"] * 2
    # Eviction: an older model's file goes, another call's .part file stays.
    evict = d / "cache_evict"
    evict.mkdir()
    (evict / "tfdc-0123.tflite").write_bytes(b"old model")
    (evict / "tfdc-0123.crc32").write_text("00000000")
    (evict / "tfdc-4567.8910.part").write_bytes(b"being written")
    (evict / "tfdc-89ab.1112.part").write_bytes(b"left by a crash")
    os.utime(evict / "tfdc-89ab.1112.part", (time.time() - 7200,) * 2)
    ops += ["evict", evict, d / "mlp.packed"]
    # Files an older loader wrote (its decoder's version in the record, or
    # none: the record of before), intact: decoded again, not reused.
    import zlib
    decoded = decode(mlp)
    for name, record in (("cache_older", f"{zlib.crc32(decoded):08x} {len(decoded)} "
                                         "tfdc_decode 0.0.9"),
                         ("cache_unversioned", f"{zlib.crc32(decoded):08x} {len(decoded)}")):
        (d / name).mkdir()
        (d / name / f"tfdc-{sha256(mlp).hexdigest()}.tflite").write_bytes(decoded)
        (d / name / f"tfdc-{sha256(mlp).hexdigest()}.crc32").write_text(record)
        ops += ["cache", d / name, d / "mlp.packed"]
    ops += ["race", d / "cache_race", d / "mlp.packed", d / "conv.packed"]
    for sdk, runtime, works in POLICY_CASES:
        ops += ["policy", sdk, runtime, works]
    return _run_jvm(host_build, *ops)


# (API level, runtime, accelerators that work on the scripted device)
POLICY_CASES = [
    (35, "COMPILED_MODEL", "NPU,CPU"), (36, "COMPILED_MODEL", "CPU"), (35, "COMPILED_MODEL", "GPU,NPU,CPU"),
    (35, "INTERPRETER", "NNAPI,CPU"), (34, "INTERPRETER", "NNAPI,CPU"), (33, "COMPILED_MODEL", "NPU,CPU"),
    (31, "INTERPRETER", "CPU"), (30, "INTERPRETER", "NNAPI,CPU"), (30, "COMPILED_MODEL", "NPU,CPU"),
    (26, "INTERPRETER", "NNAPI,CPU"), (35, "COMPILED_MODEL", "-"),
]


def _by(results, op, suffix):
    return [r for r in results if r["op"] == op and r["input"].endswith(suffix)]


def test_jvm_decode_equals_python_decode(files, jvm):
    from tfdc import decode
    for name, m in files["models"].items():
        (r,) = _by(jvm, "decode", f"{name}.packed")
        expected = decode(m["packed"])
        got = (files["dir"] / f"{name}.jvm_decoded").read_bytes()
        assert got == expected, name
        assert r["is_packed"] and r["is_packed_direct"]
        assert r["decoded_size"] == len(expected) > len(m["packed"])
        assert r["direct_input_agrees"] and r["heap_input_agrees"]


def test_decoded_buffer_is_direct_native_order(files, jvm):
    import sys
    native = "LITTLE_ENDIAN" if sys.byteorder == "little" else "BIG_ENDIAN"
    for r in _by(jvm, "decode", ".packed") + _by(jvm, "load", ".tflite"):
        assert r["direct"] is True and r["order"] == native
    for name in files["models"]:
        (r,) = _by(jvm, "decode", f"{name}.packed")
        assert r["position"] == 0 and r["limit"] == r["capacity"] == r["decoded_size"]


def test_plain_tflite_is_loaded_unchanged(files, jvm):
    for name, m in files["models"].items():
        (r,) = _by(jvm, "load", f"{name}.tflite")
        assert r["was_packed"] is False and r["decoded_size"] == len(m["tflite"])
        assert (files["dir"] / f"{name}.jvm_plain").read_bytes() == m["tflite"]


def test_jvm_decoded_model_runs_bit_identically_in_litert(files, jvm):
    from ai_edge_litert.interpreter import Interpreter

    def run(model_bytes, x):
        interp = Interpreter(model_content=model_bytes)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()

    rng = np.random.default_rng(1)
    for name, m in files["models"].items():
        x = rng.random(m["shape"], dtype=np.float32)
        decoded = (files["dir"] / f"{name}.jvm_decoded").read_bytes()
        reference = run(m["tflite"], x)
        assert np.abs(reference).sum() > 0  # a model of zeros would prove nothing
        np.testing.assert_array_equal(run(decoded, x), reference, err_msg=name)
        with pytest.raises(Exception):  # the packed file alone is refused loudly
            run(m["packed"], x)


def test_bad_files_raise_tfdc_format_exception_with_decoder_message(host_build, files, jvm):
    c_lib = ctypes.CDLL(host_build["lib"])
    c_lib.tfdc_strerror.restype = ctypes.c_char_p
    expected_status = {"truncated": None, "bitflip": -6, "plain": -2, "garbage": None,
                       "cut1": None, "appended": None, "keyflip": -7}
    for name, status in expected_status.items():
        (r,) = _by(jvm, "bad", f"{name}.bad")
        assert r["exception"] == "org.tfdc.loader.TfdcFormatException", r
        assert r["status"] < 0
        if status is not None:
            assert r["status"] == status, r
        assert r["message"].startswith(c_lib.tfdc_strerror(r["status"]).decode()), r
        # load() throws too, but copies a plain model as it is. A packed file
        # cut by a byte, or with one appended, was loaded as a plain model.
        expected_load = "false" if name == "plain" else f"TfdcFormatException {r['status']}"
        assert r["load"] == expected_load, r
    assert _by(jvm, "bad", "plain.bad")[0]["is_packed"] is False


def _claiming(packed, decoded_size):
    """`packed` with its header's decoded_size (§4's fifth varint) set to
    `decoded_size` in as many bytes, its CRC left as it was (now wrong)."""
    from tfdc import format as fmt
    at = packed.rindex(fmt.MAGIC) + fmt.PREFIX.size
    for _ in range(4):  # flags, meta_deflated, meta_size, flatbuffer_size
        while packed[at] & 0x80:
            at += 1
        at += 1
    end = at
    while packed[end] & 0x80:
        end += 1
    width = end + 1 - at
    assert decoded_size < 1 << (7 * width)
    varint = bytes(((decoded_size >> (7 * i)) & 0x7F) | (0x80 if i < width - 1 else 0)
                   for i in range(width))
    return packed[:at] + varint + packed[end + 1:]


def test_a_damaged_file_never_has_its_claimed_size_allocated(host_build, files):
    """load() and decode() sized their output before the checksums were
    read: a damaged file claiming 2 GiB made the JVM allocate it first
    (OutOfMemoryError on a phone's heap) instead of failing its CRC. Here a
    claim of 2 MB against 1 MB of direct memory."""
    from tfdc import decode
    packed = files["models"]["mlp"]["packed"]
    path = files["dir"] / "claims_2mb.bad"
    path.write_bytes(_claiming(packed, (1 << 21) - 1))
    assert len(decode(packed)) < 1 << 20
    (r,) = _run_jvm(host_build, "bad", path, jvm_options=["-XX:MaxDirectMemorySize=1m"])
    assert r["exception"] == "org.tfdc.loader.TfdcFormatException" and r["status"] == -6, r
    assert r["load"] == "TfdcFormatException -6", r


def test_a_cache_that_cannot_be_written_says_where_and_leaves_nothing(host_build, files, tmp_path):
    """A file where the directory goes failed after a full decode as "Not a
    directory"; a write that failed at the checksum (a full disk, here a
    directory where the checksum goes) left the model file without one,
    never reused and in the way."""
    from hashlib import sha256
    d = files["dir"]
    blocked = tmp_path / "blocked"
    blocked.write_bytes(b"a file, not a directory")
    no_check = tmp_path / "no_check"
    mlp = files["models"]["mlp"]["packed"]
    (no_check / f"tfdc-{sha256(mlp).hexdigest()}.crc32").mkdir(parents=True)  # cannot be replaced
    first, second = _run_jvm(host_build, "cache-fail", blocked, d / "mlp.packed",
                             "cache-fail", no_check, d / "mlp.packed")
    assert first["message"] == f"cannot create the model cache directory {blocked}"
    assert first["decodes"] == 0 and blocked.read_bytes() == b"a file, not a directory"
    assert second["message"].startswith(
        f"cannot write the decoded model to {no_check}/tfdc-{sha256(mlp).hexdigest()}.tflite: "
        "cannot rename"), second
    assert second["decodes"] == 1
    assert second["files_in_dir"] == f"tfdc-{sha256(mlp).hexdigest()}.crc32"  # the directory


def test_cache_reuses_decoded_file_by_content_hash(files, jvm):
    from hashlib import sha256

    import tfdc
    from tfdc import decode
    first, second, other, stale, altered = [
        r for r in _by(jvm, "cache", ".packed")
        if not any(f"/{d}/" in r["file"] for d in ("cache_older", "cache_unversioned"))]
    mlp, conv = files["models"]["mlp"]["packed"], files["models"]["conv"]["packed"]
    assert first["reused"] is False and second["reused"] is True
    assert second["millis_positive"]  # hashing and checking the file take time too
    assert first["file"] == second["file"] and first["sha256"] == sha256(mlp).hexdigest()
    assert other["reused"] is False and other["sha256"] == sha256(conv).hexdigest() != first["sha256"]
    assert stale["reused"] is False  # a truncated file under the right name is redone
    # Altered in place to the same length: redone too (its CRC-32 differs).
    assert altered["reused"] is False and altered["file"] == first["file"]
    for r, packed in [(other, conv), (stale, conv), (altered, mlp)]:
        assert open(r["file"], "rb").read() == decode(packed)
    # Only the final files and their checksums remain: no temporary leftovers.
    names = [f"tfdc-{sha256(m).hexdigest()}" for m in (mlp, conv)]
    assert other["files_in_dir"].split(",") == sorted(
        [f"{n}.{ending}" for n in names for ending in ("crc32", "tflite")])
    import zlib
    for name in names:
        folder = os.path.dirname(first["file"])
        data = open(os.path.join(folder, f"{name}.tflite"), "rb").read()
        assert open(os.path.join(folder, f"{name}.crc32")).read() == \
            f"{zlib.crc32(data):08x} {len(data)} tfdc_decode {tfdc.__version__}"


def test_cache_never_reuses_files_another_decoder_wrote(files, jvm):
    """The record named no decoder: after a loader update whose decoder
    writes otherwise (the asset and cacheDir unchanged), the old output was
    reused for ever."""
    import tfdc
    from tfdc import decode
    (older,) = [r for r in jvm if r["op"] == "cache" and "/cache_older/" in r["file"]]
    (unversioned,) = [r for r in jvm if r["op"] == "cache" and "/cache_unversioned/" in r["file"]]
    for r in (older, unversioned):
        assert r["reused"] is False, r
        assert open(r["file"], "rb").read() == decode(files["models"]["mlp"]["packed"])
        record = open(r["file"][:-len(".tflite")] + ".crc32").read()
        assert record.endswith(f" tfdc_decode {tfdc.__version__}")


def test_cache_shared_by_threads_loading_and_evicting_throws_nothing(jvm):
    """A file deleted by another thread's eviction between the check and its
    read threw FileNotFoundException; a fresh checksum file was deleted as
    a stale .part (its lastModified() 0 once gone)."""
    (r,) = [r for r in jvm if r["op"] == "race"]
    assert r["failures"] == 0, r["first"]


def test_cache_takes_plain_files_and_an_apps_own_decoder(files, jvm):
    """A plain .tflite failed in the cache (the native decoder's NOT_PACKED)
    though TfdcDecoder.load takes it; with an app's own decoder, the reuse
    check asked the native decoder's size, so its files were never reused."""
    plain = files["models"]["mlp"]["tflite"]
    first, second = _by(jvm, "cache", "mlp.tflite")
    assert (first["reused"], second["reused"]) == (False, True)
    assert open(second["file"], "rb").read() == plain
    first, second = _by(jvm, "cache-copy", "mlp.packed")
    assert (first["reused"], second["reused"]) == (False, True)
    assert open(second["file"], "rb").read() == files["models"]["mlp"]["packed"]


def test_an_apps_size_limit_is_checked_before_decoding(files, jvm):
    """The loader had no limit of its own: a file whose checksums hold could
    claim 2 GiB and have it allocated before it was found corrupt."""
    from tfdc import decode
    size = len(decode(files["models"]["mlp"]["packed"]))
    negative, below, above = sorted(_by(jvm, "limit", "mlp.packed"), key=lambda r: r["limit"])
    assert negative["outcome"] == ("IllegalArgumentException maxDecodedBytes must be >= 0 "
                                   "(0: the decoder's limit), got -1")
    assert below["outcome"] == "TfdcFormatException -10"  # TFDC_ERR_TOO_LARGE
    assert above["outcome"] == f"decoded {size}"
    # A plain file is held to the limit too (it was copied whatever its size).
    plain = len(files["models"]["mlp"]["tflite"])
    below, exact = sorted(_by(jvm, "limit", "mlp.tflite"), key=lambda r: r["limit"])
    assert below["outcome"] == "TfdcFormatException -10"
    assert exact["outcome"] == f"decoded {plain}"


def test_eviction_keeps_the_entry_and_files_being_written(files, jvm):
    """evictAllBut deleted every tfdc-* file, another call's .part too;
    a .part file a crash left (two hours old) is deleted."""
    from hashlib import sha256
    (r,) = [r for r in jvm if r["op"] == "evict"]
    mlp = files["models"]["mlp"]["packed"]
    assert sorted(r["files_in_dir"].split(",")) == sorted(
        [f"tfdc-{sha256(mlp).hexdigest()}.tflite", f"tfdc-{sha256(mlp).hexdigest()}.crc32",
         "tfdc-4567.8910.part"])


def test_fallback_policy_reports_why_each_accelerator_was_skipped(jvm):
    (r,) = [r for r in jvm if r["op"] == "fallback"]
    assert r["accelerator"] == "CPU" and r["value"] == "interpreter-on-CPU"
    assert r["tried"] == "GPU,NNAPI,CPU"
    assert "GPU: failed (UnsatisfiedLinkError: libtensorflowlite_gpu_jni.so not found)" in r["reason"]
    assert "NNAPI: failed (IllegalArgumentException" in r["reason"]
    assert r["all_failed_message"].startswith("no accelerator could run the model: NPU:")
    # The time the failed attempts took counts to the first answer (it was
    # left out: a GPU that took 300 ms to refuse showed as init 0.7 ms).
    assert r["failed_ms"] >= 20 and r["init_ms"] < r["failed_ms"]
    assert r["total_ms"] == pytest.approx(1.0 + r["failed_ms"] + r["init_ms"] + 2.0)


def _expected_policy(sdk, runtime):
    """The default order, written out independently of the Kotlin code:
    GPU, then NPU (LiteRT, Android 12+), then NNAPI (Android 8.1 up to 14:
    deprecated from Android 15, API 35), then CPU; only what the runtime has."""
    reachable = {"INTERPRETER": {"GPU", "NNAPI", "CPU"}, "COMPILED_MODEL": {"GPU", "NPU", "CPU"}}[runtime]
    on_device = {"GPU": True, "NPU": sdk >= 31, "NNAPI": 27 <= sdk < 35, "CPU": True}
    return [a for a in ("GPU", "NPU", "NNAPI", "CPU") if on_device[a] and a in reachable]


@pytest.mark.parametrize("sdk,runtime,works", POLICY_CASES)
def test_default_policy_per_api_level(jvm, sdk, runtime, works):
    (r,) = [r for r in jvm if r["op"] == "policy" and (r["sdk"], r["runtime"], r["works"]) ==
            (sdk, runtime, works)]
    order = _expected_policy(sdk, runtime)
    assert r["order"] == ",".join(order)
    working = [a for a in order if a in works.split(",")]
    if not working:  # nothing opens: every accelerator in the order was tried
        assert r["accelerator"] is None and r["tried"] == r["order"]
        return
    ran = working[0]
    assert r["accelerator"] == ran and r["value"] == f"compiled-on-{ran}"
    # Tried in order up to the first that works; nothing after it.
    assert r["tried"] == ",".join(order[:order.index(ran) + 1])
    # Every accelerator that did not run is in the trail with its reason.
    trail = r["trail"].split(" | ")
    assert f"{ran}: ran" in trail
    for a in ("GPU", "NPU", "NNAPI", "CPU"):
        if a == ran or a in order[order.index(ran) + 1:]:
            continue
        (line,) = [t for t in trail if t.startswith(f"{a}: ")]
        assert line.startswith(f"{a}: failed (" if a in order else f"{a}: skipped ("), line
        assert line in r["reason"]
    if sdk >= 35:  # Android 15+: NNAPI is never tried, and the user is told why
        assert "NNAPI" not in r["tried"]
        assert "NNAPI: skipped (NNAPI is deprecated since Android 15 (API 35)" in r["reason"]
    if runtime == "INTERPRETER":
        assert "NPU: skipped (" in r["reason"]

