"""Figures for the demo and the benchmarks (PNG files, matplotlib).

Three figures, in the spirit of the Deep Compression paper:

    weight_histograms   a layer's weights dense, after pruning, and after
                        trained quantization with the shared centroids
                        marked (the paper's Figures 4-5)
    size_bars           per-layer storage: dense / pruned / + quantized /
                        + Huffman coded (log scale)
    sparsity_schedule   the pruning schedule over optimizer steps, scheduled
                        and measured

matplotlib is the optional `demo` extra; it is imported only when a figure is
drawn, with the off-screen Agg backend so that no display is needed.

Example:

```python
import numpy as np
from tfdc import plots
w = np.random.default_rng(0).normal(0, 0.05, 10_000)
pruned = np.where(np.abs(w) > 0.06, w, 0)
plots.weight_histograms("fc1.png", w, pruned, layer="fc1")
```
"""

import os

import numpy as np

__all__ = ["weight_histograms", "size_bars", "sparsity_schedule", "DPI"]

DPI = 150
_STAGE_COLORS = ("#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'tfdc[demo]' "
                          "(or pip install matplotlib)") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
                         "legend.fontsize": 10, "figure.titlesize": 14})
    return plt


def _save(fig, path):
    """Render `fig` in memory, then write it atomically: a full disk or an
    interrupt leaves the old figure (or none), never a truncated one. The
    format is the file name's extension (PNG without one), as matplotlib
    reads it from a path."""
    import io

    import matplotlib.pyplot as plt

    from tfdc.exporter import write_atomically
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=ext or "png", dpi=DPI, bbox_inches="tight",
                    facecolor="white")
    finally:
        plt.close(fig)
    write_atomically(path, buffer.getvalue())
    return path


def _format_bytes(n):
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{int(n)} B"


def weight_histograms(path, dense, pruned=None, clustered=None, centroids=None, layer="",
                      bins=120):
    """Histogram of one layer's weights at each stage of the pipeline.

    Pruned (zero) weights are left out of the pruned and clustered panels,
    as in the paper's Figure 5: the interesting part is the bimodal
    distribution of the weights that survive.

    Args:
        path: the PNG file to write.
        dense: the weights before pruning (any shape).
        pruned: the weights after pruning and retraining, or None.
        clustered: the weights after trained quantization, or None.
        centroids: the layer's shared values (its codebook), drawn as
            vertical lines on the clustered panel (or the pruned one), or None.
        layer: the layer's name, for the title.
        bins: histogram bins.

    Returns:
        `path`.
    """
    plt = _pyplot()
    panels = [("Dense (trained)", np.asarray(dense, dtype=np.float64).ravel(), False)]
    if pruned is not None:
        panels.append(("After pruning + retraining", np.asarray(pruned, np.float64).ravel(), True))
    if clustered is not None:
        panels.append(("After trained quantization", np.asarray(clustered, np.float64).ravel(), True))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    axes = axes[0]
    lo = float(np.min(panels[0][1])) if panels[0][1].size else -1.0
    hi = float(np.max(panels[0][1])) if panels[0][1].size else 1.0
    for ax, (title, values, drop_zeros) in zip(axes, panels):
        shown = values[values != 0] if drop_zeros else values
        lo, hi = min(lo, float(shown.min(initial=lo))), max(hi, float(shown.max(initial=hi)))
    edges = np.linspace(lo, hi, bins + 1)
    for i, (ax, (title, values, drop_zeros)) in enumerate(zip(axes, panels)):
        shown = values[values != 0] if drop_zeros else values
        ax.hist(shown, bins=edges, color=_STAGE_COLORS[min(i, 3)], alpha=0.85)
        kept = np.count_nonzero(values) / max(values.size, 1)
        subtitle = f"{shown.size:,} weights" if not drop_zeros else \
            f"{shown.size:,} nonzero ({kept:.1%} kept)"
        ax.set_title(f"{title}\n{subtitle}")
        ax.set_xlabel("weight value")
        ax.set_ylabel("count")
        ax.grid(alpha=0.3)
        last = i == len(panels) - 1
        if centroids is not None and last and drop_zeros:
            cs = np.asarray(centroids, np.float64).ravel()
            for j, c in enumerate(cs):
                ax.axvline(c, color="#d62728", lw=0.7, alpha=0.6, ls="--", zorder=0,
                           label=f"{cs.size} shared values (centroids)" if j == 0 else None)
            ax.legend(loc="upper right")
    fig.suptitle(f"Weight distribution{' of ' + layer if layer else ''}", y=1.02)
    fig.tight_layout()
    return _save(fig, path)


def size_bars(path, layers, title="Storage per layer"):
    """Grouped bars of each layer's storage at every compression stage.

    Args:
        path: the PNG file to write.
        layers: a list of dicts with keys `name`, `dense`, `pruned`,
            `quantized`, `huffman` (bytes; a missing stage is skipped).
        title: the figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    if not layers:
        raise ValueError("size_bars needs at least one layer")
    stages = [("dense", "Dense float32"), ("pruned", "Pruned (sparse float32)"),
              ("quantized", "+ quantized (shared values)"), ("huffman", "+ Huffman coded")]
    stages = [(k, label) for k, label in stages if any(layer.get(k) is not None for layer in layers)]
    names = [str(layer["name"]) for layer in layers]
    x = np.arange(len(layers))
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.9 * len(layers) + 2.5), 4.8))
    for s, (key, label) in enumerate(stages):
        values = [layer.get(key) or 0 for layer in layers]
        bars = ax.bar(x + (s - (len(stages) - 1) / 2) * width, values, width,
                      label=label, color=_STAGE_COLORS[s % 4])
        for bar, v in zip(bars, values):
            if v:
                ax.annotate(_format_bytes(v), (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=7.5, rotation=90,
                            xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    top = max(max(layer.get(k) or 0 for k, _ in stages) for layer in layers)
    ax.set_ylim(bottom=max(1, 0.5 * min(v for layer in layers for k, _ in stages
                                         if (v := layer.get(k)))), top=top * 4)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_xlabel("layer")
    ax.set_ylabel("bytes (log scale)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(stages),
              frameon=False, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def sparsity_schedule(path, steps, scheduled, measured_steps=None, measured=None,
                      title="Pruning schedule"):
    """The overall sparsity over optimizer steps.

    Args:
        path: the PNG file to write.
        steps: optimizer steps of the `scheduled` curve.
        scheduled: the scheduled sparsity (0..1) at each step.
        measured_steps, measured: sparsity actually measured during training
            (e.g. `logs["sparsity"]`), or None.
        title: the figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(np.asarray(steps), 100 * np.asarray(scheduled, np.float64), lw=2,
            color=_STAGE_COLORS[1], label="scheduled")
    if measured_steps is not None and measured is not None and len(measured):
        ax.plot(np.asarray(measured_steps), 100 * np.asarray(measured, np.float64), ".",
                ms=5, color=_STAGE_COLORS[2], label="measured")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("weights pruned (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)
