"""dreamcache-lite: DreamCache (CVPR 2025) feature caching and conditioning adapters on diffusers."""
