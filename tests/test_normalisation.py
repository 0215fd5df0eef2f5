"""Hubness and inference-time normalisation: k-occurrence against brute force over every tie-break, the
skewness by hand, the formulas against loops, the identities and limits derived in the docstrings, a hand-made
hub that both fixes resolve, ties never broken in the ground truth's favour, and bad inputs."""

import itertools
import math

import numpy as np
import pytest
import torch
from helpers import SAMPLE, small_run

from t2vlad_lib.core.metrics import t2v_ranks
from t2vlad_lib.engine.evaluate import evaluate, retrieval_metrics
from t2vlad_lib.extensions.normalisation import (
    dual_softmax,
    hubness,
    k_occurrence,
    normalisation_table,
    querybank_normalise,
)

# 4 texts x 4 videos, text i's video is i; video 3 is a hub: texts 0-2 score it 0.7, above their own 0.6
HUB = torch.tensor([[0.6, 0.1, 0.0, 0.7],
                    [0.1, 0.6, 0.1, 0.7],
                    [0.0, 0.1, 0.6, 0.7],
                    [0.1, 0.0, 0.1, 0.8]], dtype=torch.float64)
ONE_EACH = torch.ones(4, 1, dtype=torch.bool)  # (N_v, C=1): one caption per video


def _brute_k_occurrence(s: np.ndarray, k: int) -> np.ndarray:
    """Average, over every order of the videos used as tie-break, of the plain top-k count."""
    n_t, n_v = s.shape
    total = np.zeros(n_v)
    orders = list(itertools.permutations(range(n_v)))
    for order in orders:
        pos = np.empty(n_v, dtype=int)
        pos[list(order)] = np.arange(n_v)
        for i in range(n_t):
            top = sorted(range(n_v), key=lambda j: (-s[i, j], pos[j]))[:k]
            total[top] += 1
    return total / len(orders)


def test_k_occurrence_matches_brute_force_over_all_tie_breaks():
    rng = np.random.default_rng(0)
    for trial in range(4):
        s = rng.integers(0, 3, size=(6, 5)).astype(float)  # many ties
        if trial == 0:
            s[0] = 1.0  # a whole row tied
        for k in range(1, 6):
            occ = k_occurrence(torch.from_numpy(s), k)
            assert occ.shape == (5,) and occ.dtype == torch.float64
            np.testing.assert_allclose(occ.numpy(), _brute_k_occurrence(s, k), atol=1e-12)
            assert occ.sum().item() == pytest.approx(6 * k)


def test_k_occurrence_without_ties_is_a_plain_count():
    s = torch.randn(30, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (1, 3, 7):
        expected = np.zeros(7)
        for row in s.numpy():
            expected[np.argsort(-row)[:k]] += 1
        assert k_occurrence(s, k).tolist() == expected.tolist()
    assert k_occurrence(s.numpy(), 2).tolist() == k_occurrence(s, 2).tolist()  # numpy in, same out
    assert k_occurrence(torch.zeros(0, 3), 1).tolist() == [0.0, 0.0, 0.0]  # no queries: no occurrences


def test_hubness_by_hand():
    # k = 1 on HUB: N_1 = [0, 0, 0, 4], mean 1, deviations [-1, -1, -1, 3]:
    # m2 = (1 + 1 + 1 + 9) / 4 = 3, m3 = (-1 - 1 - 1 + 27) / 4 = 6, skew = 6 / 3^1.5 = 2 / sqrt(3)
    assert k_occurrence(HUB, 1).tolist() == [0.0, 0.0, 0.0, 4.0]
    h = hubness(HUB, 1)
    assert h.skew == pytest.approx(2 / math.sqrt(3)) and h.anti_hubs == 0.75
    # k = 2: tops {3, 0}, {3, 1}, {3, 2}, {3, 0 or 2 tied at 0.1} -> N_2 = [1.5, 1, 1.5, 4]: mean 2,
    # deviations [-0.5, -1, -0.5, 2]: m2 = 5.5 / 4, m3 = (-0.125 - 1 - 0.125 + 8) / 4 = 6.75 / 4
    assert k_occurrence(HUB, 2).tolist() == [1.5, 1.0, 1.5, 4.0]
    assert hubness(HUB, 2).skew == pytest.approx((6.75 / 4) / (5.5 / 4) ** 1.5)
    assert hubness(HUB, 2).anti_hubs == 0.0
    # a symmetric k-occurrence [3, 2, 1, 0] has skew 0 and one anti-hub in four
    sym = torch.tensor([[3.0, 2, 1, 0], [3, 0, 2, 1], [3, 2, 0, 1]])  # top-2: {0, 1}, {0, 2}, {0, 1}
    assert k_occurrence(sym, 2).tolist() == [3.0, 2.0, 1.0, 0.0]
    assert hubness(sym, 2) == (0.0, 0.25)
    # no spread at all: every video equally often -> skew 0 by convention, no anti-hubs
    assert hubness(torch.zeros(5, 4), 2) == (0.0, 0.0)
    # the same moments as scipy's biased skewness
    scipy_stats = pytest.importorskip("scipy.stats")
    s = torch.randn(50, 20, generator=torch.Generator().manual_seed(2)) ** 3
    assert hubness(s, 5).skew == pytest.approx(scipy_stats.skew(k_occurrence(s, 5).numpy(), bias=True))


def test_dual_softmax_against_the_formula_by_loops():
    s = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tau = 0.3
    log_form, product = dual_softmax(s, tau), dual_softmax(s, tau, mode="product")
    assert log_form.shape == product.shape == (5, 4) and log_form.dtype == torch.float64
    for i in range(5):
        for j in range(4):
            column = sum(math.exp(s[r, j].item() / tau) for r in range(5))
            prior = math.exp(s[i, j].item() / tau) / column  # softmax over the 5 queries of column j
            assert log_form[i, j].item() == pytest.approx(s[i, j].item() + tau * math.log(prior))
            assert product[i, j].item() == pytest.approx(s[i, j].item() * prior)
    # the log form ranks each row like softmax over videos x softmax over texts
    both = torch.softmax(s / tau, dim=1) * torch.softmax(s / tau, dim=0)
    assert torch.equal(log_form.argsort(dim=1), both.argsort(dim=1))


def test_dual_softmax_with_one_query_is_the_identity():
    s = torch.tensor([[0.3, -0.2, 0.3, 0.9]])
    for mode in ("log", "product"):
        assert torch.equal(dual_softmax(s, 0.05, mode), s.double())


def test_dual_softmax_large_temperature_limits():
    s = torch.randn(6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    tau = 1e6  # tau logsumexp_i(s / tau) = mean_i s + tau log N_t + O(var / tau)
    centred = 2 * s - s.mean(dim=0) - tau * math.log(6)  # log form -> column centring, not the identity
    torch.testing.assert_close(dual_softmax(s, tau), centred, rtol=0, atol=1e-5)
    torch.testing.assert_close(dual_softmax(s, tau, "product"), s / 6, rtol=0, atol=1e-6)


def test_querybank_against_the_formula_by_loops():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(8, 4, generator=g, dtype=torch.float64)
    bank = torch.randn(6, 4, generator=g, dtype=torch.float64)
    bank[:, 3] -= 10  # video 3 is in no bank query's top-1: rows whose top-1 is video 3 stay raw
    s[0, 3] = 5.0
    tau = 0.2
    out = querybank_normalise(s, bank, tau)
    activated = {int(bank[b].argmax()) for b in range(6)}
    assert 3 not in activated
    for i in range(8):
        normalise = int(s[i].argmax()) in activated
        for j in range(4):
            z = sum(math.exp(bank[b, j].item() / tau) for b in range(6))
            expected = s[i, j].item() - tau * math.log(z) if normalise else s[i, j].item()
            assert out[i, j].item() == pytest.approx(expected)
    assert torch.equal(out[0], s[0])
    # a normalised row ranks like the inverted softmax exp(s / tau) / sum_b exp(bank / tau)
    inverted = torch.exp(s / tau) / torch.exp(bank / tau).sum(dim=0)
    rows = [i for i in range(8) if int(s[i].argmax()) in activated]
    assert rows and torch.equal(out[rows].argsort(dim=1), inverted[rows].argsort(dim=1))


def test_querybank_identities_and_limits():
    g = torch.Generator().manual_seed(6)
    s = torch.randn(7, 5, generator=g, dtype=torch.float64)
    bank = torch.randn(9, 5, generator=g, dtype=torch.float64)
    # empty bank, and a bank whose hubs are no query's top-1: unchanged, value for value
    assert torch.equal(querybank_normalise(s, torch.zeros(0, 5)), s)
    elsewhere = torch.zeros(3, 5, dtype=torch.float64)
    elsewhere[:, 0] = 1.0  # the bank's only hub is video 0
    s_no0 = s.clone()
    s_no0[:, 0] = s.min() - 1  # no query has video 0 on top
    assert torch.equal(querybank_normalise(s_no0, elsewhere), s_no0)
    # a bank that scores every video alike: every row normalised by one shared Z, so no ranking changes
    flat = torch.randn(9, 1, generator=g, dtype=torch.float64).expand(9, 5)
    out = querybank_normalise(s, flat, 0.1)
    assert not torch.equal(out, s)
    assert torch.equal(out.argsort(dim=1), s.argsort(dim=1))
    # infinite temperature is no identity: log Z_j -> mean_b bank_bj + tau log N_b; zero -> max_b bank_bj
    activated = k_occurrence(bank, 1) > 0
    gate = (s == s.max(dim=1, keepdim=True).values)[:, activated].any(dim=1)  # the rows QB-Norm changes
    assert gate.any()
    big = querybank_normalise(s, bank, 1e6)
    torch.testing.assert_close(big[gate], (s - bank.mean(0) - 1e6 * math.log(9))[gate], rtol=0, atol=1e-5)
    small = querybank_normalise(s, bank, 1e-4)
    torch.testing.assert_close(small[gate], (s - bank.max(0).values)[gate], rtol=0, atol=1e-3)
    assert torch.equal(big[~gate], s[~gate])


def test_a_hand_made_hub_is_resolved_by_both_fixes():
    # plain: texts 0-2 put the hub (video 3, 0.7) above their own video (0.6): only text 3 is a hit
    plain = retrieval_metrics(HUB, ONE_EACH)
    assert plain["t2v_R1"] == 25.0 and t2v_ranks(HUB).tolist() == [1.0, 1.0, 1.0, 0.0]
    # dual softmax, tau = 0.1: s' = 2 s - 0.1 logsumexp_i(s_ij / 0.1). Column 3: 0.1 log(3 e^7 + e^8) =
    # 0.8744; column 0: 0.1 log(e^6 + 2 e^1 + e^0) = 0.6016. Text 0: video 0 1.2 - 0.6016 = 0.598 beats
    # video 3 1.4 - 0.8744 = 0.526; texts 1, 2 alike by symmetry; text 3: 1.6 - 0.8744 = 0.726 vs at most
    # 0.2 - 0.6016 < 0. All four hits: R@1 = 100.
    dsl = dual_softmax(HUB, 0.1)
    assert dsl[0, 0].item() == pytest.approx(0.5984, abs=1e-4)
    assert dsl[0, 3].item() == pytest.approx(0.5256, abs=1e-4)
    assert retrieval_metrics(dsl, ONE_EACH)["t2v_R1"] == 100.0
    assert k_occurrence(dsl, 1).tolist() == [1.0, 1.0, 1.0, 1.0] and hubness(dsl, 1) == (0.0, 0.0)
    # QB-Norm, tau = 0.01: bank of 3 training queries that also love video 3 (the only activated video).
    # Every text's top-1 is video 3, so every row becomes s - log Z, log Z_j = 0.01 lse_b(bank_bj / 0.01):
    # column 3 (three 0.7s): 0.7 + 0.01 log 3 = 0.7110; columns 0-2 (one 0.2, two 0.1s): 0.2 + 0.01 log(1 +
    # 2 e^-10) = 0.2000. Text 0: video 0 0.6 - 0.2 = 0.4 > video 3 0.7 - 0.711 = -0.011; text 3:
    # 0.8 - 0.711 = 0.089 > 0.1 - 0.2. R@1 = 100.
    bank = torch.tensor([[0.2, 0.1, 0.1, 0.7], [0.1, 0.2, 0.1, 0.7], [0.1, 0.1, 0.2, 0.7]])
    qb = querybank_normalise(HUB, bank, 0.01)
    assert qb[0, 0].item() == pytest.approx(0.4, abs=1e-3)
    assert qb[0, 3].item() == pytest.approx(-0.01 * math.log(3), abs=1e-6)
    assert retrieval_metrics(qb, ONE_EACH)["t2v_R1"] == 100.0
    # a fifth text/video pair whose top-1 (its own video 4) is not a bank hub keeps its raw row
    s5 = torch.cat([torch.cat([HUB, torch.zeros(4, 1, dtype=torch.float64)], 1),
                    torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.9]], dtype=torch.float64)])
    bank5 = torch.cat([bank, torch.zeros(3, 1)], 1)
    qb5 = querybank_normalise(s5, bank5, 0.01)
    assert torch.equal(qb5[4], s5[4]) and not torch.equal(qb5[:4], s5[:4])
    assert retrieval_metrics(qb5, torch.ones(5, 1, dtype=torch.bool))["t2v_R1"] == 100.0


def test_ties_are_not_broken_in_the_ground_truths_favour():
    # video 1 is an exact copy of video 0 (same column): text 0 ties its own video with the copy
    s = torch.tensor([[0.9, 0.9, 0.1], [0.2, 0.2, 0.7], [0.3, 0.3, 0.8]], dtype=torch.float64)
    bank = torch.tensor([[0.5, 0.5, 0.1], [0.1, 0.1, 0.6]], dtype=torch.float64)  # tied top-1: both activated
    assert k_occurrence(bank, 1).tolist() == [0.5, 0.5, 1.0]
    masks = torch.ones(3, 1, dtype=torch.bool)
    normalised = (dual_softmax(s, 0.1), dual_softmax(s, 0.1, "product"), querybank_normalise(s, bank, 0.1))
    for scores in (s, *normalised):
        assert torch.equal(scores[:, 0], scores[:, 1])  # the copies stay tied
        assert t2v_ranks(scores)[0] == 0.5  # tie-averaged, as metrics.py
        assert retrieval_metrics(scores, masks)["t2v_R1"] < 100.0  # text 0 is no hit at 1
    # a constant matrix stays constant: chance-level ranks (N_v - 1) / 2, not a perfect score
    const = torch.full((4, 4), 0.3, dtype=torch.float64)
    for scores in (dual_softmax(const, 0.05), querybank_normalise(const, const[:2], 0.05)):
        assert t2v_ranks(scores).tolist() == [1.5] * 4


def test_reordering_the_gallery_reorders_the_outputs_exactly():
    g = torch.Generator().manual_seed(7)
    s = torch.randint(0, 3, (6, 5), generator=g).double()  # tie-heavy
    bank = torch.randint(0, 3, (4, 5), generator=g).double()
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.equal(k_occurrence(s[:, perm], 2), k_occurrence(s, 2)[perm])
    assert torch.equal(dual_softmax(s[:, perm], 0.5), dual_softmax(s, 0.5)[:, perm])
    qb = querybank_normalise(s, bank, 0.5)
    assert torch.equal(querybank_normalise(s[:, perm], bank[:, perm], 0.5), qb[:, perm])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: k_occurrence(torch.zeros(3), 1), "2-D"),
        (lambda: k_occurrence(torch.zeros(3, 4), 5), "k: expected an integer in"),
        (lambda: k_occurrence(torch.zeros(3, 4), 0), "k: expected an integer in"),
        (lambda: hubness(torch.tensor([[0.0, float("nan")]]), 1), "non-finite value nan at \\[0, 1\\]"),
        (lambda: dual_softmax(torch.zeros(0, 3), 0.1), "empty"),
        (lambda: dual_softmax(torch.zeros(2, 3), 0.0), "temperature"),
        (lambda: dual_softmax(torch.zeros(2, 3), float("inf")), "temperature"),
        (lambda: dual_softmax(torch.zeros(2, 3), float("nan")), "temperature"),
        (lambda: dual_softmax(torch.zeros(2, 3), 0.1, mode="exp"), "mode"),
        (lambda: querybank_normalise(torch.zeros(2, 3), torch.zeros(4, 2)), "same gallery"),
        (lambda: querybank_normalise(torch.zeros(2, 3), torch.tensor([[float("inf")] * 3])), "bank_sims"),
    ],
)
def test_bad_inputs_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
def test_normalisation_table_on_the_sample(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.engine.runs import build_model

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    assert SAMPLE.is_dir()
    cfg = load_config("fast", small_run())
    data = prepare(cfg, verbose=False)
    torch.manual_seed(0)
    run = SimpleNamespace(model=build_model(cfg, data).eval(), data=data)  # untrained: the plumbing only
    table = normalisation_table(run, hub_k=3)
    assert list(table.index) == ["plain", "dual softmax", "QB-Norm"]
    assert table["scores"].tolist() == ["plain", "normalised at inference", "normalised at inference"]
    assert table.loc["QB-Norm", "needs"] == f"bank of {len(data.train.captions)} training captions"
    plain = evaluate(run.model, data.test)
    for key in ("R1", "R5", "R10", "MedR"):
        assert table.loc["plain", key] == plain[f"t2v_{key}"]
    assert table["queries_changed"].tolist()[:2] == [0.0, 100.0]
    assert table[["hub_skew", "anti_hubs (%)"]].notna().all().all()
    assert list(normalisation_table(run, split="val").index) == list(table.index)
    with pytest.raises(ValueError, match="split"):
        normalisation_table(run, split="train")
