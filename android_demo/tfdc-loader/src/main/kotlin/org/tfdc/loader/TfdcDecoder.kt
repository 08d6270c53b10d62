package org.tfdc.loader

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * A model ready for an interpreter: [buffer] is a DIRECT ByteBuffer in native
 * byte order (what TFLite's `Interpreter(ByteBuffer)` requires), position 0,
 * limit = the decoded size. It is allocated by `ByteBuffer.allocateDirect`,
 * so the garbage collector frees it once neither the caller nor the
 * interpreter holds it: nothing to release by hand.
 */
data class DecodedModel(
    val buffer: ByteBuffer,
    /** Bytes of the file as shipped (packed, or plain if it was not packed). */
    val storedSize: Int,
    /** Bytes handed to the runtime. */
    val decodedSize: Int,
    /** False when the input was already a plain .tflite (copied as is). */
    val wasPacked: Boolean,
    /** Wall time of decode (or copy), milliseconds. */
    val decodeMillis: Double,
)

/**
 * Decodes tfdc-packed `.tflite` bytes with the native C decoder.
 *
 * Example:
 *
 *     val packed = File("lenet.tflite").readBytes()
 *     val model = TfdcDecoder.load(packed)          // packed or plain
 *     val interpreter = Interpreter(model.buffer)   // org.tensorflow.lite
 *
 * Every method throws [TfdcFormatException] (with the decoder's message) for
 * a malformed file; nothing is returned unless all checksums and rules of
 * docs/FORMAT.md pass. The checksums are checked before the output is
 * allocated, so a damaged file never makes the app allocate what it claims.
 *
 * `maxDecodedBytes`: the most bytes a file may decode to (and its meta
 * stream inflate to; a plain file, its size), checked before anything is
 * allocated; 0, the default, is the decoder's own limit, max(2 GiB, 1024 x
 * the file). An app short of memory passes its own: a file whose checksums
 * hold may still claim up to the limit and be found corrupt only while
 * decoding.
 *
 * Memory: the decoded model is a direct ByteBuffer, which Android's runtime
 * takes from the app's Java heap (a few hundred MB, `android:largeHeap`
 * for more), not from native memory; a model larger than the heap allows
 * throws an OutOfMemoryError naming its size. For such a model use a
 * path-based loader on [DecodedModelCache]'s file, which the runtime maps.
 */
object TfdcDecoder {
    /** Largest buffer `ByteBuffer.allocateDirect` can give (an Int capacity). */
    private const val MAX_DIRECT = Int.MAX_VALUE - 8

    /**
     * Whether [bytes] has the shape of a packed file (one section key, its
     * section ending the file). Cheap: the checksums are not read, so a
     * damaged packed file is packed too; [decode] and [load] check them.
     */
    fun isPacked(bytes: ByteArray): Boolean = TfdcNative.nativeIsPacked(bytes, null, 0, bytes.size)

    /** [buffer]'s bytes from position to limit; heap or direct. */
    fun isPacked(buffer: ByteBuffer): Boolean = withInput(buffer) { a, d, p, n ->
        TfdcNative.nativeIsPacked(a, d, p, n)
    }

    fun decodedSize(packed: ByteArray, maxDecodedBytes: Long = 0): Long =
        checkSize(TfdcNative.nativeDecodedSize(packed, null, 0, packed.size, checkLimit(maxDecodedBytes), true))

    fun decodedSize(packed: ByteBuffer, maxDecodedBytes: Long = 0): Long = withInput(packed) { a, d, p, n ->
        checkSize(TfdcNative.nativeDecodedSize(a, d, p, n, checkLimit(maxDecodedBytes), true))
    }

    /** Decodes [packed] into a new direct, native-order buffer. */
    fun decode(packed: ByteArray, maxDecodedBytes: Long = 0): ByteBuffer =
        decodeInput(packed, null, 0, packed.size, maxDecodedBytes)

    /** Decodes [packed] (position to limit, heap or direct) likewise. */
    fun decode(packed: ByteBuffer, maxDecodedBytes: Long = 0): ByteBuffer = withInput(packed) { a, d, p, n ->
        decodeInput(a, d, p, n, maxDecodedBytes)
    }

    /**
     * The runtime-ready model for [bytes]: decoded if packed, else the plain
     * .tflite copied into a direct buffer; with the time it took. Plain means
     * a flatbuffer with no tfdc section key and no section (the decoder's
     * NOT_PACKED): a packed file cut short, with bytes appended or with its
     * key damaged throws, as every damaged file and every non-flatbuffer
     * does ([isPacked] is false for them, and LiteRT would refuse them later
     * with a schema error).
     */
    fun load(bytes: ByteArray, maxDecodedBytes: Long = 0): DecodedModel {
        val start = System.nanoTime()
        // Sized with the checksums checked: a damaged file claiming 2 GiB was
        // allocated before its CRC failed (OutOfMemoryError on a phone's heap).
        // The decode checks them again: a few ms against a failed app.
        val sizeOrStatus = TfdcNative.nativeDecodedSize(bytes, null, 0, bytes.size, checkLimit(maxDecodedBytes), true)
        val packed = sizeOrStatus != TfdcNative.ERR_NOT_PACKED.toLong()
        val buffer = if (packed) {
            decodeSized(bytes, null, 0, bytes.size, checkSize(sizeOrStatus), maxDecodedBytes)
        } else {
            // A plain file is the model as it is: the app's limit holds for it too.
            if (maxDecodedBytes > 0 && bytes.size > maxDecodedBytes) {
                throw TfdcFormatException(TfdcNative.ERR_TOO_LARGE,
                    "a plain model of ${bytes.size} bytes > maxDecodedBytes $maxDecodedBytes")
            }
            allocate(bytes.size).apply {
                put(bytes)
                flip()
            }
        }
        val millis = (System.nanoTime() - start) / 1e6
        return DecodedModel(buffer, bytes.size, buffer.remaining(), packed, millis)
    }

    private fun decodeInput(array: ByteArray?, direct: ByteBuffer?, pos: Int, len: Int, limit: Long): ByteBuffer =
        decodeSized(array, direct, pos, len,
            checkSize(TfdcNative.nativeDecodedSize(array, direct, pos, len, checkLimit(limit), true)), limit)

    private fun checkLimit(maxDecodedBytes: Long): Long {
        require(maxDecodedBytes >= 0) { "maxDecodedBytes must be >= 0 (0: the decoder's limit), got $maxDecodedBytes" }
        return maxDecodedBytes
    }

    private fun decodeSized(
        array: ByteArray?, direct: ByteBuffer?, pos: Int, len: Int, size: Long, limit: Long,
    ): ByteBuffer {
        if (size > MAX_DIRECT) throw TfdcFormatException(TfdcNative.ERR_TOO_LARGE, "$size bytes > a ByteBuffer")
        // The JVM owns this memory; the C side only writes into it.
        val out = allocate(size.toInt())
        val rc = TfdcNative.nativeDecode(array, direct, pos, len, out, limit)
        if (rc != TfdcNative.OK) throw TfdcFormatException(rc)
        return out // position 0, limit = capacity = decoded size
    }

    /** A direct, native-order buffer of [size] bytes; out of memory, an error that says how much. */
    private fun allocate(size: Int): ByteBuffer = try {
        ByteBuffer.allocateDirect(size).order(ByteOrder.nativeOrder())
    } catch (e: OutOfMemoryError) {
        throw OutOfMemoryError("the decoded model needs a direct ByteBuffer of $size bytes, more " +
            "than the runtime can give (on Android the app's Java heap bounds it: " +
            "android:largeHeap, or a path-based loader on DecodedModelCache's file)").apply { initCause(e) }
    }

    private fun checkSize(sizeOrStatus: Long): Long {
        if (sizeOrStatus < 0) throw TfdcFormatException(sizeOrStatus.toInt())
        return sizeOrStatus
    }

    private inline fun <T> withInput(
        buffer: ByteBuffer,
        block: (ByteArray?, ByteBuffer?, Int, Int) -> T,
    ): T = when {
        buffer.isDirect -> block(null, buffer, buffer.position(), buffer.remaining())
        buffer.hasArray() -> block(buffer.array(), null, buffer.arrayOffset() + buffer.position(), buffer.remaining())
        else -> { // read-only heap buffer: copy out
            val copy = ByteArray(buffer.remaining())
            buffer.duplicate().get(copy)
            block(copy, null, 0, copy.size)
        }
    }
}
