/*
 * tfdc_decode.h - decoder for tfdc-packed .tflite files (docs/FORMAT.md):
 * format 2.0 to 2.3 (metadata key tfdc.v2) and format 1 (tfdc.v1,
 * appendix A).
 *
 * C99 with libc and zlib only. Every read of the input is bounds-checked; a
 * malformed file yields a negative status, never a crash or an
 * out-of-bounds access. The decoder is stateless and thread-safe (it
 * allocates its scratch with malloc and frees it before returning).
 *
 * Typical use, with the most memory the app gives a model (`limit`: a
 * budget, not the decoded size; the default lets a small hostile file claim
 * up to 2 GiB):
 *
 *     uint64_t n, limit = 256u << 20;
 *     int rc = tfdc_decoded_size_limit(in, in_len, limit, &n);  // checks the CRCs
 *     if (rc == TFDC_ERR_NOT_PACKED) use_plain(in, in_len);      // a plain .tflite
 *     else if (rc != TFDC_OK) fail(tfdc_strerror(rc));
 *     uint8_t *out = aligned_alloc(16, (size_t)(n + 15) / 16 * 16);  // C11; n <= limit
 *     rc = tfdc_decode_limit(in, in_len, out, (size_t)n, limit);
 *
 * Alignment: the decoded file places every packed buffer at a multiple of
 * TFDC_OUTPUT_ALIGN_REQUIRED (16) bytes from its start, so the weights are
 * 16-byte aligned in memory where `out` is (malloc promises only 8 on 32-bit
 * ARM). Decoding itself works at any alignment of `in` and `out`.
 *
 * Statuses for empty input: (NULL, 0) is TFDC_ERR_ARGUMENT; a non-NULL
 * pointer with in_len 0 is TFDC_ERR_FLATBUFFER (no flatbuffer to read).
 */
#ifndef TFDC_DECODE_H_
#define TFDC_DECODE_H_

#include <stddef.h>
#include <stdint.h>

#include "tfdc_format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version: tfdc's own (tfdc.__version__), which this header
 * belongs to. It decodes format 1 and formats 2.0 to
 * TFDC_FORMAT_MAJOR.TFDC_FORMAT_MINOR (tfdc_format.h). */
#define TFDC_VERSION "0.1.0"

/* TFDC_VERSION as compiled into the library: with a shared library, an app
 * can check that the one it loaded is the one its header came from. */
const char *tfdc_version(void);

/* The statuses of FORMAT.md §2 (TFDC_ERR_<STATUS>), plus the API's own. */
typedef enum {
  TFDC_OK = 0,
  TFDC_ERR_ARGUMENT = -1,    /* NULL pointer, overlapping buffers */
  TFDC_ERR_NOT_PACKED = -2,  /* valid flatbuffer, but no tfdc.v2 / tfdc.v1 metadata entry
                              * and no section without one (CORRUPT / VERSION: §3.2) */
  TFDC_ERR_FLATBUFFER = -3,  /* a flatbuffer read out of range */
  TFDC_ERR_TRUNCATED = -4,   /* a structure runs past the end of its container */
  TFDC_ERR_VERSION = -5,     /* unsupported format major version */
  TFDC_ERR_CHECKSUM = -6,    /* a CRC-32 does not match */
  TFDC_ERR_CORRUPT = -7,     /* a field breaks a rule of the format */
  TFDC_ERR_OUTPUT_SIZE = -8, /* the output buffer is smaller than the decoded size */
  TFDC_ERR_NOMEM = -9,       /* scratch allocation failed */
  TFDC_ERR_TOO_LARGE = -10   /* decoded (or meta stream) size above the limit / size_t */
} tfdc_status;

/* 1 if `in` is a flatbuffer with exactly one tfdc section key whose section
 * ends the file, else 0. Cheap: does not verify the checksum. It is 0 for a
 * packed file with bytes appended too, which tfdc_decoded_size calls
 * TFDC_ERR_CORRUPT: to tell a plain model (a decoded one included) from a
 * damaged packed one, dispatch on tfdc_decoded_size's TFDC_ERR_NOT_PACKED. */
int tfdc_is_packed(const uint8_t *in, size_t in_len);

/* The limit on the decoded size (and format 2's inflated meta stream) used
 * unless the caller sets one: max(2^31, 1024 * in_len) bytes (§4). */
uint64_t tfdc_default_limit(size_t in_len);

/* Validates the container (flatbuffer, header, checksums) and the size
 * limit, and stores the decoded file length in *out_size (always <= SIZE_MAX:
 * a larger one is TFDC_ERR_TOO_LARGE, so the size can be passed to malloc). Returns TFDC_OK or
 * a negative status. The length is at most the limit, nothing tighter: a
 * file whose checksums hold may still claim up to tfdc_default_limit bytes
 * and be found corrupt only while decoding, so a caller short of memory
 * passes its own limit (tfdc_decoded_size_limit, tfdc_decode_limit). */
int tfdc_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size);

/* tfdc_decoded_size with the caller's limit (TFDC_ERR_TOO_LARGE above it).
 * The limit is a memory budget, not a size to match: it caps the inflated
 * meta stream (decoding's scratch) too, which can be longer than the
 * decoded file (a model whose weights all stay in its graph, ~1 in 6 small
 * files), so a limit of exactly the decoded size can fail. Decoding's
 * scratch, which *out_size does not count, is mostly that meta stream (at
 * most 1032 x in_len: no more than DEFLATE gives) and the code tables read
 * from it. */
int tfdc_decoded_size_limit(const uint8_t *in, size_t in_len, uint64_t limit, uint64_t *out_size);

/* Like tfdc_decoded_size but without verifying the checksums (the size limit
 * still applies). */
int tfdc_peek_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size);

/* Decodes the whole file into `out` (capacity `out_cap` bytes, at least the
 * decoded size). On success the first decoded-size bytes of `out` are a
 * standard .tflite model. On failure the contents of `out` are unspecified
 * and a negative status is returned. `in` must not overlap the first
 * decoded-size bytes of `out` (TFDC_ERR_ARGUMENT; bytes past them are never
 * written). The size limit is the larger of tfdc_default_limit(in_len) and
 * out_cap. */
int tfdc_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap);

/* tfdc_decode with the caller's size limit. */
int tfdc_decode_limit(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, uint64_t limit);

/* A static, human-readable message for a status code (never NULL). */
const char *tfdc_strerror(int status);

#ifdef __cplusplus
}
#endif

#endif /* TFDC_DECODE_H_ */
