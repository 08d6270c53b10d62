"""`tfdc compress MODEL DATA OUT`: a trained .keras model and an .npz of real
MNIST in, the packed file within its byte budget out, its test error
measured in LiteRT; every mistake refused with one `tfdc: error:` line
before any training, and a missed budget with exit status 1."""

import os
import re

import numpy as np
import pytest
from conftest import assert_one_line_error, assert_usage_error, run_cli as run

from tfdc.cli import main


@pytest.fixture
def files(keras_user_files):
    return keras_user_files


def test_compresses_to_the_target_and_reports_the_test_error(capsys, files, mnist_small):
    from tfdc.demo import tflite_error
    out = files["folder"] / "mlp.tflite"
    code, text, err = run(capsys, "compress", files["model"], files["data"], out,
                          "--target-bytes", 9000, "--epochs", "1,1", "--report")
    assert code == 0, err
    size = os.path.getsize(out)
    assert 0.95 * 9000 <= size <= 9000
    assert ("training on 1,792 examples (x float32 in [0, 1], given to the model as stored); "
            "validation: x_val, y_val of data.npz (256 examples)") in text
    assert f"{out}: {size:,} B packed" in text and "fc1" in text  # the result and the report
    # The printed test error is the packed file's, run in LiteRT on x_test.
    (_, _), (xt, yt) = mnist_small
    error = tflite_error(str(out), xt[:512], yt[:512])
    assert f"test (x_test, 512 examples, not used to compress): error {error:.2%} packed" in text


def test_full_integer(capsys, files, mnist_small):
    """--full-integer: the file is int8 (weights and activations) and the
    printed test error is that file's in LiteRT."""
    import tfdc
    from tfdc.demo import tflite_error
    from tfdc.runtime import interpreter_class
    out = files["folder"] / "int8.tflite"
    code, text, err = run(capsys, "compress", files["model"], files["data"], out,
                          "--target-bytes", 9000, "--epochs", "1,1", "--full-integer")
    assert code == 0 and os.path.getsize(out) <= 9000, text + err
    assert "full-integer export (int8 activations and weights)" in text
    assert f"{os.path.getsize(out):,} B packed full-integer" in text
    details = interpreter_class()(model_content=tfdc.decode(out.read_bytes())).get_tensor_details()
    assert sum(d["dtype"] == np.int8 for d in details) >= 3   # the input's, kernels, activations
    (_, _), (xt, yt) = mnist_small
    assert f"error {tflite_error(str(out), xt[:512], yt[:512]):.2%} packed" in text


def test_a_model_with_its_output_in_a_dict(capsys, files, mnist_small):
    """`{"probs": y}` saved and loaded: its test split is scored through the
    plain output, and the packed file's signature keeps the key."""
    import keras

    import tfdc
    from tfdc.demo import tflite_error
    plain = keras.models.load_model(files["model"])
    model = keras.Model(plain.inputs[0], {"probs": plain.outputs[0]})
    model.compile("adam", {"probs": "sparse_categorical_crossentropy"})
    model.optimizer.build(model.trainable_variables)  # saved whole: loads without a warning
    model.save(files["folder"] / "dict.keras")
    out = files["folder"] / "dict.tflite"
    code, text, err = run(capsys, "compress", files["folder"] / "dict.keras", files["data"],
                          out, "--target-bytes", 9000, "--epochs", "1,1")
    assert code == 0, err
    (_, _), (xt, yt) = mnist_small
    assert f"error {tflite_error(str(out), xt[:512], yt[:512]):.2%} packed" in text
    signature = tfdc.load_interpreter(out).get_signature_list()["serving_default"]
    assert signature["outputs"] == ["probs"]


def test_a_missed_budget_exits_with_status_3(capsys, files):
    # A file retrained for 2 epochs does not beat a converged model by the
    # ~4 points that a bound of 0 at 99 % confidence on 256 images needs.
    out = files["folder"] / "strict.tflite"
    code, text, err = run(capsys, "compress", files["model"], files["data"], out,
                          "--max-error-increase", 0, "--confidence", 0.99, "--epochs", "1,1")
    # compress's warning, before the training, as a tfdc line; the missed
    # budget only once, as the error.
    warning, error = err.strip().split("\n", 1)
    assert warning == ("tfdc: warning: on 256 validation examples, a packed file exactly as "
                       "accurate as the float model has an error increase bound of +1.28 points "
                       "at 99% confidence, more than the budget of 0: only a file more accurate "
                       "than the float model on these examples can meet it")
    # Its own status (it was 1, as for data that cannot be used): OUT written.
    assert code == 3 and error.startswith("tfdc: budget missed (see above)") and \
        f"{out} holds the run kept" in error and "\n" not in error.strip(), error
    assert os.path.getsize(out) > 0 and "no run met the error budget" in text


def test_a_regression_model_to_a_loss_budget(capsys, tmp_path):
    """A model compiled with MSE, --max-loss-increase: the kept file's
    bound is within the budget, and the test line is the LiteRT loss."""
    import keras

    from tfdc.demo import tflite_outputs
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(16, 2))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(x[:1600], y[:1600], epochs=5, verbose=0)
    model.save(tmp_path / "reg.keras")
    np.savez(tmp_path / "reg.npz", x_train=x[:1600], y_train=y[:1600], x_test=x[1600:],
             y_test=y[1600:])
    out = tmp_path / "reg.tflite"
    code, text, err = run(capsys, "compress", tmp_path / "reg.keras", tmp_path / "reg.npz", out,
                          "--max-loss-increase", 0.2, "--epochs", "2,1")
    assert code == 0, err
    assert "the last 10 % of x_train (160 examples" in text
    bound = float(re.search(r"at most ([+-][\d.]+) % at 90% confidence\), within the budget of "
                            r"20 %", text).group(1))
    assert bound <= 20
    packed = np.mean((tflite_outputs(str(out), x[1600:]) - y[1600:]) ** 2)
    assert f"test (x_test, 400 examples, not used to compress): loss {packed:.4g} packed" in text


@pytest.mark.parametrize("argv, words", [
    (["{missing}", "{data}", "{out}", "--target-bytes", "9000"], ["no such file"]),
    (["{folder}", "{data}", "{out}", "--target-bytes", "9000"], ["is a directory"]),
    (["{tflite}", "{data}", "{out}", "--target-bytes", "9000"], ["already converted",
                                                               "tfdc pack"]),
    (["{model}", "{missing}", "{out}", "--target-bytes", "9000"], ["no such file"]),
    (["{loop}", "{data}", "{out}", "--target-bytes", "9000"], ["a symbolic link to nothing"]),
    (["{model}", "{loop}", "{out}", "--target-bytes", "9000"], ["a symbolic link to nothing"]),
    (["{model}", "{model}", "{out}", "--target-bytes", "9000"], ["no x_train", "config.json"]),
    (["{model}", "{tflite}", "{out}", "--target-bytes", "9000"], ["is not an .npz file"]),
    (["{model}", "{data}", "{folder}/no/out.tflite", "--target-bytes", "9000"],
     ["does not exist"]),
    (["{model}", "{data}", "{out}", "--target-bytes", "10"], ["--target-bytes 10 cannot be "
                                                             "reached"]),
])
def test_mistakes_are_one_line_errors_and_write_nothing(capsys, files, argv, words):
    tflite = files["folder"] / "plain.tflite"
    tflite.write_bytes(b"\0\0\0\0TFL3" + bytes(32))
    loop = files["folder"] / "loop"  # was "no such file"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    names = dict(files, missing=files["folder"] / "missing", out=files["folder"] / "x.tflite",
                 tflite=tflite, loop=loop)
    code, _, err = run(capsys, "compress", *[a.format(**names) for a in argv])
    assert_one_line_error(code, err, *words)
    assert not os.path.exists(names["out"])


def test_a_lambda_layer_needs_no_safe_mode(capsys, files, tmp_path):
    """Keras's safe mode refuses a saved Python lambda: the error names the
    option, and with it the model loads (and copies: tfdc.layers.copy_layer)
    as far as the first check of the data."""
    import keras
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Lambda(lambda t: 2.0 * t),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "lambda.keras")
    out = tmp_path / "lambda.tflite"
    argv = ["compress", tmp_path / "lambda.keras", files["data"], out, "--target-bytes", 10]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "Python lambda (for a file you trust: --no-safe-mode)")
    code, _, err = run(capsys, *argv, "--no-safe-mode")
    # The model is untrained: a warning first, as a tfdc line, then the error.
    warning, error = err.strip().split("\n", 1)
    assert warning.startswith("tfdc: warning: the float model's validation error (")
    assert "is about that of always answering class" in warning
    assert_one_line_error(code, error, "--target-bytes 10 cannot be reached")
    assert not os.path.exists(out)


@pytest.mark.parametrize("test, words", [
    ("x", ["x_test: the model cannot run on x of shape (4, 27, 28) (it takes (None, 28, "
           "28)): "]),
    ("inf", ["x_test has NaN or infinite values in 1 example (the first: example 2)"]),
    ("y", ["y_test: labels must be in [0, 10) for 10 outputs"]),
])
def test_a_bad_test_split_fails_before_training(capsys, files, mnist_small, test, words):
    (x, y), _ = mnist_small
    xt, yt = x[:4], y[:4]
    if test == "x":
        xt = xt[:, 1:]
    elif test == "inf":
        xt = xt.copy()
        xt[2, 0, 0] = -np.inf
    else:
        yt = yt + 10
    data = files["folder"] / f"bad_{test}.npz"
    np.savez(data, x_train=x[:256], y_train=y[:256], x_test=xt, y_test=yt)
    out = files["folder"] / f"bad_{test}.tflite"
    code, text, err = run(capsys, "compress", files["model"], data, out, "--target-bytes", 9000)
    assert_one_line_error(code, err, *words)
    assert not os.path.exists(out) and "sensitivity scan" not in text


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --target-bytes --max-error-increase --max-loss-increase is "
         "required"),
    (["--target-bytes", "9000", "--max-error-increase", "0.2"], "not allowed with"),
    (["--max-error-increase", "150"], "must be in [0, 100] percentage points, got 150"),
    (["--max-loss-increase", "0.1", "--max-error-increase", "0.2"], "not allowed with"),
    (["--max-loss-increase", "-0.1"], "must be a finite number > 0"),
    (["--max-loss-increase", "0"], "must be a finite number > 0"),
    (["--target-bytes", "20 kilobytes"], "not a size in bytes"),
    (["--target-bytes", "0.5KB", "--seed", "-1"], "must be >= 0, got -1"),
    (["--target-bytes", "9000", "--epochs", "1"], "must be >= 2"),
    (["--target-bytes", "9000", "--epochs", "1,2,3"], "expected N or P,C"),
    (["--target-bytes", "9000", "--epochs", "3,0"], "must be >= 1"),
    (["--target-bytes", "9000", "--validation-split", "1"], "must be in (0, 1)"),
])
def test_bad_options_are_usage_errors(capsys, files, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", files["model"], files["data"], "out.tflite"] + argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_model_with_two_inputs_and_two_outputs(capsys, tmp_path, mnist_small):
    """DATA with x_train/NAME (a dict, names sorting against the model's
    input order) and y_train/0, y_train/1 (a list): compress and plan take
    them; the test line is the packed file's summed, weighted loss in
    LiteRT (cross-entropy + 0.5 x MSE), computed here by hand."""
    import keras

    from tfdc.demo import tflite_outputs
    (x, y), (xt, yt) = mnist_small
    ink = lambda images: images.reshape(len(images), -1).mean(1, keepdims=True)  # noqa: E731
    rng = np.random.default_rng(0)
    aux, aux_t = rng.normal(size=(len(x), 4)).astype("float32"), \
        rng.normal(size=(len(xt), 4)).astype("float32")
    keras.utils.set_random_seed(0)
    pixels = keras.Input((28, 28), name="pixels")
    side = keras.Input((4,), name="aux")
    trunk = keras.layers.Dense(64, activation="relu", name="trunk")(
        keras.layers.Concatenate()([keras.layers.Flatten()(pixels), side]))
    model = keras.Model([pixels, side], [keras.layers.Dense(10, name="digit")(trunk),
                                         keras.layers.Dense(1, name="ink")(trunk)])
    model.compile("adam", [keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"],
                  loss_weights=[1.0, 0.5])
    model.fit([x[:1792], aux[:1792]], [y[:1792], ink(x[:1792])], epochs=8, batch_size=64,
              verbose=0)
    model.save(tmp_path / "two.keras")
    data = tmp_path / "two.npz"
    split = {"train": slice(0, 1792), "val": slice(1792, 2048)}
    arrays = {f"x_{s}/pixels": x[i] for s, i in split.items()}
    arrays.update({f"x_{s}/aux": aux[i] for s, i in split.items()})
    arrays.update({f"y_{s}/0": y[i] for s, i in split.items()})
    arrays.update({f"y_{s}/1": ink(x[i]) for s, i in split.items()})
    arrays.update({"x_test/pixels": xt[:512], "x_test/aux": aux_t[:512], "y_test/0": yt[:512],
                   "y_test/1": ink(xt[:512])})
    np.savez(data, **arrays)
    out = tmp_path / "two.tflite"
    code, text, err = run(capsys, "compress", tmp_path / "two.keras", data, out,
                          "--target-bytes", 12000, "--epochs", "1,1")
    assert code == 0 and os.path.getsize(out) <= 12000, text + err
    assert "training on 1,792 examples (x/aux float32 in [" in text
    digit, mean_ink = tflite_outputs(str(out), [xt[:512], aux_t[:512]], every_output=True)
    logits = digit - digit.max(1, keepdims=True)
    cross_entropy = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(512), yt[:512]])
    loss = cross_entropy + 0.5 * np.mean((mean_ink - ink(xt[:512])) ** 2)
    line = re.search(r"test \(x_test, 512 examples, not used to compress\): loss (\S+) packed",
                     text)
    assert line and float(line.group(1)) == pytest.approx(loss, rel=1e-3), text
    code, text, err = run(capsys, "plan", tmp_path / "two.keras", data, "--target-bytes", 12000)
    assert code == 0 and "trunk" in text, err
    # One y for this model's two outputs: refused before any work.
    np.savez(tmp_path / "one_y.npz", **{"x_train/pixels": x[:64], "x_train/aux": aux[:64],
                                        "y_train": y[:64]})
    code, _, err = run(capsys, "plan", tmp_path / "two.keras", tmp_path / "one_y.npz",
                       "--target-bytes", 12000)
    assert_one_line_error(code, err, "has 2 (digit, ink); DATA holds one y")


def test_mistakes_across_options_and_paths_are_refused_before_any_work(capsys, files, tmp_path):
    import shutil
    model, data = str(tmp_path / "mlp.keras"), files["data"]
    shutil.copy(files["model"], model)
    before = open(model, "rb").read()
    # A path through the model's own name: tidied to the model by realpath,
    # which compress then overwrote (and plan --json, with exit status 0).
    through = f"{model}/../mlp.keras"
    code, _, err = run(capsys, "compress", model, data, through, "--target-bytes", "9000")
    assert_one_line_error(code, err, "is not a folder (part of it is a file)")
    code, _, err = run(capsys, "plan", model, data, "--target-bytes", "9000", "--json", through)
    assert_one_line_error(code, err, "is not a folder (part of it is a file)")
    assert open(model, "rb").read() == before
    out = str(tmp_path / "o.tflite")
    for argv, message in [
            (["compress", model, data, out, "--target-bytes", "9000", "--confidence", "0.9"],
             "compress: --confidence applies to --max-error-increase"),
            (["compress", model, data, out, "--target-bytes", "9000", "--validation-split", "0.2"],
             "has x_val, y_val, the validation data"),
            (["plan", model, data, "--target-bytes", "9000", "--plot", str(tmp_path / "p.png"),
              "--json", str(tmp_path / "p.png")], "--plot and --json are the same file"),
            # ... also through a link (the figure was lost under the JSON).
            (["plan", model, data, "--target-bytes", "9000", "--plot", str(tmp_path / "ln.png"),
              "--json", str(tmp_path / "p.png")], "--plot and --json are the same file")]:
        if "ln.png" in " ".join(argv):
            os.symlink(tmp_path / "p.png", tmp_path / "ln.png")
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
    # OUT is read back to be measured: a device is refused before training.
    code, _, err = run(capsys, "compress", model, data, "/dev/null", "--target-bytes", "9000")
    assert_one_line_error(code, err, "/dev/null: not a regular file")
    os.unlink(tmp_path / "ln.png")
    assert sorted(os.listdir(tmp_path)) == ["mlp.keras"]


def test_a_byte_target_takes_units():
    from tfdc.cli import _byte_count
    assert [_byte_count(t) for t in ("20000", "20_000", "20KB", "20k", "20kB", "1KiB", "1.5MB",
                                     "2MiB", "1GB", "2GiB")] == [
        20000, 20000, 20000, 20000, 20000, 1024, 1500000, 2 << 20, 10 ** 9, 2 << 30]
    # Exactly: through a float, 99999999999999999999999 was planned for
    # 99,999,999,999,999,991,611,392 B, and 1e400 digits raised OverflowError.
    assert _byte_count("9223372036854775807") == (1 << 63) - 1
    assert _byte_count("0.000001GB") == 1000
    import argparse
    for bad in ("0", "0.5", "1.0001KB", "20 TB", "-5", "KB", "9223372036854775808",
                "99999999999999999999999", "1" + "0" * 400):
        with pytest.raises(argparse.ArgumentTypeError):
            _byte_count(bad)


@pytest.mark.parametrize("text, words", [
    # tfdc.compress's messages as tfdc compress shows them: its user gave
    # options, and has no keyword or tfdc.plan grid to give.
    ("the given plan made 9,120 B, over target_bytes=8,000: the smallest weights",
     "the given plan made 9,120 B, over --target-bytes 8000: the smallest weights"),
    ("validation_data: max_error_increase=0.2 cannot be met on 300 examples",
     "validation_data: --max-error-increase 0.2 cannot be met on 300 examples"),
    ("give target_bytes or max_loss_increase", "give --target-bytes or --max-loss-increase"),
    ("a larger target keeps more (or give max_error_increase).",
     "a larger target keeps more (or give --max-error-increase)."),
    ("is scored by its loss (mse): give distill=False", "is scored by its loss (mse): leave out "
     "--distill"),
    ("distill=True needs a model with one output", "--distill needs a model with one output"),
    ("or confidence=None to compare mean losses only",
     "or --confidence none to compare mean losses only"),
    ("Train longer (epochs=), allow more error", "Train longer (--epochs), allow more error"),
    ("give a larger target (to tfdc.plan also sparsities= / bits= grids that go further)",
     "give a larger target"),
    ("at 90% confidence, within the budget", "at 90% confidence, within the budget"),
    ("setting); give a larger budget (to tfdc.plan also bits= that go higher)",
     "setting); give a larger budget"),
])
def test_compress_messages_name_the_options(text, words):
    from tfdc.cli import _as_options
    assert _as_options(text) == words


def test_data_on_another_scale_than_x_train_is_warned_of(capsys, keras_user_files, tmp_path):
    # uint8 x_val and x_test beside x_train in [0, 1]: scored without a word
    # (a float loss of 2.29 for 0.53, a test error of 18.9 % for 16.4 %).
    data = dict(np.load(keras_user_files["data"]))
    for key in ("x_val", "x_test"):
        data[key] = np.round(255 * data[key]).astype("uint8")
    np.savez(tmp_path / "pixels.npz", **data)
    code, _, err = run(capsys, "compress", keras_user_files["model"], tmp_path / "pixels.npz",
                       tmp_path / "out.tflite", "--target-bytes", 10)
    assert code == 1 and "--target-bytes 10 cannot be reached" in err
    assert ("tfdc: warning: x_test: its values reach magnitude 255, the training data 1: is it "
            "preprocessed as x_train is?") in err
    assert ("pixels.npz, x_val / y_val: its x values reach magnitude 255, the training data 1: "
            "is it preprocessed as the training data is") in err
    code, _, err = run(capsys, "compress", keras_user_files["model"], keras_user_files["data"],
                       tmp_path / "out.tflite", "--target-bytes", 10)
    assert "warning" not in err


def test_out_dash_is_refused_not_a_file_named_dash(capsys, keras_user_files, tmp_path,
                                                     monkeypatch):
    # compress writes OUT and reads it back: "-" wrote a file named "-".
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "compress", keras_user_files["model"], keras_user_files["data"],
                       "-", "--target-bytes", 9000)
    assert code == 2 and "OUT is standard output: tfdc compress writes OUT and reads it back" in err
    assert os.listdir(tmp_path) == []
    # OUT naming an input is the same kind of mistake (it was exit 1, as a
    # missed budget is).
    for given, name in (("model", "MODEL"), ("data", "DATA")):
        code, _, err = run(capsys, "compress", keras_user_files["model"],
                           keras_user_files["data"], keras_user_files[given], "--target-bytes",
                           9000)
        assert_usage_error(code, err, f"OUT is {name}; write it to another path")


def test_a_progress_reader_that_leaves_does_not_stop_the_compression(files):
    # `tfdc compress ... | head -1`: the first progress line after head left
    # ended the run with status 1, nothing written and nothing said.
    import subprocess
    import sys

    import tfdc
    out = files["folder"] / "piped.tflite"
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-c", "import sys; from tfdc.cli import main; "
                           f"sys.exit(main(['compress', {files['model']!r}, {files['data']!r}, "
                           f"{str(out)!r}, '--target-bytes', '9000', '--epochs', '1,1']))"],
                          stdout=write, stderr=subprocess.PIPE, text=True, timeout=600)
    os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("tfdc: standard output's reader left: going on without progress "
                             "(OUT is still written)") == 1, proc.stderr
    assert tfdc.is_packed(str(out)) and os.path.getsize(out) <= 9000
