"""Reference solutions for notebook 04 (personalised generation). Try the exercises first!"""


# Exercise 1: one row per image and guidance branch; three branches with a reference, two without.
def unet_batch(n_prompts, num_images, reference):
    return (3 if reference else 2) * n_prompts * num_images


# Exercise 2: keep a point unless another is at least as good on both scores and better on one.
def pareto_front(points):
    front = []
    for scale, subject, prompt in points:
        beaten = any(s2 >= subject and p2 >= prompt and (s2 > subject or p2 > prompt) for _, s2, p2 in points)
        if not beaten:
            front.append(scale)
    return front
