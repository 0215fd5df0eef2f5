"""DigitClips pixels and sound: a video spec sampled from a seed, and its frames and waveform.

A DigitClips video is ``N_FRAMES`` RGB frames of ``SIZE`` x ``SIZE`` pixels, cut in ``N_SEGMENTS`` equal
segments, and made of one to three *shots* cut at segment boundaries, as real clips change over time. Each
shot shows a background scene (a crop of a texture shipped in ``skimage.data``), a different one after
every cut, and its own one or two actors (a handwritten digit of ``sklearn.datasets.load_digits``,
coloured, big or small) moving over it, three at most per video; actors enter or leave only at segment
boundaries and never outlive their shot. Each actor's events make tones on the sound track: the pitch follows
its digit, the rhythm its colour, the timbre the video's sound kind; the track is missing for ~25% of the
videos. Everything here is a pure function of ``(seed, index)``: ``render_frames(sample_spec(i, seed))``
gives the same uint8 frames on every call, which is how ``digitclips.render`` reproduces a video.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

__all__ = [
    "N_FRAMES", "SIZE", "N_SEGMENTS", "FPS", "SAMPLE_RATE", "COLOURS", "SIZES", "MOTIONS", "SCENES",
    "SOUNDS", "MISSING_AUDIO_P", "SHOT_P", "sample_spec", "shot_of_frame", "render_frames", "render_audio",
    "digit_images", "scene_image", "sensor_noise", "actor_positions", "digit_alpha",
]

N_FRAMES = 24
SIZE = 48
N_SEGMENTS = 3
FPS = 8
SAMPLE_RATE = 8000
MISSING_AUDIO_P = 0.25
SHOT_P = (0.3, 0.45, 0.25)  # a video has 1, 2 or 3 shots

# name -> RGB in [0, 1]; saturated and bright so a digit stands out on the dimmed scenes
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.12, 0.08),
    "green": (0.1, 0.95, 0.15),
    "blue": (0.15, 0.35, 1.0),
    "yellow": (1.0, 0.92, 0.05),
    "purple": (0.78, 0.15, 1.0),
    "white": (1.0, 1.0, 1.0),
}
SIZES: dict[str, int] = {"small": 14, "big": 24}  # digit box side in pixels
MOTIONS = ["left", "right", "up", "down", "diagonal", "bouncing", "static"]
SOUNDS = ["beeping", "humming", "chirping", "ticking"]
# scene name -> (skimage.data function, working scale, RGB tint applied to grey textures)
SCENES: dict[str, tuple[str, float, tuple[float, float, float]]] = {
    "brick": ("brick", 0.30, (1.0, 0.55, 0.42)),
    "grass": ("grass", 0.30, (0.45, 0.95, 0.40)),
    "gravel": ("gravel", 0.30, (0.80, 0.72, 0.60)),
    "space": ("hubble_deep_field", 0.18, (1.0, 1.0, 1.0)),
    "moon": ("moon", 0.30, (0.80, 0.82, 0.92)),
    "coins": ("coins", 0.45, (0.95, 0.82, 0.45)),
    "checkerboard": ("checkerboard", 0.50, (0.85, 0.85, 0.85)),
    "text": ("text", 0.40, (1.0, 0.97, 0.80)),
}
_SCENE_NAMES = list(SCENES)
_COLOUR_NAMES = list(COLOURS)
_SIZE_NAMES = list(SIZES)


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 handwritten digits of scikit-learn: images (1797, 8, 8) float32 in [0, 1], labels (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


@lru_cache(maxsize=4096)
def digit_alpha(image: int, side: int) -> np.ndarray:
    """Alpha mask (side, side) float32 of one 8x8 digit, bilinearly upsampled and brightened."""
    from scipy.ndimage import zoom

    img = digit_images()[0][image]
    a = zoom(img, side / 8.0, order=1, grid_mode=True, mode="nearest")[:side, :side]
    return np.clip(1.5 * a, 0.0, 1.0).astype(np.float32)


@cache
def scene_image(name: str) -> np.ndarray:
    """Working texture (h, w, 3) float32 in [0, 1] for one scene: resized, tinted and dimmed."""
    import skimage.data
    from skimage.transform import rescale

    fn, scale, tint = SCENES[name]
    img = np.asarray(getattr(skimage.data, fn)(), dtype=np.float32) / 255.0
    channel_axis = 2 if img.ndim == 3 else None
    img = rescale(img, scale, order=1, anti_aliasing=True, channel_axis=channel_axis).astype(np.float32)
    if img.ndim == 2:
        img = img[..., None] * np.asarray(tint, np.float32)
        return (0.08 + 0.42 * img).astype(np.float32)
    return (0.04 + 0.75 * img).astype(np.float32)  # the Hubble field is dark already


def _path(rng: np.random.Generator, motion: str, side: int, n: int) -> dict:
    """Start position and velocity (pixels/frame) of one actor over its n visible frames."""
    room = SIZE - side - 1
    speed = float(rng.uniform(1.0, 2.5))
    if n > 1:
        speed = min(speed, room / (n - 1))
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.get(motion, (0, 0))
    if motion == "diagonal":
        dx, dy = int(rng.choice([-1, 1])), int(rng.choice([-1, 1]))
        speed *= 0.8  # per axis
    vx, vy = dx * speed, dy * speed

    def start(v: float) -> float:  # keep the whole path inside the frame
        travel = abs(v) * max(n - 1, 0)
        return float(rng.uniform(travel, room) if v < 0 else rng.uniform(0, room - travel))

    x0, y0 = start(vx), start(vy)
    height = period = 0.0
    if motion == "bouncing":  # y0 is the floor; the digit hops above it
        height = float(rng.uniform(8, min(18, room)))
        period = float(rng.uniform(4.0, 7.0))
        y0 = float(rng.uniform(height, room))
    return {"x0": x0, "y0": y0, "vx": vx, "vy": vy, "height": height, "period": period}


def _background(rng: np.random.Generator, scene: str) -> dict:
    """Crop position, horizontal flip and brightness gain of a scene texture for one shot."""
    tex = scene_image(scene)
    return {
        "y": int(rng.integers(0, tex.shape[0] - SIZE + 1)),
        "x": int(rng.integers(0, tex.shape[1] - SIZE + 1)),
        "flip": bool(rng.random() < 0.5),
        "gain": float(rng.uniform(0.85, 1.15)),
    }


def _shot_spans(rng: np.random.Generator, max_shots: int) -> list[tuple[int, int]]:
    """Segment spans [start, end) of the shots: 1, 2 or 3 shots cut at segment boundaries."""
    n = int(rng.choice([1, 2, 3], p=SHOT_P))
    cut = int(rng.integers(1, N_SEGMENTS))  # drawn always, so max_shots does not shift the stream
    n = min(n, max_shots)
    if n == 1:
        return [(0, N_SEGMENTS)]
    if n == 2:
        return [(0, cut), (cut, N_SEGMENTS)]
    return [(k, k + 1) for k in range(N_SEGMENTS)]


def sample_spec(index: int, seed: int = 0, max_shots: int = 3) -> dict:
    """The random recipe of video ``index``: shots, sound, actors with their paths (a pure function).

    A video is 1-3 *shots* cut at segment boundaries (probabilities ``SHOT_P``; ``max_shots=1`` gives
    single-shot clips): each shot has its own scene, different from the previous shot's, and its own
    actors, who appear at the shot's start (a second one may enter at a later segment of a long shot, and
    the first may then leave) and never outlive it.

    Returns a dict with ``video_id`` (``clipNNNNN``), ``sound`` (``None`` when the track is missing),
    ``shots`` (``start``, ``end``, ``scene``, background ``bg``) and ``actors``: a list of 1-3 dicts with
    ``digit``, ``image`` (index into ``load_digits``), ``colour``, ``size``, ``motion``, ``scene`` (of its
    shot), ``shot``, the segment span ``start`` < ``end`` (segments are ``N_FRAMES // N_SEGMENTS``
    frames), plus path parameters.
    """
    rng = np.random.default_rng([seed, index, 0])
    _, labels = digit_images()
    missing = bool(rng.random() < MISSING_AUDIO_P)
    sound = None if missing else SOUNDS[int(rng.integers(len(SOUNDS)))]
    shots, previous = [], None
    for start, end in _shot_spans(rng, max_shots):
        names = [n for n in _SCENE_NAMES if n != previous]  # a cut shows another scene
        scene = names[int(rng.integers(len(names)))]
        shots.append({"start": start, "end": end, "scene": scene, "bg": _background(rng, scene)})
        previous = scene
    seg = N_FRAMES // N_SEGMENTS
    actors: list[dict] = []
    for k, shot in enumerate(shots):
        length = shot["end"] - shot["start"]
        n = int(rng.choice([1, 2, 3], p=[0.55, 0.45, 0.0] if length < 3 else [0.4, 0.4, 0.2]))
        n = 1 if length == 1 else min(n, 3 - len(actors) - (len(shots) - 1 - k))  # room for later shots
        starts = [shot["start"]] + sorted(int(v) for v in rng.integers(shot["start"], shot["end"], n - 1))
        for i, s in enumerate(starts):  # an actor may leave when the next one of its shot enters
            nxt = starts[i + 1] if i + 1 < len(starts) else shot["end"]
            e = nxt if (s < nxt < shot["end"] and rng.random() < 0.4) else shot["end"]
            digit = int(rng.integers(10))
            pool = np.flatnonzero(labels == digit)
            actor = {
                "digit": digit,
                "image": int(pool[rng.integers(len(pool))]),
                "colour": _COLOUR_NAMES[int(rng.integers(len(COLOURS)))],
                "size": _SIZE_NAMES[int(rng.integers(len(SIZES)))],
                "motion": MOTIONS[int(rng.integers(len(MOTIONS)))],
                "scene": shot["scene"],
                "shot": k,
                "start": s,
                "end": e,
            }
            actor.update(_path(rng, actor["motion"], SIZES[actor["size"]], (e - s) * seg))
            actors.append(actor)
    return {"video_id": f"clip{index:05d}", "index": index, "seed": seed, "sound": sound, "shots": shots,
            "actors": actors}


def shot_of_frame(spec: dict, frame: int) -> dict:
    """The shot that frame ``frame`` belongs to."""
    seg = frame // (N_FRAMES // N_SEGMENTS)
    return next(s for s in spec["shots"] if s["start"] <= seg < s["end"])


def actor_positions(actor: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames where an actor is visible and its integer top-left corner there: (n,), (n,), (n,)."""
    seg = N_FRAMES // N_SEGMENTS
    frames = np.arange(actor["start"] * seg, actor["end"] * seg)
    t = (frames - frames[0]).astype(np.float64)
    x = actor["x0"] + actor["vx"] * t
    y = actor["y0"] + actor["vy"] * t
    if actor["motion"] == "bouncing":  # parabolic hops of ``period`` frames (basic arithmetic only)
        u = t / actor["period"] - np.floor(t / actor["period"])
        y = actor["y0"] - actor["height"] * 4.0 * u * (1.0 - u)
    room = SIZE - SIZES[actor["size"]]
    return frames, np.clip(np.rint(x), 0, room).astype(int), np.clip(np.rint(y), 0, room).astype(int)


def render_frames(spec: dict) -> np.ndarray:
    """Frames of a spec: (N_FRAMES, SIZE, SIZE, 3) uint8, with mild per-pixel sensor noise."""
    seg = N_FRAMES // N_SEGMENTS
    video = np.zeros((N_FRAMES, SIZE, SIZE, 3), np.float32)
    for shot in spec["shots"]:
        tex, b = scene_image(shot["scene"]), shot["bg"]
        bg = tex[b["y"]:b["y"] + SIZE, b["x"]:b["x"] + SIZE] * b["gain"]
        video[shot["start"] * seg:shot["end"] * seg] = bg[:, ::-1] if b["flip"] else bg
    for actor in spec["actors"]:
        side = SIZES[actor["size"]]
        alpha = digit_alpha(actor["image"], side)[..., None]
        colour = np.asarray(COLOURS[actor["colour"]], np.float32)
        for f, x, y in zip(*actor_positions(actor), strict=True):
            patch = video[f, y:y + side, x:x + side]
            video[f, y:y + side, x:x + side] = patch * (1.0 - alpha) + colour * alpha
    return np.clip(np.rint(video * 255.0) + sensor_noise(spec, video.shape), 0, 255).astype(np.uint8)


def sensor_noise(spec: dict, shape: tuple[int, ...]) -> np.ndarray:
    """Integer pixel noise: the sum of two uniform integers in -4..4 (triangular, sd 3.65 levels = 0.014),
    drawn with integer arithmetic only, so every CPU draws the same values."""
    rng = np.random.default_rng([spec["seed"], spec["index"], 1])
    return rng.integers(-4, 5, shape) + rng.integers(-4, 5, shape)


def render_audio(spec: dict) -> np.ndarray | None:
    """Sound track of a spec: (N_FRAMES / FPS * SAMPLE_RATE,) float32 in [-1, 1], or None when missing.

    Samples are 16-bit PCM (multiples of 1/32768), as in an audio file: synthesised in float64, then
    rounded, so a last-bit difference of ``sin`` between CPUs does not reach the stored samples.

    Each actor makes events while visible: pitch 180 * 2**(digit/4.5) Hz, rate by colour (2..7 per
    second), timbre by the video's sound kind (beeping: tone bursts; humming: a continuous tone with
    harmonics, amplitude-modulated at the rate; chirping: rising sweeps; ticking: damped clicks).
    """
    if spec["sound"] is None:
        return None
    rng = np.random.default_rng([spec["seed"], spec["index"], 2])
    n = N_FRAMES * SAMPLE_RATE // FPS
    t = np.arange(n) / SAMPLE_RATE
    wave = rng.normal(0.0, 0.01, n)
    seg_s = (N_FRAMES // N_SEGMENTS) / FPS
    kind = spec["sound"]
    for actor in spec["actors"]:
        f0 = 180.0 * 2.0 ** (actor["digit"] / 4.5)
        rate = 2.0 + _COLOUR_NAMES.index(actor["colour"])
        t0, t1 = actor["start"] * seg_s, actor["end"] * seg_s
        on = (t >= t0) & (t < t1)
        phase = ((t - t0) * rate) % 1.0  # position inside the current event, 0..1
        tl = phase / rate  # seconds since the event began
        if kind == "humming":
            tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
            sig = 0.35 * tone * (0.6 + 0.4 * np.cos(2 * np.pi * phase))
        elif kind == "beeping":
            sig = 0.6 * np.sin(2 * np.pi * f0 * t) * (phase < 0.45)
        elif kind == "chirping":
            dur = 0.08
            inst = f0 * (1.0 + tl / dur)  # sweeps up one octave
            sig = 0.6 * np.sin(2 * np.pi * np.cumsum(inst) / SAMPLE_RATE) * (tl < dur)
        else:  # ticking
            sig = 0.9 * np.sin(2 * np.pi * 4 * f0 * t) * np.exp(-tl / 0.006)
        wave += np.where(on, sig, 0.0)
    wave /= max(1.0, float(np.abs(wave).max()))
    return (np.clip(np.rint(wave * 32767.0), -32767, 32767) / 32768.0).astype(np.float32)
