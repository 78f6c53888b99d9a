"""Measure what cached reference features carry: linear probes, retrieval, PCA colours.

Notebook 02 asks *which layers and caching timesteps carry the subject's identity*: cache many
augmented references of a few identities, pool each layer's tokens to one vector per reference,
then ask scikit-learn two questions per (layer, timestep):

- :func:`identity_probe` -- can a linear classifier tell the identities apart on references it was
  not trained on (cross-validated accuracy)?
- :func:`retrieval_accuracy` -- is a reference's nearest neighbour (another reference, never
  itself) the same identity (top-1 accuracy)?

Notebook 05 uses :func:`pca_rgb` to paint a layer's tokens as an image.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ..cache import cache_features
from ..encoders import encode_references, encode_text
from ..layers import list_transformers, select_layers


# -- features --------------------------------------------------------------------------------------
def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int], pool="mean"):
    """Pool (N, H*W, C) tokens to one vector per reference.

    pool: "mean" -> (N, C), the average token (position-invariant);
          an int g -> (N, g*g*C), the average over each cell of a g x g grid (keeps coarse layout);
          None -> the tokens themselves, (N, H*W, C).
    """
    if pool is None:
        return tokens
    if pool == "mean":
        return tokens.mean(1)
    if isinstance(pool, int) and pool >= 1:
        n, _, c = tokens.shape
        maps = tokens.transpose(1, 2).reshape(n, c, *grid)
        return torch.nn.functional.adaptive_avg_pool2d(maps, pool).flatten(1)
    raise ValueError(f"pool must be 'mean', a positive int or None, got {pool!r}")


@torch.no_grad()
def reference_features(pipe, images=None, layers="all", timestep: int = 1, *, pool="mean", latents=None,
                       batch_size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Cache every reference at `timestep` and pool each layer's tokens: layer name -> (N, D) array.

    images: the reference pictures (or pass their `latents` from `encoders.encode_references` to
        avoid re-encoding them for every timestep).
    layers: a preset ("all", "paper", ...) or a list of transformer names.
    The noise is drawn per batch from `seed` (the same call gives the same features) and is the
    same draw at every timestep, so two timesteps differ only in the noise *level*.
    """
    if latents is None:
        latents = encode_references(pipe, images, batch_size=batch_size)
    unet = pipe.unet
    latents = latents.to(unet.device, unet.dtype)
    text = encode_text(pipe, [""])  # DreamCache caches with the empty prompt
    names = [i.name for i in select_layers(unet, layers)]
    parts: dict[str, list] = {n: [] for n in names}
    for b, start in enumerate(range(0, len(latents), batch_size)):
        cache = cache_features(unet, latents[start:start + batch_size], text, layers=names, timestep=timestep,
                               scheduler=pipe.scheduler, generator=torch.Generator().manual_seed(seed + b))
        for n in names:
            parts[n].append(pool_tokens(cache.tokens[n].float(), cache.grids[n], pool).cpu())
    return {n: torch.cat(p).numpy() for n, p in parts.items()}


# -- measurements ----------------------------------------------------------------------------------
def identity_probe(features: np.ndarray, labels, groups=None, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear classifier (standardise + logistic regression).

    Without `groups` the folds are stratified by label: every identity is seen in training, and the
    probe is scored on *other augmentations* of it. With `groups` (e.g. the identity of each
    reference while `labels` is an attribute such as the pattern type) whole groups are held out:
    the probe must generalise to subjects it never saw.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.asarray(features), np.asarray(labels)
    if groups is None:
        smallest = np.unique(labels, return_counts=True)[1].min()
        if smallest < 2:
            raise ValueError("every label needs at least 2 samples for a cross-validated probe")
        splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits=min(folds, len(np.unique(groups))))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, features, labels, groups=groups, cv=splitter)
    return float(scores.mean())


def distance_matrix(features: np.ndarray) -> np.ndarray:
    """Cosine distances (N, N) between references after removing the mean feature.

    Centring matters: cached features share a large common component (every reference is a
    subject on white), which would make all cosines close to 1.
    """
    x = np.asarray(features, np.float64)
    x = x - x.mean(0, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - x @ x.T, 0.0, 2.0)


def top1_from_distances(dist: np.ndarray, labels) -> float:
    """Top-1 retrieval accuracy: the nearest *other* sample has the same label (leave-one-out)."""
    dist = np.array(dist, np.float64)  # a copy: the caller's matrix is not touched
    np.fill_diagonal(dist, np.inf)
    labels = np.asarray(labels)
    return float((labels[dist.argmin(1)] == labels).mean())


def retrieval_accuracy(features: np.ndarray, labels) -> float:
    """Top-1 nearest-neighbour retrieval of the same label across augmentations (cosine, centred)."""
    return top1_from_distances(distance_matrix(features), labels)


def chance_level(labels, kind: str = "probe") -> float:
    """What guessing scores: the majority-class rate ("probe") or the chance that a random
    *other* sample shares the label ("retrieval")."""
    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    if kind == "probe":
        return float(counts.max() / len(labels))
    if kind == "retrieval":
        return float((counts * (counts - 1)).sum() / (len(labels) * (len(labels) - 1)))
    raise ValueError(f"kind must be 'probe' or 'retrieval', got {kind!r}")


def layer_timestep_sweep(pipe, images, labels, layers=None, timesteps=(1, 150, 300, 600), *, pool="mean",
                         seed: int = 0, verbose: bool = True) -> dict:
    """Probe and retrieval accuracy for every (layer, caching timestep).

    Returns {"layers", "timesteps", "probe": (L, T) array, "retrieval": (L, T) array, "seconds"}.
    The references are VAE-encoded once; each timestep is one UNet pass over all of them.
    """
    layers = layers or [info.name for info in list_transformers(pipe.unet)]
    start = time.perf_counter()
    latents = encode_references(pipe, images)
    probe = np.zeros((len(layers), len(timesteps)))
    retrieval = np.zeros_like(probe)
    for j, t in enumerate(timesteps):
        feats = reference_features(pipe, layers=layers, timestep=t, pool=pool, latents=latents, seed=seed)
        for i, name in enumerate(layers):
            probe[i, j] = identity_probe(feats[name], labels, seed=seed)
            retrieval[i, j] = retrieval_accuracy(feats[name], labels)
        if verbose:
            print(f"t = {t:4d}: best probe {probe[:, j].max():.2f}, best retrieval {retrieval[:, j].max():.2f} "
                  f"({time.perf_counter() - start:.0f} s)")
    return {"layers": list(layers), "timesteps": list(timesteps), "probe": probe, "retrieval": retrieval,
            "seconds": time.perf_counter() - start}


# -- pictures --------------------------------------------------------------------------------------
def pca_rgb(tokens, grid: tuple[int, int], low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Paint tokens with their first three principal components as R, G, B.

    tokens: (H*W, C) for one reference or (B, H*W, C) for several (one PCA fitted on all of them,
        so colours are comparable across references). Tensors or arrays.
    Returns float32 images in [0, 1]: (H, W, 3), or (B, H, W, 3). All three components share one
    scale -- the widest `low`..`high` percentile range among them spans [0, 1] -- so a channel's
    colour swing shows how much that component varies (a noise-level component stays mid-gray).
    Signs are fixed (each component's loadings sum to a positive number), so the same features
    always get the same colours.
    """
    x = tokens.detach().float().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens, np.float32)
    single = x.ndim == 2
    x = x[None] if single else x
    b, n, c = x.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
    flat = x.reshape(-1, c).astype(np.float64)
    flat = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    basis = vt[:3]
    basis = basis * np.where(basis.sum(1, keepdims=True) < 0, -1.0, 1.0)
    proj = flat @ basis.T
    if proj.shape[1] < 3:  # fewer than 3 channels: pad with zeros (painted mid-gray)
        proj = np.pad(proj, ((0, 0), (0, 3 - proj.shape[1])))
    lo, hi = np.percentile(proj, low, axis=0), np.percentile(proj, high, axis=0)
    spread = max(float((hi - lo).max()), 1e-12)
    rgb = np.clip(0.5 + (proj - (lo + hi) / 2) / spread, 0, 1)
    images = rgb.reshape(b, *grid, 3).astype(np.float32)
    return images[0] if single else images


def heatmap(ax, values: np.ndarray, row_labels, col_labels, *, vmin=0.0, vmax=1.0, cmap="viridis",
            fmt: str = "{:.2f}", title: str | None = None):
    """Annotated heatmap on a matplotlib axis (rows: layers, columns: timesteps); returns the image."""
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    for (i, j), v in np.ndenumerate(values):
        shade = (v - vmin) / ((vmax - vmin) or 1)
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                color="black" if shade > 0.6 else "white")
    if title:
        ax.set_title(title)
    return image
