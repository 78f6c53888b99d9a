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


def labelled_comparison(reference, rows: dict, prompts: list[str], path, title: str = "", notes: dict | None = None):
    """The reference, then one labelled row of images per method (`rows`: label -> images, one per
    prompt); `notes` (label -> one string per image) are printed under the images, e.g. scores."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = len(prompts) + 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.45 * cols, 1.75 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        ax = axes[r, 0]
        ax.axis("off")
        if r == 0:
            ax.imshow(np.asarray(reference))
            ax.set_title("reference", fontsize=8)
        for c, image in enumerate(images):
            ax = axes[r, c + 1]
            ax.imshow(np.asarray(image))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(prompts[c].replace(" wearing", "\nwearing").replace(" in ", "\nin ")
                             .replace(" on ", "\non "), fontsize=6)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if notes and label in notes:
                ax.set_xlabel(notes[label][c], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


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


# One column per context kind, so a row shows an identity surviving every kind of change
# (together: all 10 backgrounds, all 5 accessories and the property changes).
GALLERY_COLUMNS = ["a {} at night", "a {} on the water", "a {} in the desert", "a {} on a wooden floor",
                   "a {} in front of a brick wall", "a {} wearing a hat in the forest",
                   "a {} wearing a crown on the beach", "a {} wearing a scarf in the snow",
                   "a {} wearing glasses in the city", "a {} wearing a bowtie on the grass",
                   "a red {}", "a tiny {}", "a giant {}"]


def toyworld_gallery(path=None, n_rows: int = 6):
    """Held-out benchmark identities (rows, one per class): the reference on white, then contexts."""
    import matplotlib.pyplot as plt

    from ..lab import toyworld as tw

    specs = {s.template: s for s in tw.BENCHMARK_PROMPTS}
    identities = tw.benchmark_identities()[:n_rows]
    fig, axes = plt.subplots(n_rows, len(GALLERY_COLUMNS) + 1,
                             figsize=(1.6 * (len(GALLERY_COLUMNS) + 1), 1.85 * n_rows))
    for r, idn in enumerate(identities):
        panels = [(tw.make_reference(idn, r, flip_p=0, erase_p=0),
                   f"reference\n({tw.caption(idn, tw.Scene(), True)})")]
        for c, template in enumerate(GALLERY_COLUMNS):
            scene = tw.benchmark_scene(specs[template], seed=100 * r + c)
            panels.append((tw.render(idn, scene)[0], tw.caption(idn, scene)))
        for ax, (image, title) in zip(axes[r], panels):
            ax.imshow(image, interpolation="nearest")
            for phrase in (" wearing", " on the", " in the", " in front", " on a"):
                title = title.replace(phrase, "\n" + phrase[1:])
            ax.set_title(title, fontsize=6.5)
            ax.axis("off")
    fig.suptitle("Toy world: held-out benchmark identities (rows) — reference on white, then contexts", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig
