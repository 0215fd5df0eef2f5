"""The README's result tables are copies of the tables in ``docs/results/``, which the notebooks write.

A table in the README sits between two markers naming its source::

    <!-- table: docs/results/ablations.md 1 -->
    | row | seeds | ... |
    <!-- end table -->

(the first markdown table of that file). :func:`sync` rewrites every such block from its source; ``python -m
t2vlad_lib.course.readme`` does it in place, and ``tests/test_readme.py`` fails when the README and
``docs/results`` disagree, so a number is never edited in one place only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["ROOT", "tables", "sync"]

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"(<!-- table: (?P<src>\S+) (?P<n>\d+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def tables(markdown: str) -> list[str]:
    """The markdown tables of a text, in order: runs of lines that start with ``|``."""
    out, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def sync(readme: str, root: Path = ROOT) -> str:
    """``readme`` with every marked block replaced by the table it names (1-based) of its source file."""

    def replace(m: re.Match) -> str:
        path = root / m["src"]
        found = tables(path.read_text()) if path.exists() else []
        n = int(m["n"])
        if not 1 <= n <= len(found):
            raise ValueError(f"README: {m['src']} has {len(found)} tables; the marker asks for table {n}")
        return f"{m.group(1)}{found[n - 1]}\n{m.group(5)}"

    return _BLOCK.sub(replace, readme)


if __name__ == "__main__":
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = sync(text)
    readme.write_text(new)
    print("README tables " + ("updated from docs/results" if new != text else "already match docs/results"))
    sys.exit(0)
