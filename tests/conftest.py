"""Shared fixtures of the unit tests, and what they leave out.

tests/e2e/ holds the tests that need the full DigitClips or a browser: ``make test`` runs them after the unit
tests (``make test-e2e``: ``pytest tests/e2e``); ``make test-unit`` (``pytest tests``) does not collect them.
"""

import pytest
from helpers import small_run

collect_ignore = ["e2e"]


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """One finished 1-epoch run of the ``fast`` profile on the 64-video sample (``small_run(out, epochs=1)``),
    trained once per session for the tests that only read it or copy it: ``(cfg, TrainResult)``."""
    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.train import train

    tmp = tmp_path_factory.mktemp("sample-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T2VLAD_CACHE", str(tmp / "cache"))
        cfg = load_config("fast", small_run(tmp / "run", epochs=1))
        return cfg, train(cfg, progress=False)
