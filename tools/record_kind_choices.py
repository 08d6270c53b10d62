"""Record kinds format 2 left out, measured: per-channel coding of int8
kernels, and a predictor in front of the float byte planes.

1. Per-channel int8 (the dynamic-range int8 export, one scale per output
   channel): the nonzero codes of each kernel coded with one Huffman table (what
   format 2 does, codebook or planes), against a table per output channel, and
   against a codebook per channel with one shared index table. Side
   information is counted (1 byte per codebook entry, 2 bytes + 1.5 per coded
   symbol for a table).
2. Float planes (biases, and the unpruned kernels of the float model): the
   four byte planes of each rotated float32 coded order-0 (format 2), against
   the same after a delta or XOR predictor on the rotated values
   (`t[i] − t[i−1]`, `t[i] ⊕ t[i−1]`).

The models: LeNet-300-100 and LeNet-5 trained on 12,000 real MNIST images as
in tools/format_benchmark.py (1 epoch float, 1 pruning, 1 clustering).

    python tools/record_kind_choices.py [--mnist PATH] [--no-write]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from tool_args import description, run  # noqa: E402

from tfdc import format as fmt  # noqa: E402
from tfdc import huffman, tflite_schema  # noqa: E402


def huff_bytes(symbols):
    counts = np.bincount(symbols)
    used = np.count_nonzero(counts)
    if used <= 1:
        return 2.0
    lengths = huffman.code_lengths(counts)
    return huffman.coded_bits(counts, lengths) / 8 + 2 + 1.5 * used


def plane_bytes(t):
    """Order-0 planes of uint32 values `t`: each plane Huffman or stored."""
    return sum(min(huff_bytes(((t >> (8 * (3 - p))) & 255).astype(np.int64)), len(t) + 2.0)
               for p in range(4))


def per_channel(tflite):
    """(one table, per-channel tables, per-channel codebooks + shared table)
    bytes of the nonzero codes of every per-channel int8 kernel."""
    model = tflite_schema.read(tflite)
    totals = np.zeros(3)
    for sg in model.subgraphs:
        for t in sg.tensors:
            b = model.buffers[t.buffer]
            q = t.quantization
            if (t.type != 9 or b.data is None or len(b.data) < 1024 or q is None
                    or q.scale is None or len(q.scale) < 2):
                continue
            w = np.frombuffer(np.asarray(b.data, np.uint8).tobytes(), np.int8).reshape(t.shape)
            w = np.moveaxis(w, q.quantizedDimension, 0).reshape(w.shape[q.quantizedDimension], -1)
            one = huff_bytes(w[w != 0].astype(np.int64) + 128)
            tables = books = 0.0
            indices = []
            for row in w:
                v = row[row != 0].astype(np.int64)
                if len(v):
                    u, inv = np.unique(v, return_inverse=True)
                    tables += len(u) + huff_bytes(inv)
                    books += len(u)
                    indices.append(inv)
            totals += (one, tables, books + huff_bytes(np.concatenate(indices)))
    return totals


def float_planes(tflite, biases):
    """(order-0, delta, xor) plane bytes of the float32 biases (rank 1) or
    kernels (rank >= 2) of at least 64 values."""
    model = tflite_schema.read(tflite)
    totals = np.zeros(3)
    seen = set()
    for sg in model.subgraphs:
        for t in sg.tensors:
            b = model.buffers[t.buffer]
            if (t.type != 0 or b.data is None or len(b.data) < 256 or t.buffer in seen
                    or (len(t.shape) == 1) != biases):
                continue
            seen.add(t.buffer)
            x = np.frombuffer(np.asarray(b.data, np.uint8).tobytes(), np.uint32)
            r = fmt.transform(x, fmt.TRANSFORM_ROTATE, 32).astype(np.uint32)
            prev = np.concatenate([[0], r[:-1]]).astype(np.uint32)
            totals += (plane_bytes(r), plane_bytes((r - prev).astype(np.uint32)),
                       plane_bytes(r ^ prev))
    return totals


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--mnist", default=None, help="MNIST .npz (default: $TFDC_MNIST)")
    from benchmarks_md import add_no_write, markdown_table, publish
    add_no_write(parser)
    args = parser.parse_args(argv)
    from format_benchmark import _int8, _models, _train
    from tfdc.datasets import load_mnist
    from tfdc.exporter import convert
    (x, y), _ = load_mnist(args.mnist)  # unusable: one line, exit 2 (run)
    rows_pc, rows_fp = [], []
    pays_pc, pays_fp = [], []  # the rows where the left-out kind is smaller
    for name, build, sparsity in _models()[:2]:
        model, float_int8 = _train(build, sparsity, x[:12000], y[:12000], print)
        for label, tflite in (("pruned + clustered", _int8(model)), ("float", float_int8)):
            one, tables, books = per_channel(tflite)
            if min(tables, books) < one:
                pays_pc.append(f"{name} {label}")
            rows_pc.append([name, label, f"{one:,.0f}", f"{tables:,.0f} ({tables / one - 1:+.0%})",
                            f"{books:,.0f} ({books / one - 1:+.0%})"])
            print(rows_pc[-1], flush=True)
        plain = convert(model)
        o, d, xr = float_planes(plain, True)
        if min(d, xr) < o:
            pays_fp.append(f"{name} biases")
        rows_fp.append([name, "biases", f"{o:,.0f}", f"{d:,.0f} ({d / o - 1:+.1%})",
                        f"{xr:,.0f} ({xr / o - 1:+.1%})"])
        # the kernels of the float model (1 epoch, not pruned), trained again
        o, d, xr = float_planes(_float_kernels(build, x[:12000], y[:12000]), False)
        if min(d, xr) < o:
            pays_fp.append(f"{name} unpruned kernels")
        rows_fp.append([name, "unpruned kernels (1 epoch)", f"{o:,.0f}",
                        f"{d:,.0f} ({d / o - 1:+.1%})", f"{xr:,.0f} ({xr / o - 1:+.1%})"])
        print(rows_fp[-2:], flush=True)
    # The docstring's list and models paragraph, not its usage line; each
    # item one line of a Markdown list (its continuation lines ran together).
    paragraphs = __doc__.split("\n\n")
    items = re.split(r"\n(?=\d\. )", paragraphs[1])
    body = "\n\n".join([
        "\n".join(" ".join(line.strip() for line in item.splitlines()) for item in items),
        " ".join(paragraphs[2].split()),
        markdown_table(["model", "int8 export of", "one table B", "a table per channel B",
                        "codebook per channel + one table B"], rows_pc),
        markdown_table(["model", "float32 tensors", "order-0 planes B", "delta planes B",
                        "XOR planes B"], rows_fp),
        ("Neither pays: per-channel side information costs more than the per-channel "
         "statistics save, and consecutive trained biases or weights are not correlated "
         "enough for a predictor. Format 2 codes each int8 kernel with one table and float "
         "planes without a predictor." if not pays_pc and not pays_fp else
         "Smaller on some rows, to weigh against a new record kind: "
         + "; ".join(filter(None, [
             "per-channel tables or codebooks on " + ", ".join(pays_pc) if pays_pc else "",
             "predicted float planes on " + ", ".join(pays_fp) if pays_fp else ""])) + ".")])
    publish(args, "record_kind_choices", "Record kinds left out: per-channel int8, float "
            "predictors", body)


def _float_kernels(build, x, y):
    import keras

    from tfdc.exporter import convert
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    return convert(model)


if __name__ == "__main__":
    run(main)
