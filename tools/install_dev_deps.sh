#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine:
# g++ (which also builds tfdc's fused clustering op against TensorFlow),
# the C toolchain extras (clang + libFuzzer, sanitizer runtimes, valgrind,
# googletest, zlib), the ARM cross compilers, qemu-user and a static zlib for
# each ARM ABI (tests/test_native_arm.py), a JDK and kotlinc for the
# JNI/Kotlin loader tests, and the Python package itself with its test
# extras. Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }
need cmake cmake
need g++ g++
need clang clang
need valgrind valgrind
need javac openjdk-17-jdk-headless
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
need qemu-aarch64 qemu-user
need npm npm
need brotli brotli  # tools/format_benchmark.py compares the packed file with them
need zstd zstd
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

# A static zlib for each ARM cross toolchain, so that the ARM builds of the
# decoder link whatever tfdc/native/CMakeLists.txt links (zlib is the one
# dependency allowed besides libc). Debian packages no cross zlib, and
# installing zlib1g-dev:arm64 through multiarch drags in a foreign libc6-dev
# that conflicts with the host's; so fetch the foreign zlib1g-dev .deb alone
# and copy its libz.a into the cross toolchain's library directory (zlib.h
# and zconf.h are the same on every architecture and already in
# /usr/include). The foreign architecture is enabled for the download only.
cross_zlib() {  # cross_zlib GNU-TRIPLE DEBIAN-ARCH
  local triple=$1 arch=$2 tmp added=
  [ -d "/usr/$triple/lib" ] && [ ! -f "/usr/$triple/lib/libz.a" ] || return 0
  if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
    echo "install_dev_deps: no static zlib for $triple (need root + apt-get)" >&2
    return 0
  fi
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch" && added=1
    apt-get update -qq >/dev/null 2>&1 || true  # a foreign list may lag its mirror
  fi
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt downloads as the _apt user
  if (cd "$tmp" && apt-get download -qq "zlib1g-dev:$arch" >/dev/null 2>&1) \
     && dpkg-deb -x "$tmp"/zlib1g-dev_*_"$arch".deb "$tmp/x" \
     && [ -f "$tmp/x/usr/lib/$triple/libz.a" ]; then
    cp "$tmp/x/usr/lib/$triple/libz.a" "/usr/$triple/lib/libz.a"
    echo "install_dev_deps: static zlib for $triple -> /usr/$triple/lib/libz.a"
  else
    echo "install_dev_deps: could not fetch zlib1g-dev:$arch" >&2
  fi
  rm -rf "$tmp"
  if [ -n "$added" ]; then
    dpkg --remove-architecture "$arch" && apt-get update -qq >/dev/null 2>&1 || true
  fi
}
cross_zlib aarch64-linux-gnu arm64
cross_zlib arm-linux-gnueabihf armhf

# The npm package keeps kotlinc in its own bin/ (tests/test_android_jvm.py looks there too).
if ! command -v kotlinc >/dev/null 2>&1 \
   && [ ! -x "$(npm root -g 2>/dev/null)/kotlin-compiler/bin/kotlinc" ]; then
  echo "install_dev_deps: npm install -g kotlin-compiler"
  npm install -g --silent kotlin-compiler >/dev/null 2>&1 || echo "install_dev_deps: kotlinc unavailable" >&2
fi

python -m pip install -q --disable-pip-version-check -e ".[test,demo]"
