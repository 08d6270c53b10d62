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
 * bytes, its length and the decoder's id, checked before reuse (a few ms,
 * far less than decoding): a file cut short or altered in place, even to
 * the same length, or written by another decoder (a loader update whose
 * decoder writes otherwise, with the asset and `cacheDir` unchanged) is
 * decoded again rather than handed to the runtime; a write that fails (a
 * full disk) leaves neither a partial file nor a model without its checksum,
 * and throws an IOException naming the path. Files another thread or
 * process deletes meanwhile ([evictAllBut]) count as not cached. A plain
 * (unpacked) `.tflite` is cached as it is, as [TfdcDecoder.load] takes it.
 * Pure JVM: on Android pass a directory under `context.cacheDir`, one per
 * model ([TfdcModel.cachedFile] uses `cacheDir/tfdc/<asset name>`).
 *
 * Args:
 *   directory: where decoded files live (created if missing).
 *   decoderId: what names the decoder's output (one line); files another
 *     id wrote are decoded again. Default: the native decoder's version
 *     (`tfdc_version()`); an app's own decoder gives its own, and changes
 *     it when its output changes.
 *   decoder: stored bytes -> model buffer (default: the native decoder
 *     through [TfdcDecoder.load], packed or plain).
 *
 * Example:
 *
 *     val cache = DecodedModelCache(File(context.cacheDir, "tfdc/my_model"))
 *     val entry = cache.fileFor(packedBytes).also { cache.evictAllBut(it) }
 *     val model = CompiledModel.create(entry.file.absolutePath, options)
 */
class DecodedModelCache(
    private val directory: File,
    private val decoderId: String = "tfdc_decode " + TfdcNative.nativeVersion(),
    private val decoder: (ByteArray) -> ByteBuffer = { TfdcDecoder.load(it).buffer },
) {
    init {
        require(decoderId.isNotEmpty() && decoderId.none { it == '\n' || it == '\r' }) {
            "decoderId must be one non-empty line, got \"$decoderId\""
        }
    }

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
        // since, the decoder's id against another decoder's output.
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
        var checkTmp: File? = null
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
            // decoded again, never one trusted unchecked. A temporary name of
            // its own: the model's may be taken again by another writer.
            val crc = CRC32().apply { update(decoded.duplicate()) }
            checkTmp = File.createTempFile("tfdc-$hash.", ".part", directory)
            checkTmp.writeText("%08x %d %s".format(crc.value, decoded.remaining(), decoderId))
            if (!checkTmp.renameTo(check)) throw IOException("cannot rename $checkTmp to $check")
            written = true
        } catch (e: IOException) {
            throw IOException("cannot write the decoded model to $file: ${e.message}", e)
        } finally {
            tmp.delete()
            checkTmp?.delete()
            // No model of ours left without its checksum, never reused (a
            // full disk at the checksum), unless another writer's pair holds it.
            if (renamed && !written && !(check.isFile && runCatching { isIntact(file, check) }
                    .getOrDefault(false))) file.delete()
        }
        return Entry(file, hash, reused = false, decodeMillis = (System.nanoTime() - start) / 1e6)
    }

    /**
     * [check] holds "<CRC-32> <length> <decoder id>" of [file]'s bytes: the
     * length and the id first (no read). A file deleted meanwhile is no match.
     */
    private fun isIntact(file: File, check: File): Boolean = try {
        val fields = check.readText().trim().split(" ", limit = 3)
        fields.size == 3 && fields[2] == decoderId && fields[1] == file.length().toString() &&
            fields[0] == crc32Hex(file)
    } catch (e: IOException) { // FileNotFoundException: another call evicted it
        false
    }

    /**
     * Deletes this directory's cached files other than those of [keep] (the
     * older versions of a model, when the directory holds one model's, as
     * [TfdcModel.cachedFile]'s do), and `.part` files a crash or a killed
     * process left mid-write (older than [STALE_PART_MILLIS]); never another
     * call's `.part` file still being written. A directory shared by several
     * models keeps each one passed.
     */
    fun evictAllBut(vararg keep: Entry) {
        val kept = keep.flatMap { listOf(it.file.name, "tfdc-${it.sha256}.crc32") }.toSet()
        val now = System.currentTimeMillis()
        directory.listFiles()
            ?.filter {
                it.name.startsWith("tfdc-") && it.name !in kept && when {
                    it.name.endsWith(".tflite") || it.name.endsWith(".crc32") -> true
                    // 0: gone since the listing (or unreadable): never a stale one.
                    it.name.endsWith(".part") -> it.lastModified().let { t ->
                        t != 0L && now - t > STALE_PART_MILLIS
                    }
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
