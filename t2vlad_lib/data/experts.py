"""Three hand-built DigitClips experts run on pixels and waveforms: motion, scene and audio.

Each is a fixed ("frozen") feature extractor with its own temporal resolution, like the released
MSRVTT experts (I3D flow, DenseNet scene, VGGish audio):

* ``motion_features``: (T=6, D=32) per 4-frame segment, from a displacement histogram of the
  foreground (cross-correlation of background-subtracted consecutive frames) and centroid velocity.
* ``scene_features``: (T=3, D=48) per 8-frame segment, colour and texture statistics (colour
  histograms, gradient orientations, multi-scale band energies, local binary patterns) of the
  temporal median.
* ``audio_features``: (T=12, D=32) log-mel energies of 0.25 s frames of the sound track.

The appearance expert (a small CNN) lives in ``appearance.py``.

**Same bytes on every CPU.** numpy and torch pick SIMD code paths at run time (SSE, AVX2, AVX-512), and
those paths round differently: a float32 ``arctan2`` that lands on a histogram bin edge on one CPU lands
beside it on another. So these experts follow three rules:

1. Everything that can be is integer arithmetic on the uint8 pixels (sums, differences, products,
   comparisons, histogram bins): exact, so the order of summation and the SIMD width do not matter.
2. The few real-valued steps use only IEEE operations that are correctly rounded everywhere
   (+ - * / sqrt), and sums of reals use ``math.fsum`` (exactly rounded, order-free).
3. What remains (``log`` of the entropy and the mel energies, the FFT and window of the audio expert)
   is computed in float64 and every output is rounded to a multiple of 2**-16 (:func:`quantize`). A
   last-bit difference of float64 survives that rounding only when a value lies within about 1e-15 of
   a rounding boundary: about once in 1e10 values.

``tests/test_data_digitclips.py`` recomputes the shipped sample with every SIMD path of numpy and torch
switched off and asserts the same bytes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .render import N_FRAMES, N_SEGMENTS, SAMPLE_RATE

__all__ = ["EXPERT_SHAPES", "QUANTUM", "quantize", "motion_features", "scene_features", "audio_features",
           "mel_filterbank", "orientation_bins", "lbp_uniform"]

# expert -> (T_e, D_e) of DigitClips
EXPERT_SHAPES: dict[str, tuple[int, int]] = {
    "appearance": (12, 64),
    "motion": (6, 32),
    "scene": (N_SEGMENTS, 48),
    "audio": (12, 32),
}
QUANTUM = 2.0**-16  # every stored feature is a multiple of this
_MAX_SHIFT = 3
_FG_THRESHOLD = 31  # foreground: colour distance to the background above 0.06 (31 of 510 doubled levels)


def quantize(x) -> np.ndarray:
    """Round to a multiple of ``QUANTUM`` (float64 in, float32 out; exact for |x| < 256)."""
    return (np.round(np.asarray(x, np.float64) / QUANTUM) * QUANTUM).astype(np.float32)


def _fsum_groups(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Exactly rounded sums of ``values`` (N,) by integer ``groups`` (N,) -> (n_groups,) float64."""
    return np.array([math.fsum(values[groups == g].tolist()) for g in range(n_groups)])


@lru_cache(maxsize=1)
def _shift_groups() -> tuple[np.ndarray, np.ndarray]:
    """The (2S+1)^2 shifts (dy, dx) and their pooling group: 3 rings x 8 directions (0..23), zero shift 24.

    Ring = max(|dx|, |dy|); direction = the nearest of 8 compass directions, decided by exact integer
    tests (no integer shift lies on a boundary between two directions).
    """
    r = np.arange(-_MAX_SHIFT, _MAX_SHIFT + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(r, r, indexing="ij"))
    ring = np.maximum(np.abs(dx), np.abs(dy))
    # direction k covers angles [k*45 - 22.5, k*45 + 22.5): the 16 sectors of 22.5 degrees, shifted by one
    sector = orientation_bins(dx, dy, full_circle=True)  # 0..15, sector s = [s*22.5, (s+1)*22.5)
    direction = ((sector + 1) // 2) % 8
    group = np.where(ring == 0, 24, (ring - 1) * 8 + direction)
    return np.stack([dy, dx], 1), group


def orientation_bins(gx: np.ndarray, gy: np.ndarray, full_circle: bool = False) -> np.ndarray:
    """Angle bins of 22.5 degrees of integer vectors (gx, gy), decided by exact integer tests.

    ``full_circle=False``: the orientation modulo 180 degrees in 8 bins, bin = floor(theta / 22.5) with
    theta = atan2(gy, gx) mod 180. ``full_circle=True``: 16 bins over 360 degrees. (0, 0) gets bin 0.
    This is ``floor(arctan2(gy, gx) / (pi / 8))`` except on a bin edge, where float ``arctan2`` rounds
    one way or the other depending on the CPU and the exact test does not.
    """
    gx, gy = np.asarray(gx, np.int64), np.asarray(gy, np.int64)
    lower = (gy < 0) | ((gy == 0) & (gx < 0))  # angle in [180, 360): turn by 180 degrees
    x, y = np.where(lower, -gx, gx), np.where(lower, -gy, gy)  # now theta in [0, 180)
    ax = np.abs(x)

    def at_least(k: int) -> np.ndarray:
        """angle of (|x|, y) >= k * 22.5 degrees, k = 1, 2, 3 (tan = sqrt2 - 1, 1, sqrt2 + 1)."""
        if k == 1:  # y >= (sqrt2 - 1)|x|  <=>  (y + |x|)^2 >= 2 x^2
            return (y + ax) ** 2 >= 2 * ax**2
        if k == 2:
            return y >= ax
        return (y >= ax) & ((y - ax) ** 2 >= 2 * ax**2)  # y - |x| >= sqrt2 |x|

    def at_most(k: int) -> np.ndarray:
        """angle of (|x|, y) <= k * 22.5 degrees (only the 45-degree edge holds integer points)."""
        return ~at_least(k) | ((y == ax) if k == 2 else False)

    right = sum(at_least(k).astype(np.int64) for k in (1, 2, 3))  # theta in [0, 90)
    left = 4 + sum(at_most(k).astype(np.int64) for k in (1, 2, 3))  # theta in [90, 180)
    bins = np.where(x > 0, right, left)
    bins = np.where((gx == 0) & (gy == 0), 0, bins)
    return bins + 8 * lower if full_circle else bins


def motion_features(frames: np.ndarray) -> np.ndarray:
    """Motion expert of one video: (N_FRAMES, H, W, 3) uint8 -> (6, 32) float32.

    Per 4-frame segment: mean normalised cross-correlation of the foreground of consecutive frames at
    displacements up to 3 px, pooled in 3 rings x 8 directions (24), at zero shift (1), foreground energy
    in 4 quadrants (4) and overall (1), and the foreground centroid's velocity (2). The foreground q is
    an integer: the colour distance of a pixel to the median of its 8-frame segment (shots are cut at
    segment boundaries), minus a noise threshold.
    """
    f2 = 2 * frames.astype(np.int64)  # doubled levels, so the median of an even count is an integer
    seg = N_FRAMES // N_SEGMENTS  # the background of a frame: the median of its segment (never across a cut)
    bg2 = np.empty_like(f2)
    for k in range(0, len(frames), seg):
        part = np.partition(frames[k:k + seg], [seg // 2 - 1, seg // 2], axis=0).astype(np.int64)
        bg2[k:k + seg] = part[seg // 2 - 1] + part[seg // 2]
    d2 = ((f2 - bg2) ** 2).sum(-1)  # (T, H, W) squared colour distance, exact
    q = np.maximum(np.floor(np.sqrt(d2)) - _FG_THRESHOLD, 0.0)  # foreground: integers 0..852 in float64
    t, h, w = q.shape
    shifts, group = _shift_groups()
    corr = np.zeros((t - 1, len(shifts)))  # sum_x q_t(x) q_t+1(x + s): integers < 2**31, exact in float64
    for j, (dy, dx) in enumerate(shifts):
        a = q[:-1, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        b = q[1:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
        corr[:, j] = (a * b).sum((1, 2))
    energy = (q * q).sum((1, 2)).astype(np.float64)
    c = corr / (np.sqrt(energy[:-1] * energy[1:])[:, None] + 1e-6)  # (T-1, 49)
    ys, xs = np.mgrid[0:h, 0:w]
    mass = q.sum((1, 2))
    cy = (q * ys).sum((1, 2)) / np.maximum(mass, 1)
    cx = (q * xs).sum((1, 2)) / np.maximum(mass, 1)
    present = mass > 510  # more than one pixel's worth of foreground
    vel = np.stack([np.diff(cx), np.diff(cy)], 1) * (present[1:] & present[:-1])[:, None]
    seg_len = t // 6
    out = np.zeros((6, 32))
    counts = np.bincount(group, minlength=25)
    for k in range(6):
        a, b = k * seg_len, min((k + 1) * seg_len, t - 1)  # pairs (a, a+1) ... (b-1, b)
        pairs = c[a:b]
        grouped = _fsum_groups(pairs.ravel(), np.tile(group, len(pairs)), 25)
        out[k, :25] = grouped / (counts * len(pairs))
        quads = [q[k * seg_len:(k + 1) * seg_len, i:i + h // 2, j:j + w // 2].sum()
                 for i in (0, h // 2) for j in (0, w // 2)]
        out[k, 25:29] = [10.0 * s / (seg_len * (h // 2) * (w // 2) * 510) for s in quads]
        out[k, 29] = 10.0 * sum(quads) / (seg_len * h * w * 510)
        out[k, 30:32] = [math.fsum(vel[a:b, i].tolist()) / (len(pairs) * 3.0) for i in (0, 1)]
    return quantize(out)


def lbp_uniform(img: np.ndarray) -> np.ndarray:
    """Uniform local binary patterns (8 neighbours of the 3x3 square) of an integer image (H, W).

    Returns (H-2, W-2) labels 0..9: the number of neighbours >= the center for patterns with at most two
    0/1 transitions round the circle (0..8), and 9 for every other pattern. Exact integer comparisons.
    """
    c = img[1:-1, 1:-1]
    h, w = img.shape
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]  # clockwise from top-left
    bits = np.stack([img[dy:h - 2 + dy, dx:w - 2 + dx] >= c for dy, dx in ring])  # (8, H-2, W-2)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(0)
    return np.where(transitions <= 2, bits.sum(0), 9)


def _box_sums(img: np.ndarray, size: int) -> np.ndarray:
    """Sums over non-overlapping size x size blocks, broadcast back to (H, W); H, W multiples of size."""
    h, w = img.shape
    s = img.reshape(h // size, size, w // size, size).sum((1, 3))
    return np.repeat(np.repeat(s, size, 0), size, 1)


def scene_features(frames: np.ndarray) -> np.ndarray:
    """Scene expert of one video: (N_FRAMES, H, W, 3) uint8 -> (3, 48) float32.

    Per 8-frame segment, on the temporal median (moving actors fade out; m = sum of the two middle
    values, an integer in 0..510): channel means and stds (6), 4-bin colour histograms (12),
    gradient-orientation histogram weighted by magnitude, and the mean magnitude (9), band energies
    between block averages at 1, 2, 4, 8 and 16 pixels (4), uniform LBP histogram (10), 2x2 grid
    brightness (4), grey-level entropy and dark / bright fractions (3). H and W must be multiples of 16.
    """
    seg = N_FRAMES // N_SEGMENTS
    out = np.zeros((N_SEGMENTS, 48))
    colour_edges = np.array([77, 153, 230])  # 0.15, 0.3, 0.45 of 510: m < 76.5, < 153, < 229.5
    for k in range(N_SEGMENTS):
        ordered = np.partition(frames[k * seg:(k + 1) * seg], [seg // 2 - 1, seg // 2], axis=0)
        m = ordered[seg // 2 - 1].astype(np.int64) + ordered[seg // 2]  # (H, W, 3), 2 x the median, exact
        h, w, _ = m.shape
        n = h * w
        sums, squares = m.sum((0, 1)), (m * m).sum((0, 1))
        feats = list(sums / (510.0 * n)) + list(np.sqrt(n * squares - sums**2) / (510.0 * n))
        for ch in range(3):
            feats += list(np.bincount(np.searchsorted(colour_edges, m[..., ch].ravel(), side="right"),
                                      minlength=4) / n)
        gray = m.sum(-1)  # 0..1530
        gx, gy = np.zeros_like(gray), np.zeros_like(gray)  # 2 x numpy.gradient, exact
        gx[:, 1:-1], gy[1:-1] = gray[:, 2:] - gray[:, :-2], gray[2:] - gray[:-2]
        gx[:, 0], gx[:, -1] = 2 * (gray[:, 1] - gray[:, 0]), 2 * (gray[:, -1] - gray[:, -2])
        gy[0], gy[-1] = 2 * (gray[1] - gray[0]), 2 * (gray[-1] - gray[-2])
        mag = np.sqrt((gx * gx + gy * gy).astype(np.float64)).ravel()
        hist = _fsum_groups(mag, orientation_bins(gx, gy).ravel(), 8)
        total = math.fsum(mag.tolist())
        feats += list(hist / (total + 1e-6)) + [10.0 * total / (n * 3060.0)]
        blocks = [gray] + [_box_sums(gray, s) for s in (2, 4, 8, 16)]  # block sums; mean = sum / s^2
        for i, s in enumerate((1, 2, 4, 8)):  # mean |block mean at s - at 2s| = |4 B_s - B_2s| / (4 s^2)
            band = np.abs(4 * blocks[i] - blocks[i + 1]).sum()
            feats.append(10.0 * band / (4.0 * s * s * n * 1530.0))
        feats += list(np.bincount(lbp_uniform(gray).ravel(), minlength=10) / ((h - 2) * (w - 2)))
        feats += [gray[a:a + h // 2, b:b + w // 2].sum() / (n / 4 * 1530.0) for a in (0, h // 2)
                  for b in (0, w // 2)]
        counts = np.bincount(np.minimum(gray * 16 // 1530, 15).ravel(), minlength=16)
        p = counts[counts > 0] / n
        feats += [-math.fsum((p * np.log(p)).tolist()) / math.log(16), (gray <= 229).mean(),
                  (gray > 918).mean()]
        out[k] = feats
    return quantize(out)


@lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = 32, n_fft: int = 2048, sr: int = SAMPLE_RATE,
                   fmin: float = 60.0, fmax: float = 3900.0) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1) float64, HTK mel scale, each filter of unit area."""
    def hz2mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel2hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    points = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = points[:-2, None], points[1:-1, None], points[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return tri / (tri.sum(1, keepdims=True) + 1e-12)


def audio_features(wave: np.ndarray | None, n_frames: int = 12, n_mels: int = 32) -> np.ndarray | float:
    """Audio expert: waveform (S,) -> log-mel frames (n_frames, n_mels) float32; NaN when missing.

    Non-overlapping Hann-windowed frames of S / n_frames samples, power spectrum (2048-point FFT),
    32 mel bands 60-3900 Hz, natural log of (energy + 1e-5), in float64, then :func:`quantize`.
    """
    if wave is None:
        return float("nan")
    frames = wave[: len(wave) // n_frames * n_frames].reshape(n_frames, -1).astype(np.float64)
    frames = frames * np.hanning(frames.shape[1])
    power = np.abs(np.fft.rfft(frames, n=2048)) ** 2
    return quantize(np.log(power @ mel_filterbank(n_mels).T + 1e-5))
