"""Pictures: image grids, learning curves, and curves over seeds with their bands (genlab logs them to MLflow and
puts them in reports). matplotlib and torchvision are imported on first use."""

from __future__ import annotations

import io
import math

MIN_GRID_PIXELS = 256


def grid_image(images, nrow: int | None = None):
    """A PIL image of ``images`` (in [-1, 1]) laid out ``nrow`` to a row, upscaled to >= MIN_GRID_PIXELS a side."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    n = images.shape[0]
    grid = make_grid(images.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5, nrow=nrow or max(1, math.ceil(n**0.5)),
                     padding=1, pad_value=1.0)
    scale = max(1, math.ceil(MIN_GRID_PIXELS / min(grid.shape[1:])))
    grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: list[dict[str, float]]):
    """A matplotlib figure of every metric against epoch, one panel per namespace."""
    plt = _pyplot()
    keys = sorted({k for h in history for k in h if "/" in k and not k.startswith("perf/")})
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(k.split("/")[0], []).append(k)
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4.5 * max(1, len(groups)), 3.4), squeeze=False)
    for ax, (group, ks) in zip(axes[0], groups.items()):
        for k in ks:
            pts = [(h["epoch"], h[k]) for h in history if k in h]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=k)
        ax.set_title(group)
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def banded_curves_png(panels: dict[str, dict[str, tuple[list, list, list, list]]]) -> bytes:
    """One panel per metric, one line per label with its band: ``{metric: {label: (steps, mean, low, high)}}``;
    a PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (metric, lines) in zip(axes[0], panels.items()):
        for label, (steps, mean, low, high) in lines.items():
            ax.plot(steps, mean, label=label)
            ax.fill_between(steps, low, high, alpha=0.25)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
