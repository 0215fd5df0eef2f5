"""Shared test settings: toy batches for model tests, and the shipped 64-video DigitClips sample with a
tiny random BERT, so that a training run takes seconds."""

import os
import signal
from pathlib import Path

import torch

from t2vlad_lib.core.batch import TextBatch, VideoBatch
from t2vlad_lib.engine.loop import Callback

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data_samples" / "digitclips-sample"


def small_run(out_dir=None, **extra) -> dict:
    """Overrides for a tiny CPU run on the sample (3 epochs of 4 steps), plus ``extra``."""
    over = {
        "data.dataset": str(SAMPLE),
        "text.model": "tiny-random-bert",
        "epochs": 3,
        "batch_size": 8,
        "eval_batch_size": 16,
        "model.dim": 16,
        "model.num_clusters": 3,
        "device": "cpu",
    }
    if out_dir is not None:
        over["out_dir"] = str(out_dir)
    over.update(extra)
    return over


class CrashAtStep(Callback):
    """A trainer callback that SIGKILLs its own process before global step ``step`` (0-based): a run killed
    mid-epoch, to test the resume."""

    def __init__(self, step: int):
        self.step = step

    def on_step_start(self, state) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


DIMS = {"appearance": 7, "motion": 5, "audio": 4}


def make_video(B=5, seed=0, missing_audio=(1, 3)):
    g = torch.Generator().manual_seed(seed)
    lengths = {"appearance": 4, "motion": 3, "audio": 2}
    feats, masks, avail = {}, {}, {}
    for e, d in DIMS.items():
        T = lengths[e]
        feats[e] = torch.randn(B, T, d, generator=g)
        masks[e] = torch.ones(B, T, dtype=torch.bool)
        avail[e] = torch.ones(B, dtype=torch.bool)
    masks["appearance"][0, 3:] = False
    feats["appearance"][0, 3:] = 0
    for i in missing_audio:
        if i < B:
            avail["audio"][i] = False
            masks["audio"][i] = False
            feats["audio"][i] = 0
    return VideoBatch(feats, masks, avail, [f"video{i}" for i in range(B)])


def make_text(B=6, L=7, H=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    for i in range(B):
        mask[i, 3 + i % (L - 3) :] = 0
    states = torch.randn(B, L, H, generator=g)
    return TextBatch(torch.zeros(B, L, dtype=torch.long), mask, states, [f"caption {i}" for i in range(B)])
