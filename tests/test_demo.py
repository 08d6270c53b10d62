"""`tfdc demo` end to end on real MNIST (a tiny budget), and the digits path."""

import os
import re

import pytest

from tfdc.cli import main


def test_demo_tiny_writes_model_reports_and_plots(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    if not os.path.exists(os.environ.get("TFDC_MNIST", "")):
        pytest.skip("real MNIST not available (set TFDC_MNIST)")
    from tfdc.unpack import is_packed
    out = tmp_path / "demo"
    code = main(["demo", "--tiny", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    packed = out / "lenet_300_100.tflite"
    data = packed.read_bytes()
    assert is_packed(data)
    assert (out / "lenet_300_100.decoded.tflite").stat().st_size > len(data)
    for name in ("weights_fc1.png", "sizes.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert (out / "report.md").read_text().count("fc1") >= 1
    # No settings given: tfdc.compress to 1/64 of the float32 size.
    assert "(float32 size / 64, the default)" in stdout and "pred. bytes" in stdout
    target = 4 * 266_610 // 64
    assert 0.95 * target <= os.path.getsize(packed) <= target
    assert re.search(rf"Budget met: [\d,]+ B is -[\d.]+% from the target {target:,} B", stdout)
    assert f"-> {os.path.getsize(packed):,} B packed" in stdout
    ratio = float(re.search(r"Compression ratio: ([\d.]+)x", stdout).group(1))
    assert 4 * 266_610 / os.path.getsize(packed) == pytest.approx(ratio, rel=0.01)
    errors = re.search(r"packed \.tflite in LiteRT ([\d.]+)% \(decoded file: ([\d.]+)%\)", stdout)
    # One epoch on 4,096 images: far from the paper, far better than chance;
    # the packed and the decoded file agree exactly.
    assert float(errors.group(1)) < 30
    assert errors.group(1) == errors.group(2)


def test_demo_digits_with_hand_set_settings(capsys, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from tfdc import demo
    config = demo.DemoConfig(dataset="digits", out=str(tmp_path), epochs=2,
                             prune_epochs=2, cluster_epochs=1, sparsity=0.8, bits=4,
                             batch_size=64, verbose=0)
    lines = []
    result = demo.run(config, log=lines.append)
    assert "compress" not in result  # the hand-set pipeline, not tfdc.compress
    assert not [line for line in lines if "far from trained" in line]
    assert result["errors"]["tflite"] < 0.5  # 10 classes: chance is 0.9
    assert result["ratio"] > 8
    for name in ("weights_fc1.png", "sizes.png", "sparsity.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_demo_refuses_too_few_training_images_and_flags_an_untrained_model(tmp_path):
    from tfdc import demo
    # 10 images left 9 to train on (and 1 to validate): 100 % float error, no
    # word of it; 1 image left none ("The PyDataset has length 0").
    for size in (1, demo.MIN_TRAIN_IMAGES - 1):
        with pytest.raises(ValueError, match=f"train_size {size}: the demo needs at least 100 "):
            demo.run(demo.DemoConfig(dataset="digits", train_size=size, out=str(tmp_path)),
                     log=lambda *a: None)
    lines = []
    demo._warn_untrained(0.62, 1_000, 0, lines.append)
    demo._warn_untrained(0.05, 1_000, 3, lines.append)
    assert lines == ["      note: the float model is far from trained (62% test error after 0 "
                     "epochs on 1,000 images): the compressed model's figures say little; give "
                     "more epochs or training images"]


def test_demo_rejects_bad_bits_before_training(tmp_path):
    from tfdc import demo
    with pytest.raises(ValueError, match="nope"):
        demo.run(demo.DemoConfig(bits={"nope": 5}, out=str(tmp_path), quick=True),
                 log=lambda *a: None)


def test_demo_to_a_byte_budget_passes_it_to_tfdc_compress(monkeypatch, tmp_path):
    # The budget path itself runs for real in test_demo_tiny_... (the default
    # budget, float32 / 64, met and printed); this checks what the command
    # line hands it (a second real run took 20 s of the suite).
    from tfdc import demo
    seen = []
    monkeypatch.setattr(demo, "run", lambda config, log=print: seen.append(config))
    out = tmp_path / "budget"
    assert main(["demo", "--tiny", "--no-plots", "--target-bytes", "40000",
                 "--out", str(out)]) == 0
    (config,) = seen
    assert config.target_bytes == 40000 and config.max_error_increase is None
    assert config.plots is False and config.out == str(out) and out.is_dir()
    assert config.sparsity is None and config.bits is None  # tfdc.compress plans them
    assert demo.default_target_bytes(demo.build_model("lenet_300_100")) == 4 * 266_610 // 64


def test_demo_to_an_error_budget_passes_the_confidence(capsys, tmp_path):
    if not os.path.exists(os.environ.get("TFDC_MNIST", "")):
        pytest.skip("real MNIST not available (set TFDC_MNIST)")
    out = tmp_path / "error"
    code = main(["demo", "--tiny", "--no-plots", "--max-error-increase", "1",
                 "--confidence", "0.5", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "at most 1.0 points more validation error (50% confidence)" in stdout
    # Every run's bound is at 50 %: the measured increase, give or take the
    # adjusted Wald's shrinking (a 90 % bound on 307 images would be a point
    # or more above it).
    runs = re.findall(r"\(([+-][\d.]+) points; at most ([+-][\d.]+) at 50% confidence\)",
                      stdout)
    assert runs and all(abs(float(b) - float(m)) < 0.1 for m, b in runs)
    kept = re.search(r"Budget met: validation error [+-][\d.]+ points against the float model "
                     r"\(at most ([+-][\d.]+) at 50% confidence\), within the budget of 1\.00",
                     stdout)
    assert kept and float(kept.group(1)) <= 1.0
    assert (out / "lenet_300_100.tflite").exists()


def test_demo_confidence_needs_an_error_budget(capsys, tmp_path):
    assert main(["demo", "--confidence", "0.8", "--out", str(tmp_path)]) != 0
    assert "--confidence applies to --max-error-increase" in capsys.readouterr().err
    for bad in ("1", "0", "x"):
        with pytest.raises(SystemExit):
            main(["demo", "--max-error-increase", "0.2", "--confidence", bad])
        assert "argument --confidence" in capsys.readouterr().err


def test_demo_budget_with_hand_settings_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["demo", "--target-bytes", "1000", "--max-error-increase", "0.2"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["demo", "--target-bytes", "9000", "--sparsity", "0.9",
                 "--out", str(tmp_path)]) != 0
    assert "leave out --sparsity and --bits" in capsys.readouterr().err
