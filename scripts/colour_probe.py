"""Where do a subject's colours go after an SDEdit (and with DreamCache), and does the judge read them right?

Scores colours the oracle's way (`oracle.colour_score`, the better body/pattern assignment for
stripes and checks) from two readers: the oracle, and an ideal reader that takes the mean colour of
the true body and pattern regions (the renderer's exact colours, eroded twice so outlines do not
count). Six probes:

    python scripts/colour_probe.py judge --backbone B    # oracle vs ideal reader: true scene, VAE, SDEdit
    python scripts/colour_probe.py scale --backbone B    # ideal reader vs subject scale 0.7 / 1.0 / 1.45
    python scripts/colour_probe.py freq --backbone B     # ideal reader vs pattern frequency x1 / x0.75 / x0.6
    python scripts/colour_probe.py blend --adapters A --ref-scales 1 3 6   # DreamCache's colours, see `blend`
    python scripts/colour_probe.py tokens                # does the cache carry colour? see `tokens`
    python scripts/colour_probe.py x0 --adapters A       # does the denoiser know the colour at each t? see `x0`

`judge` uses the benchmark scenes (6 prompts without recolour per identity); `scale` and `freq`
draw patterned subjects on white, two placements each, with the matching caption; `blend` reads
DreamCache's body colours with the oracle, against text-only's and the true ones.
"""

import argparse
import json
import sys
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.cache import cache_features
from dreamcache_lite.datasets import CopyPairs
from dreamcache_lite.diagnostics import encoded_pairs, reference_rows
from dreamcache_lite.encoders import decode_tensors, encode_references
from dreamcache_lite.images import signed_tensor
from dreamcache_lite.lab import oracle as orc
from dreamcache_lite.lab.evaluation import reference_image
from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.lab.pairs import ToyPairs
from dreamcache_lite.pipeline import DreamCachePipeline

X0_TIMESTEPS = (100, 300, 500, 700, 850, 950)


def region_mean(image, truth, colour):
    """Mean colour of `image` over the true scene's eroded region of exact colour `colour` (None if tiny)."""
    region = np.all(np.abs(truth.astype(int) - (np.asarray(colour) * 255 + 0.5).astype(int)) <= 1, -1)
    region = tw.erode(tw.erode(region))
    return image[region].astype(float).mean(0) / 255 if region.sum() >= 4 else None


def ideal_score(image, truth, idn):
    body, pattern = region_mean(image, truth, idn.body), region_mean(image, truth, idn.pattern_colour)
    if body is None or (idn.pattern != "plain" and pattern is None):
        return None
    return float(np.mean(orc._colour_score(body, idn.body if pattern is None else pattern, idn, False)))


def sdedit(dc, prompts, start, strength):
    """Each start image (B, 3, H, W in [-1, 1]) re-noised to `strength` and denoised with its prompt."""
    return [np.asarray(dc(p, steps=25, text_scale=5.0, seed=k, init_images=start[k:k + 1], strength=strength,
                          progress=False)[0]) for k, p in enumerate(prompts)]


def sharpened_reads(oracle, images, tau):
    """The oracle's colour reads with its colour-attention logits multiplied by `tau`."""
    def colours(self, stem, low, pixels):
        context = F.interpolate(self.colour_context(low), size=pixels.shape[-1], mode="bilinear", align_corners=False)
        attn = ((self.colour_local(stem) + context) * tau).flatten(2).softmax(-1)
        return torch.einsum("bkn,bcn->bkc", attn, pixels.flatten(2))
    shipped, orc.Oracle._colours = orc.Oracle._colours, colours
    try:
        return oracle.read(images)
    finally:
        orc.Oracle._colours = shipped


def judge(dc, identities, strength):
    oracle = orc.Oracle.load()
    specs = [s for s in tw.BENCHMARK_PROMPTS if s.size == "normal" and s.recolour is None][:6]
    sets, owners = {"true": [], "vae": [], f"sdedit {strength}": []}, []
    for idn in identities:
        truth = np.stack([tw.render(idn, tw.benchmark_scene(spec, 0))[0] for spec in specs])
        start = signed_tensor(truth)
        sets["true"] += list(truth)
        sets["vae"] += [np.asarray(i) for i in dc.decode(dc.encode_images(start))]
        sets[f"sdedit {strength}"] += sdedit(dc, [tw.prompt_text(s, idn.class_name) for s in specs], start, strength)
        owners += [(idn, t) for t in truth]
    out = {}
    for name, images in sets.items():
        ideal = [ideal_score(im, t, idn) for im, (idn, t) in zip(images, owners)]
        row = {"ideal": np.mean([x for x in ideal if x is not None]), "images": len(images),
               "unreadable by the ideal reader (region < 4 px)": sum(x is None for x in ideal)}
        for tau in (1, 2, 8):
            reads = sharpened_reads(oracle, np.stack(images), tau)
            key = "oracle" if tau == 1 else f"oracle, attention logits x{tau}"
            row[key] = np.mean([np.mean(orc._colour_score(reads["body"][k], reads["pattern_colour"][k], idn, False))
                                for k, (idn, _) in enumerate(owners)])
        out[name] = {k: round(float(v), 3) if isinstance(v, float) else v for k, v in row.items()}
    return out


def on_white(dc, identities, strength, variants):
    """Ideal-reader colour score per variant: (label, scale, size word, frequency factor)."""
    out = {}
    for label, scale, size, freq in variants:
        scores = []
        for idn in identities:
            if idn.pattern == "plain":
                continue
            idn = replace(idn, freq=idn.freq * freq)
            scenes = [tw.Scene("white", "none", None, size, scale=scale, x=32 + dx, y=36 if size == "normal" else 34,
                               flip=False, seed=j) for j, dx in enumerate((-2, 2))]
            truth = np.stack([tw.render(idn, s)[0] for s in scenes])
            prompt = tw._compose(idn.class_name, size, None, None, "none", "white")
            for image, t in zip(sdedit(dc, [prompt] * len(scenes), signed_tensor(truth), strength), truth):
                score = ideal_score(image, t, idn)
                if score is not None:
                    scores.append(score)
        out[label] = {"colour_score": round(float(np.mean(scores)), 3), "images": len(scores)}
    return out


def body_lab(oracle, images) -> np.ndarray:
    """The oracle's body-colour reads of PIL images, in CIELAB."""
    return orc.lab(oracle.read(np.stack([np.asarray(i) for i in images]))["body"])


def colour_landing(read, text, true) -> dict:
    """How far one DreamCache read went from text-only's read towards the true colour (all CIELAB)."""
    way = true - text
    return dict(share=float((read - text) @ way / max(way @ way, 1e-6)), difference=float(np.linalg.norm(read - true)),
                lightness=float(read[0] - true[0]), chroma=float(np.hypot(*read[1:]) - np.hypot(*true[1:])))


def blend(dc, identities, ref_scales):
    """Where DreamCache puts a subject's body colour between text-only's and the true one.

    For subjects whose body colour is unambiguous (not stripes or checks) and prompts that keep it,
    the oracle's CIELAB reads: `lambda` ("share") = the share of the way from text-only's colour (same
    prompt and seed) to the true colour that the DreamCache image goes (0: text-only's, 1: the truth),
    the colour difference to the truth, and its lightness and chroma errors (DreamCache minus truth)."""
    oracle = orc.Oracle.load()
    specs = [s for s in tw.BENCHMARK_PROMPTS[::3] if s.recolour is None]
    identities = [i for i in identities if i.pattern not in orc.HALF_PATTERNS]
    rows = {scale: [] for scale in ref_scales}
    for idn in identities:
        prompts = [tw.prompt_text(s, idn.class_name) for s in specs]
        text = body_lab(oracle, dc(prompts, progress=False))
        cache = dc.cache_reference(reference_image(idn))
        true = orc.lab(np.asarray(idn.body))
        for scale in ref_scales:
            read = body_lab(oracle, dc(prompts, cache, ref_scale=scale, progress=False))
            rows[scale] += [colour_landing(r, t, true) for r, t in zip(read, text)]
    out = {f"s_ref {scale}": {"lambda median": round(float(np.median([r["share"] for r in landed])), 3),
                              **{f"mean {k}": round(float(np.mean([r[k] for r in landed])), 3)
                                 for k in ("share", "difference", "lightness", "chroma")}, "images": len(landed)}
           for scale, landed in rows.items()}
    return out | {"identities": [f"{i.class_name} ({i.pattern})" for i in identities]}


def _on_white_at_random(identities, seed):
    """One render per identity on white at a random place, scale in [0.9, 1.2], with its mask."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for idn in identities:
        scale = rng.uniform(0.9, 1.2)
        margin = tw.R_BASE * scale * 1.05
        x, y = rng.uniform(margin, tw.SIZE - margin, 2)
        image, mask = tw.render(idn, tw.Scene(x=float(x), y=float(y), scale=float(scale)))
        images.append(image)
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def _cells(images, masks, grid, inside=0.95):
    """Each grid cell's mean RGB in [0, 1] (B, N, 3), and which cells lie (almost) wholly on the subject."""
    rgb = F.adaptive_avg_pool2d(torch.tensor(images).permute(0, 3, 1, 2).float() / 255, grid).flatten(2).transpose(1, 2)
    share = F.adaptive_avg_pool2d(torch.tensor(masks)[:, None].float(), grid).flatten(1)
    return rgb, share >= inside


def tokens(dc, identities, n_train=400):
    """Linear probes: how well a ridge regression reads a subject cell's mean colour from its cached
    token (trained on training identities' references, scored on the held-out ones, CIELAB
    difference), against the same probe on the VAE latent pooled to the layer's grid, and against
    always answering the training cells' mean colour. If the tokens read as well as the latent, the
    cache carries the colour and the adapters' value path (linear in the tokens) can pass it on."""
    from sklearn.linear_model import RidgeCV

    empty_prompt = dc.encode_text([""])
    sets = {}
    for name, ids, seed in (("train", [tw.training_identity(i) for i in range(n_train)], 1), ("test", identities, 2)):
        images, masks = _on_white_at_random(ids, seed)
        # each chunk encoded once, and cached the way `cache_reference` caches it (seed 0 per call)
        latents = [encode_references(dc.pipe, list(images[i:i + 64])) for i in range(0, len(images), 64)]
        caches = [cache_features(dc.pipe.unet, chunk, empty_prompt, timestep=1, scheduler=dc.pipe.scheduler,
                                 generator=torch.Generator().manual_seed(0)) for chunk in latents]
        sets[name] = (images, masks, {n: torch.cat([c.tokens[n] for c in caches]) for n in caches[0].layers},
                      torch.cat(latents))
        grids = caches[0].grids
    out = {}
    for layer, grid in grids.items():
        row = {"grid": list(grid)}
        data = {}
        for name, (images, masks, toks, latents) in sets.items():
            rgb, inside = _cells(images, masks, grid)
            pooled = F.adaptive_avg_pool2d(latents, grid).flatten(2).transpose(1, 2)
            data[name] = {"tokens": toks[layer][inside].numpy(), "latent": pooled[inside].numpy(),
                          "colour": rgb[inside].numpy()}
        train, test = data["train"], data["test"]
        true = test["colour"]
        for what in ("tokens", "latent"):
            probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(train[what], train["colour"])
            read = np.clip(probe.predict(test[what]), 0, 1)
            row[what] = {"R2": round(float(probe.score(test[what], true)), 3),
                         "mean colour difference": _mean_difference(orc.lab(read), orc.lab(true))}
        constant = np.broadcast_to(train["colour"].mean(0), true.shape)
        row["constant's colour difference"] = _mean_difference(orc.lab(constant), orc.lab(true))
        row["held-out cells"] = len(true)
        out[layer] = row
    return out


def _mean_difference(lab_a, lab_b) -> float:
    """The mean CIELAB colour difference between two arrays of colours (..., 3), to 0.1."""
    return round(float(np.linalg.norm(lab_a - lab_b, axis=-1).mean()), 1)


def _subject_colours(images: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """(B, 3): each image's mean CIELAB colour over its subject; images (B, 3, H, W) in [-1, 1]."""
    lab = orc.lab(((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy())
    return np.stack([pixels[inside].mean(0) for pixels, inside in zip(lab, mask)])


@torch.no_grad()
def x0(dc, ref_scales=(), size=32, seed=777):
    """Does the denoiser know the subject's colour at each noise level? On `size` fresh training-world
    pairs (describe_p 0: captions name no colour; a pair source seeded `seed`, which training, seeded 0,
    never draws) and on their copy task (reference = target), each target is noised to t (same noise for
    all three), the UNet predicts the clean latent with the pair's own reference, with none and with
    another pair's, and the decoded prediction's mean CIELAB colour over the target's subject is
    compared with the true scene's (mean colour difference; the score's 0 is 30). Without a reference
    this says where in the schedule the noisy latent stops fixing the colour (the sampler's first
    steps choose it); the rows with one say how much of it the adapters supply there. High t blurs
    the prediction, so the subject's region also mixes with its neighbourhood: compare rows at the
    same t, not a row with zero. Each of `ref_scales` adds a row "own, s_ref S": none + S (own - none),
    the prediction that reference guidance at S samples from (text guidance aside)."""
    pipe, adapters = dc.pipe, dc.adapters
    out = {}
    pairs = ToyPairs(seed, describe_p=0.0)
    for kind, source in (("pairs", pairs), ("copy", CopyPairs(pairs))):
        schedule, gen, text, target, cache, batch = encoded_pairs(pipe, adapters, source, size, seed=5)
        mask = batch["mask"][:, 0].numpy() > 0.5
        true = _subject_colours(batch["target"], mask)
        rows = {}
        for t in X0_TIMESTEPS:
            noise = torch.randn(target.shape, generator=gen)
            steps = torch.full((size,), t)
            noisy, alpha_bar = schedule.add_noise(target, noise, steps), schedule.alphas_cumprod[t]
            clean = {}
            for name, refs in reference_rows(size):
                with adapters.reference(cache, rows=refs):
                    eps = pipe.unet(noisy, steps, encoder_hidden_states=text).sample
                clean[name] = (noisy - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
            for scale in ref_scales:  # the sampler's reference guidance, linear in eps and so in the clean latent
                clean[f"own, s_ref {scale:g}"] = clean["none"] + scale * (clean["own"] - clean["none"])
            rows[f"t {t}"] = {name: _mean_difference(_subject_colours(decode_tensors(pipe, latent), mask), true)
                              for name, latent in clean.items()}
        out[kind] = rows
    return out | {"pairs per row": size}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=["judge", "scale", "freq", "blend", "tokens", "x0"])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--strength", type=float, default=0.3)
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapters", help="blend, x0: the adapters file")
    parser.add_argument("--ref-scales", type=float, nargs="+", default=[1.0, 3.0, 6.0],
                        help="blend: the reference scales to sample at; x0: guided rows besides own / none / shuffled")
    args = parser.parse_args()
    if args.probe in ("blend", "x0") and not args.adapters:
        parser.error(f"{args.probe} needs --adapters")
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.backbone)
    dc = DreamCachePipeline(pipe, DreamCacheAdapters.from_file(pipe.unet, args.adapters) if args.adapters else None)
    identities = tw.benchmark_identities()[:args.identities]
    if args.probe == "blend":
        result = blend(dc, identities, args.ref_scales)
    elif args.probe == "tokens":
        result = tokens(dc, identities)
    elif args.probe == "x0":
        result = x0(dc, args.ref_scales)
    elif args.probe == "judge":
        result = judge(dc, identities, args.strength)
    elif args.probe == "scale":
        result = on_white(dc, identities, args.strength,
                          [(f"scale {s}", s, w, 1.0) for s, w in ((0.7, "normal"), (1.0, "normal"), (1.45, "giant"))])
    else:
        result = on_white(dc, identities, args.strength,
                          [(f"frequency x{f}", 1.0, "normal", f) for f in (1.0, 0.75, 0.6)])
    print(json.dumps({"command": "python " + " ".join(sys.argv), "results": result}, indent=1))


if __name__ == "__main__":
    main()
