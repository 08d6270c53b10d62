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
     * decoded once into `cacheDir/tfdc/<asset name>/` under the SHA-256 of
     * the packed bytes, reused by later launches and by later calls. A
     * directory per asset: the files of the asset's older versions (an app
     * update) are deleted then, never another asset's.
     */
    @JvmStatic
    fun cachedFile(context: Context, assetName: String): DecodedModelCache.Entry {
        val directory = File(File(context.cacheDir, "tfdc"), assetName.replace('/', '_'))
        val cache = DecodedModelCache(directory)
        return cache.fileFor(readAsset(context, assetName)).also { cache.evictAllBut(it) }
    }

    @JvmStatic
    fun readAsset(context: Context, assetName: String): ByteArray =
        context.assets.open(assetName).use { it.readBytes() }
}
