"""Training the DreamCache adapters: the backbone frozen, only the adapters learn.

Each step: a target image + caption, a reference made from the target (cut out, on white, moved,
erased); the reference is cached at t = 1 by the frozen UNet; the target is noised and the UNet,
attending to that cache through the adapters, predicts the noise. Captions are dropped with
p = 0.07 (as the paper) and references with a small probability, so that the reference guidance
has an unconditional branch. Runs through `accelerate` (fp32 on CPU, mixed precision and
multi-GPU via `accelerate launch` on GPUs); checkpoints are atomic and a resumed run ends with
exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler
from tqdm.auto import tqdm

from .adapters import DreamCacheAdapters
from .backbones import load_pipeline
from .cache import cache_features
from .checkpoints import list_checkpoints, load_checkpoint, save_checkpoint, truncate_log
from .datasets import CopyPairs, StepBatches
from .encoders import encode_images, encode_text


@dataclass
class TrainConfig:
    backbone: str = "tiny"
    dataset: str = "toyworld"           # or a folder in the authors' layout (names the pairs for the CLI)
    out: str = "runs/adapters"
    layers: str | list = "paper"
    init: str = "identity"
    injection: str = "concat"           # or "sum" (the paper's spatial-sum ablation)
    attention: str = "paper"            # or "cosine" / "positional" (this package's options; see adapters.py)
    coarse_to_fine: float = 0.0         # this package's option: finer adapters narrowed by coarser ones' attention
    steps: int = 3000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    caption_dropout: float = 0.07
    reference_dropout: float = 0.05
    cache_timestep: int = 1
    min_snr_gamma: float | None = None  # Min-SNR weighting; 1 moves the gradient to high noise, where colour is set
    snr_floor: float = 0.0              # ... and weights noisier samples as if their SNR were this (0.25: up to 9x)
    subject_weight: float = 0.0         # extra loss weight on the target's subject pixels, where identity lives
    colour_weight: float = 0.0          # also the subject's low-pass x0 error, where colour shows (colour_loss)
    correspondence_weight: float = 0.0  # toy world: also teach the attention where to look (correspondence_loss)
    correspondence_colour: float = 0.0  # ... counting every reference cell of the target cell's colour as right
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    on_bad_sample: str = "skip"
    n_identities: int | None = None
    describe_p: float = 0.5             # toy world: share of captions naming colour and pattern
    copy_task: bool = False             # every reference is its own target (datasets.CopyPairs)
    aligned_references: bool = False    # toy world control: the reference sits where the target's subject does
    seed: int = 0
    workers: int = 0                    # DataLoader processes rendering pairs ahead (the bottleneck on a GPU)
    diagnostics_size: int = 48          # pairs for the reference-gain / attention diagnostics at the end (0: none)
    extra: dict = field(default_factory=dict)


def _generator(cfg: TrainConfig, step: int, micro: int) -> torch.Generator:
    return torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 64 + micro)


def encode_batch(pipe, adapters: DreamCacheAdapters, batch: dict, captions: list[str], noise_schedule,
                 gen: torch.Generator, cache_timestep: int = 1, cache_noise: torch.Tensor | None = None):
    """The frozen half of a training step: caption embeddings, target latents and the references' cache,
    encoded exactly as generation encodes them (no grad)."""
    text = encode_text(pipe, captions)
    target = encode_images(pipe, batch["target"])
    cache = cache_features(pipe.unet, encode_images(pipe, batch["reference"]), encode_text(pipe, [""]),
                           layers=[i.name for i in adapters.layers], timestep=cache_timestep,
                           scheduler=noise_schedule, generator=gen, noise=cache_noise)
    return text, target, cache


def draw_randomness(pipe, batch: dict, cfg: TrainConfig, gen: torch.Generator, num_train_timesteps: int) -> dict:
    """Every random number of one micro-batch, drawn for all rows of the global batch in one fixed order.

    A process that trains on a shard of the rows takes its slice of each, so N processes
    (`accelerate launch`) see exactly the numbers that one process sees.
    """
    n, (height, width) = len(batch["caption"]), batch["target"].shape[-2:]
    latent = (n, pipe.vae.config.latent_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return {"caption_drop": torch.rand(n, generator=gen) < cfg.caption_dropout,
            "cache_noise": torch.randn(latent, generator=gen),
            "reference_drop": torch.rand(n, generator=gen) < cfg.reference_dropout,
            "noise": torch.randn(latent, generator=gen),
            "t": torch.randint(0, num_train_timesteps, (n,), generator=gen)}


def shard_rows(batch_size: int, accelerator) -> slice:
    """This process's contiguous share of the global batch's rows."""
    per = batch_size // accelerator.num_processes
    return slice(accelerator.process_index * per, (accelerator.process_index + 1) * per)


def training_loss(pipe, unet, adapters: DreamCacheAdapters, batch: dict, cfg: TrainConfig, gen: torch.Generator,
                  noise_schedule: DDPMScheduler, rows: slice = slice(None), backward=None, parts: dict | None = None):
    """The eps-prediction loss of the micro-batch's `rows`, the UNet attending to their own references.

    `unet` is the (possibly accelerate-wrapped) trainable UNet; caching uses the bare `pipe.unet`.
    The random numbers are drawn for the whole batch first, then sliced to `rows`.
    `backward(loss)`, when given, runs while the references are still active: with gradient
    checkpointing the backward pass re-runs the blocks, and their adapters must see the same cache.
    `parts`, when given, receives the loss's terms ("denoising", and "correspondence" / "colour" when weighted).
    """
    draws = draw_randomness(pipe, batch, cfg, gen, noise_schedule.config.num_train_timesteps)
    batch = {k: v[rows] for k, v in batch.items()}
    draws = {k: v[rows] for k, v in draws.items()}
    captions = ["" if drop else c for c, drop in zip(batch["caption"], draws["caption_drop"])]
    text, target, cache = encode_batch(pipe, adapters, batch, captions, noise_schedule, gen, cfg.cache_timestep,
                                       cache_noise=draws["cache_noise"])
    reference_rows = torch.arange(len(captions))
    reference_rows[draws["reference_drop"]] = -1
    noise, t = draws["noise"].to(target.device), draws["t"].to(target.device)
    noisy = noise_schedule.add_noise(target, noise, t)
    with adapters.reference(cache, rows=reference_rows):
        adapters.context.record_attention = bool(cfg.correspondence_weight)
        pred = unet(noisy, t, encoder_hidden_states=text).sample
        loss = _denoising_loss(pred, noise, t, batch["mask"], cfg, noise_schedule)
        terms = {"denoising": loss.detach()}
        if cfg.colour_weight:
            colour = colour_loss(pred, noise, snr(noise_schedule, t), batch["mask"])
            loss = loss + cfg.colour_weight * colour
            terms["colour"] = colour.detach()
        if cfg.correspondence_weight:
            if "correspondence" not in batch:
                raise ValueError("correspondence_weight needs pairs that know where each target pixel lies in "
                                 "its reference (the toy world's); this dataset has none")
            active = reference_rows >= 0
            auxiliary = torch.zeros((), device=loss.device)  # stays 0 when every row's reference is dropped
            if active.any():
                auxiliary = correspondence_loss(adapters, batch["correspondence"][active], batch["reference"][active],
                                                batch["target"][active], cfg.correspondence_colour)
                loss = loss + cfg.correspondence_weight * auxiliary
            terms["correspondence"] = auxiliary.detach()
        if parts is not None:
            parts.update(terms)
        if backward is not None:
            backward(loss)
    return loss


def correspondence_answers(correspondence: torch.Tensor, reference: torch.Tensor, grid: tuple[int, int]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On an h x w token grid: for each target cell, the reference cell showing the same point of the
    subject (`answer`, (B, h*w)); which target cells have one (`valid`: the cell's centre is on the
    subject and its answer on a part of the reference that shows the subject, not erased); and which
    reference cells show the subject (`shown`, (B, h*w)). `correspondence`: (B, 2, H, W) reference
    pixel coordinates per target pixel, NaN off the subject (the toy world's pairs carry it)."""
    h, w = grid
    cell_h, cell_w = correspondence.shape[-2] // h, correspondence.shape[-1] // w
    centres = correspondence[..., cell_h // 2::cell_h, cell_w // 2::cell_w].flatten(2)  # (B, 2, h*w)
    iy = (centres[:, 0] // cell_h).clamp(0, h - 1).nan_to_num(0).long()
    ix = (centres[:, 1] // cell_w).clamp(0, w - 1).nan_to_num(0).long()
    answer = iy * w + ix
    inked = (reference < 0.96).any(1, keepdim=True).float()  # not white (pixel < 250)
    shown = F.adaptive_avg_pool2d(inked.to(correspondence.device), (h, w)).flatten(1) >= 0.5
    return answer, centres[:, 0].isfinite() & shown.gather(1, answer), shown


def correspondence_loss(adapters: DreamCacheAdapters, correspondence: torch.Tensor, reference: torch.Tensor,
                        target: torch.Tensor | None = None, colour: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the true reference cell under each adapter's (head-averaged) attention, over the
    target cells that have one (`correspondence_answers`). Reads the maps the last UNet call recorded.

    A laboratory option, not the paper's loss: the toy world knows where every target pixel lies in its
    moved, rescaled reference. The frozen tiny UNet's features carry that correspondence (attention
    trained on it finds the true cell or a neighbour for 0.54-0.99 of subject cells, by layer), but the
    denoising loss alone does not teach it (scripts/correspondence_probe.py; figures/README.md).
    `colour` > 0: every shown reference cell whose mean colour lies within this distance (images in
    [-1, 1], Euclidean over RGB) of the target cell's also counts as right (-log of the attention
    on all of them): reading any cell of the same colour gives the colour, not only the same place."""
    losses = []
    for proc in adapters.processors.values():
        grid = adapters.context.cache.grids[proc.layer]
        answer, valid, shown = correspondence_answers(correspondence, reference, grid)
        weights = adapters.context.attention[proc.name].to(correspondence.device)
        right = F.one_hot(answer, weights.shape[-1]).bool()
        if colour:
            seen, looked_at = (F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2) for x in (target, reference))
            right |= (torch.cdist(seen, looked_at) < colour) & shown[:, None]
        logp = (weights * right).sum(-1).clamp_min(1e-9).log()
        losses.append(-(logp * valid).sum() / valid.sum().clamp_min(1))
    return torch.stack(losses).mean()


def subject_share(mask: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w): the subject's share of each pixel of `latent`'s grid (the image mask, area-averaged)."""
    return F.interpolate(mask.to(latent.device, latent.dtype), size=latent.shape[-2:], mode="area")


def _denoising_loss(pred, noise, t, mask, cfg: TrainConfig, noise_schedule) -> torch.Tensor:
    squared = F.mse_loss(pred.float(), noise.float(), reduction="none")
    if cfg.subject_weight:  # the subject is a small share of the pixels; its detail is what the reference adds
        mask = subject_share(mask, squared)
        weight = 1 + cfg.subject_weight * mask
        per_sample = (squared * weight).mean(dim=(1, 2, 3)) / weight.mean(dim=(1, 2, 3))
    else:
        per_sample = squared.mean(dim=(1, 2, 3))
    if cfg.min_snr_gamma or cfg.snr_floor:
        ratio = snr(noise_schedule, t)
        per_sample = per_sample * ratio.clamp(min=cfg.snr_floor, max=cfg.min_snr_gamma) / ratio
    return per_sample.mean()


def snr(noise_schedule, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) of each sample's timestep."""
    alpha_bar = noise_schedule.alphas_cumprod.to(t.device)[t]
    return alpha_bar / (1 - alpha_bar)


def colour_loss(pred, noise, ratio, mask) -> torch.Tensor:
    """The error of the predicted clean latent's low frequencies on the subject: 2x2-pooled, so a latent
    cell's mean (its colour) counts and its detail does not; mean over the subject, each cell weighted
    by its subject share. A laboratory option, not the paper's loss.

    Why: in the x0 error that eps-MSE sees, a sample counts with weight SNR, so at high noise, where
    the sampler settles colour, a wrong colour costs almost nothing (SNR 0.03-0.5 at t 700-1000 on
    backbone v2's schedule); the pooled x0 error (eps error / sqrt(SNR)) weighs it fully, and the
    pooling keeps the unpredictable detail of high noise out of it."""
    share = F.avg_pool2d(subject_share(mask, pred), 2)
    low = F.avg_pool2d(pred.float() - noise.float(), 2).square().mean(1, keepdim=True)
    per_sample = (low * share).sum(dim=(1, 2, 3)) / share.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    return (per_sample / ratio).mean()


def _learning_rate(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def _resume(cfg: TrainConfig, adapters, optimizer, truncate: bool = True) -> int:
    checkpoints = list_checkpoints(Path(cfg.out) / "checkpoints")
    if not checkpoints:
        return 0
    state = load_checkpoint(checkpoints[-1], {"adapters": adapters}, optimizer)
    if truncate:  # only one process edits the log
        truncate_log(Path(cfg.out) / "loss.jsonl", state["step"])
    return state["step"]


def adapters_for(unet, cfg: TrainConfig, replace: bool = False) -> DreamCacheAdapters:
    """The adapters a run's config describes, installed on `unet`: what training builds, and what
    reloading one of its checkpoints (weights only) must build again."""
    return DreamCacheAdapters(unet, cfg.layers, init=cfg.init, injection=cfg.injection, attention=cfg.attention,
                              replace=replace, coarse_to_fine=cfg.coarse_to_fine)


def read_config(run) -> TrainConfig:
    """The `TrainConfig` a run folder's config.json holds (keys of older versions ignored)."""
    saved = json.loads((Path(run) / "config.json").read_text())
    return TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved})


def train_adapters(cfg: TrainConfig, pairs, pipe=None, resume: bool = True, progress: bool = True,
                   replace: bool = False) -> DreamCacheAdapters:
    """Train (or continue training) adapters on `pairs` (a pair source: `batch(step, size) -> dict`,
    see `datasets.py`); returns them installed on `pipe.unet` (`replace=True` first takes out adapters
    left installed there, e.g. by an interrupted notebook cell)."""
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision)
    if cfg.batch_size % accelerator.num_processes:
        raise ValueError(f"batch size {cfg.batch_size} does not split evenly over {accelerator.num_processes} "
                         "processes: pass a multiple of the process count (the batch size is the global batch)")
    rows = shard_rows(cfg.batch_size, accelerator)
    main = accelerator.is_main_process
    pipe = (pipe or load_pipeline(cfg.backbone)).to(accelerator.device)  # a GPU holds VAE and text encoder too
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)  # the pipeline keeps its sampler
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    with torch.random.fork_rng():  # the initial weights follow cfg.seed, the caller's RNG is left alone
        torch.manual_seed(cfg.seed)
        adapters = adapters_for(pipe.unet, cfg, replace=replace)
    for p in adapters.parameters():
        p.requires_grad_(True)
    if cfg.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(adapters.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    unet, optimizer = accelerator.prepare(pipe.unet, optimizer)
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    start = _resume(cfg, adapters, optimizer, truncate=main) if resume else 0
    accelerator.wait_for_everyone()  # the log is truncated before anyone appends to it
    if cfg.copy_task:
        pairs = CopyPairs(pairs)
    loader = iter(torch.utils.data.DataLoader(
        StepBatches(pairs, cfg.batch_size, start * cfg.grad_accum, cfg.steps * cfg.grad_accum),
        batch_size=None, num_workers=cfg.workers))

    def backward(loss):
        if not loss.requires_grad and accelerator.num_processes > 1:
            # reference dropout removed every row of this shard; the other processes still wait
            # for this one's (zero) gradients
            loss = loss + sum(0.0 * p.sum() for p in adapters.parameters())
        if loss.requires_grad:  # False when reference dropout removed every row (one process)
            accelerator.backward(loss)

    began = time.time()
    with open(out / "loss.jsonl", "a") if main else contextlib.nullcontext() as log:
        for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="adapters",
                         disable=not (progress and main)):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(cfg, step)
            total, logged = 0.0, {}
            for micro in range(cfg.grad_accum):
                with accelerator.accumulate(unet):
                    batch = next(loader)  # batch number step * grad_accum + micro
                    parts = {}
                    loss = training_loss(pipe, unet, adapters, batch, cfg, _generator(cfg, step, micro),
                                         noise_schedule, rows, backward=backward, parts=parts)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss is {loss.item()} at step {step}: training stopped; "
                                                 f"the last checkpoint in {out / 'checkpoints'} is intact")
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(list(adapters.parameters()), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                total += accelerator.reduce(parts.pop("denoising"), "mean").item() / cfg.grad_accum
                for name, value in parts.items():  # the auxiliary terms
                    logged[name] = logged.get(name, 0.0) + accelerator.reduce(value, "mean").item() / cfg.grad_accum
            if not main:
                continue
            # "loss" is the denoising loss (comparable across runs); an auxiliary term is logged beside it
            log.write(json.dumps({"step": step + 1, "loss": total, **logged,
                                  "seconds": round(time.time() - began, 2)}) + "\n")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                log.flush()
                save_checkpoint(out / "checkpoints", step + 1, {"adapters": adapters}, optimizer,
                                {"loss": total}, keep=cfg.keep_checkpoints)
    if main:
        adapters.save(out / "adapters.safetensors", extra={"config": asdict(cfg), "steps": cfg.steps})
    accelerator.wait_for_everyone()
    return adapters


def loss_log(out) -> list[dict]:
    """The rows of `out/loss.jsonl`: {"step", "loss", "seconds"} (seconds since its session began)."""
    return [json.loads(line) for line in (Path(out) / "loss.jsonl").read_text().splitlines()]


def read_loss_log(out) -> tuple[list[int], list[float]]:
    rows = loss_log(out)
    return [r["step"] for r in rows], [r["loss"] for r in rows]


def session_seconds(out) -> list[float]:
    """Wall time of every (resumed) training session, from the loss log's per-session clocks."""
    sessions, last = [], 0.0
    for row in loss_log(out):
        if row["seconds"] < last:
            sessions.append(last)
        last = row["seconds"]
    return sessions + [last]
