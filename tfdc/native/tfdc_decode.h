/*
 * tfdc_decode.h - decoder for tfdc-packed .tflite files (docs/FORMAT.md, v1).
 *
 * Dependency-free C99. Every read of the input is bounds-checked; a malformed
 * file yields a negative status, never a crash or an out-of-bounds access.
 * The decoder is stateless and thread-safe (it allocates its scratch with
 * malloc and frees it before returning).
 *
 * Typical use:
 *
 *     uint64_t n;
 *     int rc = tfdc_decoded_size(in, in_len, &n);
 *     if (rc != TFDC_OK) fail(tfdc_strerror(rc));
 *     uint8_t *out = malloc(n);
 *     rc = tfdc_decode(in, in_len, out, n);
 */
#ifndef TFDC_DECODE_H_
#define TFDC_DECODE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFDC_FORMAT_MAJOR 1
#define TFDC_METADATA_NAME "tfdc.v1"

typedef enum {
  TFDC_OK = 0,
  TFDC_ERR_ARGUMENT = -1,    /* NULL pointer or other invalid argument */
  TFDC_ERR_NOT_PACKED = -2,  /* valid flatbuffer, but no tfdc.v1 metadata */
  TFDC_ERR_FLATBUFFER = -3,  /* malformed or truncated flatbuffer */
  TFDC_ERR_TRUNCATED = -4,   /* the section or a record ends early */
  TFDC_ERR_VERSION = -5,     /* unsupported format major version */
  TFDC_ERR_CHECKSUM = -6,    /* a CRC-32 does not match */
  TFDC_ERR_CORRUPT = -7,     /* a field breaks a rule of the format */
  TFDC_ERR_OUTPUT_SIZE = -8, /* the output buffer is smaller than decoded size */
  TFDC_ERR_NOMEM = -9,       /* scratch allocation failed */
  TFDC_ERR_TOO_LARGE = -10   /* decoded size exceeds the caller's limit / size_t */
} tfdc_status;

/* 1 if `in` is a flatbuffer carrying a tfdc.v1 section, else 0. Cheap: does
 * not verify checksums. */
int tfdc_is_packed(const uint8_t *in, size_t in_len);

/* Validates the container (flatbuffer, header, both checksums) and stores the
 * decoded file length in *out_size. Returns TFDC_OK or a negative status. */
int tfdc_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size);

/* Like tfdc_decoded_size but without verifying the checksums: a cheap way
 * to size the output buffer before tfdc_decode (which verifies everything). */
int tfdc_peek_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size);

/* Decodes the whole file into `out` (capacity `out_cap` bytes, which must be
 * at least the decoded size). On success the first decoded-size bytes of
 * `out` are a standard .tflite model. On failure the contents of `out` are
 * unspecified and a negative status is returned. `in` and `out` must not
 * overlap. */
int tfdc_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap);

/* A static, human-readable message for a status code (never NULL). */
const char *tfdc_strerror(int status);

#ifdef __cplusplus
}
#endif

#endif /* TFDC_DECODE_H_ */
