package org.tfdc.loader

/**
 * What it cost to get a packed model to its first answer, in milliseconds.
 *
 * Args:
 *   decodeMillis: tfdc decode (0 when a cached decoded file was reused).
 *   initMillis: interpreter / compiled-model creation incl. delegate init.
 *   firstInferenceMillis: the first run (delegates compile kernels lazily,
 *     so this is usually much slower than later runs).
 */
data class LoadTimings(
    val decodeMillis: Double,
    val initMillis: Double,
    val firstInferenceMillis: Double,
) {
    val totalMillis: Double get() = decodeMillis + initMillis + firstInferenceMillis
}

/**
 * The outcome of loading a model on an accelerator, with the fallback trail.
 *
 * Args:
 *   accelerator: the one that actually runs the model.
 *   timings: see [LoadTimings].
 *   attempts: every accelerator skipped or tried, in order, with why it
 *     did not run.
 */
data class LoadResult(
    val accelerator: Accelerator,
    val timings: LoadTimings,
    val attempts: List<FallbackAttempt>,
) {
    /**
     * "NNAPI: skipped (<why>); GPU: failed (<why>)" for the accelerators that
     * did not run: skipped by the policy, or tried and failed.
     */
    val fallbackReason: String
        get() = attempts.filter { it.failure != null }.joinToString("; ")
}
