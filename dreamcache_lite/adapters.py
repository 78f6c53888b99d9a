"""DreamCache conditioning adapters, installed as diffusers attention processors.

Inside each selected transformer block the frozen update `x = x + attn1(norm1(x))` becomes

    s = attn1(norm1(x))                          # the frozen self-attention, untouched
    m = RefAttn(norm_mem(x), keys/values = cache)  # small trained attention to the cached tokens
    x = x + linear_cat([s ; m])                  # 2d -> d

`injection="sum"` is the paper's spatial-sum ablation: `x = x + s + m`, no `linear_cat`.

`attention="cosine"` is this package's option (not the paper's): queries and keys are centred
per channel and L2-normalised per head (the cache tokens LayerNorm'd first), the logits are their
cosine times a learned scale, and `to_q` = I, `to_k` = the transformer's `proj_in` at the start, so
at step 0 each query already attends to the cached tokens that look like it. It exists because the
paper's attention, on the tiny backbone, did not learn where to look even when the reference was
the target itself: the cache holds the transformer's input and the queries come after `proj_in`,
two bases that random projections do not connect.

`attention="positional"` is another option of this package: the paper's scaled dot product plus a
learned relative-position bias per head, `-w * |p_query - p_token|^2` with cell centres `p` in the
unit square (`w = exp(log_w)`, starting at POSITION_WEIGHT), so each query starts out leaning towards
the reference's tokens at its own place and training decides how much (w -> 0: the paper's
attention). It exists because content alone did not let the adapters find their own tokens even
when the reference was the target itself (the copy task in figures/README.md).

`coarse_to_fine=S` (another option of this package, off by default) lets each adapter narrow its
search with the attention of the adapter one octave coarser that ran before it in the same UNet call
(an 8x8 layer for a 16x16 one): its logits get `S * log(P[parent(query), parent(token)] / 4 + eps)`,
where `P` is the coarse adapter's head-averaged attention, detached. A uniform `P` adds a constant
(no change). It exists because the toy's 16x16 layers find the true reference cell or a neighbour for
only 0.64-0.82 of cells while the 8x8 layer finds it for all of them.

The adapter replaces `attn1`'s processor (keeping the original one to compute `s`) and a
forward pre-hook on the block hands it the raw block input `x`. All adapters read the active
cache from one shared `ReferenceContext`, which also says which batch rows use which reference,
so one batched UNet call can serve rows with and rows without the reference.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_fingerprint
from .context import ReferenceContext
from .files import load_tensors, save_tensors
from .layers import select_layers

ADAPTER_KIND = "dreamcache-lite/adapters"
INITS = ("identity", "paper")
INJECTIONS = ("concat", "sum")  # the paper's spatial concat (chosen) and spatial sum (an ablation)
# the paper's scaled dot product; cosine similarity and a relative-position bias (this package's options)
ATTENTIONS = ("paper", "cosine", "positional")
COSINE_SCALE = 10.0               # initial logit scale of cosine attention (logits in [-10, 10])
POSITION_WEIGHT = 1024.0          # initial w of positional attention: a neighbour one 16x16 cell away -4
PRIOR_FLOOR = 1e-4                # coarse-to-fine: a fine token whose parent got no attention keeps log(1e-4)


class ReferenceAttention(nn.Module):
    """Multi-head attention: queries from the block, keys/values from the cached tokens.

    Parameter names follow diffusers' `Attention` (to_q/to_k/to_v without bias, to_out.0 with bias).
    """

    def __init__(self, dim: int, cache_dim: int, heads: int, attention: str = "paper"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown reference attention {attention!r}; valid: {', '.join(ATTENTIONS)}")
        self.heads, self.attention = heads, attention
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(cache_dim, dim, bias=False)
        self.to_v = nn.Linear(cache_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        if attention == "cosine":
            self.norm_cache = nn.LayerNorm(cache_dim)
            self.logit_scale = nn.Parameter(torch.tensor(float(COSINE_SCALE)).log())
        if attention == "positional":
            self.log_position_weight = nn.Parameter(torch.full((heads,), POSITION_WEIGHT).log())

    @torch.no_grad()
    def align_keys(self, proj_in: nn.Module) -> None:
        """Cosine attention's start: queries are the block's tokens as they are (`to_q` = I) and keys
        the cached tokens mapped the way the block maps its input (`to_k` = the transformer's
        `proj_in`), so query i meets the cached token that looks like it from step 0. (The cache
        holds the transformer's input, before `proj_in`; the adapter's queries come after it.)"""
        weight = proj_in.weight.reshape(proj_in.weight.shape[0], -1)
        if weight.shape != self.to_k.weight.shape:
            return  # a projection of another shape: keep the random start
        self.to_q.weight.copy_(torch.eye(self.to_q.weight.shape[0]))
        self.to_k.weight.copy_(weight)

    def keys_values(self, cache_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project the cache once; the result can be reused for every denoising step."""
        values = self._split(self.to_v(cache_tokens))
        if self.attention == "cosine":
            return _centred_unit(self._split(self.to_k(self.norm_cache(cache_tokens)))), values
        return self._split(self.to_k(cache_tokens)), values

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, return_weights: bool = False,
                grid: tuple[int, int] | None = None, prior: torch.Tensor | None = None):
        """`grid`: the (h, w) of both the queries and the cached tokens (positional attention needs it);
        `prior`: an optional (batch, queries, tokens) bias added to every head's logits (coarse-to-fine)."""
        query = self._split(self.to_q(x))
        scale = query.shape[-1] ** -0.5
        if self.attention == "cosine":  # the learned scale rides on the queries: SDPA takes a float
            query, scale = _centred_unit(query) * self.logit_scale.exp(), 1.0
        bias = None
        if self.attention == "positional":
            bias = -self.log_position_weight.exp()[:, None, None] * _squared_distances(grid, x.device, x.dtype)
        if prior is not None:
            bias = prior[:, None] if bias is None else bias + prior[:, None]
        if return_weights:  # the explicit softmax, only when someone wants to look at it
            logits = query @ keys.transpose(-1, -2) * scale
            weights = (logits if bias is None else logits + bias).softmax(-1)
            out = weights @ values
        else:
            out = F.scaled_dot_product_attention(query, keys, values, attn_mask=bias, scale=scale)
        out = self.to_out[0](out.transpose(1, 2).flatten(2))
        return (out, weights.mean(1)) if return_weights else out

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, N, d) -> (B, heads, N, d/heads)


@functools.lru_cache(maxsize=32)  # a constant per grid: not recomputed at every UNet call
def _squared_distances(grid: tuple[int, int], device, dtype) -> torch.Tensor:
    """(h*w, h*w) squared distances between the cell centres of an h x w grid on the unit square."""
    h, w = grid
    with torch.inference_mode(False):  # an ordinary tensor, so training may reuse one made under inference_mode
        ys, xs = torch.meshgrid((torch.arange(h, device=device, dtype=dtype) + 0.5) / h,
                                (torch.arange(w, device=device, dtype=dtype) + 0.5) / w, indexing="ij")
        centres = torch.stack([ys.flatten(), xs.flatten()], dim=-1)
        return torch.cdist(centres, centres).square()


def coarse_prior(weights: torch.Tensor, coarse: tuple[int, int], strength: float) -> torch.Tensor:
    """`strength * log` of a coarse attention (batch, hc*wc, hc*wc) spread over the 2x finer grid:
    each fine query takes its parent's row, each fine token a quarter of its parent's weight."""
    (h, w), batch = coarse, weights.shape[0]
    fine = weights.detach().reshape(batch, h, w, h, w)
    for dim in range(1, 5):
        fine = fine.repeat_interleave(2, dim)
    return strength * (fine.reshape(batch, 4 * h * w, 4 * h * w) / 4 + PRIOR_FLOOR).log()


def _centred_unit(t: torch.Tensor) -> torch.Tensor:
    """Subtract each channel's mean over the tokens, then scale every token to unit length.

    The timestep and prompt shift every token of a block input alike (the reference is cached at
    t = 1 with the empty prompt, the target is denoised at t with its caption); without the
    centring that shared offset dominates every cosine and all tokens look alike. (StyleAligned
    normalises queries and keys by their token statistics for the same reason.)"""
    return F.normalize(t - t.mean(dim=-2, keepdim=True), dim=-1)


class DreamCacheProcessor(nn.Module):
    """The adapter of one transformer block, acting as its `attn1` processor."""

    def __init__(self, name: str, layer: str, dim: int, cache_dim: int, heads: int, context: ReferenceContext,
                 injection: str = "concat", attention: str = "paper", coarse_to_fine: float = 0.0):
        super().__init__()
        if injection not in INJECTIONS:
            raise ValueError(f"unknown injection {injection!r}; valid: {', '.join(INJECTIONS)}")
        self.norm_mem = nn.LayerNorm(dim)
        self.attn_mem = ReferenceAttention(dim, cache_dim, heads, attention)
        self.linear_cat = nn.Linear(2 * dim, dim) if injection == "concat" else None
        # Plain attributes, never submodules: they must not land in the adapter's state dict.
        self.__dict__.update(base_processor=None, name=name, layer=layer, context=context, block_input=None,
                             coarse_to_fine=coarse_to_fine)

    def wrap(self, base_processor) -> None:
        """Remember the processor this adapter replaces; it still computes the frozen `s`."""
        self.__dict__["base_processor"] = base_processor

    def reset_parameters(self, init: str) -> None:
        """`identity`: an exact no-op at step 0 (linear_cat = [I | 0]; for `sum`, to_out = 0);
        `paper`: PyTorch's default init."""
        if init not in INITS:
            raise ValueError(f"unknown adapter init {init!r}; valid: {', '.join(INITS)}")
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.LayerNorm)):
                module.reset_parameters()
        attn = self.attn_mem
        with torch.no_grad():
            if attn.attention == "cosine":
                attn.logit_scale.fill_(float(COSINE_SCALE)).log_()
            if attn.attention == "positional":
                attn.log_position_weight.fill_(float(POSITION_WEIGHT)).log_()
            if init == "identity" and self.linear_cat is None:
                attn.to_out[0].weight.zero_()
                attn.to_out[0].bias.zero_()
            elif init == "identity":
                dim = self.linear_cat.out_features
                self.linear_cat.weight.zero_()
                self.linear_cat.weight[:, :dim].copy_(torch.eye(dim))
                self.linear_cat.bias.zero_()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        s = self.base_processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        ctx = self.context
        if ctx.cache is None:
            return s
        rows = ctx.rows_for(s.shape[0])
        active = (rows >= 0).nonzero().squeeze(1)
        if len(active) == 0:
            return s
        index = active.to(s.device)
        x = self.block_input.index_select(0, index)
        grid = self._grid(x.shape[1])
        keys, values = self._keys_values(rows[active], x.dtype)
        prior = self._prior(grid)
        if ctx.record_attention or self.coarse_to_fine:
            m, weights = self.attn_mem(self.norm_mem(x), keys, values, return_weights=True, grid=grid, prior=prior)
            if ctx.record_attention:
                ctx.attention[self.name] = weights
            if self.coarse_to_fine:
                ctx.coarse_attention[grid] = weights  # for the adapters one octave finer, later in this call
        else:
            m = self.attn_mem(self.norm_mem(x), keys, values, grid=grid)
        mine = s.index_select(0, index)
        mixed = mine + m if self.linear_cat is None else self.linear_cat(torch.cat([mine, m], dim=-1))
        return mixed if len(active) == s.shape[0] else s.index_copy(0, index, mixed)

    def _prior(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """Coarse-to-fine: the bias from the attention of this UNet call's adapter one octave coarser."""
        if not self.coarse_to_fine or grid[0] % 2 or grid[1] % 2:
            return None
        coarse = (grid[0] // 2, grid[1] // 2)
        weights = self.context.coarse_attention.get(coarse)
        return None if weights is None else coarse_prior(weights, coarse, self.coarse_to_fine)

    def _grid(self, num_tokens: int) -> tuple[int, int]:
        """The (h, w) of the cached grid, which must be the grid the UNet runs here."""
        h, w = self.context.cache.grids[self.layer]
        if num_tokens != h * w:
            raise ValueError(f"{self.layer}: the cache holds a {h}x{w} grid per reference, but the UNet runs "
                             f"{num_tokens} tokens here: the cache was made at another resolution; recompute it")
        return h, w

    def _keys_values(self, rows: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.context
        precomputed = ctx.keys_values.get(id(self))
        if precomputed is not None:
            index = rows.to(precomputed[0].device)
            return precomputed[0].index_select(0, index), precomputed[1].index_select(0, index)
        tokens = ctx.cache.tokens[self.layer].to(device=self.attn_mem.to_q.weight.device, dtype=dtype)
        return self.attn_mem.keys_values(tokens.index_select(0, rows.to(tokens.device)))


class DreamCacheAdapters(nn.Module):
    """The set of adapters of one UNet: install/uninstall, activate a cache, save/load.

    An `nn.Module` whose submodules are the processors, each at its block's path
    (`mid_block.attentions.0.transformer_blocks.0`), so `parameters`, `state_dict`, `to`, ... come
    from torch and the state dict's keys are the block names the files have always used.

    >>> adapters = DreamCacheAdapters(unet, layers="paper")     # installed, inactive
    >>> with adapters.reference(cache):                          # rows use the cache
    ...     eps = unet(latents, t, encoder_hidden_states=text).sample
    >>> adapters.uninstall()                                      # the very same processors are back
    """

    def __init__(self, unet, layers="paper", init: str = "identity", injection: str = "concat",
                 attention: str = "paper", replace: bool = False, coarse_to_fine: float = 0.0):
        """`replace=True` takes out adapters already installed on `unet` (a notebook cell run again);
        without it they are an error: two sets would silently wrap one another. `coarse_to_fine`: the
        strength of the coarse-to-fine prior (module docstring; 0, the paper's attention: off)."""
        if coarse_to_fine < 0:
            raise ValueError(f"coarse_to_fine must be >= 0 (0: off), got {coarse_to_fine}")
        super().__init__()
        existing = installed_adapters(unet)
        if existing is not None:
            if not replace:
                raise ValueError(f"this UNet already has DreamCache adapters installed ({len(existing.processors)} "
                                 "blocks): call .uninstall() on them first, or pass replace=True to take them out")
            existing.uninstall()
        self.__dict__["unet"] = unet  # a plain attribute: the UNet's weights are not the adapters'
        self.layers = select_layers(unet, layers)
        self.fingerprint = backbone_fingerprint(unet)
        self.context = ReferenceContext()
        self.init, self.injection, self.attention = init, injection, attention
        self.coarse_to_fine = float(coarse_to_fine)
        modules = dict(unet.named_modules())
        self.blocks: dict[str, nn.Module] = {}
        self.processors: dict[str, DreamCacheProcessor] = {}
        for info in self.layers:
            for i, block in enumerate(modules[info.name].transformer_blocks):
                name = f"{info.name}.transformer_blocks.{i}"
                attn1 = block.attn1
                param = next(attn1.parameters())
                with torch.device(param.device):
                    proc = DreamCacheProcessor(name, info.name, attn1.inner_dim, info.channels, attn1.heads,
                                               self.context, injection, attention, self.coarse_to_fine)
                proc.to(param.dtype)
                if param.device.type != "meta":
                    proc.reset_parameters(init)
                    if attention == "cosine":
                        proc.attn_mem.align_keys(modules[info.name].proj_in)
                self.blocks[name] = block
                self.processors[name] = proc
                self._hang(name, proc)
        self._hooks = []
        self.install()

    def _hang(self, name: str, proc: DreamCacheProcessor) -> None:
        """Register `proc` under nested ModuleDicts along its dotted block name."""
        *path, last = name.split(".")
        parent = self
        for part in path:
            if part not in parent._modules:
                parent.add_module(part, nn.ModuleDict())
            parent = parent._modules[part]
        parent.add_module(last, proc)

    # -- installing ---------------------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return bool(self._hooks)

    def install(self) -> None:
        """Swap each block's `attn1` processor for its adapter; hook the block to see its raw input."""
        if self.installed:
            return
        other = installed_adapters(self.unet)
        if other is not None:
            raise ValueError("another set of DreamCache adapters is installed on this UNet: uninstall it first")
        self.unet.__dict__[_INSTALLED] = self
        for name, block in self.blocks.items():
            proc = self.processors[name]
            proc.wrap(block.attn1.processor)
            block.attn1.set_processor(proc)
            self._hooks.append(block.register_forward_pre_hook(_remember_input(proc), with_kwargs=True))
            self._hooks.append(block.register_forward_hook(_forget_input(proc)))
        if self.coarse_to_fine:  # priors belong to one UNet call: never let a finer layer read the last call's
            self._hooks.append(self.unet.register_forward_pre_hook(lambda module, args: self.context.coarse_attention.clear()))

    def uninstall(self) -> None:
        """Put the original processor objects back and remove the hooks."""
        for name, block in self.blocks.items():
            block.attn1.set_processor(self.processors[name].base_processor)
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self.unet.__dict__.get(_INSTALLED) is self:
            del self.unet.__dict__[_INSTALLED]
        self.context.clear()

    # -- parameters -----------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_state_dict(self, tensors: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """torch's, refusing a key mismatch with a ValueError that lists both sides."""
        mine = set(self.state_dict())
        if strict and set(tensors) != mine:
            raise ValueError(f"adapter tensors do not match: missing {sorted(mine - set(tensors))}, "
                             f"unexpected {sorted(set(tensors) - mine)}")
        return super().load_state_dict(tensors, strict=strict, assign=assign)

    # -- the active reference -----------------------------------------------------------------
    def activate(self, cache, rows=None, precompute: bool = False) -> None:
        """Make every adapter attend to `cache`; `rows` maps UNet batch rows to cache rows (-1: off)."""
        cache.check(fingerprint=self.fingerprint, layers=[i.name for i in self.layers],
                    channels={i.name: i.channels for i in self.layers})
        self.context.clear()
        self.context.cache = cache
        self.context.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
        if precompute:
            self.precompute()

    def deactivate(self) -> None:
        self.context.clear()

    @torch.no_grad()
    def precompute(self) -> None:
        """Project the active cache to keys/values once (valid until the weights or the cache change)."""
        ctx = self.context
        ctx.keys_values = {}
        for proc in self.processors.values():
            weight = proc.attn_mem.to_q.weight
            tokens = ctx.cache.tokens[proc.layer].to(device=weight.device, dtype=weight.dtype)
            ctx.keys_values[id(proc)] = proc.attn_mem.keys_values(tokens)

    @contextlib.contextmanager
    def reference(self, cache, rows=None, precompute: bool = False):
        """`with adapters.reference(cache): ...` — active inside, cleared afterwards."""
        self.activate(cache, rows=rows, precompute=precompute)
        try:
            yield self
        finally:
            self.deactivate()

    # -- files ----------------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {"fingerprint": self.fingerprint, "layers": [i.name for i in self.layers],
                "channels": {i.name: i.channels for i in self.layers}, "blocks": list(self.processors),
                "init": self.init, "injection": self.injection, "attention": self.attention,
                "coarse_to_fine": self.coarse_to_fine}

    def save(self, path, extra: dict | None = None) -> None:
        save_tensors(path, self.state_dict(), ADAPTER_KIND, {**self.metadata(), "extra": extra or {}})

    def load_weights(self, path, check_backbone: bool = True) -> dict:
        """Load adapter weights saved by `save`; refuse files for other layers, channels or backbones."""
        tensors, meta = load_tensors(path, ADAPTER_KIND)
        mine = self.metadata()
        if meta.get("injection", "concat") != self.injection:
            raise ValueError(f"{path}: adapters use {meta.get('injection', 'concat')!r} injection, "
                             f"these adapters {self.injection!r}")
        if meta.get("attention", "paper") != self.attention:
            raise ValueError(f"{path}: adapters use {meta.get('attention', 'paper')!r} reference attention, "
                             f"these adapters {self.attention!r}")
        if meta["layers"] != mine["layers"]:
            raise ValueError(f"{path}: adapters were trained for layers {meta['layers']}, "
                             f"but these adapters are on {mine['layers']}")
        wrong = {n: (meta["channels"][n], c) for n, c in mine["channels"].items() if meta["channels"][n] != c}
        if wrong:
            raise ValueError(f"{path}: channel mismatch (file, this UNet): {wrong}")
        if check_backbone and meta["fingerprint"] != self.fingerprint:
            raise ValueError(f"{path}: adapters belong to backbone {meta['fingerprint']}, this UNet is "
                             f"{self.fingerprint} (pass check_backbone=False to load anyway)")
        try:
            self.load_state_dict(tensors)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        return meta

    @classmethod
    def from_file(cls, unet, path, check_backbone: bool = True, replace: bool = False,
                  coarse_to_fine: float | None = None) -> "DreamCacheAdapters":
        """Install adapters on the layers named in the file and load its weights. `coarse_to_fine`:
        the prior's strength (None: the file's; it adds no weights, so any value loads)."""
        _, meta = load_tensors(path, ADAPTER_KIND)
        # every weight is overwritten by the file, so the init only matters as the file's provenance
        # (e.g. "official" for the authors' converted release)
        adapters = cls(unet, layers=meta["layers"], injection=meta.get("injection", "concat"),
                       attention=meta.get("attention", "paper"), replace=replace,
                       coarse_to_fine=meta.get("coarse_to_fine", 0.0) if coarse_to_fine is None else coarse_to_fine)
        try:
            adapters.load_weights(path, check_backbone=check_backbone)
        except Exception:
            adapters.uninstall()
            raise
        adapters.init = meta.get("init", "identity")
        return adapters


_INSTALLED = "_dreamcache_adapters"  # the UNet's plain attribute naming its installed adapters


def installed_adapters(unet) -> "DreamCacheAdapters | None":
    """The adapters installed on `unet`, if any."""
    adapters = unet.__dict__.get(_INSTALLED)
    return adapters if adapters is not None and adapters.installed else None


def _remember_input(proc: DreamCacheProcessor):
    def hook(block, args, kwargs):
        proc.block_input = args[0] if args else kwargs["hidden_states"]
    return hook


def _forget_input(proc: DreamCacheProcessor):
    def hook(block, args, output):
        proc.block_input = None  # do not keep activations alive after the block has run
    return hook
