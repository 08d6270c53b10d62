/*
 * libFuzzer target for the tfdc decoder (formats 2 and 1). Built with
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the decoder skip its
 * CRC comparisons so that mutated inputs reach every parser behind them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfdc_decode.h"

/* Cap on the decoded size and the inflated meta stream: keeps every
 * execution fast and its memory small. */
#define MAX_OUTPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t n = 0, peek = 0;
  uint8_t *out;
  int rc, rc_peek;
  (void)tfdc_is_packed(data, size);
  rc_peek = tfdc_peek_decoded_size(data, size, &peek);
  rc = tfdc_decoded_size_limit(data, size, MAX_OUTPUT, &n);
  if (rc == TFDC_OK && (rc_peek != TFDC_OK || peek != n)) abort(); /* sizing paths agree */
  if (rc != TFDC_OK) return 0;
  out = (uint8_t *)malloc(n ? (size_t)n : 1);
  if (!out) return 0;
  rc = tfdc_decode_limit(data, size, out, (size_t)n, MAX_OUTPUT);
  if (rc > 0 || strlen(tfdc_strerror(rc)) == 0) abort(); /* statuses are <= 0 */
  /* A buffer one byte short is refused, never overrun. */
  if (rc == TFDC_OK && n > 0 && tfdc_decode_limit(data, size, out, (size_t)n - 1, MAX_OUTPUT) == TFDC_OK)
    abort();
  free(out);
  return 0;
}
