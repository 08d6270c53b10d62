package org.tfdc.loader

import android.content.Context
import android.os.Build
import com.google.ai.edge.litert.Accelerator as LiteRtAccelerator
import com.google.ai.edge.litert.BuiltinNpuAcceleratorProvider
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.Model
import java.io.Closeable

/** A CompiledModel and the decoded file it was created from. */
class OpenedCompiledModel internal constructor(
    val model: CompiledModel,
    val accelerator: Accelerator,
    val cacheEntry: DecodedModelCache.Entry,
    val attempts: List<FallbackAttempt>,
    val initMillis: Double,
    private val environment: Environment,
    /** Time the accelerators that failed before [accelerator] took. */
    val failedMillis: Double = 0.0,
    /** The loaded model [model] was compiled from (not owned by it). */
    private val loaded: Model? = null,
) : Closeable {
    /**
     * Runs the first inference on [input] (creating its tensor buffers
     * included); returns the output and timings.
     */
    fun firstRun(input: FloatArray): Pair<FloatArray, LoadResult> {
        val start = System.nanoTime()
        val inputs = model.createInputBuffers()
        val result = try {
            inputs[0].writeFloat(input)
            val outputs = model.run(inputs)
            try {
                outputs[0].readFloat()
            } finally {
                outputs.forEach { it.close() }
            }
        } finally {
            inputs.forEach { it.close() }
        }
        val first = (System.nanoTime() - start) / 1e6
        val timings = LoadTimings(cacheEntry.decodeMillis, initMillis, first, failedMillis)
        return result to LoadResult(accelerator, timings, attempts)
    }

    override fun close() {
        model.close()
        loaded?.close()
        environment.close()
    }
}

/**
 * Opens a packed asset with the LiteRT CompiledModel API (LiteRT 2.x).
 *
 * `CompiledModel.create` takes a file *path*, so the asset is decoded once to
 * `cacheDir/tfdc/<asset>/tfdc-<sha256 of packed bytes>.tflite` ([DecodedModelCache])
 * and later launches reuse that file (decode time: finding and checking it). The default policy is
 * [AcceleratorFallback.forDevice] for this device's API level: GPU -> NPU ->
 * CPU (NNAPI, deprecated from Android 15, is not part of this runtime and is
 * reported as skipped).
 * - GPU: LiteRT's GPU accelerator (built into the `litert` AAR).
 * - NPU: vendor dispatch libraries (Qualcomm AI Engine Direct, MediaTek
 *   NeuroPilot, Google Tensor) found by `BuiltinNpuAcceleratorProvider` in
 *   the app's native library directory (android_demo/README.md, "NPU
 *   setup"); the model is compiled for the NPU on the device (JIT), with
 *   LiteRT's compiler cache in `cacheDir`. Absent or unsupported SoC ->
 *   skipped with the reason.
 * - CPU: XNNPACK.
 *
 * Args:
 *   fallback: the policy (default: `AcceleratorFallback.forDevice(
 *     Build.VERSION.SDK_INT, LiteRtRuntime.COMPILED_MODEL)`).
 *
 * Example:
 *
 *     CompiledModelFactory().open(context, "lenet_300_100.tflite").use { opened ->
 *         val (scores, result) = opened.firstRun(pixels)
 *         Log.i("tfdc", "ran on ${result.accelerator}; ${result.fallbackReason}")
 *     }
 */
class CompiledModelFactory(
    private val fallback: AcceleratorFallback =
        AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, LiteRtRuntime.COMPILED_MODEL),
) {
    fun open(context: Context, assetName: String): OpenedCompiledModel {
        val entry = TfdcModel.cachedFile(context, assetName)
        // The NPU provider adds the dispatch / compiler-plugin directory only
        // on a supported SoC; the environment is valid for GPU and CPU too.
        val environment = Environment.create(context, BuiltinNpuAcceleratorProvider(context))
        var loaded: Model? = null
        val outcome = try {
            val available = environment.getAvailableAccelerators()
            // Loaded once, for every accelerator tried: create(path, ...)
            // loads a Model of its own that a failed compile never closes
            // (one leaked copy of the model per accelerator that refused it).
            val model = Model.load(entry.file.absolutePath).also { loaded = it }
            fallback.open { accelerator ->
                val liteRt = accelerator.toLiteRt()
                if (liteRt !in available) {
                    throw UnsupportedOperationException(
                        "$accelerator not among LiteRT's accelerators on this device " +
                            "(${socName()}, API ${Build.VERSION.SDK_INT}): " +
                            (if (accelerator == Accelerator.NPU) "no vendor dispatch library" else "not available"))
                }
                CompiledModel.create(model, CompiledModel.Options(liteRt), environment)
            }
        } catch (e: Throwable) {  // a LinkageError too: the model and environment are native memory
            loaded?.close()
            environment.close()
            throw e
        }
        return OpenedCompiledModel(outcome.value, outcome.accelerator, entry, outcome.attempts, outcome.initMillis,
            environment, outcome.failedMillis, loaded)
    }

    // Build.SOC_* exist from Android 12, where LiteRT's NPU support starts.
    private fun socName(): String =
        if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE

    private fun Accelerator.toLiteRt(): LiteRtAccelerator = when (this) {
        Accelerator.NPU -> LiteRtAccelerator.NPU
        Accelerator.GPU -> LiteRtAccelerator.GPU
        Accelerator.CPU -> LiteRtAccelerator.CPU
        Accelerator.NNAPI -> throw UnsupportedOperationException("CompiledModel has no NNAPI path (deprecated); use NPU")
    }
}
