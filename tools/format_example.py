"""Build a tiny packed model and print an annotated dump of every byte.

The output is docs/FORMAT.md §9 ("A complete file"): the stub, the section
header, the DEFLATE stream, the inflated meta stream (inner flatbuffer, code
tables and records, field by field) and the payload's segments, named and
decoded. `--write` also regenerates appendix B (the preset dictionary) and
writes the example into the fuzz corpus.

    python tools/format_example.py            # print §9
    python tools/format_example.py --write    # replace §9 and appendix B of docs/FORMAT.md
"""

import argparse
import base64
import hashlib
import os
import re
import struct
import sys
import textwrap
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfdc import format as fmt  # noqa: E402
from tfdc import unpack  # noqa: E402
from tfdc.flatbuf import read_model  # noqa: E402
from tfdc.pack import pack_tflite  # noqa: E402
from tfdc.tflite_schema import constant_model  # noqa: E402

CORPUS = os.path.join(ROOT, "tfdc", "native", "fuzz", "corpus")
INT4 = 17
INT4_VALUES = [1, 1, -1, 0, 1, 2, 1, 1, 0, 1, -1, 1, 1, 1, 1, 1]


def example_model():
    """Four constant tensors: the §8 example (float32, sparse, G = 4), a small
    int8 tensor (dense codebook), a float32 bias of four values (planes) and
    an int4 tensor of 16 values (4-bit elements, dense codebook)."""
    sparse = np.array([0, 0.5, 0, 0, -1, 0.5, 0, 0], np.float32)
    dense = np.array([1, 1, -2, 1, 1, 1, 3, 1, 1, 1, -2, 1, 1, 1, 1, 1], np.int8)
    bias = np.array([0.25, -1.5, 3.0, 0.125], np.float32)
    nibbles = np.array(INT4_VALUES, np.int64) & 15
    int4 = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
    return constant_model([sparse, dense, bias, (int4, INT4, (16,))])


def pack_example():
    return pack_tflite(example_model(), min_bytes=0, gap_alphabet=4, _force={
        1: {"position_mode": "sparse", "value_mode": "codebook", "codes": "huffman",
            "codebook_encoding": "raw"},
        2: {"position_mode": "dense", "value_mode": "codebook"},
        3: {"position_mode": "dense", "value_mode": "planes"},
        4: {"position_mode": "dense", "value_mode": "codebook", "elem_bits": 4}})


class Dump:
    """Annotated lines `offset  bytes  field = value`."""

    def __init__(self, data, base=0):
        self.data, self.base, self.lines = data, base, []

    def field(self, pos, size, name, value=None):
        raw = bytes(self.data[pos:pos + size])
        hexes = raw.hex(" ")
        if len(hexes) > 35:
            hexes = hexes[:32] + "…"
        text = f"{pos - self.base:6d}  {hexes:<35}  {name}"
        if value is not None:
            text += f" = {value}"
        self.lines.append(text.rstrip())

    def title(self, text):
        self.lines.append(f"{'':6}  {'':35}  -- {text}")


class _Trace:
    """Reads varints and byte runs from `data`, annotating each."""

    def __init__(self, dump, pos):
        self.d, self.pos = dump, pos

    def varint(self, name, show=None):
        value, end = fmt.read_varint(self.d.data, self.pos, len(self.d.data))
        self.d.field(self.pos, end - self.pos, name, show(value) if show else value)
        self.pos = end
        return value

    def raw(self, n, name, value=None):
        self.d.field(self.pos, n, name, value)
        self.pos += n
        return self.pos - n


_STUB_FIELDS = [(0, 4, "root offset", "32 (the Model table)"), (4, 4, "file identifier", "TFL3"),
                (8, 6, "padding", None), (14, 18, "Model vtable", "buffers at +8, metadata at +4"),
                (32, 4, "Model: vtable offset", "18"), (36, 4, "Model.metadata", "→ 44"),
                (40, 4, "Model.buffers", "→ 80"), (44, 4, "metadata vector", "1 entry"),
                (48, 4, "metadata[0]", "→ 60"), (52, 2, "padding", None),
                (54, 6, "Metadata vtable", "name at +4"), (60, 4, "Metadata: vtable offset", "6"),
                (64, 4, "Metadata.name", "→ 68"), (68, 12, "string", "'tfdc.v2'"),
                (80, 4, "buffers vector", "1 entry"), (84, 4, "buffers[0]", "→ 100"),
                (88, 2, "padding", None), (90, 10, "Buffer vtable", "offset at +12, size at +4"),
                (100, 4, "Buffer: vtable offset", "10")]


def _stream(t, payload, name, tables, count):
    index = t.varint(f"{name}.table")
    kind, n = tables[index]
    if kind == fmt.TABLE_SINGLE:
        return
    block = t.varint(f"{name}.block")
    nseg = -(-count // block)
    for j in range(nseg):
        size = t.varint(f"{name}.segment_bytes[{j}]")
        payload.append((f"{name}.segment[{j}]", size))


def annotate(packed):
    """The annotated dump of `packed` (a format 2 file), as a list of lines."""
    parsed = unpack.parse(packed)
    S, Z, F, meta = parsed.S, parsed.Z, parsed.F, parsed.meta
    inner = read_model(meta[:F], metadata=False)
    lines = [f"packed file: {len(packed)} bytes = stub [0, {S}) + section [{S}, {S + Z}); "
             f"meta stream: {len(meta)} bytes, inner flatbuffer [0, {F}); decoded file: "
             f"{parsed.D} bytes",
             "inner Model.buffers: " + ", ".join(
                 f"[{i}] " + (f"data {b.data_len} B" if b.data_len else
                              f"offset {b.offset} size {b.size}" if b.offset else "empty")
                 for i, b in enumerate(inner.buffers)), ""]
    d = Dump(packed)
    d.title("stub (file offsets)")
    for pos, size, name, value in _STUB_FIELDS:
        d.field(pos, size, f"stub: {name}", value)
    d.field(104, 8, "Buffer.size", f"Z = {Z}")
    d.field(112, 8, "Buffer.offset", f"S = {S}")
    d.title("section header")
    d.field(S, 4, "magic", "b'TFDC'")
    d.field(S + 4, 2, "version_major", 2)
    d.field(S + 6, 2, "version_minor", 0)
    t = _Trace(d, S + 8)
    t.varint("flags")
    C = t.varint("meta_deflated C")
    t.varint("meta_size M")
    t.varint("flatbuffer_size F")
    t.varint("decoded_size D")
    d.field(t.pos, C, f"DEFLATE stream ({C} bytes)", "inflates to the meta stream below")
    payload_start = t.pos + C

    m = Dump(meta)
    m.title("meta stream (offsets in the meta stream)")
    m.field(0, F, f"inner flatbuffer ({F} bytes)", f"TFL3 model, {len(inner.buffers)} buffers")
    t = _Trace(m, F)
    tables = []
    for i in range(t.varint("num_tables")):
        kind = t.varint(f"table[{i}].kind",
                        lambda k: f"{k} ({['Huffman', 'single', 'fixed-length'][k]})")
        if kind == fmt.TABLE_SINGLE:
            tables.append((kind, t.varint(f"table[{i}].symbol") + 1))
            continue
        if kind == fmt.TABLE_FIXED:
            tables.append((kind, 1 << t.varint(f"table[{i}].width")))
            continue
        count = t.varint(f"table[{i}].m")
        symbols, s, j = [], -1, 0
        while j < count:
            # A run of zero gaps (consecutive symbols) is shown as one line.
            run = 0
            while j + run < count and meta[t.pos + run] == 0:
                run += 1
            if run > 1:
                t.raw(run, f"table[{i}].symbol_gaps[{j}..{j + run - 1}]",
                      f"0 each (symbols {s + 1}..{s + run})")
                symbols += list(range(s + 1, s + run + 1))
                s, j = s + run, j + run
                continue
            s += t.varint(f"table[{i}].symbol_gaps[{j}]",
                          lambda g, s=s: f"{g} (symbol {s + g + 1})") + 1
            symbols.append(s)
            j += 1
        nib = meta[t.pos:t.pos + (count + 1) // 2]
        lengths = [(b >> k) & 15 for b in nib for k in (0, 4)][:count]
        shown = (f"({lengths[0]} × {count})" if count > 8 and len(set(lengths)) == 1
                 else tuple(lengths))
        t.raw(len(nib), f"table[{i}].code_lengths", shown)
        tables.append((kind, symbols[-1] + 1))
    payload = []
    t.varint("num_records")
    for i, rec in enumerate(parsed.records):
        name = f"record[{i}]"
        t.varint(f"{name}.buffer_index")
        elem_bits = t.varint(f"{name}.elem_bits")
        t.varint(f"{name}.transform", lambda v: f"{v} ({fmt.TRANSFORM_NAMES[v]})")
        mode = t.varint(f"{name}.value_mode", lambda v: f"{v} ({'planes' if v else 'codebook'})")
        position = t.varint(f"{name}.position_mode",
                            lambda v: f"{v} ({'sparse' if v else 'dense'})")
        t.varint(f"{name}.scan_rows")
        count = rec.num_elements
        if position == fmt.POSITION_SPARSE:
            count = t.varint(f"{name}.nnz")
            t.varint(f"{name}.gap_alphabet")
            gap_count = t.varint(f"{name}.gap_count")
            if gap_count:
                _stream(t, payload, f"{name}.gaps", tables, gap_count)
        if mode == fmt.VALUES_CODEBOOK:
            expand = t.varint(f"{name}.expand")
            K = t.varint(f"{name}.codebook_size K")
            if K:
                t.varint(f"{name}.key_0", lambda v: f"0x{v:X}")
                width = t.varint(f"{name}.key_delta_width")
                nbytes = -(-(K - 1) * width // 8)
                deltas, _ = fmt.unpack_bits(meta[t.pos:t.pos + nbytes], K - 1, width)
                t.raw(nbytes, f"{name}.key_deltas", [int(v) for v in deltas])
                entries = _entries(rec, expand)
                m.title(f"{name}.codebook = {entries}")
            if count:
                _stream(t, payload, f"{name}.values", tables, count)
        elif count:
            for p in range(fmt.plane_count(elem_bits)):
                _stream(t, payload, f"{name}.plane[{p}]", tables, count)
    assert t.pos == len(meta)
    p = Dump(packed)
    p.title("payload (file offsets)")
    pos = payload_start
    for name, size in payload:
        bits = " ".join(f"{b:08b}" for b in packed[pos:pos + size][:4])
        p.field(pos, size, name, f"bits {bits}" + (" …" if size > 4 else ""))
        pos += size
    p.field(pos, 4, "crc", f"0x{struct.unpack_from('<I', packed, pos)[0]:08X} "
            f"(CRC-32 of [0, {pos}))")
    assert pos + 4 == len(packed)
    return lines + ["offset  bytes                                field = value"] + d.lines + \
        m.lines + p.lines


def _entries(rec, expand):
    """The codebook entries of a record as numbers (for the dump)."""
    kb = 16 if expand else rec.elem_bits
    e = fmt.inverse_transform(rec.keys, rec.transform, kb)
    if rec.elem_bits == 32:
        return [float(v) for v in e.astype(np.uint32).view(np.float32)]
    if rec.elem_bits == 8:
        return [int(v) for v in e.astype(np.uint8).view(np.int8)]
    if rec.elem_bits == 4:
        return [int(v) - 16 if v >= 8 else int(v) for v in e]
    return [int(v) for v in e]


# ------------------------------------------------------------------ format 1
def annotate_v1(packed):
    """The annotated dump of a format 1 file's section (appendix A.7)."""
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
    values = fmt.V1_HEADER.unpack_from(packed, S)
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
        fields = fmt.V1_RECORD_HEADER.unpack_from(packed, pos)
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
        for part, stream in (("values", rec.values), ("gaps", rec.gaps)):
            if part == "values" and stream is None:
                d.field(pos, rec.nnz * rec.elem_size, f"record[{i}].raw_values")
                pos += rec.nnz * rec.elem_size
            if stream is None:
                continue
            pos = _stream_v1(d, packed, pos, f"record[{i}].{part}", tables)
        d.field(pos, 4, f"record[{i}].record_crc",
                f"0x{struct.unpack_from('<I', packed, pos)[0]:08X}")
        pos += 4
        assert pos - start == rec.record_size
    d.field(pos, 4, "section_crc", f"0x{struct.unpack_from('<I', packed, pos)[0]:08X}")
    assert pos + 4 == S + Z
    return lines + d.lines


def _stream_v1(d, data, pos, name, tables):
    count, table, reserved, block = fmt.V1_STREAM_HEADER.unpack_from(data, pos)
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


# ------------------------------------------------------------------ the document
def section_9(packed):
    decoded = unpack.decode(packed, backend="python")
    intro = _paragraph(
        "Generated by `python tools/format_example.py --write` (the corpus file "
        "`v2_format_md_example.tflite`) from four constant tensors: the §8 example "
        "(`float32`, sparse, `G = 4`, codebook); an `int8` tensor "
        "`[1, 1, −2, 1, 1, 1, 3, 1, 1, 1, −2, 1, 1, 1, 1, 1]` (dense, codebook); a "
        "`float32` bias `[0.25, −1.5, 3.0, 0.125]` (dense, planes); and an `int4` tensor "
        f"`{INT4_VALUES}` (4-bit elements, dense, codebook). The DEFLATE stream's bytes "
        "are shown only in part; the meta stream they inflate to is annotated instead, and "
        "the whole file and its decoded form follow the dump. "
        f"DEFLATE's output depends on the zlib build (this is zlib {zlib.ZLIB_RUNTIME_VERSION}"
        "): with another, the stub's `Z`, the header's `C`, the DEFLATE bytes, the payload's "
        "file offsets and the CRC may differ; the meta stream does not.")
    return ("## 9. A complete file\n\n" + intro + "\n\n"
            "```\n" + "\n".join(annotate(packed)) + "\n```\n\n" +
            test_vectors(packed, decoded, "(the same with any zlib)"))


def test_vectors(packed, decoded, note):
    """A packed file and its decoded bytes in base64, for a decoder's tests."""
    return ("The whole file, a test vector for a decoder (base64, RFC 4648, 76 characters "
            f"a line; {len(packed):,} bytes):\n\n```\n{_base64_lines(packed)}\n```\n\n"
            f"It decodes to {len(decoded):,} bytes with SHA-256 "
            f"`{hashlib.sha256(decoded).hexdigest()}` {note}:\n\n"
            f"```\n{_base64_lines(decoded)}\n```\n")


def _paragraph(text):
    """Prose wrapped as the rest of FORMAT.md is (a line can be cited and
    diffed); inline code may break at its spaces."""
    return textwrap.fill(text, width=78, break_long_words=False, break_on_hyphens=False)


def _base64_lines(data, width=76):
    text = base64.b64encode(data).decode()
    return "\n".join(text[i:i + width] for i in range(0, len(text), width))


def appendix_b():
    data = fmt.dictionary()
    intro = _paragraph(
        f"Format 2's preset dictionary: {len(data):,} bytes, SHA-256 "
        f"`{hashlib.sha256(data).hexdigest()}`, base64 below (RFC 4648, 76 characters "
        "a line). It is the meta streams of five small generic Keras models as tfdc "
        f"packs them (`tools/make_dictionary.py`; the file is `tfdc/{fmt.DICTIONARY_FILE}`). "
        "It only pre-fills DEFLATE's window: its content has no meaning for decoding.")
    return f"## Appendix B: The DEFLATE dictionary\n\n{intro}\n\n```\n{_base64_lines(data)}\n```\n"


def appendix_a7_dump():
    """§A.7's annotated dump of the corpus file `v1_format_md_example.tflite`."""
    return "\n".join(annotate_v1(appendix_a7_file()))


def appendix_a7_vectors():
    """§A.7's test vectors: that file and its decoded bytes in base64."""
    packed = appendix_a7_file()
    return test_vectors(packed, unpack.decode(packed, backend="python"),
                        "(format 1.0 uses no DEFLATE)")


def appendix_a7_file():
    with open(os.path.join(CORPUS, "v1_format_md_example.tflite"), "rb") as f:
        return f.read()


def write_doc(packed):
    path = os.path.join(ROOT, "docs", "FORMAT.md")
    doc = open(path, encoding="utf-8").read()
    doc = re.sub(r"## 9\. A complete file.*?(?=\n## )", lambda m: section_9(packed).rstrip("\n") +
                 "\n", doc, flags=re.S)
    if "## Appendix B" in doc:
        doc = re.sub(r"## Appendix B.*\Z", lambda m: appendix_b(), doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + appendix_b()
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="replace §9 and appendix B of docs/FORMAT.md; write the corpus file")
    args = parser.parse_args(argv)
    packed, _ = pack_example()
    decoded = unpack.decode(packed, backend="python")
    print(section_9(packed))
    print(f"decoded: {len(decoded)} bytes")
    if args.write:
        write_doc(packed)
        with open(os.path.join(CORPUS, "v2_format_md_example.tflite"), "wb") as f:
            f.write(packed)


if __name__ == "__main__":
    main()
