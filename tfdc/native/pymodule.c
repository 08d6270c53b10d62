/*
 * pymodule.c - the CPython extension `tfdc._native`, a thin wrapper over
 * tfdc_decode.h. Decoding runs with the GIL released. Format errors raise
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

static PyObject *raise_status(int status) {
  PyObject *mod, *cls;
  if (status == TFDC_ERR_NOMEM) return PyErr_NoMemory();
  mod = PyImport_ImportModule("tfdc.errors");
  if (!mod) return NULL;
  cls = PyObject_GetAttrString(mod, "FormatError");
  Py_DECREF(mod);
  if (!cls) return NULL;
  PyErr_SetString(cls, tfdc_strerror(status));
  Py_DECREF(cls);
  return NULL;
}

static PyObject *py_decode(PyObject *self, PyObject *arg) {
  Py_buffer view;
  uint64_t n = 0;
  int rc;
  PyObject *out;
  (void)self;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
  /* Sizing skips the checksums; tfdc_decode verifies everything. */
  rc = tfdc_peek_decoded_size((const uint8_t *)view.buf, (size_t)view.len, &n);
  if (rc != TFDC_OK) {
    PyBuffer_Release(&view);
    return raise_status(rc);
  }
  if (n > (uint64_t)PY_SSIZE_T_MAX) {
    PyBuffer_Release(&view);
    return raise_status(TFDC_ERR_TOO_LARGE);
  }
  out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
  if (!out) {
    PyBuffer_Release(&view);
    return NULL;
  }
  Py_BEGIN_ALLOW_THREADS
  advise_huge_pages(PyBytes_AS_STRING(out), (size_t)n);
  rc = tfdc_decode((const uint8_t *)view.buf, (size_t)view.len, (uint8_t *)PyBytes_AS_STRING(out),
                   (size_t)n);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  if (rc != TFDC_OK) {
    Py_DECREF(out);
    return raise_status(rc);
  }
  return out;
}

static PyObject *py_decoded_size(PyObject *self, PyObject *arg) {
  Py_buffer view;
  uint64_t n = 0;
  int rc;
  (void)self;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
  Py_BEGIN_ALLOW_THREADS
  rc = tfdc_decoded_size((const uint8_t *)view.buf, (size_t)view.len, &n);
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
    {"decode", py_decode, METH_O,
     "decode(data) -> bytes\n\nDecode a tfdc-packed .tflite (any bytes-like object) into a "
     "standard .tflite. Raises tfdc.FormatError for a malformed file."},
    {"decoded_size", py_decoded_size, METH_O,
     "decoded_size(data) -> int\n\nCheck the container (flatbuffer, header, checksums) and "
     "return the decoded length in bytes."},
    {"is_packed", py_is_packed, METH_O,
     "is_packed(data) -> bool\n\nTrue if data is a flatbuffer carrying a tfdc.v1 section "
     "(checksums not verified)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "tfdc._native",
                                       "Native C decoder for tfdc-packed .tflite files.", -1,
                                       methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
  PyObject *m = PyModule_Create(&moduledef);
  if (m) PyModule_AddIntConstant(m, "FORMAT_MAJOR", TFDC_FORMAT_MAJOR);
  return m;
}
