"""The notebooks' setup: figures never land on tracked files unless a folder is named."""

import subprocess
import sys

import pytest

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


NOTEBOOKS = sorted((notebook.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_has_one_papermill_parameters_cell_that_setup_reads():
    import nbformat

    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
        params, following = cells[tagged[0]].source, cells[tagged[0] + 1].source
        for name in ("BACKBONE", "SEED", "FAST"):
            assert f"\n{name} = " in "\n" + params, f"{path.name}: parameter {name} missing"
        # papermill injects its cell right after this one: the setup call must come after it
        assert "setup(BACKBONE, seed=SEED, fast=FAST)" in following, path.name
        assert not any("setup(" in c.source for c in cells[:tagged[0]]), path.name


def test_setup_fast_argument_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("DREAMCACHE_FAST", "1")
    assert notebook.setup(load=False, fast=False).fast is False
    assert notebook.setup(load=False).fast is False   # the kernel keeps the choice (checkers agree)
    assert notebook.setup(load=False, fast=True).fast is True


def test_papermill_runs_a_notebook_with_parameters(tmp_path):
    """The headless route of the README: papermill -p FAST True, output in a folder of the caller's."""
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS[1]), str(out), parameters={"FAST": True, "SEED": 1},
                               cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    text = out.read_text()
    assert "FAST mode" in text and "seed 1" in text

