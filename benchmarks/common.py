"""Shared benchmark helpers: machine description, interleaved timing, synthetic inputs, RESULTS.md sections.

The machine is shared and noisy: every comparison runs its contenders interleaved (A, B, A, B, ...)
in one process and reports medians and the ratio of medians.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from t2vlad_lib.core.batch import TextBatch, VideoBatch
from t2vlad_lib.core.utils import times_in_turns
from t2vlad_lib.data.experts import EXPERT_SHAPES

RESULTS = Path(__file__).with_name("RESULTS.md")

# Tutorial dims: expert -> (T_e, D_e) of DigitClips, the data the tutorial profile trains on; M = 33 tokens.
TUTORIAL_EXPERTS: dict[str, tuple[int, int]] = dict(EXPERT_SHAPES)
# The paper's experts with the released feature widths; T_e chosen so M = 364 (MMT's order of tokens).
PAPER_EXPERTS = {
    "audio": (60, 128), "speech": (30, 300), "face": (30, 512), "ocr": (30, 300),
    "rgb": (60, 2048), "flow": (60, 1024), "s3d": (60, 1024), "scene": (34, 2208),
}


def machine_info() -> dict[str, str]:
    """CPU model, cores, torch threads and version, python, date."""
    cpu = "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory GB": _mem_gb(),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "faiss": faiss_version,
        "python": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
    }


def _mem_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f}"
    except OSError:
        pass
    return "unknown"


def rss_bytes() -> int:
    """Resident memory of this process (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each function ``warmup`` times, then ``repeats`` rounds of A, B, ...; seconds per call (the
    library's :func:`t2vlad_lib.core.utils.times_in_turns`, which the notebooks' query timings use too)."""
    return times_in_turns(fns, repeats, warmup)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def random_video_batch(experts: dict[str, tuple[int, int]], n: int, seed: int = 0) -> VideoBatch:
    """n videos with random features, random real lengths in [T_e/2, T_e] (rest padded), every expert present.

    features[e]: (n, T_e, D_e), token_mask[e]: (n, T_e), available[e]: (n,).
    """
    g = torch.Generator().manual_seed(seed)
    feats, masks, avail = {}, {}, {}
    for e, (T, d) in experts.items():
        lengths = torch.randint(max(1, T // 2), T + 1, (n, 1), generator=g)
        masks[e] = torch.arange(T).unsqueeze(0) < lengths
        feats[e] = torch.randn(n, T, d, generator=g) * masks[e].unsqueeze(-1)
        avail[e] = torch.ones(n, dtype=torch.bool)
    return VideoBatch(feats, masks, avail, [f"video{i}" for i in range(n)])


def random_text_batch(n: int, length: int = 24, width: int = 384, seed: int = 1) -> TextBatch:
    """n captions as cached token states (n, L, H) with random lengths in [5, L] (no text encoder needed)."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(length).unsqueeze(0) < torch.randint(5, length + 1, (n, 1), generator=g)).long()
    states = torch.randn(n, length, width, generator=g)
    return TextBatch(torch.zeros(n, length, dtype=torch.long), mask, states)


def markdown_table(rows: list[dict], floatfmt: str = ".3g") -> str:
    """A list of dicts (same keys) as a GitHub markdown table."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def fmt(v: object) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def read_table(name: str, path: Path = RESULTS) -> list[dict[str, float | str | None]]:
    """The markdown table of section ``name`` of ``path`` (written by :func:`write_section`), one dict per
    row: numbers as floats, blank cells as None, other cells as strings."""
    text = path.read_text()
    found = re.search(rf"<!-- begin {re.escape(name)} -->(.*?)<!-- end {re.escape(name)} -->", text, re.S)
    if found is None:
        raise KeyError(f"{path}: no section {name!r} (expected <!-- begin {name} --> ... <!-- end -->)")
    lines = [ln.strip() for ln in found.group(1).splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        raise ValueError(f"{path}: section {name!r} has no markdown table (a header and a --- line)")

    def cell(c: str) -> float | str | None:
        c = c.strip()
        if not c:
            return None
        try:
            return float(c)
        except ValueError:
            return c

    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = ln.strip("|").split("|")
        if len(cells) != len(header):
            raise ValueError(
                f"{path}: section {name!r}: row {ln!r} has {len(cells)} cells, the header {len(header)}"
            )
        rows.append(dict(zip(header, map(cell, cells), strict=True)))
    return rows


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the block between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by `python -m benchmarks.run`.\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
