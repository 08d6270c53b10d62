pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "tfdc-android-demo"
include(":tfdc-loader", ":app")

// NPU runtime libraries (README.md, "NPU setup"): LiteRT ships them as Play
// feature modules in litert_npu_runtime_libraries_jit.zip; they are included
// only once that zip has been unzipped next to this file.
val npuRuntime = file("litert_npu_runtime_libraries")
npuRuntime.listFiles()?.filter { it.resolve("build.gradle.kts").isFile }?.sortedBy { it.name }?.forEach {
    include(":litert_npu_runtime_libraries:${it.name}")
}
