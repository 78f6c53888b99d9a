"""The exercises of notebook 04 (personalised generation): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import torch

from .engine import Wrong, call_learner, known_mistake, register

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


def _guided(branches, latents, t, scheduler, text_scale, ref_scale, *, kind="dreamcache", output="prev"):
    e0, e1, e2 = branches(latents, t)  # (no reference + negative, reference + prompt, reference + negative)
    eps = {"dreamcache": e0 + text_scale * (e1 - e2) + ref_scale * (e2 - e0),
           "cfg": e0 + text_scale * (e1 - e0),
           "swapped": e0 + ref_scale * (e1 - e2) + text_scale * (e2 - e0),
           "base": e2 + text_scale * (e1 - e2) + ref_scale * (e2 - e0)}[kind]
    if output == "eps":
        return eps
    step = scheduler.step(eps, t, latents)
    return step.pred_original_sample if output == "x0" else step.prev_sample


GUIDANCE_MISTAKES = (
    (dict(kind="cfg"), "that is plain classifier-free guidance e0 + s_txt (e1 - e0): DreamCache's guidance has a "
                       "text term s_txt (e(ref, prompt) - e(ref, neg)) and a reference term s_ref (e(ref, neg) - "
                       "e(noref, neg))."),
    (dict(kind="swapped"), "the scales are swapped: text_scale multiplies (e(ref, prompt) - e(ref, neg)), "
                           "ref_scale multiplies (e(ref, neg) - e(noref, neg))."),
    (dict(kind="base"), "start from e(noref, neg), the prediction with neither prompt nor reference."),
    (dict(output="eps"), "you returned the guided noise: hand it to scheduler.step(eps, t, latents) and return "
                         "its .prev_sample, the latents of the next step."),
    (dict(output="x0"), "return .prev_sample (the latents at the next timestep), not .pred_original_sample "
                        "(the scheduler's guess of the clean latents)."),
)


def _guidance_loop(step, seed: int, steps: int = 6, text_scale: float = 5.0, ref_scale: float = 1.5, **mistake):
    from diffusers import DDIMScheduler

    gen = torch.Generator().manual_seed(seed)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(steps)
    weights = torch.randn(3, 1, 4, 1, 1, generator=gen)
    shifts = torch.randn(3, 1, 4, 8, 8, generator=gen)

    def branches(x, t):  # three fixed stand-ins for the UNet's branches
        return tuple(0.5 * x * w + s * (t / 1000) for w, s in zip(weights, shifts))

    latents = torch.randn(1, 4, 8, 8, generator=gen)
    for t in scheduler.timesteps:
        latents = step(branches, latents, t, scheduler, text_scale, ref_scale, **mistake)
        if not isinstance(latents, torch.Tensor):
            raise Wrong(f"return the next latents as a tensor, got {type(latents).__name__}")
    return latents


@exercise("04.guided_step", "guided_step", "function")
def check_guided_step(answer) -> str:
    """04: a function (branches, latents, t, scheduler, text_scale, ref_scale) -> the latents after one step."""
    def learner(*args):
        return call_learner(answer, *args)

    for seed in (0, 1):
        got, expected = _guidance_loop(learner, seed), _guidance_loop(_guided, seed)
        if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            continue
        known_mistake(GUIDANCE_MISTAKES, lambda mistake: got.shape == expected.shape and torch.allclose(
            got, _guidance_loop(_guided, seed, **mistake), atol=1e-4, rtol=1e-4))
        raise Wrong("after a 6-step DDIM loop your latents differ from DreamCache's: guide with "
                    "e0 + s_txt (e1 - e2) + s_ref (e2 - e0), then return scheduler.step(eps, t, latents).prev_sample.")
    return ("a 6-step DDIM loop built on your step lands exactly where DreamCachePipeline's does; the pipeline "
            "gets the three branches from one batched UNet call per step.")
