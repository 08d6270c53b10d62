package org.tfdc.loader

import android.content.Context
import java.io.File
import java.nio.ByteBuffer

/**
 * Android entry point: loads a (packed or plain) `.tflite` from the APK's
 * assets. The Android-framework half of the loader; the decoding itself is
 * the pure-JVM [TfdcDecoder].
 *
 * Example:
 *
 *     val buffer = TfdcModel.load(context, "lenet_300_100.tflite")
 *     val interpreter = org.tensorflow.lite.Interpreter(buffer)
 */
object TfdcModel {
    /** A direct, native-order buffer the TFLite `Interpreter` accepts. */
    @JvmStatic
    fun load(context: Context, assetName: String): ByteBuffer = loadDecoded(context, assetName).buffer

    /** As [load], with sizes and the decode time. */
    @JvmStatic
    fun loadDecoded(context: Context, assetName: String): DecodedModel = TfdcDecoder.load(readAsset(context, assetName))

    /**
     * A decoded *file* for path-based loaders (LiteRT `CompiledModel`):
     * decoded once into `cacheDir/tfdc/` under the SHA-256 of the packed
     * bytes, reused by later launches and by later calls.
     */
    @JvmStatic
    fun cachedFile(context: Context, assetName: String): DecodedModelCache.Entry =
        DecodedModelCache(File(context.cacheDir, "tfdc")).fileFor(readAsset(context, assetName))

    @JvmStatic
    fun readAsset(context: Context, assetName: String): ByteArray =
        context.assets.open(assetName).use { it.readBytes() }
}
