package org.tfdc.loader

import android.content.Context
import com.google.ai.edge.litert.Accelerator as LiteRtAccelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import java.io.Closeable

/** A CompiledModel and the decoded file it was created from. */
class OpenedCompiledModel internal constructor(
    val model: CompiledModel,
    val accelerator: Accelerator,
    val cacheEntry: DecodedModelCache.Entry,
    val attempts: List<FallbackAttempt>,
    val initMillis: Double,
    private val environment: Environment,
) : Closeable {
    /** Runs the first inference on [input]; returns the output and timings. */
    fun firstRun(input: FloatArray): Pair<FloatArray, LoadResult> {
        val start = System.nanoTime()
        val inputs = model.createInputBuffers()
        inputs[0].writeFloat(input)
        val outputs = model.run(inputs)
        val result = outputs[0].readFloat()
        val first = (System.nanoTime() - start) / 1e6
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        return result to LoadResult(accelerator, LoadTimings(cacheEntry.decodeMillis, initMillis, first), attempts)
    }

    override fun close() {
        model.close()
        environment.close()
    }
}

/**
 * Opens a packed asset with the LiteRT CompiledModel API (LiteRT 2.x).
 *
 * `CompiledModel.create` takes a file *path*, so the asset is decoded once to
 * `cacheDir/tfdc/tfdc-<sha256 of packed bytes>.tflite` ([DecodedModelCache])
 * and later launches reuse that file (decode time 0). Accelerators:
 * - NPU: vendor dispatch libraries (Qualcomm, MediaTek, Google Tensor) via
 *   LiteRT; the successor of NNAPI on Android 15+. Absent on most devices
 *   unless the app ships them (Play for On-device AI), hence the fallback.
 * - GPU: LiteRT's ML Drift GPU accelerator (OpenCL/OpenGL).
 * - CPU: XNNPACK.
 *
 * Args:
 *   fallback: order to try, default NPU -> GPU -> CPU.
 *
 * Example:
 *
 *     CompiledModelFactory().open(context, "lenet_300_100.tflite").use { opened ->
 *         val (scores, result) = opened.firstRun(pixels)
 *     }
 */
class CompiledModelFactory(
    private val fallback: AcceleratorFallback =
        AcceleratorFallback(listOf(Accelerator.NPU, Accelerator.GPU, Accelerator.CPU)),
) {
    fun open(context: Context, assetName: String): OpenedCompiledModel {
        val entry = TfdcModel.cachedFile(context, assetName)
        val environment = Environment.create()
        val outcome = try {
            fallback.open { accelerator ->
                CompiledModel.create(entry.file.absolutePath, CompiledModel.Options(accelerator.toLiteRt()), environment)
            }
        } catch (e: Exception) {
            environment.close()
            throw e
        }
        return OpenedCompiledModel(outcome.value, outcome.accelerator, entry, outcome.attempts, outcome.initMillis, environment)
    }

    private fun Accelerator.toLiteRt(): LiteRtAccelerator = when (this) {
        Accelerator.NPU -> LiteRtAccelerator.NPU
        Accelerator.GPU -> LiteRtAccelerator.GPU
        Accelerator.CPU -> LiteRtAccelerator.CPU
        Accelerator.NNAPI -> throw UnsupportedOperationException("CompiledModel has no NNAPI path; use NPU")
    }
}
