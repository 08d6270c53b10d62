"""A damaged packed file never decodes to a different model.

Every truncation and 10,000 random single-bit flips of a packed LeNet-300-100
must raise `tfdc.FormatError` (or, for a flip the checksums do not cover,
decode to exactly the original model) — never another exception, a hang, or
different weights. Run with the fastest decoder, and a sample with the pure
Python one.
"""

import signal

import keras
import numpy as np
import pytest

import tfdc
from tfdc.models import lenet_300_100

FLIPS = 10_000
PYTHON_FLIPS = 300
PYTHON_TRUNCATIONS = 300


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    keras.utils.set_random_seed(5)
    model = lenet_300_100()
    rng = np.random.default_rng(0)
    for variable, kept in zip(model.weights[::2], (0.08, 0.09, 0.26)):
        codebook = rng.normal(0, 0.2, 32).astype("float32")
        shape = tuple(variable.shape)
        w = np.where(rng.random(shape) < kept, codebook[rng.integers(0, 32, shape)], 0)
        variable.assign(w.astype("float32"))
    for variable in model.weights[1::2]:
        variable.assign(rng.normal(0, 0.1, tuple(variable.shape)).astype("float32"))
    path = tmp_path_factory.mktemp("corruption") / "lenet.tflite"
    tfdc.export(model, path)
    data = path.read_bytes()
    return data, tfdc.decode(data)


class _Deadline:
    """Fail (instead of hanging) if a block runs longer than `seconds`."""

    def __init__(self, seconds):
        self.seconds = seconds

    def _expired(self, *_):
        raise TimeoutError(f"decoding damaged files took more than {self.seconds} s")

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._expired)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


def _outcome(data, original, backend):
    """"error" for a FormatError, "same" for a decode identical to the
    original; anything else fails the test."""
    try:
        decoded = tfdc.decode(data, backend=backend)
    except tfdc.FormatError:
        return "error"
    assert decoded == original, "a damaged file decoded to a different model"
    return "same"


def test_every_truncation_is_a_format_error(packed):
    data, original = packed
    with _Deadline(60):
        for length in range(len(data)):
            with pytest.raises(tfdc.FormatError):
                tfdc.decode(data[:length])


def test_truncations_with_the_python_decoder(packed):
    data, original = packed
    rng = np.random.default_rng(1)
    # The tail holds the section: sample it densely, the rest sparsely.
    lengths = set(range(max(0, len(data) - 64), len(data)))
    lengths |= set(int(n) for n in rng.integers(0, len(data), PYTHON_TRUNCATIONS))
    with _Deadline(60):
        for length in sorted(lengths):
            with pytest.raises(tfdc.FormatError):
                tfdc.decode(data[:length], backend="python")


def _flip_outcomes(data, original, flips, backend, seed):
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, len(data), flips)
    bits = rng.integers(0, 8, flips)
    outcomes = {"error": 0, "same": 0}
    same_at, wrong = [], []
    buffer = bytearray(data)
    for pos, bit in zip(positions.tolist(), bits.tolist()):
        buffer[pos] ^= 1 << bit
        try:
            result = _outcome(bytes(buffer), original, backend)
        except tfdc.FormatError:
            raise
        except Exception as e:  # collected, so the report names every case
            wrong.append(f"byte {pos} bit {bit}: {type(e).__name__}: {e}")
            result = None
        buffer[pos] ^= 1 << bit
        if result is not None:
            outcomes[result] += 1
        if result == "same":
            same_at.append(pos)
    assert not wrong, (f"{len(wrong)} of {flips} flips ({backend} decoder, file of "
                       f"{len(data)} bytes) raised something other than FormatError:\n"
                       + "\n".join(wrong[:10]))
    return outcomes, same_at


def test_random_bit_flips_never_give_a_different_model(packed):
    data, original = packed
    with _Deadline(120):
        outcomes, same_at = _flip_outcomes(data, original, FLIPS, "auto", seed=2)
    assert outcomes["error"] + outcomes["same"] == FLIPS
    # The two CRC-32s cover every byte of the file (FORMAT.md §3.1), so every
    # single-bit flip must be detected.
    assert same_at == [], f"undetected flips at byte offsets {sorted(set(same_at))[:20]}"


def test_random_bit_flips_with_the_python_decoder(packed):
    data, original = packed
    with _Deadline(120):
        outcomes, same_at = _flip_outcomes(data, original, PYTHON_FLIPS, "python", seed=3)
    assert outcomes["error"] == PYTHON_FLIPS and same_at == []


def test_the_undamaged_file_decodes_to_the_original(packed):
    data, original = packed
    assert _outcome(data, original, "auto") == "same"
    assert _outcome(data, original, "python") == "same"


def test_a_graph_damaged_under_a_valid_crc_is_a_format_error_for_inspect():
    # Bit flips in the deflated graph with the CRC made right again (a
    # deliberately altered file): inspect raised struct.error from the
    # generated flatbuffer reader (a traceback from `tfdc inspect`).
    import struct
    import zlib

    import tensorflow as tf

    from tfdc.unpack import read_pack_info

    class AddOne(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
        def f(self, x):
            return x + 1.0

    module = AddOne()
    plain = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.f.get_concrete_function()], module).convert()
    data, _ = tfdc.pack.pack_tflite(plain, min_bytes=0)
    info = read_pack_info(data)
    start = info.stub_bytes + info.header_bytes
    kinds = {"ok": 0, "damaged": 0, "other": 0}
    with _Deadline(120):
        for pos in range(start, start + info.meta_bytes):
            for bit in (0, 7):
                damaged = bytearray(data)
                damaged[pos] ^= 1 << bit
                damaged[-4:] = struct.pack("<I", zlib.crc32(bytes(damaged[:-4])))
                try:
                    tfdc.inspect(bytes(damaged))
                    kinds["ok"] += 1
                except tfdc.FormatError as e:
                    kinds["damaged" if "damaged or truncated" in str(e) else "other"] += 1
    assert kinds["damaged"] > 0, kinds  # the case this guards is reached


def test_every_bit_flip_of_the_stub_is_refused_by_every_reader(packed, tmp_path):
    # A flip in the 120-byte stub (the outer flatbuffer) could leave a model
    # with no subgraph: inspect reported on it as a plain file, export_tflite
    # "packed" it to 164 B without its section, and load_interpreter let
    # LiteRT's ValueError ("schema version 0") through.
    data, _ = packed
    out = tmp_path / "out.tflite"
    from tfdc.format import STUB_SIZE
    for bit in range(8 * STUB_SIZE):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        damaged = bytes(damaged)
        for read in (tfdc.inspect, tfdc.load_interpreter):
            try:
                read(damaged)
            except tfdc.FormatError:
                pass
        with pytest.raises((tfdc.FormatError, ValueError)) as refused:
            tfdc.export_tflite(damaged, out)
        assert isinstance(refused.value, tfdc.FormatError) or \
            "already a tfdc-packed model" in str(refused.value), (bit, refused.value)
        assert not out.exists()
