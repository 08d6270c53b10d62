plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.tfdc.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.tfdc.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }

    flavorDimensions += "runtime"
    productFlavors {
        create("interpreter") { dimension = "runtime"; isDefault = true }
        create("compiledModel") { dimension = "runtime"; applicationIdSuffix = ".compiled" }
    }

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
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
}
