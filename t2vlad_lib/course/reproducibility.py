"""``docs/reproducibility.md``: where and how every shipped run was trained, generated from the manifest.

The notebooks say what a result is; this file says where it came from (machine, date, code commit, training
time, thread count), so that the lessons stay free of it. The part between the two markers is written by
:func:`write` from ``shipped_runs/manifest.json`` (``make shipped`` calls it); the rest of the file is prose
kept by hand. ``tests/test_shipped.py`` checks that the generated part matches the manifest.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..core.checkpoint import atomic_write_text
from .shipped import SHIPPED_DIR, manifest

__all__ = ["DOC", "BEGIN", "END", "runs_table", "write"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "reproducibility.md"
BEGIN = "<!-- generated from shipped_runs/manifest.json by t2vlad_lib.course.reproducibility: do not edit -->"
END = "<!-- end of the generated part -->"


def _group(name: str) -> str:
    """``"kind-separate/seed3"`` -> ``"kind-separate"``: the run directory without its seed."""
    return name.rsplit("/", 1)[0]


def runs_table(man: dict[str, Any] | None = None) -> str:
    """One row per run directory (its seeds together): machine, date, commit, seeds, training seconds."""
    man = manifest(SHIPPED_DIR) if man is None else man
    rows: dict[tuple, list] = defaultdict(list)
    for name, entry in sorted(man["runs"].items()):
        commit = entry.get("code", {}).get("commit", "?")
        rows[(_group(name), entry.get("machine", "?"), entry.get("date", "?"), commit)].append(entry)
    lines = ["| run directory | seeds | trained on | date | code | training (s) | weights shipped |",
             "|---|---|---|---|---|---|---|"]
    for (group, where, date, commit), entries in rows.items():
        seeds = ", ".join(str(e.get("seed", "?")) for e in entries)
        secs = [e["train_seconds"] for e in entries if e.get("train_seconds")]
        span = f"{min(secs):.0f}-{max(secs):.0f}" if len(secs) > 1 else (f"{secs[0]:.0f}" if secs else "-")
        weights = sum(bool(e.get("checkpoint")) for e in entries)
        lines.append(f"| `{group}` | {seeds} | {where} | {date} | {commit} | {span} | {weights or '-'} |")
    return "\n".join(lines)


def _generated(man: dict[str, Any]) -> str:
    n = len(man["runs"])
    return (f"{BEGIN}\n\n{n} shipped runs (`shipped_runs/`). Every run trained at one torch thread "
            "(`OMP_NUM_THREADS=1`), usually beside other jobs: its training seconds are indicative, not a "
            "benchmark (`benchmarks/` measures speed side by side).\n\n" + runs_table(man) + f"\n\n{END}")


def write(path: str | Path = DOC, man: dict[str, Any] | None = None) -> Path:
    """Rewrite the generated part of ``path`` (created with only that part when missing)."""
    path, man = Path(path), manifest(SHIPPED_DIR) if man is None else man
    text = path.read_text() if path.exists() else f"# Reproducibility\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: the markers of the generated part are missing ({BEGIN!r} ... {END!r})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return atomic_write_text(path, head + _generated(man) + tail)
