/*
 * tfdc_decode_bench - time the C decoder on one packed file, on the host or
 * on an Android device (built with the NDK by tools/android_benchmark.py).
 *
 *   tfdc_decode_bench PACKED [REPEATS [DECODED_OUT]]
 *
 * Prints one JSON line: sizes and the median / min decode time in ms over
 * REPEATS runs (default 50; the file is read once, outside the timing).
 * Writes the decoded model to DECODED_OUT if given. Exit 1 on a bad file,
 * with tfdc_strerror's message on stderr.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tfdc_decode.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PACKED [REPEATS [DECODED_OUT]]\n", argv[0]);
    return 2;
  }
  int repeats = argc > 2 ? atoi(argv[2]) : 50;
  if (repeats < 1) repeats = 1;
  FILE *f = fopen(argv[1], "rb");
  if (!f) { perror(argv[1]); return 2; }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *in = malloc(len > 0 ? (size_t)len : 1);
  if (!in || fread(in, 1, (size_t)len, f) != (size_t)len) { fprintf(stderr, "read failed\n"); return 2; }
  fclose(f);

  uint64_t size = 0;
  int rc = tfdc_decoded_size(in, (size_t)len, &size);
  if (rc != TFDC_OK) { fprintf(stderr, "%s: %s\n", argv[1], tfdc_strerror(rc)); return 1; }
  double *ms = malloc(sizeof(double) * (size_t)repeats);
  uint8_t *out = NULL;
  for (int i = 0; i < repeats; i++) {
    /* malloc inside the timing: a loader allocates the model every time. */
    double t0 = now_ms();
    out = malloc((size_t)size);
    if (!out) { fprintf(stderr, "out of memory\n"); return 1; }
    rc = tfdc_decode(in, (size_t)len, out, (size_t)size);
    ms[i] = now_ms() - t0;
    if (rc != TFDC_OK) { fprintf(stderr, "%s: %s\n", argv[1], tfdc_strerror(rc)); return 1; }
    if (i + 1 < repeats) free(out);
  }
  if (argc > 3) {
    FILE *o = fopen(argv[3], "wb");
    if (!o || fwrite(out, 1, (size_t)size, o) != (size_t)size || fclose(o) != 0) { perror(argv[3]); return 2; }
  }
  qsort(ms, (size_t)repeats, sizeof(double), cmp_double);
  printf("{\"packed_bytes\": %ld, \"decoded_bytes\": %llu, \"repeats\": %d, "
         "\"median_ms\": %.4f, \"min_ms\": %.4f}\n",
         len, (unsigned long long)size, repeats, ms[repeats / 2], ms[0]);
  free(out);
  free(ms);
  free(in);
  return 0;
}
