"""Write figures/toyworld_gallery.png: a few identities (rows) in reference + benchmark contexts.

Usage: python scripts/make_gallery.py [--out figures/toyworld_gallery.png]
"""
import argparse
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dreamcache_lite import toyworld as tw

# one column per context kind, so a row shows the identity surviving every kind of change
# (together they show all 10 backgrounds, all 5 accessories and the property changes)
COLUMNS = ["a {} at night", "a {} on the water", "a {} in the desert", "a {} on a wooden floor",
           "a {} in front of a brick wall", "a {} wearing a hat in the forest",
           "a {} wearing a crown on the beach", "a {} wearing a scarf in the snow",
           "a {} wearing glasses in the city", "a {} wearing a bowtie on the grass",
           "a red {}", "a tiny {}", "a giant {}"]


def main(out="figures/toyworld_gallery.png", n_rows=6):
    specs = {s.template: s for s in tw.BENCHMARK_PROMPTS}
    idents = tw.benchmark_identities()[:n_rows]  # one per class
    fig, axes = plt.subplots(n_rows, len(COLUMNS) + 1, figsize=(1.6 * (len(COLUMNS) + 1), 1.85 * n_rows))
    for r, idn in enumerate(idents):
        panels = [(tw.make_reference(idn, r, flip_p=0, erase_p=0), f"reference\n({tw.caption(idn, tw.Scene(), True)})")]
        for c, template in enumerate(COLUMNS):
            scene = tw.benchmark_scene(specs[template], seed=100 * r + c)
            panels.append((tw.render(idn, scene)[0], tw.caption(idn, scene)))
        for ax, (img, title) in zip(axes[r], panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title.replace(" wearing", "\nwearing").replace(" on the", "\non the")
                         .replace(" in the", "\nin the").replace(" in front", "\nin front")
                         .replace(" on a", "\non a"), fontsize=6.5)
            ax.axis("off")
    fig.suptitle("Toy world: held-out benchmark identities (rows) — reference on white, then contexts",
                 fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="figures/toyworld_gallery.png")
    main(p.parse_args().out)
