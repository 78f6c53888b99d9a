"""The full toy-bench table: every method on DreamBench's protocol, judged by the oracle.

    python scripts/toy_bench.py                          # all five methods, 30 x 25 x 4 (long on a CPU)
    python scripts/toy_bench.py --methods text dreamcache --seeds 2
    python scripts/toy_bench.py --report                 # only rebuild the table from saved results

Each method's summary is saved as OUT/<method>.json (OUT: --out, default figures/toy_bench) as soon
as it is done, so methods can run in separate processes (one per core) and a stopped run loses only
the method in progress. The report writes OUT.md (markdown tables + commands), OUT.csv and OUT.png
(subject vs prompt fidelity).
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

from dreamcache_lite.assets import TINY_ADAPTERS
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.lab.evaluation import (METHODS, TABLE_COLUMNS, evaluate, markdown_table, measure_yardsticks,
                                       protocol, tradeoff_figure)
from dreamcache_lite.lab.oracle import SUBJECT_PARTS, Oracle
from dreamcache_lite.pipeline import DreamCachePipeline, GenerationConfig

ATTRIBUTES = tuple(f"subject_{name}" for name in SUBJECT_PARTS)


def run(args, out: Path) -> None:
    torch.set_num_threads(args.threads)
    adapters = args.adapters if "dreamcache" in args.methods else None  # the others never use them
    dc = DreamCachePipeline.from_pretrained(load_pipeline(args.backbone, device=args.device), adapters)
    proto = protocol(seeds=args.seeds, identities=args.identities)
    generation = GenerationConfig(steps=args.steps, text_scale=args.text_scale, ref_scale=args.ref_scale)
    oracle = Oracle.load(args.oracle).to(args.device)
    out.mkdir(parents=True, exist_ok=True)
    # the yardsticks of identity_gain, measured once for every method of the run
    yardsticks = measure_yardsticks(dc, proto, oracle, generation)
    for method in args.methods:
        start = time.time()
        summary, _ = evaluate(method, dc, proto, generation, oracle=oracle, finetune_steps=args.finetune_steps,
                              yardsticks=yardsticks)
        summary.update(command="python " + " ".join(sys.argv), wall_seconds=round(time.time() - start, 1),
                       threads=args.threads, device=args.device, seeds=len(proto.seeds),
                       identities=len(proto.identities))
        (out / f"{method}.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: summary[k] for k in TABLE_COLUMNS}))


def report(out: Path) -> None:
    summaries = [json.loads((out / f"{m}.json").read_text()) for m in METHODS if (out / f"{m}.json").is_file()]
    if not summaries:
        raise SystemExit(f"no results in {out}: run the bench first")
    for s in summaries:  # per-attribute subject fidelity as columns (absent from results made before it existed)
        s.update({f"subject_{k}": v for k, v in s.get("subject_by_attribute", {}).items()})
    kinds = ("recontext", "accessory", "property")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TABLE_COLUMNS + ATTRIBUTES + tuple(f"prompt_{k}" for k in kinds)
                        + ("seeds", "identities", "steps", "text_scale", "ref_scale"))
        for s in summaries:
            writer.writerow([s.get(c) for c in TABLE_COLUMNS + ATTRIBUTES]
                            + [s[f"by_kind_{k}"]["prompt_fidelity"] for k in kinds]
                            + [s["seeds"], s["identities"], s["steps"], s["text_scale"], s["ref_scale"]])
    commands = sorted({s["command"] for s in summaries})
    lines = ["# Toy bench (tiny backbone, judged by the oracle)", "", markdown_table(summaries), "",
             "Subject fidelity per identity detail (the mean of those that apply to an image is the subject "
             "fidelity; '-': not measured in that run):", "",
             markdown_table(summaries, ("method",) + ATTRIBUTES), "",
             f"Protocol: {summaries[0]['identities']} held-out identities x 25 prompts x {summaries[0]['seeds']} "
             f"seeds, DDIM {summaries[0]['steps']} steps, text scale {summaries[0]['text_scale']}, DreamCache "
             f"reference scale {next((x['ref_scale'] for x in summaries if x['ref_scale'] is not None), '-')}; "
             f"subject chance {summaries[0]['subject_chance']}.",
             "Seconds columns measured on: " + ", ".join(f"{s['method']} {s.get('device', 'cpu')} "
                                                         f"({s.get('threads', 1)} threads)" for s in summaries) + ".",
             "", "Produced by:", "", *[f"    {c}" for c in commands],
             f"    python scripts/toy_bench.py --report --out {out}"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    tradeoff_figure(summaries, out.with_suffix(".png"), title="toy bench: subject vs prompt fidelity")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--text-scale", type=float, default=5.0)
    parser.add_argument("--ref-scale", type=float, default=1.0)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backbone", default="tiny", help="tiny (shipped) or a pipeline folder")
    parser.add_argument("--adapters", default=str(TINY_ADAPTERS), help="DreamCache's adapter file (default: shipped)")
    parser.add_argument("--oracle", default=None, help="the oracle's weights (default: shipped)")
    parser.add_argument("--device", default="cpu", help="e.g. cuda (seconds columns then are that device's)")
    parser.add_argument("--out", default="figures/toy_bench",
                        help="folder of per-method results; the report goes beside it as OUT.md/.csv/.png")
    parser.add_argument("--report", action="store_true", help="only rebuild the table from saved results")
    args = parser.parse_args()
    if not args.report:
        run(args, Path(args.out))
    report(Path(args.out))


if __name__ == "__main__":
    main()
