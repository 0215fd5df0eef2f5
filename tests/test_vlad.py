"""VLAD / NetVLAD / cross-modal VLAD against naive references and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F

from t2vlad_lib.model.vlad import VLAD_KINDS, NetVLAD, SharedVLAD, build_vlad, kmeans, masked_max, vlad


def _tokens(B=3, N=6, D=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    mask = torch.ones(B, N, dtype=torch.bool)
    if B > 1:
        mask[1, N - 2 :] = False
    if B > 2:
        mask[2, 1] = False
    return x, mask


def _trained_bn(net: NetVLAD, x, mask):
    """Give the BN non-trivial running statistics and affine parameters, then switch to eval."""
    net.train()
    for _ in range(3):
        net(x * 2 + 1, mask)
    with torch.no_grad():
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


def naive_netvlad(net: NetVLAD, x, mask):
    """Per-sample, per-token, per-cluster loops of eqs. (1)-(2) with the BN written out (eval mode)."""
    K, G = net.num_clusters, net.ghost_clusters
    out = []
    for b in range(x.shape[0]):
        g = [torch.zeros(x.shape[-1], dtype=x.dtype) for _ in range(K)]
        for i in range(x.shape[1]):
            if not mask[b, i]:
                continue
            logits = []
            for k in range(K + G):
                z = float(x[b, i] @ net.assign_weight[:, k])
                if net.assign_bias is not None:
                    z += float(net.assign_bias[k])
                if net.bn is not None:
                    bn = net.bn
                    z = (z - float(bn.running_mean[k])) / math.sqrt(float(bn.running_var[k]) + bn.eps)
                    z = z * float(bn.weight[k]) + float(bn.bias[k])
                logits.append(z)
            denom = sum(math.exp(z) for z in logits)
            for k in range(K):
                g[k] = g[k] + math.exp(logits[k]) / denom * (x[b, i] - net.centers[k])
        g = [v / v.norm() for v in g]
        flat = torch.cat(g)
        out.append(flat / flat.norm())
    return torch.stack(out)


@pytest.mark.parametrize("assignment", ["batchnorm", "bias"])
def test_netvlad_equals_naive_loop(assignment):
    torch.manual_seed(0)
    x, mask = _tokens()
    net = NetVLAD(5, 4, ghost_clusters=1, assignment=assignment)
    if assignment == "batchnorm":
        _trained_bn(net, x, mask)
    else:
        with torch.no_grad():
            net.assign_bias.uniform_(-1, 1)
        net.eval()
    with torch.no_grad():
        out = net(x, mask)
        ref = naive_netvlad(net, x, mask)
    assert out.shape == (3, 4 * 5)
    assert torch.allclose(out, ref, atol=1e-5)


def test_assignments_sum_to_one_over_all_clusters_and_zero_on_masked():
    torch.manual_seed(0)
    x, mask = _tokens()
    net = NetVLAD(5, 4, ghost_clusters=2)
    a = net.assign(x, mask)
    assert a.shape == (3, 6, 6)
    assert torch.allclose(a.sum(-1)[mask], torch.ones(int(mask.sum())), atol=1e-6)
    assert torch.all(a[~mask] == 0)
    _, soft = net(x, mask, return_assignments=True)
    assert soft.shape == (3, 6, 4)
    assert torch.all(soft.sum(-1)[mask] < 1)  # the ghosts took some mass


def test_per_cluster_norms_and_total_norm():
    torch.manual_seed(0)
    x, mask = _tokens(N=8)
    K = 4
    out = NetVLAD(5, K)(x, mask)
    blocks = out.view(3, K, 5).norm(dim=-1)
    assert torch.allclose(blocks, torch.full_like(blocks, 1 / math.sqrt(K)), atol=1e-6)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_token_permutation_invariance(train):
    torch.manual_seed(0)
    x, mask = _tokens()
    net = NetVLAD(5, 3).train(train)
    perm = torch.randperm(x.shape[1])
    assert torch.allclose(net(x, mask), net(x[:, perm], mask[:, perm]), atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_masked_tokens_change_nothing(train):
    torch.manual_seed(0)
    x, mask = _tokens()
    net = NetVLAD(5, 3).train(train)
    y = x.clone()
    y[~mask] = 1e3 * torch.randn(int((~mask).sum()), 5)
    assert torch.allclose(net(x, mask), net(y, mask), atol=1e-6)
    # and it equals dropping the padded tokens: sample 1 alone with its 4 real tokens (eval: no batch stats)
    net.eval()
    assert torch.allclose(net(x, mask)[1], net(x[1:2, : mask[1].sum()])[0], atol=1e-6)


def test_ghost_cluster_absorbs_a_token():
    """A token whose ghost logit dominates contributes (almost) nothing to the descriptor."""
    torch.manual_seed(0)
    x, mask = _tokens(B=1, N=5)
    net = NetVLAD(5, 3, ghost_clusters=1, assignment="bias").eval()
    with torch.no_grad():
        net.assign_bias[-1] = -50.0
        net.assign_weight[:, -1] = 0.0
    noise = torch.randn(1, 1, 5)
    with_noise = torch.cat([x, noise], 1)
    assert not torch.allclose(net(x), net(with_noise), atol=1e-3)  # real cluster picks it up
    with torch.no_grad():
        net.assign_weight[:, -1] = 1e3 * noise[0, 0]  # the ghost now claims the noise direction
    assert net.assign(with_noise)[0, -1, -1] > 0.999
    assert torch.allclose(net(x), net(with_noise), atol=1e-3)


def test_netvlad_gradcheck_float64():
    torch.manual_seed(0)
    x, mask = _tokens(B=2, N=4, D=3, dtype=torch.float64)
    net = NetVLAD(3, 2, assignment="bias").double()
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: net(t, mask), (x,), eps=1e-6, atol=1e-5)
    net_bn = NetVLAD(3, 2, assignment="batchnorm").double().train()
    assert torch.autograd.gradcheck(lambda t: net_bn(t, mask), (x,), eps=1e-6, atol=1e-5)


def test_classic_vlad_against_loop_and_kmeans_recovers_blobs():
    g = torch.Generator().manual_seed(0)
    true = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    pts = torch.cat([c + 0.3 * torch.randn(40, 2, generator=g) for c in true])
    centers = kmeans(pts, 3, seed=1)
    assert torch.cdist(true, centers).min(1).values.max() < 0.3
    # overlapping blobs where a single seeded run can merge two of them: restarts keep the best inertia
    close = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    blobs = torch.cat([c + 0.6 * torch.randn(60, 2, generator=g) for c in close])
    for seed in range(4):
        assert torch.cdist(close, kmeans(blobs, 3, seed=seed)).min(1).values.max() < 0.5
    x = pts[torch.randperm(120, generator=g)[:10]].view(2, 5, 2)
    out = vlad(x, centers)
    for b in range(2):
        blocks = []
        for k in range(3):
            r = sum(
                (
                    (x[b, i] - centers[k])
                    for i in range(5)
                    if torch.cdist(x[b, i : i + 1], centers).argmin() == k
                ),
                torch.zeros(2),
            )
            blocks.append(F.normalize(r, dim=0))
        ref = F.normalize(torch.cat(blocks), dim=0)
        assert torch.allclose(out[b], ref, atol=1e-6)


def test_masked_max_ignores_masked_and_empty_rows_are_zero():
    x = torch.tensor([[[1.0], [9.0], [3.0]], [[4.0], [5.0], [6.0]]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    assert masked_max(x, mask).flatten().tolist() == [3.0, 0.0]


def test_bad_input_names_the_problem():
    net = NetVLAD(5, 3)
    with pytest.raises(ValueError, match=r"\(B, N, 5\)"):
        net(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="mask shape"):
        net(torch.randn(2, 4, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="kind must be one of"):
        build_vlad("both", 5, 3)


def _grad_names(module, loss):
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_shared_mode_shares_centers_and_only_text_trains_the_assignment():
    torch.manual_seed(0)
    x, mask = _tokens()
    m = build_vlad("shared", 5, 3).train()
    assert type(m) is SharedVLAD and m.video_bn is not m.text_vlad.bn
    # video branch: reaches the shared residual centers and its own BN, never the assignment weights
    grads = _grad_names(m, (m.encode_video(x, mask) * torch.randn(3, 15)).sum())
    assert "text_vlad.centers" in grads and "video_bn.weight" in grads
    assert "text_vlad.assign_weight" not in grads and "text_vlad.bn.weight" not in grads
    # text branch: reaches assignment weights and centers
    grads = _grad_names(m, (m.encode_text(x, mask) * torch.randn(3, 15)).sum())
    assert {"text_vlad.centers", "text_vlad.assign_weight", "text_vlad.bn.weight"} <= grads
    assert "video_bn.weight" not in grads


def test_separate_mode_has_independent_parameters():
    torch.manual_seed(0)
    x, mask = _tokens()
    m = build_vlad({"kind": "separate"}, 5, 3)
    text_ids = {id(p) for p in m.text_vlad.parameters()}
    assert not text_ids & {id(p) for p in m.video_vlad.parameters()}
    grads = _grad_names(m, (m.encode_video(x, mask) * torch.randn(3, 15)).sum())
    assert grads and all(n.startswith("video_vlad.") for n in grads)
    assert "video_vlad.assign_weight" in grads
    assert not torch.allclose(m.encode_text(x, mask), m.encode_video(x, mask))


def test_text_only_mode_pools_video():
    torch.manual_seed(0)
    x, mask = _tokens()
    m = build_vlad("text_only", 5, 3)
    v, assign = m.encode_video(x, mask, return_assignments=True)
    assert v.shape == (3, 15) and assign is None
    blocks = F.normalize(m.video_proj(masked_max(x, mask)).view(3, 3, 5), dim=-1)
    assert torch.allclose(v, blocks.flatten(1) / math.sqrt(3), atol=1e-6)
    grads = _grad_names(m, (v * torch.randn(3, 15)).sum())
    assert grads == {"video_proj.weight", "video_proj.bias"}


def test_trainable_video_assignment_and_one_shared_batchnorm():
    """The diagnosis switches: video gradients reach the shared assignment weights only when asked; with one
    BatchNorm for both modalities there is no video BN and the video logits move the shared statistics."""
    torch.manual_seed(0)
    x, mask = _tokens()
    m = build_vlad({"kind": "shared", "video_assignment": "trainable"}, 5, 3).train()
    grads = _grad_names(m, (m.encode_video(x, mask) * torch.randn(3, 15)).sum())
    assert {"text_vlad.assign_weight", "text_vlad.centers", "video_bn.weight"} <= grads
    m = build_vlad({"bn": "shared"}, 5, 3).train()  # kind defaults to shared
    assert m.video_bn is None
    before = m.text_vlad.bn.running_mean.clone()
    grads = _grad_names(m, (m.encode_video(x, mask) * torch.randn(3, 15)).sum())
    assert "text_vlad.bn.weight" in grads and "text_vlad.assign_weight" not in grads
    assert not torch.equal(before, m.text_vlad.bn.running_mean)
    with pytest.raises(ValueError, match="video_assignment"):
        SharedVLAD(5, 3, video_assignment="frozen")


def test_each_kind_takes_only_its_own_options():
    """A kind's options are its class's OPTIONS: the shared kind's switches given to another kind are refused,
    not silently ignored; with ``assignment="bias"`` the shared kind has no video BatchNorm to keep."""
    assert list(VLAD_KINDS) == ["shared", "separate", "text_only"]
    assert VLAD_KINDS["shared"].OPTIONS == {"video_assignment": ("detached", "trainable"),
                                            "bn": ("per_modality", "shared")}
    for kind in ("separate", "text_only"):
        assert VLAD_KINDS[kind].OPTIONS == {}
        with pytest.raises(ValueError, match=rf"kind '{kind}' takes no options, got \['video_assignment'\]"):
            build_vlad({"kind": kind, "video_assignment": "trainable"}, 5, 3)
    assert build_vlad("shared", 5, 3, assignment="bias").video_bn is None
    # same parameter names as before kinds were classes: checkpoints of every kind still load
    names = {k: sorted(dict(build_vlad(k, 5, 3).named_parameters())) for k in VLAD_KINDS}
    assert names["shared"] == ["text_vlad.assign_weight", "text_vlad.bn.bias", "text_vlad.bn.weight",
                               "text_vlad.centers", "video_bn.bias", "video_bn.weight"]
    assert [n for n in names["separate"] if n.startswith("video_")][0] == "video_vlad.assign_weight"
    assert names["text_only"][-2:] == ["video_proj.bias", "video_proj.weight"]
