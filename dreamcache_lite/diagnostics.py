"""Do the adapters use their reference? Two measurements, cheap enough to print after every training run.

`reference_gain`: the denoising loss on one fixed batch of pairs with each sample's own reference,
with none, and with another sample's (shuffled), per timestep band; `gain` = 1 - own / none
(0: the reference is ignored); `subject_gain` is the same over the target subject's latent pixels
only (where a reference can add identity: on the paper's pairs the rest of the picture is the
prompt's business, so the whole-image gain is small even for adapters that carry the subject).
On *copy pairs* (`datasets.CopyPairs`: the reference is the target itself,
so the cache holds the clean answer) it tests the mechanism alone: adapters that cannot use an
identical reference cannot personalise.

`attention_entropy`: per adapter, the entropy of its attention over the cached tokens divided by
log(number of tokens), averaged over queries: 1 is uniform (every cached token alike), lower
means the adapter looks somewhere in particular.

`attention_accuracy`: where the pairs know the truth (the toy world's), whether the adapters look at
the right place: the reference cell that shows the same point of the subject.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler

from .adapters import DreamCacheAdapters
from .datasets import CopyPairs
from .training import correspondence_answers, encode_batch, subject_share  # what training uses

BANDS = ((0, 300), (300, 600), (600, 1000))


def encoded_pairs(pipe, adapters, source, size: int, seed: int):
    """Batch 0 of `source` (`size` pairs) encoded as training encodes it, with the generator (seeded
    `seed`) that drew the cache's noise, to draw the rest from: (noise schedule, generator, text,
    target latents, cache, batch)."""
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = source.batch(0, size)
    gen = torch.Generator().manual_seed(seed)
    text, target, cache = encode_batch(pipe, adapters, batch, batch["caption"], noise_schedule, gen)
    return noise_schedule, gen, text, target, cache, batch


def reference_rows(size: int) -> tuple:
    """(name, rows) for the three ways of running a batch: each sample with its own reference, with
    none (-1), and with the next sample's (shuffled)."""
    return (("own", torch.arange(size)), ("none", torch.full((size,), -1)),
            ("shuffled", torch.roll(torch.arange(size), 1)))


def _subject_weights(mask: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """The subject's share of each latent pixel (area-averaged mask), broadcast over channels."""
    return subject_share(mask, latent).expand_as(latent)


@torch.no_grad()
def reference_gain(pipe, adapters: DreamCacheAdapters, source, size: int = 48, bands=BANDS, seed: int = 5) -> dict:
    """{"0-300": {"own", "none", "shuffled", "gain", "subject_gain"}, ...}: the loss with the own / no /
    another sample's reference and the gains (whole latent; subject pixels only), per timestep band;
    same batch and noise for all three."""
    noise_schedule, gen, text, target, cache, batch = encoded_pairs(pipe, adapters, source, size, seed)
    weights = _subject_weights(batch["mask"], target)
    out = {}
    for lo, hi in bands:
        noise = torch.randn(target.shape, generator=gen).to(target.device)
        t = torch.randint(lo, hi, (size,), generator=gen).to(target.device)
        noisy = noise_schedule.add_noise(target, noise, t)
        losses, subject = {}, {}
        for name, rows in reference_rows(size):
            with adapters.reference(cache, rows=rows):
                squared = (pipe.unet(noisy, t, encoder_hidden_states=text).sample - noise) ** 2
            losses[name] = squared.mean().item()
            subject[name] = ((squared * weights).sum() / weights.sum()).item()
        out[f"{lo}-{hi}"] = {**losses, "gain": 1 - losses["own"] / losses["none"],
                             "subject_gain": 1 - subject["own"] / subject["none"]}
    return out


def _attention_maps(pipe, adapters, source, size: int, timestep: int, seed: int):
    """Each adapter's head-averaged attention on `size` pairs noised to `timestep`, with the cache and batch."""
    noise_schedule, gen, text, target, cache, batch = encoded_pairs(pipe, adapters, source, size, seed)
    noise = torch.randn(target.shape, generator=gen).to(target.device)
    t = torch.full((size,), timestep, device=target.device)
    with adapters.reference(cache):
        adapters.context.record_attention = True
        pipe.unet(noise_schedule.add_noise(target, noise, t), t, encoder_hidden_states=text)
        return dict(adapters.context.attention), cache, batch


@torch.no_grad()
def attention_entropy(pipe, adapters: DreamCacheAdapters, source, size: int = 8, timestep: int = 500,
                      seed: int = 5) -> dict[str, float]:
    """Normalised attention entropy per adapter block (1 = uniform) on `size` pairs at `timestep`."""
    maps, _, _ = _attention_maps(pipe, adapters, source, size, timestep, seed)
    return {name: float(-(w * w.clamp_min(1e-12).log()).sum(-1).mean() / math.log(w.shape[-1]))
            for name, w in maps.items()}


@torch.no_grad()
def attention_accuracy(pipe, adapters: DreamCacheAdapters, source, size: int = 16, timestep: int = 500,
                       seed: int = 5) -> dict[str, dict[str, float]] | None:
    """Per adapter block, against the true correspondence (pair sources that know it, like the toy
    world's; None for others): `near`, the share of target subject cells whose strongest cached token
    is the true reference cell or one of its 8 neighbours, and `on_subject`, the attention weight that
    falls on the reference's subject rather than its white background."""
    if "correspondence" not in source.batch(0, 1):  # checked on one pair, before any UNet pass
        return None
    maps, cache, batch = _attention_maps(pipe, adapters, source, size, timestep, seed)
    out = {}
    for name, proc in adapters.processors.items():
        grid = cache.grids[proc.layer]
        truth = correspondence_answers(batch["correspondence"], batch["reference"], grid)
        scores = attention_scores(maps[name].cpu(), *truth, grid)
        out[name] = {k: scores[k] for k in ("near", "on_subject")}
    return out


def attention_scores(weights: torch.Tensor, answer: torch.Tensor, valid: torch.Tensor, shown: torch.Tensor,
                     grid: tuple[int, int]) -> dict[str, float]:
    """Attention maps (B, queries, cached tokens) against `training.correspondence_answers`, averaged over
    the valid queries: `top1` (strongest token = the true cell), `near` (the true cell or one of its 8
    neighbours), `mass_near` (weight on those 9 cells), `on_subject` (weight on the reference's subject)
    and `chance` (`top1` of a guess uniform over the subject's cells)."""
    w = grid[1]
    best = weights.argmax(-1)
    cells = torch.arange(weights.shape[-1])

    def neighbours(a, b):
        return ((a // w - b // w).abs() <= 1) & ((a % w - b % w).abs() <= 1)

    measures = {"top1": best == answer, "near": neighbours(best, answer),
                "mass_near": (weights * neighbours(cells[None, None], answer[..., None])).sum(-1),
                "on_subject": (weights * shown[:, None]).sum(-1),
                "chance": (1.0 / shown.sum(-1, keepdim=True).clamp_min(1)).expand_as(answer)}
    count = valid.sum().clamp_min(1)
    return {k: float((v * valid).sum() / count) for k, v in measures.items()}


def diagnose(pipe, adapters: DreamCacheAdapters, source, size: int = 48, seed: int = 5) -> dict:
    """Everything above on `source` (the training pairs) and on its copy task."""
    report = {"reference_gain": {"pairs": reference_gain(pipe, adapters, source, size, seed=seed),
                                 "copy": reference_gain(pipe, adapters, CopyPairs(source), size, seed=seed)},
              "attention_entropy": attention_entropy(pipe, adapters, source, seed=seed)}
    accuracy = attention_accuracy(pipe, adapters, source, seed=seed)
    if accuracy is not None:
        report["attention_accuracy"] = accuracy
    return report


def summary_lines(report: dict) -> list[str]:
    """The report as a few printable lines."""
    lines = []
    for kind, bands in report["reference_gain"].items():
        gains = "  ".join(f"t {band}: {row['gain']:+.3f}" for band, row in bands.items())
        lines.append(f"reference gain ({kind}): {gains}")
        gains = "  ".join(f"t {band}: {row['subject_gain']:+.3f}" for band, row in bands.items())
        lines.append(f"  on the subject's pixels: {gains}")
    entropy = report["attention_entropy"]
    lines.append(f"attention entropy (1 = uniform): mean {sum(entropy.values()) / len(entropy):.3f}, "
                 f"min {min(entropy.values()):.3f} over {len(entropy)} adapters")
    if "attention_accuracy" in report:
        rows = report["attention_accuracy"].values()
        lines.append("attention vs the true correspondence, per adapter: strongest token at the true place or a "
                     "neighbour " + " / ".join(f"{r['near']:.2f}" for r in rows) + "; weight on the subject "
                     + " / ".join(f"{r['on_subject']:.2f}" for r in rows))
    return lines
