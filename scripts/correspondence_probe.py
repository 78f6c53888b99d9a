"""Can an attention find, in a moved reference, the part of the subject that a target token shows?

DreamCache's adapters must match a token of the target (noisy, at t, with its caption) to the same
part of the subject in the cached reference (clean, t = 1, empty prompt), which the paper's
augmentation has moved, rescaled and partly erased. The toy world knows the answer: the
reference is cut from the target, so every target subject pixel has a true place in the reference
(the pairs' `correspondence`; `training.correspondence_answers` puts it on each layer's grid). Per
adapter layer and timestep band this script scores attentions against it, on held-out pairs:

- `top1`: the query's strongest cached token is the true one; `near`: within one cell of it;
- `mass_near` / `on_subject`: the attention weight on the true cell and its neighbours / on the
  reference subject's cells (the rest falls on white background);
- `chance`: `top1` of a guess uniform over the reference's subject cells.

Attentions scored: the untrained cosine start (`attention="cosine"`), any trained adapters given
with --adapters, and a *supervised probe*: the paper's attention (LayerNorm, to_q, to_k of the
adapter's shape) trained directly on the true correspondences (cross-entropy), the best a
bilinear attention on these frozen features can do. If the probe finds the parts and the trained
adapters do not, the features carry the correspondence and the diffusion loss fails to teach it;
if the probe fails too, the backbone's features do not carry it.

    python scripts/correspondence_probe.py --threads 2 --out figures/correspondence_probe \
        --adapters runs/exp2/pairs-cosine-1500/adapters.safetensors runs/exp3/pairs-paper-corr005/adapters.safetensors
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.cache import cache_features, capture_block_inputs
from dreamcache_lite.diagnostics import attention_scores
from dreamcache_lite.encoders import encode_images, encode_text
from dreamcache_lite.lab.pairs import ToyPairs
from dreamcache_lite.layers import select_layers
from dreamcache_lite.training import correspondence_answers

BANDS = {"0-300": 150, "300-600": 450, "600-1000": 800}  # each band scored at its middle timestep
BATCH = 32


@torch.no_grad()
def features(pipe, pairs: ToyPairs, batches: int, layers: list[str], seed: int) -> dict:
    """Per layer: cached reference tokens, the adapters' query inputs per band, and the truth
    (`training.correspondence_answers`) -- for `batches` x 32 training pairs of `pairs`."""
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    blocks = {name: f"{name}.transformer_blocks.0" for name in layers}
    parts = {"cache": {}, "queries": {}, "truth": {}}
    empty = encode_text(pipe, [""])
    for b in range(batches):
        batch = pairs.batch(b, BATCH)
        cache = cache_features(pipe.unet, encode_images(pipe, batch["reference"]), empty, layers=layers,
                               scheduler=schedule, generator=gen)
        target, text = encode_images(pipe, batch["target"]), encode_text(pipe, batch["caption"])
        for name in layers:
            parts["cache"].setdefault(name, []).append(cache.tokens[name])
            truth = correspondence_answers(batch["correspondence"], batch["reference"], cache.grids[name])
            parts["truth"].setdefault(name, []).append(torch.stack(truth))
        for band, t in BANDS.items():
            tt = torch.full((len(target),), t)
            noisy = schedule.add_noise(target, torch.randn(target.shape, generator=gen), tt)
            with capture_block_inputs(pipe.unet, list(blocks.values())) as captured:
                pipe.unet(noisy, tt, encoder_hidden_states=text)
            for name, block in blocks.items():
                parts["queries"].setdefault((name, band), []).append(captured[block])
    return {part: {k: torch.cat(v, dim=1 if part == "truth" else 0) for k, v in d.items()}
            for part, d in parts.items()}


def attention_weights(proc, x: torch.Tensor, cache_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The adapter's attention over the cached tokens, averaged over heads: (B, N_query, N_cache)."""
    keys, values = proc.attn_mem.keys_values(cache_tokens)
    return proc.attn_mem(proc.norm_mem(x), keys, values, return_weights=True, grid=grid)[1]


def score(weights: torch.Tensor, truth: torch.Tensor, grid: tuple[int, int]) -> dict:
    """The module docstring's measures (`diagnostics.attention_scores`), with the number of queries."""
    answer, valid, shown = truth[0], truth[1].bool(), truth[2].bool()
    scores = attention_scores(weights, answer, valid, shown, grid)
    return {k: round(v, 4) for k, v in scores.items()} | {"queries": int(valid.sum())}


def evaluate(adapters, feats: dict, grids: dict) -> dict:
    with torch.no_grad():
        return {f"{name} {band}": score(attention_weights(adapters.processors[f"{name}.transformer_blocks.0"],
                                                          feats["queries"][(name, band)], feats["cache"][name],
                                                          grids[name]), feats["truth"][name], grids[name])
                for name in grids for band in BANDS}


def train_probe(probe, feats: dict, grids: dict, steps: int, lr: float, seed: int) -> list[float]:
    """Cross-entropy of the true cell under each probe's attention, all bands together."""
    torch.manual_seed(seed)
    procs = {name: probe.processors[f"{name}.transformer_blocks.0"] for name in grids}
    params = [p for proc in procs.values() for m in (proc.norm_mem, proc.attn_mem.to_q, proc.attn_mem.to_k)
              for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    n = len(next(iter(feats["cache"].values())))
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, n, (BATCH,))
        total = 0.0
        for name, proc in procs.items():
            answer, valid = feats["truth"][name][0][rows], feats["truth"][name][1][rows].bool()
            for band in BANDS:
                w = attention_weights(proc, feats["queries"][(name, band)][rows], feats["cache"][name][rows],
                                      grids[name])
                logp = w.gather(2, answer[..., None]).squeeze(2).clamp_min(1e-9).log()
                total = total - (logp * valid).sum() / valid.sum().clamp_min(1)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item() / (len(procs) * len(BANDS)))
    return losses


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--adapters", nargs="*", default=[], help="trained adapter files to score")
    ap.add_argument("--train-batches", type=int, default=16, help="batches of 32 pairs to train the probe on")
    ap.add_argument("--test-batches", type=int, default=4, help="batches of 32 held-out pairs to score on")
    ap.add_argument("--probe-steps", type=int, default=600, help="0: score the given attentions only")
    ap.add_argument("--probe-lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/correspondence")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    pipe = load_pipeline(args.backbone)
    layers = [info.name for info in select_layers(pipe.unet, "paper")]
    # the training recipe's pairs (no pixel flip, captions without colour words), seeds not used in training
    test = features(pipe, ToyPairs(seed=10_001, describe_p=0.0), args.test_batches, layers, args.seed + 1)
    grids = {n: (int(round(test["cache"][n].shape[1] ** 0.5)),) * 2 for n in layers}
    results = {}
    for label, make in [("cosine, untrained", lambda: DreamCacheAdapters(pipe.unet, attention="cosine", replace=True)),
                        *[(f"trained: {p}", lambda p=p: DreamCacheAdapters.from_file(pipe.unet, p, replace=True))
                          for p in args.adapters]]:
        adapters = make()
        results[label] = evaluate(adapters, test, grids)
        adapters.uninstall()
    summary = {"command": "python " + " ".join(sys.argv), "results": results}
    if args.probe_steps:
        train = features(pipe, ToyPairs(seed=10_000, describe_p=0.0), args.train_batches, layers, args.seed)
        probe = DreamCacheAdapters(pipe.unet, attention="paper", replace=True)
        probe.uninstall()
        t0 = time.time()
        losses = train_probe(probe, train, grids, args.probe_steps, args.probe_lr, args.seed)
        results["supervised probe (paper attention)"] = evaluate(probe, test, grids)
        summary.update(probe_loss={"first50": float(np.mean(losses[:50])), "last50": float(np.mean(losses[-50:]))},
                       probe_seconds=round(time.time() - t0, 1))
    summary["seconds"] = round(time.time() - start, 1)
    report(results, summary, Path(args.out))


def report(results: dict, summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "correspondence.json").write_text(json.dumps(summary, indent=1))
    plot(results, out / "correspondence.png")
    if "probe_loss" in summary:
        print(f"probe loss {summary['probe_loss']['first50']:.3f} -> {summary['probe_loss']['last50']:.3f}")
    for label, res in results.items():
        print(f"\n{label}\n  layer band: top1 / near / mass_near / on_subject (chance top1)")
        for key, r in res.items():
            print(f"  {key}: {r['top1']:.3f} / {r['near']:.3f} / {r['mass_near']:.3f} / {r['on_subject']:.3f}"
                  f" ({r['chance']:.3f}, {r['queries']} queries)")


def plot(results: dict, path: Path) -> None:
    """`near` and `on_subject` per layer (bands pooled by their mean), one bar per attention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(key.rsplit(" ", 1)[0] for key in next(iter(results.values()))))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    width = 0.8 / len(results)
    for ax, measure in zip(axes, ("near", "on_subject")):
        for i, (label, res) in enumerate(results.items()):
            values = [np.mean([r[measure] for k, r in res.items() if k.startswith(layer + " ")]) for layer in layers]
            name = "trained: " + Path(label[len("trained: "):]).parent.name if label.startswith("trained: ") else label
            ax.bar(np.arange(len(layers)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [n.replace(".attentions.", ".a") for n in layers],
                      fontsize=8)
        ax.set_title({"near": "true reference cell or a neighbour is the strongest (share of queries)",
                      "on_subject": "attention on the reference's subject"}[measure], fontsize=9)
    axes[0].set_ylim(0, 1)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(results), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
