plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

// LiteRT's NPU runtime feature modules, present once README.md's "NPU setup"
// is done (settings.gradle.kts includes the same directories).
val npuRuntimeModules = rootProject.file("litert_npu_runtime_libraries").listFiles()
    ?.filter { it.resolve("build.gradle.kts").isFile }?.map { it.name }?.sorted() ?: emptyList()

android {
    namespace = "org.tfdc.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.tfdc.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        // The decoder is tested on arm64 and armv7 (tests/test_native_arm.py);
        // LiteRT's NPU libraries exist for arm64-v8a only.
        ndk { abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64") }
    }

    // compiledModel (LiteRT 2.x: GPU -> NPU -> CPU) is the default: the path
    // for Android 15+, where NNAPI is deprecated. interpreter (LiteRT 1.4.x:
    // GPU -> NNAPI -> CPU) serves older devices through NNAPI.
    flavorDimensions += "runtime"
    productFlavors {
        create("compiledModel") { dimension = "runtime"; isDefault = true }
        create("interpreter") { dimension = "runtime"; applicationIdSuffix = ".interpreter" }
    }

    // NPU runtime libraries as on-install feature modules (as in LiteRT's
    // kotlin_npu/android_jit sample); Qualcomm's are loaded from files, which
    // needs uncompressed, extracted native libraries.
    dynamicFeatures += npuRuntimeModules.filter { it != "runtime_strings" }
        .map { ":litert_npu_runtime_libraries:$it" }
    packaging { jniLibs { useLegacyPackaging = true } }

    // The packed model is already entropy-coded: storing it uncompressed
    // keeps the APK honest about its size and lets it be read without inflate.
    androidResources { noCompress += "tflite" }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    implementation(project(":tfdc-loader"))
    if ("runtime_strings" in npuRuntimeModules) {
        "compiledModelImplementation"(project(":litert_npu_runtime_libraries:runtime_strings"))
    }
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.lifecycle.viewmodel)
    implementation(libs.androidx.lifecycle.livedata)
}
