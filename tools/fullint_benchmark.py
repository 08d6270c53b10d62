"""Full-integer LeNet-5 on real MNIST: per-tensor vs per-channel int8 weights.

Trains LeNet-5 with the tfdc callbacks (the `lenet5-best` recipe of
tools/export_benchmark.py: dense, `tfdc.GradualPruning`, then
`tfdc.ClusteredFineTuning`; conv 8 bits, fc 5 bits), then exports the same
weights three ways and measures each packed file:

* float32: `tfdc.export(model, path)` (the reference);
* full-integer, per-tensor weight scales: `tfdc.export(model, path,
  representative_dataset=...)` (int8 activations and weights, int32
  biases; what NPUs and NNAPI drivers run);
* full-integer, per-channel weight scales: the converter's default
  (`configure_full_integer(..., per_channel=True)`);
* with `--snap`: per-tensor after `tfdc.quantize.snap_to_int8_grid` and
  one more `ClusteredFineTuning` epoch (the rounding absorbed in training).

For each: packed size (and vs the float packed file), LiteRT test error on
all 10,000 test images (decoded file), distinct int8 codes per kernel vs the
Keras kernel's distinct values, and whether the decoded file's outputs
(float and the int8 tensor before the final DEQUANTIZE) are bit-identical
to the plain conversion's. Calibration: 500 real MNIST training images.

Usage:
    TFDC_MNIST=/work/shared/datasets/mnist.npz python tools/fullint_benchmark.py [--snap]
"""

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from tool_args import description, positive_int, run  # noqa: E402

from tools.benchmarks_md import add_no_write, markdown_table, publish  # noqa: E402

CONFIG = "lenet5-best"
TFDC_WARNINGS = ("the full-integer conversion gave", "no int8 tensor of the full-integer",
                 "the TFLite converter changed", "tfdc could not check")


def log(*args):
    print(*args, flush=True)


def train(data, out_dir):
    """The compressed Keras model (trained once, then loaded from out_dir)."""
    import keras
    import tfdc
    from tools.export_benchmark import CONFIGS, compress

    path = os.path.join(out_dir, "lenet5_clustered.keras")
    info_path = os.path.join(out_dir, "lenet5_clustered.json")
    if os.path.exists(path):
        return keras.models.load_model(path), json.load(open(info_path))
    keras.utils.set_random_seed(0)
    t0 = time.time()
    model, errors = compress(CONFIGS[CONFIG], data, out_dir)
    tfdc.strip(model)
    model.save(path)
    info = dict(errors, seconds=time.time() - t0, bits=CONFIGS[CONFIG]["bits"])
    json.dump(info, open(info_path, "w"))
    return model, info


def snapped_and_tuned(model, data, bits, out_dir):
    """`snap_to_int8_grid`, then one `ClusteredFineTuning` epoch at the
    recipe's clustering learning rate (cached in out_dir)."""
    import keras
    import tfdc
    from tfdc.quantize import snap_to_int8_grid
    from tfdc.recipe import ShiftedImages
    from tools.export_benchmark import RECIPES, compile_model

    path = os.path.join(out_dir, "lenet5_snapped.keras")
    if os.path.exists(path):
        return keras.models.load_model(path)
    (xtr, ytr), _ = data
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    shifts = snap_to_int8_grid(clone)
    log(f"  snap_to_int8_grid: largest shift per kernel {shifts}")
    keras.utils.set_random_seed(4)
    compile_model(clone, RECIPES["lenet5"]["lr"] / 10)
    clone.fit(ShiftedImages(xtr, ytr, 128, seed=4), epochs=1, verbose=2,
              callbacks=[tfdc.ClusteredFineTuning(bits=bits)])
    tfdc.strip(clone)
    clone.save(path)
    return clone


def outputs(model_bytes, x):
    """Float outputs over all of `x`, and the int8 tensor that the final
    DEQUANTIZE op turns into them (None for a float model)."""
    from tfdc.runtime import interpreter_class
    interpreter = interpreter_class()(model_content=model_bytes,
                                      experimental_preserve_all_tensors=True)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x)] + list(x.shape[1:]))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    int8 = None
    for op in interpreter._get_ops_details():
        if op["op_name"] == "DEQUANTIZE" and out["index"] in list(op["outputs"]):
            int8 = interpreter.get_tensor(int(op["inputs"][0])).copy()
    return interpreter.get_tensor(out["index"]).copy(), int8


def measure(name, model, path, plain, data, export_kwargs):
    """Export `model` to `path` and measure it against `plain` (the same
    conversion, unpacked)."""
    import tfdc
    from tfdc.quantize import kernel_codes

    _, (xte, yte) = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfdc.export(model, path, **export_kwargs)
    # tfdc's own warnings (the converter adds unrelated ones).
    export_warnings = [str(w.message) for w in caught if str(w.message).startswith(TFDC_WARNINGS)]
    packed = open(path, "rb").read()
    decoded = tfdc.decode(packed)
    out, int8 = outputs(decoded, xte)
    ref, ref_int8 = outputs(plain, xte)
    identical = bool(np.array_equal(out.view(np.uint32), ref.view(np.uint32)))
    if int8 is not None or ref_int8 is not None:
        identical = identical and int8 is not None and ref_int8 is not None and bool(
            np.array_equal(int8, ref_int8))
    return dict(name=name, path=path, packed_bytes=len(packed), plain_bytes=len(plain),
                error=100.0 * float(np.mean(out.argmax(1) != yte)), identical=identical,
                int8_outputs=int8 is not None,
                kernels=[dataclasses.asdict(k) for k in kernel_codes(model, decoded)],
                warnings=export_warnings)


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--out-dir", default="/tmp/tfdc_fullint_benchmark")
    parser.add_argument("--calibration", type=positive_int, default=500,
                        help="real MNIST training images for the representative dataset")
    parser.add_argument("--snap", action="store_true",
                        help="also measure snap_to_int8_grid + one ClusteredFineTuning epoch")
    add_no_write(parser)
    args = parser.parse_args(argv)

    import keras
    from tfdc.datasets import load_mnist
    from tfdc.exporter import convert
    from tfdc.quantize import configure_full_integer

    os.makedirs(args.out_dir, exist_ok=True)
    data = load_mnist(channels=True)
    (xtr, _), _ = data
    model, info = train(data, args.out_dir)
    bits = info["bits"]
    keras.utils.set_random_seed(0)
    calibration = xtr[np.random.default_rng(0).choice(len(xtr), args.calibration, replace=False)]

    def representative_dataset():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    def per_channel(converter):
        configure_full_integer(converter, representative_dataset, per_channel=True)

    variants = [
        ("float32 (`tfdc.export` default)", model, {}, {}),
        ("full-integer, per-tensor weights (`representative_dataset=`)", model,
         dict(representative_dataset=representative_dataset),
         dict(representative_dataset=representative_dataset)),
        ("full-integer, per-channel weights (converter default)", model,
         dict(representative_dataset=representative_dataset, configure=per_channel),
         dict(representative_dataset=representative_dataset, configure=per_channel)),
    ]
    if args.snap:
        snapped = snapped_and_tuned(model, data, bits, args.out_dir)
        variants.append(("full-integer, per-tensor, after `snap_to_int8_grid` + 1 clustered "
                         "epoch", snapped, dict(representative_dataset=representative_dataset),
                         dict(representative_dataset=representative_dataset)))
    results = []
    for i, (name, m, export_kwargs, convert_kwargs) in enumerate(variants):
        log(f"== {name}")
        plain = convert(m, **convert_kwargs)
        r = measure(name, m, os.path.join(args.out_dir, f"variant{i}.tflite"), plain, data,
                    dict(export_kwargs, strip=False))
        results.append(r)
        log(json.dumps({k: v for k, v in r.items() if k != "kernels"}),
            [(k["name"], k["values"], k["codes"], k["scales"]) for k in r["kernels"]])

    float_result = results[0]
    rows = []
    for r in results:
        codes = ", ".join(
            f"{k['name']} {k['nonzero_codes']}/{k['nonzero_values']}"
            + ("" if k["scales"] in (None, 1) else f" ({k['scales']} scales)")
            for k in r["kernels"] if k["codes"] is not None) or "– (float32 weights)"
        rows.append([r["name"], f"{r['plain_bytes']:,}", f"{r['packed_bytes']:,}",
                     f"{r['packed_bytes'] / float_result['packed_bytes']:.3f}",
                     f"{r['error']:.2f} %", f"{r['error'] - float_result['error']:+.2f}",
                     codes, "yes" if r["identical"] else "**NO**",
                     str(len(r["warnings"]))])
    headers = ["Export", "Plain .tflite B", "Packed B", "Packed / float packed",
               "Test error (LiteRT, 10,000)", "Δ points vs float", "Nonzero int8 codes / "
               "nonzero Keras values per kernel", "Decoded = plain conversion (bit-identical)",
               "Export warnings"]
    per_tensor = results[1]
    checks = {
        "per-tensor packed within 10 % of the float packed file":
            per_tensor["packed_bytes"] <= 1.10 * float_result["packed_bytes"],
        "per-tensor error within 0.1 points of the float packed model":
            abs(per_tensor["error"] - float_result["error"]) <= 0.1,
        "every per-tensor int8 kernel has at most 2**bits nonzero codes (and no more codes "
        "than its Keras values)":
            all(k["codes"] is not None and k["nonzero_codes"] <= 2 ** bits[k["name"]]
                and k["codes"] <= k["values"] for k in per_tensor["kernels"]),
        "decoded per-tensor file bit-identical to the plain full-integer conversion (float and "
        "int8 outputs)": per_tensor["identical"] and per_tensor["int8_outputs"],
        "no export warning for per-tensor; a warning for per-channel":
            not per_tensor["warnings"] and bool(results[2]["warnings"]),
    }
    body = [
        "LeNet-5 trained with the tfdc callbacks (`lenet5-best` of tools/export_benchmark.py: "
        f"dense {info.get('dense_error', float('nan')):.2f} %, pruned "
        f"{info.get('pruned_error', float('nan')):.2f} %, clustered "
        f"{info.get('clustered_error', float('nan')):.2f} % Keras test error; codebook bits "
        f"{bits}; trained in {info.get('seconds', 0):.0f} s on 2 shared cores), the same "
        "weights exported each way. Full-integer models have int8 activations and weights, "
        "int32 biases and float32 input/output (QUANTIZE / DEQUANTIZE at the ends); "
        f"calibration on {args.calibration} real MNIST training images. Errors are measured "
        "on all 10,000 test images by the LiteRT interpreter on the decoded file. Codes: "
        "distinct nonzero int8 codes of the stored kernel / distinct nonzero values of the "
        "Keras kernel (at most 2**bits after clustering); an 8-bit codebook has more values "
        "than int8's 254 nonzero codes, so those merge under any scale. Bit-identical compares "
        "the float outputs (as uint32) and the int8 tensor feeding the final DEQUANTIZE with "
        "the plain (unpacked) conversion of the same model and settings.",
        "",
        markdown_table(headers, rows),
        "",
    ]
    if args.snap:
        body += ["The last row starts from the same clustered model: `tfdc.quantize.snap_to_int8_grid` "
                 "rounds every kernel to its per-tensor int8 grid, then one more "
                 "`tfdc.ClusteredFineTuning` epoch (at the recipe's clustering learning rate, 1e-4) "
                 "retrains against the rounded values before the per-tensor export (its Keras "
                 "values are those after that epoch). One run each: differences of a few "
                 "hundredths of a point are within run-to-run noise.", ""]
    body += [f"- {'met' if ok else '**NOT MET**'}: {text}" for text, ok in checks.items()]
    for r in results:
        if r["warnings"]:
            body += [f"- warning for {r['name']}: {r['warnings'][0]}"]
    publish(args, "fullint", "Full-integer export: LeNet-5, per-tensor vs per-channel int8",
            "\n".join(body))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    run(main)
