"""The paper's ablations from the API, one call each, with the paper's numbers beside ours.

    rows = ablation("layers", pipe=pipe, train=TrainConfig(steps=3000), proto=protocol(fast=True))
    rows = ablation("cache_timestep", adapters=adapters, pipe=pipe, proto=protocol(fast=True))
    print(ablation_table(rows))

`layers` and `injection` change what is trained, so each value trains its own adapters (under
`train.out/<layer preset>-<injection>`, resumable; equal settings share one run) before the toy
bench; `cache_timestep` and `cache_prompt` change only the cache, so they reuse one set of trained
adapters (the paper retrained for these; with fixed adapters the rows say how sensitive trained
adapters are to the caching choice).
Toy subject / prompt fidelity stand beside the paper's CLIP-I / CLIP-T (SD 1.5): compare trends,
not values.
"""

from __future__ import annotations

from dataclasses import replace

from .evaluation import evaluate, markdown_table
from .pipeline import DreamCachePipeline
from .training import TrainConfig, train_adapters

LAYER_PRESETS = {"encoder": "encoder", "mid": "mid", "decoder": "decoder", "mid+decoder": "paper", "all": "all"}
CACHE_PROMPTS = {"empty": "", "class": "a {}"}
PAPER = {  # CLIP-I, CLIP-T on SD 1.5 (paper.md, "Ablations")
    "layers": {"encoder": (0.721, 0.303), "mid": (0.716, 0.302), "decoder": (0.799, 0.296),
               "mid+decoder": (0.810, 0.298), "all": (0.813, 0.297)},
    "injection": {"sum": (0.812, 0.293), "concat": (0.810, 0.298)},
    "cache_prompt": {"class": (0.811, 0.295), "empty": (0.810, 0.298)},
    "cache_timestep": {},  # studied at t in {1, 150, 300}, t = 1 chosen; no numbers given
}
DEFAULTS = {"layers": list(LAYER_PRESETS), "injection": ["concat", "sum"], "cache_prompt": list(CACHE_PROMPTS),
            "cache_timestep": [1, 150, 300]}


def ablation(factor: str, values=None, *, pipe, proto, train: TrainConfig | None = None, adapters=None,
             oracle=None, progress: bool = True) -> list[dict]:
    """One toy-bench row per value of `factor`, with the paper's CLIP-I / CLIP-T where it gives them."""
    if factor not in DEFAULTS:
        raise ValueError(f"unknown ablation {factor!r}; valid: {', '.join(DEFAULTS)}")
    rows = []
    for value in values or DEFAULTS[factor]:
        if factor in ("layers", "injection"):
            summary = _trained_row(factor, value, pipe, proto, train or TrainConfig(), oracle, progress)
        else:
            if adapters is None:
                raise ValueError(f"the {factor} ablation needs trained `adapters`")
            option = {"cache_timestep": value} if factor == "cache_timestep" else \
                {"cache_prompt": CACHE_PROMPTS[value]}
            summary, _ = evaluate("dreamcache", DreamCachePipeline(pipe, adapters), proto, oracle=oracle,
                                  progress=progress, **option)
        clip_i, clip_t = PAPER[factor].get(value, (None, None))
        rows.append({"factor": factor, "value": value, **summary, "paper_clip_i": clip_i, "paper_clip_t": clip_t})
    return rows


def _trained_row(factor, value, pipe, proto, train: TrainConfig, oracle, progress) -> dict:
    cfg = replace(train, **({"layers": LAYER_PRESETS[value]} if factor == "layers" else {"injection": value}))
    cfg = replace(cfg, out=trained_folder(train.out, cfg.layers, cfg.injection))
    adapters = train_adapters(cfg, pipe=pipe, progress=progress)
    try:
        summary, _ = evaluate("dreamcache", DreamCachePipeline(pipe, adapters), proto, oracle=oracle,
                              progress=progress)
    finally:
        adapters.uninstall()
    return summary


def trained_folder(root, layers: str, injection: str) -> str:
    """Where the ablation trains adapters with these settings (injection=concat with layers=paper is the
    same run in both the layer and the injection ablation)."""
    return f"{root}/{layers}-{injection}"


def ablation_table(rows: list[dict]) -> str:
    return markdown_table(rows, columns=("value", "subject_fidelity", "prompt_fidelity", "embedding_cosine",
                                         "extra_params", "paper_clip_i", "paper_clip_t"))
