package org.tfdc.demo

import android.content.Context
import org.tfdc.loader.Accelerator
import org.tfdc.loader.AcceleratorFallback
import org.tfdc.loader.CompiledModelFactory
import org.tfdc.loader.NoAcceleratorException

const val RUNTIME_NAME = "LiteRT CompiledModel (NPU / GPU / CPU)"

/** Each accelerator on its own, then the automatic NPU → GPU → CPU policy. */
fun runAll(context: Context, digits: Digits): List<RunReport> {
    val all = listOf(Accelerator.NPU, Accelerator.GPU, Accelerator.CPU)
    val plans = all.map { it.name to listOf(it) } + listOf("auto" to all)
    return plans.map { (label, order) ->
        try {
            CompiledModelFactory(AcceleratorFallback(order)).open(context, Digits.MODEL_ASSET).use { opened ->
                val (scores, first) = opened.firstRun(digits.pixels[0])
                var correct = if (argmax(scores) == digits.labels[0]) 1 else 0
                val inputs = opened.model.createInputBuffers()
                val outputs = opened.model.createOutputBuffers()
                val start = System.nanoTime()
                for (i in 1 until digits.count) {
                    inputs[0].writeFloat(digits.pixels[i])
                    opened.model.run(inputs, outputs)
                    if (argmax(outputs[0].readFloat()) == digits.labels[i]) correct++
                }
                val mean = (System.nanoTime() - start) / 1e6 / maxOf(1, digits.count - 1)
                inputs.forEach { it.close() }
                outputs.forEach { it.close() }
                val t = first.timings
                val cache = if (opened.cacheEntry.reused) "decoded file reused from cache" else "decoded to cache"
                RunReport(if (label == "auto") "auto→${first.accelerator}" else label,
                    correct.toDouble() / digits.count, t.decodeMillis, t.initMillis, t.firstInferenceMillis, mean,
                    listOf(cache, first.fallbackReason).filter { it.isNotEmpty() }.joinToString("; "))
            }
        } catch (e: NoAcceleratorException) {
            RunReport(label, null, 0.0, 0.0, 0.0, 0.0, "unavailable: ${e.attempts.last().failure}")
        }
    }
}
