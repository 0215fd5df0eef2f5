"""The trainer: the command line end to end (train, a kill and its exact resume, evaluate, search), DDP on
gloo, config and checkpoint errors, the paper profile.

Runs use the 64-video DigitClips sample shipped in data_samples/ and a tiny randomly initialised BERT
(frozen, cached states), so each run takes seconds.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import small_run

from t2vlad_lib.core.checkpoint import CheckpointError, load_checkpoint
from t2vlad_lib.core.metrics import METRIC_KEYS, ranks_to_metrics
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.train import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "data_samples" / "msrvtt-fixture"


def small(out_dir, **extra):
    return [f"{k}={v}" for k, v in small_run(out_dir, **extra).items()]


def _cli(args, env=None, check=True):
    env = {**os.environ, "T2VLAD_CACHE": env or os.environ.get("T2VLAD_CACHE", ""), "PYTHONHASHSEED": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "t2vlad_lib", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))


def test_train_returns_what_it_writes(sample_run):
    _, res = sample_run
    assert (res.run_dir / "best.pt").exists() and (res.run_dir / "last.pt").exists()
    saved = json.loads((res.run_dir / "results.json").read_text())
    assert saved["test"] == res.test and saved["val"] == res.val and saved["best_epoch"] == res.best_epoch
    assert [h["epoch"] for h in res.history] == [1] and saved["config"]["seed"] == 0


def test_cli_train_kill_resume_evaluate_and_search(tmp_path, capsys):
    """The command line end to end, once: a straight 3-epoch run (its logs, model selection on val, the test
    report), the same run killed mid-epoch and resumed (the same result; resume neither shrinks the epochs nor
    rewrites a finished run), then evaluate and search on its checkpoint."""
    from t2vlad_lib import cli

    base = ["train", "--profile", "fast", "--quiet", "--set"]
    straight = tmp_path / "straight"
    _cli(base + small(straight))
    assert (straight / "best.pt").exists() and (straight / "last.pt").exists()
    history = json.loads((straight / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all("val_t2v_R1" in h and "train_loss" in h and "text_usage" in h for h in history)
    assert (straight / "history.csv").read_text().startswith("epoch,")
    best = max(history, key=lambda h: h["val_t2v_R1"])  # first maximum: the selected epoch
    saved = json.loads((straight / "results.json").read_text())
    assert saved["best_epoch"] == best["epoch"]
    assert set(saved["test"]) >= {"t2v_R1", "v2t_MedR"} and 0 <= saved["test"]["t2v_R1"] <= 100
    assert saved["config"]["seed"] == 0
    for side in ("t2v", "v2t"):  # the stored rank of every test query gives back the stored metrics
        ranks = saved["test_ranks"][side]
        assert all(r * 2 == int(r * 2) for r in ranks)  # whole, or .5 after tie averaging
        stored = {k: saved["test"][f"{side}_{k}"] for k in METRIC_KEYS}
        assert ranks_to_metrics(ranks) == pytest.approx(stored)

    # 4 steps per epoch: step 6 is in the middle of epoch 2, after epoch 1's last.pt was written
    script = ("import sys; sys.path.insert(0, 'tests'); from helpers import CrashAtStep, small_run; "
              "from t2vlad_lib.engine.config import load_config; from t2vlad_lib.engine.train import train; "
              f"train(load_config('fast', small_run({str(tmp_path / 'crash')!r})), progress=False, "
              "callbacks=[CrashAtStep(6)])")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL
    assert load_checkpoint(tmp_path / "crash" / "last.pt")["epoch"] == 0
    _cli(base[:-1] + ["--resume", "--set"] + small(tmp_path / "crash"))
    a = json.loads((tmp_path / "straight" / "results.json").read_text())
    b = json.loads((tmp_path / "crash" / "results.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["best_epoch"] == b["best_epoch"]
    wa = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "crash" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # resume neither shrinks the epochs nor rewrites a finished run (in this process: cli.main)
    results = (straight / "results.json").read_bytes()
    code = cli.main([*base[:-1], "--resume", "--set", *small(straight, epochs=1)])  # on a 3-epoch run
    err = capsys.readouterr().err
    assert code == 2 and f"{straight / 'last.pt'} has 3 epochs done; epochs=1 would end the run" in err
    assert "would end the run before them" in err
    code, said = cli.main([*base[:-1], "--resume", "--set", *small(straight)]), capsys.readouterr()
    assert code == 0 and "best epoch" in said.out and (straight / "results.json").read_bytes() == results

    proc = _cli(["evaluate", "--checkpoint", str(straight / "best.pt"), "--json", str(tmp_path / "m.json")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"test (fixed)", "test (all)"}
    assert metrics["test (fixed)"] == pytest.approx(saved["test"])  # the protocol the run was tested with
    assert "| test (all) t2v |" in proc.stdout
    proc = _cli(["search", "a red seven moves left", "--checkpoint", str(straight / "best.pt"), "-k", "3"])
    lines = [ln for ln in proc.stdout.splitlines() if ln[:3].strip().rstrip(".").isdigit()]
    assert len(lines) == 3 and all("clip" in ln for ln in lines)
    assert cli.main(["search", "x", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "not found: train first" in capsys.readouterr().err


def test_resume_refuses_another_config_and_a_truncated_checkpoint(tmp_path, sample_run):
    run = tmp_path / "run"
    shutil.copytree(sample_run[1].run_dir, run)  # a finished 1-epoch run of small(run, epochs=1)
    with pytest.raises(
        CheckpointError, match=r"mismatching keys: model.num_clusters: 3 in checkpoint vs 4 now"
    ):
        train(
            load_config("fast", small(run, epochs=2, **{"model.num_clusters": 4})),
            resume=True,
            progress=False,
        )
    good = (run / "best.pt").read_bytes()
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        train(load_config("fast", small(run, epochs=2)), resume=True, progress=False)
    assert (run / "best.pt").read_bytes() == good


def test_cli_config_errors_are_one_clear_line(capsys):
    from t2vlad_lib import cli

    assert cli.main(["train", "--profile", "fast", "--set", "model.clusters=4"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key(s) ['clusters'] in 'model'; valid keys:" in err
    assert "num_clusters" in err and "Traceback" not in err
    assert cli.main(["train", "--profile", "nope"]) == 2
    assert "valid: fast, msrvtt-1ka, tutorial" in capsys.readouterr().err


def test_ddp_on_gloo_with_two_processes(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "t2vlad_lib",
        "train",
        "--profile",
        "fast",
        "--quiet",
        "--set",
    ] + small(out, epochs=2)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["step"] == 4  # 32 videos / 2 ranks / batch 8 = 2 steps per epoch on each rank
    assert proc.stdout.count("best epoch") == 1  # only rank 0 reports and writes


@pytest.mark.slow
def test_msrvtt_profile_runs_a_few_steps_on_the_released_layout_fixture(tmp_path):
    cfg = load_config(
        "msrvtt-1ka",
        {
            "data.dataset": str(FIXTURE),
            "data.val_holdout": 2,
            "text.model": "tiny-random-bert",
            "model.text_proj": True,
            "epochs": 1,
            "batch_size": 3,
            "out_dir": str(tmp_path / "paper"),
            "device": "cpu",
        },
    )
    assert cfg.model["dim"] == 768 and cfg.loss.name == "max_margin" and not cfg.text.freeze
    res = train(cfg, progress=False)
    ckpt = load_checkpoint(res.run_dir / "best.pt")
    assert any(
        k.startswith("text_encoder.") for k in ckpt["model"]
    )  # fine-tuned encoder is part of the model
    assert ckpt["model"]["video_encoder.proj.rgb.weight"].shape == (768, 2048)
    assert res.history[0]["step"] == 2 and set(res.test) >= {"t2v_R1", "v2t_R1"}


def test_train_or_load_trains_once_then_loads(tmp_path, monkeypatch):
    from t2vlad_lib.engine import train as train_module

    cfg = load_config("fast", small(tmp_path / "tol", epochs=1))
    model, data, res = train_module.train_or_load(cfg, progress=False)
    assert not model.training and res["best_epoch"] == 1

    def boom(*a, **k):
        raise AssertionError("a finished run must be loaded, not retrained")

    monkeypatch.setattr(train_module, "train", boom)
    again, _, res2 = train_module.train_or_load(cfg, data=data, progress=False)
    assert res2["test"] == res["test"]
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    other = load_config("fast", small(tmp_path / "tol", epochs=1, **{"model.num_clusters": 4}))
    with pytest.raises(train_module.RunExistsError, match=r"model.num_clusters: 3 vs 4\): not training over"):
        train_module.train_or_load(other, data=data, progress=False)  # another config: never trained over


def test_a_second_process_cannot_train_into_a_locked_run_dir(tmp_path):
    from t2vlad_lib.core.checkpoint import run_lock

    cfg = load_config("fast", small(tmp_path / "run"))
    with run_lock(cfg.run_dir()) as lock:
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(RuntimeError, match=f"pid {os.getpid()}.*training into this run directory"):
            train(cfg, progress=False)
    assert not lock.exists()  # released
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    lock.write_text(gone.stdout.strip())  # a killed run's lock: its process no longer exists
    with run_lock(cfg.run_dir()):
        assert lock.read_text() == str(os.getpid())  # taken over


def test_a_loss_term_that_no_extension_registered_is_an_error(monkeypatch):
    from t2vlad_lib.engine import train as train_module

    monkeypatch.setattr(train_module, "LOSS_TERMS", {})
    asks = load_config("fast", small_run(**{"distill.weight": 1.0, "distill.teacher": "teacher.pt"}))
    with pytest.raises(RuntimeError, match=r"^distill.weight > 0, but no extension registered its loss term"):
        train_module.config_terms(asks, None, torch.device("cpu"))
    assert train_module.config_terms(load_config("fast", small_run()), None, torch.device("cpu")) == []
