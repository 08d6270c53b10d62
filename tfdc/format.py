"""The packed format in one place (docs/FORMAT.md): names, constants, byte
layouts, enums, the TFLite tensor-type table and the info dataclasses.

The packer (`tfdc.pack`), both decoders (`tfdc.unpack` and, through
`tfdc/native/tfdc_format.h`, the C library), the report, the runtime, the
tools and the tests read every fact of the format from here; nothing else
spells a field offset or a magic number.

Example:

```python
from tfdc import format as fmt
print(fmt.METADATA_NAME, fmt.HEADER.size, fmt.RECORD_HEADER.size)  # tfdc.v1 48 52
```
"""

import dataclasses
import struct

import numpy as np

from tfdc import huffman

# ------------------------------------------------------------------ container
METADATA_NAME = "tfdc.v1"                    # Model.metadata entry naming the section (§2)
METADATA_NAME_BYTES = METADATA_NAME.encode()
MAGIC = b"TFDC"
VERSION_MAJOR, VERSION_MINOR = 1, 0
SECTION_ALIGN = 16                           # S % 16 == 0
OUTPUT_ALIGN = 64                            # the packer's out_offset alignment (MUST: 16)
OUTPUT_ALIGN_REQUIRED = 16

# ------------------------------------------------------------------ structures
HEADER = struct.Struct("<4sHHIIQQIIII")        # 48 bytes, §3.1
TABLE_HEADER = struct.Struct("<BBHI")          # 8 bytes, §3.2
STREAM_HEADER = struct.Struct("<QHHI")         # 16 bytes, §3.3
RECORD_HEADER = struct.Struct("<IIQQBBBBIQIB3sI")  # 52 bytes, §3.4
CRC = struct.Struct("<I")                      # every CRC-32 field
TABLE_SYMBOL = struct.Struct("<I")             # a kind-1 table's symbol

# Byte offsets of the header fields the runtime reads without parsing.
HEADER_DECODED_SIZE_OFFSET = 24

# ------------------------------------------------------------------ enums
TABLE_HUFFMAN, TABLE_SINGLE = 0, 1             # table kind
NO_TABLE = 0xFFFF                              # stream.table of an empty stream
VALUE_CODEBOOK, VALUE_RAW = 0, 1               # record.value_mode
POSITION_DENSE, POSITION_SPARSE = 0, 1         # record.position_mode
SCAN_ROW, SCAN_COLUMN = 0, 1                   # record.scan
CODEBOOK_RAW, CODEBOOK_FP16 = 0, 1             # record.codebook_encoding
ELEM_SIZES = (1, 2, 4, 8)

MAX_CODE_LEN = huffman.MAX_BITS                # 15
MAX_ALPHABET = huffman.MAX_SYMBOLS             # 32768 symbols per table
MAX_CODEBOOK = MAX_ALPHABET
MIN_GAP_ALPHABET, MAX_GAP_ALPHABET = 2, 32768
DEFAULT_BLOCK = 4096                           # symbols per segment

# ------------------------------------------------------------------ TFLite
# TFLite TensorType -> (name, bytes per element, value order for codebooks).
TENSOR_TYPES = {
    0: ("float32", 4, "float"), 1: ("float16", 2, "float"), 2: ("int32", 4, "int"),
    3: ("uint8", 1, "uint"), 4: ("int64", 8, "int"), 7: ("int16", 2, "int"),
    9: ("int8", 1, "int"), 10: ("float64", 8, "float"), 12: ("uint64", 8, "uint"),
    15: ("uint32", 4, "uint"), 16: ("uint16", 2, "uint"),
}
NUMPY_TO_TENSOR_TYPE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1,
                        np.dtype(np.int32): 2, np.dtype(np.uint8): 3, np.dtype(np.int64): 4,
                        np.dtype(np.int16): 7, np.dtype(np.int8): 9, np.dtype(np.float64): 10}
UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


# ------------------------------------------------------------------ binary16
def fp16_to_fp32_bits(h):
    """binary16 bit patterns -> binary32 bit patterns, exactly as §3.4 says
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

    `value_mode` is "codebook" or "raw", `position_mode` "dense" or "sparse",
    `scan` "row" or "column", `codebook_encoding` "raw" or "fp16".
    `value_bits` / `gap_bits` are the coded payload bits of the value / gap
    streams (0 for raw values, kind-1 and absent streams);
    `value_entropy_bits` / `gap_entropy_bits` are the order-0 empirical
    entropy of each stream times its length — the ideal the code approaches.
    `table_bytes` counts the code tables this record introduced (a table
    shared with an earlier record is counted there).
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


@dataclasses.dataclass
class PackInfo:
    """Sizes of a packed file. `flatbuffer_bytes` is `S` (flatbuffer plus
    alignment padding), `section_bytes` is `Z`, `total_bytes` the packed file
    (`S + Z`), `decoded_bytes` the decoded file `D`."""
    flatbuffer_bytes: int
    section_bytes: int
    total_bytes: int
    decoded_bytes: int
    records: list
    num_tables: int = 0
    input_bytes: int = 0
    fp16_max_abs_change: float = 0.0
