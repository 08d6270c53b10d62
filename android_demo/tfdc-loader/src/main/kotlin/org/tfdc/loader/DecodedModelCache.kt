package org.tfdc.loader

import java.io.File
import java.io.FileOutputStream
import java.nio.ByteBuffer
import java.security.MessageDigest

/**
 * Decodes a packed model once to a file and reuses it on later runs.
 *
 * For runtimes whose loader takes a *path* (LiteRT `CompiledModel.create`,
 * the LiteRT C API, `benchmark_model`). The file is named after the SHA-256
 * of the packed bytes, so a new model version (new bytes) gets a new file and
 * a stale one is never reused; files are written to a temporary name and
 * renamed, so a crash mid-write never leaves a truncated model under the
 * final name. Pure JVM: on Android pass `File(context.cacheDir, "tfdc")`.
 *
 * Args:
 *   directory: where decoded files live (created if missing).
 *   decoder: packed bytes -> decoded buffer (default: the native decoder).
 *
 * Example:
 *
 *     val cache = DecodedModelCache(File(context.cacheDir, "tfdc"))
 *     val entry = cache.fileFor(packedBytes)
 *     val model = CompiledModel.create(entry.file.absolutePath, options)
 */
class DecodedModelCache(
    private val directory: File,
    private val decoder: (ByteArray) -> ByteBuffer = TfdcDecoder::decode,
) {
    /** A decoded file; [reused] is true when no decoding was needed. */
    data class Entry(val file: File, val sha256: String, val reused: Boolean, val decodeMillis: Double)

    /** The decoded file for [packed], decoding only if it is not cached. */
    fun fileFor(packed: ByteArray): Entry {
        val start = System.nanoTime()
        val hash = sha256Hex(packed)
        val file = File(directory, "tfdc-$hash.tflite")
        // The hash names the packed bytes; the size check guards against a
        // file someone else truncated in place.
        if (file.isFile && file.length() == TfdcDecoder.decodedSize(packed)) {
            return Entry(file, hash, reused = true, decodeMillis = 0.0)
        }
        val decoded = decoder(packed)
        directory.mkdirs()
        val tmp = File.createTempFile("tfdc-$hash.", ".part", directory)
        try {
            FileOutputStream(tmp).use { out ->
                val channel = out.channel
                val view = decoded.duplicate()
                while (view.hasRemaining()) channel.write(view)
                channel.force(true)
            }
            if (!tmp.renameTo(file)) throw java.io.IOException("cannot rename $tmp to $file")
        } finally {
            tmp.delete()
        }
        return Entry(file, hash, reused = false, decodeMillis = (System.nanoTime() - start) / 1e6)
    }

    /**
     * Deletes cached files other than [keep] (e.g. older model versions);
     * never another call's `.part` file still being written.
     */
    fun evictAllBut(keep: Entry) {
        directory.listFiles()
            ?.filter { it.name.startsWith("tfdc-") && it.name.endsWith(".tflite") && it != keep.file }
            ?.forEach { it.delete() }
    }

    companion object {
        fun sha256Hex(bytes: ByteArray): String =
            MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
    }
}
