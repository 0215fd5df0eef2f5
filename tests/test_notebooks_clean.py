"""The "clean notebook" rule: every course notebook is readable on the web and reruns in order.

Stored outputs from a restart-and-run-all (execution counts 1..n), kernelspec python3, no saved
widget state, no stored errors, under 1 MB, a header with run times, a setup cell, a Summary and
Exercises, and no training loop in a notebook.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(nb, kind):
    return [c for c in nb["cells"] if c["cell_type"] == kind]


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_numbering_is_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), numbers


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    size = path.stat().st_size
    assert size < 1_000_000, f"{path.name}: {size / 1e6:.2f} MB (keep under 1 MB)"
    nb = json.loads(path.read_text())
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernelspec must be python3"
    )
    assert "widgets" not in nb["metadata"], f"{path.name}: saved widget state in metadata"
    code = [c for c in _cells(nb, "code") if _src(c).strip()]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts} are not 1..n"
    for i, c in enumerate(code):
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: stored error in code cell {i + 1}"
            assert "application/vnd.jupyter.widget-state+json" not in out.get("data", {}), path.name
    assert any(c.get("outputs") for c in code), f"{path.name}: no stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_structure(path):
    nb = json.loads(path.read_text())
    header = _src(nb["cells"][0])
    assert nb["cells"][0]["cell_type"] == "markdown" and header.lstrip().startswith("#"), (
        f"{path.name}: no title"
    )
    for needle in ("What you will build", "Prerequisites", "T2VLAD_FAST"):
        assert needle in header, f"{path.name}: header lacks '{needle}'"
    assert re.search(r"\d+\s*(s|min|seconds|minutes)\b", header), f"{path.name}: header states no run time"
    setup = _src(_cells(nb, "code")[0])
    for needle in ("seed_everything", "set_plot_style", "get_device"):
        assert needle in setup, f"{path.name}: the first code cell (setup) lacks {needle}"
    markdown = "\n".join(_src(c) for c in _cells(nb, "markdown"))
    assert re.search(r"^#+\s*Summary", markdown, re.M), f"{path.name}: no Summary section"
    assert re.search(r"^#+\s*Exercises", markdown, re.M), f"{path.name}: no Exercises section"
    code = "\n".join(_src(c) for c in _cells(nb, "code"))
    assert not re.search(r"\b\w*opt\w*\.step\(", code), f"{path.name}: a training loop in a notebook"
    assert "allclose" in code or "assert" in code, f"{path.name}: no check against the library"


@pytest.mark.parametrize("path", NOTEBOOKS + [NOTEBOOKS[0].parents[1] / "README.md"],
                         ids=[p.name for p in NOTEBOOKS] + ["README.md"])
def test_no_pointer_to_files_outside_the_repository(path):
    """The course states facts with the paper's section; it never sends readers to the maintainers' notes."""
    text = path.read_text()
    for needle in ("REFERENCE.md", "papers/", "etva_extract", "../shared"):
        assert needle not in text, f"{path.name} points to {needle!r}, which is not in the repository"
