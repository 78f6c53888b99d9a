"""The exercises of notebook 04 (personalised generation): each checker says what a wrong answer got wrong."""

from __future__ import annotations

from .engine import Wrong, call_learner, register

exercise = register("04_personalised_generation.py")


@exercise("04.unet_batch", "unet_batch", "function")
def check_unet_batch(answer) -> str:
    """04: a function (n_prompts, num_images, reference) -> rows of the one UNet call per step."""
    cases = [(1, 1, True), (4, 1, True), (4, 1, False), (3, 2, True), (2, 4, False)]
    for n, m, ref in cases:
        got = call_learner(answer, n, m, ref)
        expected = (3 if ref else 2) * n * m
        if got != expected:
            if ref and got == 2 * n * m:
                raise Wrong(f"{n} prompt(s) x {m} image(s) with a reference: {got} rows, but DreamCache's guidance "
                            "has three branches (no reference + negative, reference + prompt, reference + negative).")
            if not ref and got == 3 * n * m:
                raise Wrong("without a reference it is plain classifier-free guidance: two branches.")
            raise Wrong(f"({n} prompts, {m} images, reference={ref}): got {got}, expected {expected}. Every image "
                        "is one row per guidance branch.")
    return ("three rows per image with a reference, two without: DreamCache's per-step batch is 1.5x text-only's, "
            "which is the per-image cost ratio the timing cell measures (minus what the batch hides).")


def pareto_scales(points) -> list:
    """The scales of the (scale, subject, prompt) points that no other point beats on both scores."""
    return [s for s, a, b in points
            if not any(a2 >= a and b2 >= b and (a2 > a or b2 > b) for _, a2, b2 in points)]


@exercise("04.pareto", "pareto_front", "function")
def check_pareto(answer, points=None) -> str:
    """04: a function points -> the reference scales on the Pareto front (subject and prompt fidelity)."""
    synthetic = [(0.0, 0.2, 0.9), (0.5, 0.5, 0.9), (1.0, 0.8, 0.85), (2.0, 0.78, 0.8), (3.0, 0.9, 0.6)]
    for data in (synthetic, points or []):
        got = call_learner(answer, list(data))
        try:
            got = sorted(float(s) for s in got)
        except TypeError as err:
            raise Wrong(f"return a list of scales (numbers), got {type(got).__name__}") from err
        expected = sorted(pareto_scales(data))
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            raise Wrong(f"on {data}: expected the scales {expected}. "
                        + (f"{missing} are not beaten on both scores by any other point. " if missing else "")
                        + (f"{extra} are dominated: another scale is at least as good on both." if extra else ""))
    return ("the front is what the reference scale buys: more subject fidelity costs prompt fidelity; every scale "
            "off the front is worse on both and never worth using.")
