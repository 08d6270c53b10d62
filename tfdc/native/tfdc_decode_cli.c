/*
 * tfdc-decode IN OUT - decode a tfdc-packed .tflite into a standard one.
 * Errors are one line on stderr with a non-zero exit; OUT is written to a
 * temporary file next to it and renamed into place, so a failure never
 * leaves a partial OUT behind. OUT may not be IN (that would replace the
 * packed file); a device or FIFO as OUT (/dev/stdout) is written through.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfdc_decode.h"

static int fail(const char *what, const char *path, const char *why) {
  fprintf(stderr, "tfdc-decode: %s %s: %s\n", what, path, why);
  return 1;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;
  if (!f) return NULL;
  for (;;) {
    size_t got;
    if (n == cap) {
      uint8_t *nb;
      cap = cap ? cap * 2 : (1u << 20);
      nb = (uint8_t *)realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        errno = ENOMEM;
        return NULL;
      }
      buf = nb;
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    free(buf);
    fclose(f);
    errno = EIO;
    return NULL;
  }
  fclose(f);
  *len = n;
  return buf ? buf : (uint8_t *)malloc(1);
}

int main(int argc, char **argv) {
  const char *in_path, *out_path;
  uint8_t *in, *out;
  size_t in_len = 0;
  uint64_t n;
  int rc, fd, special = 0, have_in;
  char *tmp;
  FILE *f;
  struct stat in_st, out_st;
  if (argc != 3) {
    fprintf(stderr, "usage: tfdc-decode IN.tflite OUT.tflite\n");
    return 2;
  }
  in_path = argv[1];
  out_path = argv[2];
  have_in = stat(in_path, &in_st) == 0;
  if (have_in && S_ISDIR(in_st.st_mode)) return fail("cannot read", in_path, strerror(EISDIR));
  if (stat(out_path, &out_st) == 0) {
    if (S_ISDIR(out_st.st_mode)) return fail("cannot write", out_path, strerror(EISDIR));
    if (have_in && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
      return fail("cannot write", out_path, "OUT is IN; write it to another path");
    special = !S_ISREG(out_st.st_mode);
  }
  in = read_file(in_path, &in_len);
  if (!in) return fail("cannot read", in_path, strerror(errno));
  rc = tfdc_decoded_size(in, in_len, &n);
  if (rc != TFDC_OK) return fail("cannot decode", in_path, tfdc_strerror(rc));
  if (n > (uint64_t)SIZE_MAX) return fail("cannot decode", in_path, tfdc_strerror(TFDC_ERR_TOO_LARGE));
  out = (uint8_t *)malloc(n ? (size_t)n : 1);
  if (!out) return fail("cannot decode", in_path, tfdc_strerror(TFDC_ERR_NOMEM));
  rc = tfdc_decode(in, in_len, out, (size_t)n);
  free(in);
  if (rc != TFDC_OK) return fail("cannot decode", in_path, tfdc_strerror(rc));

  if (special) { /* a device or FIFO: renaming over it would replace it */
    f = fopen(out_path, "wb");
    if (!f || fwrite(out, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0)
      return fail("cannot write", out_path, strerror(errno));
    free(out);
    return 0;
  }
  tmp = (char *)malloc(strlen(out_path) + 16);
  if (!tmp) return fail("cannot write", out_path, strerror(ENOMEM));
  sprintf(tmp, "%s.tmp.XXXXXX", out_path);
  fd = mkstemp(tmp);
  if (fd < 0) return fail("cannot write", out_path, strerror(errno));
  {
    mode_t mask = umask(0); /* mkstemp makes 0600: give OUT a plain open()'s mode */
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
  }
  f = fdopen(fd, "wb");
  if (!f || fwrite(out, 1, (size_t)n, f) != (size_t)n || fflush(f) != 0 || fsync(fd) != 0) {
    int e = errno;
    if (f) fclose(f); else close(fd);
    unlink(tmp);
    return fail("cannot write", out_path, strerror(e));
  }
  if (fclose(f) != 0 || rename(tmp, out_path) != 0) {
    int e = errno;
    unlink(tmp);
    return fail("cannot write", out_path, strerror(e));
  }
  free(out);
  free(tmp);
  return 0;
}
