"""tfdc.plots: each figure is a real, readable PNG of a sensible size."""

import os
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tfdc import plots  # noqa: E402


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    dense = rng.normal(0, 0.05, (784, 300)).astype("float32")
    pruned = np.where(np.abs(dense) > 0.09, dense * 1.2, 0).astype("float32")
    nonzero = pruned[pruned != 0]
    centroids = np.linspace(nonzero.min(), nonzero.max(), 32)
    clustered = np.where(pruned != 0, centroids[np.abs(pruned[..., None] - centroids).argmin(-1)], 0)
    return dense, pruned, clustered, centroids


def test_weight_histograms_three_panels(tmp_path, weights):
    path = plots.weight_histograms(str(tmp_path / "w.png"), *weights, layer="fc1")
    width, height = png_size(path)
    # Three panels side by side at 150 dpi: wide and readable.
    assert width > 1800 and 500 < height < 1200


def test_weight_histograms_dense_only(tmp_path, weights):
    width, height = png_size(plots.weight_histograms(str(tmp_path / "w.png"), weights[0]))
    assert 600 < width < 1200 and height > 500


def test_size_bars(tmp_path):
    layers = [dict(name="fc1", dense=940800, pruned=90000, quantized=25000, huffman=19000),
              dict(name="fc2", dense=120000, pruned=12000, quantized=3000, huffman=2500),
              dict(name="fc3", dense=4000, pruned=1100, quantized=None, huffman=300)]
    width, height = png_size(plots.size_bars(str(tmp_path / "s.png"), layers, title="LeNet"))
    assert width > 900 and height > 600


def test_size_bars_needs_layers(tmp_path):
    with pytest.raises(ValueError, match="at least one layer"):
        plots.size_bars(str(tmp_path / "s.png"), [])


def test_sparsity_schedule(tmp_path):
    steps = np.arange(1000)
    scheduled = 0.9 * (1 - (1 - np.minimum(steps / 600, 1)) ** 3)
    path = plots.sparsity_schedule(str(tmp_path / "p.png"), steps, scheduled,
                                   steps[::50], scheduled[::50])
    width, height = png_size(path)
    assert width > 900 and height > 550
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_a_figure_replaces_the_old_file_whole(tmp_path, weights):
    # savefig wrote into the old file: a full disk left it truncated. A hard
    # link to the old file shows the difference: a file replaced by rename
    # leaves the link's contents alone, a file written in place does not.
    path, link = tmp_path / "w.png", tmp_path / "old.png"
    path.write_bytes(b"old figure")
    os.link(path, link)
    plots.weight_histograms(str(path), weights[0])
    assert link.read_bytes() == b"old figure" and png_size(path)[0] > 600
    # A format matplotlib cannot write: an error, and no file.
    with pytest.raises(ValueError, match="not supported"):
        plots.weight_histograms(str(tmp_path / "w.xyz"), weights[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png", "w.png"]
    # The format follows the extension, as savefig's own did.
    with open(plots.weight_histograms(str(tmp_path / "w.svg"), weights[0]), "rb") as f:
        assert b"<svg" in f.read(400)
