"""Reference solutions for notebook 03 (adapter training). Try the exercises first!"""


# Exercise 1: LayerNorm 2d + to_q/to_k/to_v 3d^2 (no bias) + to_out d^2 + d + linear_cat 2d^2 + d.
def params_per_block(d):
    return 6 * d * d + 4 * d


# Exercise 2: W = [I | 0], b = 0: linear_cat([s; m]) = s exactly, whatever m is.
largest_change = 0.0

# Exercise 3: the "without reference" side of reference guidance (classifier-free guidance's trick).
dropout_answer = "b"
