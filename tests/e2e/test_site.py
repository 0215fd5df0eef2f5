"""The course website (``make site``) and both editions, built once per session from a fresh copy of the
repository (its tracked and unignored files, as a clone would hold them) with the network closed to the build.

The HTML: every page the table of contents lists, in course order; the README's tables and figures on the
front page; no script, style sheet, font or image from another host. In headless Debian chromium (as
``test_jupyterlab_browser.py``), served from 127.0.0.1 with every other host blocked: every page loads, its
equations are typeset by the site's own MathJax, its images load, the console stays free of errors, and the
sidebar lists the notebooks in course order. The browser part is skipped, with the reason, without chromium.

Why it must stay, and why end to end: the site is what students read; only a build from what a clone holds
catches a file that is missing from git, and only a browser catches untypeset equations, broken images and
console errors. Building both editions and driving chromium take minutes, so ``make test`` runs this after
the unit tests (``make test-e2e``).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = Path("/usr/bin/chromium")
OFFLINE = {  # any HTTP(S) request of the build goes to a closed local port and fails
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": "", "npm_config_offline": "true",
    "PIP_NO_INDEX": "1",
}
REMOTE = re.compile(r"^(https?:)?//", re.I)


def fresh_copy(dest: Path) -> Path:
    """Copy what a clone of the working tree would hold (tracked and untracked-but-not-ignored files)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(cwd)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed in a fresh copy:\n{proc.stderr[-4000:]}"
    return proc, time.monotonic() - t0


@pytest.fixture(scope="session")
def editions(tmp_path_factory) -> dict:
    """Both editions built from a fresh copy: {"site", "student", "clone": Path, "seconds", "warnings"}."""
    if not (Path(sys.executable).parent / "jupyter-book").exists():
        pytest.skip("jupyter-book is not installed: install the 'teaching' extra (make install)")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the fresh copy lists the repository's files with git")
    from t2vlad_lib.course.website import MATHJAX_VERSION, vendor_mathjax

    try:  # `make mathjax` (part of make site / make test) unpacks it; here only if it was not run
        mathjax = vendor_mathjax(ROOT / "build" / "vendor" / f"mathjax-{MATHJAX_VERSION}")
    except RuntimeError as err:
        pytest.skip(str(err))
    base = tmp_path_factory.mktemp("editions")
    clone = fresh_copy(base / "clone")
    site, student = base / "site", base / "student"
    _, site_s = _run(["-m", "t2vlad_lib.course.website", "--out", str(site), f"--mathjax={mathjax}"], clone)
    _, student_s = _run(["-m", "t2vlad_lib.course.student", "--out", str(student)], clone)
    print(f"fresh copy: site built in {site_s:.0f} s, student edition in {student_s:.0f} s")
    return {"site": site, "student": student, "clone": clone, "seconds": (site_s, student_s),
            "warnings": (clone / "build" / "site-src" / "warnings.txt").read_text()}


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_both_editions_build_from_a_fresh_copy_offline(editions):
    site, student = editions["site"], editions["student"]
    for nb in NOTEBOOKS:
        assert (site / "notebooks" / f"{nb.stem}.html").exists(), f"no page for {nb.name}"
        assert (student / nb.name).exists(), f"no student edition of {nb.name}"
    assert (site / "index.html").exists()
    assert editions["warnings"] == "", f"Jupyter Book warned:\n{editions['warnings']}"


def test_nothing_loads_from_another_host(editions):
    site = editions["site"]
    tag = re.compile(r"<(script|link|img|iframe|source|video|audio)\b[^>]*>", re.I)
    attr = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.I)
    found = []
    for page in _pages(site):
        for m in tag.finditer(page.read_text()):
            element = m.group(0)
            loads = re.search(r'rel="(stylesheet|preload|modulepreload|icon)', element)
            if m.group(1).lower() == "link" and not loads:
                continue  # <link rel="next" ...> and the like are navigation, not loads
            found += [f"{page.relative_to(site)}: {element[:160]}" for _, url in attr.findall(element)
                      if REMOTE.match(url)]
    for sheet in site.rglob("*.css"):
        urls = re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", sheet.read_text())
        found += [f"{sheet.relative_to(site)}: {u}" for u in urls]
    assert not found, "the site loads from another host:\n" + "\n".join(found[:20])
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax is not served by the site"
    assert not list(site.rglob("latest.js")), "MathJax's latest.js (it loads from a CDN) is in the site"


def test_front_page_has_the_readme_tables_and_figures(editions):
    index = (editions["site"] / "index.html").read_text()
    readme = (ROOT / "README.md").read_text()
    tables = len(re.findall(r"^\|[-| :]+\|\s*$", readme, re.M))
    assert index.count("<table") == tables, f"{index.count('<table')} tables on the page, {tables} in README"
    for figure in re.findall(r"!\[[^]]*\]\((docs/figures/[^)]+\.png)\)", readme):
        assert f'src="_images/{Path(figure).name}"' in index, f"{figure} is not on the front page"
        assert (editions["site"] / "_images" / Path(figure).name).exists()


def test_table_of_contents_is_the_course_order(editions):
    index = (editions["site"] / "index.html").read_text()
    nav = index[index.index('bd-docs-nav'):]
    nav = nav[:nav.index("</nav>")]
    order = re.findall(r'href="notebooks/(\d\d_[^"#]+)\.html"', nav)
    assert order == [nb.stem for nb in NOTEBOOKS], order


# in a browser

@pytest.fixture(scope="module")
def browser_page(editions):
    """(new_page(), base URL, requests to other hosts) with the site served on 127.0.0.1."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (run `make browser`, i.e. apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the 'test' extra (playwright)")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(editions["site"])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(base):
            r.continue_()
        else:  # the network is closed: anything else is recorded and refused
            outside.append(r.request.url)
            r.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        context.route("**/*", route)
        try:
            yield context.new_page, base, outside
        finally:
            browser.close()
            server.shutdown()


# the typeset text of a page outside code, equations and MathJax's output: no TeX delimiters may be left there
VISIBLE_TEXT = """() => {
  const root = document.querySelector('main') || document.body;
  const copy = root.cloneNode(true);
  copy.querySelectorAll('pre, code, mjx-container, script, style, .highlight').forEach(e => e.remove());
  return copy.innerText;
}"""


@pytest.mark.browser
@pytest.mark.parametrize("page", ["index.html"] + [f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS])
def test_page_in_the_browser(browser_page, page):
    new_page, base, outside = browser_page
    errors: list[str] = []
    tab = new_page()
    tab.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    tab.on("requestfailed", lambda r: errors.append(f"failed request: {r.url}"))
    before = len(outside)
    try:
        response = tab.goto(base + page, wait_until="load", timeout=60_000)
        assert response is not None and response.ok, f"{page}: HTTP {response and response.status}"
        n_math = tab.locator(".math").count()
        if n_math:
            tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                  timeout=60_000)
            tab.evaluate("() => MathJax.startup.promise")
            untypeset = tab.evaluate("() => Array.from(document.querySelectorAll('.math'))"
                                     ".filter(e => !e.querySelector('mjx-container'))"
                                     ".map(e => e.textContent)")
            assert not untypeset, f"{page}: {len(untypeset)} of {n_math} equations untypeset: {untypeset[:3]}"
            tex_errors = tab.locator("mjx-merror").all_text_contents()
            assert not tex_errors, f"{page}: MathJax could not typeset: {tex_errors[:3]}"
        text = tab.evaluate(VISIBLE_TEXT)
        raw = re.findall(r"\$[^$\s][^$\n]*\$|\\\(.+?\\\)|\\\[.+?\\\]", text)
        assert not raw, f"{page}: raw TeX left in the text: {raw[:3]}"
        tab.evaluate("() => Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
        broken = tab.evaluate("() => Array.from(document.images).filter(i => !(i.naturalWidth > 0))"
                              ".map(i => i.getAttribute('src'))")
        assert not broken, f"{page}: images that did not load: {broken}"
        nav = tab.evaluate("() => Array.from(document.querySelectorAll('nav.bd-docs-nav a.reference'))"
                           ".map(a => a.textContent.trim().slice(0, 2))")
        numbers = [t for t in nav if t.isdigit()]
        assert numbers == [nb.name[:2] for nb in NOTEBOOKS], f"{page}: sidebar order {numbers}"
        tab.wait_for_timeout(300)  # late console messages (MathJax's font loads, the theme's scripts)
    finally:
        tab.close()
    assert not errors, f"{page}: " + "; ".join(errors[:5])
    assert len(outside) == before, f"{page} asked other hosts: {outside[before:][:5]}"
