"""Reproduce the Deep Compression paper's LeNet rows (Tables 1-3) with tfdc, and
run tfmot's prune -> cluster -> QAT pipeline on the same networks side by side.

tfdc: float baseline -> tfdc.GradualPruning (the paper's per-layer
sparsities) -> tfdc.ClusteredFineTuning (the paper's bits) -> tfdc.export;
the test error is measured in the LiteRT interpreter on the *packed* file
(decoded in memory by tfdc.load_interpreter).

tfmot (when its virtualenv exists, see --setup-tfmot): tools/tfmot_pipeline.py
runs in `.venv-tfmot/` (tfmot needs legacy tf_keras and the full tensorflow
wheel, and switches tf.keras process-wide on import) and returns JSON. Each of
its converter variants is reported with raw, gzip -9 and xz -9 sizes, and the
size tfdc's packer gets on the same file.

    python tools/paper_benchmark.py --setup-tfmot     # once: ~600 MB download
    python tools/paper_benchmark.py                   # full run (CPU: long)
    python tools/paper_benchmark.py --quick           # subset + few epochs

Writes out/paper_benchmark/ (models, JSON) and the `paper` section of
docs/BENCHMARKS.md.
"""

import argparse
import gzip
import json
import lzma
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks_md import add_no_write, markdown_table, nothing_to_write, publish  # noqa: E402
from tool_args import comma_list, description, run  # noqa: E402

VENV = os.path.join(ROOT, ".venv-tfmot")
TFMOT_PACKAGES = ["tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy"]

# The paper's Table 1 rows: (error after compression, compressed size, rate).
PAPER = {"lenet_300_100": ("1.58 %", "27 KB", "40x"), "lenet5": ("0.74 %", "44 KB", "39x")}
NAMES = {"lenet_300_100": "LeNet-300-100", "lenet5": "LeNet-5"}

# Epoch budgets for 2 shared CPU cores: (baseline, prune, cluster, qat).
# LeNet-5 costs ~15x more per epoch than LeNet-300-100.
BUDGETS = {
    False: {"lenet_300_100": (10, 10, 3, 1, None), "lenet5": (4, 4, 2, 1, None)},
    True: {"lenet_300_100": (2, 3, 1, 1, 15000), "lenet5": (1, 2, 1, 1, 15000)},
}
# tfdc's own settings (`demo.TFDC_SPARSITY` / `TFDC_BITS`, sparser than the
# paper) get the longer training they need: the `tfdc demo` budget for
# LeNet-300-100, 12 / 10 / 3 epochs for LeNet-5 (about 4 minutes on 2 cores).
OWN_BUDGETS = {
    False: {"lenet_300_100": (15, 18, 3, 0, None), "lenet5": (12, 10, 3, 0, None)},
    True: {"lenet_300_100": (2, 3, 1, 0, 15000), "lenet5": (1, 2, 1, 0, 15000)},
}


def setup_tfmot():
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q"] + TFMOT_PACKAGES,
                   check=True)


def tfmot_args(network, mnist, out, sparsity, bits, budget):
    epochs, prune, cluster, qat, train_size = budget
    args = ["--network", network, "--mnist", mnist, "--out", out,
            "--json", os.path.join(out, f"{network}.json"),
            "--sparsity", json.dumps(sparsity), "--bits", json.dumps(bits),
            "--epochs", str(epochs), "--prune-epochs", str(prune),
            "--cluster-epochs", str(cluster), "--qat-epochs", str(qat)]
    if train_size:
        args += ["--train-size", str(train_size)]
    return args


def run_tfmot(python, args, out, network, rerun):
    """Run tools/tfmot_pipeline.py, or reuse its JSON from an identical run."""
    result_path = os.path.join(out, f"{network}.json")
    args_path = os.path.join(out, f"{network}.args.json")
    log_path = os.path.join(out, f"{network}.log")
    same = os.path.exists(args_path) and json.load(open(args_path)) == args
    # A run with these settings still in progress (its log keeps growing):
    # wait for it instead of starting a second one on the same cores.
    while (same and not rerun and not os.path.exists(result_path) and os.path.exists(log_path)
           and time.time() - os.path.getmtime(log_path) < 600):
        print(f"tfmot {network}: waiting for the run in progress ({log_path})", flush=True)
        time.sleep(30)
    if not rerun and os.path.exists(result_path) and same:
        print(f"tfmot {network}: reusing {os.path.relpath(result_path, ROOT)} "
              "(same settings; --rerun-tfmot to run again)")
        return json.load(open(result_path))
    print(f"tfmot {network}: running tools/tfmot_pipeline.py in {os.path.relpath(python, ROOT)}",
          flush=True)
    if os.path.exists(result_path):
        os.unlink(result_path)
    with open(args_path, "w") as f:
        json.dump(args, f)
    with open(log_path, "w") as log:
        proc = subprocess.run([python, os.path.join(ROOT, "tools", "tfmot_pipeline.py")] + args,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        print(f"tfmot {network}: failed (exit {proc.returncode}), see {log_path}")
        os.unlink(args_path)
        return None
    return json.load(open(result_path))


def run_tfdc(network, data, sparsity, bits, budget, out, tag="tfdc"):
    import keras

    from tfdc import demo
    epochs, prune, cluster, _, train_size = budget
    (xtr, ytr), test = data
    if train_size:
        xtr, ytr = xtr[:train_size], ytr[:train_size]
    keras.utils.set_random_seed(1234)
    model = demo.build_model(network)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    path = os.path.join(out, f"{network}.{tag}.tflite")
    result = demo.compress(model, (xtr, ytr), test, sparsity=sparsity, bits=bits, epochs=epochs,
                           prune_epochs=prune, cluster_epochs=cluster, out_path=path,
                           verbose=2)
    report = result["report"]
    from tfdc.unpack import decode
    decoded = decode(open(path, "rb").read())
    result["plain_bytes"] = report.plain_bytes or len(decoded)
    result["decoded_bytes"] = len(decoded)
    # What general-purpose compressors make of the plain (float) .tflite.
    from tfdc.exporter import convert
    plain = convert(model, batch_size=1)  # as compress() exports it
    result["plain_gzip9"] = len(gzip.compress(plain, 9))
    result["plain_xz9"] = len(lzma.compress(plain, preset=9))
    return result


def packed_size(path):
    """tfdc's packer applied to another converter's `.tflite` file."""
    from tfdc.pack import pack_tflite
    try:
        packed, _ = pack_tflite(open(path, "rb").read())
        return len(packed)
    except Exception as e:  # a report cell, not a failure of the benchmark
        print(f"  pack_tflite({os.path.basename(path)}): {type(e).__name__}: {e}")
        return None


def fmt_b(n):
    return f"{n:,}" if n else "–"


def fmt_s(t):
    return " / ".join(f"{t.get(k, 0):.0f}" for k in ("baseline", "prune", "cluster", "qat")
                      if k in t)


def main():
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--quick", action="store_true", help="15,000 training images, few epochs")
    p.add_argument("--networks", default="lenet_300_100,lenet5", type=comma_list(list(NAMES)),
                   help=f"comma-separated: {', '.join(NAMES)} (default both)")
    p.add_argument("--mnist", default=os.environ.get("TFDC_MNIST"),
                   help="mnist.npz (default $TFDC_MNIST)")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "paper_benchmark"))
    p.add_argument("--setup-tfmot", action="store_true",
                   help=f"create {os.path.relpath(VENV, ROOT)} with tfmot and exit")
    p.add_argument("--no-tfmot", action="store_true", help="tfdc only")
    p.add_argument("--rerun-tfmot", action="store_true",
                   help="run tfmot again even if results with the same settings exist")
    p.add_argument("--tfmot-python", default=os.path.join(VENV, "bin", "python"))
    p.add_argument("--render-only", action="store_true",
                   help="rebuild the table and docs section from the last run's results.json")
    add_no_write(p)
    args = p.parse_args()
    if args.setup_tfmot:
        setup_tfmot()
        return
    if args.render_only:  # no training, no data: the last run's results only
        if not os.path.exists(os.path.join(args.out, "results.json")):
            nothing_to_write(args.out, "run python tools/paper_benchmark.py first")
    elif not args.mnist:
        sys.exit("paper_benchmark: pass --mnist PATH or set TFDC_MNIST to an mnist.npz")
    else:
        from tfdc.datasets import load_mnist_raw
        load_mnist_raw(args.mnist)  # a missing or malformed file: its own message (run)
        args.mnist = os.path.abspath(args.mnist)
    networks = args.networks
    os.makedirs(args.out, exist_ok=True)
    tfmot_out = os.path.join(args.out, "tfmot")
    os.makedirs(tfmot_out, exist_ok=True)
    use_tfmot = not args.no_tfmot and os.path.exists(args.tfmot_python)
    if not args.no_tfmot and not use_tfmot:
        print("tfmot: no virtualenv at .venv-tfmot (run with --setup-tfmot); tfdc only")

    from tfdc import demo
    rows, layer_tables, results, tfdc_runs, own_runs = [], [], {}, {}, {}
    saved = {}
    if args.render_only:
        # Re-render the table from the last run's results.json (no training).
        import tfdc
        saved = json.load(open(os.path.join(args.out, "results.json")))
        if missing := [n for n in networks if n not in saved]:
            # A section without them would delete their documented rows.
            p.error(f"--networks {','.join(networks)}: {args.out}/results.json has no "
                    f"{', '.join(missing)}; pass --networks {','.join(saved) or '...'}")
        for network in networks:
            tfdc_runs[network] = dict(saved[network]["tfdc"])
            tfdc_runs[network]["report"] = tfdc.inspect(
                os.path.join(args.out, f"{network}.tfdc.tflite"))
            if "tfdc_own" in saved[network]:
                own_runs[network] = dict(saved[network]["tfdc_own"])
    # tfdc first for every network, then tfmot (which may be cached).
    for network in networks if not args.render_only else ():
        sparsity, bits = demo.PAPER_SPARSITY[network], demo.PAPER_BITS[network]
        budget = BUDGETS[args.quick][network]
        data = demo.load_dataset("mnist", network, args.mnist)
        print(f"\n=== {NAMES[network]}: tfdc (epochs baseline/prune/cluster = "
              f"{budget[0]}/{budget[1]}/{budget[2]}) ===", flush=True)
        tfdc_runs[network] = run_tfdc(network, data, sparsity, bits, budget, args.out)
        own = OWN_BUDGETS[args.quick][network]
        print(f"\n=== {NAMES[network]}: tfdc with its own settings (epochs "
              f"{own[0]}/{own[1]}/{own[2]}) ===", flush=True)
        own_runs[network] = run_tfdc(network, data, demo.TFDC_SPARSITY[network],
                                     demo.TFDC_BITS[network], own, args.out, tag="tfdc_own")
    for network in networks:
        sparsity, bits = demo.PAPER_SPARSITY[network], demo.PAPER_BITS[network]
        budget = BUDGETS[args.quick][network]
        t = tfdc_runs[network]
        e = t["errors"]
        results[network] = {"tfdc": {k: t[k] for k in ("errors", "times", "packed_bytes",
                                                         "float_bytes", "plain_bytes",
                                                         "plain_gzip9", "plain_xz9")}}
        name = NAMES[network]
        paper = PAPER[network]
        rows.append([name, "paper (Han et al. 2016)", "–", paper[0], "–", "–", "–", paper[1],
                     paper[2], "–"])
        rows.append([name, "**tfdc** prune → cluster → pack", f"{e['float']:.2%}",
                     f"**{e['tflite']:.2%}**", fmt_b(t["plain_bytes"]), fmt_b(t["plain_gzip9"]),
                     fmt_b(t["plain_xz9"]), f"**{t['packed_bytes']:,}**",
                     f"{t['float_bytes'] / t['packed_bytes']:.1f}x", fmt_s(t["times"])])
        if network in own_runs:
            o = own_runs[network]
            results[network]["tfdc_own"] = {k: o[k] for k in (
                "errors", "times", "packed_bytes", "float_bytes", "plain_bytes", "plain_gzip9",
                "plain_xz9")}
            kept = ", ".join(f"{k} {1 - v:.1%}" for k, v in demo.TFDC_SPARSITY[network].items())
            rows.append([name, f"**tfdc**, own settings (kept {kept}; bits "
                         f"{demo.TFDC_BITS[network]})", f"{o['errors']['float']:.2%}",
                         f"**{o['errors']['tflite']:.2%}**", fmt_b(o["plain_bytes"]),
                         fmt_b(o["plain_gzip9"]), fmt_b(o["plain_xz9"]),
                         f"**{o['packed_bytes']:,}**",
                         f"{o['float_bytes'] / o['packed_bytes']:.1f}x", fmt_s(o["times"])])
        layer_tables.append(f"### {name} (tfdc, per layer; cf. the paper's Table "
                            f"{2 if network == 'lenet_300_100' else 3})\n\n"
                            + t["report"].to_markdown())
        if args.render_only:
            m = saved[network].get("tfmot")
        elif use_tfmot:
            m = run_tfmot(args.tfmot_python,
                          tfmot_args(network, args.mnist, tfmot_out, sparsity, bits, budget),
                          tfmot_out, network, args.rerun_tfmot)
        else:
            m = None
        if m:
            results[network]["tfmot"] = m
            best_gz = min(m["variants"].values(), key=lambda v: v["gzip9_bytes"])
            for vname, v in m["variants"].items():
                v["tfdc_packed_bytes"] = packed_size(v["path"])
                label = f"tfmot {m['tfmot_version']}: {vname.replace('_', ' ')}"
                if v is best_gz:
                    label += " (smallest zipped)"
                rows.append([name, label, f"{m['errors']['float']:.2%}", f"{v['error']:.2%}",
                             fmt_b(v["raw_bytes"]), fmt_b(v["gzip9_bytes"]),
                             fmt_b(v["xz9_bytes"]), fmt_b(v["tfdc_packed_bytes"]),
                             f"{t['float_bytes'] / min(v['xz9_bytes'], v['raw_bytes'], v['tfdc_packed_bytes'] or v['raw_bytes']):.1f}x",
                             fmt_s(m["times"])])
    headers = ["network", "pipeline", "float error", "compressed error (LiteRT)",
               "raw .tflite B", "gzip -9 B", "xz -9 B", "tfdc packed B",
               "ratio vs float32 (best size)", "train s (base/prune/cluster/qat)"]
    table = markdown_table(headers, rows)
    print("\n" + table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    budget_text = "; ".join(
        f"{NAMES[n]}: {b[0]}/{b[1]}/{b[2]} epochs (baseline/prune/cluster), tfmot +{b[3]} QAT"
        + (f", first {b[4]:,} training images" if b[4] else ", all 60,000 training images")
        for n, b in BUDGETS[args.quick].items() if n in networks)
    budget_text += "; tfdc's own settings: " + ", ".join(
        f"{NAMES[n]} {b[0]}/{b[1]}/{b[2]} epochs" for n, b in OWN_BUDGETS[args.quick].items()
        if n in networks) + (" (more epochs than tfmot's budget; compare the wall times in the "
                             "last column)")
    body = (
        "Real MNIST (test error on all 10,000 test images, measured in the interpreter on the "
        "exported file; tfdc's packed file is decoded in memory by `tfdc.load_interpreter`). "
        "Both pipelines use the paper's per-layer sparsities (Tables 2-3) and bits (LeNet-300-100: "
        "6; LeNet-5: conv 8, fc 5); tfdc also runs with its own, sparser settings (the "
        "`tfdc demo` defaults) and a longer retraining; tfmot clusters with "
        "`preserve_sparsity=True`, linear init, "
        "then sparsity- and cluster-preserving QAT (PCQAT). Sizes are whole files in bytes. For "
        "tfdc, the raw / gzip / xz columns are the plain float `.tflite` the packer starts "
        "from; for tfmot, the `tfdc packed` column is tfdc's packer applied to tfmot's file. "
        "Ratio: 4 bytes x parameters / the row's smallest file (any column). Training times are wall seconds "
        "on 2 shared CPU cores (noisy).\n\n"
        f"Budgets: {budget_text}.\n\n" + table + "\n\n" + "\n\n".join(layer_tables))
    verdicts = []
    for network in networks:
        m = results[network].get("tfmot")
        if not m:
            continue
        best = min(m["variants"].values(), key=lambda v: v["xz9_bytes"])
        for label, t in (("paper settings", tfdc_runs[network]),
                         ("own settings", own_runs.get(network))):
            if t is None:
                continue
            smaller = t["packed_bytes"] < best["xz9_bytes"]
            verdicts.append(
                f"- {NAMES[network]}, tfdc with the {label}: packed {t['packed_bytes']:,} B at "
                f"{t['errors']['tflite']:.2%} vs tfmot's smallest zipped file (xz -9) "
                f"{best['xz9_bytes']:,} B at {best['error']:.2%}: tfdc is "
                f"{'smaller' if smaller else 'LARGER'} by "
                f"{abs(1 - t['packed_bytes'] / best['xz9_bytes']):.1%}"
                f"{'' if t['errors']['tflite'] <= best['error'] else ', at a higher error'}.")
    if verdicts:
        body = body.replace(table, "Goal: tfdc's packed file smaller than tfmot's best zipped "
                            "file at equal or better error. Result of this run:\n\n"
                            + "\n".join(verdicts) + "\n\n" + table)
    command = None
    if args.render_only:
        command = ("python tools/paper_benchmark.py" + (" --quick" if args.quick else "")
                   + "  (table re-rendered from that run's results.json with --render-only)")
    publish(args, "paper", "Paper reproduction: LeNet on MNIST, tfdc vs tfmot", body,
                  command=command)
    docs = "" if args.no_write else "docs/BENCHMARKS.md (section 'paper') and "
    print(f"\nwrote {docs}{os.path.relpath(args.out, ROOT)}/")


if __name__ == "__main__":
    run(main)
