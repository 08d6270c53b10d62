"""Time a packed model on the Android loader's paths: on a device (adb) or, with --host, here.

For every accelerator path the loader can take it reports the decode time,
the init time (runtime / delegate creation), the first inference and the
median (device: average) inference; a path that cannot run says why.

Device mode (a phone on `adb devices`):

    python tools/android_benchmark.py --model android_demo/app/src/main/assets/lenet_300_100.tflite \
        --benchmark-model /path/to/tflite_benchmark_model \
        --litert-benchmark-model /path/to/litert_benchmark_model --dispatch-library-dir DIR

pushes the packed model, the NDK-built `tfdc_decode_bench` (android_demo/bench,
built here with $ANDROID_NDK_HOME's CMake toolchain, or given by --decoder-cli)
and the benchmark binaries to /data/local/tmp/tfdc, times decoding on the
device, decodes once, then runs:
- LiteRT 2.x's CompiledModel `benchmark_model` (--litert-benchmark-model; the
  `compiledModel` flavor's paths) with `--use_gpu`, with `--use_npu` (vendor
  dispatch / compiler-plugin libraries pushed from --dispatch-library-dir),
  and on CPU;
- TFLite's `benchmark_model` (--benchmark-model; the `interpreter` flavor's
  delegates) with `--use_gpu=true`, `--use_nnapi=true` and CPU threads;
and prints one table. With no adb or no device it says so and exits 2.

Host mode (`--host`), the same paths on this machine: the native decoder
(`tfdc_decode_bench`, built with CMake from tfdc/native) and `tfdc.decode`;
the CompiledModel API in the default order of Android 15+ (GPU -> NPU -> CPU)
through `python -m ai_edge_litert.tools.benchmark_litert_model` (GPU and NPU
forced, without CPU fallback, so a row is that accelerator or nothing: this
machine has neither, and the row gives LiteRT's reason); the Interpreter
(XNNPACK) timed in-process. The GPU and NNAPI delegates exist on Android
only. Writes the table to docs/BENCHMARKS.md (section `android_host`).
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
from tool_args import description, positive_int, run, tflite_file  # noqa: E402
BENCH_SRC = os.path.join(ROOT, "android_demo", "bench")
DEFAULT_MODEL = os.path.join(ROOT, "android_demo", "app", "src", "main", "assets", "lenet_300_100.tflite")
DEVICE_DIR = "/data/local/tmp/tfdc"


def build_decoder_cli(build_dir, toolchain_args=()):
    subprocess.run(["cmake", "-S", BENCH_SRC, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", *toolchain_args],
                   check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", build_dir], check=True, capture_output=True, text=True)
    return os.path.join(build_dir, "tfdc_decode_bench")


def model_file(text):
    """--model: a .tflite file, or the demo app's asset path (made if missing)."""
    return text if os.path.abspath(text) == DEFAULT_MODEL else tflite_file(text)


def ensure_model(path, out_dir=None):
    """`path`, made by make_assets.py if missing, in `out_dir` if given (it
    writes the model, digits.u8 and labels.u8 there) or else in the app's assets."""
    if os.path.exists(path):
        return path
    out_dir = out_dir or os.path.dirname(path)
    print(f"{path} missing: running android_demo/make_assets.py (1 epoch) to create it "
          f"in {out_dir}")
    subprocess.run([sys.executable, os.path.join(ROOT, "android_demo", "make_assets.py"),
                    "--epochs", "1", "--train", "10000", "--out", out_dir], check=True)
    return os.path.join(out_dir, os.path.basename(path))


# ---------------------------------------------------------------- host mode

# The order the loader tries on Android 15+ (AcceleratorFallback.forDevice).
COMPILED_MODEL_ORDER = ["GPU", "NPU", "CPU"]
_FAILED = re.compile(r"(?:ERROR|WARNING|E\d{4}).*?\] (.*(?:Failed|failed|not accelerated|No compiler).*)")


def _litert_failure(stderr, accelerator):
    """LiteRT's reason for a failed CompiledModel creation, from its log:
    its "Failed ..." / "not accelerated" messages, paths shortened to file
    names, repeats and bare source locations dropped (and, but for the NPU,
    the NPU compiler plugins' complaints)."""
    reasons = []
    for line in stderr.splitlines():
        m = _FAILED.search(line)
        text = (m.group(1) if m else line.strip()[2:] if line.strip().startswith("└ ") else "").strip()
        text = re.sub(r"/\S+/([^/\s]+)", r"\1", text)
        if (not text or re.fullmatch(r"(ERROR|WARNING): \[[^\]]*\]", text)
                or text.startswith("Failed to load plugin at")
                or (accelerator != "NPU" and "CompilerPlugin" in text)
                or any(text in r or r in text for r in reasons)):
            continue
        reasons.append(text)
    return "; ".join(reasons[-3:]) or (stderr.strip().splitlines() or ["unknown error"])[-1]


def litert_benchmark(model, accelerator, threads, runs):
    """`benchmark_litert_model` (the CompiledModel API) on one accelerator.
    Returns (latency dict in ms, None) or (None, LiteRT's reason)."""
    flags = {"CPU": ["--use_cpu", f"--num_threads={threads}"],
             "GPU": ["--use_gpu", "--no_cpu"], "NPU": ["--use_npu", "--no_cpu"]}[accelerator]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "result.json")
        done = subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                               f"--model={model}", *flags, f"--num_runs={runs}", "--warmup_runs=20",
                               f"--result_json={out}"], capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(out):
            return None, _litert_failure(done.stderr, accelerator)
        return json.load(open(out))["latency"], None


def interpreter_benchmark(model_bytes, threads, runs):
    """The Interpreter path (XNNPACK) timed in-process: construction +
    allocate_tensors, the first invoke, and the median of `runs` invokes."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
    interpreter.allocate_tensors()
    init_ms = (time.perf_counter() - t0) * 1e3
    inp = interpreter.get_input_details()[0]
    x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    t0 = time.perf_counter()
    interpreter.invoke()
    first_ms = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"init_ms": init_ms, "warmup_first_ms": first_ms, "median_ms": statistics.median(times)}


def host(args):
    import tfdc
    from tools.benchmarks_md import markdown_table, write_section

    # --no-write leaves the app's assets as they are too: a missing model is made in a
    # temporary folder, removed when host() returns.
    assets = tempfile.TemporaryDirectory()
    model = ensure_model(args.model, None if args.write else assets.name)
    packed = open(model, "rb").read()
    with tempfile.TemporaryDirectory() as d:
        cli = build_decoder_cli(os.path.join(d, "build"))
        decoded_path = os.path.join(d, "decoded.tflite")
        # Interleave native and Python decoding (A, B, A, B...): the machine is shared.
        native_ms, python_ms = [], []
        # Warm: the first call imports the extension and NumPy's paths (73 ms
        # of a median of two rounds, against 0.8 ms).
        tfdc.decode(packed)
        for _ in range(args.rounds):
            out = subprocess.run([cli, model, str(args.repeats), decoded_path], check=True,
                                 capture_output=True, text=True).stdout
            native = json.loads(out)
            native_ms.append(native["median_ms"])
            t0 = time.perf_counter()
            decoded = tfdc.decode(packed)
            python_ms.append((time.perf_counter() - t0) * 1e3)
        assert open(decoded_path, "rb").read() == decoded, "native and Python decoders disagree"
        decode_ms = statistics.median(native_ms)
        rows = [["decode", "native C (`tfdc_decode_bench`)", f"{decode_ms:.3f}", "", "", "",
                 f"median of {args.rounds} medians of {args.repeats}"],
                ["decode", "Python (`tfdc.decode`)", f"{statistics.median(python_ms):.3f}", "", "", "",
                 f"median of {args.rounds}"]]
        trail = []
        ran = None
        for accelerator in COMPILED_MODEL_ORDER:
            for threads in (args.threads if accelerator == "CPU" else [None]):
                lat, why = litert_benchmark(decoded_path, accelerator, threads or 1, args.runs)
                label = accelerator if threads is None else f"CPU, {threads} thread(s)"
                if lat is None:
                    rows.append(["CompiledModel", label, f"{decode_ms:.3f}", "–", "–", "–",
                                 f"unavailable: {why}"])
                    trail.append(f"{accelerator}: failed ({why})")
                    continue
                rows.append(["CompiledModel", label, f"{decode_ms:.3f}", _fmt(lat.get("init_ms")),
                             _fmt(lat.get("warmup_first_ms")), _fmt(lat.get("median_ms")),
                             f"`benchmark_litert_model`, median of {args.runs} runs"])
                if ran is None:
                    ran = (label, lat)
                    trail.append(f"{accelerator}: ran")
        if ran is not None:
            label, lat = ran
            rows.append(["CompiledModel", f"auto ({' → '.join(COMPILED_MODEL_ORDER)}) → {label}",
                         f"{decode_ms:.3f}", _fmt(lat.get("init_ms")), _fmt(lat.get("warmup_first_ms")),
                         _fmt(lat.get("median_ms")), "; ".join(trail)])
        for threads in args.threads:
            lat = interpreter_benchmark(decoded, threads, args.runs)
            rows.append(["Interpreter", f"CPU (XNNPACK), {threads} thread(s)", f"{decode_ms:.3f}",
                         _fmt(lat["init_ms"]), _fmt(lat["warmup_first_ms"]), _fmt(lat["median_ms"]),
                         f"in-process, median of {args.runs} invokes"])
    headers = ["runtime", "accelerator", "decode (ms)", "init (ms)", "first inference (ms)",
               "median inference (ms)", "notes"]
    sizes = (f"Model: `{os.path.relpath(model, ROOT)}`, packed {len(packed):,} B, "
             f"decoded {len(decoded):,} B ({len(decoded) / len(packed):.2f}x).")
    table = markdown_table(headers, rows)
    print(sizes)
    print(table)
    if args.write:
        write_section("android_host", "Android loader path, measured on the host (--host)",
                      sizes + "\n\n" + table + "\n\nNo phone is attached here: these are host "
                      "numbers for the loader's code paths — the C decoder, LiteRT's CompiledModel "
                      "API (what the `compiledModel` flavor runs) in the Android 15+ order "
                      "GPU → NPU → CPU, and the Interpreter on XNNPACK. This machine has no GPU "
                      "and no NPU dispatch library, so those rows give LiteRT's own reason and the "
                      "automatic order lands on CPU, as it would on a phone without them. The "
                      "Interpreter's GPU and NNAPI delegates exist on Android only. Decode is the "
                      "same C decode for every row (the `compiledModel` flavor decodes once into "
                      "its file cache and reuses it: 0 ms on later launches). Measured on 2 shared, "
                      "loaded cores: compare rows of one run only. Device numbers come from running "
                      "this tool without --host with a phone on adb.")


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
# LiteRT 2.x benchmark_model (litert/tools/benchmark_litert_model.h) prints ms.
LITERT_INIT = re.compile(r"Model initialization:\s+([\d.]+) ms")
LITERT_FIRST = re.compile(r"Warmup \(first\):\s+([\d.]+) ms")
LITERT_AVG = re.compile(r"Inference \(avg\):\s+([\d.]+) ms")


def _last_line(out):
    return ((out.stderr or "") + (out.stdout or "")).strip().splitlines()[-1:] or ["no output"]


def device(args):
    serials = device_serials()
    if serials is None:
        print("adb not found on PATH: install Android platform-tools, or use --host.", file=sys.stderr)
        return 2
    if not serials:
        print("no Android device on adb (`adb devices` lists none): connect one with USB debugging, "
              "or use --host.", file=sys.stderr)
        return 2
    if not args.benchmark_model and not args.litert_benchmark_model:
        print("--benchmark-model (TFLite, Interpreter delegates) and/or --litert-benchmark-model "
              "(LiteRT 2.x, CompiledModel GPU/NPU/CPU) is required: the binary for the device's ABI.",
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
    pushes = [(model, "model.packed.tflite"), (cli, "tfdc_decode_bench")]
    if args.benchmark_model:
        pushes.append((args.benchmark_model, "benchmark_model"))
    if args.litert_benchmark_model:
        pushes.append((args.litert_benchmark_model, "litert_benchmark_model"))
    for local, name in pushes:
        adb("push", local, f"{DEVICE_DIR}/{name}")
    adb("shell", "chmod", "755", *[f"{DEVICE_DIR}/{name}" for _, name in pushes[1:]])
    if args.dispatch_library_dir:
        adb("push", args.dispatch_library_dir, f"{DEVICE_DIR}/npu")
    decode = json.loads(adb("shell", f"{DEVICE_DIR}/tfdc_decode_bench", f"{DEVICE_DIR}/model.packed.tflite",
                            str(args.repeats), f"{DEVICE_DIR}/model.tflite").stdout.strip().splitlines()[-1])
    decode_ms = f"{decode['median_ms']:.3f}"
    rows = [["decode", "native C", decode_ms, "", "", "", f"median of {args.repeats}"]]
    graph = f"--graph={DEVICE_DIR}/model.tflite"
    if args.litert_benchmark_model:
        npu_libs = ([f"--dispatch_library_path={DEVICE_DIR}/npu", f"--compiler_plugin_library_path={DEVICE_DIR}/npu"]
                    if args.dispatch_library_dir else [])
        variants = [("GPU", ["--use_gpu=true", "--use_cpu=false"]),
                    ("NPU", ["--use_npu=true", "--use_cpu=false", *npu_libs])]
        variants += [(f"CPU, {t} thread(s)", [f"--num_threads={t}"]) for t in args.threads]
        for label, flags in variants:
            out = adb("shell", f"LD_LIBRARY_PATH={DEVICE_DIR}/npu", f"{DEVICE_DIR}/litert_benchmark_model", graph,
                      f"--num_runs={args.runs}", *flags, check=False)
            text = out.stdout + out.stderr
            found = [r.search(text) for r in (LITERT_INIT, LITERT_FIRST, LITERT_AVG)]
            if out.returncode != 0 or not all(found):
                rows.append(["CompiledModel", label, decode_ms, "–", "–", "–", f"unavailable: {_last_line(out)[0]}"])
                continue
            init, first, avg = (float(m.group(1)) for m in found)
            rows.append(["CompiledModel", label, decode_ms, f"{init:.3f}", f"{first:.3f}", f"{avg:.3f}",
                         f"avg of {args.runs} runs (the tool prints no median)"])
    if args.benchmark_model:
        variants = [("GPU delegate", ["--use_gpu=true"]), ("NNAPI delegate", ["--use_nnapi=true"])]
        variants += [(f"CPU XNNPACK, {t} thread(s)", [f"--num_threads={t}"]) for t in args.threads]
        for label, flags in variants:
            out = adb("shell", f"{DEVICE_DIR}/benchmark_model", graph, f"--num_runs={args.runs}", *flags,
                      check=False)
            m = BENCH_LINE.search(out.stdout + out.stderr)
            if m is None:
                rows.append(["Interpreter", label, decode_ms, "–", "–", "–", f"failed: {_last_line(out)[0]}"])
                continue
            init, first, _, avg = (float(g) / 1e3 for g in m.groups())
            rows.append(["Interpreter", label, decode_ms, f"{init:.3f}", f"{first:.3f}", f"{avg:.3f}",
                         f"avg of {args.runs} runs (the tool prints no median)"])
    from tools.benchmarks_md import markdown_table
    print(f"device {serials[0]}: packed {decode['packed_bytes']:,} B -> decoded {decode['decoded_bytes']:,} B")
    print(markdown_table(["runtime", "accelerator", "decode (ms)", "init (ms)", "first inference (ms)",
                          "avg inference (ms)", "notes"], rows))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    # No string default: argparse would check the asset, which is made when missing.
    parser.add_argument("--model", type=model_file,
                        help="packed .tflite (default: the demo app's asset, made if missing)")
    parser.add_argument("--host", action="store_true", help="measure on this machine instead of a device")
    parser.add_argument("--benchmark-model", help="TFLite benchmark_model binary for the device "
                        "(Interpreter: GPU / NNAPI delegates, XNNPACK)")
    parser.add_argument("--litert-benchmark-model", help="LiteRT 2.x benchmark_model binary for the "
                        "device (CompiledModel: GPU, NPU, CPU)")
    parser.add_argument("--dispatch-library-dir", help="NPU vendor dispatch / compiler-plugin libraries "
                        "to push for the NPU row (LiteRT's NPU runtime libraries for the SoC)")
    parser.add_argument("--decoder-cli", help="an already NDK-built tfdc_decode_bench")
    parser.add_argument("--abi", default="arm64-v8a")
    parser.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=positive_int, default=200,
                        help="inference runs per benchmark")
    parser.add_argument("--repeats", type=positive_int, default=50, help="decodes per native timing")
    parser.add_argument("--rounds", type=positive_int, default=7,
                        help="host: interleaved native/Python rounds")
    parser.add_argument("--no-write", dest="write", action="store_false", help="host: do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.model = args.model or DEFAULT_MODEL
    if args.host:
        host(args)
        return 0
    return device(args)


if __name__ == "__main__":
    run(main)
