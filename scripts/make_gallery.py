"""Write figures/toyworld_gallery.png (notebook 00 draws the same figure).

Usage: python scripts/make_gallery.py [--out figures/toyworld_gallery.png]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from dreamcache_lite.teach.figures import toyworld_gallery  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="figures/toyworld_gallery.png")
    out = Path(p.parse_args().out)
    out.parent.mkdir(parents=True, exist_ok=True)
    toyworld_gallery(out)
    print(f"wrote {out}")
