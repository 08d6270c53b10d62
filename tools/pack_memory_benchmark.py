"""Peak memory of `tfdc.pack.pack_tflite` against the size of the model.

Packing runs on a desktop, but a large model still has to fit: this packs
one-tensor models (a Dense kernel of N float32 weights taking 5 shared
values, dense, and pruned to 10 % with 16 values; and an int8 kernel of N
smooth weights, as a full-integer model holds them, which gets the
context-modelled range code) and reports the
`tracemalloc` peak of the pack call alone, as bytes and as a multiple of
the input file. Writes the `pack-memory` section of docs/BENCHMARKS.md.

    python tools/pack_memory_benchmark.py              # 1M, 4M and 12M weights
    python tools/pack_memory_benchmark.py --no-write   # print only
"""

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402
from tool_args import description  # noqa: E402

SIZES = ((1000, 1000), (2000, 2000), (4000, 3000))  # (inputs, units) of the Dense kernel


def model_bytes(rows, cols, kept, values, seed=0):
    """A converted `.tflite` with one Dense kernel of rows x cols weights:
    `values` shared values, a fraction `kept` of the weights nonzero."""
    import keras

    from tfdc.exporter import convert
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=values).astype(np.float32)
    w = shared[rng.integers(0, values, size=(rows, cols))]
    w[rng.random((rows, cols)) >= kept] = 0.0
    model = keras.Sequential([keras.Input((rows,), name="x"),
                              keras.layers.Dense(cols, use_bias=False, name="fc")])
    model.get_layer("fc").set_weights([w])
    return convert(model, batch_size=1)


def int8_model_bytes(rows, cols, seed=0):
    """A flatbuffer holding one int8 kernel of rows x cols weights that
    change slowly along each row (a random walk): the kind the packer codes
    with a context-modelled table (`tfdc.rans`), the costliest to fit."""
    from tfdc.tflite_schema import constant_model
    walk = np.cumsum(np.random.default_rng(seed).normal(size=(rows, cols)), axis=1) / 4
    return constant_model([np.clip(np.round(walk), -127, 127).astype(np.int8)])


def measure(data):
    """`(packed bytes, tracemalloc peak, seconds)` of one pack_tflite call
    (tools/native_benchmark.py's subprocess probe measures with it too)."""
    from tfdc.pack import pack_tflite
    tracemalloc.start()
    start = time.perf_counter()
    packed, _ = pack_tflite(data)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return packed, peak, seconds


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    add_no_write(parser)
    args = parser.parse_args()
    rows = []
    for inputs, units in SIZES:
        for label, kept, values in (("dense, 5 values", 1.0, 5), ("10 % kept, 16 values", 0.1, 16),
                                    ("int8, smooth rows", None, None)):
            data = (int8_model_bytes(inputs, units) if kept is None else
                    model_bytes(inputs, units, kept, values))
            packed, peak, seconds = measure(data)
            size = len(packed)
            rows.append([f"{inputs * units:,}", label, f"{len(data):,}", f"{size:,}",
                         f"{peak / 1e6:,.0f} MB", f"{peak / len(data):.1f}x", f"{seconds:.1f}"])
            print(rows[-1], flush=True)
    body = ("One Dense kernel per model, converted with `tfdc.exporter.convert(batch_size=1)`; "
            "the int8 kernels (context-coded: `tfdc.rans`) in a flatbuffer of constants "
            "(`tfdc.tflite_schema.constant_model`); the peak is `tracemalloc`'s over the "
            "`pack_tflite` call alone (NumPy arrays included; the input bytes were read "
            "before).\n\n"
            + markdown_table(["weights", "kernel", "input B", "packed B", "peak", "peak / input",
                              "seconds"], rows))
    publish(args, "pack-memory", "Pack memory: peak against model size", body)


if __name__ == "__main__":
    main()
