#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine:
# g++ (which also builds tfdc's fused clustering op against TensorFlow),
# the C toolchain extras (clang + libFuzzer, sanitizer runtimes, valgrind,
# googletest, zlib), a JDK and kotlinc for the JNI/Kotlin loader tests, and
# the Python package itself with its test extras. Safe to re-run: it only
# installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }
need cmake cmake
need g++ g++
need clang clang
need valgrind valgrind
need javac openjdk-17-jdk-headless
need npm npm
[ -d /usr/src/googletest ] || apt_pkgs+=(googletest libgtest-dev)
[ -f /usr/include/zlib.h ] || apt_pkgs+=(zlib1g-dev)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 \
  || ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-aarch64.a >/dev/null 2>&1 \
  || apt_pkgs+=(libclang-rt-dev)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install_dev_deps: apt-get install ${apt_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  else
    echo "install_dev_deps: missing system packages (need root + apt-get): ${apt_pkgs[*]}" >&2
  fi
fi

# The npm package keeps kotlinc in its own bin/ (tests/test_android_jvm.py looks there too).
if ! command -v kotlinc >/dev/null 2>&1 \
   && [ ! -x "$(npm root -g 2>/dev/null)/kotlin-compiler/bin/kotlinc" ]; then
  echo "install_dev_deps: npm install -g kotlin-compiler"
  npm install -g --silent kotlin-compiler >/dev/null 2>&1 || echo "install_dev_deps: kotlinc unavailable" >&2
fi

python -m pip install -q --disable-pip-version-check -e ".[test,demo]"
