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


# Exercise 3: DreamCache's compositional guidance, then one scheduler step.
def guided_step(branches, latents, t, scheduler, text_scale, ref_scale):
    e_noref_neg, e_ref_prompt, e_ref_neg = branches(latents, t)
    eps = e_noref_neg + text_scale * (e_ref_prompt - e_ref_neg) + ref_scale * (e_ref_neg - e_noref_neg)
    return scheduler.step(eps, t, latents).prev_sample
