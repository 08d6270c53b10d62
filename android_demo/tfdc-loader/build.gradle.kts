plugins {
    alias(libs.plugins.android.library)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.tfdc.loader"
    compileSdk = 35
    ndkVersion = "27.2.12479018"

    defaultConfig {
        minSdk = 26
        consumerProguardFiles("consumer-rules.pro")
        externalNativeBuild {
            cmake {
                cFlags += listOf("-std=c99", "-O2", "-Wall")
            }
        }
    }

    externalNativeBuild {
        cmake {
            // Builds the repository's own tfdc/native sources (no copy).
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }

    // LiteRT ships the GPU/NNAPI Interpreter delegates in its 1.4.x line and
    // the CompiledModel API (CPU/GPU/NPU) in its 2.x line, with overlapping
    // classes: one flavor per runtime instead of both in one APK.
    flavorDimensions += "runtime"
    productFlavors {
        create("compiledModel") { dimension = "runtime"; isDefault = true }
        create("interpreter") { dimension = "runtime" }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    "interpreterApi"(libs.litert.interpreter)
    "interpreterApi"(libs.litert.gpu)
    "interpreterApi"(libs.litert.gpu.api)
    "compiledModelApi"(libs.litert.compiled)
}
