"""tfdc.format: the one definition of the packed format's constants,
layouts and primitives agrees with docs/FORMAT.md — varints, bit packing,
transforms, element splitting, the binary16 rule, the stub and the DEFLATE
dictionary (appendix B)."""

import base64
import hashlib
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdc import format as fmt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = open(os.path.join(ROOT, "docs", "FORMAT.md"), encoding="utf-8").read()


def test_names_and_enums_match_the_spec():
    assert f"`{fmt.METADATA_NAME}`" in SPEC and fmt.METADATA_NAME == "tfdc.v2"
    assert "| `S + 4` | u16 | `version_major` | MUST be 2 (else `VERSION`) |" in SPEC
    assert fmt.VERSION_MAJOR == 2 and fmt.MAGIC == b"TFDC" and fmt.PREFIX.size == 8
    assert "0 = identity, 1 = zigzag, 2 = rotate" in SPEC
    assert (fmt.TRANSFORM_IDENTITY, fmt.TRANSFORM_ZIGZAG, fmt.TRANSFORM_ROTATE) == (0, 1, 2)
    assert "0 = codebook (§6.4), 1 = planes (§6.5)" in SPEC
    assert (fmt.VALUES_CODEBOOK, fmt.VALUES_PLANES) == (0, 1)
    assert "0 = dense, 1 = sparse (§6.6)" in SPEC
    assert "0 = canonical Huffman code, 1 = single symbol" in SPEC
    assert "2, 4, 8, 16, 32 or 64" in SPEC and fmt.ELEM_BITS == (2, 4, 8, 16, 32, 64)
    assert "`max(2^31, 1024 × file_length)`" in SPEC
    assert fmt.default_limit(1) == 2 ** 31
    # format 1 (appendix A)
    assert f"#### A.3.1 Header ({fmt.V1_HEADER.size} bytes)" in SPEC
    assert fmt.V1_RECORD_HEADER.size == 52 and fmt.V1_STREAM_HEADER.size == 16
    assert fmt.V1_TABLE_HEADER.size == 8
    assert re.search(r"exactly the 7 bytes `tfdc.v1`", SPEC)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 ** 64 - 1))
def test_varints_round_trip_and_are_minimal(value):
    b = fmt.varint_bytes(value)
    assert fmt.read_varint(b, 0, len(b)) == (value, len(b))
    assert len(b) == max(1, (value.bit_length() + 6) // 7)


def test_invalid_varints():
    assert fmt.varint_bytes(300) == bytes.fromhex("ac02")
    for bad in (b"", b"\x80", b"\x80\x00", b"\xff\x00", b"\xff" * 9 + b"\x02",
                b"\x80" * 10 + b"\x01"):
        assert fmt.read_varint(bad, 0, len(bad)) is None, bad
    with pytest.raises(ValueError):
        fmt.varint_bytes(-1)
    with pytest.raises(ValueError):
        fmt.varint_bytes(2 ** 64)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 64), st.lists(st.integers(0, 2 ** 64 - 1), max_size=40))
def test_bit_packing_round_trips(width, values):
    values = [v & ((1 << width) - 1) for v in values]
    data = fmt.pack_bits(values, width)
    assert len(data) == -(-len(values) * width // 8)
    fields, pad_ok = fmt.unpack_bits(data, len(values), width)
    assert pad_ok and [int(f) for f in fields] == values


def test_bit_packing_is_msb_first_with_zero_padding():
    assert fmt.pack_bits([1, 0, 3], 2) == bytes([0b01001100])
    assert fmt.unpack_bits(bytes([0b01001101]), 3, 2)[1] is False


@pytest.mark.parametrize("width", fmt.ELEM_BITS)
@pytest.mark.parametrize("kind", fmt.TRANSFORMS)
def test_transforms_are_bijections_with_the_spec_formulas(kind, width):
    rng = np.random.default_rng(width)
    if width <= 16:
        x = np.arange(1 << width, dtype=np.uint64)
    else:
        x = rng.integers(0, 2 ** 63, 5000, dtype=np.uint64) * 2 + rng.integers(0, 2, 5000).astype(
            np.uint64)
        x = np.unique(x & np.uint64((1 << width) - 1))
    t = fmt.transform(x, kind, width)
    assert len(np.unique(t)) == len(x)
    assert (fmt.inverse_transform(t, kind, width).astype(np.uint64) == x).all()
    mask = (1 << width) - 1
    for value, got in zip(x[:64].tolist(), t[:64].tolist()):
        sign = value >> (width - 1)
        expected = {0: value, 1: ((value << 1) ^ (mask if sign else 0)) & mask,
                    2: ((value << 1) | sign) & mask}[kind]
        assert got == expected


def test_zigzag_and_rotate_examples():
    assert list(fmt.transform(np.array([0, 255, 1, 254], np.uint8), 1, 8)) == [0, 1, 2, 3]
    # rotate: a float32's exponent becomes its top byte, the sign its lowest bit
    one = np.array([0xBF800000], np.uint32)  # -1.0
    assert fmt.transform(one, 2, 32)[0] == 0x7F000001


@pytest.mark.parametrize("bits", fmt.ELEM_BITS)
def test_split_and_join_elements(bits):
    raw = np.random.default_rng(bits).integers(0, 256, 64).astype(np.uint8)
    elems = fmt.split_elements(raw, bits)
    assert len(elems) == 64 * 8 // bits
    assert (fmt.join_elements(elems, bits) == raw).all()
    if bits == 4:  # the first element is the low nibble, as TFLite's INT4
        assert elems[0] == raw[0] & 15 and elems[1] == raw[0] >> 4
    if bits == 16:
        assert int(elems[0]) == int(raw[0]) | (int(raw[1]) << 8)


def test_fp16_expansion_matches_ieee():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = fmt.fp16_to_fp32_bits(h)
    finite = (h & 0x7C00) != 0x7C00
    expected = h.view(np.float16).astype(np.float32).view(np.uint32)
    assert (got[finite] == expected[finite]).all()
    # Inf and NaN: the mantissa shifted by 13, payload and sign kept.
    special = h[~finite].astype(np.uint32)
    assert (got[~finite] == (((special & 0x8000) << 16) | 0x7F800000 |
                             ((special & 0x3FF) << 13))).all()


def test_fp16_round_trip_is_exact_on_every_binary16_pattern():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    assert (fmt.fp32_to_fp16_bits(fmt.fp16_to_fp32_bits(h)) == h).all()


def test_stub_is_a_valid_flatbuffer_that_runtimes_refuse():
    from tfdc import tflite_schema
    from tfdc.flatbuf import read_model
    stub = fmt.stub(120, 1000)
    assert len(stub) == fmt.STUB_SIZE == 120
    model = tflite_schema.read(stub)
    assert model.version == 0 and not model.subgraphs
    assert [(m.name, m.buffer) for m in model.metadata] == [(b"tfdc.v2", 0)]
    assert (model.buffers[0].offset, model.buffers[0].size) == (120, 1000)
    ref = read_model(stub + bytes(1000))
    assert ref.metadata == [(b"tfdc.v2", 0)] and ref.buffers[0].offset == 120
    from ai_edge_litert.interpreter import Interpreter
    with pytest.raises(ValueError, match="schema version 0"):
        Interpreter(model_content=stub + b"TFDC" + bytes(996))


def test_dictionary_is_appendix_b():
    data = fmt.dictionary()
    assert hashlib.sha256(data).hexdigest() == fmt.DICTIONARY_SHA256
    assert len(data) <= 32768  # within DEFLATE's window
    block = SPEC.split("## Appendix B")[1].split("```")[1]
    assert base64.b64decode("".join(block.split())) == data
    assert fmt.DICTIONARY_SHA256 in SPEC and f"{len(data):,} bytes" in SPEC


def test_deflate_uses_the_dictionary():
    data = fmt.dictionary()[-3000:]
    packed = fmt.deflate(data)
    assert len(packed) < 100  # one long match into the dictionary
    d = fmt.inflater()
    assert d.decompress(packed) == data and d.eof


def test_v1_appendix_example_is_the_corpus_file():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "format_example", os.path.join(ROOT, "tools", "format_example.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "```\n" + module.appendix_a7_dump() + "\n```" in SPEC
    # After the dump, the file and its decoded bytes as test vectors; both
    # decoders give those bytes.
    vectors = module.appendix_a7_vectors()
    assert "```\n" + module.appendix_a7_dump() + "\n```\n\n" + vectors in SPEC
    import re
    from tfdc import unpack
    packed, decoded = [base64.b64decode("".join(block.split()))
                       for block in re.findall(r"```\n([A-Za-z0-9+/=\n]+)\n```", vectors)]
    assert packed == module.appendix_a7_file() and packed[4:8] == b"TFL3"
    digest = re.search(r"SHA-256 `([0-9a-f]{64})`", vectors).group(1)
    assert hashlib.sha256(decoded).hexdigest() == digest
    for backend in ("python", "native"):
        assert unpack.decode(packed, backend=backend) == decoded
