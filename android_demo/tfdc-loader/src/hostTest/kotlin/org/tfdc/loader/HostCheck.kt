package org.tfdc.loader

import java.io.File
import java.nio.ByteBuffer

/**
 * Host-JVM driver for tests/test_android_jvm.py: runs the pure-JVM loader
 * code (with the real JNI bridge + C decoder) on the operations named on the
 * command line and prints one JSON object per operation. Not part of the
 * Android build (src/hostTest is no Gradle source set).
 *
 *   decode IN OUT    decode via ByteArray, direct and heap ByteBuffer inputs
 *   load IN OUT      TfdcDecoder.load (packed or plain)
 *   limit IN N       TfdcDecoder.load with maxDecodedBytes = N
 *   bad IN           expect TfdcFormatException (from decode, and from load
 *                    unless IN is a plain model)
 *   cache DIR IN     DecodedModelCache.fileFor
 *   cache-copy DIR IN  the same with a decoder of the app's own (a copy of IN)
 *   cache-fail DIR IN  DecodedModelCache.fileFor where it cannot write: the
 *                    IOException, how often it decoded, the files left
 *   flip FILE        flip one bit in the middle of FILE, in place (same length)
 *   evict DIR IN     DecodedModelCache.evictAllBut(fileFor(IN))
 *   race DIR IN...   threads calling fileFor and evictAllBut on the models IN
 *                    in one DIR at once: the IOExceptions, which must be none
 *   fallback         AcceleratorFallback over a scripted backend
 *   policy SDK RUNTIME WORKS
 *                    AcceleratorFallback.forDevice(SDK, RUNTIME) on a scripted
 *                    device where only the accelerators in WORKS (comma list,
 *                    or "-") open; the others fail the way real devices do
 */
fun main(args: Array<String>) {
    var i = 0
    while (i < args.size) {
        when (args[i]) {
            "decode" -> { decodeOp(File(args[i + 1]), File(args[i + 2])); i += 3 }
            "load" -> { loadOp(File(args[i + 1]), File(args[i + 2])); i += 3 }
            "bad" -> { badOp(File(args[i + 1])); i += 2 }
            "limit" -> { limitOp(File(args[i + 1]), args[i + 2].toLong()); i += 3 }
            "cache" -> { cacheOp(File(args[i + 1]), File(args[i + 2])); i += 3 }
            "cache-copy" -> {
                cacheOp(File(args[i + 1]), File(args[i + 2])) { ByteBuffer.wrap(it.copyOf()) }; i += 3
            }
            "cache-fail" -> { cacheFailOp(File(args[i + 1]), File(args[i + 2])); i += 3 }
            "flip" -> { flipOp(File(args[i + 1])); i += 2 }
            "evict" -> { evictOp(File(args[i + 1]), File(args[i + 2])); i += 3 }
            "race" -> {
                val inputs = args.drop(i + 2).takeWhile { it.endsWith(".packed") }
                raceOp(File(args[i + 1]), inputs.map(::File)); i += 2 + inputs.size
            }
            "fallback" -> { fallbackOp(); i += 1 }
            "policy" -> { policyOp(args[i + 1].toInt(), LiteRtRuntime.valueOf(args[i + 2]), args[i + 3]); i += 4 }
            else -> error("unknown op ${args[i]}")
        }
    }
}

private fun decodeOp(input: File, output: File) {
    val packed = input.readBytes()
    val fromArray = TfdcDecoder.decode(packed)
    // Same bytes behind a non-zero position, direct and heap, to exercise
    // the pos/len handling of the bridge.
    val direct = ByteBuffer.allocateDirect(packed.size + 7)
    direct.position(7); direct.put(packed); direct.position(7)
    val fromDirect = TfdcDecoder.decode(direct)
    val heap = ByteBuffer.wrap(ByteArray(packed.size + 5)).apply { position(5); put(packed); position(5) }
    val fromHeap = TfdcDecoder.decode(heap.slice())
    writeBuffer(fromArray, output)
    emit(
        "op" to "decode", "input" to input.path,
        "is_packed" to TfdcDecoder.isPacked(packed),
        "is_packed_direct" to TfdcDecoder.isPacked(direct),
        "decoded_size" to TfdcDecoder.decodedSize(packed),
        "direct" to fromArray.isDirect, "order" to fromArray.order().toString(),
        "position" to fromArray.position(), "limit" to fromArray.limit(), "capacity" to fromArray.capacity(),
        "direct_input_agrees" to (fromDirect == fromArray && fromDirect.isDirect),
        "heap_input_agrees" to (fromHeap == fromArray),
    )
}

private fun loadOp(input: File, output: File) {
    val model = TfdcDecoder.load(input.readBytes())
    writeBuffer(model.buffer, output)
    emit(
        "op" to "load", "input" to input.path, "was_packed" to model.wasPacked,
        "stored_size" to model.storedSize, "decoded_size" to model.decodedSize,
        "direct" to model.buffer.isDirect, "order" to model.buffer.order().toString(),
        "decode_ms_nonneg" to (model.decodeMillis >= 0.0),
    )
}

private fun badOp(input: File) {
    val bytes = input.readBytes()
    val outcome = try {
        val b = TfdcDecoder.decode(bytes)
        mapOf("exception" to null, "decoded_size" to b.capacity())
    } catch (e: TfdcFormatException) {
        mapOf("exception" to e.javaClass.name, "status" to e.status, "message" to e.message)
    }
    // load() too: it must not take a damaged packed file for a plain one.
    val loaded = try {
        TfdcDecoder.load(bytes).wasPacked.toString()
    } catch (e: TfdcFormatException) {
        "TfdcFormatException ${e.status}"
    }
    emit("op" to "bad", "input" to input.path, "is_packed" to TfdcDecoder.isPacked(bytes),
        "load" to loaded, *outcome.toList().toTypedArray())
}

private fun limitOp(input: File, limit: Long) {
    val outcome = try {
        "decoded ${TfdcDecoder.load(input.readBytes(), maxDecodedBytes = limit).decodedSize}"
    } catch (e: TfdcFormatException) {
        "TfdcFormatException ${e.status}"
    } catch (e: IllegalArgumentException) {
        "IllegalArgumentException ${e.message}"
    }
    emit("op" to "limit", "input" to input.path, "limit" to limit, "outcome" to outcome)
}

private fun cacheOp(dir: File, input: File, decoder: ((ByteArray) -> ByteBuffer)? = null) {
    val cache = if (decoder == null) DecodedModelCache(dir) else DecodedModelCache(dir, "a copy", decoder)
    val entry = cache.fileFor(input.readBytes())
    emit("op" to (if (decoder == null) "cache" else "cache-copy"), "input" to input.path,
        "file" to entry.file.path, "sha256" to entry.sha256, "reused" to entry.reused,
        "millis_positive" to (entry.decodeMillis > 0.0), "files_in_dir" to (dir.list()?.sorted()?.joinToString(",") ?: ""))
}

private fun cacheFailOp(dir: File, input: File) {
    var decodes = 0
    val cache = DecodedModelCache(dir) { decodes++; TfdcDecoder.load(it).buffer }
    val message = try {
        cache.fileFor(input.readBytes())
        null
    } catch (e: java.io.IOException) {
        e.message
    }
    val listing = if (dir.isDirectory) dir.list()?.sorted()?.joinToString(",") else null
    emit("op" to "cache-fail", "input" to input.path, "dir" to dir.path, "message" to message,
        "decodes" to decodes, "files_in_dir" to listing)
}

private fun flipOp(file: File) {
    val bytes = file.readBytes()
    bytes[bytes.size / 2] = (bytes[bytes.size / 2].toInt() xor 0x10).toByte()
    file.writeBytes(bytes)
    emit("op" to "flip", "file" to file.path, "length" to file.length())
}

private fun evictOp(dir: File, input: File) {
    val cache = DecodedModelCache(dir)
    cache.evictAllBut(cache.fileFor(input.readBytes()))
    emit("op" to "evict", "input" to input.path,
        "files_in_dir" to (dir.list()?.sorted()?.joinToString(",") ?: ""))
}

private fun raceOp(dir: File, inputs: List<File>) {
    // A cache shared by several models, each thread loading one and evicting
    // the others (what TfdcModel.cachedFile's one directory did): a file
    // deleted between the check and the read, or a fresh checksum file taken
    // for a stale .part, threw IOExceptions.
    val models = inputs.map { it.readBytes() }
    val failures = java.util.concurrent.ConcurrentLinkedQueue<String>()
    val threads = (0 until 6).map { t ->
        Thread {
            val cache = DecodedModelCache(dir)
            repeat(60) { round ->
                try {
                    val entry = cache.fileFor(models[(t + round) % models.size])
                    cache.evictAllBut(entry)
                } catch (e: java.io.IOException) {
                    failures.add("${e.javaClass.simpleName}: ${e.message}")
                }
            }
        }.apply { start() }
    }
    threads.forEach { it.join() }
    emit("op" to "race", "failures" to failures.size, "first" to failures.firstOrNull())
}

private fun fallbackOp() {
    // GPU and NNAPI fail the ways they do on real devices; CPU works.
    val outcome = AcceleratorFallback().open { acc ->
        when (acc) {
            Accelerator.GPU -> {
                Thread.sleep(20) // a driver that takes its time to refuse
                throw UnsatisfiedLinkError("libtensorflowlite_gpu_jni.so not found")
            }
            Accelerator.NNAPI -> throw IllegalArgumentException("NNAPI not available on API 26")
            else -> "interpreter-on-$acc"
        }
    }
    val timings = LoadTimings(1.0, outcome.initMillis, 2.0, outcome.failedMillis)
    val result = LoadResult(outcome.accelerator, timings, outcome.attempts)
    val none = try {
        AcceleratorFallback(listOf(Accelerator.NPU)).open<String> { throw IllegalStateException("no NPU dispatch library") }
        null
    } catch (e: NoAcceleratorException) {
        e.message
    }
    emit("op" to "fallback", "value" to outcome.value, "accelerator" to outcome.accelerator.name,
        "tried" to outcome.attempts.joinToString(",") { it.accelerator.name },
        "reason" to result.fallbackReason, "all_failed_message" to none,
        "failed_ms" to outcome.failedMillis, "init_ms" to outcome.initMillis,
        "total_ms" to timings.totalMillis)
}

/** How each accelerator fails on a device that lacks it (as logged on phones). */
private fun deviceFailure(accelerator: Accelerator): Throwable = when (accelerator) {
    Accelerator.GPU -> UnsupportedOperationException("device not in the GPU delegate's compatibility list")
    Accelerator.NPU -> IllegalStateException("NPU not among the environment's accelerators (no vendor dispatch library)")
    Accelerator.NNAPI -> IllegalArgumentException("Could not create NNAPI delegate")
    Accelerator.CPU -> IllegalStateException("XNNPACK failed to allocate")
}

private fun policyOp(sdk: Int, runtime: LiteRtRuntime, works: String) {
    val working = if (works == "-") emptySet() else works.split(",").map { Accelerator.valueOf(it) }.toSet()
    val policy = AcceleratorFallback.forDevice(sdk, runtime)
    val tried = ArrayList<Accelerator>()
    val outcome = try {
        policy.open { acc ->
            tried += acc
            if (acc !in working) throw deviceFailure(acc)
            "compiled-on-$acc"
        }
    } catch (e: NoAcceleratorException) {
        null
    }
    val attempts = outcome?.attempts ?: emptyList()
    val result = outcome?.let { LoadResult(it.accelerator, LoadTimings(0.0, it.initMillis, 0.0), it.attempts) }
    emit("op" to "policy", "sdk" to sdk, "runtime" to runtime.name, "works" to works,
        "order" to policy.order.joinToString(","), "tried" to tried.joinToString(","),
        "skipped" to policy.skipped.joinToString(" | ") { "${it.accelerator}=${it.failure}" },
        "accelerator" to outcome?.accelerator?.name, "value" to outcome?.value,
        "trail" to attempts.joinToString(" | "), "reason" to result?.fallbackReason)
}

private fun writeBuffer(buffer: ByteBuffer, file: File) {
    file.outputStream().channel.use { ch -> val v = buffer.duplicate(); while (v.hasRemaining()) ch.write(v) }
}

private fun emit(vararg pairs: Pair<String, Any?>) {
    println(pairs.joinToString(",", "{", "}") { (k, v) -> "${quote(k)}:${jsonValue(v)}" })
}

private fun jsonValue(v: Any?): String = when (v) {
    null -> "null"
    is Boolean, is Int, is Long, is Double -> v.toString()
    else -> quote(v.toString())
}

private fun quote(s: String): String = buildString {
    append('"')
    for (c in s) when {
        c == '"' || c == '\\' -> append('\\').append(c)
        c < ' ' -> append("\\u%04x".format(c.code))
        else -> append(c)
    }
    append('"')
}
