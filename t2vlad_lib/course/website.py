"""``make site``: the course as a static website, built by Jupyter Book 1 (Sphinx + myst-nb) from the README
and the notebooks with their stored outputs. Nothing is executed, and no page loads anything from another
host: MathJax 3 (the npm package ``mathjax``) is served from the site's own ``_static/mathjax/``.

``python -m t2vlad_lib.course.website [--out build/site] [--mathjax DIR]`` stages the pages in
``build/site-src/`` (the README as the front page, the notebooks in course order, the pages the README links
to, ``docs/site/_config.yml`` and a table of contents written from the notebook numbers) and builds the HTML
into ``--out``. ``--mathjax`` is an unpacked ``es5/`` folder of the npm package; without it the build unpacks
the package once into ``build/vendor/`` with ``npm pack`` (the npm registry is the only host it asks).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MATHJAX_VERSION = "3.2.2"
MATHJAX_ENTRY = "tex-chtml.js"  # TeX in, HTML+CSS out (Sphinx's default component); fonts in output/chtml/
# parts of the npm package's es5/ the site never loads: other outputs, bundles, node's entry, and latest.js,
# which fetches MathJax from a CDN
MATHJAX_SKIP = ("output/svg", "mml-", "tex-mml-", "tex-svg", "-full", "node-main.js", "latest.js")
# pages the README links to, shown after the course (part "Results and data"), with the title a page gets
# when it has none (notebook 07 writes its tables without one)
LINKED_PAGES = {
    "docs/results/ablations.md": "The paper's ablations on DigitClips (notebook 07)",
    "docs/results/beyond.md": "Beyond T2VLAD on DigitClips (notebook 10)",
    "docs/results/diagnosis.md": "Why do the shared centers not specialise? (notebook 08)",
    "docs/results/rerankers.md": "Re-ranking T2VLAD's top k on DigitClips (notebook 11)",
    "docs/results/text_encoder.md": "The text encoder on DigitClips (notebook 12)",
    "data_samples/README.md": "The shipped data samples",
    "docs/teaching.md": "Teaching with t2vlad",
    "docs/reproducibility.md": "Reproducibility: where the course's numbers come from",
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("*An interactive widget: it runs in JupyterLab (`make lab`), not on this page; the notebook "
               "draws a fixed-value version of it as well.*")


def notebooks(repo: Path = REPO) -> list[Path]:
    """The course notebooks in course order (their two-digit number)."""
    return sorted((repo / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def vendor_mathjax(dest: Path, version: str = MATHJAX_VERSION) -> Path:
    """Unpack the ``es5/`` folder of the npm package ``mathjax@version`` into ``dest`` (once); return dest."""
    if (dest / MATHJAX_ENTRY).exists():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is not installed: it fetches mathjax@{version} for the site (apt-get "
                           "install npm), or pass --mathjax with an unpacked es5/ folder of that package")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", "--silent", f"mathjax@{version}", "--pack-destination", tmp],
                       check=True, stdout=subprocess.DEVNULL)
        (tgz,) = Path(tmp).glob("mathjax-*.tgz")
        staging = Path(tmp) / "unpacked"
        with tarfile.open(tgz) as tar:
            tar.extractall(staging, filter="data")
        es5 = staging / "package" / "es5"
        for path in sorted(es5.rglob("*")):
            rel = path.relative_to(es5).as_posix()
            if path.is_file() and not any(s in rel for s in MATHJAX_SKIP):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / rel)
        shutil.copy2(staging / "package" / "LICENSE", dest / "LICENSE")
    return dest


def _toc(pages: list[str]) -> str:
    """Jupyter Book's ``_toc.yml``: the README, then the notebooks in course order, then the linked pages."""
    course = [p for p in pages if p.startswith("notebooks/")]
    rest = [p for p in pages if not p.startswith("notebooks/")]
    lines = ["format: jb-book", "root: index", "parts:", "  - caption: The course", "    chapters:"]
    lines += [f"      - file: {p.rsplit('.', 1)[0]}" for p in course]
    lines += ["  - caption: Results and data", "    chapters:"]
    lines += [f"      - file: {p.rsplit('.', 1)[0]}" for p in rest]
    return "\n".join(lines) + "\n"


def _notebook_for_the_web(src: Path, dest: Path) -> None:
    """Copy a notebook, with each stored widget view (empty without a kernel) replaced by a one-line note."""
    nb = json.loads(src.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if WIDGET_VIEW in out.get("data", {}):
                out["data"] = {"text/markdown": WIDGET_NOTE}
                out.get("metadata", {}).pop(WIDGET_VIEW, None)
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def stage(src: Path, mathjax: Path, repo: Path = REPO) -> list[str]:
    """Write the book's sources into ``src`` (emptied first); return its pages in table-of-contents order."""
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    shutil.copy2(repo / "README.md", src / "index.md")
    shutil.copy2(repo / "docs" / "site" / "_config.yml", src / "_config.yml")
    shutil.copytree(repo / "docs" / "figures", src / "docs" / "figures")
    pages = []
    for nb in notebooks(repo):
        _notebook_for_the_web(nb, src / "notebooks" / nb.name)
        pages.append(f"notebooks/{nb.name}")
    for page, title in LINKED_PAGES.items():
        (src / page).parent.mkdir(parents=True, exist_ok=True)
        text = (repo / page).read_text()
        (src / page).write_text(text if text.startswith("# ") else f"# {title}\n\n{text}")
        pages.append(page)
    (src / "_toc.yml").write_text(_toc(pages))
    # not in _static/, whose every .js Jupyter Book would add to every page: _config.yml copies _vendor/ there
    shutil.copytree(mathjax, src / "_vendor" / "mathjax")
    return pages


def build(out: Path, mathjax: Path | None = None, repo: Path = REPO, quiet: bool = True) -> Path:
    """Stage the sources in ``build/site-src/``, build them with ``jupyter-book build`` and move the HTML to
    ``out`` (replaced)."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    if not jupyter_book.exists():
        raise RuntimeError(f"{jupyter_book} not found: install the 'teaching' extra (make site does)")
    build_dir = repo / "build"
    mathjax = mathjax or vendor_mathjax(build_dir / "vendor" / f"mathjax-{MATHJAX_VERSION}")
    src = build_dir / "site-src"
    stage(src, mathjax, repo)
    cmd = [str(jupyter_book), "build", str(src), "--keep-going"] + (["--quiet"] if quiet else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build {src} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln]
    (src / "warnings.txt").write_text("\n".join(warnings) + "\n" if warnings else "")
    if out.exists():
        shutil.rmtree(out)
    shutil.move(src / "_build" / "html", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2vlad_lib.course.website",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "site")
    parser.add_argument("--mathjax", type=Path, default=None, help="an unpacked es5/ folder of mathjax@3")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        out = build(args.out.resolve(), args.mathjax)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    warnings = (REPO / "build" / "site-src" / "warnings.txt").read_text().splitlines()
    for line in warnings:
        print(line)
    print(f"site: {out / 'index.html'} ({len(notebooks())} notebooks, {len(warnings)} warnings, "
          f"{time.monotonic() - t0:.0f} s); serve it with `python -m http.server -d {out}` or copy the "
          "folder to any static host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
