"""Decode a tfdc-packed `.tflite` file back to a standard TFLite model.

`decode` implements docs/FORMAT.md §7 in NumPy (the reference decoder), or
calls the native C decoder `tfdc._native` for the format versions it reads.
It validates the whole file — stub, header, CRC, the inflated meta stream,
every table and record rule — and only then returns the decoded model: the
inner flatbuffer followed by the decoded weights at their `Buffer.offset`
(format 1 files: a copy of the packed file followed by the weights). Every
malformed input raises `tfdc.FormatError`.

Example:

    import tfdc
    if tfdc.is_packed(open("model.tfdc.tflite", "rb").read()):
        open("model.tflite", "wb").write(tfdc.decode("model.tfdc.tflite"))
"""

import dataclasses
import os
import sys
import zlib

import numpy as np

from tfdc import format as fmt
from tfdc import huffman, rans
from tfdc.errors import FormatError
from tfdc.flatbuf import quantization_vectors, read_model
from tfdc.format import fp16_to_fp32_bits

_UINT = fmt.UINT_OF_SIZE


# ==========================================================================
# Locating the section (§3), shared by both versions


def _near_miss(name):
    """True if metadata `name` looks like a damaged tfdc section key: one or
    two bits away from `tfdc.v1` / `tfdc.v2`, or one of them cut or extended
    by a byte or two (a flipped bit in the string's length)."""
    for key in fmt.SECTION_KEYS:
        if len(name) == len(key):
            if sum(bin(a ^ b).count("1") for a, b in zip(name, key)) <= 2:
                return True
        elif abs(len(name) - len(key)) <= 2 and (name.startswith(key) or key.startswith(name)):
            return True
    return False


def damaged_key(data):
    """A message if `data` looks like a tfdc-packed file whose section key
    (the `tfdc.vN` metadata name) is damaged or of a later version, else
    None: such a file has no key this decoder knows, so it would otherwise
    pass for a plain (broken) model. `key_damage` gives it as the
    FormatError to raise."""
    error = key_damage(data)
    return None if error is None else str(error)


def key_damage(data, where=""):
    """The FormatError (its message after `where`) for a file with no
    section key that looks packed, else None. With a buffer that ends the
    file and begins with the section magic and a version (§3.2's rule, which
    the C decoder applies too) it is CORRUPT, or VERSION for a major version
    other than 1 and 2; with only a metadata name a bit or two from a key,
    or a metadata entry's buffer holding the magic elsewhere, NOT_PACKED
    (the format's status), said as damage."""
    try:
        model = read_model(bytes(data))
    except FormatError:
        return None
    if any(name in fmt.SECTION_KEYS for name, _ in model.metadata):
        return None
    at_end = [i for i, b in enumerate(model.buffers)
              if fmt.MIN_SECTION_OFFSET <= b.offset <= len(data) and b.size >= fmt.PREFIX.size
              and b.size == len(data) - b.offset
              and data[b.offset:b.offset + len(fmt.MAGIC)] == fmt.MAGIC]
    if at_end:
        _, major, _ = fmt.PREFIX.unpack_from(data, model.buffers[at_end[0]].offset)
        if major not in (1, fmt.VERSION_MAJOR):
            return FormatError(f"{where}a tfdc section of format version {major} (a later "
                               f"tfdc), whose key this decoder does not know: it reads formats "
                               f"1 and {fmt.VERSION_MAJOR}", status="version")
    for name, b in model.metadata:
        section = model.buffers[b] if b < len(model.buffers) else None
        magic_there = (section is not None and section.offset > 1 and
                       data[section.offset:section.offset + 4] == fmt.MAGIC)
        if b in at_end or _near_miss(name) or magic_there:
            return FormatError(f"{where}damaged tfdc-packed file: its section key is {name!r}, "
                               "not 'tfdc.v1' or 'tfdc.v2' (a corrupted copy?)",
                               status="corrupt" if at_end else "not_packed")
    if at_end:  # no metadata entry names the section (its own entry is damaged)
        return FormatError(f"{where}damaged tfdc-packed file: a section ends the file but no "
                           "metadata entry names it 'tfdc.v1' or 'tfdc.v2' (a corrupted copy?)")
    return None


def _locate(data):
    """`(major, S, Z, model, section buffer index)` of a packed file (§3.2)."""
    model = read_model(data)
    found = [(fmt.SECTION_KEYS[name], b) for name, b in model.metadata
             if name in fmt.SECTION_KEYS]
    if not found:
        damage = key_damage(data)
        if damage:  # no valid key, but say what it looks like
            raise damage
        if any(name == fmt.DECODED_MARKER_BYTES for name, _ in model.metadata):
            raise FormatError("already decoded: a standard .tflite model decoded from a "
                              "tfdc-packed file, which any TFLite runtime loads as it is",
                              status="not_packed")
        raise FormatError("not a tfdc-packed model: no 'tfdc.v2' (or 'tfdc.v1') metadata entry",
                          status="not_packed")
    if len(found) > 1:
        raise FormatError("more than one tfdc section entry ('tfdc.v1' / 'tfdc.v2')")
    major, b = found[0]
    key = "tfdc.v%d" % major
    if b >= len(model.buffers):
        raise FormatError(f"'{key}' metadata names buffer {b}, the model has "
                          f"{len(model.buffers)}")
    ref = model.buffers[b]
    S, Z = ref.offset, ref.size
    if major == 1:
        if S <= 1 or S % fmt.V1_SECTION_ALIGN:
            raise FormatError(f"section offset {S} is not a multiple of 16 greater than 1")
        if Z < fmt.V1_HEADER.size + 4:
            raise FormatError(f"section size {Z} is smaller than header and CRC")
    else:
        if S < fmt.MIN_SECTION_OFFSET:
            raise FormatError(f"section offset {S} is inside the file identifier")
        if Z < fmt.PREFIX.size + fmt.CRC.size:
            raise FormatError(f"section size {Z} is smaller than its prefix and CRC")
    if S + Z != len(data):
        if S + Z < len(data) and is_decoded(data):
            raise FormatError("already decoded: this format 1 file holds its decoded weights "
                              "after the section; it is a standard .tflite model",
                              status="not_packed")
        zip_after = S + Z < len(data) and bytes(data[S + Z:S + Z + 4]) == b"PK\x03\x04"
        raise FormatError(f"section [{S}, {S + Z}) does not end the {len(data)}-byte file "
                          + ("(a zip archive was appended after packing: append it to the "
                             "plain .tflite before tfdc pack, which keeps it, or decode first)"
                             if zip_after else "(truncated, or trailing bytes)"),
                          status="truncated" if S + Z > len(data) else "corrupt")
    if ref.data_len:
        raise FormatError("the section's buffer has inline data")
    return major, S, Z, model, b


class _Cursor:
    """Bounds-checked sequential reads of `data[pos:end]`."""

    def __init__(self, data, pos, end, what):
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def take(self, n, what):
        if n < 0 or self.pos + n > self.end:
            raise FormatError(f"{self.what}: truncated while reading {what} "
                              f"(needs {n} bytes at {self.pos}, ends at {self.end})",
                              status="truncated")
        p = self.pos
        self.pos += n
        return p

    def unpack(self, st, what):
        return st.unpack_from(self.data, self.take(st.size, what))

    def varint(self, what, limit=None):
        got = fmt.read_varint(self.data, self.pos, self.end)
        if got is None:
            if self.pos >= self.end:
                raise FormatError(f"{self.what}: truncated while reading {what}",
                                  status="truncated")
            raise FormatError(f"{self.what}: {what} is not a valid varint")
        value, self.pos = got
        if limit is not None and value > limit:
            raise FormatError(f"{self.what}: {what} is {value}, more than {limit}")
        return value

    def varints(self, n, what):
        """`n` varints as np.int64 (vectorised; each must be < 2^56)."""
        if n > self.end - self.pos:
            raise FormatError(f"{self.what}: truncated while reading {what}",
                              status="truncated")
        if n <= 16:
            return np.array([self.varint(what, (1 << 56) - 1) for _ in range(n)], np.int64)
        window = np.frombuffer(self.data, np.uint8, min(self.end - self.pos, 8 * n), self.pos)
        ends = np.flatnonzero(window < 0x80)
        if len(ends) < n:
            raise FormatError(f"{self.what}: truncated while reading {what}",
                              status="truncated")
        ends = ends[:n]
        starts = np.concatenate([[0], ends[:-1] + 1])
        lengths = ends - starts + 1
        if lengths.max() > 8 or ((window[ends] == 0) & (lengths > 1)).any():
            raise FormatError(f"{self.what}: {what} holds an invalid varint")
        values = np.zeros(n, np.int64)
        for k in range(int(lengths.max())):
            live = lengths > k
            values[live] |= (window[starts[live] + k].astype(np.int64) & 0x7F) << (7 * k)
        self.pos += int(ends[-1]) + 1
        return values


# ==========================================================================
# Format 2


@dataclasses.dataclass
class _Table:
    kind: int
    n: int                  # kind 0: number of code lengths
    lengths: object = None  # np.uint8 code lengths (kind 0)
    symbol: int = 0         # kind 1
    model: object = None    # kind 3/4: (fields, [(first, freqs)] per class table, groups)
    size: int = 0           # bytes in the meta stream
    start: int = 0          # position in the meta stream
    _lookup: object = None

    def lookup(self):
        if self._lookup is None:
            self._lookup = huffman.lookup_table(self.lengths)
        return self._lookup

    def rans_model(self):
        """A kind 3 or 4 table's `rans.Model`, built when a stream needs it
        and not kept: its dense frequency arrays can be thousands of times
        the table's bytes (a class may list only symbol 32767)."""
        fields, classes, groups = self.model
        freqs = np.zeros((len(classes), self.n), np.int64)
        for c, (first, f) in enumerate(classes):
            freqs[c, first:first + len(f)] = f[:self.n - first]
        return rans.Model(*fields, freqs, groups)


@dataclasses.dataclass
class _Stream:
    count: int
    table: int
    alphabet: int = 0           # every decoded symbol must be below it
    block: int = 0
    seg_bytes: object = None    # np.int64, kind 0, 2 and 3 only
    data_start: int = 0         # absolute position of its segments in the file
    data_len: int = 0


@dataclasses.dataclass
class _Record:
    buffer_index: int
    out_offset: int
    out_size: int
    elem_bits: int
    transform: int
    value_mode: int
    position_mode: int
    scan_rows: int
    nnz: int                # coded values (N when dense)
    gap_alphabet: int
    gaps: object            # _Stream or None
    expand: int
    keys: object            # np.uint64 sorted codebook keys (codebook mode)
    values: list            # value streams: one (codebook) or one per plane
    desc_start: int
    desc_end: int
    codebook_bytes: int
    table_bytes: int
    payload_bytes: int
    new_tables: list = dataclasses.field(default_factory=list)  # first used here

    @property
    def num_elements(self):
        return self.out_size * 8 // self.elem_bits


@dataclasses.dataclass
class Parsed:
    """A validated packed file. Format 2: section position `S` and size `Z`,
    decoded size `D`, the inflated `meta` stream (its first `F` bytes are the
    inner flatbuffer), the deflate stream's length `C`, the header's length,
    the code tables and records. Format 1 (`version == 1`): `S`, `Z`, `D`,
    tables, records (`meta` is None)."""
    S: int
    Z: int
    D: int
    tables: list
    records: list
    version: int = 2
    meta: bytes = None
    F: int = 0
    C: int = 0
    header_size: int = 0
    payload_start: int = 0
    patches: list = dataclasses.field(default_factory=list)  # format 2.3 (§6.7)
    buffers: list = dataclasses.field(default_factory=list)  # the inner Model.buffers


def _check_size(D, max_size):
    """A too_large FormatError for a decoded size over `max_size`, or over
    what this machine can address whatever the limit (`max_size=inf` let a
    size of 2**64 - 1 through to an OverflowError), as the C decoder does."""
    if max_size is not None and D > max_size:
        raise FormatError(f"decoded size {D} exceeds the limit {max_size}", status="too_large")
    if D > sys.maxsize:
        raise FormatError(f"decoded size {D} exceeds what this machine can hold",
                          status="too_large")


def _inflate(data, start, length, size):
    """Inflate the raw DEFLATE stream `data[start:start+length]`: it must end
    (final block) exactly at its last byte and give exactly `size` bytes."""
    d = fmt.inflater()
    try:
        out = d.decompress(memoryview(data)[start:start + length], size + 1)
    except zlib.error as e:
        raise FormatError(f"meta stream: invalid deflate data ({e})") from None
    if not d.eof:
        if len(out) > size:
            raise FormatError(f"meta stream inflates to more than meta_size {size} bytes")
        raise FormatError("meta stream: the deflate stream is truncated (no final block)",
                          status="truncated")
    if d.unused_data:
        raise FormatError(f"meta stream: {len(d.unused_data)} bytes after the end of the "
                          "deflate stream")
    if len(out) != size:
        raise FormatError(f"meta stream inflates to {len(out)} bytes, meta_size says {size}")
    return out


def _parse_rans_table(cur, what, start, kind):
    """The fields of a kind 3 (§5.3) or kind 4 (§5.4) table, after its kind."""
    prec = cur.varint(f"{what} prec", fmt.MAX_RANS_PREC)
    width = cur.varint(f"{what} width", fmt.MAX_RANS_WIDTH)
    lag1 = cur.varint(f"{what} lag1", fmt.MAX_RANS_LAG)
    lag2 = cur.varint(f"{what} lag2", fmt.MAX_RANS_LAG)
    shift = cur.varint(f"{what} shift", fmt.MAX_RANS_SHIFT)
    classes = cur.varint(f"{what} classes", fmt.MAX_RANS_CLASSES)
    for name, v in (("prec", prec), ("width", width), ("lag1", lag1), ("lag2", lag2),
                    ("classes", classes)):
        if v < 1:
            raise FormatError(f"{what}: {name} is 0")
    groups, tables = None, classes
    if kind == fmt.TABLE_RANS_GROUPED:
        groups = _parse_groups(cur, what, classes)
        tables = groups.count * classes
    M = 1 << prec
    listed, n = [], 0
    for c in range(tables):
        first = cur.varint(f"{what} class {c} first", (1 << width) - 1)
        m = cur.varint(f"{what} class {c} count", (1 << width) - first)
        if m < 1:
            raise FormatError(f"{what}: class {c} lists no symbol")
        f = cur.varints(m, f"{what} class {c} frequencies")
        if (f > M).any() or int(f.sum()) != M:
            raise FormatError(f"{what}: class {c}'s frequencies sum to {int(f.sum())}, "
                              f"not 2^{prec}")
        listed.append((first, f))
        n = max(n, first + int(np.flatnonzero(f)[-1]) + 1)
    return _Table(kind, n, model=((prec, width, lag1, lag2, shift, classes), listed, groups),
                  size=cur.pos - start, start=start)


def _parse_groups(cur, what, classes):
    """A kind 4 table's column and row groups (§5.4)."""

    def group_map(size_field, limit, name):
        size = cur.varint(f"{what} {size_field}", limit)
        count = cur.varint(f"{what} {name}_groups", fmt.MAX_RANS_TABLES)
        for field, v in ((size_field, size), (f"{name}_groups", count)):
            if v < 1:
                raise FormatError(f"{what}: {field} is 0")
        entries = cur.varints(size, f"{what} {name}_group map")
        if int(entries.max()) >= count:
            raise FormatError(f"{what}: {name}_group entry {int(entries.max())} ≥ "
                              f"{name}_groups {count}")
        return size, count, entries

    row_len, col_groups, col_group = group_map("row_len", fmt.MAX_RANS_ROW_LEN, "col")
    _, row_groups, row_group = group_map("row_period", fmt.MAX_RANS_ROW_PERIOD, "row")
    tables = row_groups * col_groups * classes
    if tables > fmt.MAX_RANS_TABLES:
        raise FormatError(f"{what}: {row_groups} row groups × {col_groups} column groups × "
                          f"{classes} classes = {tables} tables, more than "
                          f"{fmt.MAX_RANS_TABLES}")
    return rans.Groups(row_len, col_groups, col_group, row_groups, row_group)


def _parse_table(cur, i, flags):
    start = cur.pos
    what = f"table {i}"
    kind = cur.varint(f"{what} kind")
    if kind in fmt.RANS_KINDS:
        if not flags & fmt.TABLE_FLAGS[kind]:
            raise FormatError(f"{what}: a kind {kind} table in a file whose flags do not "
                              "announce them")
        return _parse_rans_table(cur, what, start, kind)
    if kind == fmt.TABLE_SINGLE:
        symbol = cur.varint(f"{what} symbol", fmt.MAX_ALPHABET - 1)
        return _Table(kind, symbol + 1, symbol=symbol, size=cur.pos - start, start=start)
    if kind == fmt.TABLE_FIXED:
        width = cur.varint(f"{what} width", fmt.MAX_FIXED_WIDTH)
        if width < 1:
            raise FormatError(f"{what}: a fixed-length code of 0 bits")
        return _Table(kind, 1 << width, lengths=np.full(1 << width, width, np.uint8),
                      symbol=width, size=cur.pos - start, start=start)
    if kind != fmt.TABLE_HUFFMAN:
        raise FormatError(f"{what}: unknown kind {kind}")
    m = cur.varint(f"{what} symbol count", fmt.MAX_ALPHABET)
    if m < 2:
        raise FormatError(f"{what}: {m} coded symbols; a Huffman table has 2 … 32768 "
                          "(one symbol: kind 1)")
    gaps = cur.varints(m, f"{what} symbol gaps")
    if (gaps >= fmt.MAX_ALPHABET).any():
        raise FormatError(f"{what}: a symbol gap is ≥ 32768")
    symbols = np.cumsum(gaps + 1) - 1
    if symbols[-1] >= fmt.MAX_ALPHABET:
        raise FormatError(f"{what}: symbol {int(symbols[-1])} ≥ 32768")
    nibbles = _code_length_nibbles(cur, m, what)
    if not nibbles.all():
        raise FormatError(f"{what}: a listed symbol has code length 0")
    n = int(symbols[-1]) + 1
    lengths = np.zeros(n, np.uint8)
    lengths[symbols] = nibbles
    kraft = int(np.sum(np.int64(1) << (fmt.MAX_CODE_LEN - nibbles.astype(np.int64))))
    if kraft != 1 << fmt.MAX_CODE_LEN:
        raise FormatError(f"{what}: the code is not complete (Kraft sum {kraft} / 32768)")
    return _Table(kind, n, lengths=lengths, size=cur.pos - start, start=start)


def _code_length_nibbles(cur, m, what):
    """The `m` 4-bit code lengths at the cursor, two a byte, low nibble
    first (formats 1 and 2 alike); an odd count's unused last nibble is 0."""
    p = cur.take((m + 1) // 2, f"{what} code lengths")
    packed = np.frombuffer(cur.data, np.uint8, (m + 1) // 2, p)
    nibbles = np.empty(2 * len(packed), np.uint8)
    nibbles[0::2] = packed & 15
    nibbles[1::2] = packed >> 4
    if m % 2 and nibbles[m]:
        raise FormatError(f"{what}: the unused last nibble is not 0")
    return nibbles[:m]


class _Payload:
    """Hands out the payload's bytes to streams in descriptor order."""

    def __init__(self, start, end):
        self.pos, self.end = start, end

    def take(self, n, what):
        if self.pos + n > self.end:
            raise FormatError(f"{what}: segments run past the end of the payload",
                              status="truncated")
        p = self.pos
        self.pos += n
        return p


def _parse_stream(cur, tables, payload, what, count, alphabet, used_tables):
    index = cur.varint(f"{what} table")
    if index >= len(tables):
        raise FormatError(f"{what}: table {index} does not exist ({len(tables)} tables)")
    t = tables[index]
    table_bytes = 0
    if index not in used_tables:
        used_tables[index] = None
        table_bytes = t.size
    if t.kind == fmt.TABLE_SINGLE:
        if t.symbol >= alphabet:
            raise FormatError(f"{what}: table {index}'s symbol {t.symbol} ≥ alphabet {alphabet}")
        return _Stream(count, index, alphabet), table_bytes
    if t.kind in (fmt.TABLE_HUFFMAN,) + fmt.RANS_KINDS and t.n > alphabet:
        raise FormatError(f"{what}: table {index} has {t.n} symbols, more than {alphabet}")
    block = cur.varint(f"{what} block", fmt.MAX_BLOCK)
    if block < 1:
        raise FormatError(f"{what}: block is 0")
    nseg = -(-count // block)
    seg_bytes = cur.varints(nseg, f"{what} segment lengths")
    last = count - (nseg - 1) * block
    need = np.full(nseg, min(block, count), np.int64)
    need[-1] = last
    if t.kind in fmt.RANS_KINDS:
        if (seg_bytes < fmt.RANS_STATE_BYTES).any():
            raise FormatError(f"{what}: a kind {t.kind} segment is shorter than "
                              f"{fmt.RANS_STATE_BYTES} bytes", status="truncated")  # §5.2
    elif (seg_bytes * 8 < need).any():
        # Every code is at least 1 bit long.
        raise FormatError(f"{what}: a segment is too short for its symbols")
    total = int(seg_bytes.sum())
    start = payload.take(total, what)
    return _Stream(count, index, alphabet, block, seg_bytes, start, total), table_bytes


def _parse_record(cur, i, tables, buffers, F, D, prev_end, payload, used_tables):
    what = f"record {i}"
    desc_start = cur.pos
    buffer_index = cur.varint(f"{what} buffer_index")
    if buffer_index >= len(buffers):
        raise FormatError(f"{what}: buffer_index {buffer_index} ≥ {len(buffers)} buffers")
    ref = buffers[buffer_index]
    out_offset, out_size = ref.offset, ref.size
    if out_offset <= 1 or out_size == 0 or ref.data_len:
        raise FormatError(f"{what}: Model.buffers[{buffer_index}] is not a decoded-tail buffer "
                          "(offset > 1, size > 0, no data)")
    if (out_offset % fmt.OUTPUT_ALIGN_REQUIRED or out_offset < F or out_offset < prev_end
            or out_offset + out_size > D):
        raise FormatError(f"{what}: output range [{out_offset}, +{out_size}) invalid (aligned "
                          f"to 16, after the flatbuffer ({F}) and the previous record "
                          f"({prev_end}), within the decoded size {D})")
    return _parse_fields(cur, what, desc_start, buffer_index, out_offset, out_size, tables,
                         payload, used_tables)


def _parse_patch(cur, i, meta, F, prev_end, tables, payload, used_tables):
    """A patch (§6.7): a record's fields for a range of the inner flatbuffer,
    whose bytes in the meta stream are all zero."""
    what = f"patch {i}"
    desc_start = cur.pos
    out_offset = cur.varint(f"{what} out_offset")
    out_size = cur.varint(f"{what} out_size")
    if out_size == 0 or out_offset < prev_end or out_offset + out_size > F:
        raise FormatError(f"{what}: output range [{out_offset}, +{out_size}) invalid (not "
                          f"empty, after the previous patch ({prev_end}), within the inner "
                          f"flatbuffer ({F} bytes))")
    if any(meta[out_offset:out_offset + out_size]):
        raise FormatError(f"{what}: the inner flatbuffer's bytes [{out_offset}, "
                          f"+{out_size}) are not all zero")
    return _parse_fields(cur, what, desc_start, None, out_offset, out_size, tables, payload,
                         used_tables)


def _parse_fields(cur, what, desc_start, buffer_index, out_offset, out_size, tables, payload,
                  used_tables):
    """The fields of a record after its output range (§6), shared by patches."""
    table_bytes = 0
    elem_bits = cur.varint(f"{what} elem_bits")
    if elem_bits not in fmt.ELEM_BITS or (8 * out_size) % elem_bits:
        raise FormatError(f"{what}: elem_bits {elem_bits} invalid for {out_size} bytes")
    N = 8 * out_size // elem_bits
    transform = cur.varint(f"{what} transform")
    value_mode = cur.varint(f"{what} value_mode")
    position_mode = cur.varint(f"{what} position_mode")
    if transform not in fmt.TRANSFORMS:
        raise FormatError(f"{what}: transform {transform} unknown")
    if value_mode not in (fmt.VALUES_CODEBOOK, fmt.VALUES_PLANES):
        raise FormatError(f"{what}: value_mode {value_mode} unknown")
    if position_mode not in (fmt.POSITION_DENSE, fmt.POSITION_SPARSE):
        raise FormatError(f"{what}: position_mode {position_mode} unknown")
    rows = cur.varint(f"{what} scan_rows")
    if rows < 1 or N % rows:
        raise FormatError(f"{what}: scan_rows {rows} does not divide {N} elements")
    gaps, G, nnz = None, 0, N
    if position_mode == fmt.POSITION_SPARSE:
        nnz = cur.varint(f"{what} nnz", N)
        G = cur.varint(f"{what} gap_alphabet")
        if not fmt.MIN_GAP_ALPHABET <= G <= fmt.MAX_GAP_ALPHABET:
            raise FormatError(f"{what}: gap_alphabet {G} not in 2 … 32768")
        gap_count = cur.varint(f"{what} gap_count")
        # Fillers advance G − 1 positions each, values at least 1, and every
        # position stays below N.
        if (nnz == 0 and gap_count) or (nnz and not nnz <= gap_count <= nnz + (N - nnz) // (G - 1)):
            raise FormatError(f"{what}: gap_count {gap_count} impossible for {nnz} values in "
                              f"{N} elements with G = {G}")
        if gap_count:
            gaps, tb = _parse_stream(cur, tables, payload, f"{what} gaps", gap_count, G,
                                     used_tables)
            table_bytes += tb
    expand, keys, values, codebook_bytes = 0, None, [], 0
    if value_mode == fmt.VALUES_CODEBOOK:
        cb_start = cur.pos
        expand = cur.varint(f"{what} expand")
        if expand not in (fmt.EXPAND_NONE, fmt.EXPAND_FP16) or (expand and elem_bits != 32):
            raise FormatError(f"{what}: expand {expand} invalid for {elem_bits}-bit elements")
        key_bits = fmt.FP16_KEY_BITS if expand else elem_bits
        K = cur.varint(f"{what} codebook_size", fmt.MAX_CODEBOOK)
        if nnz and not K:
            raise FormatError(f"{what}: {nnz} coded values but an empty codebook")
        keys = np.zeros(0, np.uint64)
        if K:
            key0 = cur.varint(f"{what} first key")
            width = cur.varint(f"{what} key delta width", key_bits)
            if key0 >> key_bits:
                raise FormatError(f"{what}: first key {key0} has more than {key_bits} bits")
            nbytes = -(-(K - 1) * width // 8)
            p = cur.take(nbytes, f"{what} codebook deltas")
            deltas, pad_ok = fmt.unpack_bits(cur.data[p:p + nbytes], K - 1, width)
            if not pad_ok:
                raise FormatError(f"{what}: codebook deltas' padding bits are not 0")
            # k[j] = k[j-1] + d[j] + 1, in exact integers (no wrap-around).
            ks = key0 + np.concatenate([[0], np.cumsum(deltas.astype(object) + 1)])
            if int(ks[-1]) >> key_bits:
                raise FormatError(f"{what}: codebook keys exceed {key_bits} bits")
            keys = ks.astype(np.uint64)
        codebook_bytes = cur.pos - cb_start
        if nnz:
            s, tb = _parse_stream(cur, tables, payload, f"{what} values", nnz, K, used_tables)
            values.append(s)
            table_bytes += tb
    elif nnz:
        for p in range(fmt.plane_count(elem_bits)):
            s, tb = _parse_stream(cur, tables, payload, f"{what} plane {p}", nnz,
                                  1 << fmt.plane_bits(elem_bits), used_tables)
            values.append(s)
            table_bytes += tb
    payload_bytes = sum(s.data_len for s in values) + (gaps.data_len if gaps else 0)
    return _Record(buffer_index, out_offset, out_size, elem_bits, transform, value_mode,
                   position_mode, rows, nnz, G, gaps, expand, keys, values, desc_start, cur.pos,
                   codebook_bytes, table_bytes, payload_bytes)


def _parse_v2(data, S, Z, max_size):
    end = S + Z
    magic, major, _minor = fmt.PREFIX.unpack_from(data, S)
    if magic != fmt.MAGIC:
        raise FormatError(f"section magic is {magic!r}, expected b'TFDC'")
    if major != fmt.VERSION_MAJOR:
        raise FormatError(f"unsupported format version {major}.x in a 'tfdc.v2' section "
                          f"(this decoder reads 1.x and 2.x)", status="version")
    (crc,) = fmt.CRC.unpack_from(data, end - fmt.CRC.size)
    if zlib.crc32(memoryview(data)[:end - fmt.CRC.size]) != crc:
        raise FormatError("CRC mismatch (corrupted file)", status="checksum")
    cur = _Cursor(data, S + fmt.PREFIX.size, end - fmt.CRC.size, "header")
    flags = cur.varint("flags")
    if flags & ~fmt.KNOWN_FLAGS:
        raise FormatError(f"header flags are {flags}: bits other than bits 0, 1 and 2 are not "
                          f"defined in format {fmt.VERSION_MAJOR}.{fmt.VERSION_MINOR} "
                          "(a file from a newer tfdc?)")
    C = cur.varint("meta_deflated")
    M = cur.varint("meta_size")
    F = cur.varint("flatbuffer_size")
    D = cur.varint("decoded_size")
    _check_size(D, max_size)
    if (max_size is not None and M > max_size) or M >= sys.maxsize:
        raise FormatError(f"meta stream size {M} (the graph and record descriptors, inflated: "
                          "decoding needs it as scratch) exceeds the limit "
                          f"{max_size if M < sys.maxsize else 'of what this machine can hold'}",
                          status="too_large")
    if not 8 <= F <= M:
        raise FormatError(f"flatbuffer_size {F} not in 8 … meta_size {M}")
    if D < F:
        raise FormatError(f"decoded_size {D} is smaller than the flatbuffer ({F})")
    header_size = cur.pos - S
    meta_start = cur.take(C, "the deflate stream")
    if M > fmt.DEFLATE_MAX_RATIO * C:
        raise FormatError(f"meta_size {M} is more than a DEFLATE stream of {C} bytes inflates "
                          f"to (at most {fmt.DEFLATE_MAX_RATIO} per byte)")
    meta = _inflate(data, meta_start, C, M)
    try:
        inner = read_model(meta[:F], metadata=False)
    except FormatError as e:  # its status: a read out of range is FLATBUFFER (§2, §3.1)
        raise FormatError(f"inner flatbuffer: {e}", status=e.status) from None
    mc = _Cursor(meta, F, M, "meta stream")
    num_tables = mc.varint("num_tables", (M - F) // 2)
    tables = [_parse_table(mc, i, flags) for i in range(num_tables)]
    num_records = mc.varint("num_records", len(inner.buffers))
    payload = _Payload(cur.pos, end - fmt.CRC.size)
    records, prev_end, used = [], 0, {}
    for i in range(num_records):
        before = len(used)
        rec = _parse_record(mc, i, tables, inner.buffers, F, D, prev_end, payload, used)
        rec.new_tables = list(used)[before:]
        prev_end = rec.out_offset + rec.out_size
        records.append(rec)
    patches = []
    if flags & fmt.FLAG_PATCHES:
        num_patches = mc.varint("num_patches", (M - F) // fmt.MIN_PATCH_DESCRIPTOR)
        patch_end = 0
        for i in range(num_patches):
            before = len(used)
            patch = _parse_patch(mc, i, meta, F, patch_end, tables, payload, used)
            patch.new_tables = list(used)[before:]
            patch_end = patch.out_offset + patch.out_size
            patches.append(patch)
    if mc.pos != M:
        raise FormatError(f"meta stream: {M - mc.pos} bytes left after the last "
                          + ("patch" if flags & fmt.FLAG_PATCHES else "record"))
    if payload.pos != payload.end:
        raise FormatError(f"payload: {payload.end - payload.pos} bytes not used by any stream")
    if D != max(F, prev_end):
        raise FormatError(f"decoded_size {D} is not the end of the last record "
                          f"({max(F, prev_end)})")
    targets = {r.buffer_index for r in records}
    for j, ref in enumerate(inner.buffers):
        if ref.offset > 1 and j not in targets:
            raise FormatError(f"inner Model.buffers[{j}] points at offset {ref.offset} but no "
                              "record fills it")
    return Parsed(S, Z, D, tables, records, version=2, meta=meta, F=F, C=C,
                  header_size=header_size, payload_start=cur.pos, patches=patches,
                  buffers=inner.buffers)


def _fixed_width(t):
    """w if table `t` is a fixed-length code of w bits (kind 2, or a kind 0
    table listing all 2^w symbols with length w), else 0."""
    if t.kind == fmt.TABLE_FIXED:
        return t.symbol
    if t.kind != fmt.TABLE_HUFFMAN or t.n & (t.n - 1):
        return 0
    w = t.n.bit_length() - 1
    return w if (t.lengths == w).all() else 0


def _stream_symbols(data, stream, tables):
    t = tables[stream.table]
    if t.kind == fmt.TABLE_SINGLE:
        return np.full(stream.count, t.symbol, np.uint16)
    seg = np.frombuffer(data, np.uint8, stream.data_len, stream.data_start)
    if t.kind in fmt.RANS_KINDS:
        return rans.decode(seg, stream.seg_bytes, stream.count, stream.block, t.rans_model())
    w = _fixed_width(t)
    if w:
        symbols = _fixed_symbols(seg, stream, w)
    else:
        symbols = huffman.decode(seg, stream.seg_bytes, stream.count, stream.block, t.lengths,
                                 table=t.lookup())
    if t.kind == fmt.TABLE_FIXED and stream.count and int(symbols.max()) >= stream.alphabet:
        raise FormatError(f"a symbol {int(symbols.max())} ≥ the stream's alphabet "
                          f"{stream.alphabet} (fixed-length code)")
    return symbols


def _fixed_symbols(seg, stream, w):
    """The symbols of a fixed-length code of w bits: the same segment rules
    as any code (§5.2), checked without a Huffman pass."""
    nseg = len(stream.seg_bytes)
    per = np.full(nseg, stream.block, np.int64)
    per[-1] = stream.count - (nseg - 1) * stream.block
    if ((per * w + 7) // 8 != stream.seg_bytes).any():
        raise FormatError("a fixed-length segment's length does not match its symbols")
    if w == 8:
        return seg.astype(np.uint16)
    bits = np.unpackbits(seg)
    starts = np.concatenate([[0], np.cumsum(stream.seg_bytes)[:-1]]) * 8
    used = np.zeros(len(bits), bool)
    for j in range(nseg):
        used[starts[j]:starts[j] + per[j] * w] = True
    if bits[~used].any():
        raise FormatError("nonzero padding bits after a segment's last code")
    fields = bits[used].reshape(-1, w).astype(np.uint16)
    return (fields << np.arange(w - 1, -1, -1, dtype=np.uint16)).sum(axis=1).astype(np.uint16)


def _positions(gap_symbols, G, nnz, N, what):
    """Stream indices of the coded values from the gap symbols (§6.6)."""
    if nnz == 0:
        return np.zeros(0, np.int64)
    g = gap_symbols.astype(np.int64)
    filler = g == G - 1
    if filler[-1]:
        raise FormatError(f"{what}: the gap stream ends with a filler")
    steps = np.where(filler, G - 1, g + 1)
    cur = np.cumsum(steps) - 1
    pos = cur[~filler]
    if len(pos) != nnz:
        raise FormatError(f"{what}: {len(pos)} positions for {nnz} values")
    if pos[-1] >= N:
        raise FormatError(f"{what}: position {int(pos[-1])} ≥ {N} elements")
    return pos


def _record_elements(data, rec, tables):
    """The record's N elements (unsigned, element order)."""
    what = f"record for buffer {rec.buffer_index}"
    N = rec.num_elements
    dtype = np.dtype(fmt._uint(rec.elem_bits))
    if rec.value_mode == fmt.VALUES_CODEBOOK:
        key_bits = fmt.FP16_KEY_BITS if rec.expand else rec.elem_bits
        entries = fmt.inverse_transform(rec.keys, rec.transform, key_bits)
        if rec.expand:
            entries = fp16_to_fp32_bits(entries.astype(np.uint16))
        entries = entries.astype(dtype)
        values = (entries[_stream_symbols(data, rec.values[0], tables)] if rec.nnz
                  else np.zeros(0, dtype))
    else:
        tv = np.zeros(rec.nnz, dtype)
        n = len(rec.values)
        for p, stream in enumerate(rec.values):
            tv |= _stream_symbols(data, stream, tables).astype(dtype) << dtype.type(8 * (n - 1 - p))
        values = fmt.inverse_transform(tv, rec.transform, rec.elem_bits).astype(dtype)
    R = rec.scan_rows
    if rec.position_mode == fmt.POSITION_SPARSE:
        elems = np.zeros(N, dtype)
        if rec.nnz:
            t = _positions(_stream_symbols(data, rec.gaps, tables), rec.gap_alphabet, rec.nnz,
                           N, what)
            if R > 1:
                t = (t % R) * (N // R) + t // R
            elems[t] = values
        return elems
    if R > 1:
        return values.reshape(N // R, R).T.reshape(-1)
    return values


def _decode_v2(data, parsed):
    try:
        out = np.zeros(parsed.D, dtype=np.uint8)
    except MemoryError:
        raise FormatError(f"decoded size {parsed.D} cannot be allocated",
                          status="too_large") from None
    out[:parsed.F] = np.frombuffer(parsed.meta, np.uint8, parsed.F)
    for rec in parsed.records + parsed.patches:
        elems = _record_elements(data, rec, parsed.tables)
        out[rec.out_offset:rec.out_offset + rec.out_size] = fmt.join_elements(elems,
                                                                             rec.elem_bits)
    if parsed.patches:
        # A patch may rewrite data the runtime reads, never the buffers the
        # records were checked against (§6.7).
        try:
            again = read_model(out[:parsed.F].tobytes(), metadata=False).buffers
        except FormatError as e:
            raise FormatError(f"inner flatbuffer after the patches: {e}",
                              status=e.status) from None
        if again != parsed.buffers:
            raise FormatError("the patches change the inner flatbuffer's Model.buffers")
    return out.tobytes()


# ==========================================================================
# Format 1 (docs/FORMAT.md, appendix A): decoded byte for byte as before


@dataclasses.dataclass
class _V1Table:
    kind: int
    n: int
    lengths: object = None
    symbol: int = 0
    size: int = 0
    _lookup: object = None

    def lookup(self):
        if self._lookup is None:
            self._lookup = huffman.lookup_table(self.lengths)
        return self._lookup


@dataclasses.dataclass
class _V1Stream:
    count: int
    table: int
    block: int
    seg_bytes: object
    data_start: int
    data_len: int


@dataclasses.dataclass
class _V1Record:
    buffer_index: int
    out_offset: int
    out_size: int
    elem_size: int
    value_mode: int
    position_mode: int
    scan: int
    scan_rows: int
    nnz: int
    codebook_size: int
    codebook_encoding: int
    gap_alphabet: int
    codebook_start: int
    raw_values_start: int
    values: object
    gaps: object
    record_start: int
    record_size: int


def _v1_parse_tables(cur, num_tables):
    tables = []
    for i in range(num_tables):
        start = cur.pos
        kind, max_len, reserved, n = cur.unpack(fmt.V1_TABLE_HEADER, f"table {i}")
        if reserved:
            raise FormatError(f"table {i}: reserved field is {reserved}")
        if not 1 <= n <= huffman.MAX_SYMBOLS:
            raise FormatError(f"table {i}: alphabet size {n} not in 1 … 32768")
        if kind == fmt.TABLE_SINGLE:
            if max_len != 0:
                raise FormatError(f"table {i}: kind 1 with max_len {max_len}")
            (symbol,) = cur.unpack(fmt.V1_TABLE_SYMBOL, f"table {i} symbol")
            if symbol >= n:
                raise FormatError(f"table {i}: symbol {symbol} ≥ alphabet size {n}")
            tables.append(_V1Table(1, n, symbol=symbol, size=cur.pos - start))
        elif kind == fmt.TABLE_HUFFMAN:
            lengths = _code_length_nibbles(cur, n, f"table {i}")
            top = int(lengths.max())
            if top == 0:
                raise FormatError(f"table {i}: no symbol has a code")
            if top != max_len:
                raise FormatError(f"table {i}: max_len is {max_len}, largest length {top}")
            if not huffman.kraft_ok(lengths):
                raise FormatError(f"table {i}: code lengths break the Kraft inequality")
            tables.append(_V1Table(0, n, lengths=lengths, size=cur.pos - start))
        else:
            raise FormatError(f"table {i}: unknown kind {kind}")
    return tables


def _v1_parse_stream(cur, tables, what, alphabet_limit, exact_count=None, max_count=None):
    count, table, reserved, block = cur.unpack(fmt.V1_STREAM_HEADER, what)
    if reserved:
        raise FormatError(f"{what}: reserved field is {reserved}")
    if exact_count is not None and count != exact_count:
        raise FormatError(f"{what}: count {count}, expected {exact_count}")
    if max_count is not None and count > max_count:
        raise FormatError(f"{what}: count {count} exceeds {max_count}")
    if count == 0:
        if table != fmt.V1_NO_TABLE or block != 0:
            raise FormatError(f"{what}: an empty stream must have table 0xFFFF and block 0")
        return _V1Stream(0, table, 0, None, cur.pos, 0)
    if table >= len(tables):
        raise FormatError(f"{what}: table {table} does not exist ({len(tables)} tables)")
    t = tables[table]
    if t.n > alphabet_limit:
        raise FormatError(f"{what}: table {table} has {t.n} symbols, more than {alphabet_limit}")
    if t.kind == fmt.TABLE_SINGLE:
        if block != 0:
            raise FormatError(f"{what}: block must be 0 with a single-symbol table")
        return _V1Stream(count, table, 0, None, cur.pos, 0)
    if block < 1:
        raise FormatError(f"{what}: block is 0")
    nseg = -(-count // block)
    p = cur.take(4 * nseg, f"{what} segment lengths")
    seg_bytes = np.frombuffer(cur.data, "<u4", nseg, p).astype(np.int64)
    total = int(seg_bytes.sum())
    start = cur.take(total, f"{what} segment data")
    if count > 8 * total:
        raise FormatError(f"{what}: {count} symbols cannot fit in {total} bytes")
    return _V1Stream(count, table, block, seg_bytes, start, total)


def _v1_parse_record(data, cur, i, tables, buffers, S, Z, D, prev_end):
    start = cur.pos
    what = f"record {i}"
    RECORD_HEADER = fmt.V1_RECORD_HEADER
    if cur.end - start < RECORD_HEADER.size + 4:
        raise FormatError(f"{what}: truncated header", status="truncated")
    (size, buffer_index, out_offset, out_size, elem_size, value_mode, position_mode, scan,
     scan_rows, nnz, K, encoding, reserved, G) = RECORD_HEADER.unpack_from(data, start)
    if size < RECORD_HEADER.size + fmt.CRC.size or start + size > cur.end:
        raise FormatError(f"{what}: record_size {size} does not fit in the section")
    (crc,) = fmt.CRC.unpack_from(data, start + size - fmt.CRC.size)
    if zlib.crc32(memoryview(data)[start:start + size - 4]) != crc:
        raise FormatError(f"{what}: record CRC mismatch", status="checksum")
    rec_cur = _Cursor(data, start, start + size - 4, what)
    rec_cur.take(RECORD_HEADER.size, "header")
    if reserved != b"\0\0\0":
        raise FormatError(f"{what}: reserved bytes are not 0")
    if buffer_index >= len(buffers):
        raise FormatError(f"{what}: buffer_index {buffer_index} ≥ {len(buffers)} buffers")
    if out_size == 0:
        raise FormatError(f"{what}: out_size is 0")
    if elem_size not in fmt.V1_ELEM_SIZES or out_size % elem_size:
        raise FormatError(f"{what}: elem_size {elem_size} invalid for out_size {out_size}")
    N = out_size // elem_size
    if value_mode not in (0, 1) or position_mode not in (0, 1) or scan not in (0, 1):
        raise FormatError(f"{what}: value_mode/position_mode/scan out of range")
    if scan_rows < 1 or N % scan_rows or (scan == fmt.V1_SCAN_ROW and scan_rows != 1):
        raise FormatError(f"{what}: scan_rows {scan_rows} invalid for {N} elements, scan {scan}")
    if (position_mode == 0 and nnz != N) or nnz > N:
        raise FormatError(f"{what}: nnz {nnz} invalid for {N} elements")
    if value_mode == fmt.V1_VALUE_CODEBOOK:
        if K > fmt.MAX_CODEBOOK or (nnz > 0 and K == 0):
            raise FormatError(f"{what}: codebook_size {K} invalid")
    elif K != 0:
        raise FormatError(f"{what}: raw values with codebook_size {K}")
    if encoding not in (fmt.V1_CODEBOOK_RAW, fmt.V1_CODEBOOK_FP16) or (
            encoding == fmt.V1_CODEBOOK_FP16 and elem_size != 4):
        raise FormatError(f"{what}: codebook_encoding {encoding} invalid")
    if position_mode == fmt.POSITION_SPARSE:
        if not fmt.MIN_GAP_ALPHABET <= G <= fmt.MAX_GAP_ALPHABET:
            raise FormatError(f"{what}: gap_alphabet {G} not in 2 … 32768")
    elif G != 0:
        raise FormatError(f"{what}: dense record with gap_alphabet {G}")
    if out_offset % 16 or out_offset < S + Z or out_offset + out_size > D:
        raise FormatError(f"{what}: output range [{out_offset}, +{out_size}) invalid")
    if out_offset < prev_end:
        raise FormatError(f"{what}: output range overlaps or precedes the previous record")
    ref = buffers[buffer_index]
    if ref.offset != out_offset or ref.size != out_size or ref.data_len:
        raise FormatError(f"{what}: Model.buffers[{buffer_index}] does not point at the "
                          "record's output range")
    entry = 2 if encoding == fmt.V1_CODEBOOK_FP16 else elem_size
    codebook_start = rec_cur.take(K * entry, "codebook")
    values = None
    raw_start = 0
    if value_mode == fmt.V1_VALUE_CODEBOOK:
        values = _v1_parse_stream(rec_cur, tables, f"{what} values", K, exact_count=nnz)
    else:
        raw_start = rec_cur.take(nnz * elem_size, "raw values")
    gaps = None
    if position_mode == fmt.POSITION_SPARSE:
        # Every gap symbol moves the position on by at least 1 (§A.3.3).
        gaps = _v1_parse_stream(rec_cur, tables, f"{what} gaps", G, max_count=N)
        if nnz == 0 and gaps.count:
            raise FormatError(f"{what}: no values but a nonempty gap stream")
        if nnz > 0 and gaps.count < nnz:
            raise FormatError(f"{what}: gap stream shorter than nnz")
    if rec_cur.pos != rec_cur.end:
        raise FormatError(f"{what}: parts end at {rec_cur.pos - start}, record_size is {size}")
    cur.pos = start + size
    return _V1Record(buffer_index, out_offset, out_size, elem_size, value_mode, position_mode,
                     scan, scan_rows, nnz, K, encoding, G, codebook_start, raw_start, values,
                     gaps, start, size)


def _parse_v1(data, S, Z, buffers, section_buffer, max_size):
    HEADER = fmt.V1_HEADER
    (magic, major, _minor, header_size, flags, section_size, D, model_crc, num_tables,
     num_records, reserved) = HEADER.unpack_from(data, S)
    if magic != fmt.MAGIC:
        raise FormatError(f"section magic is {magic!r}, expected b'TFDC'")
    if major != 1:
        raise FormatError(f"unsupported format version {major}.x in a 'tfdc.v1' section "
                          "(this decoder reads 1.x and 2.x)", status="version")
    if header_size != HEADER.size or flags or reserved:
        raise FormatError("header_size, flags or reserved field invalid")
    if section_size != Z:
        raise FormatError(f"section_size {section_size} differs from Buffer.size {Z}")
    if D < S + Z:
        raise FormatError(f"decoded_size {D} is smaller than the packed file")
    (section_crc,) = fmt.CRC.unpack_from(data, S + Z - fmt.CRC.size)
    view = memoryview(data)
    if zlib.crc32(view[S:S + Z - 4]) != section_crc:
        raise FormatError("section CRC mismatch (corrupted section)", status="checksum")
    if zlib.crc32(view[:S]) != model_crc:
        raise FormatError("model CRC mismatch (corrupted flatbuffer)", status="checksum")
    if num_tables > fmt.V1_NO_TABLE:
        raise FormatError(f"num_tables {num_tables} > 65535")
    _check_size(D, max_size)
    cur = _Cursor(data, S + HEADER.size, S + Z - 4, "section")
    tables = _v1_parse_tables(cur, num_tables)
    records = []
    prev_end = 0
    if num_records > (Z - HEADER.size) // (fmt.V1_RECORD_HEADER.size + 4):
        raise FormatError(f"num_records {num_records} cannot fit in the section")
    for i in range(num_records):
        rec = _v1_parse_record(data, cur, i, tables, buffers, S, Z, D, prev_end)
        prev_end = rec.out_offset + rec.out_size
        records.append(rec)
    if cur.pos != cur.end:
        raise FormatError(f"records end at {cur.pos - S}, the section's CRC is at {Z - 4}")
    targets = {r.buffer_index for r in records}
    for j, ref in enumerate(buffers):
        if ref.offset > 1 and j != section_buffer and j not in targets:
            raise FormatError(f"Model.buffers[{j}] points at offset {ref.offset} but no "
                              "record fills it")
    return Parsed(S, Z, D, tables, records, version=1)


def _v1_stream_symbols(data, stream, tables):
    if stream.count == 0:
        return np.zeros(0, np.uint16)
    t = tables[stream.table]
    if t.kind == fmt.TABLE_SINGLE:
        return np.full(stream.count, t.symbol, np.uint16)
    seg = np.frombuffer(data, np.uint8, stream.data_len, stream.data_start)
    return huffman.decode(seg, stream.seg_bytes, stream.count, stream.block, t.lengths,
                          table=t.lookup())


def _v1_record_values(data, rec, tables):
    dtype = np.dtype(_UINT[rec.elem_size]).newbyteorder("<")
    if rec.value_mode == fmt.V1_VALUE_RAW:
        return np.frombuffer(data, dtype, rec.nnz, rec.raw_values_start)
    if rec.codebook_encoding == fmt.V1_CODEBOOK_FP16:
        codebook = fp16_to_fp32_bits(np.frombuffer(data, "<u2", rec.codebook_size,
                                                   rec.codebook_start))
    else:
        codebook = np.frombuffer(data, dtype, rec.codebook_size, rec.codebook_start)
    symbols = _v1_stream_symbols(data, rec.values, tables)
    return codebook[symbols]


def _v1_decode_record(data, rec, tables, out):
    what = f"record for buffer {rec.buffer_index}"
    values = _v1_record_values(data, rec, tables)
    N = rec.out_size // rec.elem_size
    region = out[rec.out_offset:rec.out_offset + rec.out_size].view(_UINT[rec.elem_size])
    if rec.position_mode == fmt.POSITION_SPARSE:
        gaps = _v1_stream_symbols(data, rec.gaps, tables)
        t = _positions(gaps, rec.gap_alphabet, rec.nnz, N, what)
        if rec.scan == fmt.V1_SCAN_COLUMN:
            R = rec.scan_rows
            t = (t % R) * (N // R) + t // R
        region[t] = values
    elif rec.scan == fmt.V1_SCAN_COLUMN:
        R = rec.scan_rows
        region.reshape(R, N // R)[...] = values.reshape(N // R, R).T
    else:
        region[...] = values


def _decode_v1(data, parsed):
    try:
        out = np.zeros(parsed.D, dtype=np.uint8)
    except MemoryError:
        raise FormatError(f"decoded size {parsed.D} cannot be allocated",
                          status="too_large") from None
    out[:len(data)] = np.frombuffer(data, np.uint8)
    for rec in parsed.records:
        _v1_decode_record(data, rec, parsed.tables, out)
    return out.tobytes()


# ==========================================================================
# Public API


def _as_bytes(packed):
    """The bytes of a packed file given as bytes-like or a path."""
    from tfdc.runtime import read_model_bytes
    return read_model_bytes(packed)


def check_max_size(max_size):
    """`max_size` as `decode` takes it: None, an integer >= 0 or
    `float("inf")`; else a ValueError (before either decoder sees it: NaN
    turned the Python decoder's limit off, True was a limit of 1 byte, -1 was
    a FormatError from one decoder and a ValueError from the other)."""
    import numbers
    if max_size is None or max_size == float("inf") and isinstance(max_size, float):
        return max_size
    if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) or max_size < 0:
        raise ValueError("max_size must be a non-negative int, inf or None, got "
                         f"{max_size!r}")
    return int(max_size)


def parse(packed, max_size=None):
    """Validate the container, tables and records of `packed` (§7 steps 1-6).

    Returns `Parsed`; raises `FormatError`. `max_size` limits the decoded
    size (and the inflated meta stream).
    """
    data = packed if isinstance(packed, bytes) else bytes(packed)
    major, S, Z, model, section = _locate(data)
    if major == 1:
        return _parse_v1(data, S, Z, model.buffers, section, max_size)
    return _parse_v2(data, S, Z, max_size)


def _decode_python(data, max_size):
    parsed = parse(data, max_size)
    return _decode_v1(data, parsed) if parsed.version == 1 else _decode_v2(data, parsed)


def _native():
    try:
        from tfdc import _native
    except ImportError:
        return None
    return _native


def _section_majors(data):
    """The format versions named by the file's tfdc section keys (empty for
    a plain, decoded or damaged file), or None if the flatbuffer is broken."""
    try:
        names = {name for name, _ in read_model(data).metadata}
    except FormatError:
        return None
    return {fmt.SECTION_KEYS[n] for n in names if n in fmt.SECTION_KEYS}


def _native_reads(native, majors):
    """True if the native decoder reads every one of these format versions."""
    return all(m == 1 or getattr(native, "FORMAT_MAJOR", 1) >= m for m in majors)


def decode(packed, backend="auto", *, max_size=None):
    """Decode a packed model to a standard `.tflite` (bytes).

    Args:
        packed: the packed file: its path (str or os.PathLike) or its bytes
            (any bytes-like object: bytes, bytearray, memoryview, mmap, a
            NumPy uint8 array).
        backend: "auto" (the C extension when it reads the file's format
            version, else NumPy; a file the C decoder refuses is refused with
            the NumPy decoder's detailed message), "native" (messages name
            the class of error only) or "python".
        max_size: limit on the decoded size in bytes (and on the inflated
            meta stream). Default: the larger of 2 GiB and 1024 × the packed
            size (FORMAT.md §4: a decoded size is chosen by the file, so a
            crafted file could otherwise demand any allocation); pass
            `float("inf")` for no limit. Anything but None, an integer >= 0
            or inf is a ValueError.

    Raises:
        FormatError: the file is not packed (`status == "not_packed"`, also
            for an already decoded file), or is malformed, truncated or
            corrupted. ImportError: backend="native" without the extension,
            or with one built for an older format version.
    """
    if backend not in ("auto", "native", "python"):
        raise ValueError(f"backend must be 'auto', 'native' or 'python', got {backend!r}")
    max_size = check_max_size(max_size)
    data = _as_bytes(packed)
    try:
        return _decode(data, backend, max_size)
    except FormatError as e:
        if isinstance(packed, (str, os.PathLike)):  # name the user's file
            raise FormatError(f"{os.fspath(packed)}: {e}", status=e.status) from None
        raise


def _decode(data, backend, max_size):
    if max_size is None:
        max_size = fmt.default_limit(len(data))
    native = _native() if backend != "python" else None
    if backend == "native" and native is None:
        raise ImportError("tfdc._native is not built (pip install -e . with a C compiler)")
    majors = _section_majors(data)
    if backend == "native" and majors and not _native_reads(native, majors):
        raise ImportError(f"tfdc._native reads format {getattr(native, 'FORMAT_MAJOR', 1)} "
                          "files; this file is a newer format (rebuild the extension, or use "
                          "backend='python')")
    # "auto" leaves files without a section key (plain, already decoded,
    # damaged key) and broken flatbuffers to the Python decoder, whose
    # not-packed messages say which of those the file is.
    if native is not None and (backend == "native" or (majors and _native_reads(native, majors))):
        if getattr(native, "FORMAT_MAJOR", 1) >= 2:  # checks the limit before allocating
            try:
                # Past 2**64 - 1 (which the C limit holds) is no limit either.
                return native.decode(data, max_size=float("inf") if max_size >= 1 << 64
                                     else int(max_size))
            except MemoryError:
                # No limit, and a size this process cannot allocate: a file
                # that declares it is as likely broken (the Python decoder
                # says how, before allocating) as too large for here.
                parse(data, max_size)
                raise FormatError("the decoded model does not fit in this process's memory",
                                  status="too_large") from None
            except FormatError as c_error:
                if backend == "native":
                    raise
                # The C decoder names the class of error only; the reference
                # decoder (which refuses the same files) says what is wrong.
                try:
                    _decode_python(data, max_size)
                except FormatError as detailed:
                    raise detailed from None
                raise c_error
        # An extension built before format 2 has no limit argument.
        size = native.decoded_size(data)
        if size > max_size:
            raise FormatError(f"decoded size {size} exceeds the limit {max_size}",
                              status="too_large")
        return native.decode(data)
    return _decode_python(data, max_size)


def section_span(data):
    """`(major, start, size)` of the section named by the single tfdc.v1 or
    tfdc.v2 metadata entry (its `Buffer.offset` / `size`), or None when there
    is no such entry or the flatbuffer cannot be read. Nothing else is
    checked."""
    try:
        model = read_model(bytes(data))
    except FormatError:
        return None
    found = [(fmt.SECTION_KEYS[name], b) for name, b in model.metadata
             if name in fmt.SECTION_KEYS]
    if len(found) != 1 or found[0][1] >= len(model.buffers):
        return None
    section = model.buffers[found[0][1]]
    return found[0][0], section.offset, section.size


def is_packed(data):
    """True if `data` (a model's bytes, or a path to its file) is a packed
    model: a TFLite flatbuffer with one tfdc.v1 or tfdc.v2 section entry
    whose section ends the file (FORMAT.md §3.2). A decoded file is a
    standard model, not a packed one. Cheap: the CRC and the records are not
    verified. `data` may be bytes-like, a str or an `os.PathLike` path;
    TypeError for anything else. A file that is no .tflite at all is not
    packed (False), read no further than its first 8 bytes."""
    from tfdc.runtime import read_model_bytes
    try:
        data = read_model_bytes(data)
    except FormatError:  # a file that is no .tflite at all
        return False
    span = section_span(data)
    return span is not None and span[1] > 1 and span[1] + span[2] == len(data)


def is_decoded(data):
    """True if `data` is the output of `tfdc.decode`, a standard model that
    every runtime loads as it is: format 2 decoded files carry the
    `tfdc.decoded` metadata marker (and no section entry); format 1 decoded
    files keep the packed file's flatbuffer and section and add the decoded
    weights after it, so their section no longer ends the file and its
    header's `decoded_size` is the file's length (and its CRC holds).
    `data`: the bytes, or a path to the file."""
    from tfdc.runtime import read_model_bytes
    try:
        data = read_model_bytes(data)
        model = read_model(data)
    except FormatError:
        return False
    names = [name for name, _ in model.metadata]
    if fmt.METADATA_NAME_BYTES in names:
        return False
    if fmt.METADATA_NAME_V1_BYTES not in names:
        return fmt.DECODED_MARKER_BYTES in names
    span = section_span(data)
    if span is None:
        return False
    _, start, size = span
    if (size < fmt.V1_HEADER.size + fmt.CRC.size or start + size >= len(data)
            or data[start:start + len(fmt.MAGIC)] != fmt.MAGIC):
        return False
    decoded_size = int.from_bytes(data[start + fmt.V1_HEADER_DECODED_SIZE_OFFSET:
                                       start + fmt.V1_HEADER_DECODED_SIZE_OFFSET + 8], "little")
    (crc,) = fmt.CRC.unpack_from(data, start + size - fmt.CRC.size)
    return decoded_size == len(data) and zlib.crc32(data[start:start + size - 4]) == crc


def has_section_entry(data):
    """True if `data` is a TFLite flatbuffer carrying a tfdc.v1 or tfdc.v2
    metadata entry: a packed file, a format 1 decoded one, or a damaged one.
    Callers route such files to the decoder, which says precisely what is
    wrong with them."""
    return bool(_section_majors(bytes(data)))  # None (no flatbuffer): False


# ==========================================================================
# What a packed file holds (tfdc inspect)


def _tensor_users(flatbuffer):
    """{buffer index: [(tensor name, TensorType, shape)]} via the object API."""
    from tfdc import tflite_schema
    users = {}
    with tflite_schema.damaged_flatbuffer(len(flatbuffer)):  # damaged under a valid CRC
        model = tflite_schema.get().Model.GetRootAs(flatbuffer, 0)
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for k in range(sg.TensorsLength()):
                t = sg.Tensors(k)
                name = t.Name().decode("utf-8", "replace") if t.Name() else ""
                shape = tuple(int(x) for x in t.ShapeAsNumpy()) if t.ShapeLength() else ()
                users.setdefault(t.Buffer(), []).append((name, t.Type(), shape))
    return users


def _buffer_dtype(users, nbytes):
    return fmt.buffer_type([t for _, t, _ in users], nbytes)[0] if users else "bytes"


def _stream_stats(data, stream, tables):
    """(coded bits, entropy bits, symbols) of a stream."""
    symbols = _stream_symbols(data, stream, tables)
    t = tables[stream.table]
    if t.kind == fmt.TABLE_SINGLE:
        return 0, 0.0, symbols
    counts = np.bincount(symbols, minlength=t.n)
    if t.kind in fmt.RANS_KINDS:
        return 8 * stream.data_len, huffman.entropy_bits(counts), symbols
    return huffman.coded_bits(counts, t.lengths), huffman.entropy_bits(counts), symbols


def _record_info(data, rec, parsed, share, part, names, shape, dtype):
    """The `RecordInfo` of a parsed record or patch."""
    value_bits = value_entropy = 0
    for s in rec.values:
        bits, ent, _ = _stream_stats(data, s, parsed.tables)
        value_bits += bits
        value_entropy += ent
    gap_bits, gap_entropy, gap_count = 0, 0.0, 0
    if rec.gaps is not None:
        gap_bits, gap_entropy, _ = _stream_stats(data, rec.gaps, parsed.tables)
        gap_count = rec.gaps.count
    nnz = int(np.count_nonzero(_record_elements(data, rec, parsed.tables)))
    return fmt.RecordInfo(
        buffer_index=-1 if rec.buffer_index is None else rec.buffer_index,
        tensor_names=names, shape=shape, dtype=dtype, num_elements=rec.num_elements, nnz=nnz,
        elem_size=max(1, rec.elem_bits // 8),
        value_mode="codebook" if rec.value_mode == fmt.VALUES_CODEBOOK else "planes",
        position_mode="sparse" if rec.position_mode == fmt.POSITION_SPARSE else "dense",
        scan="column" if rec.scan_rows > 1 else "row", scan_rows=rec.scan_rows,
        gap_alphabet=rec.gap_alphabet,
        codebook_size=len(rec.keys) if rec.value_mode == fmt.VALUES_CODEBOOK else 0,
        codebook_encoding="fp16" if rec.expand else "raw", value_count=rec.nnz,
        gap_count=gap_count, value_bits=value_bits, gap_bits=gap_bits,
        value_entropy_bits=value_entropy, gap_entropy_bits=gap_entropy,
        codebook_bytes=rec.codebook_bytes, table_bytes=rec.table_bytes,
        record_bytes=int(round(rec.payload_bytes + share)), raw_bytes=rec.out_size,
        out_offset=rec.out_offset, elem_bits=rec.elem_bits,
        transform=fmt.TRANSFORM_NAMES[rec.transform],
        planes=len(rec.values) if rec.value_mode == fmt.VALUES_PLANES else 0,
        payload_bytes=rec.payload_bytes,
        descriptor_bytes=len(part),
        context_coded=any(parsed.tables[st.table].kind in fmt.RANS_KINDS
                          for st in rec.values))


def _pack_info_v2(data, parsed):
    flat = parsed.meta[:parsed.F]
    users = _tensor_users(flat)
    graph = len(fmt.deflate(flat))
    descriptor_share = parsed.C - graph
    meta = parsed.meta
    coded = parsed.records + parsed.patches
    parts = [meta[r.desc_start:r.desc_end] + b"".join(
        meta[parsed.tables[t].start:parsed.tables[t].start + parsed.tables[t].size]
        for t in r.new_tables) for r in coded]
    shares = fmt.descriptor_shares(descriptor_share, parts)
    records = []
    for rec, share, part in zip(parsed.records, shares, parts):
        infos = users.get(rec.buffer_index, [])
        records.append(_record_info(
            data, rec, parsed, share, part, [n for n, _, _ in infos],
            infos[0][2] if infos else (rec.num_elements,), _buffer_dtype(infos, rec.out_size)))
    vectors = {vec.start: vec for vec in quantization_vectors(flat)} if parsed.patches else {}
    patches = []
    for rec, share, part in zip(parsed.patches, shares[len(records):], parts[len(records):]):
        vec = vectors.get(rec.out_offset)
        names = [vec.label] if vec else []
        dtype = vec.dtype[0] if vec else "bytes"
        patches.append(_record_info(data, rec, parsed, share, part, names,
                                    (rec.num_elements,), dtype))
    payload = parsed.S + parsed.Z - fmt.CRC.size - parsed.payload_start
    return fmt.PackInfo(flatbuffer_bytes=parsed.S, section_bytes=parsed.Z,
                        total_bytes=parsed.S + parsed.Z, decoded_bytes=parsed.D,
                        records=records, num_tables=len(parsed.tables), input_bytes=0,
                        version=2, stub_bytes=parsed.S, header_bytes=parsed.header_size,
                        meta_bytes=parsed.C, meta_raw_bytes=len(parsed.meta), graph_bytes=graph,
                        graph_raw_bytes=parsed.F, descriptor_bytes=descriptor_share,
                        payload_bytes=payload, crc_bytes=fmt.CRC.size, patches=patches)


def _pack_info_v1(data, parsed):
    users = _tensor_users(data)
    records = []
    table_seen = set()
    for rec in parsed.records:
        infos = users.get(rec.buffer_index, [])
        entry = 2 if rec.codebook_encoding == fmt.V1_CODEBOOK_FP16 else rec.elem_size
        stats = {}
        value_counts = None
        for key, stream in (("value", rec.values), ("gap", rec.gaps)):
            bits, ent, count, tbytes = 0, 0.0, 0, 0
            if stream is not None and stream.count:
                count = stream.count
                t = parsed.tables[stream.table]
                if stream.table not in table_seen:
                    table_seen.add(stream.table)
                    tbytes = t.size
                symbols = _v1_stream_symbols(data, stream, parsed.tables)
                counts = np.bincount(symbols, minlength=t.n)
                if t.kind == 0:
                    bits = huffman.coded_bits(counts, t.lengths)
                    ent = huffman.entropy_bits(counts)
                if key == "value":
                    value_counts = counts
            stats[key] = (bits, ent, count, tbytes)
        nnz = rec.nnz
        if rec.position_mode == 0 and rec.value_mode == 0 and rec.nnz:
            # Dense: the coded values include zeros; count the nonzero ones.
            cb = np.frombuffer(data, np.uint8, rec.codebook_size * entry,
                               rec.codebook_start).reshape(rec.codebook_size, entry)
            nonzero = cb.any(axis=1)
            nnz = int(value_counts[:rec.codebook_size][nonzero[:len(value_counts)]].sum())
        N = rec.out_size // rec.elem_size
        records.append(fmt.RecordInfo(
            buffer_index=rec.buffer_index, tensor_names=[n for n, _, _ in infos],
            shape=infos[0][2] if infos else (N,),
            dtype=_buffer_dtype(infos, rec.out_size), num_elements=N, nnz=nnz,
            elem_size=rec.elem_size, value_mode="raw" if rec.value_mode else "codebook",
            position_mode="sparse" if rec.position_mode else "dense",
            scan="column" if rec.scan else "row", scan_rows=rec.scan_rows,
            gap_alphabet=rec.gap_alphabet, codebook_size=rec.codebook_size,
            codebook_encoding="fp16" if rec.codebook_encoding else "raw",
            value_count=stats["value"][2] if rec.values else rec.nnz,
            gap_count=stats["gap"][2], value_bits=stats["value"][0], gap_bits=stats["gap"][0],
            value_entropy_bits=stats["value"][1], gap_entropy_bits=stats["gap"][1],
            codebook_bytes=rec.codebook_size * entry,
            table_bytes=stats["value"][3] + stats["gap"][3], record_bytes=rec.record_size,
            raw_bytes=rec.out_size, out_offset=rec.out_offset, elem_bits=8 * rec.elem_size,
            payload_bytes=rec.record_size))
    return fmt.PackInfo(flatbuffer_bytes=parsed.S, section_bytes=parsed.Z,
                        total_bytes=parsed.S + parsed.Z, decoded_bytes=parsed.D,
                        records=records, num_tables=len(parsed.tables), input_bytes=0,
                        version=1)


def model_flatbuffer(packed):
    """The model's flatbuffer in a packed file (for its graph and tensors):
    format 2's inner flatbuffer, or a format 1 file itself."""
    data = _as_bytes(packed)
    if is_decoded(data):
        return data
    parsed = parse(data)
    return data if parsed.version == 1 else parsed.meta[:parsed.F]


def read_pack_info(packed):
    """The `tfdc.format.PackInfo` of a packed file (sizes, kinds, coded bits
    and entropies per record), as `pack_tflite` reported it, for `tfdc
    inspect`. Tensor names, shapes and dtypes come from the (inner)
    flatbuffer's tensors. A format 1 decoded file is read from its packed
    prefix."""
    data = _as_bytes(packed)
    if is_decoded(data) and has_section_entry(data):
        _, start, size = section_span(data)
        data = data[:start + size]
    parsed = parse(data)
    if parsed.version == 1:
        return _pack_info_v1(data, parsed)
    return _pack_info_v2(data, parsed)
