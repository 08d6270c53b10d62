/*
 * pymodule.c - the CPython extension `tfdc._native`, a thin wrapper over
 * tfdc_decode.h (formats 2 and 1). Decoding runs with the GIL released. Format errors raise
 * tfdc.errors.FormatError (imported at call time, so this module has no
 * import-order dependency on the Python package).
 *
 * It also holds the packer's one hot loop, the rANS encoder's renormalise
 * and push (`rans_encode`): in NumPy it is a Python loop over a segment's
 * symbols, 0.16-1 s per million symbols (more for longer segments); here
 * about 10 ms.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tfdc_decode.h"
#include "tfdc_format.h"

#include <stdint.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

/* A fresh output buffer of a large model is first touched by the decoder,
 * one 4 KiB page fault at a time (a third of the decode time of a 100 MB
 * model). On Linux, ask for transparent huge pages over the 2 MiB-aligned
 * interior of large buffers; a refusal only leaves the default. */
static void advise_huge_pages(void *buf, size_t len) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20;
  uintptr_t start = ((uintptr_t)buf + huge - 1) & ~(huge - 1);
  uintptr_t end = ((uintptr_t)buf + len) & ~(huge - 1);
  if (len >= 4 * huge && end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
  (void)buf;
  (void)len;
#endif
}

/* FormatError.status for a decoder status (FORMAT.md §2). */
static const char *status_name(int status) {
  switch (status) {
    case TFDC_ERR_NOT_PACKED: return "not_packed";
    case TFDC_ERR_FLATBUFFER: return "flatbuffer";
    case TFDC_ERR_TRUNCATED: return "truncated";
    case TFDC_ERR_VERSION: return "version";
    case TFDC_ERR_CHECKSUM: return "checksum";
    case TFDC_ERR_TOO_LARGE: return "too_large";
    default: return "corrupt";
  }
}

static PyObject *raise_status(int status) {
  PyObject *mod, *cls, *exc;
  if (status == TFDC_ERR_NOMEM) return PyErr_NoMemory();
  mod = PyImport_ImportModule("tfdc.errors");
  if (!mod) return NULL;
  cls = PyObject_GetAttrString(mod, "FormatError");
  Py_DECREF(mod);
  if (!cls) return NULL;
  exc = PyObject_CallFunction(cls, "ss", tfdc_strerror(status), status_name(status));
  Py_DECREF(cls);
  if (!exc) return NULL;
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
  return NULL;
}

/* The size limit: max_size if given (None: the format's default). */
static int get_limit(PyObject *max_size, size_t in_len, uint64_t *limit) {
  if (max_size == NULL || max_size == Py_None) {
    *limit = tfdc_default_limit(in_len);
    return 0;
  }
  if (PyFloat_Check(max_size) && Py_IS_INFINITY(PyFloat_AS_DOUBLE(max_size))) {
    *limit = UINT64_MAX;
    return 0;
  }
  *limit = PyLong_AsUnsignedLongLong(max_size);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    PyErr_SetString(PyExc_ValueError, "max_size must be a non-negative int, inf or None");
    return -1;
  }
  return 0;
}

static PyObject *py_decode(PyObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "max_size", NULL};
  PyObject *arg, *max_size = NULL, *out;
  Py_buffer view;
  uint64_t n = 0, limit;
  int rc;
  (void)self;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", kwlist, &arg, &max_size)) return NULL;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
  if (get_limit(max_size, (size_t)view.len, &limit) < 0) {
    PyBuffer_Release(&view);
    return NULL;
  }
  /* The output is allocated only for a decoded size that passed the CRC
   * (so the file, not a flipped bit, chose it) and the size limit. */
  Py_BEGIN_ALLOW_THREADS
  rc = tfdc_decoded_size_limit((const uint8_t *)view.buf, (size_t)view.len, limit, &n);
  Py_END_ALLOW_THREADS
  if (rc == TFDC_OK && n > (uint64_t)PY_SSIZE_T_MAX) rc = TFDC_ERR_TOO_LARGE;
  if (rc != TFDC_OK) {
    PyBuffer_Release(&view);
    return raise_status(rc);
  }
  out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
  if (!out) {
    PyBuffer_Release(&view);
    return NULL;
  }
  Py_BEGIN_ALLOW_THREADS
  advise_huge_pages(PyBytes_AS_STRING(out), (size_t)n);
  rc = tfdc_decode_limit((const uint8_t *)view.buf, (size_t)view.len,
                         (uint8_t *)PyBytes_AS_STRING(out), (size_t)n, limit);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  if (rc != TFDC_OK) {
    Py_DECREF(out);
    return raise_status(rc);
  }
  return out;
}

static PyObject *py_decoded_size(PyObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "max_size", NULL};
  PyObject *arg, *max_size = NULL;
  Py_buffer view;
  uint64_t n = 0, limit;
  int rc;
  (void)self;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", kwlist, &arg, &max_size)) return NULL;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
  if (get_limit(max_size, (size_t)view.len, &limit) < 0) {
    PyBuffer_Release(&view);
    return NULL;
  }
  Py_BEGIN_ALLOW_THREADS
  rc = tfdc_decoded_size_limit((const uint8_t *)view.buf, (size_t)view.len, limit, &n);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  if (rc != TFDC_OK) return raise_status(rc);
  return PyLong_FromUnsignedLongLong((unsigned long long)n);
}

static PyObject *py_is_packed(PyObject *self, PyObject *arg) {
  Py_buffer view;
  int r;
  (void)self;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
  r = tfdc_is_packed((const uint8_t *)view.buf, (size_t)view.len);
  PyBuffer_Release(&view);
  return PyBool_FromLong(r);
}

/* ------------------------------------------------------------------------
 * rANS encoder (FORMAT.md §5.3), for the packer: tfdc.rans.encode builds
 * each symbol's frequency and cumulative frequency in NumPy; this codes the
 * segments. Segment j holds symbols [j * block, min((j + 1) * block, count));
 * each is coded backwards from the state L, and written as its final state
 * (4 bytes, little-endian) followed by the bytes it pushed, last pushed
 * first, which is the order the decoder reads them in.
 */

/* Codes one segment's `len` symbols into `out` (room for 4 + 2 * len bytes:
 * a symbol pushes at most two); returns the bytes written, or 0 for a
 * frequency out of (0, 2^prec] or a cumulative frequency past 2^prec. */
static size_t rans_encode_segment(const int32_t *freq, const int32_t *cum, size_t len,
                                  unsigned prec, uint8_t *out) {
  uint8_t *pushed = out + TFDC_RANS_STATE_BYTES; /* forwards, reversed below */
  size_t n = 0, k, i;
  uint64_t x = TFDC_RANS_L;
  for (k = len; k-- > 0;) {
    const uint64_t f = (uint64_t)(uint32_t)freq[k], c = (uint64_t)(uint32_t)cum[k];
    const uint64_t x_max = f << (31 - prec);
    if (f == 0 || f > ((uint64_t)1 << prec) || c + f > ((uint64_t)1 << prec)) return 0;
    while (x >= x_max) {
      pushed[n++] = (uint8_t)(x & 255);
      x >>= 8;
    }
    x = ((x / f) << prec) + (x % f) + c;
  }
  for (i = 0; i < TFDC_RANS_STATE_BYTES; i++) out[i] = (uint8_t)(x >> (8 * i));
  for (i = 0; i < n / 2; i++) {
    uint8_t t = pushed[i];
    pushed[i] = pushed[n - 1 - i];
    pushed[n - 1 - i] = t;
  }
  return TFDC_RANS_STATE_BYTES + n;
}

static int int32_view(PyObject *arg, Py_buffer *view, const char *name) {
  if (PyObject_GetBuffer(arg, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
  /* NumPy's int32 is "i" (or "l" where long is 32-bit), native byte order. */
  const char *format = view->format ? view->format : "B";
  if (*format == '@' || *format == '=' || (*format == '<' && PY_LITTLE_ENDIAN)) format++;
  if (view->itemsize != 4 || (strcmp(format, "i") != 0 && strcmp(format, "l") != 0)) {
    PyErr_Format(PyExc_TypeError, "%s must be a contiguous int32 buffer", name);
    PyBuffer_Release(view);
    return -1;
  }
  return 0;
}

static PyObject *py_rans_encode(PyObject *self, PyObject *args) {
  PyObject *freq_arg, *cum_arg, *lens = NULL, *data = NULL, *result = NULL;
  Py_buffer fv, cv;
  Py_ssize_t block, count, nseg, j;
  unsigned prec;
  uint8_t *out;
  int64_t *seg_bytes;
  size_t total = 0, bad = 0;
  (void)self;
  if (!PyArg_ParseTuple(args, "OOnI", &freq_arg, &cum_arg, &block, &prec)) return NULL;
  if (block < 1 || prec < 1 || prec > TFDC_MAX_RANS_PREC) {
    PyErr_SetString(PyExc_ValueError, "rans_encode: block must be >= 1, 1 <= prec <= 15");
    return NULL;
  }
  if (int32_view(freq_arg, &fv, "freq") < 0) return NULL;
  if (int32_view(cum_arg, &cv, "cum") < 0) {
    PyBuffer_Release(&fv);
    return NULL;
  }
  count = fv.len / 4;
  if (cv.len != fv.len) {
    PyErr_SetString(PyExc_ValueError, "rans_encode: freq and cum differ in length");
    goto done;
  }
  nseg = count ? (count - 1) / block + 1 : 0;
  if (count > (PY_SSIZE_T_MAX - 8 * nseg) / 2) {
    PyErr_NoMemory();
    goto done;
  }
  lens = PyBytes_FromStringAndSize(NULL, nseg * (Py_ssize_t)sizeof(int64_t));
  data = PyBytes_FromStringAndSize(NULL, 2 * count + TFDC_RANS_STATE_BYTES * nseg);
  if (!lens || !data) goto done;
  out = (uint8_t *)PyBytes_AS_STRING(data);
  seg_bytes = (int64_t *)PyBytes_AS_STRING(lens);
  Py_BEGIN_ALLOW_THREADS
  for (j = 0; j < nseg; j++) {
    const size_t start = (size_t)j * (size_t)block;
    const size_t len = (size_t)(count - (Py_ssize_t)start) < (size_t)block
                           ? (size_t)(count - (Py_ssize_t)start) : (size_t)block;
    const size_t n = rans_encode_segment((const int32_t *)fv.buf + start,
                                         (const int32_t *)cv.buf + start, len, prec, out + total);
    if (n == 0) {
      bad = 1;
      break;
    }
    seg_bytes[j] = (int64_t)n;
    total += n;
  }
  Py_END_ALLOW_THREADS
  if (bad) {
    PyErr_SetString(PyExc_ValueError, "rans_encode: a frequency is 0 or past 2^prec");
    goto done;
  }
  if (_PyBytes_Resize(&data, (Py_ssize_t)total) < 0) goto done; /* frees data on failure */
  result = Py_BuildValue("(OO)", lens, data);
done:
  Py_XDECREF(lens);
  Py_XDECREF(data);
  PyBuffer_Release(&fv);
  PyBuffer_Release(&cv);
  return result;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(data, max_size=None) -> bytes\n\nDecode a tfdc-packed .tflite (format 2 or 1; any "
     "bytes-like object) into a standard .tflite. max_size limits the decoded size (None: "
     "max(2**31, 1024 * len(data)); inf: none). Raises tfdc.FormatError for a malformed file."},
    {"decoded_size", (PyCFunction)(void (*)(void))py_decoded_size, METH_VARARGS | METH_KEYWORDS,
     "decoded_size(data, max_size=None) -> int\n\nCheck the container (flatbuffer, header, "
     "checksums, size limit) and return the decoded length in bytes."},
    {"is_packed", py_is_packed, METH_O,
     "is_packed(data) -> bool\n\nTrue if data is a flatbuffer carrying a tfdc.v2 or tfdc.v1 section "
     "(checksums not verified)."},
    {"rans_encode", py_rans_encode, METH_VARARGS,
     "rans_encode(freq, cum, block, prec) -> (segment_bytes, data)\n\nThe packer's rANS "
     "encoder (FORMAT.md 5.3): freq and cum are each symbol's frequency and cumulative "
     "frequency (contiguous int32), coded in segments of block symbols. segment_bytes holds "
     "one int64 per segment; data is the segments, one after the other."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "tfdc._native",
                                       "Native C decoder for tfdc-packed .tflite files.", -1,
                                       methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
  PyObject *m = PyModule_Create(&moduledef);
  /* The newest format version it decodes (it reads every older one too). */
  if (m) PyModule_AddIntConstant(m, "FORMAT_MAJOR", TFDC_FORMAT_MAJOR);
  return m;
}
