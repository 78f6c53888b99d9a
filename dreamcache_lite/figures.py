"""Small plotting and table helpers shared by scripts, the CLI and the notebooks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images, path=None, columns: int | None = None) -> Image.Image:
    """Tile PIL images (or uint8 arrays) into one picture; save it when `path` is given."""
    images = [img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img)) for img in images]
    columns = columns or len(images)
    rows = -(-len(images) // columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, rows * h), "white")
    for i, img in enumerate(images):
        grid.paste(img.convert("RGB"), ((i % columns) * w, (i // columns) * h))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
    return grid


def write_rows(rows: list[dict], path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def loss_curve(steps, losses, path, title="training loss", smooth: int = 50):
    """Raw and moving-average loss; saved to `path`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, losses, alpha=0.3, lw=0.8, label="loss")
    if len(losses) >= smooth:
        kernel = np.ones(smooth) / smooth
        ax.plot(steps[smooth - 1:], np.convolve(losses, kernel, mode="valid"), lw=1.6, label=f"mean of {smooth}")
    ax.set(xlabel="step", ylabel="MSE on the noise", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
