"""VLAD, NetVLAD and T2VLAD's cross-modal (shared-center) VLAD (paper sec. 3.4, eqs. 1-3).

Vocabulary: B batch, N tokens (L text tokens or M video tokens), D token width, K clusters,
G ghost clusters.

- :func:`vlad` is classic VLAD: hard assignment to k-means centers, residual sums, intra-norm, L2.
- :class:`NetVLAD` is the trainable version: soft assignment over K+G clusters (eq. 1), residuals to a
  second, decoupled set of centers c' (eq. 2), ghost clusters dropped after the softmax.
- :class:`CrossModalVLAD` aggregates text and video tokens with shared (or separate) centers; its kinds
  (:data:`VLAD_KINDS`: :class:`SharedVLAD`, :class:`SeparateVLAD`, :class:`TextOnlyVLAD`) are the rows of the
  paper's Table 5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["kmeans", "vlad", "NetVLAD", "CrossModalVLAD", "SharedVLAD", "SeparateVLAD", "TextOnlyVLAD",
           "VLAD_KINDS", "build_vlad", "masked_max"]


def _check_tokens(x: torch.Tensor, mask: torch.Tensor | None, dim: int, who: str) -> torch.Tensor:
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(f"{who}: expected tokens of shape (B, N, {dim}), got {tuple(x.shape)}")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"{who}: mask shape {tuple(mask.shape)} does not match tokens {tuple(x.shape[:2])}")
    return mask.bool()


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of (B, N, D) tokens where ``mask`` (B, N) is True; rows without tokens give 0."""
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    return torch.where(mask.any(dim=1, keepdim=True), filled, torch.zeros_like(filled))


def kmeans(
    x: torch.Tensor, num_clusters: int, iters: int = 50, seed: int = 0, n_init: int = 4
) -> torch.Tensor:
    """Lloyd k-means with k-means++ seeding, best of ``n_init`` restarts (lowest inertia), for classic
    VLAD and notebook figures.

    Args:
        x: (N, D) points.
    Returns:
        (K, D) centers.
    """
    if x.dim() != 2 or x.shape[0] < num_clusters:
        raise ValueError(f"kmeans: need (N, D) points with N >= K={num_clusters}, got {tuple(x.shape)}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    best, best_inertia = x[:num_clusters], math.inf
    for _ in range(n_init):
        centers = _lloyd(x, _kmeans_pp(x, num_clusters, gen), iters)
        inertia = float(torch.cdist(x, centers).min(dim=1).values.pow(2).sum())
        if inertia < best_inertia:
            best, best_inertia = centers, inertia
    return best


def _kmeans_pp(x: torch.Tensor, num_clusters: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next center drawn with probability ~ squared distance to the chosen ones."""
    centers = x[torch.randint(x.shape[0], (1,), generator=gen)]
    for _ in range(1, num_clusters):
        d2 = torch.cdist(x, centers).min(dim=1).values.pow(2)
        probs = (d2 / d2.sum()).cpu() if d2.sum() > 0 else torch.full((x.shape[0],), 1.0 / x.shape[0])
        centers = torch.cat([centers, x[torch.multinomial(probs, 1, generator=gen)]])
    return centers


def _lloyd(x: torch.Tensor, centers: torch.Tensor, iters: int) -> torch.Tensor:
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(dim=1)
        new = torch.stack(
            [x[assign == k].mean(0) if (assign == k).any() else centers[k] for k in range(len(centers))]
        )
        if torch.allclose(new, centers):
            break
        centers = new
    return centers


def vlad(x: torch.Tensor, centers: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Classic VLAD (Jegou et al. 2010) with intra-normalisation.

    v_k = sum_{i: NN(x_i)=k} (x_i - c_k), each v_k L2-normalised, then the K*D vector L2-normalised.

    Args:
        x: (B, N, D) local descriptors.
        centers: (K, D) k-means centers.
        mask: (B, N) bool, True for real tokens.
    Returns:
        (B, K*D) VLAD vectors.
    """
    mask = _check_tokens(x, mask, centers.shape[1], "vlad")
    dist = torch.cdist(x, centers.unsqueeze(0).expand(x.shape[0], -1, -1))  # (B, N, K)
    hard = F.one_hot(dist.argmin(-1), centers.shape[0]).to(x.dtype) * mask.unsqueeze(-1)
    residual = torch.einsum("bnk,bnd->bkd", hard, x) - hard.sum(1).unsqueeze(-1) * centers
    return F.normalize(F.normalize(residual, dim=-1).flatten(1), dim=-1)


class NetVLAD(nn.Module):
    """NetVLAD with ghost clusters and decoupled residual centers (paper eqs. 1-2).

    a_ik = softmax_k(z_i c_k^T + b_k) over K+G clusters, ghost columns dropped after the softmax;
    g_k = normalize(sum_i a_ik (z_i - c'_k)); output normalize([g_1, ..., g_K]).

    Args:
        dim: D, token width.
        num_clusters: K.
        ghost_clusters: G (the paper's "background" center: G=1).
        assignment: ``"batchnorm"`` (the port: no bias, a BatchNorm1d over the K+G logits, computed
            over real tokens only) or ``"bias"`` (eq. 1 as written).
    """

    def __init__(self, dim: int, num_clusters: int, ghost_clusters: int = 1, assignment: str = "batchnorm"):
        super().__init__()
        if assignment not in ("batchnorm", "bias"):
            raise ValueError(f"NetVLAD: assignment must be 'batchnorm' or 'bias', got {assignment!r}")
        if num_clusters < 1 or ghost_clusters < 0:
            raise ValueError(f"NetVLAD: need K >= 1 and G >= 0, got K={num_clusters}, G={ghost_clusters}")
        self.dim, self.num_clusters, self.ghost_clusters = dim, num_clusters, ghost_clusters
        total = num_clusters + ghost_clusters
        scale = 1.0 / math.sqrt(dim)
        self.assign_weight = nn.Parameter(scale * torch.randn(dim, total))  # c_k of eq. 1, (D, K+G)
        self.assign_bias = nn.Parameter(torch.zeros(total)) if assignment == "bias" else None
        self.bn = nn.BatchNorm1d(total) if assignment == "batchnorm" else None
        self.centers = nn.Parameter(scale * torch.randn(num_clusters, dim))  # c'_k of eq. 2, (K, D)

    @property
    def out_dim(self) -> int:
        return self.num_clusters * self.dim

    def assign(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        bn: nn.Module | None = None,
        detach_assignment: bool = False,
    ) -> torch.Tensor:
        """Soft assignments over all K+G clusters (eq. 1); masked tokens get all-zero rows.

        Args:
            x: (B, N, D) tokens. mask: (B, N) bool, True for real tokens.
            bn: a BatchNorm to use instead of ``self.bn`` (one BN per modality when sharing).
            detach_assignment: use the assignment weights without letting gradients reach them.
        Returns:
            (B, N, K+G) assignments; each real token's row sums to 1.
        """
        mask = _check_tokens(x, mask, self.dim, "NetVLAD")
        weight, bias = self.assign_weight, self.assign_bias
        if detach_assignment:
            weight = weight.detach()
            bias = None if bias is None else bias.detach()
        logits = x @ weight  # (B, N, K+G)
        if bias is not None:
            logits = logits + bias
        norm = bn if bn is not None else self.bn
        if norm is not None:  # statistics over real tokens only (the port also counts padding)
            normed = logits.new_zeros(logits.shape)
            if mask.any():
                normed[mask] = norm(logits[mask])
            logits = normed
        return torch.softmax(logits, dim=-1) * mask.unsqueeze(-1).to(x.dtype)

    def aggregate(self, x: torch.Tensor, assignments: torch.Tensor) -> torch.Tensor:
        """Eq. (2): residuals to c'_k weighted by the K real assignments, intra-norm, then L2.

        Args:
            x: (B, N, D) tokens. assignments: (B, N, K) (ghost columns already dropped).
        Returns:
            (B, K*D) descriptors; each of the K blocks has norm 1/sqrt(K) (when non-empty).
        """
        residual = torch.einsum("bnk,bnd->bkd", assignments, x)
        residual = residual - assignments.sum(1).unsqueeze(-1) * self.centers
        return F.normalize(F.normalize(residual, dim=-1).flatten(1), dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_assignments: bool = False,
        *,
        bn: nn.Module | None = None,
        detach_assignment: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Aggregate tokens.

        Args:
            x: (B, N, D) tokens; mask: (B, N) bool (padding and missing experts False).
            return_assignments: also return the (B, N, K) assignments (ghosts dropped) for plots.
        Returns:
            (B, K*D) descriptor [, (B, N, K) assignments].
        """
        soft = self.assign(x, mask, bn=bn, detach_assignment=detach_assignment)[..., : self.num_clusters]
        out = self.aggregate(x, soft)
        return (out, soft) if return_assignments else out


_Out = torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]  # (B, K*D) [, (B, N, K) assignments or None]


class CrossModalVLAD(nn.Module):
    """T2VLAD's local alignment: text and video tokens aggregated over the same K centers (eq. 3).

    The base holds the text NetVLAD; each row of the paper's Table 5 is a subclass, registered by its name in
    :data:`VLAD_KINDS`, that adds the video side and takes only its own options (``OPTIONS``: option ->
    choices, the first the default). Build one from a config with :func:`build_vlad`.

    Args:
        dim: D. num_clusters: K. ghost_clusters: G. assignment: see :class:`NetVLAD`.
    """

    kind = ""
    OPTIONS: dict[str, tuple[str, ...]] = {}

    def __init__(self, dim: int, num_clusters: int, ghost_clusters: int = 1, assignment: str = "batchnorm"):
        super().__init__()
        self.text_vlad = NetVLAD(dim, num_clusters, ghost_clusters, assignment)

    @property
    def out_dim(self) -> int:
        return self.text_vlad.out_dim

    def encode_text(
        self, x: torch.Tensor, mask: torch.Tensor, return_assignments: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, L, D) text tokens, (B, L) mask -> (B, K*D) [, (B, L, K) assignments]."""
        return self.text_vlad(x, mask, return_assignments)

    def encode_video(self, x: torch.Tensor, mask: torch.Tensor, return_assignments: bool = False) -> _Out:
        """(B, M, D) video tokens, (B, M) mask -> (B, K*D) [, (B, M, K) assignments, None without a video
        VLAD]."""
        raise NotImplementedError


# kind name -> class; a config's ``model.vlad.kind`` picks one (engine.config checks its options at load)
VLAD_KINDS: dict[str, type[CrossModalVLAD]] = {}


def _kind(name: str):
    def register(cls: type[CrossModalVLAD]) -> type[CrossModalVLAD]:
        cls.kind = name
        VLAD_KINDS[name] = cls
        return cls

    return register


@_kind("shared")
class SharedVLAD(CrossModalVLAD):
    """The port's scheme: one set of assignment weights c and residual centers c'; the video branch uses c
    detached (only text gradients train c), c' is trained by both branches, and each modality has its own
    BatchNorm. The paper itself only says "shared centers".

    video_assignment: "detached" (the port) | "trainable" (video gradients reach c too). bn: "per_modality"
    (the port) | "shared" (the text BatchNorm for both: its statistics then mix text and video logits; only
    with ``assignment="batchnorm"``).
    """

    OPTIONS = {"video_assignment": ("detached", "trainable"), "bn": ("per_modality", "shared")}

    def __init__(
        self,
        dim: int,
        num_clusters: int,
        ghost_clusters: int = 1,
        assignment: str = "batchnorm",
        video_assignment: str = "detached",
        bn: str = "per_modality",
    ):
        super().__init__(dim, num_clusters, ghost_clusters, assignment)
        _check_options(self, video_assignment=video_assignment, bn=bn)
        self.detach_video = video_assignment == "detached"
        if assignment == "batchnorm" and bn == "per_modality":
            self.video_bn = nn.BatchNorm1d(num_clusters + ghost_clusters)
        else:
            self.video_bn = None

    def encode_video(self, x: torch.Tensor, mask: torch.Tensor, return_assignments: bool = False) -> _Out:
        detach = self.detach_video
        return self.text_vlad(x, mask, return_assignments, bn=self.video_bn, detach_assignment=detach)


@_kind("separate")
class SeparateVLAD(CrossModalVLAD):
    """Two independent NetVLADs ("two separate VLAD")."""

    def __init__(self, dim: int, num_clusters: int, ghost_clusters: int = 1, assignment: str = "batchnorm"):
        super().__init__(dim, num_clusters, ghost_clusters, assignment)
        self.video_vlad = NetVLAD(dim, num_clusters, ghost_clusters, assignment)

    def encode_video(self, x: torch.Tensor, mask: torch.Tensor, return_assignments: bool = False) -> _Out:
        return self.video_vlad(x, mask, return_assignments)


@_kind("text_only")
class TextOnlyVLAD(CrossModalVLAD):
    """A text NetVLAD; the video is max-pooled over tokens, projected to K*D and intra-normalised like a VLAD
    vector, so s_local stays a mean of K per-block cosines. No video assignments (returned as None)."""

    def __init__(self, dim: int, num_clusters: int, ghost_clusters: int = 1, assignment: str = "batchnorm"):
        super().__init__(dim, num_clusters, ghost_clusters, assignment)
        self.video_proj = nn.Linear(dim, num_clusters * dim)

    def encode_video(self, x: torch.Tensor, mask: torch.Tensor, return_assignments: bool = False) -> _Out:
        pooled = self.video_proj(masked_max(x, mask)).view(x.shape[0], self.text_vlad.num_clusters, -1)
        out = F.normalize(F.normalize(pooled, dim=-1).flatten(1), dim=-1)  # intra-norm as the text side
        return (out, None) if return_assignments else out


def _check_options(module: CrossModalVLAD, **options: str) -> None:
    for name, value in options.items():
        if value not in module.OPTIONS[name]:
            choices = module.OPTIONS[name]
            raise ValueError(f"{type(module).__name__}: {name} must be one of {choices}, got {value!r}")


def build_vlad(
    spec: dict[str, str] | str,
    dim: int,
    num_clusters: int,
    ghost_clusters: int = 1,
    assignment: str = "batchnorm",
) -> CrossModalVLAD:
    """The cross-modal VLAD of ``spec``: ``{"kind": "shared", "bn": "shared"}`` (``kind`` defaults to
    "shared") or a kind name. An option the kind does not take is an error."""
    spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("kind", "shared")
    if kind not in VLAD_KINDS:
        raise ValueError(f"build_vlad: kind must be one of {tuple(VLAD_KINDS)}, got {kind!r}")
    cls = VLAD_KINDS[kind]
    extra = sorted(set(spec) - set(cls.OPTIONS))
    if extra:
        takes = sorted(cls.OPTIONS) or "no options"
        raise ValueError(f"build_vlad: kind {kind!r} takes {takes}, got {extra}")
    return cls(dim, num_clusters, ghost_clusters, assignment, **spec)
