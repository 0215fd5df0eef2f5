"""The comparison runner of notebook 10: systems share runs with the ablations, teachers are trained first,
the re-rank row adds the head's parameters and cost, cached runs are not retrained, and shipped summaries
are read without models."""

import json
import time

import pandas as pd
import pytest
import torch
from helpers import small_run

from t2vlad_lib.core.utils import time_in_turns, times_in_turns
from t2vlad_lib.course.ablate import VARIANTS, ablate
from t2vlad_lib.course.beyond import SYSTEMS, compare, query_seconds, system_config, trainable_parameters
from t2vlad_lib.engine import train as train_module
from t2vlad_lib.engine.evaluate import EvalSet
from t2vlad_lib.extensions.matching import MatchingRecipe


def test_systems_reuse_the_ablation_presets_and_name_their_teachers():
    assert SYSTEMS["CE-style (global only)"].overrides == VARIANTS["global-only training ([CLS])"]
    for name, system in SYSTEMS.items():
        if system.teacher is not None:
            assert system.teacher in SYSTEMS and system.overrides["distill.weight"] > 0, name
            # a student learns from a teacher trained on the same captions
            noise = SYSTEMS[system.teacher].overrides.get("data.caption_noise", 0.0)
            assert system.overrides.get("data.caption_noise", 0.0) == noise, name
    with pytest.raises(ValueError, match="unknown system"):
        compare("fast", seeds=[0], systems=["no such system"])


def test_trainable_parameters_skip_frozen_ones():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    net[0].requires_grad_(False)
    assert trainable_parameters(net) == 4 * 2 + 2


class _Counting(torch.nn.Module):
    """A dual encoder whose video side must be encoded once per query_seconds call, not per repeat."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.video_calls = 0

    def encode_text(self, t):
        return t

    def encode_video(self, v):
        self.video_calls += 1
        time.sleep(0.01)
        return v


def test_query_seconds_times_queries_against_pre_encoded_galleries_in_turns(monkeypatch):
    from t2vlad_lib.course import beyond
    from t2vlad_lib.engine import evaluate as ev

    order = []
    monkeypatch.setattr(beyond, "encode_videos", lambda m, v, b: m.encode_video(v))
    monkeypatch.setattr(ev, "encode_texts", lambda m, t, b: (order.append(m.tag), m.encode_text(t))[1])
    monkeypatch.setattr(ev, "similarity_matrix", lambda m, t, v: t @ v.T)
    data = EvalSet.__new__(EvalSet)
    data.texts, data.videos = torch.randn(20, 4), torch.randn(10, 4)
    models = {}
    for tag in ("a", "b"):
        models[tag] = (_Counting(), data)
        models[tag][0].tag = tag
    seconds = query_seconds(models, rounds=3)
    assert order == ["a", "b"] * 3  # the models take turns, round after round
    assert all(m.video_calls == 1 for m, _ in models.values())  # each gallery is encoded once, untimed
    assert set(seconds) == {"a", "b"} and all(0 < s < 0.01 / 20 for s in seconds.values())
    assert all(m.training for m, _ in models.values())  # their training mode is restored


@pytest.mark.slow
def test_compare_trains_teachers_first_shares_runs_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    extra = small_run(epochs=1)
    out = tmp_path / "runs"
    systems = ["T2VLAD", "T2VLAD + matching re-rank", "T2VLAD + distillation"]
    recipe = MatchingRecipe(epochs=1, layers=1)
    table = compare("fast", seeds=[0, 1], systems=systems, out_dir=out, extra=extra, recipe=recipe,
                    progress=False)
    assert list(table["system"]) == systems * 2
    # T2VLAD and its re-rank share one trained run, which is also the ablations' "full" run; the profile and
    # extra overrides (not the course's) put them in a directory of their own
    (grp,) = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(p.name for p in grp.iterdir() if p.is_dir()) == ["base", "sys-t2vlad-distillation"]
    student = json.loads((grp / "sys-t2vlad-distillation/seed0/config.json").read_text())
    assert student["distill"]["teacher"] == str(grp / "base/seed0/best.pt")
    dual, rerank = table.iloc[0], table.iloc[1]
    head = json.loads((grp / f"base/seed0/matching-{recipe.tag}.json").read_text())
    assert rerank["params"] == dual["params"] + head["head_params"] > dual["params"]
    assert rerank["query_seconds"] > head["rerank_seconds_per_query"] > 0  # the k head passes are added
    assert "rerank_seconds" not in table.columns
    assert rerank["v2t_R1"] == dual["v2t_R1"]  # the head re-ranks text -> video only
    assert rerank["t2v_R1"] == head["reranked"]["t2v_R1"]
    assert (rerank["rerank_k"], rerank["rerank_weight"]) == (head["k"], head["weight"])
    # query times and sizes: measured once per system on the first seed's model, the same for every seed
    for name in systems:
        rows = table[table["system"] == name]
        assert rows["query_seconds"].nunique() == 1 or name == "T2VLAD + matching re-rank"
        assert rows["params"].nunique() == 1
    stored = json.loads((grp / "base/seed0/query.json").read_text())
    assert stored["query_seconds"] == dual["query_seconds"] and stored["params"] == dual["params"]
    assert not (grp / "base/seed1/query.json").exists()
    assert pd.read_csv(out / "systems.csv")["t2v_R1"].tolist() == pytest.approx(table["t2v_R1"].tolist())

    def boom(*a, **k):
        raise AssertionError("a cached run was retrained")

    monkeypatch.setattr(train_module, "train", boom)
    again = compare("fast", seeds=[0, 1], systems=systems, out_dir=out, extra=extra, recipe=recipe,
                    progress=False)
    assert again["t2v_R1"].tolist() == table["t2v_R1"].tolist()
    full = ablate("fast", [0], ["full (shared VLAD)"], out_dir=out, extra=extra, progress=False)
    assert full["t2v_R1"].tolist() == [table["t2v_R1"].iloc[0]]

    # A run installed as a summary (no best.pt) with its stored query.json needs no training and no model:
    # the table takes the stored query time and size; without query.json the run is trained for them.
    from t2vlad_lib.course import shipped

    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setattr(shipped.install, "__defaults__", (tmp_path / "shipped", True))
    run = system_config("T2VLAD", 0, "fast", out, extra).run_dir()
    assert run == grp / "base/seed0"
    shipped.pack({"base/seed0": run}, root=tmp_path / "shipped", evaluate_checkpoints=False)
    calls = []
    monkeypatch.setattr(train_module, "train", lambda *a, **k: calls.append(k))
    fresh_out = tmp_path / "fresh"
    from_summary = compare("fast", seeds=[0], systems=["T2VLAD"], out_dir=fresh_out, extra=extra,
                           progress=False)
    fresh = system_config("T2VLAD", 0, "fast", fresh_out, extra).run_dir()
    assert not calls and (fresh / "results.json").exists() and not (fresh / "best.pt").exists()
    cols = ["t2v_R1", "v2t_R1", "params", "query_seconds", "train_seconds"]
    assert from_summary[cols].to_dict() == table.iloc[[0]][cols].to_dict()  # T2VLAD, seed 0
    (fresh / "query.json").unlink()
    with pytest.raises(RuntimeError, match="no stored query time"):  # the stub trained nothing
        compare("fast", seeds=[0], systems=["T2VLAD"], out_dir=fresh_out, extra=extra, progress=False)
    assert calls and calls[0]["overwrite"] is True


def test_calls_are_timed_in_turns_after_the_warmup():
    seen = []
    calls = {name: (lambda n=name: seen.append(n)) for name in ("a", "b")}
    times = times_in_turns(calls, rounds=3, warmup=1)
    assert seen == ["a", "b"] * 4  # one untimed round, then A, B, A, B, A, B
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3}
    assert all(s >= 0 for t in times.values() for s in t)
    medians = time_in_turns({"slow": lambda: time.sleep(0.02), "fast": lambda: None}, rounds=3)
    assert medians["slow"] >= 0.02 > medians["fast"]
