"""The reference context: what every installed adapter reads at call time (the active cache, which
batch rows use it), and a way to switch it off for a while.

It sits between the cache and the adapters: the cache is made with every context cleared
(`references_suspended`), the adapters attend to what the context holds.
"""

from __future__ import annotations

import contextlib

import torch


class ReferenceContext:
    """The state every adapter reads at call time.

    cache: the active `FeatureCache` (or None: every adapter is an exact no-op).
    rows:  for each row of the UNet batch, which reference row of the cache it uses (-1: none).
           None means "all rows use reference 0" (or row i uses reference i when the sizes match).
    keys_values: optional per-adapter projections of the cache, computed once per reference.
    record_attention: when True, each adapter keeps its last head-averaged attention map
        (rows with a reference, queries, cache tokens) in `attention[block name]`.
    coarse_attention: coarse-to-fine adapters' head-averaged attention of the current UNet call, by grid.
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.cache = None
        self.rows = None
        self.keys_values = {}
        self.record_attention = False
        self.attention = {}
        self.coarse_attention = {}

    def rows_for(self, batch: int) -> torch.Tensor:
        """Cache row per UNet row, on the CPU (small, and deciding on it never waits for a GPU)."""
        if self.rows is not None:
            if len(self.rows) != batch:
                raise ValueError(f"reference rows has {len(self.rows)} entries but the UNet batch has {batch} rows")
            return self.rows
        refs = self.cache.batch_size
        if refs not in (1, batch):
            raise ValueError(f"cache holds {refs} references for a UNet batch of {batch}: pass rows=")
        return torch.arange(batch) if refs == batch else torch.zeros(batch, dtype=torch.long)


@contextlib.contextmanager
def references_suspended(unet):
    """Run `unet` as the plain backbone for a while (caching must not see any active reference)."""
    contexts = {id(p.context): p.context for p in unet.attn_processors.values()
                if isinstance(getattr(p, "context", None), ReferenceContext)}
    saved = [(ctx, dict(ctx.__dict__)) for ctx in contexts.values()]
    for ctx, _ in saved:
        ctx.clear()
    try:
        yield
    finally:
        for ctx, state in saved:
            ctx.__dict__.update(state)
