"""The course kit: the notebooks as nbgrader assignments, built from the notebooks and their solutions.

For every `check("NN.name", answer, ...)` cell of a notebook, the code cell that holds the
placeholder (`answer = ...` or `def answer(...): ... return ...`) becomes an nbgrader *solution*
cell with the reference solution of `notebooks/solutions/` between `### BEGIN SOLUTION` and
`### END SOLUTION`, and the check cell becomes a locked, autograded *test* cell that calls
`require` -- the same checker, raising its plain-words message instead of printing it. So the
feedback a student gets from the autograder is the checker's, and the solutions have one home.

    python -m dreamcache_lite.teach.course course          # writes course/source/<notebook>/
    cd course && nbgrader generate_assignment 03_adapter_training   # student version in release/
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import textwrap
from pathlib import Path

import nbformat

from .exercises import REGISTRY
from .exercises.engine import REPO

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def _solution_source(exercise: str) -> tuple[list[ast.AST], ast.AST, str]:
    """(import statements of the solution file, the node defining the solution, the file's text)."""
    spec = REGISTRY[exercise]
    text = (REPO / "notebooks" / "solutions" / spec.solution_file).read_text()
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in tree.body:
        names = [node.name] if isinstance(node, ast.FunctionDef) else [
            t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if spec.solution_name in names:
            return imports, node, text
    raise KeyError(f"{spec.solution_file} defines no {spec.solution_name!r}")


def _imports_used(imports: list[ast.AST], code: str, text: str) -> str:
    """The solution file's import statements that `code` needs."""
    def used(node):
        return any(re.search(rf"\b{(a.asname or a.name).split('.')[0]}\b", code) for a in node.names)
    return "\n".join(ast.get_source_segment(text, n) for n in imports if used(n))


def _function_body(node: ast.FunctionDef, text: str) -> str:
    """The statements of a function without its docstring, dedented."""
    body = node.body[1:] if ast.get_docstring(node) else node.body
    lines = text.splitlines()[body[0].lineno - 1:body[-1].end_lineno]
    return textwrap.dedent("\n".join(lines))


def _region(code: str, indent: str = "") -> str:
    return "\n".join([indent + BEGIN, textwrap.indent(code, indent), indent + END])


def check_call(source: str) -> tuple[str, str, str] | None:
    """(exercise id, answer name, its context keywords as written) of a cell's `check(...)` call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax: never an exercise's check cell
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check":
            exercise, answer = node.args[:2]
            context = ", ".join(f"{k.arg}={ast.get_source_segment(source, k.value)}" for k in node.keywords)
            return exercise.value, answer.id, context
    return None


def solution_cell(source: str, exercise: str, name: str, context: str) -> str:
    """The placeholder cell with the reference solution put in between solution markers; `context`
    is the check call's keywords, for solutions computed from the notebook's variables."""
    imports, node, text = _solution_source(exercise)
    placeholder = re.compile(rf"^(?P<indent>[ \t]*)(return \.\.\.|{name} = \.\.\.).*$", re.M)
    match = placeholder.search(source)
    if match is None:
        raise ValueError(f"exercise {exercise}: no placeholder for {name!r} in its cell")
    if match.group(2).startswith("return"):  # a function the student writes: fill its body
        code = _function_body(node, text)
    elif isinstance(node, ast.FunctionDef):  # a value the solution computes from the notebook's context
        function = ast.get_source_segment(text, node).replace(f"def {node.name}(", "def _reference(", 1)
        function = "\n".join(line for line in function.splitlines() if not line.startswith("@"))
        code = "\n".join([function, f"{name} = _reference({context})"])
    else:  # a value written out
        code = ast.get_source_segment(text, node)
    code = "\n".join(filter(None, [_imports_used(imports, code, text), code]))
    return source[:match.start()] + _region(code, match.group("indent")) + source[match.end():]


def test_cell(source: str) -> str:
    """The check cell as an autograded test: `require` raises when the answer is wrong or missing."""
    return "from dreamcache_lite.teach.exercises import require\n" + re.sub(r"\bcheck\(", "require(", source)


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^\s*(def {name}\(|{name} = \.\.\.)", source, re.M) is not None


def to_assignment(notebook: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook with nbgrader solution and test cells; also the exercise ids it grades."""
    nb = nbformat.from_dict(notebook)
    graded = []
    for i, cell in enumerate(nb.cells):
        found = check_call(cell.source) if cell.cell_type == "code" else None
        if found is None:
            continue
        exercise, name, context = found
        owner = next(j for j in range(i - 1, -1, -1)
                     if nb.cells[j].cell_type == "code" and _defines(nb.cells[j].source, name))
        nb.cells[owner].source = solution_cell(nb.cells[owner].source, exercise, name, context)
        nb.cells[owner].metadata["nbgrader"] = _metadata(f"{exercise}-answer", solution=True)
        cell.source = test_cell(cell.source)
        cell.metadata["nbgrader"] = _metadata(f"{exercise}-check", grade=True)
        graded.append(exercise)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.update(outputs=[], execution_count=None)
    return nb, graded


def _metadata(grade_id: str, solution: bool = False, grade: bool = False) -> dict:
    meta = {"grade_id": grade_id.replace(".", "-"), "solution": solution, "grade": grade, "locked": grade,
            "schema_version": 3}
    if grade:
        meta["points"] = 1
    return meta


def build_source(course: Path, notebooks: Path = REPO / "notebooks") -> dict[str, list[str]]:
    """Write course/source/<notebook stem>/<notebook>.ipynb for every numbered notebook with exercises."""
    built = {}
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        nb, graded = to_assignment(nbformat.read(path, as_version=4))
        if not graded:
            continue
        folder = Path(course) / "source" / path.stem
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / path.name)
        built[path.stem] = graded
    (Path(course) / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\nc.CourseDirectory.root = "."\n'
        'c.ExecutePreprocessor.timeout = 1800  # full-mode cells train and sample on a CPU\n')
    return built


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("course", help="the nbgrader course folder to write (source/ inside it)")
    args = parser.parse_args(argv)
    for stem, graded in build_source(Path(args.course)).items():
        print(f"{args.course}/source/{stem}: {len(graded)} graded exercises ({', '.join(graded)})")


if __name__ == "__main__":
    main()
