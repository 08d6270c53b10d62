"""Write the demo app's assets: a packed LeNet-300-100 and bundled test digits.

Run from the repository root before building the app:

    python android_demo/make_assets.py                 # train + prune + share + export (under a minute)
    python android_demo/make_assets.py --model m.tflite  # pack (or copy) a given model instead

Writes into android_demo/app/src/main/assets/:
    lenet_300_100.tflite   the packed model (tfdc.export), what the app decodes
    digits.u8              N MNIST test images, 28x28 uint8 row-major
    labels.u8              their N labels, uint8
and prints the accuracy the host LiteRT interpreter gets on those digits,
which the app should reproduce on every accelerator.
"""

import argparse
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
ASSETS = os.path.join(HERE, "app", "src", "main", "assets")
MODEL_ASSET = "lenet_300_100.tflite"


def train_and_export(path, x_train, y_train, epochs):
    import keras
    import tfdc
    from tfdc.models import lenet_300_100

    keras.utils.set_random_seed(0)
    model = lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    # The paper's recipe, shortened: train, prune to 92 % (GradualPruning over
    # the first two thirds of the pruning epochs), then share weights (5 bits).
    model.fit(x_train, y_train, epochs=epochs, batch_size=128, verbose=2)
    steps = epochs * (len(x_train) // 128)
    begin = int(np.asarray(model.optimizer.iterations))
    end = begin + max(1, 2 * steps // 3)
    model.fit(x_train, y_train, epochs=epochs, batch_size=128, verbose=2,
              callbacks=[tfdc.GradualPruning(0.92, begin_step=begin, end_step=end,
                                             frequency=max(1, (end - begin) // 30))])
    model.fit(x_train, y_train, epochs=1, batch_size=128, verbose=2,
              callbacks=[tfdc.ClusteredFineTuning(bits=5)])
    print(tfdc.export(model, path))


def pack_given(src, path):
    import tfdc
    from tfdc.exporter import export_tflite
    data = open(src, "rb").read()
    if tfdc.is_packed(data):
        shutil.copyfile(src, path)
    else:
        print(export_tflite(data, path))


def host_accuracy(path, images, labels):
    import tfdc
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tfdc.decode(open(path, "rb").read()))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    correct = 0
    for image, label in zip(images, labels):
        interp.set_tensor(inp["index"], image[None].astype(np.float32))
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(out["index"])) == label)
    return correct / len(labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .tflite (plain or packed) to ship instead of training one")
    parser.add_argument("--digits", type=int, default=200, help="test digits to bundle (default 200)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of training and of pruning")
    parser.add_argument("--train", type=int, default=20000, help="training images to use (default 20000)")
    parser.add_argument("--out", default=ASSETS)
    args = parser.parse_args(argv)

    from tfdc.datasets import load_mnist
    (x_train, y_train), (x_test, y_test) = load_mnist()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, MODEL_ASSET)
    if args.model:
        pack_given(args.model, path)
    else:
        train_and_export(path, x_train[:args.train], y_train[:args.train], args.epochs)

    images = np.clip(np.rint(x_test[:args.digits] * 255), 0, 255).astype(np.uint8)
    labels = y_test[:args.digits].astype(np.uint8)
    images.tofile(os.path.join(args.out, "digits.u8"))
    labels.tofile(os.path.join(args.out, "labels.u8"))
    # The app sees exactly these uint8 pixels / 255, so measure on them too.
    acc = host_accuracy(path, images.astype(np.float32) / 255.0, labels)
    print(f"wrote {path} ({os.path.getsize(path)} B) and {len(labels)} digits to {args.out}")
    print(f"host LiteRT accuracy on the bundled digits: {100 * acc:.1f} %")


if __name__ == "__main__":
    main()
