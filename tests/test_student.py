"""The exercise format and the student edition (``make student``, ``t2vlad_lib.course.student``).

On ``tests/fixtures/exercises.ipynb`` (two of the course's exercises and an open-ended one, in the format of
``docs/teaching.md``): the student edition keeps prompts and checks, replaces solutions by stubs and clears
outputs; run in a kernel, the instructor edition passes every check and the student edition fails every check
with its message. Every check of ``t2vlad_lib.course.checks`` names the usual mistakes; every notebook of the
course follows the format, and its stored check outputs say pass.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from exercise_cases import MISTAKES, RIGHT  # one section per notebook

from t2vlad_lib.course.checks import CHECKS, check_exercise, problem

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader", reason="install the 'teaching' extra (make install)")
from t2vlad_lib.course import student  # noqa: E402  (needs nbgrader)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "exercises.ipynb"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

MISTAKE_IDS = [f"{m[0]}: {m[3]}" for m in MISTAKES]


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _text(cell) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))


# the checks

@pytest.mark.parametrize("exercise, answer, inputs", RIGHT, ids=[r[0] for r in RIGHT])
def test_a_right_answer_passes(exercise, answer, inputs, capsys):
    assert problem(exercise, answer, **inputs) is None
    check_exercise(exercise, answer, **inputs)
    assert capsys.readouterr().out == f"Exercise {exercise}: pass\n"


@pytest.mark.parametrize("exercise, answer, inputs, words", MISTAKES, ids=MISTAKE_IDS)
def test_a_mistake_gets_its_sentence(exercise, answer, inputs, words, capsys):
    message = problem(exercise, answer, **inputs)
    assert message is not None and words in message, message
    assert "\n" not in message and message.endswith("."), f"one sentence: {message!r}"
    check_exercise(exercise, answer, **inputs)
    assert capsys.readouterr().out.startswith(f"Exercise {exercise}: not yet. ")


@pytest.mark.parametrize("exercise", sorted(CHECKS))
def test_every_check_fails_the_stub_with_its_message(exercise):
    inputs = next((i for e, _, i in RIGHT if e == exercise), None)
    assert inputs is not None, f"add a right answer of {exercise} to RIGHT (and its mistakes to MISTAKES)"
    assert any(m[0] == exercise for m in MISTAKES), f"no mistake of {exercise} is tested"
    message = problem(exercise, ..., **inputs)
    assert message is not None and "`answer` is still empty" in message, message
    assert CHECKS[exercise].expects in message, message


def test_an_unknown_exercise_is_an_error():
    with pytest.raises(KeyError, match="no check for exercise '99.9'"):
        problem("99.9", 1.0)


def test_every_check_is_used_by_a_notebook_or_the_fixture():
    used = set()
    for path in NOTEBOOKS + [FIXTURE]:
        nb = json.loads(path.read_text())
        used |= {ex.check_id for ex in student.exercises(nb, path.name) if ex.check_id}
    assert set(CHECKS) <= used, f"checks no check cell calls: {sorted(set(CHECKS) - used)}"


# the format and the student edition

def _fixture():
    return nbformat.read(FIXTURE, as_version=4)


def test_the_fixture_follows_the_format():
    found = student.exercises(_fixture(), FIXTURE.name)
    assert [(e.number, e.check_id, e.open_ended) for e in found] == [(1, "00.1", False), (2, "05.2", False),
                                                                      (3, None, True)]


def test_student_edition_replaces_solutions_keeps_prompts_and_checks():
    nb = _fixture()
    out = student.student_notebook(nb, FIXTURE.name)
    nbformat.validate(out)
    src = [_source(c) for c in out.cells]
    text = "\n".join(src)
    for solution in ("(S > np.diag(S)", "global_similarity(f_t", "0.425", "half a rank", "R@1 rises"):
        assert solution not in text, f"the student edition still holds {solution!r}"
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert text.count(student.CODE_STUB) == 2
    assert text.count(student.OPEN_STUB) == 3  # also inside the two CODE_STUBs
    assert src.count(student.TEXT_STUB) == 1
    assert "# Solution to exercise 1" in text and "(Open-ended) Why does a split tie count half?" in text
    checks = [c for c in out.cells if "check" in c.metadata.get("tags", [])]
    assert [_source(c) for c in checks] == ['check_exercise("00.1", answer, sims=S)',
                                            'check_exercise("05.2", answer)']
    assert all(c.metadata["editable"] is False and c.metadata["deletable"] is False for c in checks)
    code = [c for c in out.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert student.NOTE in src[1]
    assert len(out.cells) == len(nb.cells) + 1 and _source(nb.cells[3]).count("BEGIN SOLUTION") == 1  # a copy


def _break(edit):
    nb = copy.deepcopy(_fixture())
    edit(nb.cells)
    return nb


def _tags(cell, *tags):
    cell.metadata["tags"] = list(tags)


BAD = {
    "no check cell": (lambda c: c.pop(4), "exercise(s) [1] have no check cell"),
    "check before its solution": (lambda c: c.insert(3, c.pop(4)), "comes before the solution cell"),
    "unknown check": (lambda c: setattr(c[4], "source", 'check_exercise("07.9", answer)'), "no check 07.9"),
    "markers in an untagged cell": (lambda c: _tags(c[3]), "solution markers in a cell not tagged"),
    "no header": (lambda c: setattr(c[3], "source", c[3].source.replace("# Solution to", "#")),
                  "starts with '# Solution to exercise N'"),
    "code after END": (lambda c: setattr(c[3], "source", c[3].source + "\nprint(answer)"), "nothing follows"),
    "open-ended with a check": (lambda c: _tags(c[3], "solution", "open-ended"), "has no check"),
    "two checks": (lambda c: c.insert(5, copy.deepcopy(c[4])), "second check cell"),
    "open-ended alone": (lambda c: _tags(c[2], "open-ended"), "belongs on a cell also tagged 'solution'"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_broken_format_names_the_cell(case):
    edit, words = BAD[case]
    with pytest.raises(ValueError, match="exercises.ipynb") as err:
        student.exercises(_break(edit), FIXTURE.name)
    assert words in str(err.value), str(err.value)


def test_a_check_of_another_notebook_is_refused():
    with pytest.raises(ValueError, match="check 00.1 is not an exercise of notebook 05"):
        student.exercises(_fixture(), "05_global_alignment.ipynb")


def test_the_command_writes_one_notebook_per_input_and_says_what_is_wrong(tmp_path, capsys):
    assert student.main(["--out", str(tmp_path / "out"), str(FIXTURE)]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [FIXTURE.name]
    bad = tmp_path / "bad.ipynb"
    nbformat.write(_break(BAD["no check cell"][0]), bad)
    assert student.main(["--out", str(tmp_path / "out2"), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: bad.ipynb: exercise(s) [1] have no check cell"), err


@pytest.mark.slow
def test_instructor_solutions_pass_and_student_stubs_fail_in_a_kernel(tmp_path, monkeypatch):
    """Both editions of the fixture run in a Jupyter kernel, cell by cell, as a student would run them."""
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    instructor = _fixture()
    editions = {"instructor": instructor, "student": student.student_notebook(instructor, FIXTURE.name)}
    for name, nb in editions.items():
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        outputs = [_text(c).strip() for c in nb.cells if "check" in c.metadata.get("tags", [])]
        if name == "instructor":
            assert outputs == ["Exercise 00.1: pass", "Exercise 05.2: pass"], outputs
        else:
            stub = [f"Exercise {e}: not yet. {problem(e, ..., **i)}" for e, _, i in RIGHT
                    if e in ("00.1", "05.2")]  # the fixture's two checks
            assert outputs == stub, outputs


# the course notebooks

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_the_exercise_format_and_its_checks_passed(path):
    nb = json.loads(path.read_text())
    for ex in student.exercises(nb, path.name):  # raises on a broken format, naming the cell
        if ex.check is not None:
            out = _text(nb["cells"][ex.check]).strip()
            assert out == f"Exercise {ex.check_id}: pass", (
                f"{path.name} cell {ex.check}: the instructor solution's stored check says {out!r}")
