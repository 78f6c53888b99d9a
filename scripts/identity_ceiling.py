"""How much identity can the backbone keep at all? The true benchmark scenes, VAE round-tripped and
re-noised to a share of the schedule (SDEdit), then denoised (text-only, and DreamCache when
`--adapters` is given), judged by the oracle. Strength 0 is the VAE alone.

    python scripts/identity_ceiling.py --seeds 2                      # 30 identities x 25 prompts x 2 seeds
    python scripts/identity_ceiling.py --adapters FILE --identities 6 # with DreamCache beside text-only

If subject fidelity collapses while the true identity is still in the latent, the backbone -- not
the adapters -- is what loses the identity detail. Each strength is `dreamcache-lite evaluate
--method text --sdedit S`. Writes figures/identity_ceiling.{json,png} and the picture
figures/identity_ceiling_grid.png (true scene | each strength, a few identities); `--report` only
redraws the curve from the JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.lab.evaluation import evaluate, identity_gain, protocol, true_scenes, vae_ceiling
from dreamcache_lite.lab.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline, GenerationConfig



def plot(out: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    vae = out["vae_subject_fidelity"]
    for method, style in (("text", "o-"), ("dreamcache", "s-")):
        rows = [r for r in out["results"] if r["method"] == method]
        if rows:
            ax.plot([0] + [r["sdedit"] for r in rows], [vae] + [r["subject_fidelity"] for r in rows], style,
                    label=method)
    ax.axhline(out["text_subject_fidelity"], color="gray", ls=":", lw=1, label="text-only from noise")
    ax.set(xlabel="SDEdit strength (share of the schedule re-noised)", ylabel="subject fidelity",
           title="identity kept from the true scene", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def picture(dc, strengths, path, identities: int = 4, steps: int = 25, text_scale: float = 5.0) -> None:
    """Rows: identities; columns: the true scene, its VAE round trip, then each strength (text-only)."""
    spec = tw.BENCHMARK_PROMPTS[0]
    rows = []
    for idn in tw.benchmark_identities()[:identities]:
        start = true_scenes(idn, [spec], seed=0)
        cells = [tw.render(idn, tw.benchmark_scene(spec, 0))[0], np.asarray(dc.decode(dc.encode_images(start))[0])]
        for s in strengths:
            image = dc([tw.prompt_text(spec, idn.class_name)], steps=steps, seed=0, text_scale=text_scale,
                       init_images=start, strength=s, progress=False)[0]
            cells.append(np.asarray(image))
        rows.append(np.concatenate(cells, 1))
    grid = Image.fromarray(np.concatenate(rows, 0))
    grid.resize((grid.width * 3, grid.height * 3), Image.NEAREST).save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny", help="tiny (shipped) or a pipeline folder")
    parser.add_argument("--adapters", help="also run DreamCache with these adapters")
    parser.add_argument("--oracle", default=None, help="the oracle's weights (default: shipped)")
    parser.add_argument("--identities", type=int, default=None, help="default: all 30")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.15, 0.3, 0.5])
    parser.add_argument("--ref-scale", type=float, default=1.0)
    parser.add_argument("--text-scale", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="figures/identity_ceiling",
                        help="where the .json/.png go (and <folder>/identity_ceiling_grid.png)")
    parser.add_argument("--no-save", dest="save", action="store_false", help="print only (a quick probe)")
    parser.add_argument("--report", action="store_true", help="only redraw the curve from the saved JSON")
    args = parser.parse_args()
    out_path = Path(args.out)
    if args.report:
        return plot(json.loads(out_path.with_suffix(".json").read_text()), out_path.with_suffix(".png"))
    torch.set_num_threads(args.threads)
    dc = DreamCachePipeline.from_pretrained(args.backbone, adapters=args.adapters)
    oracle = Oracle.load(args.oracle)
    proto = protocol(seeds=args.seeds, identities=args.identities)
    generation = GenerationConfig(steps=args.steps, text_scale=args.text_scale, ref_scale=args.ref_scale)
    began, results = time.time(), []
    text = evaluate("text", dc, proto, generation, progress=False, oracle=oracle, yardsticks=False)[0]
    vae = vae_ceiling(dc, proto, oracle)
    print(f"VAE ceiling {vae:.3f}; text-only from noise {text['subject_fidelity']:.3f}", flush=True)
    for strength in args.strengths:
        for method in ["text"] + (["dreamcache"] if args.adapters else []):
            summary = evaluate(method, dc, proto, generation, progress=False, oracle=oracle, sdedit=strength,
                               yardsticks=False)[0]
            summary["identity_gain"] = identity_gain(summary["subject_fidelity"], text["subject_fidelity"], vae)
            results.append(summary)
            print(f"strength {strength:.2f} {method:10s} subject {summary['subject_fidelity']:.3f} "
                  f"gain {summary['identity_gain']:.3f} prompt {summary['prompt_fidelity']:.3f}", flush=True)
    out = {"results": results, "vae_subject_fidelity": vae, "text_subject_fidelity": text["subject_fidelity"],
           "text_only": text, "identities": len(proto.identities), "seeds": len(proto.seeds), "steps": args.steps,
           "ref_scale": args.ref_scale, "text_scale": args.text_scale, "adapters": args.adapters,
           "command": "python " + " ".join(sys.argv), "seconds": round(time.time() - began, 1)}
    if args.save:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.with_suffix(".json").write_text(json.dumps(out, indent=1))
        plot(out, out_path.with_suffix(".png"))
        picture(dc, args.strengths, out_path.parent / "identity_ceiling_grid.png", steps=args.steps,
                text_scale=args.text_scale)


if __name__ == "__main__":
    main()
