"""Hand-built format 2 files for the decoder's tests: any stub, header, meta
stream and payload, with the DEFLATE stream and the CRC made right (or
wrong, on request) — so that a test breaks exactly one rule of FORMAT.md.

Written from docs/FORMAT.md, independently of tfdc.pack: only the varint,
CRC, stub and DEFLATE helpers of tfdc.format are shared.
"""

import struct
import zlib

import numpy as np

from tfdc import format as fmt
from tfdc import tflite_schema

v = fmt.varint_bytes


def inner_flatbuffer(buffers, marker=True):
    """An inner flatbuffer whose `Model.buffers` are `buffers`: each item is
    None (empty), bytes (inline data) or `(offset, size)`."""
    schema = tflite_schema.get()
    model = schema.ModelT()
    model.version = 3
    model.buffers = []
    for b in buffers:
        buf = schema.BufferT()
        if isinstance(b, (bytes, bytearray)):
            buf.data = np.frombuffer(bytes(b), np.uint8)
        elif b is not None:
            buf.offset, buf.size = b
        model.buffers.append(buf)
    model.metadata = []
    if marker:
        model.metadata.append(schema.MetadataT())
        model.metadata[0].name, model.metadata[0].buffer = fmt.DECODED_MARKER, 0
    return tflite_schema.build(model)


def huffman_table(symbols, lengths):
    """A kind 0 table: the coded `symbols` (increasing) and their lengths."""
    gaps = np.diff(np.asarray(symbols), prepend=-1) - 1
    nib = list(lengths) + ([0] if len(lengths) % 2 else [])
    return (v(0) + v(len(symbols)) + b"".join(v(int(g)) for g in gaps)
            + bytes(nib[i] | (nib[i + 1] << 4) for i in range(0, len(nib), 2)))


def single_table(symbol):
    return v(1) + v(symbol)


def fixed_table(width):
    return v(2) + v(width)


def rans_table(prec, width, lag1, lag2, shift, classes, groups=None):
    """A kind 3 table (§5.3); `classes` is a list of `(first, [freq, ...])`.
    With `groups` (a dict: `C`, `row_len`, `col_groups`, `col_group`,
    `row_groups`, `row_group`) a kind 4 table (§5.4), `classes` its
    `row_groups · col_groups · C` class tables."""
    if groups is None:
        out = v(3) + v(prec) + v(width) + v(lag1) + v(lag2) + v(shift) + v(len(classes))
    else:
        g = groups
        out = (v(4) + v(prec) + v(width) + v(lag1) + v(lag2) + v(shift) + v(g["C"])
               + v(g["row_len"]) + v(g["col_groups"]) + b"".join(v(x) for x in g["col_group"])
               + v(len(g["row_group"])) + v(g["row_groups"])
               + b"".join(v(x) for x in g["row_group"]))
    for first, freqs in classes:
        out += v(first) + v(len(freqs)) + b"".join(v(f) for f in freqs)
    return out


def rans_segment(symbols, prec, width, lag1, lag2, shift, classes, groups=None, start=0):
    """One kind 3 (or, with `groups`, kind 4) segment of `symbols`, the
    stream's symbols `start …`, encoded as §5.3's informative text says
    (scalar Python, independent of tfdc.rans)."""
    C = len(classes) if groups is None else groups["C"]
    freq = [[0] * (1 << width) for _ in classes]
    for c, (first, fs) in enumerate(classes):
        freq[c][first:first + len(fs)] = fs

    def level(s):
        return s - (1 << width) if s >= 1 << (width - 1) else s

    def table(k):
        a = level(symbols[k - lag1]) if k >= lag1 else 0
        b = level(symbols[k - lag2]) if k >= lag2 else 0
        c = min(max(((a + b) >> shift) + C // 2, 0), C - 1)
        if groups is None:
            return c
        i, g = start + k, groups
        row = g["row_group"][(i // g["row_len"]) % len(g["row_group"])]
        return (row * g["col_groups"] + g["col_group"][i % g["row_len"]]) * C + c

    x, pushed = 1 << 23, []
    for k in range(len(symbols) - 1, -1, -1):
        c, s = table(k), symbols[k]
        f, cum = freq[c][s], sum(freq[c][:s])
        while x >= f << (31 - prec):
            pushed.append(x & 255)
            x >>= 8
        x = (x // f << prec) + x % f + cum
    return x.to_bytes(4, "little") + bytes(reversed(pushed))


def stream(table, block=None, segments=()):
    """A stream descriptor: table index, and for a Huffman table its block
    and segment lengths."""
    out = v(table)
    if block is not None:
        out += v(block) + b"".join(v(s) for s in segments)
    return out


def deflate(data, dictionary=True):
    kw = {"zdict": fmt.dictionary()} if dictionary else {}
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, **kw)
    return c.compress(data) + c.flush()


def build(flat, tables=(), records=(), payload=b"", *, num_tables=None, num_records=None,
          patches=None, num_patches=None, meta=None, D=None, flags=0, major=2, minor=0,
          magic=fmt.MAGIC, C=None, M=None, F=None, deflated=None, extra_after_deflate=b"",
          bad_crc=False, key=b"tfdc.v2"):
    """A packed file from its parts. Defaults make a valid container; each
    keyword overrides one field (the CRC is still right unless `bad_crc`).
    `patches` (descriptors, §6.7) are appended after the records as a patch
    list; `flags` is the caller's (bit 2 is not set for it)."""
    if meta is None:
        meta = (flat + v(len(tables) if num_tables is None else num_tables) + b"".join(tables)
                + v(len(records) if num_records is None else num_records) + b"".join(records))
        if patches is not None:
            meta += (v(len(patches) if num_patches is None else num_patches)
                     + b"".join(patches))
    if deflated is None:
        deflated = deflate(meta)
    if D is None:
        D = _end_of_records(flat)
    header = (struct.pack("<4sHH", magic, major, minor) + v(flags)
              + v(len(deflated) if C is None else C) + v(len(meta) if M is None else M)
              + v(len(flat) if F is None else F) + v(D))
    Z = len(header) + len(deflated) + len(extra_after_deflate) + len(payload) + 4
    stub = fmt.stub(fmt.STUB_SIZE, Z)
    if key != b"tfdc.v2":
        stub = stub.replace(b"tfdc.v2", key)
    body = stub + header + deflated + extra_after_deflate + payload
    crc = zlib.crc32(body) ^ (1 if bad_crc else 0)
    return body + struct.pack("<I", crc)


def _end_of_records(flat):
    from tfdc.flatbuf import read_model
    ends = [b.offset + b.size for b in read_model(flat, metadata=False).buffers if b.offset > 1]
    return max([len(flat)] + ends)


def dense_codebook_record(buffer_index, elem_bits, keys, width, deltas, table, block,
                          segments, transform=0, expand=0):
    """The descriptor of a dense, row-major codebook record."""
    return (v(buffer_index) + v(elem_bits) + v(transform) + v(0) + v(0) + v(1) + v(expand)
            + v(len(keys)) + v(keys[0]) + v(width) + fmt.pack_bits(deltas, width)
            + stream(table, block, segments))


def patch(out_offset, out_size, fields):
    """A patch descriptor (§6.7): its output range, then a record's fields
    after `buffer_index` (`fields`, bytes)."""
    return v(out_offset) + v(out_size) + fields


def zeroed(flat, start, size):
    """`flat` with bytes [start, start + size) cleared, as an encoder leaves
    a patched range."""
    out = bytearray(flat)
    out[start:start + size] = bytes(size)
    return bytes(out)
