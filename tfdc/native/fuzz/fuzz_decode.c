/*
 * libFuzzer target for the tfdc decoder. Built with
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the decoder skip its
 * CRC comparisons so that mutated inputs reach every parser behind them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfdc_decode.h"

#define MAX_OUTPUT (1u << 20) /* cap: keeps every execution fast */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t n = 0;
  uint8_t *out;
  int rc;
  (void)tfdc_is_packed(data, size);
  rc = tfdc_decoded_size(data, size, &n);
  if (rc != TFDC_OK || n > MAX_OUTPUT) return 0;
  out = (uint8_t *)malloc(n ? (size_t)n : 1);
  if (!out) return 0;
  rc = tfdc_decode(data, size, out, (size_t)n);
  if (rc > 0 || strlen(tfdc_strerror(rc)) == 0) abort(); /* statuses are <= 0 */
  free(out);
  return 0;
}
