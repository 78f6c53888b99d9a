"""Train the embedded tiny backbone on the toy world, from scratch, resumably.

Stage 1 trains the VAE (reconstruction + a small KL term), stage 2 the UNet and the text
encoder together on frozen-VAE latents with the usual eps-prediction loss, stage 3 fine-tunes
the VAE decoder alone (as Stability's ft-MSE VAE did): the encoder, hence the latent space the
UNet learned, stays fixed while patterns and colours come out sharper. Every batch is
drawn from a seed derived from (run seed, step), so a resumed run sees exactly the data and
noise an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import CLIPTextModel

from ..backbones import ARCHITECTURES
from ..checkpoints import list_checkpoints, load_checkpoint, save_checkpoint, truncate_log
from ..datasets import StepBatches
from ..images import signed_tensor
from . import toyworld
from .tiny_backbone import (assemble_pipeline, build_text_encoder, build_tokenizer, build_unet, build_vae,
                            training_scheduler)


@dataclass
class BackboneConfig:
    out: str = "runs/tiny-backbone"
    seed: int = 0
    vae_steps: int = 2000
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_crop: int = 64            # train the (fully convolutional) VAE on random crops: more steps per minute
    kl_weight: float = 1e-6
    unet_steps: int = 12000
    unet_batch: int = 32
    unet_lr: float = 3e-4
    unet_decay_from: int = 6500   # linear decay of the UNet lr to 10% from this step to the end
    decoder_steps: int = 2000
    decoder_batch: int = 32
    decoder_lr: float = 3e-4
    caption_dropout: float = 0.1
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    init_from: str = ""           # a backbone folder to start from (its VAE is kept as is when vae_steps is 0)
    unet_channels: str = ""       # e.g. "64,128,128": a fresh UNet this wide (default: the `tiny` architecture's,
                                  # or init_from's UNet); the text encoder still comes from init_from
    ema_decay: float = 0.0        # > 0: export an exponential moving average of the UNet's weights
    snr_shift: float = 1.0        # multiply the noise schedule's SNR at every timestep (tiny_backbone.noise_schedule)
    threads: int = 2
    device: str = "cpu"           # "cuda" on a GPU: minutes instead of hours (same data and noise)
    workers: int = 0              # DataLoader processes rendering the toy world (the bottleneck on a GPU)


def batch_images(seed: int, step: int, n: int) -> tuple[np.ndarray, list[str]]:
    """Toy-world scenes with captions (plain or describing), plus some white references."""
    batch = toyworld.render_batch(n, seed=seed * 1_000_003 + step)
    images = batch["target"].copy()
    images[: n // 8] = batch["reference"][: n // 8]  # the VAE must also know subjects on white
    captions = list(batch["caption"])
    return images, captions


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class BackboneImages:
    """The backbone's training images as a pair source (`batch(step, n)`) for `datasets.StepBatches`."""

    def __init__(self, seed: int):
        self.seed = seed

    def batch(self, step: int, n: int):
        images, captions = batch_images(self.seed, step, n)
        return signed_tensor(images), captions


def _batches(cfg: BackboneConfig, seed: int, n: int, start: int, stop: int, desc: str):
    """(step, images on cfg.device, captions) for steps [start, stop), rendered by cfg.workers processes."""
    loader = torch.utils.data.DataLoader(StepBatches(BackboneImages(seed), n, start, stop), batch_size=None,
                                         num_workers=cfg.workers)
    for step, (images, captions) in tqdm(zip(range(start, stop), loader), initial=start, total=stop, desc=desc):
        yield step, images.to(cfg.device), captions


def _resume(root: Path, models: dict, optimizer, log: Path | None = None) -> tuple[int, float]:
    """The step to go on from and when the stage's clock started: `time.time()` minus the training
    seconds its checkpoints already hold, so a resumed stage keeps counting where it stopped."""
    checkpoints = list_checkpoints(root)
    state = load_checkpoint(checkpoints[-1], models, optimizer) if checkpoints else {"step": 0}
    if log is not None:
        truncate_log(log, state["step"])
    return state["step"], time.time() - state.get("seconds", 0.0)


def _progress(loss: torch.Tensor, started: float) -> dict:
    """A checkpoint's state: the last loss and the stage's training seconds so far."""
    return {"loss": loss.item(), "seconds": round(time.time() - started, 3)}


def training_seconds(out) -> float:
    """Training seconds of every stage that `out` holds checkpoints of, summed over resumes (the work
    done after a stage's last checkpoint and then lost to an interruption is not counted)."""
    total = 0.0
    for stage in ("vae", "unet", "decoder"):
        checkpoints = list_checkpoints(Path(out) / stage)
        if checkpoints:
            total += load_checkpoint(checkpoints[-1], {}).get("seconds", 0.0)  # no models: the state only
    return total


def train_vae(cfg: BackboneConfig):
    if cfg.init_from and cfg.vae_steps == 0:
        return AutoencoderKL.from_pretrained(cfg.init_from, subfolder="vae").to(cfg.device).eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)  # initial weights (all later randomness comes from per-step generators)
    vae = AutoencoderKL.from_pretrained(cfg.init_from, subfolder="vae") if cfg.init_from else build_vae()
    vae = vae.to(cfg.device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    root = Path(cfg.out) / "vae"
    start, started = _resume(root, {"vae": vae}, opt)
    for step, images, _ in _batches(cfg, cfg.seed, cfg.vae_batch, start, cfg.vae_steps, "vae"):
        for group in opt.param_groups:
            group["lr"] = decayed_learning_rate(cfg.vae_lr, step, cfg.vae_steps, int(0.75 * cfg.vae_steps))
        x = random_crop(images, cfg.vae_crop, _step_generator(cfg.seed, step))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=_step_generator(cfg.seed, step))).sample
        loss = _reconstruction_loss(recon, x) + cfg.kl_weight * posterior.kl().mean()
        _check_finite(loss, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.vae_steps:
            save_checkpoint(root, step + 1, {"vae": vae}, opt, _progress(loss, started), keep=cfg.keep_checkpoints)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = vae.encode(signed_tensor(batch_images(cfg.seed + 1, 0, 256)[0]).to(cfg.device)).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1 / latents.std()))  # unit-variance latents, as SD does
    return vae


def train_unet(cfg: BackboneConfig, vae):
    tokenizer = build_tokenizer()
    torch.manual_seed(cfg.seed + 1)
    text_encoder, unet = _initial_unet_and_text_encoder(cfg, tokenizer)
    text_encoder, unet = text_encoder.to(cfg.device).train(), unet.to(cfg.device).train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=1e-2)
    noise_schedule = training_scheduler(cfg.snr_shift)
    models = {"unet": unet, "text_encoder": text_encoder}
    if cfg.ema_decay > 0:
        models["ema_unet"] = ema = copy.deepcopy(unet).requires_grad_(False)
    root = Path(cfg.out) / "unet"
    start, started = _resume(root, models, opt, log=Path(cfg.out) / "unet_loss.jsonl")
    log = open(Path(cfg.out) / "unet_loss.jsonl", "a")
    for step, images, captions in _batches(cfg, cfg.seed, cfg.unet_batch, start, cfg.unet_steps, "unet"):
        for group in opt.param_groups:
            group["lr"] = unet_learning_rate(cfg, step)
        gen = _step_generator(cfg.seed, step)
        drop = torch.rand(len(captions), generator=gen) < cfg.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop)]
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.sample(generator=gen) * vae.config.scaling_factor
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(cfg.device)
        # noise drawn on the CPU from the step's generator: the same run on any device
        noise = torch.randn(latents.shape, generator=gen).to(cfg.device)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(captions),), generator=gen).to(cfg.device)
        noisy = noise_schedule.add_noise(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred, noise)
        _check_finite(loss, step)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if cfg.ema_decay > 0:
            update_ema(ema, unet, min(cfg.ema_decay, (1 + step) / (10 + step)))
        log.write(json.dumps({"step": step + 1, "loss": loss.item()}) + "\n")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.unet_steps:
            log.flush()
            save_checkpoint(root, step + 1, models, opt, _progress(loss, started), keep=cfg.keep_checkpoints)
    log.close()
    final = models.get("ema_unet", unet)
    return assemble_pipeline(vae, text_encoder.eval(), tokenizer, final.eval(), cfg.snr_shift)


def _initial_unet_and_text_encoder(cfg: BackboneConfig, tokenizer):
    if cfg.init_from:
        text_encoder = CLIPTextModel.from_pretrained(cfg.init_from, subfolder="text_encoder")
    else:
        text_encoder = build_text_encoder(tokenizer)
    if cfg.unet_channels:
        channels = [int(c) for c in cfg.unet_channels.split(",")]
        unet = UNet2DConditionModel.from_config(dict(ARCHITECTURES["tiny"].unet_config, block_out_channels=channels))
    elif cfg.init_from:
        unet = UNet2DConditionModel.from_pretrained(cfg.init_from, subfolder="unet")
    else:
        unet = build_unet()
    return text_encoder, unet


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (the UNet has no buffers)."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def finetune_decoder(cfg: BackboneConfig, vae):
    """Sharpen the decoder on posterior samples of a frozen encoder (the latents the UNet models)."""
    decoder = torch.nn.ModuleDict({"decoder": vae.decoder, "post_quant_conv": vae.post_quant_conv})
    decoder.train().requires_grad_(True)
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.decoder_lr)
    root = Path(cfg.out) / "decoder"
    start, started = _resume(root, {"decoder": decoder}, opt)
    for step, x, _ in _batches(cfg, cfg.seed + 2, cfg.decoder_batch, start, cfg.decoder_steps, "decoder"):
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.sample(generator=_step_generator(cfg.seed, step))
        loss = _reconstruction_loss(vae.decode(latents).sample, x)
        _check_finite(loss, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.decoder_steps:
            save_checkpoint(root, step + 1, {"decoder": decoder}, opt, _progress(loss, started),
                            keep=cfg.keep_checkpoints)
    decoder.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def reconstruction_psnr(vae, n: int = 64, seed: int = 123) -> float:
    """PSNR (dB) of the VAE round trip of `n` fixed toy scenes: the number to watch while training it."""
    x = signed_tensor(toyworld.render_batch(n, seed=seed)["target"]).to(vae.device, vae.dtype)
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    return float(10 * torch.log10(4 / F.mse_loss(recon, x)))


def _reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(recon, x) + F.mse_loss(recon, x)


def unet_learning_rate(cfg: BackboneConfig, step: int) -> float:
    return decayed_learning_rate(cfg.unet_lr, step, cfg.unet_steps, cfg.unet_decay_from)


def decayed_learning_rate(lr: float, step: int, steps: int, decay_from: int) -> float:
    """Constant, then a linear decay to 10% over the last steps (sharper results at the end)."""
    if step < decay_from:
        return lr
    return lr * (1 - 0.9 * (step - decay_from) / max(1, steps - decay_from))


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random `size` x `size` window for the whole batch (the full images when size covers them)."""
    h, w = x.shape[-2:]
    if size >= min(h, w):
        return x
    top, left = (int(torch.randint(0, n - size + 1, (1,), generator=generator)) for n in (h, w))
    return x[..., top:top + size, left:left + size]


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at step {step}: stopping; the last checkpoint is intact")


def train_backbone(cfg: BackboneConfig, export_to: str | None = None):
    """The three stages, then (optionally) save the pipeline folder. Returns the pipeline and its
    training seconds over every resume (`training_seconds`)."""
    torch.set_num_threads(cfg.threads)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    vae = train_vae(cfg)
    pipe = train_unet(cfg, vae)
    finetune_decoder(cfg, vae)  # the pipeline holds this very VAE
    if export_to:
        pipe.save_pretrained(export_to)
    return pipe, training_seconds(cfg.out)
