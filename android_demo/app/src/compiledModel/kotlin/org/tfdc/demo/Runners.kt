package org.tfdc.demo

import android.content.Context
import android.os.Build
import org.tfdc.loader.Accelerator
import org.tfdc.loader.AcceleratorFallback
import org.tfdc.loader.CompiledModelFactory
import org.tfdc.loader.LiteRtRuntime
import org.tfdc.loader.NoAcceleratorException

val RUNTIME = LiteRtRuntime.COMPILED_MODEL

/**
 * Each accelerator forced on its own, then the default policy for this API
 * level ("auto": GPU -> NPU -> CPU), whose row says which accelerator ran and
 * why each other one was skipped or failed.
 */
fun runAll(context: Context, digits: Digits): List<RunReport> {
    val plans = listOf(Accelerator.GPU, Accelerator.NPU, Accelerator.CPU).map { it.name to AcceleratorFallback(listOf(it)) } +
        listOf("auto" to AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, RUNTIME))
    return plans.map { (label, policy) ->
        try {
            CompiledModelFactory(policy).open(context, Digits.MODEL_ASSET).use { opened ->
                val (scores, first) = opened.firstRun(digits.pixels[0])
                var correct = if (argmax(scores) == digits.labels[0]) 1 else 0
                val inputs = opened.model.createInputBuffers()
                val outputs = opened.model.createOutputBuffers()
                val times = DoubleArray(maxOf(0, digits.count - 1))
                try {
                    for (i in 1 until digits.count) {
                        val start = System.nanoTime()
                        inputs[0].writeFloat(digits.pixels[i])
                        opened.model.run(inputs, outputs)
                        val out = outputs[0].readFloat()
                        times[i - 1] = (System.nanoTime() - start) / 1e6
                        if (argmax(out) == digits.labels[i]) correct++
                    }
                } finally {  // native memory: closed on a failed run too
                    inputs.forEach { it.close() }
                    outputs.forEach { it.close() }
                }
                val t = first.timings
                val cache = if (opened.cacheEntry.reused) "decoded file reused from cache" else "decoded to cache"
                RunReport(if (label == "auto") "auto→${first.accelerator}" else label,
                    correct.toDouble() / digits.count, t.decodeMillis, t.initMillis, t.firstInferenceMillis,
                    median(times), listOf(cache) + first.attempts.map { it.toString() })
            }
        } catch (e: NoAcceleratorException) {
            RunReport(label, null, 0.0, 0.0, 0.0, 0.0, e.attempts.map { it.toString() })
        }
    }
}
