/*
 * tfdc_jni.c - JNI bridge from org.tfdc.loader.TfdcNative to the C decoder
 * (tfdc/native/tfdc_decode.h). Built for Android by CMakeLists.txt next to
 * this file and for the host JVM by tests/test_android_jvm.py.
 *
 * Ownership: the output is always a direct ByteBuffer that Kotlin allocated
 * (ByteBuffer.allocateDirect), so its memory belongs to the Java GC; this file
 * never allocates memory that outlives a call. Errors are returned as the
 * decoder's negative status codes; Kotlin turns them into TfdcFormatException
 * with tfdc_strerror's message.
 */
#include <jni.h>
#include <stdint.h>

#include "tfdc_decode.h"

/* Input bytes borrowed from either a byte[] or a direct ByteBuffer. */
typedef struct {
  jbyteArray array;
  jbyte *array_elems;
  const uint8_t *data;
  size_t len;
} tfdc_input;

static int input_acquire(JNIEnv *env, jbyteArray array, jobject direct, jint pos, jint len,
                         tfdc_input *in) {
  in->array = NULL;
  in->array_elems = NULL;
  in->data = NULL;
  in->len = 0;
  if (pos < 0 || len < 0) return TFDC_ERR_ARGUMENT;
  if (array != NULL) {
    if ((jlong)pos + (jlong)len > (jlong)(*env)->GetArrayLength(env, array)) return TFDC_ERR_ARGUMENT;
    /* Not GetPrimitiveArrayCritical: decoding mallocs and may take a while,
     * and the GC must not be blocked for that long. */
    in->array_elems = (*env)->GetByteArrayElements(env, array, NULL);
    if (in->array_elems == NULL) return TFDC_ERR_NOMEM;
    in->array = array;
    in->data = (const uint8_t *)in->array_elems + pos;
  } else if (direct != NULL) {
    uint8_t *base = (uint8_t *)(*env)->GetDirectBufferAddress(env, direct);
    jlong cap = (*env)->GetDirectBufferCapacity(env, direct);
    if (base == NULL || cap < 0 || (jlong)pos + (jlong)len > cap) return TFDC_ERR_ARGUMENT;
    in->data = base + pos;
  } else {
    return TFDC_ERR_ARGUMENT;
  }
  in->len = (size_t)len;
  return TFDC_OK;
}

static void input_release(JNIEnv *env, tfdc_input *in) {
  /* JNI_ABORT: the input was only read, nothing to copy back. */
  if (in->array_elems != NULL)
    (*env)->ReleaseByteArrayElements(env, in->array, in->array_elems, JNI_ABORT);
}

JNIEXPORT jboolean JNICALL Java_org_tfdc_loader_TfdcNative_nativeIsPacked(
    JNIEnv *env, jclass cls, jbyteArray array, jobject direct, jint pos, jint len) {
  (void)cls;
  tfdc_input in;
  if (input_acquire(env, array, direct, pos, len, &in) != TFDC_OK) {
    input_release(env, &in);
    return JNI_FALSE;
  }
  int packed = tfdc_is_packed(in.data, in.len);
  input_release(env, &in);
  return packed ? JNI_TRUE : JNI_FALSE;
}

/* Returns the decoded size (>= 0) or a negative tfdc_status. `limit` > 0:
 * the caller's size limit (tfdc_decoded_size_limit), else the default.
 * `verify` false: the checksums are not checked (tfdc_peek_decoded_size),
 * for a caller that decodes next: tfdc_decode checks them, and a CRC over
 * the whole file once is enough. */
JNIEXPORT jlong JNICALL Java_org_tfdc_loader_TfdcNative_nativeDecodedSize(
    JNIEnv *env, jclass cls, jbyteArray array, jobject direct, jint pos, jint len, jlong limit,
    jboolean verify) {
  (void)cls;
  tfdc_input in;
  int rc = input_acquire(env, array, direct, pos, len, &in);
  uint64_t size = 0;
  if (rc == TFDC_OK) {
    if (!verify)
      rc = tfdc_peek_decoded_size(in.data, in.len, &size);
    else
      rc = limit > 0 ? tfdc_decoded_size_limit(in.data, in.len, (uint64_t)limit, &size)
                     : tfdc_decoded_size(in.data, in.len, &size);
  }
  input_release(env, &in);
  if (rc != TFDC_OK) return (jlong)rc;
  if (size > (uint64_t)INT64_MAX || (limit > 0 && size > (uint64_t)limit))
    return (jlong)TFDC_ERR_TOO_LARGE;
  return (jlong)size;
}

/* Decodes into the direct ByteBuffer `out` (from its start, up to its
 * capacity). `limit` > 0: the caller's size limit (tfdc_decode_limit).
 * Returns TFDC_OK or a negative tfdc_status. */
JNIEXPORT jint JNICALL Java_org_tfdc_loader_TfdcNative_nativeDecode(
    JNIEnv *env, jclass cls, jbyteArray array, jobject direct, jint pos, jint len, jobject out,
    jlong limit) {
  (void)cls;
  if (out == NULL) return TFDC_ERR_ARGUMENT;
  uint8_t *out_base = (uint8_t *)(*env)->GetDirectBufferAddress(env, out);
  jlong out_cap = (*env)->GetDirectBufferCapacity(env, out);
  if (out_base == NULL || out_cap < 0) return TFDC_ERR_ARGUMENT;
  tfdc_input in;
  int rc = input_acquire(env, array, direct, pos, len, &in);
  if (rc == TFDC_OK)
    rc = limit > 0 ? tfdc_decode_limit(in.data, in.len, out_base, (size_t)out_cap, (uint64_t)limit)
                   : tfdc_decode(in.data, in.len, out_base, (size_t)out_cap);
  input_release(env, &in);
  return (jint)rc;
}

JNIEXPORT jstring JNICALL Java_org_tfdc_loader_TfdcNative_nativeStrerror(JNIEnv *env, jclass cls,
                                                                          jint status) {
  (void)cls;
  return (*env)->NewStringUTF(env, tfdc_strerror((int)status));
}

/* The decoder library's version (tfdc_version): what DecodedModelCache
 * records beside each decoded file, so that a loader update that decodes
 * otherwise never reuses the files an older one wrote. */
JNIEXPORT jstring JNICALL Java_org_tfdc_loader_TfdcNative_nativeVersion(JNIEnv *env, jclass cls) {
  (void)cls;
  return (*env)->NewStringUTF(env, tfdc_version());
}
