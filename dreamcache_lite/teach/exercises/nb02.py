"""The exercises of notebook 02 (layer and timestep selection): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import numpy as np

from .engine import Wrong, as_letter, as_number, call_learner, register

exercise = register("02_layer_timestep_selection.py")


@exercise("02.layer_guess", "layer_guess")
def check_layer_guess(answer, scores: dict) -> str:
    """02: a prediction (a layer name) of which layer carries most identity; scores: layer -> accuracy."""
    if not isinstance(answer, str):
        raise Wrong(f"give a layer name (a string), one of {list(scores)}")
    if answer not in scores:
        raise Wrong(f"{answer!r} is not one of the sweep's layers: {list(scores)}")
    ranking = sorted(scores, key=scores.get, reverse=True)
    rank, best = ranking.index(answer) + 1, ranking[0]
    verdict = "spot on" if rank == 1 else ("close" if rank <= 3 else "a surprise, then")
    return (f"{answer} ranks {rank} of {len(ranking)} (accuracy {scores[answer]:.2f}; best {best} "
            f"{scores[best]:.2f}): {verdict}.")


@exercise("02.top1_retrieval", "top1_retrieval", "function")
def check_top1_retrieval(answer, dist, labels) -> str:
    """02: a function (dist, labels) -> top-1 retrieval accuracy from a distance matrix."""
    from ..analysis import top1_from_distances

    def run(d, y):
        value = call_learner(answer, np.array(d, dtype=np.float64), np.array(y))
        return as_number(value, "the retrieval accuracy")

    # four points on a line, labels [0, 0, 1, 1]; nearest others: 1, 1.8, 1, 1.8 -> two hits of four
    pos = np.array([0.0, 1.0, 1.8, 4.0])
    toy_dist, toy_labels = np.abs(pos[:, None] - pos[None]), np.array([0, 0, 1, 1])
    right = top1_from_distances(toy_dist, toy_labels)  # 0.5 (self-matches: 1.0, farthest: 0.25)
    got = run(toy_dist, toy_labels)
    if got == 1.0:
        raise Wrong("each sample found *itself* (distance 0 on the diagonal): exclude it, e.g. set the "
                    "diagonal to +inf before taking the nearest neighbour.")
    if got == 0.25:
        raise Wrong("you took the *farthest* neighbour: retrieval picks the smallest distance (argmin).")
    if got == right * len(toy_labels):
        raise Wrong("return a fraction between 0 and 1 (mean of hits), not the number of hits.")
    if not np.isclose(got, right):
        raise Wrong(f"on 4 points at 0, 1, 1.8, 4 with labels [0, 0, 1, 1] your function gives {got}; the "
                    f"nearest *other* points are 1, 1.8, 1, 1.8 (2 hits of 4), so the answer is {right}.")
    dist = np.asarray(dist, np.float64)
    expected = top1_from_distances(dist, labels)
    got = run(dist, labels)
    if not np.isclose(got, expected, atol=1e-9):
        raise Wrong(f"right on the toy case but {got:.4f} on the notebook's features, expected {expected:.4f}: "
                    "did you change `dist` in place, or break ties differently?")
    return f"top-1 retrieval {expected:.3f} (chance is about {_retrieval_chance(labels):.3f})."


def _retrieval_chance(labels) -> float:
    from ..analysis import chance_level
    return chance_level(labels, "retrieval")


TREND_CHOICES = {
    "a": "identity *drops* as the caching timestep grows",
    "b": "identity *rises* as the caching timestep grows",
    "c": "the caching timestep barely matters (changes under 0.03)",
}


def measured_trend(scores: np.ndarray, timesteps) -> tuple[str, np.ndarray]:
    """Which TREND_CHOICES letter the sweep supports: mean over layers, last vs first timestep."""
    mean = np.asarray(scores).mean(0)
    change = mean[np.argmax(timesteps)] - mean[np.argmin(timesteps)]
    return ("a" if change < -0.03 else "b" if change > 0.03 else "c"), mean


@exercise("02.timestep_trend", "timestep_trend")
def check_timestep_trend(answer, scores, timesteps) -> str:
    """02: which statement (a/b/c) matches *this* sweep (scores: layers x timesteps)."""
    answer = as_letter(answer, TREND_CHOICES)
    letter, mean = measured_trend(scores, timesteps)
    row = ", ".join(f"t={t}: {m:.2f}" for t, m in zip(timesteps, mean))
    if answer != letter:
        raise Wrong(f"look at the heatmap's columns again: averaged over layers the sweep gives {row}, "
                    f"which says {letter}) {TREND_CHOICES[letter]}.")
    why = {"a": "noise at larger t hides exactly the fine detail (exact colour, pattern, glyph) that makes "
                "an identity; the UNet's features then describe a blurrier subject -- why the paper caches at t = 1.",
           "b": "unexpected for a trained backbone; the paper chose t = 1. Check the folds' spread before "
                "believing it.",
           "c": "over this range the noise is not yet strong enough to erase what the probe reads."}[letter]
    return f"averaged over layers: {row}. {why}"
