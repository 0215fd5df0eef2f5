"""``make student``: the student edition of every course notebook, written to ``build/student/notebooks/``
(generated, git-ignored). The instructor edition is the repository's notebooks, solutions included.

The exercise format (``docs/teaching.md``), read from cell tags:

* ``solution`` on a code cell: its first line is ``# Solution to exercise N`` and it ends with the code
  between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END SOLUTION``, which becomes
  ``answer = ...  # YOUR CODE HERE`` (the answer the check reads); lines before the markers stay.
  ``solution`` on a markdown cell (the explanation, the expected value): it becomes "YOUR ANSWER HERE".
* ``check``: the code cell after an exercise's solution, ``check_exercise("NN.N", answer)`` (with the inputs
  the check needs); it stays, read-only, and prints pass or what is wrong (``t2vlad_lib.course.checks``).
* ``open-ended`` beside ``solution``: an exercise without a definite answer; its stub is ``# YOUR CODE HERE``
  and it has no check.

nbgrader's preprocessors do the work (``ClearSolutions``, ``LockCells``, ``ClearOutput``), used as a library
without nbgrader's course database. ``python -m t2vlad_lib.course.student [--out DIR]``.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearOutput, ClearSolutions, LockCells

from .checks import CHECKS
from .website import REPO, notebooks

SOLUTION, CHECK, OPEN_ENDED = "solution", "check", "open-ended"
CODE_STUB = "answer = ...  # YOUR CODE HERE"
OPEN_STUB = "# YOUR CODE HERE"
TEXT_STUB = "YOUR ANSWER HERE"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_HEADER = re.compile(r"#\s*Solution to exercise (\d+)\b")
CHECK_CALL = re.compile(r"""check_exercise\(\s*["'](\d\d)\.(\d+)["']""")
NOTE = ("*Student edition.* Each exercise has a solution cell: write your code where it says `YOUR CODE "
        "HERE` (set `answer`), run it, then run the check cell under it, which prints `pass` or what is "
        "wrong. Exercises marked open-ended have no check.")


@dataclass
class Exercise:
    """One exercise of a notebook: its code solution cell, its check cell (None when open-ended)."""

    number: int
    solution: int  # cell index
    open_ended: bool
    check: int | None = None
    check_id: str | None = None


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def exercises(nb, name: str) -> list[Exercise]:
    """The exercises of notebook ``nb`` (file ``name``), checked against the format; a ValueError names the
    cell and what is expected."""
    number = name[:2] if re.match(r"\d\d_", name) else None
    found: dict[int, Exercise] = {}
    for i, cell in enumerate(nb["cells"]):
        tags, src, where = _tags(cell), _source(cell), f"{name} cell {i}"
        if OPEN_ENDED in tags and SOLUTION not in tags:
            raise ValueError(f"{where}: tag '{OPEN_ENDED}' belongs on a cell also tagged '{SOLUTION}'")
        if (BEGIN in src or END in src) and SOLUTION not in tags:
            raise ValueError(f"{where}: solution markers in a cell not tagged '{SOLUTION}'")
        if SOLUTION in tags and CHECK in tags:
            raise ValueError(f"{where}: a cell is either a solution or a check, not both")
        if SOLUTION in tags and cell["cell_type"] == "code":
            head = SOLUTION_HEADER.match(src.lstrip())
            if head is None:
                raise ValueError(f"{where}: a solution cell starts with '# Solution to exercise N'")
            if src.count(BEGIN) != 1 or src.count(END) != 1 or src.index(BEGIN) > src.index(END):
                raise ValueError(f"{where}: a solution cell holds its code between one '{BEGIN}' and "
                                 f"one '{END}'")
            if src[src.index(END) + len(END):].strip():
                raise ValueError(f"{where}: nothing follows '{END}' (it would run on the student's stub)")
            n = int(head.group(1))
            if n in found:
                raise ValueError(f"{where}: exercise {n} has a second solution cell "
                                 f"(cell {found[n].solution})")
            found[n] = Exercise(n, i, OPEN_ENDED in tags)
        elif CHECK in tags:
            calls = CHECK_CALL.findall(src)
            if len(calls) != 1:
                raise ValueError(f'{where}: a check cell calls check_exercise("NN.N", answer) once')
            nb_part, n = calls[0][0], int(calls[0][1])
            check_id = f"{nb_part}.{n}"
            if number is not None and nb_part != number:
                raise ValueError(f"{where}: check {check_id} is not an exercise of notebook {number}")
            if check_id not in CHECKS:
                raise ValueError(f"{where}: no check {check_id} in t2vlad_lib.course.checks.CHECKS")
            ex = found.get(n)
            if ex is None:
                raise ValueError(f"{where}: check {check_id} comes before the solution cell of exercise {n}")
            if ex.open_ended:
                raise ValueError(f"{where}: exercise {n} is tagged '{OPEN_ENDED}' and so has no check")
            if ex.check is not None:
                raise ValueError(f"{where}: exercise {n} has a second check cell (cell {ex.check})")
            ex.check, ex.check_id = i, check_id
    unchecked = [ex.number for ex in found.values() if ex.check is None and not ex.open_ended]
    if unchecked:
        raise ValueError(f"{name}: exercise(s) {unchecked} have no check cell; tag a solution without a "
                         f"definite answer '{OPEN_ENDED}'")
    return sorted(found.values(), key=lambda ex: ex.number)


def _nbgrader(cell, grade_id: str, solution: bool) -> None:
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution, "grade": False,
                                 "locked": not solution, "schema_version": 3}


def student_notebook(nb, name: str):
    """The student edition of notebook ``nb`` (a copy): solutions replaced by stubs, check cells read-only,
    outputs cleared."""
    found = exercises(nb, name)
    nb = copy.deepcopy(nb)
    stem = Path(name).stem
    resources = {"language": "python"}
    clear = ClearSolutions(code_stub={"python": CODE_STUB}, text_stub=TEXT_STUB)
    clear_open = ClearSolutions(code_stub={"python": OPEN_STUB}, text_stub=TEXT_STUB)
    for i, cell in enumerate(nb.cells):  # written solutions (explanations, expected values)
        if cell.cell_type == "markdown" and SOLUTION in _tags(cell):
            _nbgrader(cell, f"{stem}-text{i}", solution=True)
            clear.preprocess_cell(cell, resources, i)
    for ex in found:
        cell = nb.cells[ex.solution]
        _nbgrader(cell, f"{stem}-ex{ex.number}", solution=True)
        (clear_open if ex.open_ended else clear).preprocess_cell(cell, resources, ex.solution)
        if ex.check is not None:
            cell = nb.cells[ex.check]
            cell.source = "\n".join(ln for ln in cell.source.split("\n") if not ln.startswith("# NBVAL_"))
            _nbgrader(cell, f"{stem}-ex{ex.number}-check", solution=False)
    nb, _ = LockCells().preprocess(nb, {})
    nb, _ = ClearOutput().preprocess(nb, {})
    if found or any(SOLUTION in _tags(c) for c in nb.cells):
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(NOTE))
    nbformat.validate(nb)
    return nb


def write_student_edition(out: Path, notebooks: list[Path]) -> dict[Path, int]:
    """Write the student edition of ``notebooks`` into ``out`` (emptied first); return {file: exercises}."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ipynb"):
        old.unlink()
    written = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        dest = out / path.name
        dest.write_text(nbformat.writes(student_notebook(nb, path.name), indent=1, ensure_ascii=False) + "\n")
        written[dest] = len(exercises(nb, path.name))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2vlad_lib.course.student",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "student" / "notebooks")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of notebooks/")
    args = parser.parse_args(argv)
    paths = args.notebooks or notebooks()
    t0 = time.monotonic()
    try:
        written = write_student_edition(args.out, paths)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"student edition: {len(written)} notebooks, {sum(written.values())} exercises in the tagged "
          f"format, in {args.out} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
