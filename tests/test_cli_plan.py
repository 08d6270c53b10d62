"""`tfdc plan MODEL DATA`: the sensitivity scan and the plan for a budget of a
user's saved model, without training; the plan's JSON and the paper's figure
written on request; mistakes refused with one `tfdc: error:` line."""

import contextlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import assert_one_line_error, assert_usage_error, run_cli as run

import tfdc


def test_plans_for_the_target_and_writes_the_json_and_the_figure(capsys, keras_user_files):
    files = keras_user_files
    figure, saved = files["folder"] / "scan.png", files["folder"] / "plan.json"
    code, text, err = run(capsys, "plan", files["model"], files["data"], "--target-bytes", 9000,
                          "--plot", figure, "--json", saved)
    assert code == 0, err
    assert "validation: x_val, y_val of data.npz (256 examples)" in text
    assert "| layer | weights | 50 % |" in text and "| fc1 | 25,088 |" in text  # the scan
    plan = json.loads(saved.read_text())
    assert set(plan["sparsity"]) == set(plan["bits"]) == {"fc1", "fc2"}
    assert plan["predicted_bytes"] <= plan["target_bytes"] == 9000
    assert f"file: {plan['predicted_bytes']:,} B" in text  # the printed plan is the saved one
    for name in ("fc1", "fc2"):
        row = next(r for r in plan["rows"] if r["layer"] == name)
        assert f"{row['sparsity']:>8.2%}  {row['bits']:>4}" in text
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The settings train as they are: tfdc's callbacks accept them.
    tfdc.GradualPruning(target_sparsity=plan["sparsity"])
    tfdc.ClusteredFineTuning(bits=plan["bits"])


def test_mistakes_are_one_line_errors(capsys, keras_user_files, tmp_path):
    files = keras_user_files
    code, _, err = run(capsys, "plan", files["model"], files["data"], "--target-bytes", 9000,
                       "--json", files["data"])
    assert_usage_error(code, err, "--json is DATA; write it to another path")
    code, text, err = run(capsys, "plan", files["model"], files["data"], "--target-bytes", 9000,
                          "--plot", tmp_path / "scan.txt")
    assert_one_line_error(code, err, "scan.txt: --plot draws an image", ".png")
    assert "sensitivity" not in text  # refused before the scan
    # A .keras file cut short, or not one: Keras said "File not found" of a
    # file that is there, and the command "cannot load it: ValueError".
    with open(files["model"], "rb") as f:
        data = f.read()
    for name, content, words in (("cut.keras", data[:len(data) // 2], "truncated or damaged"),
                                 ("text.keras", b"not a model", "is not one")):
        (tmp_path / name).write_bytes(content)
        code, _, err = run(capsys, "plan", tmp_path / name, files["data"], "--target-bytes", 9000)
        assert_one_line_error(code, err, f"{name}: not a Keras model file: a .keras file is a "
                              "zip archive", words)
    # A legacy HDF5 model named .keras: Keras said "File not found" of it.
    keras.models.load_model(files["model"]).save(tmp_path / "legacy.h5")
    os.replace(tmp_path / "legacy.h5", tmp_path / "legacy.keras")
    code, _, err = run(capsys, "plan", tmp_path / "legacy.keras", files["data"],
                       "--target-bytes", 9000)
    assert_one_line_error(code, err, "legacy.keras: an HDF5 model file (Keras's legacy .h5) named "
                          ".keras: rename it to .h5")
    # An .npz cut short is said to be (it was "not an .npz file").
    with open(files["data"], "rb") as f:
        (tmp_path / "cut.npz").write_bytes(f.read()[:1000])
    code, _, err = run(capsys, "plan", files["model"], tmp_path / "cut.npz",
                       "--target-bytes", 9000)
    assert_one_line_error(code, err, "cut.npz is a truncated or damaged .npz file")
    code, _, err = run(capsys, "plan", files["model"], files["data"], "--target-bytes", 10)
    # In the command line's words: the option, no Python-only grids.
    assert_one_line_error(code, err, "--target-bytes 10 cannot be reached", "give a larger "
                          "target")
    assert "target_bytes" not in err and "tfdc.plan" not in err
    inputs = keras.Input((28, 28))
    hidden = keras.layers.Flatten()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(10, name="a")(hidden),
                               keras.layers.Dense(3, name="b")(hidden)])
    two.save(tmp_path / "two.keras")
    code, _, err = run(capsys, "plan", tmp_path / "two.keras", files["data"],
                       "--max-loss-increase", 0.1)
    assert_one_line_error(code, err, "tfdc: error: plan: the model has several outputs, "
                          "'functional",
                          "has 2 (a, b); DATA holds one y: give one y_train/KEY")
    # x arrays that are not one per input: a one-input model given x_val/0
    # failed in the middle of the scan (the one-item list read as a batch
    # axis); three arrays for two inputs were a traceback.
    data = dict(np.load(files["data"]))
    keyed = {(f"{k}/0" if k.startswith("x_") else k): v for k, v in data.items()}
    np.savez(tmp_path / "keyed.npz", **keyed)
    code, text, err = run(capsys, "plan", files["model"], tmp_path / "keyed.npz",
                          "--target-bytes", 9000)
    assert_one_line_error(code, err, "tfdc: error: plan: the model has one input; DATA holds x as "
                          "several arrays (x_train/KEY: 0): give one x_train")
    assert "sensitivity" not in text
    left, right = keras.Input((28, 28), name="left"), keras.Input((28, 28), name="right")
    both = keras.Model([left, right], keras.layers.Dense(10)(keras.layers.Flatten()(
        keras.layers.Add()([left, right]))))
    both.save(tmp_path / "both.keras")
    three = {k: v for k, v in data.items() if not k.startswith("x_")}
    three.update({f"{k}/{i}": v for k, v in data.items() if k.startswith("x_") for i in range(3)})
    np.savez(tmp_path / "three.npz", **three)
    code, _, err = run(capsys, "plan", tmp_path / "both.keras", tmp_path / "three.npz",
                       "--target-bytes", 9000)
    assert_one_line_error(code, err, "tfdc: error: plan: the model has 2 inputs (left, right); "
                          "DATA "
                          "holds 3 x_train/KEY arrays (0, 1, 2)")


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --target-bytes --max-error-increase --max-loss-increase is "
         "required"),
    (["--target-bytes", "9000", "--confidence", "0.9"], "unrecognized arguments: --confidence"),
])
def test_arguments(capsys, keras_user_files, argv, message):
    with pytest.raises(SystemExit) as exit_:
        run(capsys, "plan", keras_user_files["model"], keras_user_files["data"], *argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_model_of_the_users_own_classes_loads_with_import(capsys, keras_user_files, tmp_path):
    # A subclassed model could not be loaded by the command line at all:
    # Keras's "Could not locate class" came with its 1,500-character config.
    module = tmp_path / "user_models_for_tfdc_test.py"
    module.write_text(
        "import keras\n"
        "@keras.saving.register_keras_serializable('tfdc_cli_test')\n"
        "class Small(keras.Model):\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__(**kw)\n"
        "        self.flat = keras.layers.Flatten()\n"
        "        self.fc1 = keras.layers.Dense(32, activation='relu', name='fc1')\n"
        "        self.out = keras.layers.Dense(10, activation='softmax', name='out')\n"
        "    def call(self, x):\n"
        "        return self.out(self.fc1(self.flat(x)))\n")
    saved = tmp_path / "small.keras"
    subprocess.run([sys.executable, "-c",
                    "import keras, numpy as np, user_models_for_tfdc_test as m\n"
                    "model = m.Small(); model.compile('adam', 'sparse_categorical_crossentropy')\n"
                    "model.fit(np.random.rand(64, 28, 28), np.arange(64) % 10, verbose=0)\n"
                    f"model.save({str(saved)!r})\n"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=300)
    argv = ["plan", saved, keras_user_files["data"], "--target-bytes", 20000]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "it uses class 'Small' of your code: give --import MODULE")
    code, _, err = run(capsys, *argv, "--import", tmp_path / "no_such_module.py")
    assert_one_line_error(code, err, "--import", "cannot import it: FileNotFoundError")
    # A data file given by mistake: "the 'package' argument is required to
    # perform a relative import for '../data.npz'", "No module named 'data'".
    data = str(keras_user_files["data"])
    for folder, given in ((tmp_path, data), (tmp_path, os.path.relpath(data, tmp_path)),
                          (os.path.dirname(data), os.path.basename(data)),
                          (tmp_path, "missing.npz")):  # was "No module named 'missing'", 1
        with contextlib.chdir(folder):
            code, _, err = run(capsys, *argv, "--import", given)
        assert_usage_error(code, err, f"--import {given}: not a module name (e.g. my_layers) "
                                      "or a path to a .py file (see 'tfdc plan --help')")
    code, text, err = run(capsys, *argv, "--import", module)
    assert code == 0, err
    assert "file: " in text and "| fc1 |" in text


def test_json_to_stdout_and_text_inputs_refused(capsys, keras_user_files, tmp_path):
    import numpy as np
    files = keras_user_files
    # --json -: the JSON alone on stdout, for a pipe (it wrote a file named "-").
    code, out, err = run(capsys, "plan", files["model"], files["data"], "--target-bytes", 9000,
                         "--json", "-")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["predicted_bytes"] <= 9000 and "| fc1 |" in err
    assert not (tmp_path / "-").exists() and not os.path.exists("-")
    # Text for a numeric input: said so (it was a shape error about (400, 1)).
    text = tmp_path / "text.npz"
    np.savez(text, x_train=np.array(["a"] * 64), y_train=np.arange(64) % 10)
    code, _, err = run(capsys, "plan", files["model"], text, "--target-bytes", 9000)
    # Named by DATA's keys (it said "validation_data:", a Python argument).
    assert_one_line_error(code, err, "text.npz, x_train / y_train (the validation split): x "
                          "holds <U1 values (text or objects); the model takes float32 numbers")


def test_runs_on_tensorflow_whatever_keras_backend_says(keras_user_files):
    """KERAS_BACKEND=jax set for the user's own work: the command still runs
    (a .keras file loads on any backend; tfdc trains and converts on
    TensorFlow's). JAX is not installed here, so Keras itself failed."""
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, "-m", "tfdc.cli", "plan", keras_user_files["model"],
                           keras_user_files["data"], "--target-bytes", "9000"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| fc1 |" in done.stdout


def test_positional_keys_feed_a_model_of_a_dict_of_inputs(capsys, tmp_path):
    # x_val/0, x_val/1 (the README's "in the model's order") for a model
    # built on a dict of inputs failed: "The structure of inputs doesn't
    # match"; x_val/NAME worked.
    keras.utils.set_random_seed(0)
    top, bottom = keras.Input((6,), name="top"), keras.Input((4,), name="bottom")
    hidden = keras.layers.Dense(16, activation="relu", name="fc1")(
        keras.layers.Concatenate()([top, bottom]))
    model = keras.Model({"top": top, "bottom": bottom},
                        keras.layers.Dense(3, activation="softmax", name="out")(hidden))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {"top": rng.random((256, 6), dtype=np.float32),
         "bottom": rng.random((256, 4), dtype=np.float32)}
    y = (x["top"][:, 0] * 3).astype(int)
    model.fit(x, y, epochs=30, verbose=0)
    model.save(tmp_path / "dict.keras")
    order = [t.name for t in model.inputs]  # the order x_val/0, x_val/1 follow
    plans = []
    for name, keys in (("named", order), ("positional", ["0", "1"])):
        np.savez(tmp_path / f"{name}.npz", y_train=y, y_val=y,
                 **{f"x_{split}/{key}": x[input_name] for split in ("train", "val")
                    for key, input_name in zip(keys, order)})
        code, text, err = run(capsys, "plan", tmp_path / "dict.keras", tmp_path / f"{name}.npz",
                              "--target-bytes", 1200, "--json", "-")
        assert code == 0, err
        plans.append(json.loads(text))
    assert plans[0] == plans[1]
