"""Three hand-built DigitClips experts run on pixels and waveforms: motion, scene and audio.

Each is a fixed ("frozen") feature extractor with its own temporal resolution, like the released
MSRVTT experts (I3D flow, DenseNet scene, VGGish audio):

* ``motion_features``: (T=6, D=32) per 4-frame segment, from a displacement histogram of the
  foreground (cross-correlation of background-subtracted consecutive frames) and centroid velocity.
* ``scene_features``: (T=3, D=48) per 8-frame segment, colour and texture statistics (colour
  histograms, gradient orientations, band-pass energies, local binary patterns) of the temporal median.
* ``audio_features``: (T=12, D=32) log-mel energies of 0.25 s frames of the sound track.

The appearance expert (a small CNN) lives in ``appearance.py``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .render import N_FRAMES, N_SEGMENTS, SAMPLE_RATE

__all__ = ["EXPERT_SHAPES", "motion_features", "scene_features", "audio_features", "mel_filterbank"]

# expert -> (T_e, D_e) of DigitClips
EXPERT_SHAPES: dict[str, tuple[int, int]] = {
    "appearance": (12, 64),
    "motion": (6, 32),
    "scene": (N_SEGMENTS, 48),
    "audio": (12, 32),
}
_MAX_SHIFT = 3


@lru_cache(maxsize=1)
def _shift_groups() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the (2S+1)^2 shifts: ring index (max(|dx|,|dy|)), direction bin (8), and (dy, dx)."""
    r = np.arange(-_MAX_SHIFT, _MAX_SHIFT + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    ring = np.maximum(np.abs(dx), np.abs(dy))
    direction = np.rint(np.arctan2(dy, dx) / (np.pi / 4)).astype(int) % 8
    return ring.ravel(), direction.ravel(), np.stack([dy.ravel(), dx.ravel()], 1)


def motion_features(frames: np.ndarray) -> np.ndarray:
    """Motion expert of one video: (N_FRAMES, H, W, 3) uint8 -> (6, 32) float32.

    Per 4-frame segment: mean normalised cross-correlation of the foreground of consecutive frames at
    displacements up to 3 px, pooled in 3 rings x 8 directions (24), at zero shift (1), foreground energy
    in 4 quadrants (4) and overall (1), and the foreground centroid's velocity (2).
    """
    f = frames.astype(np.float32) / 255.0
    bg = (np.median(frames, axis=0) / 255.0).astype(np.float32)  # uint8 median: faster, same value
    g = np.sqrt(((f - bg) ** 2).sum(-1))
    g = np.maximum(g - 0.06, 0.0)  # foreground magnitude, sensor noise removed, (T, H, W)
    t, h, w = g.shape
    n = 64  # zero-padded FFT size: no wrap-around for |shift| <= 3
    spec = np.fft.rfft2(g, s=(n, n))
    corr = np.fft.irfft2(np.conj(spec[:-1]) * spec[1:], s=(n, n))  # (T-1, n, n): sum g_t(x) g_t+1(x+s)
    ring, direction, shifts = _shift_groups()
    c = corr[:, shifts[:, 0] % n, shifts[:, 1] % n]  # (T-1, 49)
    energy = (g**2).sum((1, 2))
    c = c / (np.sqrt(energy[:-1] * energy[1:])[:, None] + 1e-6)
    ys, xs = np.mgrid[0:h, 0:w]
    mass = g.sum((1, 2)) + 1e-6
    cy, cx = (g * ys).sum((1, 2)) / mass, (g * xs).sum((1, 2)) / mass
    present = mass > 1.0
    vel = np.stack([np.diff(cx), np.diff(cy)], 1) * (present[1:] & present[:-1])[:, None]
    seg_len = t // 6
    pool = np.zeros((len(ring), 25), np.float32)  # (49 shifts) -> 3 rings x 8 directions + zero shift
    for r in (1, 2, 3):
        for d in range(8):
            sel = (ring == r) & (direction == d)
            pool[sel, (r - 1) * 8 + d] = 1.0 / sel.sum()
    pool[ring == 0, 24] = 1.0
    bounds = [(k * seg_len, min((k + 1) * seg_len, t - 1)) for k in range(6)]
    cseg = np.stack([c[a:b].mean(0) for a, b in bounds]) @ pool  # (6, 25)
    vseg = np.stack([vel[a:b].mean(0) for a, b in bounds]) / 3.0  # (6, 2)
    gk = g[: 6 * seg_len].reshape(6, seg_len, 2, h // 2, 2, w // 2)
    quads = 10.0 * gk.mean((1, 3, 5)).reshape(6, 4)
    return np.concatenate([cseg, quads, quads.mean(1, keepdims=True), vseg], 1).astype(np.float32)


def scene_features(frames: np.ndarray) -> np.ndarray:
    """Scene expert of one video: (N_FRAMES, H, W, 3) uint8 -> (3, 48) float32.

    Per 8-frame segment, on the temporal median (moving actors fade out): channel means and stds (6),
    4-bin colour histograms (12), magnitude-weighted gradient-orientation histogram and mean gradient
    (9), difference-of-Gaussian band energies (4), uniform LBP histogram (10), 2x2 grid brightness (4),
    grey-level entropy and dark/bright fractions (3).
    """
    from scipy.ndimage import gaussian_filter
    from skimage.feature import local_binary_pattern

    seg = N_FRAMES // N_SEGMENTS
    out = np.zeros((N_SEGMENTS, 48), np.float32)
    edges = np.array([0.0, 0.15, 0.3, 0.45, 1.01])
    for k in range(N_SEGMENTS):
        ordered = np.sort(frames[k * seg:(k + 1) * seg], axis=0)  # median of an even count, on uint8
        m = ordered[seg // 2 - 1:seg // 2 + 1].mean(0, dtype=np.float32) / 255.0  # (H, W, 3)
        feats = list(m.mean((0, 1))) + list(m.std((0, 1)))
        for ch in range(3):
            hist = np.histogram(m[..., ch], bins=edges)[0]
            feats += list(hist / hist.sum())
        gray = m.mean(-1)
        gy, gx = np.gradient(gray)
        mag = np.hypot(gx, gy)
        ori = (np.arctan2(gy, gx) % np.pi) / np.pi * 8
        hist = np.bincount(np.minimum(ori.astype(int), 7).ravel(), weights=mag.ravel(), minlength=8)
        feats += list(hist / (hist.sum() + 1e-6)) + [10.0 * mag.mean()]
        blurs = [gray] + [gaussian_filter(gray, s) for s in (0.7, 1.4, 2.8, 5.6)]
        feats += [10.0 * np.abs(blurs[i] - blurs[i + 1]).mean() for i in range(4)]
        codes = local_binary_pattern(np.rint(gray * 255).astype(np.uint8), 8, 1, method="uniform")
        hist = np.bincount(codes.astype(int).ravel(), minlength=10)[:10]
        feats += list(hist / hist.sum())
        h, w = gray.shape
        feats += [gray[a:a + h // 2, b:b + w // 2].mean() for a in (0, h // 2) for b in (0, w // 2)]
        p = np.histogram(gray, bins=16, range=(0, 1))[0] / gray.size
        entropy = -(p[p > 0] * np.log(p[p > 0])).sum() / np.log(16)
        feats += [entropy, (gray < 0.15).mean(), (gray > 0.6).mean()]
        out[k] = feats
    return out


@lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = 32, n_fft: int = 2048, sr: int = SAMPLE_RATE,
                   fmin: float = 60.0, fmax: float = 3900.0) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1), HTK mel scale, each filter of unit area."""
    def hz2mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel2hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    points = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = points[:-2, None], points[1:-1, None], points[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return (tri / (tri.sum(1, keepdims=True) + 1e-12)).astype(np.float32)


def audio_features(wave: np.ndarray | None, n_frames: int = 12, n_mels: int = 32) -> np.ndarray | float:
    """Audio expert: waveform (S,) -> log-mel frames (n_frames, n_mels) float32; NaN when missing.

    Non-overlapping Hann-windowed frames of S / n_frames samples, power spectrum (2048-point FFT),
    32 mel bands 60-3900 Hz, natural log of (energy + 1e-5).
    """
    if wave is None:
        return float("nan")
    frames = wave[: len(wave) // n_frames * n_frames].reshape(n_frames, -1).astype(np.float64)
    frames = frames * np.hanning(frames.shape[1])
    power = np.abs(np.fft.rfft(frames, n=2048)) ** 2
    return np.log(power @ mel_filterbank(n_mels).T.astype(np.float64) + 1e-5).astype(np.float32)
