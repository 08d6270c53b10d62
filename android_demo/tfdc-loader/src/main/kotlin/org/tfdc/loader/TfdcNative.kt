package org.tfdc.loader

import java.nio.ByteBuffer

/**
 * JNI bindings to the C decoder (`tfdc/native/tfdc_decode.h`), implemented in
 * `src/main/cpp/tfdc_jni.c` and loaded from `libtfdc_jni.so`.
 *
 * Pure JVM (no `android.*` import): the host tests load the same bridge with
 * `-Djava.library.path`. Each input is either a `byte[]` or a direct
 * [ByteBuffer] (exactly one non-null) with a position and length. Results are
 * the decoder's status codes; [TfdcDecoder] turns them into exceptions.
 */
object TfdcNative {
    init {
        System.loadLibrary("tfdc_jni")
    }

    /** Status codes of `tfdc_status`, mirrored from tfdc_decode.h. */
    const val OK = 0
    const val ERR_ARGUMENT = -1
    const val ERR_NOT_PACKED = -2
    const val ERR_TOO_LARGE = -10

    @JvmStatic external fun nativeIsPacked(array: ByteArray?, direct: ByteBuffer?, pos: Int, len: Int): Boolean

    /**
     * The decoded size (>= 0) or a negative status; [limit] > 0: the caller's size limit.
     * [verify] false skips the checksums, for a caller that decodes next (the decode checks them).
     */
    @JvmStatic external fun nativeDecodedSize(
        array: ByteArray?, direct: ByteBuffer?, pos: Int, len: Int, limit: Long, verify: Boolean,
    ): Long

    /** Decodes into direct buffer [out] from its start; returns a status. [limit] as above. */
    @JvmStatic external fun nativeDecode(
        array: ByteArray?, direct: ByteBuffer?, pos: Int, len: Int, out: ByteBuffer, limit: Long,
    ): Int

    /** The decoder's own message for [status] (`tfdc_strerror`). */
    @JvmStatic external fun nativeStrerror(status: Int): String

    /** The decoder library's version (`tfdc_version`, tfdc's own). */
    @JvmStatic external fun nativeVersion(): String
}
