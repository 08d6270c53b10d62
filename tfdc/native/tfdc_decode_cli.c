/*
 * tfdc-decode IN OUT - decode a tfdc-packed .tflite into a standard one.
 * Errors are one line on stderr with a non-zero exit; OUT is written to a
 * temporary file next to it and renamed into place, so a failure never
 * leaves a partial OUT behind. OUT may not be IN (that would replace the
 * packed file); a device or FIFO as OUT (/dev/stdout) is written through;
 * a symbolic link stays a link (the file it points to is replaced).
 */
#define _XOPEN_SOURCE 700 /* POSIX.1-2008 with realpath() */
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

/* Write `data` to `path` as a new file: a temporary file next to it,
 * then rename. `mode` is the new file's. Returns 0, or errno. */
static int replace_file(const char *path, const uint8_t *data, size_t n, mode_t mode) {
  char *tmp = (char *)malloc(strlen(path) + 16);
  FILE *f;
  int fd, e = 0;
  if (!tmp) return ENOMEM;
  sprintf(tmp, "%s.tmp.XXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    e = errno;
    free(tmp);
    return e;
  }
  (void)fchmod(fd, mode); /* mkstemp makes 0600 */
  f = fdopen(fd, "wb");
  if (!f) {
    e = errno;
    close(fd);
  } else if (fwrite(data, 1, n, f) != n || fflush(f) != 0 || fsync(fd) != 0) {
    e = errno ? errno : EIO;
    fclose(f);
  } else if (fclose(f) != 0 || rename(tmp, path) != 0) {
    e = errno;
  }
  if (e) unlink(tmp);
  free(tmp);
  return e;
}

int main(int argc, char **argv) {
  const char *in_path, *out_path;
  uint8_t *in, *out;
  size_t in_len = 0;
  uint64_t n;
  int rc, e, have_in, have_out;
  char *target = NULL;
  mode_t mode;
  FILE *f;
  struct stat in_st, out_st, link_st;
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("usage: tfdc-decode IN.tflite OUT.tflite\n\n"
           "Decode a tfdc-packed .tflite (IN) into a standard one (OUT), written\n"
           "atomically; OUT may not be IN, and a symbolic link OUT stays a link.\n"
           "Exit status: 0 decoded, 1 an error (one line on stderr), 2 usage.\n");
    return 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: tfdc-decode IN.tflite OUT.tflite (--help: more)\n");
    return 2;
  }
  in_path = argv[1];
  out_path = argv[2];
  have_in = stat(in_path, &in_st) == 0;
  if (have_in && S_ISDIR(in_st.st_mode)) return fail("cannot read", in_path, strerror(EISDIR));
  have_out = stat(out_path, &out_st) == 0;
  if (!have_out && lstat(out_path, &link_st) == 0 && S_ISLNK(link_st.st_mode))
    return fail("cannot write", out_path,
                "a symbolic link to nothing (its target is missing, or the links form a loop)");
  if (have_out) {
    if (S_ISDIR(out_st.st_mode)) return fail("cannot write", out_path, strerror(EISDIR));
    if (have_in && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
      return fail("cannot write", out_path, "OUT is IN; write it to another path");
  }
  in = read_file(in_path, &in_len);
  if (!in) return fail("cannot read", in_path, strerror(errno));
  rc = tfdc_decoded_size(in, in_len, &n);
  if (rc == TFDC_OK && n > (uint64_t)SIZE_MAX) rc = TFDC_ERR_TOO_LARGE;
  out = rc == TFDC_OK ? (uint8_t *)malloc(n ? (size_t)n : 1) : NULL;
  if (rc == TFDC_OK && !out) rc = TFDC_ERR_NOMEM;
  if (rc == TFDC_OK) rc = tfdc_decode(in, in_len, out, (size_t)n);
  free(in);
  if (rc != TFDC_OK) {
    free(out);
    return fail("cannot decode", in_path, tfdc_strerror(rc));
  }

  if (have_out && !S_ISREG(out_st.st_mode)) {
    /* A device or FIFO (/dev/stdout on a terminal or a pipe): renaming over
     * it would replace it, so write through it. */
    f = fopen(out_path, "wb");
    e = 0;
    if (!f) {
      e = errno;
    } else {
      if (fwrite(out, 1, (size_t)n, f) != (size_t)n) e = errno ? errno : EIO;
      if (fclose(f) != 0 && !e) e = errno;
    }
    free(out);
    return e ? fail("cannot write", out_path, strerror(e)) : 0;
  }
  /* A symbolic link stays one: the file it points to is replaced (so is
   * /dev/stdout redirected to a file, a link to /proc/self/fd/1), keeping
   * that file's mode; a new file gets a plain open()'s. */
  if (have_out) {
    target = realpath(out_path, NULL);
    if (!target) {
      e = errno;
      free(out);
      return fail("cannot write", out_path, strerror(e));
    }
    mode = out_st.st_mode & 07777;
  } else {
    mode_t mask = umask(0);
    umask(mask);
    mode = 0666 & ~mask;
  }
  e = replace_file(target ? target : out_path, out, (size_t)n, mode);
  free(target);
  free(out);
  return e ? fail("cannot write", out_path, strerror(e)) : 0;
}
