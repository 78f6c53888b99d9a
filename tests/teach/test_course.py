"""The nbgrader course kit: source versions from the notebooks, student versions from nbgrader,
autograding gives the reference solutions full marks and the untouched student versions zero."""

import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from dreamcache_lite.teach.course import build_source
from dreamcache_lite.teach.exercises import REGISTRY

pytest.importorskip("nbgrader")
METHOD = ("03_adapter_training", "04_personalised_generation")  # the exercises that implement the method


def _nbgrader(course, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DREAMCACHE_FAST": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--CourseDirectory.root=."], cwd=course,
                          capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def test_every_exercise_becomes_a_solution_and_a_test_cell(tmp_path):
    built = build_source(tmp_path)
    assert sorted(e for graded in built.values() for e in graded) == sorted(REGISTRY)
    nb = nbformat.read(tmp_path / "source" / "03_adapter_training" / "03_adapter_training.ipynb", 4)
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}
    answer, test = cells["03-adapter_forward-answer"], cells["03-adapter_forward-check"]
    assert "### BEGIN SOLUTION" in answer.source and "def adapter_forward(x, s, cache, weights, heads):" in answer.source
    assert answer.metadata["nbgrader"]["solution"] and not answer.metadata["nbgrader"]["grade"]
    assert test.metadata["nbgrader"] == {"grade_id": "03-adapter_forward-check", "solution": False, "grade": True,
                                         "locked": True, "schema_version": 3, "points": 1}
    assert 'require("03.adapter_forward", adapter_forward)' in test.source


@pytest.mark.slow
def test_autograding_gives_solutions_full_marks_and_blank_versions_zero(tmp_path):
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    build_source(course)
    for assignment in METHOD:
        _nbgrader(course, "generate_assignment", assignment, "--force")
        released = (course / "release" / assignment / f"{assignment}.ipynb").read_text()
        assert "raise NotImplementedError()" in released and "BEGIN SOLUTION" not in released
        for solution_line in ('weights[\\"linear_cat.weight\\"]', "~drop_reference), noise)", "prev_sample\\n"):
            assert solution_line not in released  # (as JSON text)
        for student, version in (("reference", "source"), ("blank", "release")):
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            shutil.copy(course / version / assignment / f"{assignment}.ipynb", folder)
        _nbgrader(course, "autograde", assignment, "--create", "--force")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for assignment in METHOD:
            reference = gradebook.find_submission(assignment, "reference")
            blank = gradebook.find_submission(assignment, "blank")
            assert reference.score == reference.max_score > 0, assignment
            assert blank.score == 0, assignment
