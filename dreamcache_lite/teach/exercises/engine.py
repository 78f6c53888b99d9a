"""Self-check cells for the notebooks' exercises: they say what is wrong in plain words.

In a notebook an exercise is a placeholder the learner fills in, then one call:

    answer = ...  # your code
    check("01.cache_bytes", answer)

- a right answer prints a tick;
- a wrong one prints what is wrong (never raises, so the notebook keeps running);
- an unfilled placeholder (`...`, or a function that returns `...` or raises NotImplementedError)
  prints a friendly "not done yet" -- except in fast mode (CI), where the reference solution from
  `notebooks/solutions/` is checked instead, so CI tests every checker against its solution and
  fails loudly if they disagree.

`verdict` returns the verdict and the message instead of printing (for tests). Each notebook's
checkers live in `nbNN.py` and register themselves with `register(solution file)`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[3]


def fast_mode() -> bool:
    """True in CI and test runs: env DREAMCACHE_FAST=1, or CI set, or running under pytest (nbval).

    DREAMCACHE_FAST=0 forces the full mode everywhere.
    """
    flag = os.environ.get("DREAMCACHE_FAST", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    return bool(os.environ.get("CI") or os.environ.get("PYTEST_VERSION") or os.environ.get("PYTEST_CURRENT_TEST"))


class Wrong(Exception):
    """Raised by a checker with a plain-words explanation of what is wrong."""


class Unfilled(Exception):
    """The learner has not filled the placeholder in yet."""


@dataclass(frozen=True)
class Exercise:
    checker: Callable          # checker(answer, **context) -> success message, or raises Wrong
    solution_file: str         # in notebooks/solutions/
    solution_name: str
    kind: str = "value"        # "value": a solution that is callable gets called with the context


REGISTRY: dict[str, Exercise] = {}  # "01.cache_bytes" -> its checker and reference solution


def register(solution_file: str):
    """The decorator factory of one notebook's checkers: `@exercise("01.x", "solution_name"[, "function"])`."""
    def exercise(name: str, solution_name: str, kind: str = "value"):
        def decorate(checker):
            REGISTRY[name] = Exercise(checker, solution_file, solution_name, kind)
            return checker
        return decorate
    return exercise


def call_learner(fn, *args, **kwargs):
    """Call the learner's function; `...` returned or NotImplementedError mean "not done yet"."""
    if not callable(fn):
        raise Wrong(f"this exercise wants a function, got {type(fn).__name__}")
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as err:
        raise Unfilled from err
    if result is Ellipsis:
        raise Unfilled
    return result


def as_number(answer, what: str) -> float:
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (int, float, np.integer, np.floating)):
        raise Wrong(f"{what} should be a number, got {type(answer).__name__} {answer!r}")
    return float(answer)


def as_letter(answer, choices: dict) -> str:
    """The lower-cased letter of a multiple-choice answer; Wrong (listing the choices) when it is none of them."""
    if not isinstance(answer, str) or answer.strip().lower() not in choices:
        raise Wrong(f"answer with one letter: {'; '.join(f'{k}) {v}' for k, v in choices.items())}")
    return answer.strip().lower()


def multiple_choice(answer, choices: dict, mistakes: dict) -> str:
    """The letter of a multiple-choice answer; Wrong with the explanation of a known wrong letter."""
    letter = as_letter(answer, choices)
    if letter in mistakes:
        raise Wrong(mistakes[letter])
    return letter


def known_mistake(mistakes, same_as) -> None:
    """Raise Wrong with the explanation of the first known mistake the answer reproduces.

    mistakes: (keywords of the mistaken computation, explanation) pairs; same_as(keywords) says
    whether the answer equals that mistaken computation's result."""
    for mistake, why in mistakes:
        if same_as(mistake):
            raise Wrong(why)


def solutions_dir() -> Path:
    """`notebooks/solutions/`: next to the running notebook, or in the repository of this package."""
    for candidate in (Path.cwd() / "solutions", Path.cwd() / "notebooks" / "solutions",
                      REPO / "notebooks" / "solutions"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("cannot find notebooks/solutions/ (run the notebook from the repository)")


def load_solution(exercise: str, **context):
    """The reference answer of `exercise` (a value, or the function for function exercises)."""
    spec = REGISTRY[exercise]
    path = solutions_dir() / spec.solution_file
    module_spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    solution = getattr(module, spec.solution_name)
    if spec.kind == "value" and callable(solution):
        solution = solution(**context)
    return solution


def verdict(exercise: str, answer, **context) -> tuple[bool | None, str]:
    """(verdict, message) for the learner's `answer`: True right, False wrong, None not done yet.

    An unfilled placeholder in fast mode is replaced by the reference solution; if that fails its
    own checker, AssertionError (CI must notice a checker and its solution disagreeing).
    """
    if exercise not in REGISTRY:
        raise KeyError(f"unknown exercise {exercise!r}; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[exercise]
    try:
        if answer is Ellipsis:
            raise Unfilled
        return True, f"✓ Exercise {exercise}: {spec.checker(answer, **context)}"
    except Wrong as wrong:
        return False, f"✗ Exercise {exercise}: {wrong}"
    except Unfilled:
        pass
    if not fast_mode():
        return None, (f"✎ Exercise {exercise} is not done yet: replace the `...` with your answer and run this "
                      f"cell again. (Stuck? notebooks/solutions/{spec.solution_file} has a reference solution.)")
    solution = load_solution(exercise, **context)
    try:
        message = spec.checker(solution, **context)
    except (Wrong, Unfilled) as err:
        raise AssertionError(f"the reference solution of exercise {exercise} fails its own checker: "
                             f"{err or 'not filled in'}") from err
    return True, f"✓ Exercise {exercise} [fast mode: placeholder left empty, checked the reference solution]: {message}"


def check(exercise: str, answer, **context) -> None:
    """The notebooks' self-check: print whether `answer` is right, and if not, what is wrong."""
    print(verdict(exercise, answer, **context)[1])


def require(exercise: str, answer, **context) -> None:
    """The autograded form of `check` (nbgrader test cells): a wrong or missing answer raises
    AssertionError with the checker's message; a placeholder is never replaced by the solution."""
    if exercise not in REGISTRY:
        raise KeyError(f"unknown exercise {exercise!r}; known: {', '.join(REGISTRY)}")
    try:
        if answer is Ellipsis:
            raise Unfilled
        message = REGISTRY[exercise].checker(answer, **context)
    except Wrong as wrong:
        raise AssertionError(f"✗ Exercise {exercise}: {wrong}") from None
    except Unfilled:
        raise AssertionError(f"✎ Exercise {exercise} is not done yet") from None
    print(f"✓ Exercise {exercise}: {message}")
