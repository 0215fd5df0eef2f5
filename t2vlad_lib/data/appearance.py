"""The appearance expert: a small CNN pretrained on digit identity, colour and size, then frozen.

Like an ImageNet backbone for MSRVTT's ``rgb`` expert, it is trained on its own task (classify single
coloured digits on DigitClips scene crops) with digits of even index in ``load_digits`` only; its
64-d global-max-pooled features of every second frame are the ``appearance`` expert (T=12, D=64).
The weights (about 100 KB) ship in ``data_samples/appearance_cnn.pt`` so generation is deterministic;
``train_appearance_cnn()`` rebuilds them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .render import COLOURS, SCENES, SIZE, SIZES, _digit_alpha, digit_images, scene_image

__all__ = [
    "AppearanceCNN", "WEIGHTS_PATH", "training_frames", "train_appearance_cnn", "load_appearance_cnn",
    "appearance_features",
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
        alpha = _digit_alpha(image, side)[..., None]
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


@torch.no_grad()
def appearance_features(model: AppearanceCNN, videos: np.ndarray, stride: int = 2,
                        batch: int = 1024) -> np.ndarray:
    """Appearance expert: videos (V, N_FRAMES, H, W, 3) uint8 -> (V, N_FRAMES // stride, 64) float32."""
    sub = videos[:, ::stride]
    v, t = sub.shape[:2]
    flat = sub.reshape(v * t, *sub.shape[2:])
    out = [model.features(_to_tensor(flat[i:i + batch])) for i in range(0, len(flat), batch)]
    return torch.cat(out).reshape(v, t, -1).numpy().astype(np.float32)
