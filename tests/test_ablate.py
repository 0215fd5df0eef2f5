"""The ablation runner: variants x seeds through the trainer, cached runs, test-time-only variants."""

import pandas as pd
import pytest
from helpers import small_run

from t2vlad_lib import train as train_module
from t2vlad_lib.ablate import TABLE4, TABLE5, VARIANTS, ablate, summarize, sweep


def test_variants_cover_the_papers_tables():
    assert set(TABLE4) | set(TABLE5) <= set(VARIANTS)
    assert VARIANTS["two separate VLADs"] == {"model.sharing": "separate"}
    assert sweep("model.num_clusters", [4, 8]) == {"num_clusters=4": {"model.num_clusters": 4},
                                                   "num_clusters=8": {"model.num_clusters": 8}}
    with pytest.raises(ValueError, match="unknown variant"):
        ablate("fast", seeds=[0], variants=["no such row"])


@pytest.mark.slow
def test_ablate_caches_runs_and_reuses_them_for_test_time_variants(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    extra = small_run(epochs=1)
    out = tmp_path / "abl"
    variants = ["full (shared VLAD)", "w/o global at test", "two separate VLADs"]
    table = ablate("fast", seeds=[0], variants=variants, out_dir=out, extra=extra, progress=False)
    assert list(table["variant"]) == variants
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["base", "sharing-separate"]  # 2 trained
    saved = pd.read_csv(out / "results.csv")
    assert saved["t2v_R1"].tolist() == pytest.approx(table["t2v_R1"].tolist())
    assert "± 0.0" in (out / "results.md").read_text()  # one seed: std 0

    def boom(*a, **k):
        raise AssertionError("a cached run was retrained")

    monkeypatch.setattr(train_module, "train", boom)
    again = ablate("fast", seeds=[0], variants=variants, out_dir=out, extra=extra, progress=False)
    assert again["t2v_R1"].tolist() == table["t2v_R1"].tolist()
    summary = summarize(again)
    assert list(summary.index) == variants and (summary["seeds"] == 1).all()
