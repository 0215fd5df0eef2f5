"""Runs on disk: safe and verified checkpoints, runs never overwritten silently, the lock under a race, one
loader and one "finished" rule, and an import graph without cycles.

Training runs use the 64-video DigitClips sample and a tiny random BERT (seconds each).
"""

import errno
import json
import multiprocessing as mp
import os
import re
import struct
import time
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import ROOT, small_run

from t2vlad_lib import cli
from t2vlad_lib.core.checkpoint import (
    CheckpointError,
    RunLockError,
    load_checkpoint,
    run_lock,
    save_checkpoint,
)
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.runs import is_finished, load_run, run_state
from t2vlad_lib.engine.train import RunExistsError, train, train_or_load


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def finished(sample_run):
    """The session's finished 1-epoch run (conftest.py), shared by the tests that only read it."""
    return sample_run


def _train_args(out: Path) -> list[str]:
    return ["train", "--profile", "fast", "--quiet", "--set",
            *[f"{k}={v}" for k, v in small_run(out, epochs=1).items()]]


def _cli(capsys, *args) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a crafted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_whose_pickle_runs_code_is_refused_everywhere(tmp_path, capsys, finished):
    cfg, res = finished
    marker = tmp_path / "pwned"
    good = load_checkpoint(res.run_dir / "best.pt")
    evil = tmp_path / "evil" / "best.pt"
    evil.parent.mkdir()
    torch.save({**good, "model": {**good["model"], "x": _Payload(marker)}}, evil)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match=str(evil)):
        load_run(evil.parent)
    from t2vlad_lib.extensions.distill import load_teacher

    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_teacher(evil, None)
    code, err = _cli(capsys, "evaluate", "--checkpoint", evil)
    assert code == 2 and "cannot be loaded safely" in err and str(evil) in err
    assert "holds a Python object (getattr) other than" in err and "weights_only" not in err  # our advice
    code, err = _cli(capsys, "search", "a red seven", "--checkpoint", evil)
    assert code == 2 and "cannot be loaded safely" in err
    assert not marker.exists()  # nothing ran


def test_no_weights_only_false_anywhere():
    for path in (ROOT / "t2vlad_lib").rglob("*.py"):
        assert "weights_only=False" not in path.read_text(), path


def _flip_tensor_byte(path: Path, tensor_index: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    info = [i for i in zipfile.ZipFile(path).infolist() if i.filename.endswith(f"/data/{tensor_index}")][0]
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + 3] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_corrupted_tensor_is_a_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(64.0)}, "config": {"seed": 0}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(64.0))
    _flip_tensor_byte(path)
    silent = torch.load(path, weights_only=True)["model"]["w"]  # torch itself does not notice
    assert not torch.equal(silent, torch.arange(64.0))
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is corrupted"):
        load_checkpoint(path)


def test_resume_without_last_pt_says_so(tmp_path, capsys):
    args = [*_train_args(tmp_path / "none"), "--resume"]
    code, err = _cli(capsys, *args)
    assert code == 2 and "last.pt not found: nothing to resume" in err


def test_finished_means_best_pt_of_this_config_not_results_json(tmp_path, finished, capsys):
    cfg, res = finished
    other = load_config("fast", small_run(res.run_dir, epochs=1, **{"model.num_clusters": 4}))
    assert is_finished(res.run_dir, cfg) and not is_finished(res.run_dir, other)
    assert run_state(res.run_dir, other) == "other"
    # a results.json claiming the other config changes nothing: best.pt decides
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("best.pt", "results.json"):
        (copy / name).write_bytes((res.run_dir / name).read_bytes())
    doctored = json.loads((copy / "results.json").read_text()) | {"config": other.to_dict()}
    (copy / "results.json").write_text(json.dumps(doctored))
    other_here = load_config("fast", small_run(copy, epochs=1, **{"model.num_clusters": 4}))
    assert not is_finished(copy, other_here)
    before = (copy / "best.pt").read_bytes()
    with pytest.raises(RunExistsError, match=r"holds a run of another config or data \(there vs here: "
                                             r"model.num_clusters: 3 vs 4\): not training over it; delete"):
        train_or_load(other_here, progress=False)  # never trained over: the run stays
    assert (copy / "best.pt").read_bytes() == before and is_finished(copy, replace(cfg, out_dir=str(copy)))


def test_state_dict_mismatch_names_the_checkpoint_and_the_config(finished):
    cfg, res = finished
    other = load_config("fast", small_run(res.run_dir, epochs=1, **{"model.num_clusters": 4}))
    with pytest.raises(CheckpointError, match=r"trained with another config \(there vs here: "
                                              r"model.num_clusters: 3 vs 4\)"):
        load_run(res.run_dir, cfg=other)
    run = load_run(res.run_dir)
    narrower = replace(run.data, expert_dims={**run.data.expert_dims, "audio": 16})  # other features
    with pytest.raises(CheckpointError) as err:
        load_run(res.run_dir, data=narrower)
    msg = str(err.value)
    assert str(res.run_dir / "best.pt") in msg and "video_encoder.proj.audio.weight" in msg
    assert "(16, 32) in the checkpoint vs (16, 16) here" in msg and "arch='t2vlad'" in msg


def test_load_run_reproduces_the_runs_test_metrics(finished):
    from t2vlad_lib.engine.evaluate import evaluate

    cfg, res = finished
    run = load_run(res.run_dir)
    assert not run.model.training and run.results["test"] == pytest.approx(res.test)
    assert evaluate(run.model, run.data.test, cfg.eval_batch_size) == pytest.approx(res.test)


def _race(lock_dir: str, log: str, start: float) -> None:
    while time.time() < start:
        pass
    try:
        with run_lock(lock_dir):
            with open(log, "a") as f:
                f.write(f"enter {os.getpid()} {time.monotonic()}\n")
            time.sleep(0.05)
            with open(log, "a") as f:
                f.write(f"exit {os.getpid()} {time.monotonic()}\n")
    except RunLockError:
        with open(log, "a") as f:
            f.write(f"busy {os.getpid()}\n")


def test_processes_racing_for_a_stale_lock_never_hold_it_together(tmp_path):
    ctx = mp.get_context("fork")
    for round_ in range(4):
        lock_dir = tmp_path / f"run{round_}"
        lock_dir.mkdir()
        dead = ctx.Process(target=os.getpid)
        dead.start()
        dead.join()
        (lock_dir / ".lock").write_text(str(dead.pid))  # the lock file of a process that is gone
        log = tmp_path / f"log{round_}"
        start = time.time() + 0.5
        procs = [ctx.Process(target=_race, args=(str(lock_dir), str(log), start)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        events = [line.split() for line in log.read_text().splitlines()]
        held = 0
        for kind, *_ in events:  # appended in order: enter/exit must alternate
            held += {"enter": 1, "exit": -1}.get(kind, 0)
            assert held in (0, 1), events
        enters, exits = (sum(e[0] == k for e in events) for k in ("enter", "exit"))
        assert enters >= 1 and enters == exits and len(events) - exits == 6


def test_a_killed_holders_lock_is_free_at_once(tmp_path):
    ctx = mp.get_context("fork")
    ready = ctx.Event()

    def hold():
        with run_lock(tmp_path):
            ready.set()
            time.sleep(60)

    holder = ctx.Process(target=hold)
    holder.start()
    assert ready.wait(20)
    with pytest.raises(RunLockError, match=f"pid {holder.pid}"):
        with run_lock(tmp_path):
            pass
    holder.kill()
    holder.join()
    with run_lock(tmp_path) as lock:  # the kernel released it with the process
        assert lock.read_text() == str(os.getpid())


def test_cli_lock_disk_and_query_errors_are_one_line(tmp_path, capsys, monkeypatch):
    args = _train_args(tmp_path / "run")
    with run_lock(tmp_path / "run"):
        code, err = _cli(capsys, *args)
    assert code == 2 and "another process" in err and err.count("\n") == 1
    code, err = _cli(capsys, "search", "   ")
    assert code == 2 and "the query is empty" in err

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "x.pt"))

    monkeypatch.setattr("t2vlad_lib.engine.train.train", full)
    code, err = _cli(capsys, *args)
    assert code == 2 and "No space left on device" in err and "cache" in err and "Traceback" not in err


def _bad_sample(root: Path, case: str) -> str:
    """A copy of the DigitClips sample at ``root`` broken in one way; returns what the error must name."""
    import pickle
    import shutil

    shutil.copytree(ROOT / "data_samples" / "digitclips-sample", root)
    meta, caps_path = root / "dataset.json", root / "raw-captions.pkl"
    caps = pickle.loads(caps_path.read_bytes())
    vid = (root / "train_list.txt").read_text().split()[0]
    if case == "dataset.json is a directory":
        meta.unlink()
        meta.mkdir()
        return r"dataset.json: cannot be read \(Is a directory\)"
    if case == "absolute split path":
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"splits": {"train": "/etc/passwd"}}))
        return r"dataset.json: key 'splits' is .*/etc/passwd.*; expected .* relative to the dataset directory"
    nested: list = ["deep"]
    for _ in range(200):
        nested = [nested]
    caps[vid] = {"nested caption": [nested], "bytearray caption": [bytearray(10**6)],
                 "zero-width caption": [["\u200b"]]}[case]
    caps_path.write_bytes(pickle.dumps(caps))
    return {"nested caption": "raw-captions.pkl: refused containers nested more than 100 deep",
            "bytearray caption": rf"raw-captions.pkl: video '{vid}' has caption #0 of type bytearray "
                                 r"\(bytearray\); expected",  # not its repr: 4 GB for a 1 GB bytearray
            "zero-width caption": rf"raw-captions.pkl: video '{vid}' has an empty caption"}[case]


@pytest.mark.parametrize("case", ["nested caption", "bytearray caption", "zero-width caption",
                                  "dataset.json is a directory", "absolute split path", "text model",
                                  "non-UTF-8 query"])
def test_cli_bad_input_is_one_error_line_naming_the_file_or_key(tmp_path, capsys, monkeypatch, case):
    if case == "non-UTF-8 query":  # bytes of the command line that are not UTF-8 arrive as lone surrogates
        code, err = _cli(capsys, "search", "caf\udce9 moves left")
        expected = r"search: the query is not valid UTF-8 \(character 3: '\\udce9'\)"
    elif case == "text model":  # e.g. msrvtt-1ka's bert-base-uncased, not in the cache and no network
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        code, err = _cli(capsys, *_train_args(tmp_path / "run"), "text.model=no-such-org/bert-t2vlad-missing")
        expected = "text model 'no-such-org/bert-t2vlad-missing' is not in the local .* text.model=minilm"
    else:
        data = tmp_path / "data"
        expected = _bad_sample(data, case)
        code, err = _cli(capsys, *_train_args(tmp_path / "run"), f"data.dataset={data}")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(expected, err), err


def test_a_checkpoint_is_refused_on_other_data(finished, tmp_path):
    """A model trained on one data set (e.g. DigitClips v2) is not evaluated on another one (v3) silently."""
    import shutil

    from t2vlad_lib.engine.pipeline import prepare

    cfg, res = finished
    assert load_checkpoint(res.run_dir / "best.pt")["data"]["dir"] == "digitclips-sample"
    other = tmp_path / "digitclips-v9-full-seed0"
    shutil.copytree(ROOT / "data_samples" / "digitclips-sample", other)
    moved = load_config("fast", small_run(tmp_path / "x", epochs=1, **{"data.dataset": str(other)}))
    with pytest.raises(CheckpointError, match=r"on 'digitclips-sample \[digitclips-sample\] \w{12}' but this "
                                              r"data is 'digitclips-v9-full-seed0 \["):
        load_run(res.run_dir, data=prepare(moved, verbose=False))


# --- one run identity: a DigitClips version bump is never a finished run ---------------------------------


@pytest.fixture
def digitclips_v3(tmp_path, monkeypatch):
    """A DigitClips "v3" data cache that holds the 64-video sample (generating the fast set takes a minute)
    and a function that bumps the generator to v4, as a new release would (the new data regenerated)."""
    import shutil

    from t2vlad_lib.data import digitclips

    cache = tmp_path / "cache"
    shutil.copytree(ROOT / "data_samples" / "digitclips-sample", cache / "digitclips-v3-fast-seed0")
    monkeypatch.setattr(digitclips, "VERSION", 3)

    def bump():
        monkeypatch.setattr(digitclips, "VERSION", 4)
        shutil.copytree(cache / "digitclips-v3-fast-seed0", cache / "digitclips-v4-fast-seed0")

    return {"data.dataset": "digitclips", "data.fast": True}, bump


def test_after_a_digitclips_version_bump_every_path_retrains_or_refuses(tmp_path, digitclips_v3, capsys):
    from t2vlad_lib.course import shipped
    from t2vlad_lib.course.ablate import run_variant
    from t2vlad_lib.engine.runs import inspect_run
    from t2vlad_lib.engine.train import ensure_trained

    data, bump = digitclips_v3
    extra = {**small_run(epochs=1), **data}
    root = tmp_path / "abl"
    metrics = run_variant("fast", {}, 0, root, extra)  # trained on v3
    run_dir = next(root.glob("*/base/seed0"))
    cfg = load_config("fast", {**extra, "out_dir": str(run_dir)})
    assert load_checkpoint(run_dir / "best.pt")["data"]["id"] == "digitclips-v3-fast-seed0"
    assert run_variant("fast", {}, 0, root, extra) == metrics  # the cached run
    shipped.pack({"base/seed0": run_dir}, checkpoints={"base/seed0"}, root=tmp_path / "shipped",
                 evaluate_checkpoints=False)
    copy = load_config("fast", {**extra, "out_dir": str(tmp_path / "installed")})
    assert shipped.install(copy, root=tmp_path / "shipped", verbose=False)  # an installed copy of the v3 run
    before = (run_dir / "best.pt").read_bytes()

    bump()
    diff = "data: digitclips-v3-fast-seed0 vs digitclips-v4-fast-seed0"
    assert inspect_run(run_dir, cfg).diff == (diff,) and run_state(run_dir, cfg) == "other"
    refused = rf"{run_dir} holds a run of another config or data \(there vs here: {diff}\): not training"
    for attempt in (lambda: run_variant("fast", {}, 0, root, extra),  # no stale results.json
                    lambda: run_variant("fast", {"test_terms": "local"}, 0, root, extra),
                    lambda: ensure_trained(cfg, progress=False),
                    lambda: train_or_load(cfg, progress=False)):
        with pytest.raises(RunExistsError, match=refused):
            attempt()
    with pytest.raises(RunExistsError, match=rf"already holds a run of another config or data .*{diff}"):
        train(cfg, progress=False)
    with pytest.raises(CheckpointError, match="trained on 'digitclips-v3-fast-seed0' but this config's data "
                                              "is 'digitclips-v4-fast-seed0'"):
        train(cfg, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="trained on 'digitclips-v3-fast-seed0' but this data is "
                                              "'digitclips-v4-fast-seed0'"):
        load_run(run_dir, cfg=cfg)
    assert (run_dir / "best.pt").read_bytes() == before  # nothing lost
    assert shipped.find(cfg, root=tmp_path / "shipped") is None  # the v3 shipped run is not this run
    capsys.readouterr()
    model, _, results = train_or_load(copy, progress=False)  # an installed copy holds nothing trained here
    assert "replacing a shipped run installed for another config or data (data: " in capsys.readouterr().out
    assert load_checkpoint(copy.run_dir() / "best.pt")["data"]["id"] == "digitclips-v4-fast-seed0"
    assert "shipped" not in results and is_finished(copy.run_dir(), copy)


# --- nothing lost: --overwrite, interrupted runs (resume: test_train.py) --------------------------------


def test_only_overwrite_replaces_a_finished_run_and_keeps_it_until_the_new_checkpoint(tmp_path, capsys):
    """A plain train refuses a finished run; --overwrite keeps the old run until the new one has a
    checkpoint (a failed --overwrite, or one killed in its first epoch, leaves it); --out trains elsewhere."""
    out = tmp_path / "run"
    args = _train_args(out)
    assert _cli(capsys, *args)[0] == 0
    before = {n: (out / n).read_bytes() for n in ("best.pt", "last.pt", "results.json")}
    code, err = _cli(capsys, *args)  # a plain train
    assert code == 2
    assert f"{out} already holds a finished run (test t2v R@1" in err
    assert all(hint in err for hint in ("--resume", "--overwrite", "--out"))
    assert {n: (out / n).read_bytes() for n in before} == before  # untouched
    code, err = _cli(capsys, *args, "data.dataset=/nonexistent", "--overwrite")
    assert code == 2 and err.startswith("error: dataset directory /nonexistent not found")
    assert err.count("\n") == 1
    assert {n: (out / n).read_bytes() for n in before} == before and not (out / ".overwritten").exists()
    # a kill during an --overwrite's first epoch: the next train into the directory puts the old run back
    (out / ".overwritten").mkdir()
    for name in ("best.pt", "last.pt", "results.json", "config.json"):
        (out / name).rename(out / ".overwritten" / name)
    (out / "config.json").write_text("{}")  # what the new run had written
    code, said = cli.main([str(a) for a in args]), capsys.readouterr()
    assert "put back the run that an interrupted --overwrite had set aside" in said.out
    assert code == 2 and "already holds a finished run" in said.err
    assert {n: (out / n).read_bytes() for n in before} == before and not (out / ".overwritten").exists()
    assert json.loads((out / "config.json").read_text())["seed"] == 0
    assert _cli(capsys, *args, "--overwrite")[0] == 0 and not (out / ".overwritten").exists()  # replaced
    elsewhere = tmp_path / "elsewhere"
    assert _cli(capsys, *args, "--out", elsewhere)[0] == 0 and is_finished(elsewhere)


def test_an_interrupted_first_epoch_is_named_and_its_temporary_files_cleaned(tmp_path, capsys, finished):
    """A kill while the first last.pt was written leaves best.pt and a .tmp file: an interrupted run of this
    config, not "a run of another config"."""
    from t2vlad_lib.engine.train import ensure_trained

    cfg, res = finished
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes((res.run_dir / "best.pt").read_bytes())
    (out / ".last.pt.k1ll3d.tmp").write_bytes(b"\0" * 1000)
    here = replace(cfg, out_dir=str(out))
    assert run_state(out, here) == "interrupted"
    code, err = _cli(capsys, *_train_args(out))
    assert code == 2 and "holds an interrupted run (killed before its first last.pt was written" in err
    assert not list(out.glob(".*.tmp"))  # cleaned under the lock
    ensure_trained(here, progress=False)
    assert "holds an interrupted run" in capsys.readouterr().out and is_finished(out, here)


# --- one-line errors ----------------------------------------------------------------------------------------


def test_a_lock_that_is_a_symbolic_link_is_refused(tmp_path):
    target = tmp_path / "important.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    with pytest.raises(RunLockError, match=f"{run / '.lock'} is a symbolic link"):
        with run_lock(run):
            pass
    assert target.read_text() == "keep me"


def test_a_full_disk_inside_torch_save_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import t2vlad_lib.core.checkpoint as checkpoint

    real = os.fdopen

    class Full:  # a disk that fills up after 10 KB, as torch.save meets it
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            if self.written + len(data) > 10_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    fake_os = types.SimpleNamespace(**vars(os))  # only checkpoint.py's writes meet the full disk
    fake_os.fdopen = lambda fd, mode: Full(real(fd, mode))
    monkeypatch.setattr(checkpoint, "os", fake_os)
    with pytest.raises(OSError) as err:
        save_checkpoint(tmp_path / "x.pt", {"model": {"w": torch.zeros(10_000)}, "config": {}})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())  # no temporary file left
    code, err = _cli(capsys, *_train_args(tmp_path / "run"))  # stderr also has the text cache's progress bar
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    best = tmp_path / "run" / "best.pt"
    assert err.endswith(f"\nerror: {best}: the disk is full (No space left on device); free some space, or "
                        "point --out or T2VLAD_CACHE to another disk\n")


def test_out_or_cache_that_is_no_directory_is_one_line(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for out in (afile, tmp_path / "dangling", tmp_path / "loop", afile / "run"):
        code, err = _cli(capsys, *_train_args(out))
        assert code == 2 and err.count("\n") == 1 and f"error: {out}" in err, err
        assert "--out and T2VLAD_CACHE must name directories" in err
    monkeypatch.setenv("T2VLAD_CACHE", str(afile))
    code, err = _cli(capsys, *_train_args(tmp_path / "run"))
    assert code == 2 and f"error: {afile}: it exists and is not a directory" in err


def test_unreadable_is_not_reported_as_a_full_disk(tmp_path, capsys, monkeypatch):
    path = tmp_path / "features.rgb.pkl"

    def denied(*_, **__):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("t2vlad_lib.engine.train.train", denied)
    code, err = _cli(capsys, *_train_args(tmp_path / "run"))
    assert code == 2 and f"error: {path}: permission denied" in err and "full" not in err


def test_damaged_run_records_are_one_line_naming_the_file(tmp_path, capsys, finished):
    cfg, res = finished
    bad = tmp_path / "bad" / "best.pt"
    bad.parent.mkdir()
    good = load_checkpoint(res.run_dir / "best.pt")
    save_checkpoint(bad, {**{k: v for k, v in good.items() if k != "sha256"}, "data": {}})
    code, err = _cli(capsys, "evaluate", "--checkpoint", bad)
    assert code == 2 and f"error: {bad}: its data record {{}} names no data set" in err
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes((res.run_dir / "best.pt").read_bytes())
    (run / "results.json").write_text(json.dumps({"best_epoch": 1}))
    code, err = _cli(capsys, *_train_args(run))
    assert code == 2 and f"{run / 'results.json'}: no test metrics" in err and err.count("\n") == 1
    with pytest.raises(RunExistsError, match="a damaged run .*results.json: no test metrics"):
        train_or_load(replace(cfg, out_dir=str(run)), progress=False)


def test_a_distillation_teacher_must_fit_and_share_the_students_data(tmp_path, finished):
    import shutil

    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.extensions.distill import load_teacher

    cfg, res = finished
    good = {k: v for k, v in load_checkpoint(res.run_dir / "best.pt").items() if k != "sha256"}
    foreign = tmp_path / "matching.pt"
    save_checkpoint(foreign, {**good, "kind": "matching", "dual_config": good["config"],
                              "dual": good["model"], "head_config": {"width": 3}, "head": {}})
    data = load_run(res.run_dir).data
    with pytest.raises(CheckpointError, match=f"distillation teacher {foreign} is not a teacher this version "
                                              r"can load \(TypeError"):
        load_teacher(foreign, data)
    other = tmp_path / "other-data"
    shutil.copytree(ROOT / "data_samples" / "digitclips-sample", other)
    elsewhere = prepare(load_config("fast", small_run(tmp_path / "x", **{"data.dataset": str(other)})),
                        verbose=False)
    with pytest.raises(CheckpointError, match=r"teacher .* was trained on 'digitclips-sample \[.*the student "
                                              r"trains on 'other-data \["):
        load_teacher(res.run_dir / "best.pt", elsewhere)
    assert load_teacher(res.run_dir / "best.pt", data).kind == "dual"
