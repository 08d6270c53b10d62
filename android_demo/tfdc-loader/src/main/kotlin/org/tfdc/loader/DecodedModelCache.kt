package org.tfdc.loader

import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.security.MessageDigest
import java.util.zip.CRC32

/**
 * Decodes a packed model once to a file and reuses it on later runs.
 *
 * For runtimes whose loader takes a *path* (LiteRT `CompiledModel.create`,
 * the LiteRT C API, `benchmark_model`). The file is named after the SHA-256
 * of the packed bytes, so a new model version (new bytes) gets a new file and
 * a stale one is never reused; files are written to a temporary name and
 * renamed, so a crash mid-write never leaves a truncated model under the
 * final name. Beside each file, `tfdc-<hash>.crc32` holds the CRC-32 of its
 * bytes and its length, checked before reuse (a few ms, far less than
 * decoding): a file cut short or altered in place, even to the same length,
 * is decoded again rather than handed to the runtime; a write that fails (a
 * full disk) leaves neither a partial file nor a model without its checksum,
 * and throws an IOException naming the path. A plain (unpacked)
 * `.tflite` is cached as it is, as [TfdcDecoder.load] takes it. Pure JVM:
 * on Android pass `File(context.cacheDir, "tfdc")`.
 *
 * Args:
 *   directory: where decoded files live (created if missing).
 *   decoder: stored bytes -> model buffer (default: the native decoder
 *     through [TfdcDecoder.load], packed or plain).
 *
 * Example:
 *
 *     val cache = DecodedModelCache(File(context.cacheDir, "tfdc"))
 *     val entry = cache.fileFor(packedBytes)
 *     val model = CompiledModel.create(entry.file.absolutePath, options)
 */
class DecodedModelCache(
    private val directory: File,
    private val decoder: (ByteArray) -> ByteBuffer = { TfdcDecoder.load(it).buffer },
) {
    /**
     * A decoded file; [reused] is true when no decoding was needed.
     * [decodeMillis] is the time [fileFor] took: hashing and checking the
     * cached file on reuse, plus decoding and writing it otherwise.
     */
    data class Entry(val file: File, val sha256: String, val reused: Boolean, val decodeMillis: Double)

    /** The decoded file for [packed], decoding only if it is not cached. */
    fun fileFor(packed: ByteArray): Entry {
        val start = System.nanoTime()
        val hash = sha256Hex(packed)
        val file = File(directory, "tfdc-$hash.tflite")
        val check = File(directory, "tfdc-$hash.crc32")
        // The hash names the packed bytes; the length and the CRC-32 written
        // beside the file guard against one truncated or altered in place
        // since (checked without the decoder: any decoder's files are reused).
        if (file.isFile && check.isFile && isIntact(file, check)) {
            return Entry(file, hash, reused = true, decodeMillis = (System.nanoTime() - start) / 1e6)
        }
        // Before decoding: a directory that cannot be made fails at once,
        // naming itself (it failed after a full decode, as "Not a directory").
        if (!directory.isDirectory && !directory.mkdirs() && !directory.isDirectory) {
            throw IOException("cannot create the model cache directory $directory")
        }
        val decoded = decoder(packed)
        var renamed = false
        var written = false
        val tmp = try {
            File.createTempFile("tfdc-$hash.", ".part", directory)
        } catch (e: IOException) {
            throw IOException("cannot write the decoded model to $directory: ${e.message}", e)
        }
        try {
            FileOutputStream(tmp).use { out ->
                val channel = out.channel
                val view = decoded.duplicate()
                while (view.hasRemaining()) channel.write(view)
                channel.force(true)
            }
            if (!tmp.renameTo(file)) throw IOException("cannot rename $tmp to $file")
            renamed = true
            // The checksum last: a crash before it leaves a file that is
            // decoded again, never one trusted unchecked.
            val crc = CRC32().apply { update(decoded.duplicate()) }
            tmp.writeText("%08x %d".format(crc.value, decoded.remaining()))
            if (!tmp.renameTo(check)) throw IOException("cannot rename $tmp to $check")
            written = true
        } catch (e: IOException) {
            throw IOException("cannot write the decoded model to $file: ${e.message}", e)
        } finally {
            tmp.delete()
            // No model of ours left without its checksum, never reused (a
            // full disk at the checksum), unless another writer's pair holds it.
            if (renamed && !written && !(check.isFile && runCatching { isIntact(file, check) }
                    .getOrDefault(false))) file.delete()
        }
        return Entry(file, hash, reused = false, decodeMillis = (System.nanoTime() - start) / 1e6)
    }

    /** [check] holds "<CRC-32> <length>" of [file]'s bytes: the length first (no read). */
    private fun isIntact(file: File, check: File): Boolean {
        val fields = check.readText().trim().split(" ")
        return fields.size == 2 && fields[1] == file.length().toString() && fields[0] == crc32Hex(file)
    }

    /**
     * Deletes cached files other than [keep] (e.g. older model versions),
     * and `.part` files a crash or a killed process left mid-write (older
     * than [STALE_PART_MILLIS]); never another call's `.part` file still
     * being written.
     */
    fun evictAllBut(keep: Entry) {
        val kept = setOf(keep.file.name, "tfdc-${keep.sha256}.crc32")
        val now = System.currentTimeMillis()
        directory.listFiles()
            ?.filter {
                it.name.startsWith("tfdc-") && it.name !in kept && when {
                    it.name.endsWith(".tflite") || it.name.endsWith(".crc32") -> true
                    it.name.endsWith(".part") -> now - it.lastModified() > STALE_PART_MILLIS
                    else -> false
                }
            }
            ?.forEach { it.delete() }
    }

    companion object {
        /** A `.part` file untouched this long was left by a write that died. */
        const val STALE_PART_MILLIS = 60 * 60 * 1000L

        fun sha256Hex(bytes: ByteArray): String =
            MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

        /** The CRC-32 of [file]'s bytes as 8 hex digits, read in 64 KiB blocks. */
        fun crc32Hex(file: File): String {
            val crc = CRC32()
            val block = ByteArray(1 shl 16)
            file.inputStream().use { input ->
                while (true) {
                    val n = input.read(block)
                    if (n < 0) break
                    crc.update(block, 0, n)
                }
            }
            return "%08x".format(crc.value)
        }
    }
}
