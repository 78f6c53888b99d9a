"""Reference solutions for notebook 00 (quick tour). Try the exercises first!"""


# Exercise 1: one UNet call caches the reference; each denoising step is one batched call over the
# three guidance branches.
def unet_calls(steps):
    return 1 + steps


# Exercise 2: the paper's compositional guidance.
def guided_eps(e_noref_neg, e_ref_prompt, e_ref_neg, s_txt, s_ref):
    return e_noref_neg + s_txt * (e_ref_prompt - e_ref_neg) + s_ref * (e_ref_neg - e_noref_neg)
