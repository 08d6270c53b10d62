package org.tfdc.loader

/**
 * What it cost to get a packed model to its first answer, in milliseconds.
 *
 * Args:
 *   decodeMillis: tfdc decode; with a cached decoded file
 *     ([DecodedModelCache]), the time to find and check it on reuse.
 *   initMillis: interpreter / compiled-model creation incl. delegate init,
 *     on the accelerator that ran.
 *   firstInferenceMillis: the first run (delegates compile kernels lazily,
 *     so this is usually much slower than later runs).
 *   fallbackMillis: what the accelerators tried before it spent failing
 *     (a GPU driver that refuses the model may take hundreds of ms).
 */
data class LoadTimings(
    val decodeMillis: Double,
    val initMillis: Double,
    val firstInferenceMillis: Double,
    val fallbackMillis: Double = 0.0,
) {
    /** The time to the first answer: every part above. */
    val totalMillis: Double get() = decodeMillis + fallbackMillis + initMillis + firstInferenceMillis
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
