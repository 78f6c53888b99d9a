"""The paper's ablations on the tiny backbone, the paper's CLIP-I / CLIP-T beside every row.

    python scripts/ablations.py --train-out runs/ablate --steps 1000 --batch-size 96 --lr 1e-3
    python scripts/ablations.py --report          # only rebuild figures/ablations.md

The layer and injection ablations train one set of adapters per value (under --train-out, resumable:
a run whose checkpoints already reach --steps only evaluates); the caching-timestep and caching-prompt
ablations reuse the mid+decoder adapters. Each factor's rows are saved as figures/ablations/<factor>.json
as soon as they are done, beside text-only on the same protocol (text.json, the yardstick); the report
writes figures/ablations.md.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.lab.ablations import DEFAULTS, ablation, ablation_table, trained_folder
from dreamcache_lite.lab.evaluation import evaluate, protocol
from dreamcache_lite.lab.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline
from dreamcache_lite.training import TrainConfig

OUT = Path("figures/ablations")


def run(args) -> None:
    torch.set_num_threads(args.threads)
    pipe = load_pipeline("tiny")
    proto = protocol(seeds=args.seeds, identities=args.identities)
    oracle = Oracle.load(args.oracle)
    train = TrainConfig(out=args.train_out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        workers=args.workers, checkpoint_every=100, keep_checkpoints=2)
    OUT.mkdir(parents=True, exist_ok=True)
    if not (OUT / "text.json").is_file():  # the yardstick: what the class word alone gives on this protocol
        summary, _ = evaluate("text", DreamCachePipeline(pipe), proto, oracle=oracle)
        (OUT / "text.json").write_text(json.dumps(summary, indent=1))
    for factor in args.factors:
        start, adapters = time.time(), None
        if factor in ("cache_timestep", "cache_prompt"):  # only the cache changes: reuse trained adapters
            path = Path(trained_folder(train.out, "paper", "concat")) / "adapters.safetensors"
            adapters = DreamCacheAdapters.from_file(pipe.unet, path)
        try:
            rows = ablation(factor, pipe=pipe, proto=proto, train=train, adapters=adapters, oracle=oracle)
        finally:
            if adapters is not None:
                adapters.uninstall()
        result = {"factor": factor, "rows": rows, "command": "python " + " ".join(sys.argv),
                  "train": {k: getattr(train, k) for k in ("steps", "batch_size", "lr")},
                  "identities": len(proto.identities), "seeds": len(proto.seeds),
                  "wall_seconds": round(time.time() - start, 1), "threads": args.threads}
        (OUT / f"{factor}.json").write_text(json.dumps(result, indent=1))
        print(f"{factor}:\n{ablation_table(rows)}\n")


def report() -> None:
    results = [json.loads((OUT / f"{f}.json").read_text()) for f in DEFAULTS if (OUT / f"{f}.json").is_file()]
    if not results:
        raise SystemExit(f"no results in {OUT}: run the ablations first")
    lines = ["# Ablations on the tiny backbone (judged by the oracle), the paper's SD 1.5 numbers beside", "",
             "Toy subject / prompt fidelity stand beside the paper's CLIP-I / CLIP-T: compare trends, not values.", ""]
    if (OUT / "text.json").is_file():
        text = json.loads((OUT / "text.json").read_text())
        lines += [f"Yardstick, text-only (class word) on the same protocol: subject fidelity "
                  f"{text['subject_fidelity']}, prompt fidelity {text['prompt_fidelity']}, embedding cosine "
                  f"{text['embedding_cosine']} (subject chance {text['subject_chance']}).", ""]
    for r in results:
        t = r["train"]
        lines += [f"## {r['factor']}", "", ablation_table(r["rows"]), "",
                  f"{r['identities']} held-out identities x 25 prompts x {r['seeds']} seed(s), DDIM 25, text scale "
                  f"5, reference scale 1; adapters trained {t['steps']} steps x batch {t['batch_size']}, "
                  f"lr {t['lr']}.", ""]
    lines += ["Produced by:", "", *sorted({f"    {r['command']}" for r in results}),
              "    python scripts/ablations.py --report"]
    Path("figures/ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", nargs="*", default=list(DEFAULTS), choices=list(DEFAULTS),
                        help="none: only the text-only yardstick")
    parser.add_argument("--train-out", default="runs/ablate", help="where the ablation's adapters train")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader processes rendering training pairs")
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--oracle", default=None, help="the oracle's weights (default: shipped)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    report() if args.report else run(args)


if __name__ == "__main__":
    main()
