"""ai-edge-quantizer recipes on one float .tflite, for `tools/pack_benchmark.py`.

Runs in its OWN virtualenv (`python tools/pack_benchmark.py --setup` creates
`.venv-aeq/` with `ai-edge-quantizer==0.10.0`; it pins ai-edge-litert, so it is
kept out of the project's environment). It imports nothing from tfdc: it reads
the float model, writes one quantized `.tflite` per recipe into --out and a
JSON manifest (recipe -> file, or the quantizer's error).

Recipes (weights only; activations stay float32):

* `weight_only_wi{8,4}{c,t}`: integer weights, channel- (c) or tensor-wise
  (t) min-max scales, an explicit DEQUANTIZE op, float compute (int2
  weight-only leaves the model float in 0.10.0, so it is not listed);
* `weight_only_fp16`: float16 weights (float casting) and a DEQUANTIZE op;
* `dynamic_wi{8,4,2}{c,t}`: integer weights consumed directly by the op
  (dynamic-range quantization of the activations at run time);
* `dynamic_wi{8,4}c_mse`, `dynamic_wi{8,4,2}c_octav`: channel-wise scales
  chosen by the MSE and OCTAV algorithms instead of min-max (MSE has no int2);
* `dynamic_wi{8,4,2}c_hr`: channel-wise with Hadamard rotations (the
  decomposed form, built from standard ops).

19 models in all.

    .venv-aeq/bin/python tools/aeq_recipes.py --float out/pack_benchmark/float.tflite \\
        --out out/pack_benchmark/aeq
"""

import argparse
import json
import os
import traceback

from tool_args import description  # (no tfdc import: its own virtualenv)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def recipes():
    """{name: recipe} for the benchmark, in table order."""
    from ai_edge_quantizer import recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

    def config(mode, bits, granularity, algorithm=AlgorithmName.MIN_MAX_UNIFORM_QUANT):
        manager = recipe_manager.RecipeManager()
        add = (manager.add_weight_only_config if mode == "weight_only"
               else manager.add_dynamic_config)
        add(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=bits,
            granularity=granularity, algorithm_key=algorithm)
        return manager.get_quantization_recipe()

    out = {}
    channel, tensor = QuantGranularity.CHANNELWISE, QuantGranularity.TENSORWISE
    # Weight-only int2 is not listed: the quantizer leaves the model float.
    for mode, widths in (("weight_only", (8, 4)), ("dynamic", (8, 4, 2))):
        for bits in widths:
            for tag, granularity in (("c", channel), ("t", tensor)):
                out[f"{mode}_wi{bits}{tag}"] = config(mode, bits, granularity)
    out["weight_only_fp16"] = config("weight_only", 16, tensor, AlgorithmName.FLOAT_CASTING)
    # MSE has no int2 parameters ("KeyError: 2").
    for bits in (8, 4):
        out[f"dynamic_wi{bits}c_mse"] = config("dynamic", bits, channel, AlgorithmName.MSE)
    for bits in (8, 4, 2):
        out[f"dynamic_wi{bits}c_octav"] = config("dynamic", bits, channel, AlgorithmName.OCTAV)
    out["dynamic_wi8c_hr"] = recipe.dynamic_wi8c_hr_afp32()
    out["dynamic_wi4c_hr"] = recipe.dynamic_wi4c_hr_afp32()
    out["dynamic_wi2c_hr"] = recipe.dynamic_wi2c_hr_afp32()
    return out


def main():
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--float", required=True, help="the float .tflite")
    p.add_argument("--out", required=True, help="folder for the quantized models")
    p.add_argument("--only", default=None, help="comma-separated recipe names")
    args = p.parse_args()

    from importlib.metadata import version

    from ai_edge_quantizer import quantizer

    os.makedirs(args.out, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    manifest = {"ai_edge_quantizer_version": version("ai-edge-quantizer"),
                "ai_edge_litert_version": version("ai-edge-litert"), "models": {}}
    for name, rcp in recipes().items():
        if only and name not in only:
            continue
        path = os.path.join(args.out, name + ".tflite")
        try:
            qt = quantizer.Quantizer(args.float)
            qt.load_quantization_recipe(rcp)
            result = qt.quantize(enable_progress_report=False)
            result.export_model(path, overwrite=True)
            manifest["models"][name] = {"path": os.path.abspath(path), "recipe": rcp}
            print(f"{name}: {os.path.getsize(path):,} B", flush=True)
        except Exception as e:  # a recipe the quantizer refuses is a result too
            message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            manifest["models"][name] = {"error": message}
            print(f"{name}: FAILED {message}", flush=True)
            traceback.print_exc()
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=str)


if __name__ == "__main__":
    main()
