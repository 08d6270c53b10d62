package org.tfdc.loader

/**
 * Accelerators a model can run on. [GPU] is the GPU delegate (Interpreter)
 * or LiteRT's GPU accelerator (CompiledModel); [NNAPI] is the Interpreter's
 * NNAPI delegate; [NPU] exists only in the LiteRT CompiledModel API (vendor
 * dispatch: Qualcomm AI Engine Direct, MediaTek NeuroPilot, Google Tensor);
 * [CPU] is XNNPACK and always available.
 */
enum class Accelerator { GPU, NNAPI, NPU, CPU }

/**
 * LiteRT's two Android runtimes and the accelerators each can reach. They
 * ship overlapping classes, so an APK has one (the demo's product flavors).
 */
enum class LiteRtRuntime(val label: String, val accelerators: Set<Accelerator>) {
    /** LiteRT 1.4.x `Interpreter` with the GPU and NNAPI delegates. */
    INTERPRETER("LiteRT 1.4 Interpreter", setOf(Accelerator.GPU, Accelerator.NNAPI, Accelerator.CPU)),

    /** LiteRT 2.x `CompiledModel` (its Interpreter is CPU-only). */
    COMPILED_MODEL("LiteRT 2.x CompiledModel", setOf(Accelerator.GPU, Accelerator.NPU, Accelerator.CPU)),
}

/** Opens a runtime on one accelerator, or throws saying why it cannot. */
fun interface AcceleratorBackend<T> {
    fun open(accelerator: Accelerator): T
}

/**
 * One accelerator considered. [failure] is null for the one that ran;
 * [tried] is false when the policy skipped it without trying (deprecated on
 * this API level, not in this runtime...), with the reason in [failure].
 */
data class FallbackAttempt(val accelerator: Accelerator, val failure: String?, val tried: Boolean = true) {
    override fun toString(): String = when {
        failure == null -> "$accelerator: ran"
        tried -> "$accelerator: failed ($failure)"
        else -> "$accelerator: skipped ($failure)"
    }
}

/** A runtime opened by [AcceleratorFallback], and how long opening took. */
data class FallbackOutcome<T>(
    val value: T,
    val accelerator: Accelerator,
    val attempts: List<FallbackAttempt>,
    /** Time of the successful open only. */
    val initMillis: Double,
    /** Time the failed attempts before it took, together. */
    val failedMillis: Double = 0.0,
)

/** Every accelerator in the order failed; [attempts] says why each did. */
class NoAcceleratorException(val attempts: List<FallbackAttempt>) :
    RuntimeException("no accelerator could run the model: " +
        attempts.joinToString("; ") { "${it.accelerator}: ${it.failure}" })

/**
 * Tries accelerators in [order] until one opens, recording why the others
 * failed (missing GPU driver, device not in the GPU compatibility list, no
 * NPU dispatch library, unsupported ops...) and why the policy skipped some
 * without trying ([skipped], reported first). Pure JVM, so the policy is
 * tested on the host; the Android backends live in InterpreterFactory /
 * CompiledModelFactory.
 *
 * [forDevice] is the default policy for a device's API level and runtime:
 * - API 35+ (Android 15, NNAPI deprecated): GPU -> NPU -> CPU. NNAPI is not
 *   tried: vendors ship no new drivers and it may run on its CPU reference
 *   path, slower than XNNPACK.
 * - API 31-34: GPU -> NPU -> NNAPI -> CPU (LiteRT's NPU path needs Android 12).
 * - API 27-30: GPU -> NNAPI -> CPU (NNAPI delegate since Android 8.1).
 * - older: GPU -> CPU.
 * Accelerators the app's runtime cannot reach are skipped with that reason.
 *
 * Args:
 *   order: accelerators to try, best first. Default GPU -> NNAPI -> CPU.
 *   skipped: accelerators left out on purpose, with why (reported, not tried).
 *
 * Example:
 *
 *     val policy = AcceleratorFallback.forDevice(Build.VERSION.SDK_INT, LiteRtRuntime.COMPILED_MODEL)
 *     val outcome = policy.open { acc -> openCompiledModel(acc) }
 *     Log.i("tfdc", "running on ${outcome.accelerator}; ${outcome.attempts}")
 */
class AcceleratorFallback(
    val order: List<Accelerator> = listOf(Accelerator.GPU, Accelerator.NNAPI, Accelerator.CPU),
    val skipped: List<FallbackAttempt> = emptyList(),
) {
    init {
        require(order.isNotEmpty()) { "order must name at least one accelerator" }
        require(skipped.none { it.tried || it.failure == null }) { "skipped entries need a reason and tried = false" }
    }

    fun <T> open(backend: AcceleratorBackend<T>): FallbackOutcome<T> {
        val attempts = ArrayList<FallbackAttempt>(skipped)
        var failedMillis = 0.0
        for (accelerator in order) {
            val start = System.nanoTime()
            try {
                val value = backend.open(accelerator)
                attempts += FallbackAttempt(accelerator, null)
                return FallbackOutcome(value, accelerator, attempts, (System.nanoTime() - start) / 1e6, failedMillis)
            } catch (e: Exception) {
                attempts += FallbackAttempt(accelerator, describe(e))
            } catch (e: LinkageError) {
                // A delegate whose native library is absent from the APK or
                // the device (UnsatisfiedLinkError) is a reason to fall back.
                attempts += FallbackAttempt(accelerator, describe(e))
            }
            failedMillis += (System.nanoTime() - start) / 1e6
        }
        throw NoAcceleratorException(attempts)
    }

    private fun describe(e: Throwable): String = "${e.javaClass.simpleName}: ${e.message ?: "(no message)"}"

    companion object {
        /** Android 8.1: the first API level with NNAPI. */
        const val NNAPI_MIN_SDK = 27

        /** Android 12: LiteRT's NPU accelerator checks SoCs from here on. */
        const val NPU_MIN_SDK = 31

        /** Android 15: NNAPI deprecated. */
        const val NNAPI_DEPRECATED_SDK = 35

        /** The default policy for a device at API level [sdkInt] running [runtime]. */
        @JvmStatic
        fun forDevice(sdkInt: Int, runtime: LiteRtRuntime): AcceleratorFallback {
            val order = ArrayList<Accelerator>()
            val skipped = ArrayList<FallbackAttempt>()
            fun consider(accelerator: Accelerator, notOnThisDevice: String?) {
                val reason = notOnThisDevice
                    ?: if (accelerator !in runtime.accelerators) "not in this app's runtime (${runtime.label})" else null
                if (reason == null) order += accelerator else skipped += FallbackAttempt(accelerator, reason, tried = false)
            }
            consider(Accelerator.GPU, null)
            consider(Accelerator.NPU, if (sdkInt < NPU_MIN_SDK) "LiteRT NPU needs Android 12 (API $NPU_MIN_SDK), device is API $sdkInt" else null)
            consider(Accelerator.NNAPI, when {
                sdkInt >= NNAPI_DEPRECATED_SDK -> "NNAPI is deprecated since Android 15 (API $NNAPI_DEPRECATED_SDK), device is API $sdkInt"
                sdkInt < NNAPI_MIN_SDK -> "NNAPI needs Android 8.1 (API $NNAPI_MIN_SDK), device is API $sdkInt"
                else -> null
            })
            consider(Accelerator.CPU, null)
            return AcceleratorFallback(order, skipped)
        }
    }
}
