"""The native decoder on the CPUs Android ships: arm64-v8a and armeabi-v7a.

`tfdc/native/CMakeLists.txt` is built as it stands (whatever sources and
tests it lists) with Debian's cross compilers for aarch64 and 32-bit ARM
(hard-float ARMv7), `-static -Wall -Wextra -Werror`, and its C tests run
under qemu-user through CMake's `CMAKE_CROSSCOMPILING_EMULATOR`. The ARM
`tfdc-decode` CLI then decodes every fuzz-corpus file, corrupted variants
of them, and every packed model the rest of the suite made (recorded by
tests/conftest.py; this module runs last), and must give the x86-64 build's
result byte for byte: the same exit status, the same message, the same
output file. 32-bit ARM is where `size_t` is 32 bits, so the decoder's
overflow checks take other branches there. The JNI bridge of the Android
loader is compiled and linked for both ABIs against JDK 17's headers by
the loader's own CMakeLists (it cannot run here: no ARM JVM).

Needs cmake, gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf and qemu-user
(tools/install_dev_deps.sh installs them); skips with the missing tool named
otherwise.
"""

import concurrent.futures
import dataclasses
import glob
import hashlib
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "tfdc", "native")
JNI_CMAKE = os.path.join(ROOT, "android_demo", "tfdc-loader", "src", "main", "cpp")
CORPUS = sorted(glob.glob(os.path.join(NATIVE, "fuzz", "corpus", "*.tflite")))
CLI = "tfdc-decode"
FLAGS = "-Wall -Wextra -Werror"


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str
    triple: str  # GNU triple: the compiler prefix
    processor: str  # CMAKE_SYSTEM_PROCESSOR
    qemu: str
    android_abi: str
    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    elf_machine: int  # EM_AARCH64 = 183, EM_ARM = 40
    apt: str

    @property
    def cc(self):
        return f"{self.triple}-gcc"


ARCHES = [
    Arch("aarch64", "aarch64-linux-gnu", "aarch64", "qemu-aarch64", "arm64-v8a", 2, 183,
         "gcc-aarch64-linux-gnu"),
    Arch("armv7", "arm-linux-gnueabihf", "arm", "qemu-arm", "armeabi-v7a", 1, 40,
         "gcc-arm-linux-gnueabihf"),
]


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _missing(arch):
    needs = {"cmake": "cmake", arch.cc: arch.apt, arch.qemu: "qemu-user"}
    return [f"{tool} (apt: {pkg})" for tool, pkg in needs.items() if shutil.which(tool) is None]


def _toolchain_file(arch, directory):
    """A CMake toolchain file: cross compiler, static links, warnings as
    errors, and qemu as the emulator ctest runs the test binaries with."""
    path = os.path.join(directory, f"{arch.name}.cmake")
    with open(path, "w") as f:
        f.write(f"set(CMAKE_SYSTEM_NAME Linux)\n"
                f"set(CMAKE_SYSTEM_PROCESSOR {arch.processor})\n"
                f"set(CMAKE_C_COMPILER {arch.cc})\n"
                f"set(CMAKE_C_FLAGS_INIT \"{FLAGS}\")\n"
                f"set(CMAKE_EXE_LINKER_FLAGS_INIT \"-static\")\n"
                # Static libraries only (e.g. a cross libz.a), found in the
                # cross toolchain's own directories.
                f"set(CMAKE_FIND_LIBRARY_SUFFIXES .a)\n"
                f"set(CMAKE_LIBRARY_ARCHITECTURE {arch.triple})\n"
                f"set(CMAKE_FIND_ROOT_PATH /usr/{arch.triple})\n"
                f"set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n"
                f"set(CMAKE_CROSSCOMPILING_EMULATOR {arch.qemu})\n")
    return path


def _build(source, build, *options):
    _run(["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", *options])
    _run(["cmake", "--build", build, "-j2"])
    return build


def _elf_header(path):
    """(class, machine, has PT_INTERP) of an ELF file."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF", path
    elf_class = data[4]
    machine = struct.unpack_from("<H", data, 18)[0]
    if elf_class == 2:
        phoff, = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
    else:
        phoff, = struct.unpack_from("<I", data, 28)
        phentsize, phnum = struct.unpack_from("<HH", data, 42)
    interp = any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3 for i in range(phnum))
    return elf_class, machine, interp


@pytest.fixture(scope="module")
def host_cli(tmp_path_factory):
    """The x86-64 (host) build of the same sources: the reference."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    build = _build(NATIVE, str(tmp_path_factory.mktemp("host_native")),
                   "-DTFDC_BUILD_TESTS=OFF")
    return os.path.join(build, CLI)


_BUILDS = {}  # arch name -> build; pytest may tear the fixture down between params


@pytest.fixture(scope="module", params=ARCHES, ids=[a.name for a in ARCHES])
def arm(request, tmp_path_factory):
    """An ARM build of tfdc/native (library, C tests, CLI) for one ABI."""
    arch = request.param
    missing = _missing(arch)
    if missing:
        pytest.skip(f"{arch.name} cross build needs {', '.join(missing)}; "
                    "tools/install_dev_deps.sh installs them")
    if arch.name not in _BUILDS:
        out = tmp_path_factory.mktemp(f"arm_{arch.name}")
        toolchain = _toolchain_file(arch, str(out))
        build = _build(NATIVE, str(out / "native"), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
        _BUILDS[arch.name] = {"arch": arch, "toolchain": toolchain, "build": build, "dir": out,
                              "cli": os.path.join(build, CLI)}
    return _BUILDS[arch.name]


def _decode(cli, src, dst, emulator=None):
    """(exit status, stdout, stderr, output bytes or None) of one decode."""
    if os.path.exists(dst):
        os.unlink(dst)
    cmd = ([emulator] if emulator else []) + [cli, src, dst]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    out = open(dst, "rb").read() if os.path.exists(dst) else None
    return proc.returncode, proc.stdout, proc.stderr, out


def _compare_all(arm, host_cli, inputs):
    """Decode every input with the ARM and the x86-64 CLI; returns the
    inputs whose results differ, and how many decoded successfully."""
    arch = arm["arch"]
    work = arm["dir"] / "decode"
    work.mkdir(exist_ok=True)

    def one(item):
        name, data = item
        src = str(work / f"{name}.in")
        with open(src, "wb") as f:
            f.write(data)
        host = _decode(host_cli, src, str(work / f"{name}.x86_64"))
        on_arm = _decode(arm["cli"], src, str(work / f"{name}.{arch.name}"), arch.qemu)
        os.unlink(src)
        for suffix in ("x86_64", arch.name):
            if os.path.exists(work / f"{name}.{suffix}"):
                os.unlink(work / f"{name}.{suffix}")
        # Messages name the input path, which is the same for both runs.
        return name, host == on_arm, host[0] == 0

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, inputs))
    return [name for name, same, _ in results if not same], sum(ok for _, _, ok in results)


def _variants(name, data, rng):
    """Truncations and bit flips: the error paths must agree too."""
    out = [(f"{name}-cut{n}", data[:n]) for n in sorted({len(data) // 2, len(data) - 1})]
    for k, pos in enumerate(rng.integers(0, len(data), size=2)):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        out.append((f"{name}-flip{k}", bytes(flipped)))
    return out


def test_c_tests_pass_under_qemu(arm):
    arch = arm["arch"]
    for target in glob.glob(os.path.join(arm["build"], "*")):
        if os.path.isfile(target) and os.access(target, os.X_OK):
            elf_class, machine, dynamic = _elf_header(target)
            assert (elf_class, machine) == (arch.elf_class, arch.elf_machine), target
            assert not dynamic, f"{target} is not statically linked"
    assert os.path.exists(arm["cli"])
    # Every 8th meta byte of each corpus file mutated (the x86-64 runs of
    # tests/test_native.py mutate all of them): emulated, each mutant costs
    # ~40x, and the whole mutant loop took ~40 s per architecture.
    env = dict(os.environ, TFDC_TEST_META_STRIDE="8")
    proc = _run(["ctest", "--test-dir", arm["build"], "--output-on-failure", "-V"], env=env)
    # The tests really ran on the emulator (not skipped, not on the host).
    assert f"Test command: {shutil.which(arch.qemu)}" in proc.stdout, proc.stdout[-2000:]
    assert "100% tests passed" in proc.stdout


def test_corpus_decodes_byte_identically_to_x86_64(arm, host_cli):
    assert CORPUS, "no fuzz corpus files"
    rng = np.random.default_rng(0)
    inputs = []
    for path in CORPUS:
        name = os.path.basename(path)[:-len(".tflite")]
        data = open(path, "rb").read()
        inputs += [(name, data)] + _variants(name, data, rng)
    differ, decoded = _compare_all(arm, host_cli, inputs)
    assert not differ, f"{arm['arch'].name} differs from x86-64 on {differ}"
    assert decoded >= len(CORPUS)  # the corpus itself decodes, the variants mostly fail


@pytest.mark.after_suite
def test_every_packed_file_of_the_suite_decodes_byte_identically(arm, host_cli, request):
    """Every packed model other tests made in this session (in memory, or
    written under the session's temporary directory by a subprocess)."""
    from conftest import PACKED_BY_SUITE
    from tfdc.unpack import is_packed

    found = dict(PACKED_BY_SUITE)
    basetemp = request.config._tmp_path_factory.getbasetemp()
    for path in glob.glob(os.path.join(str(basetemp), "**", "*.tflite"), recursive=True):
        if "arm_" in path or not os.path.isfile(path) or os.path.getsize(path) > 64 << 20:
            continue
        data = open(path, "rb").read()
        if is_packed(data):
            found.setdefault(hashlib.sha256(data).hexdigest(), data)
    if not found:
        pytest.skip("no other test packed a model in this session (run the whole suite)")
    inputs = [(digest[:16], data) for digest, data in sorted(found.items())]
    differ, decoded = _compare_all(arm, host_cli, inputs)
    assert not differ, f"{arm['arch'].name} differs from x86-64 on {len(differ)} of {len(inputs)}"
    print(f"{arm['arch'].name}: {len(inputs)} packed files of the suite, {decoded} decoded, "
          "all byte-identical to x86-64")


def _java_include():
    javac = shutil.which("javac")
    if javac is None:
        return None
    home = os.path.dirname(os.path.dirname(os.path.realpath(javac)))
    include = os.path.join(home, "include")
    return include if os.path.exists(os.path.join(include, "jni.h")) else None


def test_jni_bridge_builds_for_the_abi(arm):
    """The loader's libtfdc_jni.so, built by its own (NDK) CMakeLists with
    the cross toolchain and JDK 17's jni.h instead of the NDK's."""
    arch = arm["arch"]
    include = _java_include()
    if include is None:
        pytest.skip("needs a JDK (javac and include/jni.h): apt openjdk-17-jdk-headless")
    build = _build(JNI_CMAKE, str(arm["dir"] / "jni"), f"-DCMAKE_TOOLCHAIN_FILE={arm['toolchain']}",
                   f"-DTFDC_JNI_INCLUDE_DIRS={include};{os.path.join(include, 'linux')}")
    lib = os.path.join(build, "libtfdc_jni.so")
    elf_class, machine, _ = _elf_header(lib)
    assert (elf_class, machine) == (arch.elf_class, arch.elf_machine)
    symbols = _run([f"{arch.triple}-nm", "-D", "--defined-only", lib]).stdout
    kotlin = open(os.path.join(ROOT, "android_demo", "tfdc-loader", "src", "main", "kotlin", "org",
                               "tfdc", "loader", "TfdcNative.kt")).read()
    import re
    externals = re.findall(r"external fun (\w+)", kotlin)
    assert len(externals) >= 4
    for name in externals:  # every Kotlin `external fun` has its JNI symbol
        assert f" Java_org_tfdc_loader_TfdcNative_{name}\n" in symbols, name
    # Android 15+ needs 16 KB-aligned LOAD segments in 64-bit libraries.
    headers = _run([f"{arch.triple}-readelf", "-lW", lib]).stdout
    aligns = [int(line.split()[-1], 16) for line in headers.splitlines()
              if line.strip().startswith("LOAD")]
    assert aligns and all(a >= 16384 for a in aligns), headers
