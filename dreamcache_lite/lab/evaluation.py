"""The toy bench: DreamBench's protocol on the toy world, judged by the oracle.

30 held-out identities x 25 prompts x 4 seeds (a `fast` subset for CI and notebooks). Each image
is read by the oracle: class accuracy, prompt fidelity (CLIP-T analogue), subject fidelity (the
identity detail words cannot carry; DINO/CLIP-I analogue) and the oracle-embedding cosine to the
reference, plus cost columns (extra parameters, per-subject set-up time, time per image).

Every summary also places the method between two yardsticks measured on the same protocol:
text-only generation (what words alone keep) and the true scenes after a VAE round trip (the most
any method can keep at this latent resolution). `identity_gain` = (method - text-only) / (VAE -
text-only): 0 means no identity beyond the words, 1 means all the identity the latents can hold.

`sdedit` runs the identity-ceiling protocol instead of generating from noise: the true scene,
VAE round-tripped and re-noised to that share of the schedule, is denoised with the method. It
measures how much identity the backbone keeps when handed the answer.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..images import signed_tensor
from ..pipeline import GenerationConfig
from . import oracle as oracle_lib
from . import toyworld as tw
from .baselines import dreambooth, generate_reference_only

METHODS = ("text", "text-described", "reference-only", "finetune", "dreamcache")
TEXT_ONLY = ("text", "text-described")  # images depend on the words alone: generated once per class


@dataclass
class Protocol:
    """Which images the bench asks for (how to sample them is a `GenerationConfig`)."""

    identities: list
    seeds: list[int]
    prompts: list = None

    def __post_init__(self):
        self.prompts = list(self.prompts or tw.BENCHMARK_PROMPTS)


def protocol(fast: bool = False, seeds: int | None = None, identities: int | None = None):
    """Full: 30 identities x 25 prompts x 4 seeds. Fast: 3 identities (3 classes) x 25 prompts x 1 seed."""
    ids = tw.benchmark_identities()
    n_ids = identities or (3 if fast else len(ids))
    n_seeds = seeds or (1 if fast else 4)
    return Protocol(ids[:n_ids], list(range(n_seeds)))


def reference_image(identity) -> np.ndarray:
    """The one reference of a benchmark subject: alone on white, not erased or flipped."""
    return tw.make_reference(identity, 0, flip_p=0.0, erase_p=0.0)


def prompts_for(method: str, identity, specs, seed: int, noun: str | None = None) -> list[str]:
    if method == "text-described":  # coarse colour + pattern words: all that text can say
        return [tw.caption(identity, tw.benchmark_scene(spec, seed), describe=True) for spec in specs]
    return [tw.prompt_text(spec, noun or identity.class_name) for spec in specs]


def personalise(method: str, dc, reference, identity, stack: contextlib.ExitStack, finetune_steps: int = 100,
                cache_timestep: int = 1, cache_prompt: str = ""):
    """Per-subject set-up: (cache, noun) — DreamCache caches, DreamBooth fine-tunes the UNet.

    `cache_prompt` may hold "{}" for the class noun (the paper's "prompt while caching" ablation).
    """
    if method == "dreamcache":
        return dc.cache_reference(reference, timestep=cache_timestep,
                                  prompt=cache_prompt.format(identity.class_name)), identity.class_name
    if method == "finetune":  # undone when `stack` closes
        word = stack.enter_context(dreambooth(dc, reference, identity.class_name, steps=finetune_steps))
        return None, f"{word} {identity.class_name}"
    return None, identity.class_name


def extra_parameters(method: str, dc) -> int:
    """Parameters a method adds: DreamCache's adapters (shared), DreamBooth's UNet copy (per subject)."""
    if method == "dreamcache":
        return dc.adapters.num_parameters()
    if method == "finetune":  # the UNet's own weights (installed adapters register inside it; not counted)
        adapters = dc.adapters.num_parameters() if dc.adapters is not None else 0
        return sum(p.numel() for p in dc.pipe.unet.parameters()) - adapters
    return 0


def true_scenes(identity, specs, seed: int) -> torch.Tensor:
    """The benchmark scenes of `identity` as the toy world draws them: (n, 3, 64, 64) in [-1, 1]."""
    return signed_tensor(np.stack([tw.render(identity, tw.benchmark_scene(spec, seed))[0] for spec in specs]))


def evaluate(method: str, dc, proto: Protocol, generation: GenerationConfig | None = None, progress: bool = True,
             oracle=None, finetune_steps: int = 100, cache_timestep: int = 1, cache_prompt: str = "",
             sdedit: float | None = None, yardsticks: bool | dict = True) -> tuple[dict, list[dict]]:
    """Generate the protocol's images with `method` on `dc` (a DreamCachePipeline) sampled as
    `generation` says (default `GenerationConfig()`); score them.

    `sdedit` in (0, 1]: start from the true scenes re-noised to that share of the schedule.
    `yardsticks`: True measures text-only and the VAE ceiling on this protocol for `identity_gain`;
    a dict from `measure_yardsticks` reuses them; False leaves the gain out."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if sdedit is not None and method in ("reference-only", "finetune"):
        raise ValueError(f"--sdedit runs text-only or DreamCache, not {method!r}")
    oracle = oracle or oracle_lib.Oracle.load()
    generation = generation or GenerationConfig()
    rows, setup, generating, generated, memo, cache_bytes = [], 0.0, 0.0, 0, {}, 0
    for idn in tqdm(proto.identities, desc=f"toy bench ({method})", disable=not progress):
        reference = reference_image(idn)
        with contextlib.ExitStack() as stack:
            start = time.perf_counter()
            cache, noun = personalise(method, dc, reference, idn, stack, finetune_steps, cache_timestep,
                                      cache_prompt)
            setup += time.perf_counter() - start
            cache_bytes = cache.nbytes if cache is not None else 0
            for seed in proto.seeds:
                prompts = prompts_for(method, idn, proto.prompts, seed, noun)
                key = (tuple(prompts), seed, idn.seed if sdedit else None)  # SDEdit starts from the subject
                if method not in TEXT_ONLY or key not in memo:
                    start = time.perf_counter()
                    init = dict(init_images=true_scenes(idn, proto.prompts, seed), strength=sdedit) if sdedit else {}
                    memo[key] = _generate(method, dc, prompts, reference, cache, seed, generation, **init)
                    generating += time.perf_counter() - start
                    generated += len(prompts)
                images = np.stack([np.asarray(img) for img in memo[key]])
                rows += score(oracle, images, idn, proto.prompts, prompts, seed, reference)
    summary = summarise(rows)
    summary.update(method=method, images=len(rows), generated=generated, seconds=round(setup + generating, 2),
                   setup_seconds=round(setup / max(1, len(proto.identities)), 4),
                   seconds_per_image=round(generating / max(1, generated), 4),
                   extra_params=extra_parameters(method, dc), cache_bytes=cache_bytes,
                   subject_chance=oracle_lib.SUBJECT_CHANCE, text_scale=generation.text_scale,
                   ref_scale=generation.ref_scale if method == "dreamcache" else None, steps=generation.steps,
                   cache_timestep=cache_timestep, cache_prompt=cache_prompt, sdedit=sdedit)
    if yardsticks is True:
        text_only = method == "text" and sdedit is None  # its own yardstick
        yardsticks = (dict(text_subject_fidelity=summary["subject_fidelity"],
                           vae_subject_fidelity=vae_ceiling(dc, proto, oracle)) if text_only
                      else measure_yardsticks(dc, proto, oracle, generation))
    if yardsticks:
        summary.update(gain_columns(summary["subject_fidelity"], yardsticks))
    return summary, rows


def measure_yardsticks(dc, proto: Protocol, oracle, generation: GenerationConfig | None = None) -> dict:
    """Text-only's and the VAE ceiling's subject fidelity on `proto`: measure once, pass to every
    `evaluate` of the same protocol (`yardsticks=`)."""
    oracle = oracle or oracle_lib.Oracle.load()
    text = evaluate("text", dc, proto, generation, progress=False, oracle=oracle, yardsticks=False)[0]
    return dict(text_subject_fidelity=text["subject_fidelity"], vae_subject_fidelity=vae_ceiling(dc, proto, oracle))


def gain_columns(subject: float, yardsticks: dict) -> dict:
    """The yardstick columns of every table, `identity_gain` among them."""
    return {**yardsticks, "identity_gain": identity_gain(subject, yardsticks["text_subject_fidelity"],
                                                         yardsticks["vae_subject_fidelity"])}


def identity_gain(subject: float, text: float, vae: float) -> float | None:
    """(method - text-only) / (VAE ceiling - text-only); None where the ceiling is no higher than text."""
    return round((subject - text) / (vae - text), 4) if vae - text > 1e-6 else None


def vae_ceiling(dc, proto: Protocol, oracle) -> float:
    """Subject fidelity of the true scenes after a VAE round trip: the most any method can keep."""
    rows = []
    for idn in proto.identities:
        reference = reference_image(idn)
        for seed in proto.seeds:
            images = dc.decode(dc.encode_images(true_scenes(idn, proto.prompts, seed)))
            rows += score(oracle, np.stack([np.asarray(img) for img in images]), idn, proto.prompts,
                          prompts_for("text", idn, proto.prompts, seed), seed, reference)
    return summarise(rows)["subject_fidelity"]


def _generate(method, dc, prompts, reference, cache, seed, generation: GenerationConfig, **init):
    if method == "reference-only":
        return generate_reference_only(dc, prompts, reference, generation, seed=seed)
    return dc(prompts, cache, generation, seed=seed, progress=False, **init)


def score(oracle, images, identity, specs, prompts, seed, reference) -> list[dict]:
    """One row per image with the oracle's verdicts."""
    n = len(images)
    read = oracle.read(images)
    ref_read = oracle.read(reference[None])
    ids = [identity] * n
    recoloured = [spec.recolour is not None for spec in specs]
    parts = oracle_lib.subject_parts(read, ids, recoloured, [spec.size for spec in specs])
    subject = oracle_lib.fidelity_from_parts(parts)
    prompt = oracle_lib.prompt_fidelity(read, specs, [identity.class_name] * n)
    klass = oracle_lib.class_accuracy(read, ids)
    cosine = oracle_lib.embedding_cosine(read, {k: np.repeat(v, n, axis=0) for k, v in ref_read.items()})
    return [dict(identity=identity.seed, class_name=identity.class_name, seed=seed, kind=spec.kind, prompt=p,
                 class_accuracy=float(klass[i]), prompt_fidelity=float(prompt[i]),
                 subject_fidelity=float(subject[i]), embedding_cosine=float(cosine[i]),
                 **{f"subject_{name}": float(part[i]) for name, part in parts.items()})
            for i, (spec, p) in enumerate(zip(specs, prompts))]


def summarise(rows: list[dict]) -> dict:
    metrics = ("class_accuracy", "prompt_fidelity", "subject_fidelity", "embedding_cosine")
    out = {m: round(float(np.mean([r[m] for r in rows])), 4) for m in metrics}
    out["subject_by_attribute"] = {  # NaN rows: the detail does not apply to that image
        name: _nanmean([r.get(f"subject_{name}", np.nan) for r in rows]) for name in oracle_lib.SUBJECT_PARTS}
    for kind in ("recontext", "accessory", "property"):
        sub = [r for r in rows if r["kind"] == kind]
        out[f"by_kind_{kind}"] = {m: round(float(np.mean([r[m] for r in sub])), 4) for m in metrics} if sub else None
    return out


def _nanmean(values) -> float | None:
    values = np.asarray(values, float)
    return None if np.isnan(values).all() else round(float(np.nanmean(values)), 4)


def guidance_sweep(dc, proto: Protocol, ref_scales, generation: GenerationConfig | None = None, oracle=None,
                   progress: bool = True) -> list[dict]:
    """DreamCache's subject-vs-prompt trade-off: the toy bench at each reference guidance scale."""
    oracle = oracle or oracle_lib.Oracle.load()
    generation = generation or GenerationConfig()
    yardsticks = measure_yardsticks(dc, proto, oracle, generation)
    return [evaluate("dreamcache", dc, proto, replace(generation, ref_scale=s), oracle=oracle, progress=progress,
                     yardsticks=yardsticks)[0] for s in ref_scales]


TABLE_COLUMNS = ("method", "subject_fidelity", "identity_gain", "embedding_cosine", "prompt_fidelity", "class_accuracy",
                 "extra_params", "cache_bytes", "setup_seconds", "seconds_per_image", "images")


def markdown_table(summaries: list[dict], columns=TABLE_COLUMNS) -> str:
    """One row per summary (as `evaluate` returns them), numbers rounded for reading."""
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}"
        return f"{value:,}" if isinstance(value, int) else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(s.get(c)) for c in columns) + " |" for s in summaries]
    return "\n".join(lines)


def tradeoff_figure(summaries: list[dict], path=None, label: str = "method", title: str = "toy bench"):
    """Subject fidelity (y) against prompt fidelity (x), one labelled point per summary."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for s in summaries:
        ax.scatter(s["prompt_fidelity"], s["subject_fidelity"], s=40)
        ax.annotate(str(s[label]), (s["prompt_fidelity"], s["subject_fidelity"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    chance = summaries[0].get("subject_chance") if summaries else None
    if chance is not None:
        ax.axhline(chance, color="gray", ls=":", lw=1)
        ax.text(ax.get_xlim()[0], chance, " chance", va="bottom", fontsize=7, color="gray")
    ax.set_xlabel("prompt fidelity (CLIP-T analogue)")
    ax.set_ylabel("subject fidelity (DINO / CLIP-I analogue)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
