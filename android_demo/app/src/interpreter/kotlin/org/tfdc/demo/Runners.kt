package org.tfdc.demo

import android.content.Context
import android.os.Build
import org.tfdc.loader.Accelerator
import org.tfdc.loader.AcceleratorFallback
import org.tfdc.loader.InterpreterFactory
import org.tfdc.loader.LiteRtRuntime
import org.tfdc.loader.NoAcceleratorException
import org.tfdc.loader.TfdcModel

val RUNTIME = LiteRtRuntime.INTERPRETER

/**
 * Each accelerator forced on its own (no fallback), then the default policy
 * for this API level ("auto": GPU -> NNAPI -> CPU before Android 15,
 * GPU -> CPU from Android 15), whose row says which accelerator ran and why
 * each other one was skipped or failed.
 */
fun runAll(context: Context, digits: Digits): List<RunReport> {
    val plans = listOf(Accelerator.GPU, Accelerator.NNAPI, Accelerator.CPU).map { it.name to AcceleratorFallback(listOf(it)) } +
        listOf("auto" to AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, RUNTIME))
    return plans.map { (label, policy) ->
        // Decode afresh per row so every row reports its own decode time.
        val model = TfdcModel.loadDecoded(context, Digits.MODEL_ASSET)
        try {
            InterpreterFactory(policy).open(model).use { opened ->
                val output = Array(1) { FloatArray(10) }
                val first = opened.firstRun(arrayOf(digits.pixels[0].toImage()), output)
                var correct = if (argmax(output[0]) == digits.labels[0]) 1 else 0
                val times = DoubleArray(maxOf(0, digits.count - 1))
                for (i in 1 until digits.count) {
                    val start = System.nanoTime()
                    opened.interpreter.run(arrayOf(digits.pixels[i].toImage()), output)
                    times[i - 1] = (System.nanoTime() - start) / 1e6
                    if (argmax(output[0]) == digits.labels[i]) correct++
                }
                val t = first.timings
                RunReport(if (label == "auto") "auto→${first.accelerator}" else label,
                    correct.toDouble() / digits.count, t.decodeMillis, t.initMillis, t.firstInferenceMillis,
                    median(times), first.attempts.map { it.toString() })
            }
        } catch (e: NoAcceleratorException) {
            RunReport(label, null, model.decodeMillis, 0.0, 0.0, 0.0, e.attempts.map { it.toString() })
        }
    }
}

/** The model's input is [1, 28, 28]: rows of 28 pixels. */
private fun FloatArray.toImage(): Array<FloatArray> = Array(28) { r -> copyOfRange(r * 28, r * 28 + 28) }
