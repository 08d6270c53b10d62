"""The fused weight-sharing op of `ClusteredFineTuning`, built at run time.

TensorFlow's own operators make the clustering constraint two sparse matrix
products per kernel, which cost a LeNet-300-100 train step 18-28 %;
`tfdc/native/cluster_op.cc` does the same work in one CPU kernel, for 5-17 %
(docs/BENCHMARKS.md). Its C++ ABI is tied to the exact TensorFlow build, so
it cannot ship prebuilt; `load()` compiles it once per TensorFlow version with
TensorFlow's own flags (`tf.sysconfig`), into a cache directory, and runs it
once in a subprocess against NumPy before any training process loads it: a
broken build or ABI mismatch costs a warning, never a crash. Without a C++
compiler, or when the build or the check fails, `load()` returns None and the
constraint uses `tf.sparse.sparse_dense_matmul` (the same up to float rounding
of the clusters' sums, which are added in another order; slower).

Environment:
    TFDC_CLUSTER_OP=0   never build or use the fused op.
    TFDC_CACHE_DIR      where builds go (default: $XDG_CACHE_HOME/tfdc or
                        ~/.cache/tfdc).
    CXX                 the C++ compiler (default: c++, then g++, clang++).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "cluster_op.cc")
_BUILD_TIMEOUT_S = 300
_state = {}  # process-wide: "module" once loaded, or "failed" with the reason


class BuildError(RuntimeError):
    """The fused op could not be built or failed its check."""


def cache_dir():
    root = os.environ.get("TFDC_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "tfdc")
    return root


def _compiler():
    for name in [os.environ.get("CXX"), "c++", "g++", "clang++"]:
        if name and shutil.which(name):
            return shutil.which(name)
    raise BuildError("no C++ compiler found (set CXX)")


def _flags():
    import tensorflow as tf
    compile_flags = []
    for f in tf.sysconfig.get_compile_flags():
        # TensorFlow's headers are not warning-free; ours is, with -isystem.
        compile_flags += ["-isystem", f[2:]] if f.startswith("-I") else [f]
    return compile_flags, list(tf.sysconfig.get_link_flags())


def library_path():
    """Where the build for this TensorFlow, source and compiler is cached."""
    import tensorflow as tf
    compile_flags, link_flags = _flags()
    key = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        key.update(f.read())
    for part in [tf.__version__, _compiler(), *compile_flags, *link_flags]:
        key.update(part.encode() + b"\0")
    return os.path.join(cache_dir(), f"cluster_op-tf{tf.__version__}-{key.hexdigest()[:16]}.so")


def build(path):
    """Compile the op to `path` (atomically: a temp file, then a rename)."""
    compile_flags, link_flags = _flags()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
    os.close(fd)
    cmd = [_compiler(), "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-ffp-contract=off",
           *compile_flags, SOURCE, "-o", tmp, *link_flags]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(cmd)}\n{proc.stderr[-2000:]}")
        os.replace(tmp, path)
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"compiler timed out after {_BUILD_TIMEOUT_S} s") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return proc.stderr


def reference(w, positions, assignment, scale, old, mean):
    """The op in NumPy, float32, bit for bit: member i goes into partial sum
    i mod 4, in order (np.add.at is unbuffered), the sums are
    (p0 + p1) + (p2 + p3). Returns (projected kernel, new centroids)."""
    import numpy as np
    w = np.asarray(w, np.float32)
    acc = np.zeros((4, old.size), np.float32)
    np.add.at(acc, (np.arange(positions.size) % 4, assignment), w.ravel()[positions])
    sums = (acc[0] + acc[1]) + (acc[2] + acc[3])
    new = sums * scale if mean else old + (sums - scale * old)
    new = np.where(new == 0, old, new).astype(np.float32)
    out = np.zeros(w.size, np.float32)
    out[positions] = new[assignment]
    return out.reshape(w.shape), new


_CHECK = r"""
import sys
import numpy as np
import tensorflow as tf
from tfdc.cluster_op import reference
op = tf.load_op_library(sys.argv[1])
rng = np.random.default_rng(0)
n, k = 1000, 7
pos = np.sort(rng.choice(n, 300, replace=False)).astype(np.int32)
asg = rng.integers(0, k, pos.size).astype(np.int32)
cnt = np.bincount(asg, minlength=k).astype(np.float32)
old = np.linspace(-1, 1, k).astype(np.float32)
w = rng.normal(size=n).astype(np.float32)
for mean, scale in ((True, np.float32(1) / cnt), (False, cnt)):
    want, new = reference(w, pos, asg, scale, old, mean)
    got, cen = op.tfdc_cluster_project(w, pos, asg, scale, old, mean=mean)
    assert np.array_equal(got.numpy(), want) and np.array_equal(cen.numpy(), new), mean
try:
    op.tfdc_cluster_project(w, pos + n, asg, cnt, old, mean=True)
except tf.errors.InvalidArgumentError:
    print("ok")
"""


def check(path):
    """Run the built op on a small case in a fresh process, against NumPy."""
    # This tfdc, also when it is imported from a source tree, not installed.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", _CHECK, path], capture_output=True, text=True,
                          timeout=_BUILD_TIMEOUT_S,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=pythonpath))
    if proc.returncode != 0 or proc.stdout.strip().splitlines()[-1:] != ["ok"]:
        raise BuildError(f"the built op failed its check (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")


def load():
    """The loaded op library (`.tfdc_cluster_project`), or None (see module doc).

    A build or check failure is remembered next to the build (`<lib>.failed`,
    holding the reason) so that later processes do not retry it; delete that
    file (or the cache directory) to try again. A full disk is not
    remembered: the next process tries again."""
    if "module" in _state:
        return _state["module"]
    if "failed" in _state:
        return None
    if os.environ.get("TFDC_CLUSTER_OP", "1") == "0":
        _state["failed"] = "disabled by TFDC_CLUSTER_OP=0"
        return None
    try:
        import tensorflow as tf
        path = library_path()
        if os.path.exists(path + ".failed"):
            with open(path + ".failed") as f:
                raise BuildError(f"an earlier attempt failed ({path}.failed):\n{f.read()}")
        if not (os.path.exists(path) and os.path.exists(path + ".ok")):
            try:
                if not os.path.exists(path):
                    print(f"tfdc: building the fused clustering op for TensorFlow "
                          f"{tf.__version__} (once; about 15 s) into {os.path.dirname(path)}",
                          file=sys.stderr)
                    build(path)
                check(path)
            except BuildError as e:
                _remember_failure(path, e)
                raise
            _write_atomically(path + ".ok", "checked\n")
        _state["module"] = tf.load_op_library(path)
        return _state["module"]
    except Exception as e:  # noqa: BLE001 - any failure means: use the fallback
        _state["failed"] = str(e)
        where = ("; TFDC_CACHE_DIR names another folder for the build"
                 if isinstance(e, OSError) and "TFDC_CACHE_DIR" not in os.environ else "")
        warnings.warn(f"tfdc: fused clustering op unavailable, using sparse_dense_matmul "
                      f"(slower train steps): {e}{where}", RuntimeWarning, stacklevel=2)
        return None


def _write_atomically(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _remember_failure(path, error):
    """Write `<lib>.failed`, unless the build failed for want of space (a
    full disk or quota, which the user frees: the next process retries)."""
    import errno
    if any(os.strerror(code) in str(error) for code in (errno.ENOSPC, errno.EDQUOT)):
        return
    try:
        if os.path.exists(path):
            os.unlink(path)  # never load a library that failed its check
        _write_atomically(path + ".failed", str(error))
    except OSError:
        pass  # an unwritable cache: the next process tries again


def status():
    """'loaded', 'not loaded', or why it is unavailable."""
    if "module" in _state:
        return "loaded"
    return _state.get("failed", "not loaded")
