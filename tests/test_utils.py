"""core.utils: the environment switches and the eval-mode context."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from t2vlad_lib.core.utils import env_flag, eval_mode, is_fast

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("word", ["1", "true", "YES", " on ", "True"])
def test_env_flag_true_words(monkeypatch, word):
    monkeypatch.setenv("T2VLAD_X", word)
    assert env_flag("T2VLAD_X") is True


@pytest.mark.parametrize("word", ["0", "false", "No", "OFF"])
def test_env_flag_false_words(monkeypatch, word):
    monkeypatch.setenv("T2VLAD_X", word)
    assert env_flag("T2VLAD_X", default=True) is False


def test_env_flag_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("T2VLAD_X", raising=False)
    assert env_flag("T2VLAD_X") is False and env_flag("T2VLAD_X", default=True) is True
    monkeypatch.setenv("T2VLAD_X", " ")
    assert env_flag("T2VLAD_X", default=True) is True


@pytest.mark.parametrize("word", ["2", "junk", "y", "-1"])
def test_env_flag_refuses_anything_else_naming_the_variable(monkeypatch, word):
    monkeypatch.setenv("T2VLAD_FAST", word)
    with pytest.raises(ValueError, match=f"T2VLAD_FAST={word!r}: expected 1/0, true/false, yes/no or on/off"):
        is_fast()


def test_cli_refuses_a_bad_switch_in_one_line():
    env = {**os.environ, "T2VLAD_FAST": "2"}
    proc = subprocess.run([sys.executable, "-m", "t2vlad_lib", "demo"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: environment variable T2VLAD_FAST='2': expected 1/0, true/false, " \
        "yes/no or on/off"


def test_eval_mode_restores_each_modules_mode_also_after_an_error():
    a, b = nn.Dropout(0.5), nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval()
    with eval_mode(a, b):
        assert not a.training and not any(m.training for m in b.modules())
        assert torch.equal(a(torch.ones(8)), torch.ones(8))  # dropout is off
    assert a.training and not b.training
    with pytest.raises(RuntimeError), eval_mode(a):
        raise RuntimeError("boom")
    assert a.training
