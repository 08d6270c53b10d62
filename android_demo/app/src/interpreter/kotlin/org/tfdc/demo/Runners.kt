package org.tfdc.demo

import android.content.Context
import org.tfdc.loader.Accelerator
import org.tfdc.loader.AcceleratorFallback
import org.tfdc.loader.InterpreterFactory
import org.tfdc.loader.NoAcceleratorException
import org.tfdc.loader.TfdcModel

const val RUNTIME_NAME = "Interpreter (GPU / NNAPI / XNNPACK delegates)"

/** Each accelerator on its own (no fallback), then the automatic policy. */
fun runAll(context: Context, digits: Digits): List<RunReport> {
    val plans = listOf(Accelerator.GPU, Accelerator.NNAPI, Accelerator.CPU).map { it.name to listOf(it) } +
        listOf("auto" to listOf(Accelerator.GPU, Accelerator.NNAPI, Accelerator.CPU))
    return plans.map { (label, order) ->
        // Decode afresh per row so every row reports its own decode time.
        val model = TfdcModel.loadDecoded(context, Digits.MODEL_ASSET)
        try {
            InterpreterFactory(AcceleratorFallback(order)).open(model).use { opened ->
                val output = Array(1) { FloatArray(10) }
                val first = opened.firstRun(arrayOf(digits.pixels[0].toImage()), output)
                var correct = if (argmax(output[0]) == digits.labels[0]) 1 else 0
                val start = System.nanoTime()
                for (i in 1 until digits.count) {
                    opened.interpreter.run(arrayOf(digits.pixels[i].toImage()), output)
                    if (argmax(output[0]) == digits.labels[i]) correct++
                }
                val mean = (System.nanoTime() - start) / 1e6 / maxOf(1, digits.count - 1)
                val t = first.timings
                RunReport(if (label == "auto") "auto→${first.accelerator}" else label,
                    correct.toDouble() / digits.count, t.decodeMillis, t.initMillis, t.firstInferenceMillis, mean,
                    first.fallbackReason)
            }
        } catch (e: NoAcceleratorException) {
            RunReport(label, null, model.decodeMillis, 0.0, 0.0, 0.0, "unavailable: ${e.attempts.last().failure}")
        }
    }
}

/** The model's input is [1, 28, 28]: rows of 28 pixels. */
private fun FloatArray.toImage(): Array<FloatArray> = Array(28) { r -> copyOfRange(r * 28, r * 28 + 28) }
