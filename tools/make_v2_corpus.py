"""Write the format 2 seed files of the fuzz corpus (tfdc/native/fuzz/corpus/v2_*).

Small packed files (each under the fuzzer's 8,192-byte `-max_len`) that
together use every record kind — codebook and planes, dense and sparse,
row- and column-major, 2- to 64-bit elements, every transform, binary16
codebooks, all five table kinds (kind 3, the context-modelled range code of
version 2.1, and kind 4, its grouped form of version 2.2, on value, plane,
codebook-index and gap streams, one and many segments), fillers, empty and
all-zero buffers, patches of the flatbuffer's quantization vectors (version
2.3) — plus
the FORMAT.md examples (§8, §9) and two small Keras models; and each of
them again with its meta stream in stored (uncompressed) DEFLATE blocks
(`v2_stored_*`: valid files, §4 allows any DEFLATE stream), so that the
fuzzer's byte mutations reach the tables and records directly instead of
mostly breaking the compressed stream. The format 1
seeds next to them are kept as they are. The C decoder's tests and fuzz
target use them; `tests/test_native.py` compares its output with the NumPy
decoder's on every one.

    python tools/make_v2_corpus.py [--out DIR]
"""

import argparse
import glob
import os
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfdc import format as fmt  # noqa: E402
from tfdc import unpack  # noqa: E402
from tfdc.pack import pack_tflite  # noqa: E402
from tfdc.tflite_schema import constant_model, with_quantization  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))
from smooth_weights import grouped_kernel, smooth_kernel  # noqa: E402
from tool_args import description, run  # noqa: E402

CORPUS = os.path.join(ROOT, "tfdc", "native", "fuzz", "corpus")
MAX_LEN = 8192


def _int_bits(values, bits):
    per = 8 // bits
    v = (np.asarray(values, np.int64) & ((1 << bits) - 1)).reshape(-1, per)
    return sum(v[:, k] << (bits * k) for k in range(per)).astype(np.uint8)


def seeds():
    """{name: packed bytes}."""
    rng = np.random.default_rng(2024)
    out = {}

    def pack(name, arrays, **kw):
        kw.setdefault("min_bytes", 0)
        out[name] = pack_tflite(constant_model(arrays), **kw)[0]

    clustered = rng.normal(size=16).astype(np.float32)
    kernel = np.where(rng.random((24, 20)) < 0.25, clustered[rng.integers(0, 16, (24, 20))], 0)
    kernel = kernel.astype(np.float32)
    for value_mode in ("codebook", "planes"):
        for position in ("dense", "sparse"):
            for scan in ("row", "column"):
                pack(f"v2_{value_mode}_{position}_{scan}_f32", [kernel], _force={
                    "value_mode": value_mode, "position_mode": position, "scan": scan})
    ints = rng.integers(-3, 4, 300).astype(np.int8)
    ints[rng.random(300) < 0.5] = 0
    for bits, ttype in ((2, 19), (4, 17)):
        vals = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), 256)
        vals[rng.random(256) < 0.6] = 0
        data = (_int_bits(vals, bits), ttype, (16, 256 // 16))
        for value_mode in ("codebook", "planes"):
            pack(f"v2_int{bits}_{value_mode}_sparse", [data], _force={
                "elem_bits": bits, "value_mode": value_mode, "position_mode": "sparse"})
        pack(f"v2_int{bits}_as_bytes", [data], _force={"elem_bits": 8})
    pack("v2_int8_zigzag_codebook", [ints], _force={"value_mode": "codebook"})
    pack("v2_int16_planes", [rng.integers(-300, 300, 200).astype(np.int16)],
         _force={"value_mode": "planes"})
    pack("v2_int32_bias_zigzag_planes", [rng.integers(-5000, 5000, 150).astype(np.int32)],
         _force={"value_mode": "planes"})
    pack("v2_f64_i64", [rng.normal(size=40), rng.integers(-9, 9, 40).astype(np.int64)],
         _force={"value_mode": "planes"})
    pack("v2_f16_codebook", [clustered.astype(np.float16)[rng.integers(0, 16, 200)]],
         _force={"value_mode": "codebook"})
    pack("v2_fp16_expand", [kernel * np.float32(3.3)], codebook_fp16=True,
         _force={"value_mode": "codebook"})
    pack("v2_bias_planes_f32", [rng.normal(0.02, 0.05, 300).astype(np.float32)])
    pack("v2_fillers_G2", [np.where(rng.random(600) < 0.02, 1.5, 0).astype(np.float32)],
         gap_alphabet=2, _force={"position_mode": "sparse"})
    pack("v2_fillers_G32768", [np.where(rng.random(900) < 0.01, -2.0, 0).astype(np.float32)],
         gap_alphabet=32768, _force={"position_mode": "sparse"})
    pack("v2_all_zero_sparse", [np.zeros(64, np.float32)], _force={"position_mode": "sparse"})
    pack("v2_single_value_dense", [np.full(100, 7, np.int8)], _force={"position_mode": "dense"})
    pack("v2_block_3", [kernel], block=3, _force={"value_mode": "codebook"})
    pack("v2_huffman_only", [kernel, ints], _force={"codes": "huffman"})
    pack("v2_many_records", [kernel, ints, kernel[:5], rng.normal(size=50).astype(np.float32),
                             np.arange(64, dtype=np.int16)])
    out["v2_no_records"] = pack_tflite(constant_model([np.arange(4, dtype=np.int8)]))[0]
    # Kind 3 tables (§5.3): chosen by the packer for a smooth int8 kernel,
    # and forced on int4 planes, codebook indices, gaps and float planes.
    smooth = smooth_kernel(rows=5, bits=8, seed=1).astype(np.int8)
    pack("v2_rans_int8_smooth", [smooth])
    pack("v2_rans_int8_smooth_block_50", [smooth], block=50, _force={"codes": "rans"})
    smooth4 = smooth_kernel(rows=4, bits=4, seed=2).reshape(-1)
    pack("v2_rans_int4_planes", [(_int_bits(smooth4, 4), 17, (4, 784))],
         _force={"codes": "rans", "elem_bits": 4, "value_mode": "planes"})
    pack("v2_rans_codebook_sparse", [kernel], _force={
        "codes": "rans", "value_mode": "codebook", "position_mode": "sparse"})
    pack("v2_rans_planes_f32", [rng.normal(0.02, 0.05, 200).astype(np.float32)],
         _force={"codes": "rans", "value_mode": "planes"})
    # Kind 4 tables (§5.4): chosen for an int4 kernel with row and column
    # groups, and forced on int8 values (segments that start mid-row),
    # codebook indices and gaps, and float planes; one file with both kinds.
    grouped = grouped_kernel(rows=16, row_len=128, bits=4, seed=3)
    pack("v2_rans4_int4_grouped", [(_int_bits(grouped.reshape(-1), 4), 17, grouped.shape)])
    pack("v2_rans4_int8_block_45", [smooth[:3]], block=45, _force={"codes": "rans-grouped"})
    pack("v2_rans4_codebook_sparse", [kernel], _force={
        "codes": "rans-grouped", "value_mode": "codebook", "position_mode": "sparse"})
    pack("v2_rans4_planes_f32", [rng.normal(0.02, 0.05, (4, 12)).astype(np.float32)],
         _force={"codes": "rans-grouped", "value_mode": "planes"})
    pack("v2_rans3_and_4", [smooth[:3], (_int_bits(grouped.reshape(-1), 4), 17, grouped.shape)])
    # Patches (§6.7, version 2.3): per-channel scales and zero points of the
    # flatbuffer coded as records — planes, a sparse codebook, and beside a
    # kind 3 kernel.
    scales = rng.uniform(0.01, 0.02, 12).astype(np.float32)
    zero_points = np.where(rng.random(12) < 0.5, 0, rng.integers(-3, 3, 12))
    quantized = with_quantization(constant_model([smooth[:3].T[:12]]), scales, zero_points)
    out["v2_patch_planes"] = pack_tflite(quantized, min_bytes=0,
                                         _patches={"value_mode": "planes"})[0]
    out["v2_patch_codebook_sparse"] = pack_tflite(quantized, min_bytes=0, _patches={
        "value_mode": "codebook", "position_mode": "sparse"})[0]
    out["v2_patch_and_rans"] = pack_tflite(
        with_quantization(constant_model([smooth[:3]]), scales[:3], np.zeros(3)),
        min_bytes=0, _patches=True)[0]
    x = np.array([0, 0.5, 0, 0, -1, 0.5, 0, 0], np.float32)
    pack("v2_worked_example", [x], gap_alphabet=4, _force={
        "position_mode": "sparse", "value_mode": "codebook", "codes": "huffman"})
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from format_example import pack_example
    out["v2_format_md_example"] = pack_example()[0]
    # Two small Keras models (format 1 seeds decoded and packed again).
    for name in ("keras_mlp_packed", "keras_conv_packed"):
        v1 = open(os.path.join(CORPUS, f"{name}.tflite"), "rb").read()
        out[f"v2_{name}"] = pack_tflite(unpack.decode(v1), strip_debug=True)[0]
    return out


def stored(packed):
    """`packed` with its meta stream re-deflated at level 0 (stored blocks)."""
    p = unpack.parse(packed)
    c = zlib.compressobj(0, zlib.DEFLATED, fmt.DEFLATE_WBITS, 9, zlib.Z_DEFAULT_STRATEGY,
                         zdict=fmt.dictionary())
    deflated = c.compress(bytes(p.meta)) + c.flush()
    v = fmt.varint_bytes
    _, _, minor = fmt.PREFIX.unpack_from(packed, p.S)
    flags, _ = fmt.read_varint(packed, p.S + fmt.PREFIX.size, len(packed))
    header = (fmt.PREFIX.pack(fmt.MAGIC, fmt.VERSION_MAJOR, minor) + v(flags)
              + v(len(deflated)) + v(len(p.meta)) + v(p.F) + v(p.D))
    payload = packed[p.payload_start:-fmt.CRC.size]
    size = len(header) + len(deflated) + len(payload) + fmt.CRC.size
    body = fmt.stub(fmt.STUB_SIZE, size) + header + deflated + payload
    return body + fmt.CRC.pack(zlib.crc32(body))


def main():
    ap = argparse.ArgumentParser(description=description(__doc__))
    ap.add_argument("--out", default=CORPUS, help="the corpus folder (default: %(default)s)")
    args = ap.parse_args()
    if not os.path.isdir(args.out):  # found only when the first seed was written
        ap.error(f"--out {args.out} is not an existing folder")
    for old in glob.glob(os.path.join(args.out, "v2_*.tflite")):
        os.remove(old)
    files = seeds()
    files.update({"v2_stored_" + name[3:]: stored(data) for name, data in files.items()})
    for name, data in sorted(files.items()):
        assert len(data) <= MAX_LEN, (name, len(data))
        unpack.decode(data, backend="python")  # every seed is valid
        with open(os.path.join(args.out, name + ".tflite"), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    run(main)
