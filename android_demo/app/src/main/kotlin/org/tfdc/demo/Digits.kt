package org.tfdc.demo

import android.content.Context

/**
 * The bundled test digits written by make_assets.py: `digits.u8` holds N
 * 28x28 images (uint8, row-major), `labels.u8` their N labels.
 */
class Digits(val pixels: Array<FloatArray>, val labels: IntArray) {
    val count: Int get() = labels.size

    companion object {
        const val MODEL_ASSET = "lenet_300_100.tflite"
        private const val SIDE = 28

        fun load(context: Context): Digits {
            val raw = context.assets.open("digits.u8").use { it.readBytes() }
            val labels = context.assets.open("labels.u8").use { it.readBytes() }.map { it.toInt() and 0xff }.toIntArray()
            require(raw.size == labels.size * SIDE * SIDE) { "digits.u8 / labels.u8 sizes disagree" }
            // Same scaling as tfdc.datasets.load_mnist: [0, 255] -> [0, 1].
            val pixels = Array(labels.size) { i ->
                FloatArray(SIDE * SIDE) { j -> (raw[i * SIDE * SIDE + j].toInt() and 0xff) / 255f }
            }
            return Digits(pixels, labels)
        }
    }
}

/**
 * One row of the results table: an accelerator's accuracy and timings, and
 * [notes]: one line per accelerator considered ("GPU: failed (...)",
 * "NNAPI: skipped (...)", "CPU: ran").
 */
data class RunReport(
    val label: String,
    val accuracy: Double?,
    val decodeMillis: Double,
    val initMillis: Double,
    val firstInferenceMillis: Double,
    val medianInferenceMillis: Double,
    val notes: List<String>,
)

fun argmax(scores: FloatArray): Int = scores.indices.maxBy { scores[it] }

fun median(values: DoubleArray): Double =
    if (values.isEmpty()) 0.0 else values.sorted().let { (it[(it.size - 1) / 2] + it[it.size / 2]) / 2 }
