package org.tfdc.loader

/**
 * Accelerators a model can run on. [GPU] and [NNAPI] are the classic
 * Interpreter delegates; [NPU] exists only in the LiteRT CompiledModel API;
 * [CPU] is XNNPACK and always available.
 */
enum class Accelerator { GPU, NNAPI, NPU, CPU }

/** Opens a runtime on one accelerator, or throws saying why it cannot. */
fun interface AcceleratorBackend<T> {
    fun open(accelerator: Accelerator): T
}

/** One accelerator tried; [failure] is null for the one that worked. */
data class FallbackAttempt(val accelerator: Accelerator, val failure: String?)

/** A runtime opened by [AcceleratorFallback], and how long opening took. */
data class FallbackOutcome<T>(
    val value: T,
    val accelerator: Accelerator,
    val attempts: List<FallbackAttempt>,
    /** Time of the successful open only (failed attempts excluded). */
    val initMillis: Double,
)

/** Every accelerator in the order failed; [attempts] says why each did. */
class NoAcceleratorException(val attempts: List<FallbackAttempt>) :
    RuntimeException("no accelerator could run the model: " +
        attempts.joinToString("; ") { "${it.accelerator}: ${it.failure}" })

/**
 * Tries accelerators in [order] until one opens, recording why the others
 * failed (missing GPU driver, device not in the GPU compatibility list,
 * NNAPI unavailable, unsupported ops...). Pure JVM, so the policy is tested
 * on the host; the Android backends live in InterpreterFactory /
 * CompiledModelFactory.
 *
 * Args:
 *   order: accelerators to try, best first. Default GPU -> NNAPI -> CPU.
 *
 * Example:
 *
 *     val outcome = AcceleratorFallback().open { acc -> openInterpreter(acc) }
 *     Log.i("tfdc", "running on ${outcome.accelerator}; skipped: ${outcome.attempts}")
 */
class AcceleratorFallback(
    val order: List<Accelerator> = listOf(Accelerator.GPU, Accelerator.NNAPI, Accelerator.CPU),
) {
    init {
        require(order.isNotEmpty()) { "order must name at least one accelerator" }
    }

    fun <T> open(backend: AcceleratorBackend<T>): FallbackOutcome<T> {
        val attempts = ArrayList<FallbackAttempt>()
        for (accelerator in order) {
            val start = System.nanoTime()
            try {
                val value = backend.open(accelerator)
                attempts += FallbackAttempt(accelerator, null)
                return FallbackOutcome(value, accelerator, attempts, (System.nanoTime() - start) / 1e6)
            } catch (e: Exception) {
                attempts += FallbackAttempt(accelerator, describe(e))
            } catch (e: LinkageError) {
                // A delegate whose native library is absent from the APK or
                // the device (UnsatisfiedLinkError) is a reason to fall back.
                attempts += FallbackAttempt(accelerator, describe(e))
            }
        }
        throw NoAcceleratorException(attempts)
    }

    private fun describe(e: Throwable): String = "${e.javaClass.simpleName}: ${e.message ?: "(no message)"}"
}
