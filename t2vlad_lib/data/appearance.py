"""The appearance expert: a small CNN pretrained on digit identity, colour and size, then frozen.

Like an ImageNet backbone for MSRVTT's ``rgb`` expert, it is trained on its own task (classify single
coloured digits on DigitClips scene crops) with digits of even index in ``load_digits`` only; its
64-d global-max-pooled features of every second frame are the ``appearance`` expert (T=12, D=64).
The weights (about 100 KB) ship in ``data_samples/appearance_cnn.pt``; ``train_appearance_cnn()``
rebuilds them.

The expert runs the frozen CNN as an integer network (:class:`ExactCNN`): weights rounded to 10 bits,
pixels as integers, every layer's sums exact (integers below 2**53 in float64), so the features are the
same bytes whatever the CPU's SIMD width, the BLAS kernel or the thread count (a float32 convolution
sums in a CPU-dependent order and differs in the last bits from machine to machine).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .experts import quantize
from .render import COLOURS, SCENES, SIZE, SIZES, digit_alpha, digit_images, scene_image

__all__ = [
    "AppearanceCNN", "ExactCNN", "WEIGHTS_PATH", "training_frames", "train_appearance_cnn",
    "load_appearance_cnn", "appearance_features",
]

WEIGHTS_PATH = Path(__file__).resolve().parents[2] / "data_samples" / "appearance_cnn.pt"


class AppearanceCNN(nn.Module):
    """Three 3x3 conv blocks (16, 32, 64 channels) -> global max pool -> 64-d feature -> 3 heads."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, width, 3, padding=1), nn.ReLU(),
        )
        self.digit = nn.Linear(width, 10)
        self.colour = nn.Linear(width, len(COLOURS))
        self.size = nn.Linear(width, len(SIZES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, 64) features (global max over space)."""
        return self.body(x - 0.5).amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> logits for digit (B, 10), colour (B, 6) and size (B, 2)."""
        h = self.features(x)
        return self.digit(h), self.colour(h), self.size(h)


def training_frames(n: int, seed: int = 0, parity: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n single-digit frames (n, 48, 48, 3) uint8 and labels (n, 3) = (digit, colour, size).

    Digits are drawn from images whose index in ``load_digits`` has the given parity (0: the CNN's
    training half, 1: held out), placed at random on a random scene crop with sensor noise.
    """
    rng = np.random.default_rng([seed, 7, parity])
    _, labels = digit_images()
    pool = np.flatnonzero(np.arange(len(labels)) % 2 == parity)
    scenes, colours, sizes = list(SCENES), list(COLOURS.values()), list(SIZES.values())
    frames = np.zeros((n, SIZE, SIZE, 3), np.float32)
    y = np.zeros((n, 3), np.int64)
    for i in range(n):
        tex = scene_image(scenes[rng.integers(len(scenes))])
        a, b = rng.integers(0, tex.shape[0] - SIZE + 1), rng.integers(0, tex.shape[1] - SIZE + 1)
        img = tex[a:a + SIZE, b:b + SIZE] * rng.uniform(0.85, 1.15)
        image = int(pool[rng.integers(len(pool))])
        c, s = int(rng.integers(len(colours))), int(rng.integers(len(sizes)))
        side = sizes[s]
        alpha = digit_alpha(image, side)[..., None]
        px, py = rng.integers(0, SIZE - side + 1, size=2)
        patch = img[py:py + side, px:px + side]
        img[py:py + side, px:px + side] = patch * (1 - alpha) + np.asarray(colours[c], np.float32) * alpha
        frames[i] = img + rng.normal(0, 0.015, img.shape)
        y[i] = (labels[image], c, s)
    return np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8), y


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)


def train_appearance_cnn(path: str | Path | None = WEIGHTS_PATH, n: int = 30000, epochs: int = 6,
                         seed: int = 0, verbose: bool = True) -> AppearanceCNN:
    """Train the appearance CNN from scratch (about 2 minutes on 2 CPU cores) and save its weights.

    Cross-entropy on the three heads, AdamW lr 3e-3 with cosine decay, batch 128, random
    horizontal shifts come from the random placement. Returns the trained model (eval mode).
    """
    torch.manual_seed(seed)
    frames, y = training_frames(n, seed=seed, parity=0)
    x, y = _to_tensor(frames), torch.from_numpy(y)
    model = AppearanceCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * (n // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for k in range(n // 128):
            idx = perm[k * 128:(k + 1) * 128]
            logits = model(x[idx])
            loss = sum(nn.functional.cross_entropy(lg, y[idx, j]) for j, lg in enumerate(logits))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        if verbose:
            print(f"epoch {epoch}: loss {total / (n // 128):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)
    return model


def load_appearance_cnn(path: str | Path = WEIGHTS_PATH) -> AppearanceCNN:
    """The shipped, frozen appearance CNN (eval mode, no gradients)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: appearance CNN weights not found; run "
                                "t2vlad_lib.data.appearance.train_appearance_cnn() to rebuild them")
    model = AppearanceCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)
    return model


class ExactCNN:
    """The body of a trained :class:`AppearanceCNN` in exact integer arithmetic (features only).

    Pixels u in 0..255 enter as 2u - 255 (= 510 (x - 0.5), the float model's input). Each conv layer's
    weights become integers W_q = round(W * 2**s) of ``WEIGHT_BITS`` bits, its bias is rounded to the
    accumulator's scale, and ReLU and max-pooling commute with positive scales. Before a layer the
    activations are shifted right (floor division by 2**r) just enough that the worst case of its sums,
    max|a| * max_o sum|W_q[o]| + max|b_q|, stays below 2**24: every product and partial sum is then an
    integer that float32 holds exactly, so any summation order (any SIMD width, convolution kernel or
    thread count) gives the same result, at float32 speed. The construction checks this on a few frames
    against an int64 reference and raises if this platform's convolution is not exact. ``features`` gives
    the float model's features to about 1 % of their range; the heads classify them as well (tested).
    """

    WEIGHT_BITS = (10, 8, 7)
    LIMIT = 2.0**24

    def __init__(self, model: AppearanceCNN, check: bool = True) -> None:
        convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        self.shifts: list[int] = []  # right shift of the activations before each layer
        scale, bound = 510.0, 255.0  # integer = scale * real value; max |integer|
        for conv, bits in zip(convs, self.WEIGHT_BITS, strict=True):
            w, b = conv.weight.detach().double(), conv.bias.detach().double()
            s = math.floor(math.log2((2**bits - 1) / float(w.abs().max())))
            wq = torch.round(w * 2.0**s)
            row_sum = float(wq.abs().sum((1, 2, 3)).max())
            shift = 0
            while True:
                in_scale, in_bound = scale / 2**shift, math.floor(bound / 2**shift)
                bq = torch.round(b * in_scale * 2.0**s)
                acc_bound = in_bound * row_sum + float(bq.abs().max())
                if acc_bound < self.LIMIT:
                    break
                shift += 1
            self.weights.append(wq.float())
            self.biases.append(bq.float())
            self.shifts.append(shift)
            scale, bound = in_scale * 2.0**s, acc_bound
        if self.shifts[0]:
            raise ValueError("ExactCNN: the first layer's weights are too large for exact sums")
        self.scale = scale  # of the last layer's integers
        if check:
            self.check()

    def _layers(self, x: torch.Tensor, conv) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b, shift) in enumerate(zip(self.weights, self.biases, self.shifts, strict=True)):
            if shift:
                x = torch.div(x, 2**shift, rounding_mode="floor")  # x >= 0 here (after a ReLU)
            x = torch.relu(conv(x, w, b))
            if i < last:
                x = F.max_pool2d(x, 2)
        return x.amax(dim=(2, 3))

    @torch.no_grad()
    def integers(self, frames: np.ndarray) -> torch.Tensor:
        """frames (N, H, W, 3) uint8 -> (N, 64) float32 holding the exact integer features."""
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() * 2.0 - 255.0
        return self._layers(x, lambda x, w, b: F.conv2d(x, w, b, padding=1))

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        """frames (N, H, W, 3) uint8 -> (N, 64) float64 features (global max of the last ReLU)."""
        return self.integers(frames).double().numpy() / self.scale

    @torch.no_grad()
    def check(self, n: int = 4) -> None:
        """Compare :meth:`integers` with an int64 convolution on n random frames; raise if they differ."""
        frames = np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)

        def conv64(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            x, w = F.pad(x.long(), (1, 1, 1, 1)), w.long()
            h, wd = x.shape[2] - 2, x.shape[3] - 2
            out = sum(torch.einsum("nchw,oc->nohw", x[:, :, i:i + h, j:j + wd], w[:, :, i, j])
                      for i in range(3) for j in range(3))
            return (out + b.long().view(1, -1, 1, 1)).double()

        x = torch.from_numpy(frames).permute(0, 3, 1, 2).long() * 2 - 255
        reference = self._layers(x.double(), conv64)
        if not torch.equal(self.integers(frames).double(), reference):
            raise RuntimeError("ExactCNN: this platform's float32 convolution is not exact on integers "
                               "(a Winograd or reduced-precision kernel?); DigitClips would not be "
                               "byte-identical here")


@torch.no_grad()
def appearance_features(model: AppearanceCNN | ExactCNN, videos: np.ndarray, stride: int = 2,
                        batch: int = 1024) -> np.ndarray:
    """Appearance expert: videos (V, N_FRAMES, H, W, 3) uint8 -> (V, N_FRAMES // stride, 64) float32.

    With an :class:`AppearanceCNN` it runs the exact integer version of it (:class:`ExactCNN`)."""
    exact = model if isinstance(model, ExactCNN) else ExactCNN(model)
    sub = videos[:, ::stride]
    v, t = sub.shape[:2]
    flat = sub.reshape(v * t, *sub.shape[2:])
    out = np.concatenate([exact.features(flat[i:i + batch]) for i in range(0, len(flat), batch)])
    return quantize(out.reshape(v, t, -1))
