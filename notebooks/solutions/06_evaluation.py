"""Reference solutions for notebook 06 (evaluation and baselines). Try the exercises first!"""


# Exercise 1: DreamBooth stores a UNet per subject; DreamCache shares its adapters and adds a cache per subject.
def extra_bytes(method, n_subjects, unet_params, adapter_params, cache_bytes):
    if method == "finetune":
        return n_subjects * unet_params * 2
    if method == "dreamcache":
        return adapter_params * 2 + n_subjects * cache_bytes
    return 0


# Exercise 2: the first n with setup_a + n * per_image_a <= setup_b + n * per_image_b.
def break_even(setup_a, per_image_a, setup_b, per_image_b):
    if setup_a <= setup_b and per_image_a <= per_image_b:
        return 1
    if per_image_a >= per_image_b:
        return 1 if setup_a + per_image_a <= setup_b + per_image_b else None
    n = max(1, int((setup_a - setup_b) // (per_image_b - per_image_a)))
    while setup_a + n * per_image_a > setup_b + n * per_image_b:
        n += 1
    while n > 1 and setup_a + (n - 1) * per_image_a <= setup_b + (n - 1) * per_image_b:
        n -= 1
    return n
