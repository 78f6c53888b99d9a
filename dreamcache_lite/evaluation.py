"""The toy bench: DreamBench's protocol on the toy world, judged by the oracle.

30 held-out identities x 25 prompts x 4 seeds (a `fast` subset for CI and notebooks). Each image
is read by the oracle: class accuracy, prompt fidelity (CLIP-T analogue), subject fidelity (the
identity detail words cannot carry; DINO/CLIP-I analogue) and the oracle-embedding cosine to the
reference, plus cost columns (extra parameters, per-subject set-up time, time per image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from . import oracle as oracle_lib
from . import toyworld as tw
from .baselines import generate_reference_only

METHODS = ("text", "text-described", "reference-only", "dreamcache")


@dataclass
class Protocol:
    identities: list
    seeds: list[int]
    prompts: list = None
    steps: int = 25

    def __post_init__(self):
        self.prompts = list(self.prompts or tw.BENCHMARK_PROMPTS)


def protocol(fast: bool = False, seeds: int | None = None, identities: int | None = None, steps: int = 25):
    """Full: 30 identities x 25 prompts x 4 seeds. Fast: 3 identities (3 classes) x 25 prompts x 1 seed."""
    ids = tw.benchmark_identities()
    n_ids = identities or (3 if fast else len(ids))
    n_seeds = seeds or (1 if fast else 4)
    return Protocol(ids[:n_ids], list(range(n_seeds)), steps=steps)


def reference_image(identity) -> np.ndarray:
    """The one reference of a benchmark subject: alone on white, not erased or flipped."""
    return tw.make_reference(identity, 0, flip_p=0.0, erase_p=0.0)


def prompts_for(method: str, identity, specs, seed: int) -> list[str]:
    if method == "text-described":  # coarse colour + pattern words: all that text can say
        return [tw.caption(identity, tw.benchmark_scene(spec, seed), describe=True) for spec in specs]
    return [tw.prompt_text(spec, identity.class_name) for spec in specs]


def evaluate(method: str, dc, proto: Protocol, text_scale: float = 5.0, ref_scale: float = 1.0,
             progress: bool = True, oracle=None) -> tuple[dict, list[dict]]:
    """Generate the protocol's images with `method` on `dc` (a DreamCachePipeline); score them."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    oracle = oracle or oracle_lib.Oracle.load()
    rows, setup, generating, generated, memo = [], 0.0, 0.0, 0, {}
    jobs = [(idn, seed) for idn in proto.identities for seed in proto.seeds]
    for idn, seed in tqdm(jobs, desc=f"toy bench ({method})", disable=not progress):
        reference = reference_image(idn)
        cache = None
        if method == "dreamcache":
            start = time.perf_counter()
            cache = dc.cache_reference(reference)
            setup += time.perf_counter() - start
        prompts = prompts_for(method, idn, proto.prompts, seed)
        key = (tuple(prompts), seed)
        if method in ("reference-only", "dreamcache") or key not in memo:  # text-only: the words alone
            start = time.perf_counter()
            if method == "reference-only":
                memo[key] = generate_reference_only(dc, prompts, reference, seed=seed, steps=proto.steps,
                                                    text_scale=text_scale)
            else:
                memo[key] = dc(prompts, cache, seed=seed, steps=proto.steps, text_scale=text_scale,
                               ref_scale=ref_scale, progress=False)
            generating += time.perf_counter() - start
            generated += len(prompts)
        images = np.stack([np.asarray(img) for img in memo[key]])
        rows += score(oracle, images, idn, proto.prompts, prompts, seed, reference)
    summary = summarise(rows)
    summary.update(method=method, images=len(rows), generated=generated, seconds=round(setup + generating, 2),
                   setup_seconds=round(setup / max(1, len(proto.identities) * len(proto.seeds)), 4),
                   seconds_per_image=round(generating / max(1, generated), 4),
                   extra_params=dc.adapters.num_parameters() if method == "dreamcache" else 0,
                   subject_chance=oracle_lib.SUBJECT_CHANCE, text_scale=text_scale,
                   ref_scale=ref_scale if method == "dreamcache" else None, steps=proto.steps)
    return summary, rows


def score(oracle, images, identity, specs, prompts, seed, reference) -> list[dict]:
    """One row per image with the oracle's verdicts."""
    n = len(images)
    read = oracle.read(images)
    ref_read = oracle.read(reference[None])
    ids = [identity] * n
    recoloured = [spec.recolour is not None for spec in specs]
    subject = oracle_lib.subject_fidelity(read, ids, recoloured)
    prompt = oracle_lib.prompt_fidelity(read, specs, [identity.class_name] * n)
    klass = oracle_lib.class_accuracy(read, ids)
    cosine = oracle_lib.embedding_cosine(read, {k: np.repeat(v, n, axis=0) for k, v in ref_read.items()})
    return [dict(identity=identity.seed, class_name=identity.class_name, seed=seed, kind=spec.kind, prompt=p,
                 class_accuracy=float(klass[i]), prompt_fidelity=float(prompt[i]),
                 subject_fidelity=float(subject[i]), embedding_cosine=float(cosine[i]))
            for i, (spec, p) in enumerate(zip(specs, prompts))]


def summarise(rows: list[dict]) -> dict:
    metrics = ("class_accuracy", "prompt_fidelity", "subject_fidelity", "embedding_cosine")
    out = {m: round(float(np.mean([r[m] for r in rows])), 4) for m in metrics}
    for kind in ("recontext", "accessory", "property"):
        sub = [r for r in rows if r["kind"] == kind]
        out[f"by_kind_{kind}"] = {m: round(float(np.mean([r[m] for r in sub])), 4) for m in metrics} if sub else None
    return out
