"""Build format 2's preset DEFLATE dictionary (tfdc/v2_dictionary.bin).

Small models' meta streams (graph, names, descriptors) are too short for
DEFLATE to find their repetitions: every vtable, option table, op name and
descriptor pattern appears there for the first time. A preset dictionary
(RFC 1951's window, pre-filled) gives DEFLATE those first occurrences. This
script makes it from the meta streams (inner flatbuffer + descriptors) of
five small, generic, untrained Keras models as tfdc packs them — an MLP, a
CNN, a depthwise/residual block, a 1-D CNN and an attention block, with
Keras's default layer names — the most generic last (DEFLATE codes short
distances in fewer bits).

The dictionary is part of format 2: decoders hold the same bytes (FORMAT.md
appendix B). The committed tfdc/v2_dictionary.bin is frozen for format major
version 2 and normative; this script no longer reproduces it byte for byte (the
meta streams depend on the TensorFlow and Keras versions). Run it only to make
a new major version's dictionary.

    python tools/make_dictionary.py --out NEW_DICTIONARY.bin
"""

import argparse
import contextlib
import hashlib
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tool_args import description, existing_dir_for, run  # noqa: E402


def source_models():
    """(name, keras model, fixed batch size or None), farthest first."""
    import keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 16))
    a = L.MultiHeadAttention(2, 8)(inp, inp)
    x = L.LayerNormalization()(inp + a)
    f = L.Dense(16)(L.Dense(32, activation="gelu")(x))
    x = L.GlobalAveragePooling1D()(L.LayerNormalization()(x + f))
    yield "attention", keras.Model(inp, L.Dense(4)(x)), 1
    yield "conv1d", keras.Sequential([
        keras.Input((40, 4)), L.Conv1D(16, 5, activation="relu"), L.MaxPooling1D(2),
        L.Conv1D(16, 3, activation="relu"), L.GlobalMaxPooling1D(), L.Dense(3)]), 1
    inp = keras.Input((24, 24, 3))
    x = L.Conv2D(16, 3, strides=2, activation="relu6")(inp)
    y = L.Conv2D(16, 1)(L.DepthwiseConv2D(3, padding="same", activation="relu6")(x))
    x = L.GlobalAveragePooling2D()(L.Add()([x, y]))
    yield "depthwise_residual", keras.Model(inp, L.Dense(5, activation="softmax")(x)), 1
    yield "cnn", keras.Sequential([
        keras.Input((20, 20, 3)), L.Conv2D(12, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(24, 3, padding="same", activation="relu"), L.AveragePooling2D(2),
        L.Flatten(), L.Dense(8)]), None
    yield "mlp", keras.Sequential([
        keras.Input((32,)), L.Dense(48, activation="relu"), L.Dense(24, activation="tanh"),
        L.Dense(6, activation="softmax")]), 1


def build():
    from tfdc import unpack
    from tfdc.exporter import convert
    from tfdc.pack import pack_tflite
    parts = []
    for name, model, batch in source_models():
        with contextlib.redirect_stdout(io.StringIO()):
            tflite = convert(model, batch_size=batch)
        packed, _ = pack_tflite(tflite, strip_debug=True)
        meta = unpack.parse(packed).meta
        print(f"{name}: meta stream {len(meta)} bytes", file=sys.stderr)
        parts.append(meta)
    return b"".join(parts)


def main():
    ap = argparse.ArgumentParser(description=description(__doc__))
    # Required, with no default into tfdc/: a bare run overwrote the frozen dictionary.
    ap.add_argument("--out", required=True, type=existing_dir_for,
                    help="where to write the new dictionary (its folder must exist); the "
                    "committed tfdc/v2_dictionary.bin is frozen for format 2: do not overwrite "
                    "it")
    args = ap.parse_args()
    data = build()
    if len(data) > 32768:
        raise SystemExit(f"dictionary of {len(data)} bytes exceeds DEFLATE's 32 KiB window")
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"{args.out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    run(main)
