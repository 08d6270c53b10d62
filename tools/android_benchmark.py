"""Time a packed model on an Android device (adb) or, with --host, here.

Device mode (a phone on `adb devices`):

    python tools/android_benchmark.py --model android_demo/app/src/main/assets/lenet_300_100.tflite \
        --benchmark-model /path/to/android_aarch64_benchmark_model

pushes the packed model, the NDK-built `tfdc_decode_bench` (android_demo/bench,
built here with $ANDROID_NDK_HOME's CMake toolchain, or given by --decoder-cli)
and TFLite's `benchmark_model` to /data/local/tmp/tfdc, times decoding on the
device, decodes once, then runs `benchmark_model` on the decoded model with
`--use_gpu=true`, `--use_nnapi=true` and CPU (XNNPACK) threads, and prints one
table. With no adb or no device it says so and exits with status 2.

Host mode (`--host`): the same measurements on this machine: the native
decoder (`tfdc_decode_bench`, built with CMake from tfdc/native), `tfdc.decode`
(Python), and `python -m ai_edge_litert.tools.benchmark_litert_model` on the
decoded model (CPU, 1 and 2 threads); writes the table to docs/BENCHMARKS.md
(section `android_host`).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BENCH_SRC = os.path.join(ROOT, "android_demo", "bench")
DEFAULT_MODEL = os.path.join(ROOT, "android_demo", "app", "src", "main", "assets", "lenet_300_100.tflite")
DEVICE_DIR = "/data/local/tmp/tfdc"


def build_decoder_cli(build_dir, toolchain_args=()):
    subprocess.run(["cmake", "-S", BENCH_SRC, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", *toolchain_args],
                   check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", build_dir], check=True, capture_output=True, text=True)
    return os.path.join(build_dir, "tfdc_decode_bench")


def ensure_model(path):
    if os.path.exists(path):
        return path
    print(f"{path} missing: running android_demo/make_assets.py (1 epoch) to create it")
    subprocess.run([sys.executable, os.path.join(ROOT, "android_demo", "make_assets.py"), "--epochs", "1", "--train", "10000"],
                   check=True)
    return path


# ---------------------------------------------------------------- host mode

def litert_benchmark(model, threads, runs):
    """`benchmark_litert_model` on CPU; returns its result JSON (ms)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "result.json")
        done = subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                               f"--model={model}", "--use_cpu", f"--num_threads={threads}",
                               f"--num_runs={runs}", "--warmup_runs=20", f"--result_json={out}"],
                              capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"benchmark_litert_model failed: {done.stderr[-2000:]}")
        return json.load(open(out))


def host(args):
    import tfdc
    from tools.benchmarks_md import markdown_table, write_section

    model = ensure_model(args.model)
    packed = open(model, "rb").read()
    with tempfile.TemporaryDirectory() as d:
        cli = build_decoder_cli(os.path.join(d, "build"))
        decoded_path = os.path.join(d, "decoded.tflite")
        # Interleave native and Python decoding (A, B, A, B...): the machine is shared.
        native_ms, python_ms = [], []
        for _ in range(args.rounds):
            out = subprocess.run([cli, model, str(args.repeats), decoded_path], check=True,
                                 capture_output=True, text=True).stdout
            native = json.loads(out)
            native_ms.append(native["median_ms"])
            t0 = time.perf_counter()
            decoded = tfdc.decode(packed)
            python_ms.append((time.perf_counter() - t0) * 1e3)
        assert open(decoded_path, "rb").read() == decoded, "native and Python decoders disagree"
        rows = [["decode, native C (tfdc_decode_bench)", f"{statistics.median(native_ms):.3f}", "", "",
                 f"median of {args.rounds} medians of {args.repeats}"],
                ["decode, Python (tfdc.decode)", f"{statistics.median(python_ms):.3f}", "", "",
                 f"median of {args.rounds}"]]
        for threads in args.threads:
            lat = litert_benchmark(decoded_path, threads, args.runs)["latency"]
            rows.append([f"LiteRT CPU (XNNPACK), {threads} thread(s)", _fmt(lat.get("median_ms")),
                         _fmt(lat.get("init_ms")), _fmt(lat.get("warmup_first_ms")),
                         f"benchmark_litert_model, median of {args.runs} runs"])
    headers = ["step", "time (ms)", "init (ms)", "first run (ms)", "notes"]
    sizes = (f"Model: `{os.path.relpath(model, ROOT)}`, packed {len(packed):,} B, "
             f"decoded {len(decoded):,} B ({len(decoded) / len(packed):.2f}x).")
    table = markdown_table(headers, rows)
    print(sizes)
    print(table)
    if args.write:
        write_section("android_host", "Android loader path, measured on the host (--host)",
                      sizes + "\n\n" + table + "\n\nNo Android device was attached: these are host "
                      "numbers for the same code paths (C decoder, LiteRT CPU). Device numbers come "
                      "from running this tool without --host with a phone on adb.")


def _fmt(x):
    # benchmark_litert_model rounds its JSON to 0.01 ms.
    return f"{float(x):.2f}" if isinstance(x, (int, float)) else "n/a"


# -------------------------------------------------------------- device mode

def adb(*argv, check=True):
    return subprocess.run(["adb", *argv], check=check, capture_output=True, text=True)


def device_serials():
    if shutil.which("adb") is None:
        return None
    out = adb("devices").stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip().endswith("device")]


BENCH_LINE = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                        r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)")


def device(args):
    serials = device_serials()
    if serials is None:
        print("adb not found on PATH: install Android platform-tools, or use --host.", file=sys.stderr)
        return 2
    if not serials:
        print("no Android device on adb (`adb devices` lists none): connect one with USB debugging, "
              "or use --host.", file=sys.stderr)
        return 2
    if not args.benchmark_model:
        print("--benchmark-model is required: TFLite's benchmark_model binary for the device's ABI.",
              file=sys.stderr)
        return 2
    model = ensure_model(args.model)
    cli = args.decoder_cli
    if cli is None:
        ndk = os.environ.get("ANDROID_NDK_HOME") or os.environ.get("ANDROID_NDK_ROOT")
        if not ndk:
            print("set ANDROID_NDK_HOME (or pass --decoder-cli) to build tfdc_decode_bench for the device.",
                  file=sys.stderr)
            return 2
        cli = build_decoder_cli(os.path.join(tempfile.mkdtemp(), "build-android"), [
            f"-DCMAKE_TOOLCHAIN_FILE={ndk}/build/cmake/android.toolchain.cmake",
            f"-DANDROID_ABI={args.abi}", "-DANDROID_PLATFORM=26"])
    adb("shell", "mkdir", "-p", DEVICE_DIR)
    for local, name in [(model, "model.packed.tflite"), (cli, "tfdc_decode_bench"),
                        (args.benchmark_model, "benchmark_model")]:
        adb("push", local, f"{DEVICE_DIR}/{name}")
    adb("shell", "chmod", "755", f"{DEVICE_DIR}/tfdc_decode_bench", f"{DEVICE_DIR}/benchmark_model")
    decode = json.loads(adb("shell", f"{DEVICE_DIR}/tfdc_decode_bench", f"{DEVICE_DIR}/model.packed.tflite",
                            str(args.repeats), f"{DEVICE_DIR}/model.tflite").stdout.strip().splitlines()[-1])
    rows = [["decode, native C", f"{decode['median_ms']:.3f}", "", "", f"median of {args.repeats}"]]
    variants = [("GPU delegate", ["--use_gpu=true"]), ("NNAPI delegate", ["--use_nnapi=true"])]
    variants += [(f"CPU XNNPACK, {t} thread(s)", [f"--num_threads={t}"]) for t in args.threads]
    for label, flags in variants:
        out = adb("shell", f"{DEVICE_DIR}/benchmark_model", f"--graph={DEVICE_DIR}/model.tflite",
                  f"--num_runs={args.runs}", *flags, check=False)
        m = BENCH_LINE.search(out.stdout + out.stderr)
        if m is None:
            rows.append([label, "failed", "", "", (out.stderr or out.stdout).strip().splitlines()[-1:]])
            continue
        init, first, _, avg = (float(g) / 1e3 for g in m.groups())
        rows.append([label, f"{avg:.3f}", f"{init:.3f}", f"{first:.3f}", f"{args.runs} runs"])
    from tools.benchmarks_md import markdown_table
    print(f"device {serials[0]}: packed {decode['packed_bytes']:,} B -> decoded {decode['decoded_bytes']:,} B")
    print(markdown_table(["step", "avg (ms)", "init (ms)", "first (ms)", "notes"], rows))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="packed .tflite (default: the demo app's asset)")
    parser.add_argument("--host", action="store_true", help="measure on this machine instead of a device")
    parser.add_argument("--benchmark-model", help="TFLite benchmark_model binary for the device")
    parser.add_argument("--decoder-cli", help="an already NDK-built tfdc_decode_bench")
    parser.add_argument("--abi", default="arm64-v8a")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=200, help="inference runs per benchmark")
    parser.add_argument("--repeats", type=int, default=50, help="decodes per native timing")
    parser.add_argument("--rounds", type=int, default=7, help="host: interleaved native/Python rounds")
    parser.add_argument("--no-write", dest="write", action="store_false", help="host: do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.host:
        host(args)
        return 0
    return device(args)


if __name__ == "__main__":
    sys.exit(main())
