"""The one setup every notebook runs first: paths, fast mode, device, seeds, the backbone.

    from dreamcache_lite.teach.notebook import setup
    nb = setup("tiny", seed=0)      # prints a one-line summary
    nb.pipe, nb.fast, nb.device, nb.figure("01_x.png")

Fast mode (`nb.fast`) is on in CI and test runs: env DREAMCACHE_FAST=1, or CI set, or under pytest
(nbval); DREAMCACHE_FAST=0 forces the full mode. Env DREAMCACHE_BACKBONE overrides the notebook's
backbone choice without editing it (e.g. a local SD 1.5 folder).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .exercises import fast_mode


def _figures_root() -> Path:
    """Where notebook figures go: env DREAMCACHE_FIGURES when set (e.g. `figures` to refresh the
    committed ones); else the git-ignored runs/notebook-figures/ of the checkout the package runs from
    (any working directory: notebooks/, a course folder); outside a checkout ./figures."""
    if os.environ.get("DREAMCACHE_FIGURES"):
        return Path(os.environ["DREAMCACHE_FIGURES"]).resolve()
    if (ROOT / "pyproject.toml").is_file() and (ROOT / "dreamcache_lite").is_dir():
        return ROOT / "runs" / "notebook-figures"
    return Path.cwd() / "figures"


ROOT = Path(__file__).resolve().parents[2]   # the checkout, when the package runs from one
FIGURES = _figures_root()


def pick_device() -> torch.device:
    """CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def figure_path(name: str, fast: bool = False) -> Path:
    """Where a notebook figure goes: FIGURES/<name>, in fast mode FIGURES/fast/<name>; by default
    both are git-ignored, so running a notebook never changes a tracked file."""
    folder = FIGURES / "fast" if fast else FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def quiet_libraries() -> None:
    """Keep notebook outputs to what the lesson prints: no loading bars, no deprecation chatter."""
    import warnings

    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def inline_figures() -> None:
    """Draw figures into the notebook even when MPLBACKEND names a non-interactive backend (CI sets
    Agg): there, a kernel would show no picture at all -- in a widget's Output area not even text."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":   # a notebook kernel
        shell.run_line_magic("matplotlib", "inline")


def load_oracle():
    """The shipped oracle (the toy world's judge), or -- with a note -- an untrained one so the code runs."""
    from dreamcache_lite.lab.oracle import DEFAULT_PATH, Oracle

    if DEFAULT_PATH.is_file():
        return Oracle.load()
    print(f"NOTE: no trained oracle at {DEFAULT_PATH}: scoring with an UNTRAINED one. The numbers below are "
          "meaningless; the protocol and the code path are real.")
    torch.manual_seed(0)
    return Oracle().eval()


def setup(backbone: str = "tiny", seed: int = 0, load: bool = True, fast: bool | None = None) -> SimpleNamespace:
    """Seed, pick the device, decide fast mode and load the backbone (a diffusers pipeline).

    `fast` None decides from the environment (`fast_mode`); True/False (papermill's -p FAST ...) sets
    DREAMCACHE_FAST for this kernel, so the checkers and helpers that ask `fast_mode` agree.
    """
    start = time.perf_counter()
    quiet_libraries()
    inline_figures()
    seed_everything(seed)
    device = pick_device()
    if fast is not None:
        os.environ["DREAMCACHE_FAST"] = "1" if fast else "0"
    fast = fast_mode()
    backbone = os.environ.get("DREAMCACHE_BACKBONE") or backbone
    pipe = None
    if load:
        from dreamcache_lite.assets import TINY_BACKBONE
        from dreamcache_lite.backbones import load_pipeline
        from dreamcache_lite.lab.tiny_backbone import random_pipeline
        dtype = torch.float16 if device.type == "cuda" and backbone != "tiny" else torch.float32
        if backbone == "tiny" and not (TINY_BACKBONE / "manifest.json").is_file():
            # Until the trained backbone ships, the code still runs on its architecture, untrained.
            print("NOTE: the trained tiny backbone is not in this checkout yet: using RANDOM weights of its "
                  "architecture. Shapes, sizes and code paths are real; learned numbers are not meaningful.")
            pipe = random_pipeline(seed).to(device)
        else:
            pipe = load_pipeline(backbone, device=device, dtype=dtype)
    print(f"device {device} · {'FAST' if fast else 'full'} mode · backbone {backbone} · seed {seed} "
          f"· torch {torch.__version__} · set up in {time.perf_counter() - start:.1f} s")
    name = Path(backbone).name if os.sep in backbone else backbone   # short, for figure titles
    return SimpleNamespace(pipe=pipe, fast=fast, device=device, seed=seed, backbone=backbone, name=name,
                           root=ROOT, figures=FIGURES, figure=lambda name: figure_path(name, fast))
