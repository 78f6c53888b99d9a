"""The paper's ablations from the API, one call each, with the paper's numbers beside ours.

    rows = ablation("layers", pipe=pipe, train=TrainConfig(steps=3000), proto=protocol(fast=True))
    rows = ablation("cache_timestep", adapters=adapters, pipe=pipe, proto=protocol(fast=True))
    print(ablation_table(rows))

`layers`, `injection` and `attention` change what is trained, so each value trains its own adapters
(under `train.out/<layer preset>-<injection>[-<attention>]`, resumable; equal settings share one run)
before the toy bench; `attention` ("paper" vs this package's "cosine" and "positional" options) has
no paper numbers; `cache_timestep` and `cache_prompt` change only the cache, so they reuse one set of trained
adapters (the paper retrained for these; with fixed adapters the rows say how sensitive trained
adapters are to the caching choice).
Toy subject / prompt fidelity stand beside the paper's CLIP-I / CLIP-T (SD 1.5): compare trends,
not values.
"""

from __future__ import annotations

from dataclasses import replace

from ..pipeline import DreamCachePipeline, GenerationConfig
from ..training import TrainConfig, train_adapters
from .evaluation import evaluate, markdown_table, measure_yardsticks
from .pairs import training_pairs

LAYER_PRESETS = {"encoder": "encoder", "mid": "mid", "decoder": "decoder", "mid+decoder": "paper", "all": "all"}
CACHE_PROMPTS = {"empty": "", "class": "a {}"}
PAPER = {  # CLIP-I, CLIP-T on SD 1.5 (paper.md, "Ablations")
    "layers": {"encoder": (0.721, 0.303), "mid": (0.716, 0.302), "decoder": (0.799, 0.296),
               "mid+decoder": (0.810, 0.298), "all": (0.813, 0.297)},
    "injection": {"sum": (0.812, 0.293), "concat": (0.810, 0.298)},
    "cache_prompt": {"class": (0.811, 0.295), "empty": (0.810, 0.298)},
    "cache_timestep": {},  # studied at t in {1, 150, 300}, t = 1 chosen; no numbers given
    "attention": {},  # not in the paper: "cosine" and "positional" are this package's options
}
DEFAULTS = {"layers": list(LAYER_PRESETS), "injection": ["concat", "sum"], "cache_prompt": list(CACHE_PROMPTS),
            "cache_timestep": [1, 150, 300], "attention": ["paper", "cosine", "positional"]}
TRAINED = ("layers", "injection", "attention")  # factors that change what is trained


def ablation(factor: str, values=None, *, pipe, proto, generation: GenerationConfig | None = None,
             train: TrainConfig | None = None, adapters=None, oracle=None, progress: bool = True) -> list[dict]:
    """One toy-bench row per value of `factor`, with the paper's CLIP-I / CLIP-T where it gives them."""
    if factor not in DEFAULTS:
        raise ValueError(f"unknown ablation {factor!r}; valid: {', '.join(DEFAULTS)}")
    rows = []
    bench = dict(generation=generation, oracle=oracle, progress=progress)
    bench["yardsticks"] = measure_yardsticks(DreamCachePipeline(pipe), proto, oracle, generation)  # every row's
    for value in values or DEFAULTS[factor]:
        if factor in TRAINED:
            summary = _trained_row(factor, value, pipe, proto, train or TrainConfig(), bench)
        else:
            if adapters is None:
                raise ValueError(f"the {factor} ablation needs trained `adapters`")
            option = {"cache_timestep": value} if factor == "cache_timestep" else \
                {"cache_prompt": CACHE_PROMPTS[value]}
            summary, _ = evaluate("dreamcache", DreamCachePipeline(pipe, adapters), proto, **bench, **option)
        clip_i, clip_t = PAPER[factor].get(value, (None, None))
        rows.append({"factor": factor, "value": value, **summary, "paper_clip_i": clip_i, "paper_clip_t": clip_t})
    return rows


def _trained_row(factor, value, pipe, proto, train: TrainConfig, bench: dict) -> dict:
    cfg = replace(train, **{"layers": {"layers": LAYER_PRESETS.get(value)}, "injection": {"injection": value},
                            "attention": {"attention": value}}[factor])
    cfg = replace(cfg, out=trained_folder(train.out, cfg.layers, cfg.injection, cfg.attention))
    adapters = train_adapters(cfg, training_pairs(cfg, pipe), pipe=pipe, progress=bench["progress"])
    try:
        summary, _ = evaluate("dreamcache", DreamCachePipeline(pipe, adapters), proto, **bench)
    finally:
        adapters.uninstall()
    return summary


def trained_folder(root, layers: str, injection: str, attention: str = "paper") -> str:
    """Where the ablation trains adapters with these settings (injection=concat with layers=paper is the
    same run in the layer, injection and attention ablations; other attentions get a suffix)."""
    return f"{root}/{layers}-{injection}" + ("" if attention == "paper" else f"-{attention}")


def ablation_table(rows: list[dict]) -> str:
    return markdown_table(rows, columns=("value", "subject_fidelity", "identity_gain", "prompt_fidelity",
                                         "embedding_cosine", "extra_params", "paper_clip_i", "paper_clip_t"))
