"""tfdc.cluster_op: the fused weight-sharing op, built against the installed
TensorFlow, its checks, and its fallbacks."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfdc import cluster_op

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def op():
    lib = cluster_op.load()
    assert lib is not None, cluster_op.status()
    return lib


@pytest.mark.parametrize("mean", [True, False])
def test_op_matches_numpy(op, mean):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(40, 50)).astype(np.float32)
    k = 9
    pos = np.sort(rng.choice(w.size, 600, replace=False)).astype(np.int32)
    asg = rng.integers(0, k, pos.size).astype(np.int32)
    counts = np.bincount(asg, minlength=k).astype(np.float32)
    old = np.linspace(-1, 1, k).astype(np.float32)
    # Cluster 0's members cancel: its mean is exactly 0, so it keeps `old`.
    members = pos[asg == 0]
    w.ravel()[members] = np.where(np.arange(members.size) % 2, 0.25, -0.25)
    if members.size % 2:
        w.ravel()[members[-1]] = 0.0
    scale = np.float32(1) / counts if mean else counts
    got, cen = op.tfdc_cluster_project(w, pos, asg, scale, old, mean=mean)
    want, want_cen = cluster_op.reference(w, pos, asg, scale, old, mean)
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(cen.numpy(), want_cen)
    if mean:
        assert cen.numpy()[0] == old[0]


@pytest.mark.parametrize("pos,asg,k,message", [
    ([0, 5, 3], [0, 1, 0], 2, "not an increasing position"),  # unsorted
    ([0, 5, 5], [0, 1, 0], 2, "not an increasing position"),  # repeated
    ([0, 5, 12], [0, 1, 0], 2, "not an increasing position"),  # past the end
    ([-1, 5], [0, 1], 2, "not an increasing position"),
    ([0, 5], [0, 2], 2, "cluster below 2"),
    ([0, 5], [0, -1], 2, "cluster below 2"),
    ([0, 5], [0], 2, "1 assignments"),
])
def test_bad_map_is_a_typed_error(op, pos, asg, k, message):
    w = np.ones(12, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        op.tfdc_cluster_project(w, np.array(pos, np.int32), np.array(asg, np.int32),
                                np.ones(k, np.float32), np.ones(k, np.float32), mean=True)


def test_builds_warning_free(tmp_path):
    stderr = cluster_op.build(str(tmp_path / "op.so"))
    assert "warning" not in stderr.lower(), stderr
    cluster_op.check(str(tmp_path / "op.so"))


FALLBACK = textwrap.dedent("""
    import json, os, warnings
    import keras, numpy as np
    from tfdc import cluster_op
    from tfdc.cluster import ClusteredFineTuning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lib = cluster_op.load()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d")])
    w = model.get_layer("d").kernel
    w.assign(np.where(np.arange(128).reshape(8, 16) % 3 == 0, 0.0, w.numpy()))
    model.compile("adam", "mse")
    cb = ClusteredFineTuning(bits=2, detach_at_end=False)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    model.fit(x, x @ np.ones((8, 16), "float32"), epochs=2, verbose=0, callbacks=[cb])
    v = w.numpy()
    print(json.dumps({"lib": lib is not None, "status": cluster_op.status(),
                      "warned": [str(c.message)[:80] for c in caught],
                      "fused": [c.fused is not None for _, c in cb._constraints],
                      "distinct": int(np.unique(v[v != 0]).size),
                      "zeros": int(np.count_nonzero(v == 0)),
                      "cache": sorted(os.listdir(cluster_op.cache_dir()))
                               if os.path.isdir(cluster_op.cache_dir()) else []}))
""")


def run_fallback(tmp_path, **env):
    env = dict(os.environ, PYTHONPATH=ROOT, TFDC_CACHE_DIR=str(tmp_path / "cache"), **env)
    proc = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def library_path_in(tmp_path):
    """Where a process with run_fallback's cache directory caches the op
    (the directory is created, empty). Computed here, with that process's
    environment (a subprocess of its own took 4 s to import TensorFlow)."""
    saved = os.environ.get("TFDC_CACHE_DIR")
    os.environ["TFDC_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        path = cluster_op.library_path()
    finally:
        if saved is None:
            del os.environ["TFDC_CACHE_DIR"]
        else:
            os.environ["TFDC_CACHE_DIR"] = saved
    os.makedirs(os.path.dirname(path))
    return path


def test_failed_build_warns_and_training_uses_sparse_matmul(tmp_path):
    result, _ = run_fallback(tmp_path, CXX="false")  # a "compiler" that always fails
    assert result["lib"] is False and result["fused"] == [False]
    assert result["warned"] and "fused clustering op unavailable" in result["warned"][0]
    assert "false" in result["status"]
    assert result["distinct"] <= 4 and result["zeros"] == 43  # 43 of 128 are 0 mod 3
    assert not [f for f in result["cache"] if f.endswith(".so")]  # no partial file left
    assert [f for f in result["cache"] if f.endswith(".failed")]
    # The failure is remembered: the next process warns without rebuilding.
    again, stderr = run_fallback(tmp_path, CXX="false")
    assert again["lib"] is False and "an earlier attempt failed" in again["status"]
    assert "building" not in stderr


def test_a_build_out_of_disk_space_is_retried_by_the_next_process(tmp_path):
    # A full disk was remembered as a failure for good: the op stayed off
    # after the space was freed. A "compiler" that fails as ld does then:
    full = tmp_path / "cxx_out_of_space"
    full.write_text("#!/bin/sh\necho 'ld: final link failed: No space left on device' >&2\n"
                    "exit 1\n")
    full.chmod(0o755)
    result, _ = run_fallback(tmp_path, CXX=str(full))
    assert result["lib"] is False and "No space left on device" in result["status"]
    assert not [f for f in result["cache"] if f.endswith(".failed")]
    again, stderr = run_fallback(tmp_path, CXX=str(full))
    assert "building" in stderr and "an earlier attempt failed" not in again["status"]


def test_broken_library_is_caught_by_the_check(tmp_path):
    """A cached library that is not a working build (here: garbage bytes)
    fails the subprocess check: a warning and the fallback, never a crash."""
    path = library_path_in(tmp_path)
    with open(path, "wb") as f:
        f.write(b"\x7fELF not really")
    result, _ = run_fallback(tmp_path)
    assert result["lib"] is False and result["fused"] == [False]
    assert "failed its check" in result["status"]
    assert not any(f.endswith(".ok") or f.endswith(".so") for f in result["cache"])


def test_stamp_without_library_rebuilds(tmp_path):
    """A `.ok` stamp whose library was deleted: build and check again."""
    path = library_path_in(tmp_path)
    with open(path + ".ok", "w") as f:
        f.write("checked\n")
    result, stderr = run_fallback(tmp_path)
    assert result["lib"] is True and result["fused"] == [True] and result["warned"] == []
    assert "building" in stderr and result["distinct"] <= 4 and result["zeros"] == 43


def test_disabled_by_environment(tmp_path):
    result, stderr = run_fallback(tmp_path, TFDC_CLUSTER_OP="0")
    assert result["lib"] is False and result["fused"] == [False] and result["warned"] == []
    assert result["status"] == "disabled by TFDC_CLUSTER_OP=0" and result["cache"] == []
    assert "building" not in stderr


def test_an_unwritable_cache_names_the_variable_that_moves_it(tmp_path, monkeypatch):
    # A read-only HOME: the fallback's warning said "Permission denied:
    # ~/.cache/..." and not how to build elsewhere. (A file where the cache
    # folder should be fails the same way, and does for root too.)
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.delenv("TFDC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not_a_folder"))
    monkeypatch.setattr(cluster_op, "_state", {})
    with pytest.warns(RuntimeWarning, match=r"fused clustering op unavailable.*Not a directory"
                      r".*; TFDC_CACHE_DIR names another folder for the build"):
        assert cluster_op.load() is None
