"""The notebooks' setup: figures never land on tracked files unless a folder is named."""

import subprocess
import sys

from dreamcache_lite.teach import notebook


def test_figures_go_to_an_ignored_folder_by_default(tmp_path):
    full, fast = notebook.figure_path("x.png"), notebook.figure_path("x.png", fast=True)
    assert full.parent == notebook.ROOT / "runs" / "notebook-figures" and fast.parent == full.parent / "fast"
    for path in (full, fast):
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=notebook.ROOT)
        assert ignored.returncode == 0, f"{path} is not git-ignored"


def test_a_named_folder_takes_the_figures(tmp_path):
    code = "from dreamcache_lite.teach import notebook; print(notebook.figure_path('x.png'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"DREAMCACHE_FIGURES": str(tmp_path), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.stdout.strip() == str(tmp_path / "x.png")
