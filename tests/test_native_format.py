"""tfdc/native/tfdc_format.h and tfdc_dictionary.h against their Python
definitions: every #define of the C header is parsed and compared with the
value tfdc/format.py (or, for flatbuffer field ids, tfdc/flatbuf.py) gives
the same fact, byte offsets included (computed from the struct layouts), and
the C array of the preset dictionary holds exactly tfdc/v2_dictionary.bin.
A constant added to the header without a Python counterpart fails too."""

import os
import re
import struct

import pytest

from tfdc import flatbuf
from tfdc import format as fmt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "tfdc", "native")


def _c_value(text):
    """The value of a #define body: a string literal, or an integer
    expression of literals (suffixes u/ull dropped)."""
    text = re.sub(r"/\*.*?\*/", "", text).strip()
    if text.startswith('"'):
        return text.strip('"')
    expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)(ull|ul|u|ll|l)\b", r"\1", text, flags=re.I)
    assert re.fullmatch(r"[\s0-9a-fA-Fx()<>+\-*]+", expr), text
    return eval(expr)  # noqa: S307 - digits and operators only (checked above)


def _defines(path):
    out = {}
    for line in open(path):
        m = re.match(r"#define\s+(TFDC_\w+)\s+(.+)$", line.strip())
        if m and not m.group(1).endswith("_H_"):
            out[m.group(1)] = _c_value(m.group(2))
    return out


def _offsets(st, names):
    """{name: byte offset} of the fields of a little-endian struct layout."""
    items = re.findall(r"(\d*)([a-zA-Z])", st.format.lstrip("<"))
    assert len(items) == len(names), (st.format, names)
    out, pos = {}, 0
    for (count, code), name in zip(items, names):
        out[name] = pos
        pos += struct.calcsize("<" + count + code)
    assert pos == st.size
    return out


def _expected():
    e = {
        "TFDC_FORMAT_MAJOR": fmt.VERSION_MAJOR, "TFDC_FORMAT_MINOR": fmt.VERSION_MINOR,
        "TFDC_METADATA_NAME": fmt.METADATA_NAME, "TFDC_METADATA_NAME_V1": fmt.METADATA_NAME_V1,
        "TFDC_SECTION_KEY_LEN": len(fmt.METADATA_NAME_BYTES),
        "TFDC_MAGIC": fmt.MAGIC.decode(),
        "TFDC_FLATBUFFER_ID": fmt.stub(0, 0)[4:8].decode(),
        "TFDC_MIN_SECTION_OFFSET": fmt.MIN_SECTION_OFFSET,
        "TFDC_PREFIX_SIZE": fmt.PREFIX.size, "TFDC_CRC_SIZE": fmt.CRC.size,
        "TFDC_MAX_VARINT_BYTES": fmt.MAX_VARINT_BYTES, "TFDC_DEFLATE_WBITS": fmt.DEFLATE_WBITS,
        "TFDC_DEFLATE_MAX_RATIO": fmt.DEFLATE_MAX_RATIO,
        "TFDC_DEFAULT_LIMIT_FLOOR": fmt.DEFAULT_LIMIT_FLOOR,
        "TFDC_DEFAULT_LIMIT_RATIO": fmt.DEFAULT_LIMIT_RATIO,
        "TFDC_FLAG_RANS": fmt.FLAG_RANS, "TFDC_KNOWN_FLAGS": fmt.KNOWN_FLAGS,
        "TFDC_FLAG_RANS_GROUPED": fmt.FLAG_RANS_GROUPED,
        "TFDC_FLAG_PATCHES": fmt.FLAG_PATCHES,
        "TFDC_MIN_PATCH_DESCRIPTOR": fmt.MIN_PATCH_DESCRIPTOR,
        "TFDC_TABLE_HUFFMAN": fmt.TABLE_HUFFMAN, "TFDC_TABLE_SINGLE": fmt.TABLE_SINGLE,
        "TFDC_TABLE_FIXED": fmt.TABLE_FIXED, "TFDC_MAX_FIXED_WIDTH": fmt.MAX_FIXED_WIDTH,
        "TFDC_MAX_CODE_LEN": fmt.MAX_CODE_LEN, "TFDC_MAX_ALPHABET": fmt.MAX_ALPHABET,
        "TFDC_MAX_BLOCK": fmt.MAX_BLOCK,
        "TFDC_TABLE_RANS": fmt.TABLE_RANS, "TFDC_RANS_L": fmt.RANS_L,
        "TFDC_RANS_STATE_BYTES": fmt.RANS_STATE_BYTES, "TFDC_MAX_RANS_PREC": fmt.MAX_RANS_PREC,
        "TFDC_MAX_RANS_WIDTH": fmt.MAX_RANS_WIDTH, "TFDC_MAX_RANS_LAG": fmt.MAX_RANS_LAG,
        "TFDC_MAX_RANS_SHIFT": fmt.MAX_RANS_SHIFT,
        "TFDC_MAX_RANS_CLASSES": fmt.MAX_RANS_CLASSES,
        "TFDC_TABLE_RANS_GROUPED": fmt.TABLE_RANS_GROUPED,
        "TFDC_MAX_RANS_ROW_LEN": fmt.MAX_RANS_ROW_LEN,
        "TFDC_MAX_RANS_ROW_PERIOD": fmt.MAX_RANS_ROW_PERIOD,
        "TFDC_MAX_RANS_TABLES": fmt.MAX_RANS_TABLES,
        "TFDC_TRANSFORM_IDENTITY": fmt.TRANSFORM_IDENTITY,
        "TFDC_TRANSFORM_ZIGZAG": fmt.TRANSFORM_ZIGZAG,
        "TFDC_TRANSFORM_ROTATE": fmt.TRANSFORM_ROTATE,
        "TFDC_VALUES_CODEBOOK": fmt.VALUES_CODEBOOK, "TFDC_VALUES_PLANES": fmt.VALUES_PLANES,
        "TFDC_POSITION_DENSE": fmt.POSITION_DENSE, "TFDC_POSITION_SPARSE": fmt.POSITION_SPARSE,
        "TFDC_EXPAND_NONE": fmt.EXPAND_NONE, "TFDC_EXPAND_FP16": fmt.EXPAND_FP16,
        "TFDC_FP16_KEY_BITS": fmt.FP16_KEY_BITS, "TFDC_MAX_CODEBOOK": fmt.MAX_CODEBOOK,
        "TFDC_MIN_GAP_ALPHABET": fmt.MIN_GAP_ALPHABET,
        "TFDC_MAX_GAP_ALPHABET": fmt.MAX_GAP_ALPHABET,
        "TFDC_OUTPUT_ALIGN_REQUIRED": fmt.OUTPUT_ALIGN_REQUIRED,
        "TFDC_MAX_PLANES": fmt.plane_count(max(fmt.ELEM_BITS)),
        "TFDC_FB_MODEL_BUFFERS": flatbuf._MODEL_BUFFERS,
        "TFDC_FB_MODEL_METADATA": flatbuf._MODEL_METADATA,
        "TFDC_FB_BUFFER_DATA": flatbuf._BUFFER_DATA,
        "TFDC_FB_BUFFER_OFFSET": flatbuf._BUFFER_OFFSET,
        "TFDC_FB_BUFFER_SIZE": flatbuf._BUFFER_SIZE,
        "TFDC_FB_METADATA_NAME": flatbuf._METADATA_NAME,
        "TFDC_FB_METADATA_BUFFER": flatbuf._METADATA_BUFFER,
        "TFDC_V1_HEADER_SIZE": fmt.V1_HEADER.size,
        "TFDC_V1_TABLE_HEADER_SIZE": fmt.V1_TABLE_HEADER.size,
        "TFDC_V1_TABLE_SYMBOL_SIZE": fmt.V1_TABLE_SYMBOL.size,
        "TFDC_V1_STREAM_HEADER_SIZE": fmt.V1_STREAM_HEADER.size,
        "TFDC_V1_RECORD_HEADER_SIZE": fmt.V1_RECORD_HEADER.size,
        "TFDC_V1_NO_TABLE": fmt.V1_NO_TABLE, "TFDC_V1_SECTION_ALIGN": fmt.V1_SECTION_ALIGN,
    }
    layouts = [
        ("TFDC_PREFIX_", fmt.PREFIX, ["MAGIC", "VERSION_MAJOR", "VERSION_MINOR"]),
        ("TFDC_V1_HEADER_", fmt.V1_HEADER,
         ["MAGIC", "VERSION_MAJOR", "VERSION_MINOR", "HEADER_SIZE", "FLAGS", "SECTION_SIZE",
          "DECODED_SIZE", "MODEL_CRC", "NUM_TABLES", "NUM_RECORDS", "RESERVED"]),
        ("TFDC_V1_TABLE_", fmt.V1_TABLE_HEADER, ["KIND", "MAX_LEN", "RESERVED", "N"]),
        ("TFDC_V1_STREAM_", fmt.V1_STREAM_HEADER, ["COUNT", "TABLE", "RESERVED", "BLOCK"]),
        ("TFDC_V1_RECORD_", fmt.V1_RECORD_HEADER,
         ["SIZE", "BUFFER_INDEX", "OUT_OFFSET", "OUT_SIZE", "ELEM_SIZE", "VALUE_MODE",
          "POSITION_MODE", "SCAN", "SCAN_ROWS", "NNZ", "CODEBOOK_SIZE", "CODEBOOK_ENCODING",
          "RESERVED", "GAP_ALPHABET"]),
    ]
    for prefix, st, names in layouts:
        for name, offset in _offsets(st, names).items():
            e[prefix + name] = offset
    assert e["TFDC_V1_HEADER_DECODED_SIZE"] == fmt.V1_HEADER_DECODED_SIZE_OFFSET
    return e


def test_every_c_constant_equals_its_python_definition():
    got = _defines(os.path.join(NATIVE, "tfdc_format.h"))
    expected = _expected()
    assert len(got) >= 80
    unchecked = sorted(set(got) - set(expected))
    assert not unchecked, f"tfdc_format.h constants with no Python counterpart: {unchecked}"
    missing = sorted(set(expected) - set(got))
    assert not missing, f"not in tfdc_format.h: {missing}"
    differ = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not differ, f"C vs Python: {differ}"


def test_the_c_dictionary_is_format_2s_dictionary():
    text = open(os.path.join(NATIVE, "tfdc_dictionary.h")).read()
    body = text[text.index("{") + 1:text.index("};")]
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == fmt.dictionary()
    assert _defines(os.path.join(NATIVE, "tfdc_dictionary.h"))["TFDC_DICTIONARY_SIZE"] == len(data)


def test_the_parser_sees_a_wrong_value():
    # The comparison can fail: a header with one value changed is caught.
    good = _defines(os.path.join(NATIVE, "tfdc_format.h"))
    assert good["TFDC_V1_RECORD_GAP_ALPHABET"] == 48
    assert _c_value("(1ull << 31) /* x */") == 1 << 31 and _c_value('"tfdc.v2"') == "tfdc.v2"
    with pytest.raises(AssertionError):
        _c_value("system('x')")


def test_the_extension_reports_the_header_version():
    try:
        from tfdc import _native
    except ImportError:
        pytest.skip("tfdc._native is not built")
    assert _native.FORMAT_MAJOR == fmt.VERSION_MAJOR
