/*
 * tfdc_format.h - the constants and field layouts of the tfdc packed format
 * (docs/FORMAT.md) that the C decoder uses, named once.
 *
 * Every value here mirrors tfdc/format.py (and the flatbuffer field ids of
 * tfdc/flatbuf.py); tests/test_native_format.py parses this file and
 * compares each #define with its Python definition, so the two decoders
 * cannot drift apart silently.
 */
#ifndef TFDC_FORMAT_H_
#define TFDC_FORMAT_H_

/* ---- container (FORMAT.md §3, §4) ---- */
#define TFDC_FORMAT_MAJOR 2              /* format.VERSION_MAJOR */
#define TFDC_FORMAT_MINOR 3              /* format.VERSION_MINOR */
#define TFDC_METADATA_NAME "tfdc.v2"     /* format.METADATA_NAME */
#define TFDC_METADATA_NAME_V1 "tfdc.v1"  /* format.METADATA_NAME_V1 */
#define TFDC_SECTION_KEY_LEN 7           /* both keys are 7 bytes */
#define TFDC_MAGIC "TFDC"                /* format.MAGIC */
#define TFDC_FLATBUFFER_ID "TFL3"        /* TFLite's file identifier, bytes 4..7 */
#define TFDC_MIN_SECTION_OFFSET 8        /* S >= 8: after the root offset and identifier */

/* Section prefix (format.PREFIX "<4sHH"): magic, version_major, version_minor. */
#define TFDC_PREFIX_MAGIC 0
#define TFDC_PREFIX_VERSION_MAJOR 4
#define TFDC_PREFIX_VERSION_MINOR 6
#define TFDC_PREFIX_SIZE 8               /* format.PREFIX.size; the varints follow */
#define TFDC_CRC_SIZE 4                  /* format.CRC.size: the file's last 4 bytes */
#define TFDC_MAX_VARINT_BYTES 10         /* format.MAX_VARINT_BYTES */
#define TFDC_DEFLATE_WBITS (-15)         /* format.DEFLATE_WBITS: raw DEFLATE */
#define TFDC_DEFLATE_MAX_RATIO 1032      /* format.DEFLATE_MAX_RATIO: M <= 1032 C */
#define TFDC_DEFAULT_LIMIT_FLOOR (1ull << 31) /* format.DEFAULT_LIMIT_FLOOR */
#define TFDC_DEFAULT_LIMIT_RATIO 1024    /* format.DEFAULT_LIMIT_RATIO */
#define TFDC_FLAG_RANS 1                 /* format.FLAG_RANS: kind 3 tables may appear (2.1) */
#define TFDC_FLAG_RANS_GROUPED 2         /* format.FLAG_RANS_GROUPED: kind 4 tables may appear (2.2) */
#define TFDC_FLAG_PATCHES 4              /* format.FLAG_PATCHES: the meta stream ends with patches (2.3) */
#define TFDC_KNOWN_FLAGS 7               /* format.KNOWN_FLAGS: every other bit MUST be 0 */

/* ---- code tables (§5.1) ---- */
#define TFDC_TABLE_HUFFMAN 0             /* format.TABLE_HUFFMAN */
#define TFDC_TABLE_SINGLE 1              /* format.TABLE_SINGLE */
#define TFDC_TABLE_FIXED 2               /* format.TABLE_FIXED */
#define TFDC_TABLE_RANS 3                /* format.TABLE_RANS (§5.3) */
#define TFDC_TABLE_RANS_GROUPED 4        /* format.TABLE_RANS_GROUPED (§5.4) */
#define TFDC_MAX_FIXED_WIDTH 15          /* format.MAX_FIXED_WIDTH */
#define TFDC_MAX_CODE_LEN 15             /* format.MAX_CODE_LEN */
#define TFDC_MAX_ALPHABET 32768          /* format.MAX_ALPHABET */
#define TFDC_MAX_BLOCK 0xFFFFFFFFull     /* a stream's block: 1 <= block <= 2^32 - 1 (§5.2) */

/* ---- kind 3: the context-modelled range code (§5.3) ---- */
#define TFDC_RANS_L (1u << 23)           /* format.RANS_L: the state stays in [L, 256 L) */
#define TFDC_RANS_STATE_BYTES 4          /* format.RANS_STATE_BYTES: a segment starts with it */
#define TFDC_MAX_RANS_PREC 15            /* format.MAX_RANS_PREC: 1 <= prec */
#define TFDC_MAX_RANS_WIDTH 15           /* format.MAX_RANS_WIDTH: 1 <= width */
#define TFDC_MAX_RANS_LAG 65535          /* format.MAX_RANS_LAG: 1 <= lag */
#define TFDC_MAX_RANS_SHIFT 16           /* format.MAX_RANS_SHIFT */
#define TFDC_MAX_RANS_CLASSES 32         /* format.MAX_RANS_CLASSES: 1 <= classes */

/* ---- kind 4: the grouped context range code (§5.4) ---- */
#define TFDC_MAX_RANS_ROW_LEN 65536      /* format.MAX_RANS_ROW_LEN: 1 <= W */
#define TFDC_MAX_RANS_ROW_PERIOD 65536   /* format.MAX_RANS_ROW_PERIOD: 1 <= V */
#define TFDC_MAX_RANS_TABLES 256         /* format.MAX_RANS_TABLES: T = Gr * Gc * nc */

/* ---- records (§6) ---- */
#define TFDC_TRANSFORM_IDENTITY 0        /* format.TRANSFORM_IDENTITY */
#define TFDC_TRANSFORM_ZIGZAG 1          /* format.TRANSFORM_ZIGZAG */
#define TFDC_TRANSFORM_ROTATE 2          /* format.TRANSFORM_ROTATE */
#define TFDC_VALUES_CODEBOOK 0           /* format.VALUES_CODEBOOK */
#define TFDC_VALUES_PLANES 1             /* format.VALUES_PLANES */
#define TFDC_POSITION_DENSE 0            /* format.POSITION_DENSE */
#define TFDC_POSITION_SPARSE 1           /* format.POSITION_SPARSE */
#define TFDC_EXPAND_NONE 0               /* format.EXPAND_NONE */
#define TFDC_EXPAND_FP16 1               /* format.EXPAND_FP16 */
#define TFDC_FP16_KEY_BITS 16            /* codebook key width with expand == 1 (§6.4) */
#define TFDC_MAX_CODEBOOK 32768          /* format.MAX_CODEBOOK */
#define TFDC_MIN_GAP_ALPHABET 2          /* format.MIN_GAP_ALPHABET */
#define TFDC_MAX_GAP_ALPHABET 32768      /* format.MAX_GAP_ALPHABET */
#define TFDC_OUTPUT_ALIGN_REQUIRED 16    /* format.OUTPUT_ALIGN_REQUIRED */
#define TFDC_MAX_PLANES 8                /* format.plane_count(64) */
#define TFDC_MIN_PATCH_DESCRIPTOR 7      /* format.MIN_PATCH_DESCRIPTOR: bytes of the shortest patch (§6.7) */

/* ---- the minimal flatbuffer reader (§3.1; tfdc/flatbuf.py) ---- */
#define TFDC_FB_MODEL_BUFFERS 4          /* flatbuf._MODEL_BUFFERS */
#define TFDC_FB_MODEL_METADATA 6         /* flatbuf._MODEL_METADATA */
#define TFDC_FB_BUFFER_DATA 0            /* flatbuf._BUFFER_DATA */
#define TFDC_FB_BUFFER_OFFSET 1          /* flatbuf._BUFFER_OFFSET */
#define TFDC_FB_BUFFER_SIZE 2            /* flatbuf._BUFFER_SIZE */
#define TFDC_FB_METADATA_NAME 0          /* flatbuf._METADATA_NAME */
#define TFDC_FB_METADATA_BUFFER 1        /* flatbuf._METADATA_BUFFER */

/* ---- format 1 (appendix A): fixed-width layouts ---- */
/* Header (format.V1_HEADER "<4sHHIIQQIIII"), byte offsets. */
#define TFDC_V1_HEADER_MAGIC 0
#define TFDC_V1_HEADER_VERSION_MAJOR 4
#define TFDC_V1_HEADER_VERSION_MINOR 6
#define TFDC_V1_HEADER_HEADER_SIZE 8
#define TFDC_V1_HEADER_FLAGS 12
#define TFDC_V1_HEADER_SECTION_SIZE 16
#define TFDC_V1_HEADER_DECODED_SIZE 24   /* format.V1_HEADER_DECODED_SIZE_OFFSET */
#define TFDC_V1_HEADER_MODEL_CRC 32
#define TFDC_V1_HEADER_NUM_TABLES 36
#define TFDC_V1_HEADER_NUM_RECORDS 40
#define TFDC_V1_HEADER_RESERVED 44
#define TFDC_V1_HEADER_SIZE 48           /* format.V1_HEADER.size */
/* Code table header (format.V1_TABLE_HEADER "<BBHI"). */
#define TFDC_V1_TABLE_KIND 0
#define TFDC_V1_TABLE_MAX_LEN 1
#define TFDC_V1_TABLE_RESERVED 2
#define TFDC_V1_TABLE_N 4
#define TFDC_V1_TABLE_HEADER_SIZE 8      /* format.V1_TABLE_HEADER.size */
#define TFDC_V1_TABLE_SYMBOL_SIZE 4      /* format.V1_TABLE_SYMBOL.size */
/* Stream header (format.V1_STREAM_HEADER "<QHHI"). */
#define TFDC_V1_STREAM_COUNT 0
#define TFDC_V1_STREAM_TABLE 8
#define TFDC_V1_STREAM_RESERVED 10
#define TFDC_V1_STREAM_BLOCK 12
#define TFDC_V1_STREAM_HEADER_SIZE 16    /* format.V1_STREAM_HEADER.size */
#define TFDC_V1_NO_TABLE 0xFFFF          /* format.V1_NO_TABLE */
/* Record header (format.V1_RECORD_HEADER "<IIQQBBBBIQIB3sI"). */
#define TFDC_V1_RECORD_SIZE 0
#define TFDC_V1_RECORD_BUFFER_INDEX 4
#define TFDC_V1_RECORD_OUT_OFFSET 8
#define TFDC_V1_RECORD_OUT_SIZE 16
#define TFDC_V1_RECORD_ELEM_SIZE 24
#define TFDC_V1_RECORD_VALUE_MODE 25
#define TFDC_V1_RECORD_POSITION_MODE 26
#define TFDC_V1_RECORD_SCAN 27
#define TFDC_V1_RECORD_SCAN_ROWS 28
#define TFDC_V1_RECORD_NNZ 32
#define TFDC_V1_RECORD_CODEBOOK_SIZE 40
#define TFDC_V1_RECORD_CODEBOOK_ENCODING 44
#define TFDC_V1_RECORD_RESERVED 45
#define TFDC_V1_RECORD_GAP_ALPHABET 48
#define TFDC_V1_RECORD_HEADER_SIZE 52    /* format.V1_RECORD_HEADER.size */
#define TFDC_V1_SECTION_ALIGN 16         /* format.V1_SECTION_ALIGN */

#endif /* TFDC_FORMAT_H_ */
