"""tfdc.format: the one definition of the packed format's constants and
layouts agrees with docs/FORMAT.md and with the binary16 rule."""

import os
import re

import numpy as np

from tfdc import format as fmt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_struct_sizes_match_the_spec():
    spec = open(os.path.join(ROOT, "docs", "FORMAT.md"), encoding="utf-8").read()
    assert f"### 3.1 Header ({fmt.HEADER.size} bytes)" in spec
    assert fmt.RECORD_HEADER.size == 52 and fmt.STREAM_HEADER.size == 16
    assert fmt.TABLE_HEADER.size == 8
    assert re.search(rf"exactly the 7 bytes `{re.escape(fmt.METADATA_NAME)}`", spec)
    assert f"MUST be {fmt.VERSION_MAJOR} (else `TFDC_ERR_VERSION`)" in spec


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
