"""Train the toy-world oracle (dreamcache_lite/lab/oracle.py) and measure it on held-out subjects.

    OMP_NUM_THREADS=1 python scripts/train_oracle.py --export dreamcache_lite/assets/oracle
    # ~16 min on one CPU core (shared with other work); continue a run with
    #   --init dreamcache_lite/assets/oracle/oracle.safetensors --lr 1e-3 --steps 2000

Training data is rendered on the fly (seeded per step, so a run is reproducible): random training
identities in random scenes plus ~15% references on white. Augmentation (blur, downscale-upscale,
JPEG, colour jitter, noise) and a pool of renders round-tripped through the tiny backbone's VAE
make the oracle read *generated* images, which are never as crisp as renders. Evaluation uses the
30 benchmark identities (never trained on) in random scenes and in the 25 benchmark prompt scenes,
clean and -- when the VAE checkpoint exists -- after a VAE round trip; it prints JSON, stores it in
the manifest and lists any attribute below the bar (categorical >= 0.98, glyph bits >= 0.95).
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

from dreamcache_lite.lab import oracle as orc
from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.manifest import write_manifest

VAE_DEFAULT = "dreamcache_lite/assets/tiny-backbone/vae/diffusion_pytorch_model.safetensors"


@dataclasses.dataclass
class OracleConfig:
    seed: int = 0
    steps: int = 2200
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 16
    embed_dim: int = 256
    crop_jitter: float = 0.6        # px of noise on the crop locations while training the readers
    reference_fraction: float = 0.15
    blur_p: float = 0.6
    blur_max: float = 1.2
    rescale_p: float = 0.3
    jpeg_p: float = 0.2
    jitter: float = 0.03
    noise_p: float = 0.5
    noise_max: float = 0.04
    vae: str = VAE_DEFAULT          # VAE weights for the VAE evaluation and the VAE pool
    vae_pool: int = 1536            # training renders round-tripped through the VAE once, up front
    vae_per_batch: int = 8          # pool images swapped into each batch (0: no VAE training)
    eval_scenes: int = 20           # random scenes per benchmark identity
    threads: int = 1
    init: str = ""                  # start from these oracle weights (continue a run) instead of scratch
    out: str = "runs/oracle"


# --------------------------------------------------------------------------- data
def reference_scene(rng) -> tw.Scene:
    """The placement `toyworld.make_reference` draws (subject alone on white, scale 0.7-1.2, kept
    in frame, scene-flipped half the time), as a Scene: rendering it gives make_reference's image
    without erasing (which could hide the glyph), and its placement is a training label."""
    scale = rng.uniform(0.7, 1.2)
    margin = tw.R_BASE * scale * 1.05
    x, y = rng.uniform(margin, tw.SIZE - margin, 2)
    return tw.Scene(x=float(x), y=float(y), scale=float(scale), flip=bool(rng.random() < 0.5))


def training_batch(cfg: OracleConfig, step: int):
    """uint8 images, their targets and the numpy generator that also drives this step's augmentation:
    random training identities in random scenes, `reference_fraction` of them as references."""
    rng = np.random.default_rng((cfg.seed, step))
    images, masks, attrs = [], [], []
    for _ in range(cfg.batch):
        identity = tw.training_identity(int(rng.integers(tw.N_TRAIN_SEEDS)))
        scene = reference_scene(rng) if rng.random() < cfg.reference_fraction else tw.random_scene(rng)
        image, mask = tw.render(identity, scene)
        images.append(image), masks.append(mask), attrs.append(orc.attributes(identity, scene))
    return np.stack(images), collate(attrs, masks), rng


def collate(attrs: list[dict], masks: list) -> dict:
    """Stack per-image attribute records into training target tensors."""
    t = {k: torch.tensor([names.index(a[k]) for a in attrs]) for k, names in orc.CATEGORICAL.items()}
    for k in ("body", "pattern_colour", "glyph", "pattern_geometry"):
        t[k] = torch.from_numpy(np.stack([a[k] for a in attrs]).astype(np.float32))
    t["has_pattern"] = torch.tensor([a["pattern"] != "plain" for a in attrs])
    t["half_pattern"] = torch.tensor([a["pattern"] in orc.HALF_PATTERNS for a in attrs])
    t["geometry"] = torch.tensor([[a[k] / (1 if k == "scale" else orc.SCALE_NORM) for k in orc.GEOMETRY]
                                  for a in attrs], dtype=torch.float32)
    masks = torch.from_numpy(np.stack(masks)).float()[:, None]
    t["mask"] = F.avg_pool2d(masks, 4)[:, 0]  # subject fraction of each 4x4 cell (16x16 grid)
    return t


def crop_location(t: dict, rng, jitter_px: float) -> torch.Tensor:
    """True (x, y, glyph y, scale), jittered like the trunk's regression error (the same shift for
    subject and glyph), so the readers learn to read crops that are slightly off."""
    g = t["geometry"]
    where = torch.stack([g[:, 1] * orc.SCALE_NORM, g[:, 2] * orc.SCALE_NORM, g[:, 3] * orc.SCALE_NORM, g[:, 0]], 1)
    shift = rng.normal(0, jitter_px, (len(g), 2))
    noise = np.c_[shift, shift[:, 1], where[:, 3].numpy() * rng.normal(0, 0.03, len(g))]
    return where + torch.from_numpy(noise).float()


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


def augment(images: np.ndarray, rng, cfg: OracleConfig) -> torch.Tensor:
    """Degrade renders the way a generator might: JPEG, resolution loss, blur, colour drift, noise."""
    b = len(images)
    images = np.stack([jpeg(im, int(rng.integers(30, 90))) if rng.random() < cfg.jpeg_p else im
                       for im in images])
    x = orc.to_tensor(images)
    for i in np.flatnonzero(rng.random(b) < cfg.rescale_p):
        side = int(rng.integers(28, 57))
        small = F.interpolate(x[i:i + 1], size=side, mode="bilinear", antialias=True, align_corners=False)
        x[i:i + 1] = F.interpolate(small, size=tw.SIZE, mode="bilinear", align_corners=False)
    sigma = rng.uniform(0, cfg.blur_max, b) * (rng.random(b) < cfg.blur_p)
    x = gaussian_blur(x, sigma)
    gain = 1 + rng.uniform(-cfg.jitter, cfg.jitter, (b, 3, 1, 1))
    offset = rng.uniform(-cfg.jitter, cfg.jitter, (b, 3, 1, 1)) / 2
    noise = rng.standard_normal(x.shape)  # (draw order kept: it fixes the shipped weights' data)
    noise *= (rng.uniform(0, cfg.noise_max, b) * (rng.random(b) < cfg.noise_p))[:, None, None, None]
    return (x * torch.from_numpy(gain).float() + torch.from_numpy(offset + noise).float()).clamp(0, 1)


def load_vae(path):
    """The tiny backbone's VAE from a training checkpoint, or None when it does not exist yet."""
    if not path or not Path(path).is_file():
        return None
    from safetensors.torch import load_file

    from dreamcache_lite.lab.tiny_backbone import build_vae
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


def make_vae_pool(cfg: OracleConfig, vae):
    """Training renders after a VAE round trip, with their targets. Generated images are decoded
    by this VAE, which smears patterns and mixes colours; a round trip costs ~25 ms of CPU per
    image, too much for every step, so a pool is made once (from steps the training never uses)
    and `vae_per_batch` of its images join every batch."""
    if vae is None or cfg.vae_per_batch == 0 or cfg.vae_pool == 0:
        return None
    batches = [training_batch(cfg, cfg.steps + i) for i in range(-(-cfg.vae_pool // cfg.batch))]
    images = orc.to_tensor(np.concatenate([b[0] for b in batches])[:cfg.vae_pool])
    targets = {k: torch.cat([b[1][k] for b in batches])[:cfg.vae_pool] for k in batches[0][1]}
    return vae_round_trip(vae, images), targets


def mix_in(x: torch.Tensor, targets: dict, pool, rng, n: int):
    """Replace the first `n` images of a batch (and their targets) by random pool images."""
    if pool is None:
        return x, targets
    pick = torch.from_numpy(rng.integers(0, len(pool[0]), n))
    x = torch.cat([pool[0][pick], x[n:]])
    return x, {k: torch.cat([pool[1][k][pick], v[n:]]) for k, v in targets.items()}


# --------------------------------------------------------------------------- training
def colour_loss(out: dict, t: dict) -> torch.Tensor:
    """L1 on the body colour and (where a pattern exists) the pattern colour; for stripes and
    checks the better of the two assignments (see oracle.HALF_PATTERNS)."""
    def l1(a, b):
        return (a - b).abs().mean(1)
    pat = t["has_pattern"].float()
    direct = l1(out["body"], t["body"]) + pat * l1(out["pattern_colour"], t["pattern_colour"])
    swapped = l1(out["body"], t["pattern_colour"]) + l1(out["pattern_colour"], t["body"])
    return torch.where(t["half_pattern"], torch.minimum(direct, swapped), direct).mean()


def loss_terms(out: dict, t: dict) -> dict:
    """Cross-entropy per categorical attribute, BCE on glyph bits, L1 on colours and geometry
    and BCE on the auxiliary subject mask."""
    terms = {k: F.cross_entropy(out[k], t[k]) for k in orc.CATEGORICAL}
    terms["glyph"] = 2 * F.binary_cross_entropy_with_logits(out["glyph"], t["glyph"])
    terms["colours"] = 5 * colour_loss(out, t)
    terms["geometry"] = 10 * (out["geometry"] - t["geometry"]).abs().mean()
    pattern_err = (out["pattern_geometry"] - t["pattern_geometry"]).abs().mean(1)
    terms["pattern_geometry"] = 2 * (pattern_err * t["has_pattern"].float()).mean()
    terms["mask"] = F.binary_cross_entropy_with_logits(out["mask"], t["mask"])
    return terms


def train(cfg: OracleConfig, vae=None) -> tuple[orc.Oracle, float]:
    start = time.time()
    pool = make_vae_pool(cfg, vae)
    torch.manual_seed(cfg.seed)
    model = orc.Oracle.load(cfg.init).requires_grad_(True) if cfg.init else orc.Oracle(cfg.width, cfg.embed_dim)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    bar = tqdm(range(cfg.steps), desc="oracle", mininterval=5)
    for step in bar:
        images, targets, rng = training_batch(cfg, step)
        x, targets = mix_in(augment(images, rng, cfg), targets, pool, rng, cfg.vae_per_batch)
        x = x.contiguous(memory_format=torch.channels_last)
        terms = loss_terms(model(x, crop_location(targets, rng, cfg.crop_jitter)), targets)
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


def colour_errors(readings: dict, truth: list[dict]) -> dict:
    """RGB L2 errors of the body and pattern colours; for stripes/checks under the assignment
    with the smaller total error (see oracle.HALF_PATTERNS). Also the fraction so swapped."""
    body, pcol = (np.stack([t[k] for t in truth]) for k in ("body", "pattern_colour"))
    rb, rp = readings["body"], readings["pattern_colour"]
    direct = np.linalg.norm(rb - body, axis=1), np.linalg.norm(rp - pcol, axis=1)
    crossed = np.linalg.norm(rb - pcol, axis=1), np.linalg.norm(rp - body, axis=1)
    half = np.array([t["pattern"] in orc.HALF_PATTERNS for t in truth])
    swap = half & (crossed[0] + crossed[1] < direct[0] + direct[1])
    err_b, err_p = np.where(swap, crossed[0], direct[0]), np.where(swap, crossed[1], direct[1])
    err_p = err_p[np.array([t["pattern"] != "plain" for t in truth])]
    return dict(body_colour_err_mean=float(err_b.mean()), body_colour_err_p95=float(np.percentile(err_b, 95)),
                body_colour_err_p99=float(np.percentile(err_b, 99)),
                pattern_colour_err_mean=float(err_p.mean()), pattern_colour_err_p95=float(np.percentile(err_p, 95)),
                colours_swapped=float(swap[half].mean()))


def metrics(readings: dict, identities, scenes) -> dict:
    """Accuracy / error of every reading against the parameter records."""
    truth = [orc.attributes(i, s) for i, s in zip(identities, scenes)]
    m = {f"acc_{k}": float(np.mean(readings[k] == np.array([t[k] for t in truth]))) for k in orc.CATEGORICAL}
    glyph_ok = readings["glyph"] == np.stack([t["glyph"] for t in truth])
    m["glyph_bit_acc"] = float(glyph_ok.mean())
    sizes = np.array([s.size for s in scenes])
    m["glyph_bit_acc_by_size"] = {z: float(glyph_ok[sizes == z].mean()) for z in tw.SIZES if (sizes == z).any()}
    readable = sizes != "tiny"  # see oracle.TINY_UNREADABLE
    pattern_ok = readings["pattern"] == np.array([t["pattern"] for t in truth])
    m["acc_pattern_readable"] = float(pattern_ok[readable].mean())
    m["glyph_bit_acc_readable"] = float(glyph_ok[readable].mean())
    for k in ("class", "accessory", "pattern"):  # small subjects are where reading gets hard
        ok = readings[k] == np.array([t[k] for t in truth])
        m[f"acc_{k}_by_size"] = {z: float(ok[sizes == z].mean()) for z in tw.SIZES if (sizes == z).any()}
    m.update(colour_errors(readings, truth))
    patterned = np.array([t["pattern"] != "plain" for t in truth])
    geo_err = np.abs(readings["pattern_geometry"] - np.stack([t["pattern_geometry"] for t in truth]))[patterned]
    m["pattern_freq_mae"], m["pattern_orientation_mae"] = float(geo_err[:, 0].mean()), float(geo_err[:, 1:].mean())
    parts = orc.subject_parts(readings, identities, [s.recolour for s in scenes], sizes)
    m["subject_parts"] = {k: float(np.nanmean(v)) for k, v in parts.items()}
    for k in orc.GEOMETRY:
        m[f"{k}_mae"] = float(np.mean(np.abs(readings[k] - np.array([t[k] for t in truth]))))
    recoloured = [s.recolour for s in scenes]
    m["subject_fidelity"] = float(orc.subject_fidelity(readings, identities, recoloured, sizes).mean())
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
            recoloured = [s.recolour for s in g["scenes"]]
            m["subject_chance"] = float(orc.subject_chance(readings, g["identities"], recoloured,
                                                           [s.size for s in g["scenes"]]))
    return results


def check(results: dict) -> list[str]:
    """The acceptance thresholds: categorical accuracy and glyph-bit accuracy >= 0.98 on clean
    renders, >= 0.95 after a VAE round trip; pattern type and glyph on readable (non-tiny) subjects,
    as the metric scores them (oracle.TINY_UNREADABLE)."""
    failures = []
    for name, m in results.items():
        bar = 0.95 if name.endswith("/vae") else 0.98
        scores = {f"{k} accuracy": m[f"acc_{k}"] for k in orc.CATEGORICAL if k != "pattern"}
        scores.update({"pattern accuracy (readable)": m["acc_pattern_readable"],
                       "glyph-bit accuracy (readable)": m["glyph_bit_acc_readable"]})
        failures += [f"{name}: {k} {v:.3f} < {bar}" for k, v in scores.items() if v < bar]
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
    model, seconds = train(cfg, vae)  # seconds include making the VAE pool
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "oracle.safetensors", steps=cfg.steps)
    results = evaluate(model, cfg, vae)
    failures = check(results)
    print(json.dumps({"eval": results, "failures": failures}, indent=1))
    record = dict(command="OMP_NUM_THREADS=%s python %s" % (os.environ.get("OMP_NUM_THREADS", ""), " ".join(sys.argv)),
                  config=dataclasses.asdict(cfg), steps=cfg.steps, wall_seconds=round(seconds, 1),
                  vae_used=cfg.vae if vae is not None else None, eval=results, failures=failures,
                  world_version=tw.WORLD_VERSION)
    for folder in filter(None, [out, export]):
        Path(folder).mkdir(parents=True, exist_ok=True)
        if Path(folder) != out:
            model.save(Path(folder) / "oracle.safetensors", steps=cfg.steps)
        write_manifest(folder, **record)
    print(f"trained in {seconds / 60:.1f} min; {'all thresholds met' if not failures else 'THRESHOLDS MISSED'}")


if __name__ == "__main__":
    main()
