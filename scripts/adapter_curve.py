"""Subject fidelity against training minutes: every checkpoint of an adapter run on a toy-bench subset.

    dreamcache-lite train --out runs/adapters --keep-checkpoints 0 ...   # keep every checkpoint
    python scripts/adapter_curve.py runs/adapters --backbone tiny --identities 6 --seeds 1
    python scripts/adapter_curve.py runs/adapters --report      # only redraw the figure

Minutes come from the run's loss log (wall time at each checkpoint's step, summed over resumed
sessions). Writes OUT/curve.json and OUT/curve.png beside the run (OUT: the run folder) unless
--out names another place.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.checkpoints import list_checkpoints, load_checkpoint
from dreamcache_lite.lab.evaluation import evaluate, measure_yardsticks, protocol
from dreamcache_lite.lab.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline, GenerationConfig
from dreamcache_lite.training import adapters_for, read_config


def minutes_at(run: Path) -> dict[int, float]:
    """Training minutes at every logged step, across resumed sessions (each restarts its clock)."""
    total, last, out = 0.0, 0.0, {}
    for line in (run / "loss.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["seconds"] < last:
            total += last
        last = row["seconds"]
        out[row["step"]] = (total + last) / 60
    return out


def plot(points: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.3))
    ax.plot([p["minutes"] for p in points], [p["subject_fidelity"] for p in points], "o-", label="DreamCache")
    ax.axhline(points[0]["text_subject_fidelity"], color="gray", ls=":", label="text-only")
    ax.axhline(points[0]["vae_subject_fidelity"], color="gray", ls="--", label="VAE ceiling")
    ax.set(xlabel="adapter training minutes (CPU)", ylabel="subject fidelity", ylim=(0, 1),
           title="identity carried vs training time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="an adapter training folder (dreamcache-lite train --out)")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--oracle", default=None)
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--ref-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="folder for curve.json/png (default: the run folder)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out or args.run)
    if args.report:
        return plot(json.loads((out / "curve.json").read_text())["points"], out / "curve.png")
    torch.set_num_threads(args.threads)
    config = read_config(run)
    pipe = load_pipeline(args.backbone)
    oracle = Oracle.load(args.oracle)
    proto = protocol(seeds=args.seeds, identities=args.identities)
    yardsticks = measure_yardsticks(DreamCachePipeline(pipe), proto, oracle)
    minutes, points = minutes_at(run), []
    for checkpoint in list_checkpoints(run / "checkpoints"):
        adapters = adapters_for(pipe.unet, config)
        step = load_checkpoint(checkpoint, {"adapters": adapters})["step"]
        summary, _ = evaluate("dreamcache", DreamCachePipeline(pipe, adapters), proto,
                              GenerationConfig(ref_scale=args.ref_scale), oracle=oracle, progress=False,
                              yardsticks=yardsticks)
        adapters.uninstall()
        points.append({"step": step, "minutes": round(minutes[step], 2), **{k: summary[k] for k in (
            "subject_fidelity", "identity_gain", "prompt_fidelity", "text_subject_fidelity", "vae_subject_fidelity")}})
        print(json.dumps(points[-1]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps({"points": points, "command": "python " + " ".join(sys.argv),
                                                "identities": args.identities, "seeds": args.seeds,
                                                "ref_scale": args.ref_scale}, indent=1))
    plot(points, out / "curve.png")


if __name__ == "__main__":
    main()
