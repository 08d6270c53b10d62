package org.tfdc.demo

import android.app.Application
import android.content.Context
import android.os.Build
import android.os.Bundle
import android.widget.ScrollView
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.LiveData
import androidx.lifecycle.MutableLiveData
import androidx.lifecycle.ViewModelProvider
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
 * The work runs once, in [ReportModel]; one TextView shows the table.
 */
class MainActivity : AppCompatActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this).apply { setPadding(32, 32, 32, 32); typeface = android.graphics.Typeface.MONOSPACE }
        setContentView(ScrollView(this).apply { addView(text) })
        text.text = "Running…"
        // A rotation recreates the activity, not the model: the run goes on,
        // and its report reaches the new activity's view (never a destroyed one).
        ViewModelProvider(this)[ReportModel::class.java].report.observe(this) { text.text = it }
    }
}

/**
 * The report, built once on a background thread that outlives a recreated
 * activity (a thread of the activity's own started a second run, GPU, NPU
 * and cache writes included, at each rotation). Every failure is shown,
 * not only an Exception: a native library that did not load
 * (UnsatisfiedLinkError) or a model too large for the heap (OutOfMemoryError)
 * ended the process.
 */
class ReportModel(application: Application) : AndroidViewModel(application) {
    private val result = MutableLiveData<String>()
    val report: LiveData<String> get() = result

    init {
        Thread {
            val text = try { buildReport(getApplication()) } catch (e: Throwable) { "Failed: $e" }
            result.postValue(text)
        }.apply { name = "tfdc-demo-report"; start() }
    }
}

private fun buildReport(context: Context): String {
    val packed = TfdcModel.readAsset(context, Digits.MODEL_ASSET)
    val decodedSize = if (TfdcDecoder.isPacked(packed)) TfdcDecoder.decodedSize(packed) else packed.size.toLong()
    val digits = Digits.load(context)
    val sb = StringBuilder()
    sb.append("${Digits.MODEL_ASSET}\n")
    sb.append("packed ${packed.size} B, decoded $decodedSize B (${fmt(decodedSize.toDouble() / packed.size)}x)\n")
    sb.append("${digits.count} bundled test digits\n")
    sb.append("runtime: ${RUNTIME.label}, Android API ${Build.VERSION.SDK_INT}\n")
    sb.append("default order here: " +
        AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, RUNTIME).order.joinToString(" → ") + "\n\n")
    sb.append(String.format(Locale.US, "%-10s %6s %8s %8s %8s %8s\n", "accel", "acc%", "decode", "init", "first", "median"))
    for (report in runAll(context, digits)) {
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
