"""Where the shipped files live: every path into `dreamcache_lite/assets/` is named here, once."""

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
TINY_BACKBONE = ASSETS / "tiny-backbone"                                # the embedded diffusers pipeline
TINY_ADAPTERS = ASSETS / "tiny-adapters" / "adapters.safetensors"      # DreamCache adapters trained on it
ORACLE = ASSETS / "oracle" / "oracle.safetensors"                      # the toy world's judge
