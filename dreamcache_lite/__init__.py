"""dreamcache-lite: DreamCache (CVPR 2025) feature caching and conditioning adapters on diffusers.

The modules here are the method and run on any diffusers UNet; `lab/` is the laboratory around it
and `teach/` the notebooks' helpers (both import the method, never the other way round)."""

import logging


class _NoTorchvisionFallbackNotice(logging.Filter):
    """Recent transformers note, once per class, that an image processor falls back to its PIL
    version without torchvision. diffusers' pipelines import those classes; this package never
    uses them (no safety checker, no feature extractor), so the notice is noise for our users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionFallbackNotice())
