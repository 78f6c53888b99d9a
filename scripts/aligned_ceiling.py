"""What would perfect correspondence buy at generation? The toy bench with the reference drawn where
each benchmark scene puts the subject (its place and size; plain: no accessory, no recolour) and
adapters that read the cached token at their own position (`--attention positional`, trained with
`--aligned-references`). Correspondence is then given rather than found, so subject fidelity here
bounds what an attention that finds it perfectly could reach with the same value path. The same
adapters on the bench's usual (moved) reference, and text-only, are measured beside it.

    dreamcache-lite train --attention positional --aligned-references --describe-p 0 --steps 600 \\
        --batch-size 16 --lr 1e-3 --warmup-steps 20 --out runs/positional-aligned
    python scripts/aligned_ceiling.py --adapters runs/positional-aligned/adapters.safetensors --identities 6

Writes OUT/s_ref<S>_s_txt<T>.json (OUT: --out, default figures/aligned_ceiling) and prints one line
per setting; `--picture` only draws OUT/grid.png (rows: held-out subjects; columns: aligned
reference, true scene, text-only, then DreamCache at each `--picture-scales` reference scale).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.lab.evaluation import evaluate, identity_gain, measure_yardsticks, protocol, score, summarise
from dreamcache_lite.lab.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline, GenerationConfig


def evaluate_aligned(dc, proto, generation: GenerationConfig, oracle) -> dict:
    """DreamCache with one aligned reference (and cache) per benchmark image."""
    rows = []
    for idn in proto.identities:
        for seed in proto.seeds:
            for spec in proto.prompts:  # each image scored against its own reference
                reference, prompt = tw.aligned_reference(idn, spec, seed), tw.prompt_text(spec, idn.class_name)
                image = dc([prompt], dc.cache_reference(reference), generation, seed=seed, progress=False)[0]
                rows += score(oracle, np.asarray(image)[None], idn, [spec], [prompt], seed, reference)
    return summarise(rows)


def picture(dc, path, scales, identities: int = 6, seed: int = 0) -> None:
    """One row per held-out subject on the beach: what the numbers above average over."""
    from PIL import Image

    rows = []
    for idn in tw.benchmark_identities()[:5 * identities:5]:
        spec = tw.BENCHMARK_PROMPTS[1]
        reference, prompt = tw.aligned_reference(idn, spec, seed), tw.prompt_text(spec, idn.class_name)
        cache = dc.cache_reference(reference)
        cells = [reference, tw.render(idn, tw.benchmark_scene(spec, seed))[0],
                 dc([prompt], None, seed=seed, progress=False)[0]]
        cells += [dc([prompt], cache, seed=seed, ref_scale=s, progress=False)[0] for s in scales]
        rows.append(np.concatenate([np.asarray(c) for c in cells], 1))
    grid = Image.fromarray(np.concatenate(rows, 0))
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", required=True, help="positional adapters trained on aligned references")
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--ref-scale", type=float, default=1.0)
    parser.add_argument("--text-scale", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="figures/aligned_ceiling")
    parser.add_argument("--picture", action="store_true", help="only draw OUT/grid.png")
    parser.add_argument("--picture-scales", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.time()
    dc = DreamCachePipeline.from_pretrained("tiny", adapters=args.adapters)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.picture:
        return picture(dc, out_dir / "grid.png", args.picture_scales)
    oracle = Oracle.load()
    proto = protocol(seeds=args.seeds, identities=args.identities)
    generation = GenerationConfig(ref_scale=args.ref_scale, text_scale=args.text_scale)
    yardsticks = measure_yardsticks(dc, proto, oracle, generation)
    text, vae = yardsticks["text_subject_fidelity"], yardsticks["vae_subject_fidelity"]
    moved = evaluate("dreamcache", dc, proto, generation, oracle=oracle, progress=False, yardsticks=yardsticks)[0]
    aligned = evaluate_aligned(dc, proto, generation, oracle)
    out = {"text_subject_fidelity": text, "vae_subject_fidelity": vae, "moved": moved, "aligned": aligned}
    for name in ("moved", "aligned"):
        s = out[name]
        s["identity_gain"] = identity_gain(s["subject_fidelity"], text, vae)
        print(f"{name:8s} subject {s['subject_fidelity']:.3f} gain {s['identity_gain']:.3f} "
              f"prompt {s['prompt_fidelity']:.3f} parts {s['subject_by_attribute']}", flush=True)
    print(f"text-only {text:.3f}, VAE ceiling {vae:.3f}")
    out.update(adapters=args.adapters, identities=len(proto.identities), seeds=len(proto.seeds),
               ref_scale=args.ref_scale, text_scale=args.text_scale, command="python " + " ".join(sys.argv),
               seconds=round(time.time() - began))
    (out_dir / f"s_ref{args.ref_scale:g}_s_txt{args.text_scale:g}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
