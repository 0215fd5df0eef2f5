"""Shared test settings: the shipped 64-video DigitClips sample with a tiny random BERT, so that a
training run takes seconds."""

from pathlib import Path

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
