"""Train the toy-world oracle (dreamcache_lite/oracle.py) and measure it on held-out subjects.

    OMP_NUM_THREADS=1 python scripts/train_oracle.py --export dreamcache_lite/assets/oracle

Training data is rendered on the fly (seeded per step, so a run is reproducible): random training
identities in random scenes plus ~15% references on white. Augmentation (blur, downscale-upscale,
JPEG, colour jitter, noise and, optionally, a round trip through the tiny backbone's VAE) makes the
oracle read *generated* images, which are never as crisp as renders. Evaluation uses the 30
benchmark identities (never trained on) in random scenes and in the 25 benchmark prompt scenes,
clean and -- when the VAE checkpoint exists -- after a VAE round trip, and prints JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from dreamcache_lite import oracle as orc
from dreamcache_lite import toyworld as tw
from dreamcache_lite.manifest import write_manifest

VAE_DEFAULT = "runs/tiny-backbone/vae/step-001000/vae.safetensors"


@dataclasses.dataclass
class OracleConfig:
    seed: int = 0
    steps: int = 3500
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 24
    embed_dim: int = 256
    attention: int = 4              # learned spatial-softmax poolings
    reference_fraction: float = 0.15
    blur_p: float = 0.6
    blur_max: float = 1.2
    rescale_p: float = 0.3
    jpeg_p: float = 0.2
    jitter: float = 0.03
    noise_p: float = 0.5
    noise_max: float = 0.04
    vae: str = VAE_DEFAULT          # VAE weights for the VAE evaluation (and vae_p augmentation)
    vae_p: float = 0.0              # fraction of each training batch sent through the VAE
    eval_scenes: int = 20           # random scenes per benchmark identity
    threads: int = 1
    out: str = "runs/oracle"


# --------------------------------------------------------------------------- data
def sample(identity: tw.Identity, rng, reference_fraction: float):
    """One training image, its subject mask and targets. References come from `make_reference`
    (no erasing, which could hide the glyph; the subject is every non-white pixel); their
    placement is not returned, so geometry is not supervised for them."""
    if rng.random() < reference_fraction:
        image = tw.make_reference(identity, rng, erase_p=0.0)
        return image, (image != 255).any(-1), orc.attributes(identity, tw.Scene()), False
    scene = tw.random_scene(rng)
    image, mask = tw.render(identity, scene)
    return image, mask, orc.attributes(identity, scene), True


def collate(attrs: list[dict], masks: list, has_geometry: list[bool]) -> dict:
    """Stack per-image attribute records into training target tensors."""
    t = {k: torch.tensor([names.index(a[k]) for a in attrs]) for k, names in orc.CATEGORICAL.items()}
    for k in ("body", "pattern_colour", "glyph"):
        t[k] = torch.from_numpy(np.stack([a[k] for a in attrs]).astype(np.float32))
    t["has_pattern"] = torch.tensor([a["pattern"] != "plain" for a in attrs])
    t["geometry"] = torch.tensor([[a.get("scale", 1.0), a.get("x", 0.0) / orc.SCALE_NORM,
                                   a.get("y", 0.0) / orc.SCALE_NORM] for a in attrs])
    t["has_geometry"] = torch.tensor(has_geometry)
    masks = torch.from_numpy(np.stack(masks)).float()[:, None]
    t["mask"] = F.avg_pool2d(masks, 4)[:, 0]  # subject fraction of each 4x4 cell (16x16 grid)
    return t


def training_batch(cfg: OracleConfig, step: int):
    """uint8 images, targets and the numpy generator that also drives this step's augmentation."""
    rng = np.random.default_rng((cfg.seed, step))
    images, masks, attrs, geo = [], [], [], []
    for _ in range(cfg.batch):
        identity = tw.training_identity(int(rng.integers(tw.N_TRAIN_SEEDS)))
        image, mask, a, g = sample(identity, rng, cfg.reference_fraction)
        images.append(image), masks.append(mask), attrs.append(a), geo.append(g)
    return np.stack(images), collate(attrs, masks, geo), rng


# --------------------------------------------------------------------------- augmentation
def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def gaussian_blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Per-image separable Gaussian blur (sigma 0 = identity) as one grouped convolution."""
    b, c, h, w = x.shape
    r = torch.arange(-3, 4, dtype=torch.float32)
    s = torch.from_numpy(np.maximum(sigma, 1e-3)).float()[:, None]
    k = torch.exp(-0.5 * (r[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b*c, 7)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="reflect"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def augment(images: np.ndarray, rng, cfg: OracleConfig, vae=None) -> torch.Tensor:
    """Degrade renders the way a generator might: JPEG, resolution loss, blur, colour drift, noise."""
    b = len(images)
    images = np.stack([jpeg(im, int(rng.integers(30, 90))) if rng.random() < cfg.jpeg_p else im
                       for im in images])
    x = orc.to_tensor(images)
    if vae is not None and cfg.vae_p > 0:
        pick = np.flatnonzero(rng.random(b) < cfg.vae_p)
        if len(pick):
            x[pick] = vae_round_trip(vae, x[pick])
    for i in np.flatnonzero(rng.random(b) < cfg.rescale_p):
        side = int(rng.integers(28, 57))
        small = F.interpolate(x[i:i + 1], size=side, mode="bilinear", antialias=True, align_corners=False)
        x[i:i + 1] = F.interpolate(small, size=tw.SIZE, mode="bilinear", align_corners=False)
    sigma = rng.uniform(0, cfg.blur_max, b) * (rng.random(b) < cfg.blur_p)
    x = gaussian_blur(x, sigma)
    gain = 1 + rng.uniform(-cfg.jitter, cfg.jitter, (b, 3, 1, 1))
    offset = rng.uniform(-cfg.jitter, cfg.jitter, (b, 3, 1, 1)) / 2
    noise = rng.standard_normal(x.shape) * (rng.uniform(0, cfg.noise_max, b) * (rng.random(b) < cfg.noise_p))[:, None, None, None]
    return (x * torch.from_numpy(gain).float() + torch.from_numpy(offset + noise).float()).clamp(0, 1)


def load_vae(path):
    """The tiny backbone's VAE from a training checkpoint, or None when it does not exist yet."""
    if not path or not Path(path).is_file():
        return None
    from safetensors.torch import load_file

    from dreamcache_lite.tiny_backbone import build_vae
    vae = build_vae()
    vae.load_state_dict(load_file(str(path)))
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def vae_round_trip(vae, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Encode (posterior mean) and decode: what the best possible latent of an image looks like."""
    outs = []
    for i in range(0, len(x), batch_size):
        z = vae.encode(x[i:i + batch_size] * 2 - 1).latent_dist.mean
        outs.append(vae.decode(z).sample.clamp(-1, 1).add(1).div(2))
    return torch.cat(outs)


# --------------------------------------------------------------------------- training
def loss_terms(out: dict, t: dict) -> dict:
    """Cross-entropy per categorical attribute, BCE on glyph bits, L1 on colours and geometry
    (pattern colour only where a pattern exists, geometry only where the placement is known),
    and BCE on the auxiliary subject mask."""
    terms = {k: F.cross_entropy(out[k], t[k]) for k in orc.CATEGORICAL}
    terms["mask"] = F.binary_cross_entropy_with_logits(out["mask"], t["mask"])
    terms["glyph"] = 2 * F.binary_cross_entropy_with_logits(out["glyph"], t["glyph"])
    terms["body"] = 5 * (out["body"] - t["body"]).abs().mean()
    pat = t["has_pattern"]
    terms["pattern_colour"] = 5 * (out["pattern_colour"][pat] - t["pattern_colour"][pat]).abs().mean() if pat.any() else 0
    geo = t["has_geometry"]
    terms["geometry"] = 5 * (out["geometry"][geo] - t["geometry"][geo]).abs().mean() if geo.any() else 0
    return terms


def train(cfg: OracleConfig, vae=None) -> tuple[orc.Oracle, float]:
    torch.manual_seed(cfg.seed)
    model = orc.Oracle(cfg.width, cfg.embed_dim, cfg.attention).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    start = time.time()
    bar = tqdm(range(cfg.steps), desc="oracle", mininterval=5)
    for step in bar:
        images, targets, rng = training_batch(cfg, step)
        x = augment(images, rng, cfg, vae).contiguous(memory_format=torch.channels_last)
        terms = loss_terms(model(x), targets)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", glyph=f"{float(terms['glyph']):.3f}")
    return model.eval().requires_grad_(False), time.time() - start


# --------------------------------------------------------------------------- evaluation
def held_out(cfg: OracleConfig) -> dict:
    """Benchmark identities (never trained on) in random scenes and in the benchmark prompt scenes."""
    groups = {}
    rows = []
    for j, idn in enumerate(tw.benchmark_identities()):
        rows += [(idn, tw.random_scene((cfg.seed + 777, j, k))) for k in range(cfg.eval_scenes)]
    groups["random_scenes"] = rows
    groups["prompt_scenes"] = [(idn, tw.benchmark_scene(spec, 10_000 * (j + 1) + p))
                               for j, idn in enumerate(tw.benchmark_identities())
                               for p, spec in enumerate(tw.BENCHMARK_PROMPTS)]
    return {name: dict(identities=[i for i, _ in rows], scenes=[s for _, s in rows],
                       images=np.stack([tw.render(i, s)[0] for i, s in rows])) for name, rows in groups.items()}


def metrics(readings: dict, identities, scenes) -> dict:
    """Accuracy / error of every reading against the parameter records."""
    truth = [orc.attributes(i, s) for i, s in zip(identities, scenes)]
    m = {f"acc_{k}": float(np.mean(readings[k] == np.array([t[k] for t in truth]))) for k in orc.CATEGORICAL}
    glyph_ok = readings["glyph"] == np.stack([t["glyph"] for t in truth])
    m["glyph_bit_acc"] = float(glyph_ok.mean())
    sizes = np.array([s.size for s in scenes])
    m["glyph_bit_acc_by_size"] = {z: float(glyph_ok[sizes == z].mean()) for z in tw.SIZES if (sizes == z).any()}
    body_err = np.linalg.norm(readings["body"] - np.stack([t["body"] for t in truth]), axis=1)
    pat = np.array([t["pattern"] != "plain" for t in truth])
    pcol_err = np.linalg.norm(readings["pattern_colour"] - np.stack([t["pattern_colour"] for t in truth]), axis=1)[pat]
    m.update(body_colour_err_mean=float(body_err.mean()), body_colour_err_p95=float(np.percentile(body_err, 95)),
             pattern_colour_err_mean=float(pcol_err.mean()),
             pattern_colour_err_p95=float(np.percentile(pcol_err, 95)))
    for k, unit in (("scale", 1.0), ("x", 1.0), ("y", 1.0)):
        m[f"{k}_mae"] = float(np.mean(np.abs(readings[k] - np.array([t[k] for t in truth])) * unit))
    recoloured = [s.recolour for s in scenes]
    m["subject_fidelity"] = float(orc.subject_fidelity(readings, identities, recoloured).mean())
    m["class_accuracy"] = float(orc.class_accuracy(readings, identities).mean())
    m["prompt_fidelity"] = float(orc.prompt_fidelity(readings, scenes, [i.class_name for i in identities]).mean())
    return m


def evaluate(model: orc.Oracle, cfg: OracleConfig, vae=None) -> dict:
    """Metrics per held-out group and condition (clean, vae), plus subject-fidelity chance."""
    results = {}
    for name, g in held_out(cfg).items():
        conditions = {"clean": orc.to_tensor(g["images"])}
        if vae is not None:
            conditions["vae"] = vae_round_trip(vae, conditions["clean"])
        for cond, x in conditions.items():
            readings = model.read(x)
            results[f"{name}/{cond}"] = m = metrics(readings, g["identities"], g["scenes"])
            m["subject_chance"] = float(orc.subject_chance(readings, g["identities"], [s.recolour for s in g["scenes"]]))
    return results


def check(results: dict) -> list[str]:
    """The acceptance thresholds: categorical accuracy >= 0.98, glyph-bit accuracy >= 0.95."""
    failures = []
    for name, m in results.items():
        for k in orc.CATEGORICAL:
            if m[f"acc_{k}"] < 0.98:
                failures.append(f"{name}: {k} accuracy {m[f'acc_{k}']:.3f} < 0.98")
        if m["glyph_bit_acc"] < 0.95:
            failures.append(f"{name}: glyph-bit accuracy {m['glyph_bit_acc']:.3f} < 0.95")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(OracleConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--export", default=None, help="also write weights + manifest.json to this folder")
    args = vars(parser.parse_args())
    export = args.pop("export")
    cfg = OracleConfig(**args)
    torch.set_num_threads(cfg.threads)
    vae = load_vae(cfg.vae)
    if vae is None:
        print(f"no VAE at {cfg.vae!r}: VAE evaluation and augmentation skipped", file=sys.stderr)
    model, seconds = train(cfg, vae)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "oracle.safetensors", steps=cfg.steps)
    results = evaluate(model, cfg, vae)
    failures = check(results)
    print(json.dumps({"eval": results, "failures": failures}, indent=1))
    record = dict(command="OMP_NUM_THREADS=%s python %s" % (os.environ.get("OMP_NUM_THREADS", ""), " ".join(sys.argv)),
                  config=dataclasses.asdict(cfg), steps=cfg.steps, wall_seconds=round(seconds, 1),
                  vae_used=cfg.vae if vae is not None else None, eval=results, failures=failures)
    for folder in filter(None, [out, export]):
        Path(folder).mkdir(parents=True, exist_ok=True)
        if Path(folder) != out:
            model.save(Path(folder) / "oracle.safetensors", steps=cfg.steps)
        write_manifest(folder, **record)
    print(f"trained in {seconds / 60:.1f} min; {'all thresholds met' if not failures else 'THRESHOLDS MISSED'}")


if __name__ == "__main__":
    main()
