"""The ablation runner: variants x seeds through the trainer, cached runs, test-time-only variants."""

import pandas as pd
import pytest
import torch
from helpers import small_run

from t2vlad_lib.course.ablate import (
    LOSSES,
    TABLE4,
    TABLE5,
    VARIANTS,
    ablate,
    claim_verdicts,
    markdown_table,
    summarize,
    sweep,
    verdict,
    verdict_table,
    without_defaults,
)
from t2vlad_lib.engine import train as train_module
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.evaluate import encode_texts, encode_videos, retrieval_metrics
from t2vlad_lib.engine.runs import load_run
from t2vlad_lib.model.losses import LOSS_NAMES


def test_variants_cover_the_papers_tables():
    assert set(TABLE4) | set(TABLE5) <= set(VARIANTS)
    assert VARIANTS["two separate VLADs"] == {"model.vlad.kind": "separate"}
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
    (group,) = [p for p in out.iterdir() if p.is_dir()]  # another profile and --set: a directory of its own
    assert group.name.startswith("fast-") and len(group.name) == len("fast-") + 6
    assert sorted(p.name for p in group.iterdir()) == ["base", "kind-separate"]  # 2 trained
    # the test-time row: the full model's run scored with s_local alone (evaluate(..., terms="local"))
    run = load_run(group / "base" / "seed0")
    with torch.no_grad():
        t, v = encode_texts(run.model, run.data.test.texts), encode_videos(run.model, run.data.test.videos)
    by_hand = retrieval_metrics(t.local @ v.local.T, run.data.test.query_masks)
    row = table.set_index("variant").loc["w/o global at test"]
    assert {k: row[k] for k in by_hand} == pytest.approx(by_hand)
    saved = pd.read_csv(out / "results.csv")
    assert saved["t2v_R1"].tolist() == pytest.approx(table["t2v_R1"].tolist())
    md = (out / "results.md").read_text().splitlines()
    assert md[0].startswith("| variant | seeds | t2v_R1") and len(md) == 2 + len(variants)
    assert "±" not in "".join(md)  # one seed: no spread to report

    def boom(*a, **k):
        raise AssertionError("a cached run was retrained")

    monkeypatch.setattr(train_module, "train", boom)
    again = ablate("fast", seeds=[0], variants=variants, out_dir=out, extra=extra, progress=False)
    assert again["t2v_R1"].tolist() == table["t2v_R1"].tolist()
    summary = summarize(again)
    assert list(summary.index) == variants and (summary["seeds"] == 1).all()


def test_summarize_gives_mean_and_sample_std_per_variant_in_order():
    table = pd.DataFrame(
        {"variant": ["b", "a", "b", "a", "b"], "seed": [0, 0, 1, 1, 2], "t2v_R1": [1.0, 5.0, 2.0, 7.0, 6.0]}
    )
    out = summarize(table, columns=("t2v_R1",))
    assert list(out.index) == ["b", "a"] and out["seeds"].tolist() == [3, 2]
    # b: mean 3, sample std sqrt(((1-3)^2 + (2-3)^2 + (6-3)^2) / 2) = sqrt(7) = 2.6458; a: 6 +- sqrt(2)
    assert out["t2v_R1"].tolist() == ["3.0 ± 2.6", "6.0 ± 1.4"]
    assert markdown_table(out).splitlines() == [
        "| variant | seeds | t2v_R1 |",
        "|---|---|---|",
        "| b | 3 | 3.0 ± 2.6 |",
        "| a | 2 | 6.0 ± 1.4 |",
    ]


def test_verdict_needs_every_seed():
    assert verdict([1.2, 0.8, 2.3]) == "holds"
    assert verdict([-1.7, -0.3, -2.4]) == "reversed"
    assert verdict([0.4, 0.0, 0.3]) == "cannot tell"  # a tie agrees with neither side
    assert verdict([-0.5, 1.0, -2.0]) == "cannot tell"
    assert verdict([3.0]) == "one seed: cannot tell"


def test_diagnosis_summary_pairs_seeds_against_the_base():
    import pandas as pd

    from t2vlad_lib.course.ablate import diagnosis_summary

    table = pd.DataFrame({
        "variant": ["port recipe"] * 3 + ["factor"] * 3,
        "seed": [0, 1, 2] * 2,
        "t2v_R1": [50.0, 52.0, 54.0, 51.0, 51.0, 56.0],
        "content_nmi": [0.10, 0.12, 0.14, 0.20, 0.30, 0.25],
    })
    out = diagnosis_summary(table)
    assert out.loc["port recipe", "t2v_R1"] == "52.0 ± 2.0" and out.loc["factor", "seeds"] == 3
    assert out.loc["factor", "Δ t2v_R1 per seed"] == "+0.7 (+1.0 / -1.0 / +2.0)"
    assert out.loc["factor", "raises t2v_R1?"] == "cannot tell"
    assert out.loc["factor", "Δ content_nmi per seed"] == "+0.130 (+0.100 / +0.180 / +0.110)"
    assert out.loc["factor", "raises content_nmi?"] == "holds"
    assert out.loc["port recipe", "raises content_nmi?"] == "-"


def test_loss_rows_cover_every_loss_and_drop_what_the_profile_already_sets():
    assert {o["loss.name"] for o in LOSSES.values()} == set(LOSS_NAMES)
    for profile in ("tutorial", "fast"):
        own = load_config(profile).loss
        for overrides in LOSSES.values():
            kept = without_defaults(profile, overrides)
            cfg = load_config(profile, overrides)
            assert load_config(profile, kept).loss == cfg.loss  # dropping a key changes nothing
            if overrides["loss.name"] == own.name and overrides.get("loss.margin") == own.margin:
                assert kept == {}  # the profile's own loss is its full-model run
            else:
                assert kept["loss.name"] == overrides["loss.name"]
    with pytest.raises(KeyError, match="loss.marginn"):
        without_defaults("tutorial", {"loss.marginn": 0.1})


@pytest.mark.slow
def test_ablate_with_another_profile_or_set_never_lands_on_other_runs(tmp_path, monkeypatch, capsys):
    """Issue 20: `ablate --profile fast ... --set epochs=1`, then `epochs=2`, trained over the first run."""
    from t2vlad_lib import cli
    from t2vlad_lib.course.ablate import variant_config
    from t2vlad_lib.engine.runs import is_finished

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    tiny = {k: v for k, v in small_run().items() if k != "epochs"}
    runs = {}
    for epochs in (1, 2):
        extra = {**tiny, "epochs": epochs}
        args = ["ablate", "--profile", "fast", "--seeds", "0", "--variants", "full (shared VLAD)", "--quiet",
                "--out", str(out), "--set", *[f"{k}={v}" for k, v in extra.items()]]
        assert cli.main(args) == 0
        runs[epochs] = variant_config("fast", {}, 0, out, extra)
    first = (runs[1].run_dir() / "best.pt").read_bytes()
    assert runs[1].run_dir() != runs[2].run_dir()
    assert is_finished(runs[1].run_dir(), runs[1]) and is_finished(runs[2].run_dir(), runs[2])
    assert (runs[1].run_dir() / "best.pt").read_bytes() == first
    course_run = variant_config("tutorial", {}, 0, out)
    assert course_run.run_dir() == out / "base" / "seed0" and not course_run.run_dir().exists()
    assert "training over it" not in capsys.readouterr().out


def test_claim_verdicts_and_verdict_table_on_a_hand_case():
    # R@1 30 % at every seed for A, 34/35/33 % for B over 1,000 queries: deltas +4, +5, +3, unpaired interval
    # 4 +- 1.96 sqrt((.30 * .70 + .34 * .66) / 1000) = [-0.09, 8.09], sign-test p 1/8: cannot tell
    long = pd.DataFrame({"variant": ["A"] * 3 + ["B"] * 3 + ["C"] * 2, "seed": [0, 1, 2, 0, 1, 2, 0, 1],
                         "t2v_R1": [30, 30, 30, 34, 35, 33, 20, 21]})
    verdicts = claim_verdicts(long, [("B beats A", "A", "B"), ("C beats A", "A", "C")], n_queries=1000)
    v = verdicts["B beats A"]
    assert v.deltas == (4.0, 5.0, 3.0) and v.sign_p == 0.125 and v.reading == "cannot tell"
    assert (round(v.low, 2), round(v.high, 2)) == (-0.09, 8.09)
    assert verdicts["C beats A"].deltas == (-10.0, -9.0)  # only the seeds both rows have
    assert verdicts["C beats A"].reading == "reversed"
    frame = verdict_table(verdicts)
    assert list(frame.index) == ["B beats A", "C beats A"]
    row = frame.loc["B beats A"]
    assert row["Δ per seed"] == "+4.0, +5.0, +3.0" and row["95% interval"] == "[-0.1, +8.1]"
    assert row["mean Δ"] == 4.0 and row["sign-test p"] == 0.125 and row["interval"] == "unpaired normal"
