package org.tfdc.loader

import android.os.Build
import java.io.Closeable
import java.nio.ByteBuffer
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate

/**
 * An Interpreter with its delegate; closing it closes both (the delegate
 * must outlive the interpreter, so they are owned together).
 */
class OpenedInterpreter internal constructor(
    val interpreter: Interpreter,
    val accelerator: Accelerator,
    private val delegate: Delegate?,
    /** The model bytes; the Interpreter reads them for its whole life. */
    val model: DecodedModel,
    val attempts: List<FallbackAttempt>,
    val initMillis: Double,
    /** Time the accelerators that failed before [accelerator] took. */
    val failedMillis: Double = 0.0,
) : Closeable {
    /**
     * Runs the first inference and reports decode / init / first-run times.
     */
    fun firstRun(input: Any, output: Any): LoadResult {
        val start = System.nanoTime()
        interpreter.run(input, output)
        val first = (System.nanoTime() - start) / 1e6
        return LoadResult(accelerator, LoadTimings(model.decodeMillis, initMillis, first, failedMillis), attempts)
    }

    override fun close() {
        interpreter.close()
        (delegate as? Closeable)?.close()
    }
}

/**
 * Builds a TFLite/LiteRT `Interpreter` (LiteRT 1.4.x) for a decoded model on
 * the best accelerator available and reports why the others were skipped.
 * The default policy is [AcceleratorFallback.forDevice] for this device's
 * API level: GPU -> NNAPI -> CPU up to Android 14, GPU -> CPU from Android
 * 15 (NNAPI deprecated); NPU is reported as skipped (it needs the
 * CompiledModel runtime, the `compiledModel` flavor).
 *
 * What the paths mean on current Android:
 * - GPU: `GpuDelegate(CompatibilityList().bestOptionsForThisDevice)`
 *   (OpenCL, else OpenGL ES). Skipped when the device is not on the
 *   compatibility list. Ops it cannot run stay on the CPU.
 * - NNAPI: `NnApiDelegate`, for devices before Android 15. Deprecated since
 *   Android 15 (API 35): vendors no longer ship new drivers and the platform
 *   may execute on its own CPU reference path, often *slower* than XNNPACK.
 *   "NNAPI: ran" says the delegate opened, not where the ops ran: with no
 *   accelerator driver for them they run on a CPU (NNAPI's or TFLite's
 *   built-in kernels). Compare the timings with a CPU run before trusting it.
 * - CPU: XNNPACK with [cpuThreads] threads; always available.
 *
 * Args:
 *   fallback: the policy (default: `AcceleratorFallback.forDevice(
 *     Build.VERSION.SDK_INT, LiteRtRuntime.INTERPRETER)`).
 *   cpuThreads: threads for the CPU path.
 *
 * Example:
 *
 *     val model = TfdcModel.loadDecoded(context, "lenet_300_100.tflite")
 *     InterpreterFactory().open(model).use { opened ->
 *         val result = opened.firstRun(input, output)
 *         Log.i("tfdc", "${result.accelerator} ${result.timings} ${result.fallbackReason}")
 *     }
 */
class InterpreterFactory(
    private val fallback: AcceleratorFallback =
        AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, LiteRtRuntime.INTERPRETER),
    private val cpuThreads: Int = 4,
) {
    fun open(model: DecodedModel): OpenedInterpreter {
        val outcome = fallback.open { accelerator -> openOn(accelerator, model.buffer) }
        val (interpreter, delegate) = outcome.value
        return OpenedInterpreter(interpreter, outcome.accelerator, delegate, model, outcome.attempts, outcome.initMillis,
            outcome.failedMillis)
    }

    private fun openOn(accelerator: Accelerator, buffer: ByteBuffer): Pair<Interpreter, Delegate?> {
        val delegate: Delegate? = when (accelerator) {
            Accelerator.GPU -> {
                val compatibility = CompatibilityList()
                try {
                    if (!compatibility.isDelegateSupportedOnThisDevice) {
                        throw UnsupportedOperationException("device not in the GPU delegate's compatibility list")
                    }
                    GpuDelegate(compatibility.bestOptionsForThisDevice)
                } finally {
                    compatibility.close()
                }
            }
            Accelerator.NNAPI -> {
                if (Build.VERSION.SDK_INT < AcceleratorFallback.NNAPI_MIN_SDK) {
                    throw UnsupportedOperationException("NNAPI needs Android 8.1, device is API ${Build.VERSION.SDK_INT}")
                }
                NnApiDelegate(NnApiDelegate.Options().setAllowFp16(false))
            }
            Accelerator.CPU -> null
            Accelerator.NPU -> throw UnsupportedOperationException("NPU is only reachable through CompiledModel (LiteRT 2.x)")
        }
        val options = Interpreter.Options().setNumThreads(cpuThreads)
        if (delegate != null) options.addDelegate(delegate) else options.setUseXNNPACK(true)
        try {
            // duplicate(): the Interpreter keeps its own position/limit view.
            return Interpreter(buffer.duplicate().order(buffer.order()), options) to delegate
        } catch (e: Throwable) {  // a LinkageError too: the delegate is native memory
            (delegate as? Closeable)?.close()
            throw e
        }
    }
}
