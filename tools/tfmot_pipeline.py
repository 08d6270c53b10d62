"""tfmot's Deep-Compression-like pipeline on LeNet / MNIST, for the side-by-side
benchmark (`tools/paper_benchmark.py`).

Runs in its OWN virtualenv (`python tools/paper_benchmark.py --setup-tfmot`
creates `.venv-tfmot/`): tensorflow-model-optimization needs legacy tf_keras
and the full `tensorflow` wheel, and sets TF_USE_LEGACY_KERAS=1 on import,
which would switch `tf.keras` for the whole process. It imports nothing from
tfdc; results go out as JSON and the `.tflite` files it writes.

Pipeline (tfmot 0.8 API): float baseline -> `prune_low_magnitude`
(polynomial decay to the same per-layer sparsities as tfdc) -> strip ->
`cluster_weights(preserve_sparsity=True)` (linear init, 2**bits clusters per
layer) -> strip -> sparsity- and cluster-preserving quantization-aware
training (PCQAT, `Default8BitClusterPreserveQuantizeScheme`) -> convert.
Several converter variants are written; each one's raw, gzip -9 and xz -9
sizes and its test error in the TFLite interpreter are reported.

    .venv-tfmot/bin/python tools/tfmot_pipeline.py --network lenet_300_100 \
        --mnist /path/mnist.npz --out out/tfmot --json out/tfmot/lenet_300_100.json
"""

import argparse
import gzip
import json
import lzma
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
from tool_args import description  # noqa: E402  (no tfdc import: its own virtualenv)


def load_mnist(path, channels):
    with np.load(path) as f:
        xtr, ytr, xte, yte = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    xtr = xtr.astype("float32") / 255.0
    xte = xte.astype("float32") / 255.0
    if channels:
        xtr, xte = xtr[..., None], xte[..., None]
    return (xtr, ytr.astype("int64")), (xte, yte.astype("int64"))


def build(network, keras):
    L = keras.layers
    if network == "lenet_300_100":
        return keras.Sequential([
            keras.Input((28, 28)), L.Flatten(name="flatten"),
            L.Dense(300, activation="relu", name="fc1"),
            L.Dense(100, activation="relu", name="fc2"),
            L.Dense(10, activation="softmax", name="fc3")])
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(20, 5, name="conv1"), L.MaxPooling2D(2, name="pool1"),
        L.Conv2D(50, 5, name="conv2"), L.MaxPooling2D(2, name="pool2"), L.Flatten(name="flatten"),
        L.Dense(500, activation="relu", name="fc1"),
        L.Dense(10, activation="softmax", name="fc2")])


def per_layer(value, name, default):
    if isinstance(value, dict):
        return value.get(name, default)
    return value


def tflite_error(tf, content, x, y, batch=500):
    try:
        return _tflite_error(tf, content, x, y, batch, delegates=True)
    except RuntimeError:
        # XNNPACK refuses dynamic-range + sparse models: run the builtin
        # kernels instead.
        return _tflite_error(tf, content, x, y, batch, delegates=False)


def _tflite_error(tf, content, x, y, batch, delegates):
    kwargs = {} if delegates else {"experimental_op_resolver_type":
                                   tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = tf.lite.Interpreter(model_content=content, **kwargs)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [batch] + list(x.shape[1:]))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    wrong = 0
    for s in range(0, len(x), batch):
        chunk = x[s:s + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], chunk.dtype)])
        interpreter.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        interpreter.invoke()
        wrong += int(np.count_nonzero(interpreter.get_tensor(out["index"])[:n].argmax(-1)
                                      != y[s:s + n]))
    return wrong / len(x)


def main():
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--network", choices=["lenet_300_100", "lenet5"], required=True)
    p.add_argument("--mnist", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--sparsity", required=True, help="JSON: a float or {layer: sparsity}")
    p.add_argument("--bits", required=True, help="JSON: an int or {layer: bits}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--prune-epochs", type=int, default=10)
    p.add_argument("--cluster-epochs", type=int, default=3)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    sparsity, bits = json.loads(args.sparsity), json.loads(args.bits)

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    (xtr, ytr), (xte, yte) = load_mnist(args.mnist, channels=args.network == "lenet5")
    if args.train_size:
        xtr, ytr = xtr[:args.train_size], ytr[:args.train_size]
    bs = args.batch_size
    steps = int(np.ceil(len(xtr) / bs))
    times, errors = {}, {}

    def compile_(m, lr=1e-3):
        m.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])

    def err(m):
        return 1.0 - float(m.evaluate(xte, yte, batch_size=1000, verbose=0)[1])

    model = build(args.network, keras)
    compile_(model)
    t = time.perf_counter()
    model.fit(xtr, ytr, batch_size=bs, epochs=args.epochs, verbose=2)
    times["baseline"] = time.perf_counter() - t
    errors["float"] = err(model)
    float_bytes = 4 * int(model.count_params())  # before wrapping moves its layers
    weighted = [layer.name for layer in model.layers if layer.get_weights()]

    # Pruning: same per-layer targets, ramp over the first 2/3, then retrain.
    end = max(1, (2 * args.prune_epochs * steps) // 3)

    def prune_fn(layer):
        s = per_layer(sparsity, layer.name, 0.0)
        if layer.name in weighted and s > 0:
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                    0.0, s, begin_step=0, end_step=end, frequency=max(1, end // 30)))
        return layer

    # clone_function returns the original layer objects (wrapped or not), so
    # the trained weights carry over.
    pruned = keras.models.clone_model(model, clone_function=prune_fn)
    compile_(pruned)
    t = time.perf_counter()
    pruned.fit(xtr, ytr, batch_size=bs, epochs=args.prune_epochs, verbose=2,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    times["prune"] = time.perf_counter() - t
    pruned = tfmot.sparsity.keras.strip_pruning(pruned)
    compile_(pruned)
    errors["pruned"] = err(pruned)

    # Clustering, sparsity preserved, linear init as in the paper.
    cl = tfmot.clustering.keras

    def cluster_fn(layer):
        if layer.name in weighted:
            return cl.cluster_weights(
                layer, number_of_clusters=2 ** int(per_layer(bits, layer.name, 5)),
                cluster_centroids_init=cl.CentroidInitialization.LINEAR, preserve_sparsity=True)
        return layer

    clustered = keras.models.clone_model(pruned, clone_function=cluster_fn)
    compile_(clustered, 1e-4)
    t = time.perf_counter()
    clustered.fit(xtr, ytr, batch_size=bs, epochs=args.cluster_epochs, verbose=2)
    times["cluster"] = time.perf_counter() - t
    clustered = cl.strip_clustering(clustered)
    compile_(clustered)
    errors["clustered"] = err(clustered)

    # PCQAT: quantization-aware training preserving sparsity and clusters.
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve \
        import default_8bit_cluster_preserve_quantize_scheme as pcqat
    annotated = tfmot.quantization.keras.quantize_annotate_model(clustered)
    qat = tfmot.quantization.keras.quantize_apply(
        annotated, pcqat.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True))
    compile_(qat, 1e-4)
    t = time.perf_counter()
    qat.fit(xtr, ytr, batch_size=bs, epochs=args.qat_epochs, verbose=2)
    times["qat"] = time.perf_counter() - t
    errors["qat"] = err(qat)

    variants = {}

    def convert(name, m, optimizations):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        conv.optimizations = optimizations
        t = time.perf_counter()
        content = conv.convert()
        path = os.path.join(args.out, f"{args.network}.{name}.tflite")
        with open(path, "wb") as f:
            f.write(content)
        variants[name] = {"path": os.path.abspath(path), "raw_bytes": len(content),
                          "gzip9_bytes": len(gzip.compress(content, 9)),
                          "xz9_bytes": len(lzma.compress(content, preset=9)),
                          "error": tflite_error(tf, content, xte, yte),
                          "convert_s": time.perf_counter() - t}
        print(name, {k: v for k, v in variants[name].items() if k != "path"}, flush=True)

    opt = tf.lite.Optimize
    convert("float", clustered, [])
    convert("dynamic_range", clustered, [opt.DEFAULT])
    convert("dynamic_range_sparse", clustered, [opt.DEFAULT, opt.EXPERIMENTAL_SPARSITY])
    convert("pcqat_int8", qat, [opt.DEFAULT])
    convert("pcqat_int8_sparse", qat, [opt.DEFAULT, opt.EXPERIMENTAL_SPARSITY])

    result = {"network": args.network, "tfmot_version": tfmot.__version__,
              "tensorflow_version": tf.__version__, "errors": errors, "times": times,
              "variants": variants, "float_bytes": float_bytes,
              "train_size": len(xtr)}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
