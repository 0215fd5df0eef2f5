"""The shipped float16 weights give the metrics the manifest records, re-evaluated on the FULL DigitClips test
split (tests/test_shipped.py checks the rest of shipped_runs/ without data).

Why it must stay, and why on the full data: the manifest's ``checkpoint_test`` metrics are what the course's
notebooks print for the shipped runs, measured on the full test split; a smaller split would measure other
numbers, so only the full one can catch weights, a manifest or an evaluation that drifted apart. On a fresh
clone it first generates the full DigitClips and encodes its captions with MiniLM (about 2.5 min on an idle
2-core machine), which is why it runs after the unit tests (``make test-e2e``, part of ``make test``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from t2vlad_lib import course
from t2vlad_lib.course import shipped

MANIFEST = shipped.manifest()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(course.CHECKPOINTS))
def test_shipped_weights_give_the_recorded_metrics(name):
    """Re-evaluate the float16 weights on the test split (generates the full DigitClips once if needed)."""
    from t2vlad_lib.engine.evaluate import evaluate
    from t2vlad_lib.engine.runs import load_run

    entry = MANIFEST["runs"][name]
    run = load_run(Path(shipped.SHIPPED_DIR) / name / shipped.CHECKPOINT)
    run.model.float()
    metrics = evaluate(run.model, run.data.test, run.cfg.eval_batch_size)
    for key, value in entry["checkpoint_test"].items():
        assert metrics[key] == pytest.approx(value, abs=0.11), (name, key)
    assert metrics["t2v_R1"] == pytest.approx(entry["test"]["t2v_R1"], abs=0.11), "float16 changed R@1"
