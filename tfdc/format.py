"""The packed format in one place (docs/FORMAT.md): names, constants, byte
layouts, enums, the element transforms, the TFLite tensor-type table and the
info dataclasses.

The packer (`tfdc.pack`), the decoders (`tfdc.unpack` and, through one C
header, the native library), the report, the runtime, the tools and the tests
read every fact of the format from here; nothing else spells a field offset,
an enum value or a magic number.

Format 2 (`tfdc.v2`, written by the packer) and format 1 (`tfdc.v1`, still
decoded) share the Huffman code tables, the segment layout of coded streams
and the sparse-position rule; the `V1_*` structs are format 1's fixed-width
layouts.

Example:

```python
from tfdc import format as fmt
print(fmt.METADATA_NAME, fmt.PREFIX.size)              # tfdc.v2 8
print(fmt.varint_bytes(300).hex())                     # ac02
```
"""

import dataclasses
import hashlib
import os
import struct
import zlib

import numpy as np

from tfdc import huffman

# ------------------------------------------------------------------ container
METADATA_NAME = "tfdc.v2"                    # stub's Model.metadata entry naming the section
METADATA_NAME_BYTES = METADATA_NAME.encode()
METADATA_NAME_V1 = "tfdc.v1"
METADATA_NAME_V1_BYTES = METADATA_NAME_V1.encode()
# Metadata names of the packed formats, by major version.
SECTION_KEYS = {METADATA_NAME_V1_BYTES: 1, METADATA_NAME_BYTES: 2}
# Metadata entry (pointing at buffer 0) that marks the inner flatbuffer, and
# so every decoded file, as tfdc's: tools recognise a decoded file by it.
DECODED_MARKER = "tfdc.decoded"
DECODED_MARKER_BYTES = DECODED_MARKER.encode()
# Names the buffer that holds a zip archive appended to the packed model
# (TFLite metadata's associated files): the packer codes it last, so that it
# ends the decoded file, where zip readers look for it.
APPENDED_ARCHIVE = "tfdc.appended"
MAGIC = b"TFDC"
VERSION_MAJOR, VERSION_MINOR = 2, 3
# Header flags (§4). Bit 0: kind 3 tables may appear (version 2.1); bit 1:
# kind 4 tables may appear (2.2); bit 2: the meta stream ends with a patch
# list (2.3, §6.7). A file is written with the flags of the features it uses
# and the lowest version_minor that has them (`header_version`).
FLAG_RANS = 1
FLAG_RANS_GROUPED = 2
FLAG_PATCHES = 4
KNOWN_FLAGS = FLAG_RANS | FLAG_RANS_GROUPED | FLAG_PATCHES
MIN_PATCH_DESCRIPTOR = 7                     # every patch descriptor takes at least 7 bytes (§6.7)

# ------------------------------------------------------------------ format 2
# A section starts after the stub's root offset and file identifier (§3.2).
MIN_SECTION_OFFSET = 8
PREFIX = struct.Struct("<4sHH")              # magic, version_major, version_minor (§4)
CRC = struct.Struct("<I")                    # the file's CRC-32, its last 4 bytes
MAX_VARINT_BYTES = 10                        # LEB128 of a u64
OUTPUT_ALIGN_REQUIRED = 16                   # every record's Buffer.offset % 16 == 0
OUTPUT_ALIGN = 64                            # what the packer uses
# raw DEFLATE (RFC 1951, no zlib header): zlib's wbits
DEFLATE_WBITS = -15
# The most bytes one byte of DEFLATE inflates to (a 258-byte match coded in
# 2 bits): meta_size ≤ 1032 · meta_deflated, checked before allocating.
DEFLATE_MAX_RATIO = 1032
# The preset dictionary of the meta stream's DEFLATE (appendix B).
DICTIONARY_FILE = "v2_dictionary.bin"
DICTIONARY_SHA256 = "e03607d59b0cc655656d9306e97561523c77da64e7191d6166ea113ad1b383b1"

# Table kinds (§5.1).
TABLE_HUFFMAN, TABLE_SINGLE, TABLE_FIXED, TABLE_RANS, TABLE_RANS_GROUPED = 0, 1, 2, 3, 4
RANS_KINDS = (TABLE_RANS, TABLE_RANS_GROUPED)
# The header flag (§4) that allows each table kind of a minor version.
TABLE_FLAGS = {TABLE_RANS: FLAG_RANS, TABLE_RANS_GROUPED: FLAG_RANS_GROUPED}
MAX_FIXED_WIDTH = 15                         # bits of a kind 2 (fixed-length) code
# Kind 3, the context-modelled range code (§5.3): rANS, 32-bit state.
RANS_L = 1 << 23                             # lower bound of the normalised state
RANS_STATE_BYTES = 4                         # a segment starts with the state
MAX_RANS_PREC = 15                           # frequencies sum to 2^prec, 1 ≤ prec ≤ 15
MAX_RANS_WIDTH = 15                          # symbols < 2^width, read as width-bit levels
MAX_RANS_LAG = 65535
MAX_RANS_SHIFT = 16
MAX_RANS_CLASSES = 32
# Kind 4, the grouped range code (§5.4): row and column groups.
MAX_RANS_ROW_LEN = 65536                     # W: symbols per row
MAX_RANS_ROW_PERIOD = 65536                  # V: entries of the row-group map
MAX_RANS_TABLES = 256                        # T = row groups x column groups x classes
# Record fields (§6).
ELEM_BITS = (2, 4, 8, 16, 32, 64)
TRANSFORM_IDENTITY, TRANSFORM_ZIGZAG, TRANSFORM_ROTATE = 0, 1, 2
TRANSFORMS = (TRANSFORM_IDENTITY, TRANSFORM_ZIGZAG, TRANSFORM_ROTATE)
TRANSFORM_NAMES = {TRANSFORM_IDENTITY: "identity", TRANSFORM_ZIGZAG: "zigzag",
                   TRANSFORM_ROTATE: "rotate"}
VALUES_CODEBOOK, VALUES_PLANES = 0, 1
POSITION_DENSE, POSITION_SPARSE = 0, 1
EXPAND_NONE, EXPAND_FP16 = 0, 1
FP16_KEY_BITS = 16                           # codebook key width with expand == 1 (§6.4)
MAX_BLOCK = 0xFFFFFFFF                       # symbols per segment: 1 … 2^32 − 1 (§5.2)

MAX_CODE_LEN = huffman.MAX_BITS              # 15
MAX_ALPHABET = huffman.MAX_SYMBOLS           # 32768 symbols per table
MAX_CODEBOOK = MAX_ALPHABET
MIN_GAP_ALPHABET, MAX_GAP_ALPHABET = 2, 32768
DEFAULT_BLOCK = 4096                         # symbols per segment
# The default limit on the decoded size (and on the inflated meta stream):
# the larger of 2 GiB and 1024 x the packed file's length (§4).
DEFAULT_LIMIT_FLOOR = 1 << 31
DEFAULT_LIMIT_RATIO = 1024


def default_limit(packed_length):
    """The decoded-size limit a decoder applies unless its caller sets one."""
    return max(DEFAULT_LIMIT_FLOOR, DEFAULT_LIMIT_RATIO * packed_length)


# ------------------------------------------------------------------ format 1
V1_HEADER = struct.Struct("<4sHHIIQQIIII")        # 48 bytes
V1_TABLE_HEADER = struct.Struct("<BBHI")          # 8 bytes
V1_STREAM_HEADER = struct.Struct("<QHHI")         # 16 bytes
V1_RECORD_HEADER = struct.Struct("<IIQQBBBBIQIB3sI")  # 52 bytes
V1_TABLE_SYMBOL = struct.Struct("<I")             # a kind-1 table's symbol
V1_NO_TABLE = 0xFFFF                              # stream.table of an empty stream
V1_VALUE_CODEBOOK, V1_VALUE_RAW = 0, 1
V1_SCAN_ROW, V1_SCAN_COLUMN = 0, 1
V1_CODEBOOK_RAW, V1_CODEBOOK_FP16 = 0, 1
V1_ELEM_SIZES = (1, 2, 4, 8)
V1_SECTION_ALIGN = 16
# Byte offset of the header's decoded_size (read without parsing the section).
V1_HEADER_DECODED_SIZE_OFFSET = 24

# ------------------------------------------------------------------ TFLite
# TFLite TensorType -> (name, bits per element, kind: "int" / "uint" / "float").
TENSOR_TYPES = {
    0: ("float32", 32, "float"), 1: ("float16", 16, "float"), 2: ("int32", 32, "int"),
    3: ("uint8", 8, "uint"), 4: ("int64", 64, "int"), 7: ("int16", 16, "int"),
    9: ("int8", 8, "int"), 10: ("float64", 64, "float"), 12: ("uint64", 64, "uint"),
    15: ("uint32", 32, "uint"), 16: ("uint16", 16, "uint"), 17: ("int4", 4, "int"),
    18: ("bfloat16", 16, "float"), 19: ("int2", 2, "int"), 20: ("uint4", 4, "uint"),
    21: ("float8_e4m3fn", 8, "float"), 22: ("float8_e5m2", 8, "float"),
}
NUMPY_TO_TENSOR_TYPE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1,
                        np.dtype(np.int32): 2, np.dtype(np.uint8): 3, np.dtype(np.int64): 4,
                        np.dtype(np.int16): 7, np.dtype(np.int8): 9, np.dtype(np.float64): 10}
UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def buffer_type(tensor_types, nbytes):
    """`(name, bits, kind)` of a buffer used by tensors of TFLite types
    `tensor_types`: their common type, or `("bytes", 8, "uint")` when they
    differ, a type is not in `TENSOR_TYPES`, or `nbytes` is not a whole
    number of elements."""
    types = {TENSOR_TYPES.get(int(t)) for t in tensor_types}
    if len(types) == 1 and None not in types:
        name, bits, kind = types.pop()
        if (8 * nbytes) % bits == 0:
            return name, bits, kind
    return "bytes", 8, "uint"


_DICTIONARY = []


def dictionary():
    """Format 2's preset DEFLATE dictionary (FORMAT.md appendix B), checked
    against its SHA-256."""
    if not _DICTIONARY:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), DICTIONARY_FILE)
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != DICTIONARY_SHA256:
            raise RuntimeError(f"{path} is not format 2's dictionary (SHA-256 mismatch)")
        _DICTIONARY.append(data)
    return _DICTIONARY[0]


def _zdict():
    d = dictionary()
    return {"zdict": d} if d else {}


def deflate(data):
    """`data` as raw DEFLATE (RFC 1951) with the preset dictionary, the way
    the packer writes it: zlib level 9, memLevel 9, a 32 KiB window.
    Deterministic for a given zlib."""
    c = zlib.compressobj(9, zlib.DEFLATED, DEFLATE_WBITS, 9, zlib.Z_DEFAULT_STRATEGY,
                         **_zdict())
    return c.compress(bytes(data)) + c.flush()


def descriptor_shares(total, parts):
    """Share `total` (the deflated bytes of the meta stream's descriptors) out
    among records whose descriptors, with the tables each introduced, are
    `parts`: in proportion to each part deflated on its own, so a record with
    an incompressible codebook carries more than one whose fields compress.
    The shares add up to `total`."""
    weights = [len(deflate(p)) for p in parts]
    whole = sum(weights)
    return [total * w / whole if whole else 0.0 for w in weights]


def inflater():
    """A `zlib.decompressobj` for a format 2 meta stream (raw DEFLATE, with
    the preset dictionary)."""
    return zlib.decompressobj(DEFLATE_WBITS, **_zdict())


# ------------------------------------------------------------------ varints
def header_version(flags):
    """`version_minor` of a file with header `flags` (§4): the lowest minor
    version that has every feature the flags announce."""
    if flags & FLAG_PATCHES:
        return 3
    if flags & FLAG_RANS_GROUPED:
        return 2
    return 1 if flags & FLAG_RANS else 0


def varint_bytes(value):
    """The LEB128 encoding of a non-negative integer < 2^64: 7 bits per byte,
    least significant group first, high bit set on every byte but the last
    (minimal: no trailing 0x80 0x00 groups)."""
    value = int(value)
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varints_bytes(values):
    """`b"".join(varint_bytes(v) for v in values)` for an array of values
    < 2^63, vectorised (code tables list thousands of them)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(v) == 0:
        return b""
    if v.min() < 0:
        raise ValueError("varints are non-negative")
    nbytes = np.ones(len(v), np.int64)
    rest = v >> 7
    while rest.any():
        nbytes += rest > 0
        rest >>= 7
    out = np.zeros(int(nbytes.sum()), np.uint8)
    pos = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    for k in range(int(nbytes.max())):
        live = nbytes > k
        group = (v[live] >> (7 * k)) & 0x7F
        more = (nbytes[live] > k + 1).astype(np.int64) << 7
        out[pos[live] + k] = group | more
    return out.tobytes()


def read_varint(data, pos, end):
    """`(value, next_pos)` of the minimal LEB128 varint at `data[pos:end]`, or
    None if it is truncated, longer than 10 bytes, above 2^64 - 1 or not
    minimal (a last byte of 0 after the first). The caller raises."""
    value = shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= end:
            return None
        b = data[pos + i]
        if i == MAX_VARINT_BYTES - 1 and b > 1:
            return None
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and i > 0:
                return None
            return value, pos + i + 1
        shift += 7
    return None


# ------------------------------------------------------------------ bit packing
def pack_bits(values, width):
    """`values` (each < 2^width) as `width`-bit fields, most significant bit
    first, the last byte padded with zero bits (§6.4, codebook deltas)."""
    values = np.asarray(values, dtype=np.uint64).reshape(-1)
    if width == 0 or len(values) == 0:
        return b""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def unpack_bits(data, count, width):
    """Inverse of `pack_bits`: `(fields as np.uint64, padding bits all zero)`
    for `count` fields of `width` bits in `data` (exactly
    `ceil(count * width / 8)` bytes)."""
    if width == 0 or count == 0:
        return np.zeros(count, np.uint64), True
    bits = np.unpackbits(np.frombuffer(bytes(data), np.uint8))
    used = count * width
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    fields = bits[:used].reshape(count, width).astype(np.uint64) << shifts
    return np.bitwise_or.reduce(fields, axis=1), not bits[used:].any()


# ------------------------------------------------------------------ transforms
def _uint(width):
    return {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}.get(width, np.uint8)


def transform(x, kind, width):
    """The element transform `kind` on `width`-bit unsigned values `x` (§6.2):
    identity, zigzag (sign to the lowest bit, magnitude above: small signed
    integers get zero high bytes) or rotate (rotate left by one: an IEEE
    float's exponent becomes its top byte)."""
    x = np.asarray(x).astype(_uint(width))
    one = _uint(width)(1)
    top = _uint(width)(width - 1)
    mask = _uint(width)((1 << width) - 1)
    if kind == TRANSFORM_IDENTITY:
        return x
    if kind not in (TRANSFORM_ZIGZAG, TRANSFORM_ROTATE):
        raise ValueError(f"unknown transform {kind}")
    # In place on two arrays (a tensor can be hundreds of MB).
    high = x >> top
    x <<= one
    if kind == TRANSFORM_ZIGZAG:
        high &= one
        np.negative(high, out=high)  # 0 or all ones (unsigned wrap-around)
        x ^= high
    else:
        x |= high
    del high
    if 8 * x.itemsize != width:  # 2- and 4-bit elements in a uint8
        x &= mask
    return x


def inverse_transform(t, kind, width):
    """The inverse of `transform` (bit-exact on every `width`-bit value)."""
    t = np.asarray(t).astype(_uint(width))
    one = _uint(width)(1)
    top = _uint(width)(width - 1)
    mask = _uint(width)((1 << width) - 1)
    if kind == TRANSFORM_IDENTITY:
        return t
    if kind == TRANSFORM_ZIGZAG:
        return ((t >> one) ^ (np.zeros_like(t) - (t & one))) & mask
    if kind == TRANSFORM_ROTATE:
        return ((t >> one) | ((t & one) << top)) & mask
    raise ValueError(f"unknown transform {kind}")


# ------------------------------------------------------------------ elements
def split_elements(raw, elem_bits):
    """Buffer bytes (np.uint8) -> its elements as unsigned integers (§6.1):
    little-endian groups of `elem_bits / 8` bytes, or for 2- and 4-bit
    elements the fields of each byte from its lowest bits up."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if elem_bits >= 8:
        elems = raw.view(np.dtype(_uint(elem_bits)).newbyteorder("<"))
        if elems.dtype.isnative:  # a read-only view, not a copy of a large tensor
            elems = elems.view(_uint(elem_bits))
            elems.flags.writeable = False
            return elems
        return elems.astype(_uint(elem_bits))
    per = 8 // elem_bits
    mask = (1 << elem_bits) - 1
    out = np.empty(len(raw) * per, np.uint8)
    for k in range(per):
        out[k::per] = (raw >> (elem_bits * k)) & mask
    return out


def join_elements(elements, elem_bits):
    """Inverse of `split_elements`: elements -> buffer bytes."""
    if elem_bits >= 8:
        return np.ascontiguousarray(elements, dtype=np.dtype(_uint(elem_bits)).newbyteorder(
            "<")).view(np.uint8)
    per = 8 // elem_bits
    e = np.asarray(elements, dtype=np.uint8).reshape(-1, per)
    out = np.zeros(len(e), np.uint8)
    for k in range(per):
        out |= e[:, k] << (elem_bits * k)
    return out


def plane_count(elem_bits):
    """Planes of a `planes` record: one per byte, or one for sub-byte elements."""
    return max(1, elem_bits // 8)


def plane_bits(elem_bits):
    """Bits of one plane symbol: 8, or the element width below 8."""
    return min(8, elem_bits)


# ------------------------------------------------------------------ binary16
def fp16_to_fp32_bits(h):
    """binary16 bit patterns -> binary32 bit patterns, exactly as §6.3 says
    (integer operations: NaN payloads are kept, never quieted)."""
    h = np.asarray(h, dtype=np.uint16).astype(np.uint32)
    sign = (h >> 15) << 31
    e = (h >> 10) & 31
    m = h & 1023
    normal = sign | ((e + 112) << 23) | (m << 13)
    special = sign | np.uint32(0x7F800000) | (m << 13)
    # Subnormals and zeros: m * 2^-24 is exact in binary32.
    small = sign | (m.astype(np.float32) * np.float32(2.0 ** -24)).view(np.uint32)
    return np.where(e == 31, special, np.where(e == 0, small, normal)).astype(np.uint32)


def fp32_to_fp16_bits(bits):
    """Bit-exact binary32 -> binary16 for values that binary16 represents
    (the inverse of `fp16_to_fp32_bits` on them)."""
    bits = np.asarray(bits, dtype=np.uint32)
    with np.errstate(over="ignore", invalid="ignore"):
        half = bits.view(np.float32).astype(np.float16).view(np.uint16)
    nan = (bits & 0x7F800000) == 0x7F800000
    # NaN/Inf: build the pattern by hand so no conversion can touch a payload.
    manual = (((bits >> 16) & 0x8000) | 0x7C00 | ((bits >> 13) & 0x3FF)).astype(np.uint16)
    return np.where(nan, manual, half)


# ------------------------------------------------------------------ info
@dataclasses.dataclass
class RecordInfo:
    """How one buffer was packed (all sizes in bytes unless named *_bits).

    `value_mode` is "codebook" or "planes" (format 1 files: "codebook" or
    "raw"), `position_mode` "dense" or "sparse", `scan` "row" or "column",
    `transform` "identity", "zigzag" or "rotate", `codebook_encoding` "raw"
    or "fp16". `elem_bits` is the element width the record codes (it may
    differ from the tensor's: int4 pairs can be coded as bytes).
    `value_bits` / `gap_bits` are the payload bits of the value streams (every
    plane, stored planes included) / of the gap stream; `value_entropy_bits`
    / `gap_entropy_bits` the order-0 empirical entropy of each stream times
    its length — the ideal the code approaches. `table_bytes` counts the code
    tables this record introduced (a table shared with an earlier record is
    counted there). `payload_bytes` is what the record stores outside the
    deflated meta stream (its coded segments); `descriptor_bytes` its
    descriptor, tables and codebook before deflate; `record_bytes` the
    record's share of the file: payload plus its descriptor's share of the
    deflated meta stream (format 1: the record's bytes in the section).
    `context_coded`: a value stream uses a kind 3 or 4 table (§5.3, §5.4).
    """
    buffer_index: int
    tensor_names: list
    shape: tuple
    dtype: str
    num_elements: int
    nnz: int
    elem_size: int
    value_mode: str
    position_mode: str
    scan: str
    scan_rows: int
    gap_alphabet: int
    codebook_size: int
    codebook_encoding: str
    value_count: int
    gap_count: int
    value_bits: int
    gap_bits: int
    value_entropy_bits: float
    gap_entropy_bits: float
    codebook_bytes: int
    table_bytes: int
    record_bytes: int
    raw_bytes: int
    out_offset: int = 0
    fp16_max_abs_change: float = 0.0
    elem_bits: int = 0
    transform: str = "identity"
    planes: int = 0
    payload_bytes: int = 0
    descriptor_bytes: int = 0
    context_coded: bool = False

    @property
    def kind(self):
        """A short name of the record kind, e.g. "codebook/sparse/column",
        "planes/dense/int4/context" (values range-coded with kind 3 or 4 tables)."""
        parts = [self.value_mode, self.position_mode]
        if self.scan == "column":
            parts.append("column")
        if self.elem_bits and self.elem_bits < 8:
            parts.append(f"int{self.elem_bits}")
        if self.context_coded:
            parts.append("context")
        return "/".join(parts)


@dataclasses.dataclass
class PackInfo:
    """Sizes of a packed file, in bytes.

    `total_bytes` is the packed file, `decoded_bytes` the decoded file `D`,
    `section_bytes` the section `Z`, `input_bytes` the model that was packed.
    Format 2's parts: `stub_bytes` (the small flatbuffer before the section),
    `header_bytes`, `meta_bytes` (the deflate stream) which inflates to
    `meta_raw_bytes` holding the inner flatbuffer (`graph_raw_bytes`
    before deflate, `graph_bytes` its deflated share: the graph, names and
    the small tensors left inline) and the descriptors (`descriptor_bytes`
    deflated share), then `payload_bytes` of coded segments and a 4-byte
    CRC. `flatbuffer_bytes` is the stub (format 1: the model flatbuffer and
    its padding, `S`). `densified`: the packer's `tfdc.densify.DensifiedTensor`
    entries (TFLite-sparse constants expanded before packing, or left as is).
    `patches`: a `RecordInfo` per patch (format 2.3, §6.7: a quantization
    vector of the flatbuffer coded as a record; `buffer_index` -1,
    `out_offset` its position in the flatbuffer); their payload is in
    `payload_bytes`, their descriptors in `descriptor_bytes`.
    `appended_bytes`: a zip archive appended after the input's flatbuffer
    (TFLite metadata's associated files, e.g. labels), kept as the last
    record so that it ends the decoded file (0: none). `negative_zeros`:
    `{tensor name: count}` of float weights of -0.0 in the buffers
    considered (kept as they are, or stored as 0.0: the packer's
    `negative_zeros`).
    """
    flatbuffer_bytes: int
    section_bytes: int
    total_bytes: int
    decoded_bytes: int
    records: list
    num_tables: int = 0
    input_bytes: int = 0
    fp16_max_abs_change: float = 0.0
    version: int = VERSION_MAJOR
    stub_bytes: int = 0
    header_bytes: int = 0
    meta_bytes: int = 0
    meta_raw_bytes: int = 0
    graph_bytes: int = 0
    graph_raw_bytes: int = 0
    descriptor_bytes: int = 0
    payload_bytes: int = 0
    crc_bytes: int = 0
    densified: list = dataclasses.field(default_factory=list)
    patches: list = dataclasses.field(default_factory=list)
    appended_bytes: int = 0
    negative_zeros: dict = dataclasses.field(default_factory=dict)

    @property
    def coded_bytes(self):
        """Bytes of the records' coded payloads (kernels, biases, ...)."""
        return self.payload_bytes


# ------------------------------------------------------------------ the stub
# The 120-byte TFLite flatbuffer in front of a format 2 section (§3): a Model
# with one Buffer (offset S, size Z) and one Metadata entry "tfdc.v2" naming
# buffer 0 — no subgraphs and no version field, so every stock runtime
# refuses it ("schema version 0"; a version-3 model without subgraphs crashes
# the LiteRT 2.3 interpreter instead). Decoders read it with the minimal
# reader like any flatbuffer; this fixed layout is only what tfdc writes.
_STUB_TEMPLATE = bytes.fromhex(
    "20000000" "54464c33"                      # root -> Model at 32; "TFL3"
    "000000000000"                             # padding
    "12000c00" "0000000000000000" "080000000400"  # Model vtable at 14: buffers +8, metadata +4
    "12000000" "08000000" "28000000"           # Model at 32: vtable 14, metadata->44, buffers->80
    "01000000" "0c000000"                      # metadata vector: 1 entry -> Metadata at 60
    "0000" "060008000400"                      # padding; Metadata vtable at 54: name +4
    "06000000" "04000000"                      # Metadata at 60: vtable 54, name -> 68
    "07000000" "746664632e763200"              # "tfdc.v2" and its NUL
    "01000000" "10000000"                      # buffers vector: 1 entry -> Buffer at 100
    "0000" "0a0014000000" "0c000400"           # padding; Buffer vtable at 90: offset +12, size +4
    "0a000000"                                 # Buffer at 100: vtable 90
    "0000000000000000" "0000000000000000")     # size Z at 104, offset S at 112
STUB_SIZE = len(_STUB_TEMPLATE)                # 120
_STUB_SIZE_AT, _STUB_OFFSET_AT = 104, 112


def stub(section_offset, section_size):
    """The stub tfdc writes in front of a section at `section_offset` (its
    length, 120) of `section_size` bytes."""
    out = bytearray(_STUB_TEMPLATE)
    struct.pack_into("<Q", out, _STUB_SIZE_AT, section_size)
    struct.pack_into("<Q", out, _STUB_OFFSET_AT, section_offset)
    return bytes(out)
