"""The exercises of notebook 06 (evaluation and baselines): each checker says what a wrong answer got wrong."""

from __future__ import annotations

from .engine import Wrong, call_learner, register

exercise = register("06_evaluation.py")


@exercise("06.storage", "extra_bytes", "function")
def check_storage(answer) -> str:
    """06: a function (method, n_subjects, unet_params, adapter_params, cache_bytes) -> extra fp16 bytes stored."""
    unet_params, adapter_params, cache_bytes = 860_000_000, 25_000_000, 6_062_080
    n = 30
    expected = {"finetune": n * unet_params * 2, "dreamcache": adapter_params * 2 + n * cache_bytes,
                "text": 0, "reference-only": 0}
    for method, value in expected.items():
        got = call_learner(answer, method, n, unet_params, adapter_params, cache_bytes)
        if got != value:
            hint = {"finetune": "DreamBooth keeps a fine-tuned copy of every UNet weight *per subject* (2 bytes "
                                "each in fp16).",
                    "dreamcache": "the adapters are shared by every subject (stored once, 2 bytes per parameter); "
                                  "each subject adds only its cache.",
                    }.get(method, "this method stores nothing per subject.")
            raise Wrong(f"{method}, {n} subjects: got {got}, expected {value}. {hint}")
    ratio = expected["finetune"] / expected["dreamcache"]
    return (f"for 30 SD-sized subjects, DreamBooth stores {expected['finetune'] / 1e9:.1f} GB and DreamCache "
            f"{expected['dreamcache'] / 1e6:.0f} MB: {ratio:.0f}x less.")


def break_even_images(setup_a, per_image_a, setup_b, per_image_b, limit: int = 10**6):
    """Smallest number of images per subject from which method a costs no more than method b."""
    for n in range(1, limit + 1):
        if setup_a + n * per_image_a <= setup_b + n * per_image_b:
            return n
    return None


@exercise("06.break_even", "break_even", "function")
def check_break_even(answer) -> str:
    """06: a function (setup_a, per_image_a, setup_b, per_image_b) -> images until a is no dearer than b."""
    cases = [(0.1, 1.0, 0.0, 2.0), (10.0, 1.0, 0.0, 2.0), (0.0, 1.0, 5.0, 1.0), (5.0, 2.0, 0.0, 1.0),
             (30.0, 0.3, 0.0, 0.6)]
    for case in cases:
        got, expected = call_learner(answer, *case), break_even_images(*case)
        if got != expected:
            raise Wrong(f"setup/per-image a = {case[:2]}, b = {case[2:]}: got {got}, expected {expected}. Total "
                        "cost is setup + n x per-image; find the first n where a's total <= b's (None if a "
                        "never catches up).")
    return ("a one-off set-up pays for itself after setup difference / per-image saving images: DreamCache's "
            "cache is so cheap that it beats reference-only from the first image.")
