package org.tfdc.demo

import android.os.Build
import android.os.Bundle
import android.widget.ScrollView
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import java.util.Locale
import org.tfdc.loader.AcceleratorFallback
import org.tfdc.loader.TfdcDecoder
import org.tfdc.loader.TfdcModel

/**
 * Classifies the bundled MNIST digits with the packed LeNet-300-100 on each
 * accelerator and shows accuracy, packed vs decoded size and the timings,
 * then the default policy for this API level: which accelerator ran, and
 * why each other one was skipped (deprecated, not in this runtime) or
 * failed (no GPU support, no NPU dispatch library...).
 * Work runs on a background thread; one TextView shows the table.
 */
class MainActivity : AppCompatActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this).apply { setPadding(32, 32, 32, 32); typeface = android.graphics.Typeface.MONOSPACE }
        setContentView(ScrollView(this).apply { addView(text) })
        text.text = "Running…"
        Thread {
            val report = try { buildReport() } catch (e: Exception) { "Failed: $e" }
            runOnUiThread { text.text = report }
        }.start()
    }

    private fun buildReport(): String {
        val packed = TfdcModel.readAsset(this, Digits.MODEL_ASSET)
        val decodedSize = if (TfdcDecoder.isPacked(packed)) TfdcDecoder.decodedSize(packed) else packed.size.toLong()
        val digits = Digits.load(this)
        val sb = StringBuilder()
        sb.append("${Digits.MODEL_ASSET}\n")
        sb.append("packed ${packed.size} B, decoded $decodedSize B (${fmt(decodedSize.toDouble() / packed.size)}x)\n")
        sb.append("${digits.count} bundled test digits\n")
        sb.append("runtime: ${RUNTIME.label}, Android API ${Build.VERSION.SDK_INT}\n")
        sb.append("default order here: " +
            AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, RUNTIME).order.joinToString(" → ") + "\n\n")
        sb.append(String.format(Locale.US, "%-10s %6s %8s %8s %8s %8s\n", "accel", "acc%", "decode", "init", "first", "median"))
        for (report in runAll(this, digits)) {
            val acc = report.accuracy?.let { fmt(100 * it) } ?: "-"
            sb.append(String.format(Locale.US, "%-10s %6s %8s %8s %8s %8s\n", report.label, acc,
                fmt(report.decodeMillis), fmt(report.initMillis), fmt(report.firstInferenceMillis),
                fmt(report.medianInferenceMillis)))
            // Which accelerator ran, and why each other one did not.
            for (note in report.notes) sb.append("  $note\n")
        }
        sb.append("\n(times in ms)\n")
        return sb.toString()
    }

    private fun fmt(x: Double) = String.format(Locale.US, "%.2f", x)
}
