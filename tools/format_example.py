"""Build a tiny packed model and print an annotated hex dump of its section.

The output is docs/FORMAT.md §7 ("A complete file"): every field of the
header, the code tables, the records and their streams, named and decoded.

    python tools/format_example.py            # print
    python tools/format_example.py --write    # also replace §7 of docs/FORMAT.md
"""

import argparse
import os
import re
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfdc import format as fmt  # noqa: E402
from tfdc import unpack  # noqa: E402
from tfdc.flatbuf import read_model  # noqa: E402
from tfdc.pack import pack_tflite  # noqa: E402
from tfdc.tflite_schema import constant_model  # noqa: E402


def example_model():
    """Three constant tensors: the §5 example (float32, sparse, G = 4), a
    small int8 tensor (dense, codebook of 3 values) and an int8 tensor of
    one repeated value (dense, a single-symbol table: no stream bytes)."""
    sparse = np.array([0, 0.5, 0, 0, -1, 0.5, 0, 0], np.float32)
    dense = np.array([1, 1, -2, 1, 1, 1, 3, 1, 1, 1, -2, 1, 1, 1, 1, 1], np.int8)
    constant = np.full(16, 7, np.int8)
    return constant_model([sparse, dense, constant])


def pack_example():
    # The §5 settings for the first tensor; dense for the second.
    return pack_tflite(example_model(), min_bytes=0, gap_alphabet=4, _force={
        1: {"position_mode": "sparse", "value_mode": "codebook"},
        2: {"position_mode": "dense", "value_mode": "codebook"},
        3: {"position_mode": "dense", "value_mode": "codebook"}})


class Dump:
    def __init__(self, data, base):
        self.data, self.base, self.lines = data, base, []

    def field(self, pos, size, name, value=None):
        raw = self.data[pos:pos + size]
        hexes = raw.hex(" ")
        if len(hexes) > 35:
            hexes = hexes[:32] + "…"
        text = f"{pos - self.base:6d}  {hexes:<35}  {name}"
        if value is not None:
            text += f" = {value}"
        self.lines.append(text)

    def note(self, text):
        self.lines.append(f"{'':6}  {'':35}  {text}")


def _stream(d, data, pos, name, tables):
    count, table, reserved, block = fmt.STREAM_HEADER.unpack_from(data, pos)
    d.field(pos, 8, f"{name}.count", count)
    d.field(pos + 8, 2, f"{name}.table", "0xFFFF (empty)" if table == 0xFFFF else table)
    d.field(pos + 10, 2, f"{name}.reserved", reserved)
    d.field(pos + 12, 4, f"{name}.block", block)
    pos += 16
    if count == 0 or tables[table][0] == 1:
        return pos
    nseg = -(-count // block)
    seg = struct.unpack_from(f"<{nseg}I", data, pos)
    for j in range(nseg):
        d.field(pos + 4 * j, 4, f"{name}.segment_bytes[{j}]", seg[j])
    pos += 4 * nseg
    for j in range(nseg):
        bits = " ".join(f"{b:08b}" for b in data[pos:pos + seg[j]][:4])
        d.field(pos, seg[j], f"{name}.segment[{j}]", f"bits {bits}")
        pos += seg[j]
    return pos


def annotate(packed):
    """The annotated dump of the section of `packed`, as a list of lines."""
    parsed = unpack.parse(packed)
    S, Z = parsed.S, parsed.Z
    model = read_model(packed)
    lines = [f"packed file: {len(packed)} bytes; flatbuffer and padding [0, {S}); "
             f"section [{S}, {S + Z}); decoded size D = {parsed.D}",
             "Model.buffers:"]
    for i, b in enumerate(model.buffers):
        where = (f"data {b.data_len} bytes inline" if b.data_len else
                 f"offset {b.offset}, size {b.size}" if b.offset else "empty")
        lines.append(f"  [{i}] {where}")
    lines.append("Model.metadata: " + ", ".join(f"{n.decode()!r} → buffer {b}"
                                                for n, b in model.metadata))
    lines.append("")
    lines.append("offset  bytes (section-relative offset)      field = value")
    d = Dump(packed, S)
    names = ["magic", "version_major", "version_minor", "header_size", "flags", "section_size",
             "decoded_size", "model_crc", "num_tables", "num_records", "reserved"]
    sizes = [4, 2, 2, 4, 4, 8, 8, 4, 4, 4, 4]
    values = fmt.HEADER.unpack_from(packed, S)
    pos = S
    for name, size, value in zip(names, sizes, values):
        if name == "model_crc":
            value = f"0x{value:08X}"
        d.field(pos, size, "header." + name, value)
        pos += size
    tables = []
    for i in range(values[8]):
        kind, max_len, reserved, n = struct.unpack_from("<BBHI", packed, pos)
        d.field(pos, 1, f"table[{i}].kind", f"{kind} ({'single symbol' if kind else 'Huffman'})")
        d.field(pos + 1, 1, f"table[{i}].max_len", max_len)
        d.field(pos + 2, 2, f"table[{i}].reserved", reserved)
        d.field(pos + 4, 4, f"table[{i}].n", n)
        pos += 8
        if kind == 1:
            d.field(pos, 4, f"table[{i}].symbol", struct.unpack_from("<I", packed, pos)[0])
            pos += 4
        else:
            nib = packed[pos:pos + (n + 1) // 2]
            lengths = [(b >> s) & 15 for b in nib for s in (0, 4)][:n]
            d.field(pos, len(nib), f"table[{i}].code_lengths", tuple(lengths))
            pos += len(nib)
        tables.append((kind, n))
    for i, rec in enumerate(parsed.records):
        fields = fmt.RECORD_HEADER.unpack_from(packed, pos)
        names = ["record_size", "buffer_index", "out_offset", "out_size", "elem_size",
                 "value_mode", "position_mode", "scan", "scan_rows", "nnz", "codebook_size",
                 "codebook_encoding", "reserved", "gap_alphabet"]
        sizes = [4, 4, 8, 8, 1, 1, 1, 1, 4, 8, 4, 1, 3, 4]
        start = pos
        for name, size, value in zip(names, sizes, fields):
            if name == "reserved":
                value = 0 if value == b"\0\0\0" else value
            d.field(pos, size, f"record[{i}].{name}", value)
            pos += size
        entry = 2 if rec.codebook_encoding else rec.elem_size
        dtype = {1: "<i1", 2: "<f2", 4: "<f4", 8: "<f8"}[entry]
        if rec.codebook_size:
            cb = np.frombuffer(packed, dtype, rec.codebook_size, pos)
            d.field(pos, rec.codebook_size * entry, f"record[{i}].codebook", cb.tolist())
            pos += rec.codebook_size * entry
        if rec.values is not None:
            pos = _stream(d, packed, pos, f"record[{i}].values", tables)
        else:
            d.field(pos, rec.nnz * rec.elem_size, f"record[{i}].raw_values")
            pos += rec.nnz * rec.elem_size
        if rec.gaps is not None:
            pos = _stream(d, packed, pos, f"record[{i}].gaps", tables)
        d.field(pos, 4, f"record[{i}].record_crc",
                f"0x{struct.unpack_from('<I', packed, pos)[0]:08X}")
        pos += 4
        assert pos - start == rec.record_size
    d.field(pos, 4, "section_crc", f"0x{struct.unpack_from('<I', packed, pos)[0]:08X}")
    assert pos + 4 == S + Z
    return lines + d.lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace §7 of docs/FORMAT.md")
    args = parser.parse_args(argv)
    packed, _ = pack_example()
    decoded = unpack.decode(packed, backend="python")
    text = "\n".join(annotate(packed))
    print(text)
    print(f"\ndecoded: {len(decoded)} bytes")
    if args.write:
        path = os.path.join(ROOT, "docs", "FORMAT.md")
        doc = open(path, encoding="utf-8").read()
        section = ("## 7. A complete file\n\n"
                   "Generated by `python tools/format_example.py --write` from three constant "
                   "tensors: the §5 example (`float32`, sparse, `G = 4`), an `int8` tensor "
                   "`[1, 1, −2, 1, 1, 1, 3, 1, 1, 1, −2, 1, 1, 1, 1, 1]` (dense, codebook "
                   "`[−2, 1, 3]`) and 16 × `int8` 7 (dense, a kind-1 table, a stream of zero "
                   "bytes). Offsets are relative to the section start `S`.\n\n"
                   "```\n" + text + "\n```\n")
        doc = re.sub(r"## 7\. A complete file.*?(?=\n## |\Z)", lambda m: section.rstrip("\n"),
                     doc, flags=re.S) if "## 7. A complete file" in doc else \
            doc.rstrip("\n") + "\n\n" + section
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
