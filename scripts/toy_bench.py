"""The full toy-bench table: every method on DreamBench's protocol, judged by the oracle.

    python scripts/toy_bench.py                          # all five methods, 30 x 25 x 4 (long on a CPU)
    python scripts/toy_bench.py --methods text dreamcache --seeds 2
    python scripts/toy_bench.py --report                 # only rebuild the table from saved results

Each method's summary is saved as figures/toy_bench/<method>.json as soon as it is done, so methods
can run in separate processes (one per core) and a stopped run loses only the method in progress.
The report writes figures/toy_bench.md (markdown table + command), .csv and .png (subject vs prompt).
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

from dreamcache_lite.cli import TINY_ADAPTERS
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.evaluation import METHODS, TABLE_COLUMNS, evaluate, markdown_table, protocol, tradeoff_figure
from dreamcache_lite.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline

OUT = Path("figures/toy_bench")


def run(args) -> None:
    torch.set_num_threads(args.threads)
    adapters = args.adapters if "dreamcache" in args.methods else None  # the others never use them
    dc = DreamCachePipeline.from_pretrained(load_pipeline("tiny", device=args.device), adapters)
    proto = protocol(seeds=args.seeds, identities=args.identities, steps=args.steps)
    oracle = Oracle.load(args.oracle).to(args.device)
    OUT.mkdir(parents=True, exist_ok=True)
    for method in args.methods:
        start = time.time()
        summary, _ = evaluate(method, dc, proto, text_scale=args.text_scale, ref_scale=args.ref_scale,
                              oracle=oracle, finetune_steps=args.finetune_steps)
        summary.update(command="python " + " ".join(sys.argv), wall_seconds=round(time.time() - start, 1),
                       threads=args.threads, device=args.device, seeds=len(proto.seeds),
                       identities=len(proto.identities))
        (OUT / f"{method}.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: summary[k] for k in TABLE_COLUMNS}))


def report() -> None:
    summaries = [json.loads((OUT / f"{m}.json").read_text()) for m in METHODS if (OUT / f"{m}.json").is_file()]
    if not summaries:
        raise SystemExit(f"no results in {OUT}: run the bench first")
    columns = TABLE_COLUMNS + ("by_kind_recontext", "by_kind_accessory", "by_kind_property")
    with open("figures/toy_bench.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns[:-3] + ("prompt_recontext", "prompt_accessory", "prompt_property",
                                        "seeds", "identities", "steps", "text_scale", "ref_scale"))
        for s in summaries:
            kinds = [s[c]["prompt_fidelity"] for c in columns[-3:]]
            writer.writerow([s[c] for c in columns[:-3]] + kinds
                            + [s["seeds"], s["identities"], s["steps"], s["text_scale"], s["ref_scale"]])
    commands = sorted({s["command"] for s in summaries})
    lines = ["# Toy bench (tiny backbone, judged by the oracle)", "", markdown_table(summaries), "",
             f"Protocol: {summaries[0]['identities']} held-out identities x 25 prompts x {summaries[0]['seeds']} "
             f"seeds, DDIM {summaries[0]['steps']} steps, text scale {summaries[0]['text_scale']}, DreamCache "
             f"reference scale {next((x['ref_scale'] for x in summaries if x['ref_scale'] is not None), '-')}; "
             f"subject chance {summaries[0]['subject_chance']}.",
             "Seconds columns measured on: " + ", ".join(f"{s['method']} {s.get('device', 'cpu')} "
                                                         f"({s.get('threads', 1)} threads)" for s in summaries) + ".",
             "", "Produced by:", "", *[f"    {c}" for c in commands], "    python scripts/toy_bench.py --report"]
    Path("figures/toy_bench.md").write_text("\n".join(lines) + "\n")
    tradeoff_figure(summaries, "figures/toy_bench.png", title="toy bench: subject vs prompt fidelity")
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
    parser.add_argument("--adapters", default=str(TINY_ADAPTERS), help="DreamCache's adapter file (default: shipped)")
    parser.add_argument("--oracle", default=None, help="the oracle's weights (default: shipped)")
    parser.add_argument("--device", default="cpu", help="e.g. cuda (seconds columns then are that device's)")
    parser.add_argument("--report", action="store_true", help="only rebuild the table from saved results")
    args = parser.parse_args()
    if not args.report:
        run(args)
    report()


if __name__ == "__main__":
    main()
