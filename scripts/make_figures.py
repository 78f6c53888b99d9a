"""Figures of the README and the issues, from the shipped backbone (and adapters, when present).

    python scripts/make_figures.py text        # figures/text_only_grid.png
    python scripts/make_figures.py compare     # figures/reference_text_dreamcache.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dreamcache_lite.assets import TINY_ADAPTERS  # noqa: E402
from dreamcache_lite.backbones import load_pipeline  # noqa: E402
from dreamcache_lite.lab import toyworld as tw  # noqa: E402
from dreamcache_lite.lab.evaluation import reference_image  # noqa: E402
from dreamcache_lite.pipeline import DreamCachePipeline  # noqa: E402

SHOWN = [0, 3, 6, 10, 12, 15, 20, 22, 24]  # prompts of all three kinds


def _panel(ax, image, title):
    ax.imshow(np.asarray(image))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def text_only_grid(dc, path="figures/text_only_grid.png", steps=25, text_scale=5.0):
    """Rows: the six classes; columns: benchmark prompts; the backbone alone, class word only."""
    specs = [tw.BENCHMARK_PROMPTS[i] for i in SHOWN]
    fig, axes = plt.subplots(len(tw.CLASSES), len(specs), figsize=(1.3 * len(specs), 1.45 * len(tw.CLASSES)))
    for r, name in enumerate(tw.CLASSES):
        prompts = [tw.prompt_text(s, name) for s in specs]
        images = dc(prompts, None, seed=r, steps=steps, text_scale=text_scale, progress=False)
        for c, (img, p) in enumerate(zip(images, prompts)):
            _panel(axes[r, c], img, p.replace(" wearing", "\nwearing").replace(" on ", "\non ").replace(" in ", "\nin "))
    fig.suptitle("Tiny backbone, text only (DDIM 25 steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(path)


def comparison(dc, path="figures/reference_text_dreamcache.png", steps=25, text_scale=5.0, ref_scale=1.0,
               adapters_label="shipped"):
    """Per held-out identity: its reference, then text-only and DreamCache for a few prompts."""
    identities = tw.benchmark_identities()[:4]
    specs = [tw.BENCHMARK_PROMPTS[i] for i in (0, 2, 10, 13, 20)]
    fig, axes = plt.subplots(2 * len(identities), len(specs) + 1,
                             figsize=(1.3 * (len(specs) + 1), 2.9 * len(identities)))
    for k, idn in enumerate(identities):
        ref = reference_image(idn)
        prompts = [tw.prompt_text(s, idn.class_name) for s in specs]
        text = dc(prompts, None, seed=k, steps=steps, text_scale=text_scale, progress=False)
        cache = dc.cache_reference(ref)
        personal = dc(prompts, cache, seed=k, steps=steps, text_scale=text_scale, ref_scale=ref_scale, progress=False)
        _panel(axes[2 * k, 0], ref, "reference")
        axes[2 * k + 1, 0].axis("off")
        for c, p in enumerate(prompts):
            _panel(axes[2 * k, c + 1], text[c], f"text: {p}")
            _panel(axes[2 * k + 1, c + 1], personal[c], "DreamCache")
    fig.suptitle(f"reference | text-only (top) and DreamCache (bottom)\nadapters: {adapters_label}, s_ref {ref_scale}",
                 y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    print(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["text", "compare"])
    parser.add_argument("--text-scale", type=float, default=5.0)
    parser.add_argument("--ref-scale", type=float, default=1.0)
    parser.add_argument("--backbone", default="tiny", help="tiny (shipped) or a pipeline folder")
    parser.add_argument("--adapters", default=str(TINY_ADAPTERS), help="for compare (default: the shipped ones)")
    args = parser.parse_args()
    adapters = args.adapters if args.figure == "compare" else None
    dc = DreamCachePipeline.from_pretrained(load_pipeline(args.backbone), adapters)
    if args.figure == "text":
        text_only_grid(dc, text_scale=args.text_scale)
    else:
        comparison(dc, text_scale=args.text_scale, ref_scale=args.ref_scale, adapters_label=args.adapters)
