"""Packing and installing shipped runs on a small run: float16 weights that reproduce their manifest metrics,
installation by fingerprint, the summary state, T2VLAD_RETRAIN."""

import hashlib
import json
import re
import shutil

import pytest
import torch
from helpers import small_run

from t2vlad_lib.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from t2vlad_lib.course import shipped
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.evaluate import evaluate
from t2vlad_lib.engine.runs import load_run, run_state
from t2vlad_lib.engine.train import ensure_trained, train


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("T2VLAD_RETRAIN", raising=False)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, sample_run):
    base = tmp_path_factory.mktemp("ship")
    cfgs = {name: load_config("fast", small_run(base / "runs" / name, epochs=1, seed=seed))
            for name, seed in (("a", 0), ("b", 1))}
    shutil.copytree(sample_run[1].run_dir, cfgs["a"].run_dir())  # "a" is the session's run (seed 0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T2VLAD_CACHE", str(base / "cache"))
        train(cfgs["b"], progress=False)
    # files other steps write beside a run travel with its summary; other files (a head's weights) do not
    (cfgs["b"].run_dir() / "query.json").write_text('{"query_seconds": 1e-4}')
    (cfgs["b"].run_dir() / "matching-x.json").write_text('{"k": 5}')
    (cfgs["b"].run_dir() / "matching-x.pt").write_bytes(b"weights")
    man = shipped.pack({n: c.run_dir() for n, c in cfgs.items()}, checkpoints={"a"}, root=base / "shipped")
    return base, cfgs, man


def test_pack_writes_summaries_half_weights_and_a_manifest(packed):
    base, cfgs, man = packed
    root = base / "shipped"
    assert sorted(p.name for p in (root / "a").iterdir()) == ["best.fp16.pt", "config.json", "history.csv",
                                                               "results.json"]
    assert sorted(p.name for p in (root / "b").iterdir()) == ["config.json", "history.csv", "matching-x.json",
                                                               "query.json", "results.json"]
    entry = man["runs"]["a"]
    assert entry["fingerprint"] == shipped.fingerprint(cfgs["a"]) != shipped.fingerprint(cfgs["b"])
    assert entry["data"].startswith("digitclips-sample [digitclips-sample] ") and entry["seed"] == 0
    weights = (root / "a" / "best.fp16.pt").read_bytes()
    assert entry["checkpoint_sha256"] == hashlib.sha256(weights).hexdigest()
    half = torch.load(root / "a" / "best.fp16.pt", weights_only=True)["model"]
    assert all(v.dtype in (torch.float16, torch.int64) for v in half.values())
    run = load_run(root / "a" / "best.fp16.pt")  # the float16 weights reproduce their manifest metrics
    assert evaluate(run.model, run.data.test, 16) == entry["checkpoint_test"]
    assert json.loads((root / "manifest.json").read_text()) == man


def test_install_by_fingerprint_with_a_message_and_the_retrain_switch(packed, tmp_path, capsys, monkeypatch):
    base, cfgs, man = packed
    here = load_config("fast", small_run(tmp_path / "mine", epochs=1, seed=0))  # same config, other dir
    assert shipped.fingerprint(here) == man["runs"]["a"]["fingerprint"]
    monkeypatch.setenv("T2VLAD_RETRAIN", "1")
    assert not shipped.install(here, root=base / "shipped")
    monkeypatch.delenv("T2VLAD_RETRAIN")
    assert shipped.install(here, root=base / "shipped")
    said = capsys.readouterr().out
    assert "loaded the shipped run into" in said and "docs/reproducibility.md" in said
    assert "set T2VLAD_RETRAIN=1 to train it yourself" in said
    assert run_state(here.run_dir(), here) == "finished"
    run = load_run(here.run_dir(), cfg=here)
    assert evaluate(run.model, run.data.test, 16) == man["runs"]["a"]["checkpoint_test"]
    other = load_config("fast", small_run(tmp_path / "other", epochs=1, seed=0, **{"model.num_clusters": 4}))
    assert not shipped.install(other, root=base / "shipped")


def test_a_summary_is_enough_for_tables_but_not_for_a_model(packed, tmp_path, monkeypatch):
    base, cfgs, _ = packed
    monkeypatch.setattr(shipped, "SHIPPED_DIR", base / "shipped")
    monkeypatch.setattr(shipped.install, "__defaults__", (base / "shipped", True))
    here = load_config("fast", small_run(tmp_path / "b", epochs=1, seed=1))
    calls = []
    monkeypatch.setattr("t2vlad_lib.engine.train.train", lambda *a, **k: calls.append(k))
    ensure_trained(here, progress=False, need_model=False)
    assert run_state(here.run_dir(), here) == "summary" and not calls
    original = json.loads((cfgs["b"].run_dir() / "results.json").read_text())
    assert json.loads((here.run_dir() / "results.json").read_text())["test"] == original["test"]
    assert json.loads((here.run_dir() / "query.json").read_text()) == {"query_seconds": 1e-4}  # extras too
    assert (here.run_dir() / "matching-x.json").exists() and not (here.run_dir() / "matching-x.pt").exists()
    # a run installed before an extra file was shipped gets it alone; a file that is no extra never
    (here.run_dir() / "matching-x.json").unlink()
    root = base / "shipped"
    assert shipped.install_extra(here, "matching-x.json", root)
    assert (here.run_dir() / "matching-x.json").exists()
    assert not shipped.install_extra(here, "results.json", root)  # a summary file, not an extra
    assert not shipped.install_extra(here, "nope.json", root)
    monkeypatch.setenv("T2VLAD_RETRAIN", "1")
    assert not shipped.install_extra(here, "matching-x.json", root)
    monkeypatch.delenv("T2VLAD_RETRAIN")
    ensure_trained(here, progress=False, need_model=True)
    assert calls and calls[0]["overwrite"] is True  # the weights are trained, over the summary


def test_provenance_names_the_shipped_machine_and_this_one(packed, tmp_path):
    base, cfgs, man = packed
    installed = [load_config("fast", small_run(tmp_path / f"in{i}", epochs=1, seed=1)) for i in range(2)]
    for cfg in installed:
        assert shipped.install(cfg, root=base / "shipped", verbose=False)
    runs = [c.run_dir() for c in installed] + [cfgs["a"].run_dir()]  # two installed, one trained here
    entry = man["runs"]["b"]
    there = f"2 runs trained {entry['date']} on {entry['machine']} (shipped)"
    here = f"1 run trained {entry['date']} on {shipped.machine()} (this machine)"
    assert shipped.provenance(runs) == f"{there}; {here}"
    with pytest.raises(ValueError, match="nothing-here.*no results.json"):
        shipped.provenance([tmp_path / "nothing-here"])


def test_packing_again_keeps_where_and_when_a_run_was_trained(packed, tmp_path, monkeypatch):
    base, cfgs, man = packed
    root = tmp_path / "shipped"
    shutil.copytree(base / "shipped", root)
    monkeypatch.setattr(shipped, "_commit", lambda: "later")
    monkeypatch.setattr(shipped, "machine", lambda: "another machine")
    runs = {n: c.run_dir() for n, c in cfgs.items()}
    again = shipped.pack(runs, checkpoints={"a"}, root=root, evaluate_checkpoints=False)
    for name in runs:
        assert {k: again["runs"][name][k] for k in ("code", "date", "machine")} == \
            {k: man["runs"][name][k] for k in ("code", "date", "machine")}
    results = json.loads((runs["b"] / "results.json").read_text())  # "b" trained again: other metrics
    retrained = {**results, "test": {**results["test"], "t2v_R1": -1.0}}
    (runs["b"] / "results.json").write_text(json.dumps(retrained))
    try:
        fresh = shipped.pack(runs, checkpoints={"a"}, root=root, evaluate_checkpoints=False)
    finally:
        (runs["b"] / "results.json").write_text(json.dumps(results))
    assert fresh["runs"]["b"]["code"] == {"commit": "later"}
    assert fresh["runs"]["b"]["machine"] == "another machine"
    assert fresh["runs"]["a"]["machine"] == man["runs"]["a"]["machine"]


def _tampered(packed, tmp_path, edit) -> tuple:
    """A copy of the packed folder after ``edit(root, manifest)``, and the config of run "a" elsewhere."""
    base, cfgs, _ = packed
    root = tmp_path / "shipped"
    shutil.copytree(base / "shipped", root)
    man = json.loads((root / "manifest.json").read_text())
    edit(root, man)
    (root / "manifest.json").write_text(json.dumps(man))
    return root, load_config("fast", small_run(tmp_path / "mine", epochs=1, seed=0))


def _resave(path, **changes):
    payload = {k: v for k, v in load_checkpoint(path).items() if k != "sha256"}
    save_checkpoint(path, {**payload, **changes})


@pytest.mark.parametrize("attack", ["swapped seeds", "zeroed weights", "edited results"])
def test_install_refuses_shipped_files_that_differ_from_the_manifest(packed, tmp_path, attack):
    def edit(root, man):
        ckpt = root / "a" / "best.fp16.pt"
        if attack == "swapped seeds":  # another seed's config in the file (a valid checkpoint)
            _resave(ckpt, config={**load_checkpoint(ckpt)["config"], "seed": 1})
        elif attack == "zeroed weights":
            _resave(ckpt, model={k: torch.zeros_like(v) for k, v in load_checkpoint(ckpt)["model"].items()})
        else:
            results = json.loads((root / "a" / "results.json").read_text())
            (root / "a" / "results.json").write_text(json.dumps({**results, "test": {"t2v_R1": 99.0}}))

    root, here = _tampered(packed, tmp_path, edit)
    what = "not have the manifest's test metrics" if attack == "edited results" else "best.fp16.pt has sha256"
    expected = f"shipped run {root / 'a'}: .*{what}.*restore it \\(git checkout shipped_runs\\)"
    with pytest.raises(CheckpointError, match=expected):
        shipped.install(here, root=root)
    assert not (here.run_dir() / "best.pt").exists() and run_state(here.run_dir(), here) == "empty"


def test_install_refuses_a_fingerprint_pointed_at_another_run(packed, tmp_path):
    other = load_config("fast", small_run(tmp_path / "other", epochs=1, seed=0, **{"model.num_clusters": 4}))
    root, _ = _tampered(packed, tmp_path, lambda root, man: man["runs"]["a"].update(
        fingerprint=shipped.fingerprint(other)))
    expected = r"not the run of this config, though the manifest's fingerprint says so \(shipped vs here: "
    with pytest.raises(CheckpointError, match=expected + "model.num_clusters: 3 vs 4"):
        shipped.install(other, root=root)
    assert not other.run_dir().exists()


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda root, man: man["runs"].update({"../outside": man["runs"].pop("b")}),
     "run name '../outside' is not a path inside"),
    (lambda root, man: man["runs"]["b"].pop("fingerprint"), "run 'b' has no \"fingerprint\" string"),
    (lambda root, man: man.pop("runs"), "expected an object with \"runs\""),
])
def test_a_bad_manifest_is_one_error_naming_it(packed, tmp_path, edit, expected):
    root, here = _tampered(packed, tmp_path, edit)
    with pytest.raises(ValueError, match=re.escape(f"{root / 'manifest.json'}: {expected}")):
        shipped.install(here, root=root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(f"{root / 'manifest.json'}: not valid JSON")):
        shipped.find(here, root=root)


def test_refresh_recomputes_the_manifests_identities_only(packed, tmp_path):
    def edit(root, man):
        for entry in man["runs"].values():
            entry["fingerprint"] = "0" * 16
            entry["data_version"] = entry.pop("data")

    root, _ = _tampered(packed, tmp_path, edit)
    again = shipped.refresh(root)
    assert again == packed[2] and json.loads((root / "manifest.json").read_text()) == packed[2]
