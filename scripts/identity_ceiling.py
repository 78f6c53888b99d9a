"""How much identity can the backbone keep at all? The true benchmark scenes, VAE round-tripped and
re-noised to a share of the schedule (SDEdit), then denoised text-only and with DreamCache, judged by
the oracle. Strength 0 is the VAE alone; at strength 1 nothing of the scene is left.

    python scripts/identity_ceiling.py --adapters runs/adapters-v3/adapters.safetensors --oracle ORACLE

If subject fidelity collapses while the true identity is still half in the latent, the backbone --
not the adapters -- is what loses the identity detail. Writes figures/identity_ceiling.{json,png};
`--report` only redraws the figure from the JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dreamcache_lite import toyworld as tw
from dreamcache_lite.evaluation import reference_image, score, summarise
from dreamcache_lite.images import pil_to_tensor
from dreamcache_lite.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline

OUT = Path("figures/identity_ceiling")


def true_scenes(identity, seed: int) -> torch.Tensor:
    scenes = [tw.render(identity, tw.benchmark_scene(spec, seed))[0] for spec in tw.BENCHMARK_PROMPTS]
    return pil_to_tensor([Image.fromarray(s) for s in scenes])


def plot(out: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for method, style in (("text", "o-"), ("dreamcache", "s-")):
        rows = [r for r in out["results"] if r["method"] in (method, "vae")]
        ax.plot([r["strength"] for r in rows], [r["subject_fidelity"] for r in rows], style, label=method)
    ax.axhline(0.85, color="gray", ls="--", lw=1, label="issue bar 0.85")
    ax.set(xlabel="SDEdit strength (share of the schedule re-noised)", ylabel="subject fidelity",
           title="identity kept from the true scene", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", help="DreamCache's adapter file (required unless --report)")
    parser.add_argument("--oracle", default=None, help="the oracle's weights (default: shipped)")
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--ref-scale", type=float, default=1.0)
    parser.add_argument("--text-scale", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-save", dest="save", action="store_false", help="print only (a quick probe)")
    parser.add_argument("--report", action="store_true", help="only redraw the figure from the saved JSON")
    args = parser.parse_args()
    if args.report:
        return plot(json.loads(OUT.with_suffix(".json").read_text()), OUT.with_suffix(".png"))
    if not args.adapters:
        parser.error("--adapters is required")
    torch.set_num_threads(args.threads)
    dc = DreamCachePipeline.from_pretrained("tiny", adapters=args.adapters)
    oracle = Oracle.load(args.oracle)
    specs, start_time, results = tw.BENCHMARK_PROMPTS, time.time(), []
    subjects = [(idn, reference_image(idn), true_scenes(idn, seed=0)) for idn in
                tw.benchmark_identities()[: args.identities]]  # rendered once, used at every strength
    caches = [dc.cache_reference(reference) for _, reference, _ in subjects]
    for strength in args.strengths:
        for method in ("text", "dreamcache"):
            if strength == 0 and method == "dreamcache":
                continue  # the VAE round trip has no method
            rows = []
            for (identity, reference, start), cache in zip(subjects, caches):
                prompts = [tw.prompt_text(spec, identity.class_name) for spec in specs]
                if strength == 0:
                    images = dc.decode(dc.encode_images(start))
                else:
                    images = dc(prompts, cache if method == "dreamcache" else None, steps=args.steps, seed=0,
                                text_scale=args.text_scale, ref_scale=args.ref_scale, init_images=start,
                                strength=strength, progress=False)
                arrays = np.stack([np.asarray(img) for img in images])
                rows += score(oracle, arrays, identity, specs, prompts, 0, reference)
            summary = {"strength": strength, "method": "vae" if strength == 0 else method, **summarise(rows)}
            results.append(summary)
            print(f"strength {strength:.1f} {summary['method']:10s} subject {summary['subject_fidelity']:.3f} "
                  f"prompt {summary['prompt_fidelity']:.3f}", flush=True)
    out = {"results": results, "identities": args.identities, "steps": args.steps, "ref_scale": args.ref_scale,
           "text_scale": args.text_scale,
           "adapters": args.adapters, "command": "python " + " ".join(sys.argv),
           "seconds": round(time.time() - start_time, 1)}
    if args.save:
        OUT.with_suffix(".json").write_text(json.dumps(out, indent=1))
        plot(out, OUT.with_suffix(".png"))


if __name__ == "__main__":
    main()
