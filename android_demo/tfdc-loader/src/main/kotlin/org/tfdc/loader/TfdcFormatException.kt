package org.tfdc.loader

import java.io.IOException

/**
 * A file the C decoder rejected: truncated, corrupted (bad CRC), not a
 * tfdc-packed model, or too large. [message] starts with the decoder's own
 * `tfdc_strerror(status)` text.
 *
 * Args:
 *   status: the negative `tfdc_status` code from tfdc_decode.h.
 */
class TfdcFormatException(val status: Int, detail: String? = null) :
    IOException(
        // Made without the native library too (one that failed to load).
        runCatching { TfdcNative.nativeStrerror(status) }.getOrDefault("tfdc decoder error") +
            " (tfdc status $status)" + (if (detail != null) ": $detail" else ""),
    )
