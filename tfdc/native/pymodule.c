/*
 * pymodule.c - the CPython extension `tfdc._native`, a thin wrapper over
 * tfdc_decode.h (formats 2 and 1). Decoding runs with the GIL released. Format errors raise
 * tfdc.errors.FormatError (imported at call time, so this module has no
 * import-order dependency on the Python package).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tfdc_decode.h"

#if defined(__linux__)
#include <stdint.h>
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
