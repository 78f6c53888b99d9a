"""Reference solutions for notebook 03 (adapter training). Try the exercises first!"""

import torch
import torch.nn.functional as F


# Exercise 1: LayerNorm 2d + to_q/to_k/to_v 3d^2 (no bias) + to_out d^2 + d + linear_cat 2d^2 + d.
def params_per_block(d):
    return 6 * d * d + 4 * d


# Exercise 2: W = [I | 0], b = 0: linear_cat([s; m]) = s exactly, whatever m is.
largest_change = 0.0

# Exercise 3: the "without reference" side of reference guidance (classifier-free guidance's trick).
dropout_answer = "c"


# Exercise 4: the adapter's forward -- queries from LayerNorm_mem(x), keys/values from the raw cache,
# scaled dot-product attention per head, to_out, then linear_cat([s ; m]).
def adapter_forward(x, s, cache, weights, heads):
    d = x.shape[-1]
    q = F.linear(F.layer_norm(x, (d,), weights["norm_mem.weight"], weights["norm_mem.bias"]),
                 weights["attn_mem.to_q.weight"])
    k = F.linear(cache, weights["attn_mem.to_k.weight"])
    v = F.linear(cache, weights["attn_mem.to_v.weight"])

    def split(t):  # (B, N, d) -> (B, heads, N, d / heads)
        return t.unflatten(-1, (heads, -1)).transpose(1, 2)

    m = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).flatten(2)
    m = F.linear(m, weights["attn_mem.to_out.0.weight"], weights["attn_mem.to_out.0.bias"])
    return F.linear(torch.cat([s, m], dim=-1), weights["linear_cat.weight"], weights["linear_cat.bias"])


# Exercise 5: noise with the schedule, predict with the reference where it is kept, MSE to the noise.
def denoising_loss(predict_noise, latents, noise, t, scheduler, drop_reference):
    noisy = scheduler.add_noise(latents, noise, t)
    return F.mse_loss(predict_noise(noisy, t, ~drop_reference), noise)
