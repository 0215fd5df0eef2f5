"""The library's layers: every import of ``t2vlad_lib`` goes down (or sideways within a layer), never up, and
no two modules import each other, directly or through others. Imports inside functions count too.

core (0) < data (1) < model (2) < engine (3) < extensions (4) < course (5) < cli (6)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "t2vlad_lib"
LAYERS = {"core": 0, "data": 1, "model": 2, "engine": 3, "extensions": 4, "course": 5,
          "cli": 6, "__main__": 6}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in LIB.rglob("*.py")}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def _imports() -> list[tuple[str, str, int, bool, str]]:
    """(importer, imported module, line, inside a function, source line) for every import of the library."""
    mods, out = _modules(), []
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                 for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                target = ".".join(x for x in (base, node.module or "") if x)
                names = [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                target, names = "", [a.name for a in node.names]
            else:
                continue
            for name in names:
                found = next((c for c in (name, target) if c in mods), None)
                if found and found != mod:
                    out.append((mod, found, node.lineno, id(node) in inner, lines[node.lineno - 1]))
    return out


def test_every_module_has_a_layer():
    unknown = sorted(m for m in _modules() if "." in m and m.split(".")[1] not in LAYERS)
    assert not unknown, f"modules outside the layers {list(LAYERS)}: {unknown}"


def test_imports_only_go_down():
    up = [f"{src}:{line} imports {dst} (layer {_layer(dst)} > {_layer(src)})"
          for src, dst, line, _, _ in _imports() if _layer(dst) > _layer(src)]
    assert not up, "imports that go up a layer:\n" + "\n".join(up)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in _modules()}
    for src, dst, *_ in _imports():
        graph[src].add(dst)

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            m = todo.pop()
            if m == b:
                return True
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return False

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert not cycles, f"import cycles: {cycles}"


def test_imports_inside_functions_say_why():
    """Outside the CLI (whose imports wait for the command: start-up time), an import of the library inside a
    function needs its reason written beside it."""
    silent = [f"{src}:{line}: {text.strip()}" for src, _, line, inner, text in _imports()
              if inner and src != "t2vlad_lib.cli" and "#" not in text]
    assert not silent, "imports inside functions without a reason:\n" + "\n".join(silent)


def test_the_private_stays_private():
    private = [f"{src}:{line}: {text.strip()}" for src, dst, line, _, text in _imports()
               if dst.rsplit(".", 1)[-1].startswith("_") and not dst.endswith("__init__")]
    assert not private, "\n".join(private)


def test_each_layer_imports_alone():
    """Every layer imports in a fresh interpreter without the ones above it."""
    above = "('t2vlad_lib.extensions', 't2vlad_lib.course')"
    code = ("import sys, t2vlad_lib.core, t2vlad_lib.data, t2vlad_lib.model, t2vlad_lib.engine.train; "
            f"assert not [m for m in sys.modules if m.startswith({above})]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


MAX_FUNCTION_LINES = 80
# functions allowed to be longer because they are declarative tables (data, not logic): "module:function"
DECLARATIVE_TABLES: set[str] = set()


def _functions(node: ast.AST, prefix: str = ""):
    """(qualified name, lines from ``def`` to the end, docstring and nested functions included) of every
    function and method under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not isinstance(child, ast.ClassDef):
                yield prefix + child.name, child.end_lineno - child.lineno + 1
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _function_lengths() -> dict[str, int]:
    """"module:qualified name" -> lines, for every function of the library."""
    return {f"{mod}:{name}": n for mod, path in _modules().items()
            for name, n in _functions(ast.parse(path.read_text()))}


def test_no_function_over_80_lines():
    lengths = _function_lengths()
    assert lengths["t2vlad_lib.engine.loop:fit"] < MAX_FUNCTION_LINES  # the walk sees the library
    long = sorted(f"{name}: {n} lines" for name, n in lengths.items()
                  if n > MAX_FUNCTION_LINES and name not in DECLARATIVE_TABLES)
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(long)
    stale = sorted(n for n in DECLARATIVE_TABLES if lengths.get(n, 0) <= MAX_FUNCTION_LINES)
    assert not stale, f"DECLARATIVE_TABLES lists functions that are gone or short now: {stale}"
