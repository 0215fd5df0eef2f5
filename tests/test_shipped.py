"""The shipped runs (``shipped_runs/``) match the code: every run notebook 07 trains in normal mode (and 06/08
ask for) has a shipped entry with its config's fingerprint, and an empty run directory is filled from them
without training. That the float16 weights give the metrics the manifest records needs the full DigitClips:
tests/e2e/test_shipped_weights.py."""

from __future__ import annotations

import json

from t2vlad_lib import course
from t2vlad_lib.course import shipped
from t2vlad_lib.engine.config import from_dict, load_config

MANIFEST = shipped.manifest()


def test_every_course_run_is_shipped_with_the_current_config():
    assert MANIFEST["runs"], f"{shipped.SHIPPED_DIR}/manifest.json is missing: run `make shipped`"
    configs = course.run_configs()
    missing = [name for name, cfg in configs.items() if shipped.find(cfg) is None]
    assert not missing, f"no shipped run with the current config for {missing}: run `make shipped`"
    extra = set(MANIFEST["runs"]) - set(configs)
    assert not extra, f"shipped runs that no notebook asks for: {sorted(extra)}"
    for name, entry in MANIFEST["runs"].items():
        stored = json.loads((shipped.SHIPPED_DIR / name / "config.json").read_text())
        here = shipped.fingerprint(configs[name])
        assert entry["fingerprint"] == shipped.fingerprint(from_dict(stored)) == here, name
        assert entry["checkpoint"] == (shipped.CHECKPOINT if name in course.CHECKPOINTS else None), name


def test_notebook_configs_of_06_and_08_find_the_shipped_runs():
    full = load_config("tutorial", {"out_dir": "runs/{profile}-seed{seed}"})
    glob = load_config("tutorial", {"model.terms": "global", "model.text_global_from": "cls",
                                    "out_dir": "runs/{profile}-globalonly-seed{seed}"})
    assert shipped.find(full)[0] == "base/seed0"
    assert shipped.find(glob)[0] == "terms-global_text_global_from-cls/seed0"


def test_shipped_folder_stays_small():
    size = sum(p.stat().st_size for p in shipped.SHIPPED_DIR.rglob("*") if p.is_file())
    assert size < 20e6, f"shipped_runs/ holds {size / 1e6:.1f} MB (keep it under 20 MB)"


def test_an_empty_run_directory_is_filled_from_the_shipped_run(tmp_path, capsys, monkeypatch):
    from t2vlad_lib.engine.runs import is_finished
    from t2vlad_lib.engine.train import ensure_trained

    monkeypatch.delenv("T2VLAD_RETRAIN", raising=False)
    cfg = load_config("tutorial", {"out_dir": str(tmp_path / "{profile}-seed{seed}")})
    ensure_trained(cfg, need_model=True)  # no data is prepared: nothing is trained
    assert "loaded the shipped run into" in capsys.readouterr().out
    assert is_finished(cfg.run_dir(), cfg) and (cfg.run_dir() / "best.pt").exists()
    results = json.loads((cfg.run_dir() / "results.json").read_text())
    assert results["test"] == MANIFEST["runs"]["base/seed0"]["test"]


def test_reproducibility_page_matches_the_manifest():
    """docs/reproducibility.md's generated part is what the manifest says (make shipped rewrites both)."""
    from t2vlad_lib.course import reproducibility

    text = reproducibility.DOC.read_text()
    generated = text.split(reproducibility.BEGIN, 1)[1].split(reproducibility.END, 1)[0]
    assert reproducibility.runs_table() in generated
    for name, entry in shipped.manifest()["runs"].items():
        assert f"`{name.rsplit('/', 1)[0]}`" in generated and entry["machine"] in generated


def test_installs_say_one_line_per_summary_folder_and_per_run_with_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shipped, "_SAID", set())
    for variant in ("a", "b"):
        for seed in (0, 1):
            shipped._say_installed(tmp_path / "sweep" / variant / f"seed{seed}", weights=False)
    shipped._say_installed(shipped.REPO / "runs" / "x" / "base" / "seed0", weights=True)
    shipped._say_installed(shipped.REPO / "runs" / "x" / "base" / "seed1", weights=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"loaded shipped run summaries into {(tmp_path / 'sweep').resolve()}/ ")
    assert lines[1].startswith("loaded the shipped run into runs/x/base/seed0 (where")  # from the repo root
    assert all("set T2VLAD_RETRAIN=1" in line for line in lines)
