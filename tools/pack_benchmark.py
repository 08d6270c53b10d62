"""`tfdc pack` on other tools' .tflite files: raw, gzip -9, xz -9 and packed.

The inputs are made ONCE into --cache (default `out/pack_benchmark/`, not
committed) and reused, so the table can be re-run cheaply after the packer
changes:

1. `float.tflite`: tfdc's LeNet-300-100 (`tfdc.models.lenet_300_100`), trained
   in float on real MNIST (--epochs, Adam 1e-3, batch 128, seed 1234) and
   converted by the plain TFLite converter (`tfdc.exporter.convert`, no
   optimizations).
2. `aeq/*.tflite`: ai-edge-quantizer 0.10.0 recipes applied to `float.tflite`
   (`tools/aeq_recipes.py`, run in its own virtualenv: the quantizer pins its
   own ai-edge-litert).
3. `tfmot/lenet_300_100.pcqat_int8*.tflite`: tfmot 0.8.1's prune -> cluster ->
   PCQAT pipeline (`tools/tfmot_pipeline.py`, run in its own virtualenv: tfmot
   needs tf_keras and the full tensorflow wheel), with the paper's per-layer
   sparsity and 6-bit clusters, converted with `Optimize.DEFAULT` (and with
   `EXPERIMENTAL_SPARSITY`).

Each input is then packed with the project's code (`tfdc.export_tflite`, the
defaults of `tfdc pack`), and the table gives its raw size, gzip -9 and xz -9
(Python's `gzip` / `lzma` at level 9, the same streams as the command-line
tools), the packed size, packed / xz, the MNIST test error in LiteRT and
whether the packed model's outputs are bit-identical to the input model's
(LiteRT, the 10,000 test images, outputs compared as raw bits). A second table
breaks the bytes down by buffer kind (dtype, quantization granularity, role)
against xz -9 of the same buffers.

    python tools/pack_benchmark.py --setup     # once: both virtualenvs (~700 MB)
    python tools/pack_benchmark.py --mnist /path/mnist.npz
"""

import argparse
import gzip
import json
import lzma
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks_md import markdown_table, write_section  # noqa: E402
from tool_args import description, existing_dir_for, positive_int, run  # noqa: E402

AEQ_VENV = os.path.join(ROOT, ".venv-aeq")
AEQ_PACKAGES = ["ai-edge-quantizer==0.10.0"]
TFMOT_VENV = os.path.join(ROOT, ".venv-tfmot")
TFMOT_PACKAGES = ["tensorflow==2.21.*", "tf-keras==2.21.*", "tensorflow-model-optimization==0.8.1",
                  "numpy"]
# tfmot run: the paper's LeNet-300-100 settings and tools/paper_benchmark.py's
# epoch budget (baseline, prune, cluster, QAT).
TFMOT_SPARSITY = {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}
TFMOT_BITS = 6
TFMOT_EPOCHS = (10, 10, 3, 1)
TFMOT_VARIANTS = {"pcqat_int8": "tfmot PCQAT int8", "pcqat_int8_sparse":
                  "tfmot PCQAT int8 + EXPERIMENTAL_SPARSITY"}


def setup():
    """Create the two virtualenvs: ai-edge-quantizer next to the system's
    ai-edge-litert (it pins the same version), tfmot in a clean one."""
    for venv, packages, system in ((AEQ_VENV, AEQ_PACKAGES, True),
                                   (TFMOT_VENV, TFMOT_PACKAGES, False)):
        if not os.path.exists(os.path.join(venv, "bin", "python")):
            subprocess.run([sys.executable, "-m", "venv", venv]
                           + (["--system-site-packages"] if system else []), check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q"] + packages,
                       check=True)


# ------------------------------------------------------------------ inputs
def make_float(cache, mnist, epochs, seed):
    """Train and convert the float LeNet-300-100 once; {path, error, epochs}."""
    path = os.path.join(cache, "float.tflite")
    meta = os.path.join(cache, "float.json")
    if os.path.exists(path) and os.path.exists(meta):
        info = json.load(open(meta))
        if (info["epochs"], info["seed"]) == (epochs, seed):
            return info
    # A new float model: the quantized ones made from the old one are stale.
    stale = os.path.join(cache, "aeq", "manifest.json")
    if os.path.exists(stale):
        os.unlink(stale)
    import keras

    from tfdc.datasets import load_mnist
    from tfdc.exporter import convert, write_atomically
    from tfdc.models import lenet_300_100
    keras.utils.set_random_seed(seed)
    (x, y), (xt, yt) = load_mnist(mnist)
    model = lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=2)
    error = 1.0 - float(model.evaluate(xt, yt, batch_size=1000, verbose=0)[1])
    write_atomically(path, convert(model))
    info = {"path": path, "keras_error": error, "epochs": epochs, "seed": seed}
    with open(meta, "w") as f:
        json.dump(info, f, indent=2)
    return info


def make_aeq(cache, python, float_path):
    """Run tools/aeq_recipes.py once; its manifest."""
    out = os.path.join(cache, "aeq")
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        return json.load(open(manifest))
    if not os.path.exists(python):
        print(f"ai-edge-quantizer: no virtualenv python at {python} (run --setup); skipped")
        return None
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "w") as log:
        proc = subprocess.run([python, os.path.join(ROOT, "tools", "aeq_recipes.py"),
                               "--float", float_path, "--out", out],
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not os.path.exists(manifest):
        print(f"ai-edge-quantizer: failed (exit {proc.returncode}), see {out}/log.txt")
        return None
    return json.load(open(manifest))


def make_tfmot(cache, python, mnist, seed):
    """Run tools/tfmot_pipeline.py once; its result JSON."""
    out = os.path.join(cache, "tfmot")
    result = os.path.join(out, "lenet_300_100.json")
    if os.path.exists(result):
        return json.load(open(result))
    if not os.path.exists(python):
        print(f"tfmot: no virtualenv python at {python} (run --setup); skipped")
        return None
    os.makedirs(out, exist_ok=True)
    epochs, prune, cluster, qat = TFMOT_EPOCHS
    args = ["--network", "lenet_300_100", "--mnist", mnist, "--out", out, "--json", result,
            "--sparsity", json.dumps(TFMOT_SPARSITY), "--bits", json.dumps(TFMOT_BITS),
            "--epochs", str(epochs), "--prune-epochs", str(prune),
            "--cluster-epochs", str(cluster), "--qat-epochs", str(qat), "--seed", str(seed)]
    print("tfmot: running tools/tfmot_pipeline.py (a few minutes)", flush=True)
    with open(os.path.join(out, "log.txt"), "w") as log:
        proc = subprocess.run([python, os.path.join(ROOT, "tools", "tfmot_pipeline.py")] + args,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not os.path.exists(result):
        print(f"tfmot: failed (exit {proc.returncode}), see {out}/log.txt")
        return None
    return json.load(open(result))


# ------------------------------------------------------------- measurement
def _interpreter(content, **kwargs):
    from tfdc.runtime import interpreter_class
    return interpreter_class()(model_content=content, **kwargs)


def runtime_configs():
    """LiteRT set-ups to try, in order: (name, interpreter kwargs, batch).
    Batch None runs one image at a time (models that reshape to batch 1,
    like the Hadamard rotation recipes); the builtin kernels run models
    XNNPACK refuses (dynamic-range + sparse FULLY_CONNECTED)."""
    import importlib

    from tfdc.runtime import interpreter_class
    OpResolverType = importlib.import_module(interpreter_class().__module__).OpResolverType
    builtin = {"experimental_op_resolver_type":
               OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return [("default", {}, 500), ("default", {}, None), ("builtin kernels", builtin, 500),
            ("builtin kernels", builtin, None)]


def reference_outputs(content, x):
    """`(outputs, config)` of the input model under the first LiteRT set-up
    that runs it."""
    errors = []
    for config in runtime_configs():
        try:
            return _run_outputs(_interpreter(content, **config[1]), x, config[2]), config
        except (RuntimeError, ValueError) as e:
            errors.append(str(e).splitlines()[0])
    raise RuntimeError("; ".join(errors))


def _run_outputs(interpreter, x, batch):
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    step = batch or int(inp["shape"][0])
    if batch:
        interpreter.resize_tensor_input(inp["index"], [step] + list(x.shape[1:]))
    interpreter.allocate_tensors()
    outputs = []
    for s in range(0, len(x), step):
        chunk = x[s:s + step]
        n = len(chunk)
        if n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n,) + chunk.shape[1:], chunk.dtype)])
        interpreter.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(out["index"])[:n]))
    return np.concatenate(outputs)


def _tensor_type_names():
    from tfdc import tflite_schema
    types = tflite_schema.get().TensorType
    return {v: k for k, v in vars(types).items() if not k.startswith("_")}


def buffer_kinds(content):
    """`({buffer index: (kind, raw bytes)}, skeleton)` for the constant
    buffers (inline or in the offset layout): kind is `DTYPE granularity
    role`, e.g. `INT4 per-channel kernel`. `skeleton` is the flatbuffer with
    every buffer emptied (graph, names, quantization parameters), and
    `quant_bytes` the bytes of the per-tensor / per-channel scales (float32)
    and zero points (int64) in it."""
    from tfdc import tflite_schema
    names = _tensor_type_names()
    model = tflite_schema.read(content)
    kinds, quant_bytes = {}, 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            q = tensor.quantization
            scales = 0 if q is None or q.scale is None else len(q.scale)
            zeros = 0 if q is None or q.zeroPoint is None else len(q.zeroPoint)
            quant_bytes += 4 * scales + 8 * zeros
            b = tensor.buffer
            if not 0 < b < len(model.buffers) or b in kinds:
                continue
            buf = model.buffers[b]
            if buf.offset > 1:
                raw = content[buf.offset:buf.offset + buf.size]
            elif buf.data is not None:
                raw = bytes(np.asarray(buf.data, np.uint8))
            else:
                continue
            if not raw:
                continue
            gran = ("per-channel" if scales > 1 else "per-tensor" if scales == 1 else "")
            rank = 0 if tensor.shape is None else len(tensor.shape)
            role = "kernel" if rank >= 2 else "bias/vector" if rank == 1 else "scalar"
            if tensor.sparsity is not None:  # TFLite's own CSR: the buffer holds the nonzeros
                role = "TFLite-sparse " + role
            kind = " ".join(p for p in (names.get(tensor.type, str(tensor.type)), gran, role) if p)
            if len(raw) < SMALL:
                kind = f"small buffers (< {SMALL} B, left inline)"
            shape = tuple(int(d) for d in tensor.shape) if rank else (1,)
            kinds[b] = (kind, raw, shape)
    for buf in model.buffers:
        buf.data, buf.offset, buf.size = None, 0, 0
    return kinds, tflite_schema.build(model), quant_bytes


SMALL = 64  # the packer's default min_bytes
GRAPH = "rest: flatbuffer without buffers (graph, names, quantization parameters)"


def symbols(kind, raw, shape):
    """The stored integer values of a buffer as a `(rows, row length)`
    array of small ints (int4 / int2: one entry per 4- / 2-bit value, in
    LiteRT's packing order, low bits first), or None for other dtypes."""
    dtype = kind.split()[0]
    a = np.frombuffer(raw, np.uint8)
    if dtype == "INT4":
        out = np.stack([a & 15, a >> 4], 1).ravel()
    elif dtype == "INT2":
        out = np.stack([(a >> s) & 3 for s in (0, 2, 4, 6)], 1).ravel()
    elif dtype in ("INT8", "UINT8"):
        out = a
    else:
        return None
    n = int(np.prod(shape))
    if len(out) < n:  # a TFLite-sparse tensor: its buffer holds the nonzeros only
        return out.reshape(1, -1).astype(np.int64)
    cols = shape[-1] if len(shape) >= 2 else n
    return out[:n].reshape(-1, cols).astype(np.int64)


def _h_bytes(values):
    counts = np.bincount(values.ravel())
    p = counts[counts > 0] / values.size
    return float(-(p * np.log2(p)).sum() * values.size / 8)


def entropy_bounds(sym):
    """`(order-0, order-1)` entropy in bytes of a symbol array: order 1 is
    conditioned on the previous value in the same row (the same output
    channel, neighbouring inputs), plus 4 bits per entry of its code tables
    (contexts x alphabet), what a table-driven coder would store."""
    order0 = _h_bytes(sym)
    alphabet = int(sym.max()) + 1
    prev = np.concatenate([np.zeros((sym.shape[0], 1), sym.dtype), sym[:, :-1]], 1)
    order1 = sum(_h_bytes(sym[prev == c]) for c in np.unique(prev))
    return order0, order1 + alphabet * alphabet / 2


def _median_ms(fn, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * sorted(times)[runs // 2]


def patch_text(rows):
    """What format 2.3's patches (per-channel quantization scales coded as
    records) saved, measured against the same files packed without them."""
    patched = [r for r in rows if r.get("patches")]
    if not patched:
        return ""
    saved = [r["unpatched"] - r["packed"] for r in patched]
    return (f"Per-channel quantization scales are float32 vectors of the flatbuffer itself, "
            f"not buffers (410 in a per-channel LeNet-300-100 file); DEFLATE codes their four "
            f"bytes with one literal code. {len(patched)} of {len(rows)} files code them as "
            f"patches (format 2.3, docs/FORMAT.md §6.7: planes of a record over the cleared "
            f"range, the exponent byte apart from the random mantissa bytes), "
            f"{min(saved):,}–{max(saved):,} B smaller than the same file packed without "
            f"patches (`pack_tflite(..., _patches=False)`); the patched files' rest rows "
            f"below include them.\n\n")


def measure(name, label, path, x, y, family):
    """Sizes, packed size, error and bit identity of one input model."""
    import warnings

    import tfdc
    content = open(path, "rb").read()
    packed_path = path[:-len(".tflite")] + ".tfdc.tflite"
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = tfdc.export_tflite(content, packed_path)
    pack_s = time.perf_counter() - t
    row = {}
    packed = open(packed_path, "rb").read()
    # What the patches of format 2.3 (§6.7) save: the same pack without them.
    from tfdc.pack import pack_tflite
    row["patches"] = len(report.patches)
    row["unpatched"] = (len(pack_tflite(content, strip_debug=True, _patches=False)[0])
                        if report.patches else len(packed))
    xz_file = lzma.compress(content, preset=9)
    row.update({"name": name, "label": label, "family": family, "raw": len(content),
                "gzip9": len(gzip.compress(content, 9, mtime=0)),
                "xz9": len(xz_file), "packed": len(packed),
                "pack_s": pack_s, "nothing_gained": packed == content,
                "warnings": [str(w.message) for w in caught]})
    reference, config = reference_outputs(content, x)
    got = _run_outputs(tfdc.load_interpreter(packed, **config[1]), x, config[2])
    row["runtime"] = config[0] + ("" if config[2] else ", batch 1")
    row["bit_identical"] = bool(reference.shape == got.shape and reference.dtype == got.dtype
                                and np.array_equal(reference.view(np.uint8),
                                                   got.view(np.uint8)))
    row["error"] = float(np.mean(reference.argmax(-1) != y))
    # TFLite's own sparse constants: expanded by the packer (tfdc.densify)
    # or left as they are; the decoded model should then have no DENSIFY.
    row["densified"] = [str(d) for d in report.densified]
    row["expanded"] = sum(d.expanded for d in report.densified)
    row["index_bytes"] = sum(d.index_bytes for d in report.densified if d.expanded)
    decoded = tfdc.decode(packed) if report.section_bytes else packed
    # Load-time cost: the C decoder on the packed file vs xz -d of the xz
    # file (both in this process, median of 5).
    row["decode_ms"] = _median_ms(lambda: tfdc.decode(packed)) if report.section_bytes else 0.0
    row["unxz_ms"] = _median_ms(lambda: lzma.decompress(xz_file))
    densify_in, densify_out = _densify_outputs(content), _densify_outputs(decoded)
    row["densify_ops"] = [len(densify_in), len(densify_out)]
    # Where the bytes go: each buffer kind vs xz -9 of the same buffers.
    kinds, skeleton, quant_bytes = buffer_kinds(content)
    records = {}
    if report.layers:
        from tfdc.unpack import read_pack_info
        # A record's share of the file (`record_bytes`) already holds the
        # deflated code tables it introduced: adding their raw bytes again
        # counted them twice (most visible for kind 4 tables and their maps).
        records = {r.buffer_index: r.record_bytes for r in read_pack_info(packed).records}
        # An expanded sparse constant is packed in its DENSIFY output's
        # buffer: count it for the sparse tensor's buffer kind.
        for sparse_buffer, dense_buffer in densify_in.items():
            if dense_buffer in records and sparse_buffer not in densify_out:
                records[sparse_buffer] = records.pop(dense_buffer)
    groups = {}
    for b, (kind, raw, shape) in kinds.items():
        g = groups.setdefault(kind, {"count": 0, "raw": 0, "chunks": [], "packed": 0,
                                     "packed_count": 0, "entropy": 0.0, "entropy1": 0.0})
        g["count"] += 1
        g["raw"] += len(raw)
        g["chunks"].append(raw)
        if b in records:
            g["packed"] += records[b]
            g["packed_count"] += 1
        else:
            g["packed"] += len(raw)  # left in the flatbuffer, as is
        sym = symbols(kind, raw, shape)
        if sym is None or g["entropy"] is None:
            g["entropy"] = g["entropy1"] = None
        else:
            e0, e1 = entropy_bounds(sym)
            g["entropy"] += e0
            g["entropy1"] += e1
    for g in groups.values():
        g["xz9"] = len(lzma.compress(b"".join(g.pop("chunks")), preset=9))
    # Everything else: the flatbuffer without its buffers (tfdc: the packed
    # file minus what its buffers cost, i.e. flatbuffer + section headers,
    # code tables and padding).
    groups[GRAPH] = {"count": 0, "raw": len(skeleton), "packed": 0, "packed_count": 0,
                     "entropy": None, "entropy1": None,
                     "xz9": len(lzma.compress(skeleton, preset=9)),
                     "quant_bytes": quant_bytes}
    groups[GRAPH]["packed"] = len(packed) - sum(g["packed"] for g in groups.values())
    row["groups"] = groups
    return row


def _densify_outputs(content):
    """{sparse input's buffer: output's buffer} of the DENSIFY ops of a
    plain .tflite."""
    from tfdc import tflite_schema
    model = tflite_schema.read(content)
    densify = tflite_schema.get().BuiltinOperator.DENSIFY
    out = {}
    for sg in model.subgraphs:
        for o in sg.operators or []:
            code = model.operatorCodes[o.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == densify:
                out[int(sg.tensors[o.inputs[0]].buffer)] = int(sg.tensors[o.outputs[0]].buffer)
    return out


# ------------------------------------------------------------------ tables
def fmt_b(n):
    return f"{n:,}"


def main_table(rows):
    headers = ["input model", "raw B", "gzip -9 B", "xz -9 B", "tfdc packed B", "packed / xz",
               "test error", "outputs bit-identical", "decode ms (C) / xz -d ms"]
    out = []
    for r in rows:
        if "skipped" in r:
            out.append([r["label"], "–", "–", "–", "–", "–", "–", r["skipped"], "–"])
            continue
        ratio = r["packed"] / r["xz9"]
        packed = fmt_b(r["packed"]) + (" (nothing gained: input kept)" if r["nothing_gained"]
                                       else "")
        out.append([r["label"], fmt_b(r["raw"]), fmt_b(r["gzip9"]), fmt_b(r["xz9"]),
                    f"**{packed}**" if ratio <= 1 else packed, f"{ratio:.4f}",
                    f"{r['error']:.2%}", "yes" if r["bit_identical"] else "**NO**",
                    f"{r.get('decode_ms', 0):.2f} / {r.get('unxz_ms', 0):.2f}"])
    return markdown_table(headers, out)


def breakdown_table(rows):
    """Bytes per buffer kind, summed over the models of each family."""
    families = {}
    for r in rows:
        if "skipped" in r:
            continue
        for kind, g in r["groups"].items():
            key = (r["family"], kind)
            f = families.setdefault(key, {"models": set(), "count": 0, "raw": 0, "xz9": 0,
                                          "packed": 0, "entropy": 0.0, "entropy1": 0.0,
                                          "quant_bytes": 0})
            f["models"].add(r["name"])
            f["quant_bytes"] += g.get("quant_bytes", 0)
            f["count"] += g["count"]
            for k in ("raw", "xz9", "packed"):
                f[k] += g[k]
            for k in ("entropy", "entropy1"):
                f[k] = None if g[k] is None or f[k] is None else f[k] + g[k]
    out = []
    for (family, kind), f in sorted(families.items()):
        entropy = ["–" if f[k] is None else fmt_b(math.ceil(f[k]))
                   for k in ("entropy", "entropy1")]
        if kind == GRAPH:
            kind = f"rest: flatbuffer without buffers (of which {fmt_b(f['quant_bytes'])} B " \
                "quantization scales and zero points)"
        out.append([family, kind, len(f["models"]), f["count"], fmt_b(f["raw"]),
                    fmt_b(f["xz9"]), *entropy, fmt_b(f["packed"]),
                    f"{f['packed'] / f['xz9']:.3f}" if f["xz9"] else "–"])
    headers = ["family", "buffer kind", "models", "buffers", "raw B", "xz -9 B (alone)",
               "order-0 entropy B", "order-1 entropy + tables B", "tfdc B", "tfdc / xz"]
    return markdown_table(headers, out)


def estimate_table(rows):
    """For the int4 / int2 models: what a packer would reach with order-0 or
    order-1 coded symbols and a flatbuffer compressed as well as xz -9 does,
    every other buffer at min(raw, xz -9)."""
    out = []
    for r in rows:
        if "skipped" in r or r["family"] not in ("aeq int4", "aeq int2"):
            continue
        base, order0, order1 = 0.0, 0.0, 0.0
        for kind, g in r["groups"].items():
            if g.get("entropy") is not None and "kernel" in kind:
                order0 += g["entropy"]
                order1 += min(g["entropy"], g["entropy1"])
            elif kind == GRAPH:
                base += g["xz9"]
            else:
                base += min(g["raw"], g["xz9"])
        xz = r["xz9"]
        out.append([r["name"], fmt_b(xz), fmt_b(round(0.97 * xz)), fmt_b(r["packed"]),
                    f"{fmt_b(round(base + order0))} ({(base + order0) / xz:.3f})",
                    f"{fmt_b(round(base + order1))} ({(base + order1) / xz:.3f})"])
    headers = ["model", "xz -9 B", "0.97 x xz B", "tfdc today B",
               "order-0 symbols + xz-grade rest B (/ xz)",
               "order-1 symbols + xz-grade rest B (/ xz)"]
    return markdown_table(headers, out)


def densify_text(rows):
    """A paragraph on the inputs with TFLite's own sparsity."""
    sparse = [r for r in rows if r.get("densified")]
    if not sparse:
        return ""
    lines = [f"- {r['label']}: {r['expanded']} of {len(r['densified'])} TFLite-sparse "
             f"constants expanded ({fmt_b(r['index_bytes'])} B of CSR index vectors), "
             f"DENSIFY ops {r['densify_ops'][0]} in the input, {r['densify_ops'][1]} in the "
             f"decoded model; outputs bit-identical: {'yes' if r['bit_identical'] else 'NO'} "
             f"(LiteRT {r['runtime']}, the first set-up the input runs under)." for r in sparse]
    return ("Inputs with TFLite's own sparsity (`Optimize.EXPERIMENTAL_SPARSITY`: nonzeros "
            "in the buffer, CSR index vectors in the flatbuffer, a DENSIFY op in front of the "
            "kernel): the packer first expands each such constant into the dense constant "
            "DENSIFY computes and removes the op (`tfdc.densify`), so its positions are "
            "gap-coded by a sparse record. The decoded model holds the weights dense, in the "
            "file and in RAM, as every runtime holds them once DENSIFY has run (XNNPACK, GPU "
            "and NNAPI densify at init).\n\n" + "\n".join(lines) + "\n\n")


def main():
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--setup", action="store_true", help="create the two virtualenvs and exit")
    p.add_argument("--mnist", default=os.environ.get("TFDC_MNIST"),
                   help="mnist.npz (default: $TFDC_MNIST)")
    p.add_argument("--cache", default=os.path.join(ROOT, "out", "pack_benchmark"),
                   help="folder for the generated input models (default: out/pack_benchmark)")
    p.add_argument("--aeq-python", default=os.path.join(AEQ_VENV, "bin", "python"))
    p.add_argument("--tfmot-python", default=os.path.join(TFMOT_VENV, "bin", "python"))
    p.add_argument("--epochs", type=positive_int, default=5,
                   help="float baseline epochs (default 5)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", default=None, type=existing_dir_for,
                   help="also write the rows as JSON here")
    p.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = p.parse_args()
    if args.setup:
        setup()
        return
    if not args.mnist:
        sys.exit("pack_benchmark: pass --mnist PATH or set TFDC_MNIST to an mnist.npz")
    from tfdc.datasets import load_mnist_raw
    load_mnist_raw(args.mnist)  # a missing or malformed file: its own message (run)
    if not args.no_write:
        # Before the float model's minutes of training: without both tools'
        # results the section cannot be written (it refused only at the end).
        lacking = [tool for tool, made, python in (
            ("ai-edge-quantizer", os.path.join(args.cache, "aeq", "manifest.json"),
             args.aeq_python),
            ("tfmot", os.path.join(args.cache, "tfmot", "lenet_300_100.json"), args.tfmot_python))
            if not os.path.exists(made) and not os.path.exists(python)]
        if lacking:
            sys.exit(f"pack_benchmark: no {' or '.join(lacking)} virtualenv (run --setup once "
                     "for both, or pass --no-write); nothing was run")
    os.makedirs(args.cache, exist_ok=True)

    float_info = make_float(args.cache, args.mnist, args.epochs, args.seed)
    aeq = make_aeq(args.cache, args.aeq_python, os.path.join(args.cache, "float.tflite"))
    tfmot = make_tfmot(args.cache, args.tfmot_python, args.mnist, args.seed)

    from tfdc.datasets import load_mnist
    _, (xt, yt) = load_mnist(args.mnist)
    # The manifests name where the inputs were made; read them from this
    # cache (a cache copied from another checkout keeps working, and the
    # packed files are written next to the inputs, inside it).
    def cached(path, *folder):
        return os.path.join(args.cache, *folder, os.path.basename(path))

    inputs = [("float", "plain converter, float32 (no optimizations)",
               cached(float_info["path"]), "float")]
    skipped = []
    if aeq:
        for name, m in aeq["models"].items():
            label = f"ai-edge-quantizer {name}"
            if "error" in m:
                skipped.append({"name": name, "label": label,
                                "skipped": f"quantizer failed: {m['error'][:80]}"})
            else:
                family = "aeq " + next(bits for bits in ("int8", "int4", "int2", "fp16")
                                       if bits.replace("int", "wi") in name or bits in name)
                inputs.append((name, label, cached(m["path"], "aeq"), family))
    if tfmot:
        for name, label in TFMOT_VARIANTS.items():
            if name in tfmot["variants"]:
                inputs.append((name, label, cached(tfmot["variants"][name]["path"], "tfmot"),
                               "tfmot"))
    rows = []
    for name, label, path, family in inputs:
        try:
            row = measure(name, label, path, xt, yt, family)
        except Exception as e:  # report a model the runtime refuses instead of dying
            row = {"name": name, "label": label, "skipped": f"{type(e).__name__}: "
                   f"{str(e).splitlines()[0][:80]}"}
        rows.append(row)
        if "skipped" in row:
            print(f"{name:24s} skipped: {row['skipped']}", flush=True)
        else:
            print(f"{name:24s} raw {row['raw']:>9,}  gzip {row['gzip9']:>9,}  xz {row['xz9']:>9,}"
                  f"  tfdc {row['packed']:>9,}  tfdc/xz {row['packed'] / row['xz9']:.3f}  "
                  f"err {row['error']:.2%}  bit-identical {row['bit_identical']}", flush=True)
    rows += skipped
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=list)
    if args.no_write:
        return
    if aeq is None or tfmot is None:
        # The section is every tool's rows: written from the float row
        # alone, it lost 21 of its 22 rows, with exit status 0.
        sys.exit("pack_benchmark: docs/BENCHMARKS.md left as it is: the "
                 f"{'ai-edge-quantizer' if aeq is None else 'tfmot'} rows are missing (run "
                 "--setup once for both virtualenvs, or pass --no-write)")
    measured = [r for r in rows if "skipped" not in r]
    worse = [r["name"] for r in measured if r["packed"] > r["xz9"]]
    int4 = [r for r in measured if r["family"] == "aeq int4"]
    int4_over = [f"{r['name']} {r['packed'] / r['xz9']:.4f}" for r in int4
                 if r["packed"] > 0.97 * r["xz9"]]
    identical = sum(r["bit_identical"] for r in measured)
    versions = ""
    if aeq:
        versions += (f"ai-edge-quantizer {aeq['ai_edge_quantizer_version']} (ai-edge-litert "
                     f"{aeq['ai_edge_litert_version']})")
    if tfmot:
        versions += (f"{', ' if versions else ''}tfmot {tfmot['tfmot_version']} (tensorflow "
                     f"{tfmot['tensorflow_version']})")
    body = (
        "How the inputs were made (once, into `out/pack_benchmark/`, not committed; the "
        "other tools run in two virtualenvs that `python tools/pack_benchmark.py --setup` "
        "makes first): "
        f"tfdc's LeNet-300-100 trained in float for {float_info['epochs']} epochs on real "
        "MNIST (Adam 1e-3, batch 128) and converted by the plain TFLite converter "
        "(`tfdc.exporter.convert`, no optimizations); the ai-edge-quantizer recipes "
        "(`tools/aeq_recipes.py`: weight-only and dynamic int8/int4/int2, channel-wise (c) "
        "and tensor-wise (t) min-max, MSE, OCTAV, Hadamard rotation (hr)) applied to that "
        "float file in their own virtualenv; tfmot's prune -> cluster -> PCQAT pipeline "
        f"(`tools/tfmot_pipeline.py`, paper sparsities {TFMOT_SPARSITY}, {TFMOT_BITS}-bit "
        f"clusters, epochs {'/'.join(map(str, TFMOT_EPOCHS))} baseline/prune/cluster/QAT) in "
        f"its own virtualenv. Versions: {versions or 'n/a'}.\n\n"
        "Each file packed by `tfdc.export_tflite` with the defaults of `tfdc pack`. gzip -9 "
        "and xz -9 are Python's `gzip` / `lzma` at level 9 (the streams of `gzip -9` / "
        "`xz -9`). Test error: the input model in LiteRT on the 10,000 MNIST test images. "
        "Bit-identical: the packed file loaded with `tfdc.load_interpreter` gives the same "
        "output bits as the input file in LiteRT on all 10,000 test images.\n\n"
        + main_table(rows) + "\n\n"
        f"tfdc packed ≤ xz -9 on {len(measured) - len(worse)} of {len(measured)} models; "
        f"outputs bit-identical on {identical} of {len(measured)}; "
        f"≤ 0.97 × xz -9 on {len(int4) - len(int4_over)} of {len(int4)} int4 models"
        + (f" (not: {', '.join(int4_over)})" if int4_over else "") + ".\n\n"
        "Integer kernels that were never pruned or clustered are coded with kind 3 "
        "tables where that is smaller (docs/FORMAT.md §5.3): a range code whose class is "
        "chosen by two earlier weights of the row; on fc1 (784 inputs = a 28 × 28 image) "
        "the packer picks the weights one to the left and one image row above. Kind 4 "
        "tables (format 2.2, §5.4) add frequency tables per group of rows and of columns "
        "where that is smaller still: per-channel recipes clip output channels (rows) "
        "differently, and the Hadamard recipes (hr: blocks of 16 inputs rotated) put most "
        "of a smooth kernel's energy into a few positions of each block (columns). Decode "
        "ms: `tfdc.decode` (the C decoder, whole file, one thread) against "
        "`lzma.decompress` of the xz -9 file, median of 5, in the same process.\n\n"
        + patch_text(measured)
        + densify_text(measured) +
        "### Where the bytes go, by buffer kind\n\n"
        "Constant buffers grouped by stored dtype, quantization granularity and role, "
        "summed over the models of each family: their raw bytes, xz -9 of those buffers "
        "alone (concatenated per model and kind), the order-0 entropy of the stored integer "
        "symbols (int4 / int2: per 4- / 2-bit value), their order-1 entropy given the "
        "previous value in the same row (output channel) plus 4 bits per code-table entry "
        "(16 x 16 for int4, 256 x 256 for int8: a per-context table pays for int4 and int2, "
        "not for int8), and what tfdc stores for them (the "
        "record with its code tables, or the raw bytes when the packer left the buffer in "
        "the flatbuffer). The "
        "last row of each family is everything else: the flatbuffer with its buffers "
        "emptied (graph, tensor names, quantization parameters) against xz -9 of it, and for "
        "tfdc the packed file minus its buffers' share (flatbuffer, section header, "
        "alignment). A TFLite-sparse kernel's buffer holds only its stored values (its CSR "
        "index vectors are in the flatbuffer row for raw and xz); tfdc's bytes for it are "
        "the record of the expanded dense constant, positions included.\n\n"
        + breakdown_table(rows) + "\n\n"
        "### The int4 / int2 rows against order-0 and order-1 symbol coding\n\n"
        "Estimates from the table above, per model: the integer kernels at their order-0 "
        "or order-1 entropy (order 1: the previous value in the row, with its code "
        "tables), the flatbuffer without buffers at xz -9 of it, every other buffer at "
        "min(raw, xz -9 alone): what per-context Huffman tables plus a well-compressed "
        "flatbuffer would give. tfdc's kind 3 and 4 tables use two earlier values (left "
        "and above) and the row and column groups, which is why it lands below the "
        "order-1 estimate on most rows.\n\n"
        + estimate_table(rows))
    write_section("pack", "tfdc pack on other tools' .tflite files (ai-edge-quantizer, tfmot, "
                  "plain float)", body)


if __name__ == "__main__":
    run(main)
