"""DigitClips captions: structured queries, their wording, and the attribute matching behind the oracle.

A caption is first a *query*: one or two actors, each with optional ``digit``/``colour``/``size``/
``motion`` and ``scene`` (the scene of the actor's shot: "a red seven on grass, then a blue two in space"),
an optional temporal order (``then``: the first actor starts in an earlier segment than the second), and
an optional ``sound`` (of the whole video). Queries start with 1-4 random cues and get more until they
single out their video among a reference pool (the video's block of at most 1,000 videos of its split),
so a perfect reader could solve the test set while a caption rarely repeats the whole video.
The query is then worded from templates with synonyms and varied word order; ``parse_bag`` reads the
bag of attributes back from the words (what the bag-of-attributes oracle sees).
"""

from __future__ import annotations

import numpy as np

from .render import COLOURS, MOTIONS, SCENES, SIZES, SOUNDS

__all__ = ["FIELDS", "encode_pool", "match", "sample_query", "word_query", "parse_bag", "video_bag",
           "query_bag", "make_captions"]

FIELDS = ("digit", "colour", "size", "motion", "scene")  # per actor
_NUM = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_COLOUR = {c: [c] for c in COLOURS} | {"purple": ["purple", "violet"]}
_SIZE = {"small": ["small", "little", "tiny"], "big": ["big", "large", "huge"]}
_FIN = {  # finite verb phrases
    "left": ["moves left", "slides to the left", "drifts leftwards", "goes left"],
    "right": ["moves right", "slides to the right", "drifts rightwards", "goes right"],
    "up": ["moves up", "rises", "floats upwards", "goes up"],
    "down": ["moves down", "falls", "sinks", "drops downwards"],
    "diagonal": ["moves diagonally", "crosses the frame diagonally", "drifts diagonally"],
    "bouncing": ["bounces", "hops", "keeps bouncing"],
    "static": ["stands still", "stays in place", "rests motionless"],
    None: ["appears", "is shown", "can be seen"],
}
_PART = {  # participles
    "left": ["moving left", "sliding to the left", "drifting leftwards"],
    "right": ["moving right", "sliding to the right", "drifting rightwards"],
    "up": ["moving up", "rising", "floating upwards"],
    "down": ["moving down", "falling", "sinking"],
    "diagonal": ["moving diagonally", "crossing diagonally"],
    "bouncing": ["bouncing", "hopping"],
    "static": ["standing still", "staying in place", "resting motionless"],
    None: [""],
}
_SCENE = {
    "brick": ["in front of a brick wall", "on bricks", "against a brick wall"],
    "grass": ["on grass", "over a lawn", "on the grass"],
    "gravel": ["on gravel", "over gravel", "on a gravel path"],
    "space": ["in space", "against a starry sky", "among galaxies"],
    "moon": ["on the moon", "over a lunar surface", "over moon craters"],
    "coins": ["over coins", "on a pile of old coins", "in front of coins"],
    "checkerboard": ["on a checkerboard", "over a chessboard", "on a checkered floor"],
    "text": ["on a page of text", "over printed letters", "in front of some text"],
}
_SOUND = {
    "beeping": ["with a beeping sound", "while something beeps", "with beeps"],
    "humming": ["with a humming sound", "while something hums", "over a steady hum"],
    "chirping": ["with chirping", "while something chirps", "with chirps"],
    "ticking": ["with a ticking sound", "while something ticks", "with ticks"],
}
_THEN = [("", "then"), ("first", "and then"), ("", "and later"), ("", "afterwards")]
_ENTER = ["appears", "comes in", "enters"]
_GENERIC = ["digit", "number", "figure", "numeral"]

# word -> (attribute type, value): the vocabulary of the bag-of-attributes oracle
LEXICON: dict[str, tuple[str, object]] = {}
LEXICON.update({str(d): ("digit", d) for d in range(10)} | {w: ("digit", d) for d, w in enumerate(_NUM)})
LEXICON.update({w: ("colour", c) for c, ws in _COLOUR.items() for w in ws})
LEXICON.update({w: ("size", s) for s, ws in _SIZE.items() for w in ws})
for _m, _words in {"left": ["left", "leftwards"], "right": ["right", "rightwards"],
                   "up": ["up", "upwards", "rises", "rising"],
                   "down": ["down", "downwards", "falls", "falling", "sinks", "sinking"],
                   "diagonal": ["diagonally"], "bouncing": ["bounces", "bouncing", "hops", "hopping"],
                   "static": ["still", "place", "motionless"]}.items():
    LEXICON.update({w: ("motion", _m) for w in _words})
for _s, _words in {"brick": ["brick", "bricks"], "grass": ["grass", "lawn"], "gravel": ["gravel"],
                   "space": ["space", "starry", "galaxies"], "moon": ["moon", "lunar"], "coins": ["coins"],
                   "checkerboard": ["checkerboard", "chessboard", "checkered"],
                   "text": ["text", "letters"]}.items():
    LEXICON.update({w: ("scene", _s) for w in _words})
for _s, _words in {"beeping": ["beeping", "beeps"], "humming": ["humming", "hums", "hum"],
                   "chirping": ["chirping", "chirps"], "ticking": ["ticking", "ticks"]}.items():
    LEXICON.update({w: ("sound", _s) for w in _words})


_START = len(FIELDS)  # column of an actor's start segment in encode_pool's array


def encode_pool(specs: list[dict]) -> dict[str, np.ndarray]:
    """Attribute arrays of N videos: ``actors`` (N, 3, 7) int [digit, colour, size, motion, scene, start,
    end] (-1 rows for absent actors), ``sound`` (N,) (-1 when the track is missing)."""
    actors = np.full((len(specs), 3, _START + 2), -1, np.int64)
    for i, s in enumerate(specs):
        for j, a in enumerate(s["actors"]):
            actors[i, j] = [_code(f, a[f]) for f in FIELDS] + [a["start"], a["end"]]
    sound = np.array([-1 if s["sound"] is None else SOUNDS.index(s["sound"]) for s in specs], np.int64)
    return {"actors": actors, "sound": sound}


def _code(field: str, value) -> int:
    return {"digit": lambda v: int(v), "colour": list(COLOURS).index, "size": list(SIZES).index,
            "motion": MOTIONS.index, "scene": list(SCENES).index}[field](value)


def match(query: dict, pool: dict[str, np.ndarray]) -> np.ndarray:
    """Which pool videos satisfy every cue of the query: (N,) bool (actors bind to distinct actors)."""
    acts = pool["actors"]
    ok = np.ones(len(acts), bool)
    if query.get("sound") is not None:
        ok &= pool["sound"] == SOUNDS.index(query["sound"])
    slot = []
    for q in query["actors"]:
        m = acts[:, :, 0] >= 0
        for k, f in enumerate(FIELDS):
            if q.get(f) is not None:
                m &= acts[:, :, k] == _code(f, q[f])
        slot.append(m)  # (N, 3)
    if len(slot) == 1:
        return ok & slot[0].any(1)
    pair = np.zeros(len(acts), bool)
    for i in range(3):
        for j in range(3):
            if i != j:
                hit = slot[0][:, i] & slot[1][:, j]
                if query.get("then"):
                    hit &= acts[:, i, _START] < acts[:, j, _START]
                pair |= hit
    return ok & pair


def sample_query(spec: dict, pool: dict[str, np.ndarray], rng: np.random.Generator,
                 max_matches: int = 1) -> dict:
    """A query true of ``spec``: 1-4 random cues, then more until at most ``max_matches`` pool videos fit."""
    actors = spec["actors"]
    n_mention = 2 if len(actors) >= 2 and rng.random() < 0.35 else 1
    order = rng.permutation(len(actors))
    mention = sorted(order[:n_mention].tolist(), key=lambda i: (actors[i]["start"], rng.random()))
    query = {"actors": [{} for _ in mention], "then": False, "sound": None}

    def redundant(k: int, f: str) -> bool:  # the other mentioned actor's shot scene already names this one's
        other = [j for j in range(len(mention)) if j != k]
        return f == "scene" and any(actors[mention[j]]["shot"] == actors[mention[k]]["shot"]
                                    and "scene" in query["actors"][j] for j in other)

    def candidates() -> list[tuple]:
        out = [(k, f) for k in range(len(mention)) for f in FIELDS
               if f not in query["actors"][k] and not redundant(k, f)]
        out += [("sound",)] if query["sound"] is None and spec["sound"] else []
        if (len(mention) == 2 and not query["then"]
                and actors[mention[0]]["start"] < actors[mention[1]]["start"]):
            out.append(("then",))
        return out

    def add(cue: tuple) -> None:
        if len(cue) == 2:
            query["actors"][cue[0]][cue[1]] = actors[mention[cue[0]]][cue[1]]
        elif cue[0] == "then":
            query["then"] = True
        else:
            query["sound"] = spec["sound"]

    n_cues = int(rng.choice([1, 2, 3, 4], p=[0.1, 0.3, 0.35, 0.25]))
    for _ in range(n_cues):
        cands = candidates()
        if cands:
            add(cands[rng.integers(len(cands))])
    while match(query, pool).sum() > max_matches:
        cands = candidates()
        if not cands:
            if len(mention) == len(actors) or len(mention) == 2:
                break
            extra = [i for i in order.tolist() if i not in mention][0]
            mention.append(extra)
            mention.sort(key=lambda i: actors[i]["start"])  # keeps "then" true for the new order
            query["actors"] = [query["actors"][0] if i != extra else {} for i in mention]
            continue
        add(cands[rng.integers(len(cands))])
    return query


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(q: dict, rng: np.random.Generator) -> str:
    d = q.get("digit")
    names = _GENERIC if d is None else [str(d), _NUM[d], f"digit {d}", f"number {_NUM[d]}"]
    noun = _pick(rng, names)
    size = _pick(rng, _SIZE[q["size"]]) if q.get("size") else ""
    colour = _pick(rng, _COLOUR[q["colour"]]) if q.get("colour") else ""
    if colour and rng.random() < 0.25:  # postfix colour: "a big 3 in red"
        words = [size, noun, _pick(rng, ["in", "coloured"]), colour]
    else:
        words = [size, colour, noun]
    first = next(w for w in words if w)
    article = "an" if first[0] in "aeiou8" and first != "one" else "a"
    return " ".join([article] + [w for w in words if w])


def word_query(query: dict, rng: np.random.Generator) -> list[str]:
    """Word a query as a caption: a list of lower-case words (no punctuation), like ``raw-captions.pkl``."""
    acts = query["actors"]
    scene = _pick(rng, _SCENE[acts[0]["scene"]]) if acts[0].get("scene") else ""
    sound = _pick(rng, _SOUND[query["sound"]]) if query.get("sound") else ""
    np0 = _noun_phrase(acts[0], rng)
    if len(acts) == 1:
        fin = _pick(rng, _FIN[acts[0].get("motion")])
        part = _pick(rng, _PART[acts[0].get("motion")])
        parts = [
            [np0, fin, scene, sound],
            [scene, np0, fin, sound],
            ["there is", np0, part, scene, sound],
            ["a clip of", np0, part, scene, sound],
            [sound, np0, fin, scene],
        ][int(rng.integers(5))]
    else:
        np1 = _noun_phrase(acts[1], rng)
        scene1 = _pick(rng, _SCENE[acts[1]["scene"]]) if acts[1].get("scene") else ""
        fin0 = _pick(rng, _FIN[acts[0].get("motion")])
        m1 = acts[1].get("motion")
        if query.get("then"):  # each actor's scene after its own clause: "... on grass, then ... in space"
            pre, link = _THEN[int(rng.integers(len(_THEN)))]
            fin1 = _pick(rng, _FIN[m1] if m1 else _ENTER)
            parts = [pre, np0, fin0, scene, link, np1, fin1, scene1, sound]
        else:
            fin1 = _pick(rng, _FIN[m1])
            clauses = [[np0, fin0, scene], [np1, fin1, scene1]]
            if rng.random() < 0.5:
                clauses.reverse()
            parts = [*clauses[0], "and", *clauses[1], sound]
    return " ".join(p for p in parts if p).split()


def parse_bag(words: list[str]) -> set[tuple[str, object]]:
    """The bag of attributes a caption names: {(type, value)} read word by word through ``LEXICON``."""
    return {LEXICON[w] for w in words if w in LEXICON}


def query_bag(query: dict) -> set[tuple[str, object]]:
    """The bag of attributes of a structured query (what ``parse_bag`` should read back)."""
    bag = {(f, q[f]) for q in query["actors"] for f in FIELDS if q.get(f) is not None}
    return bag | ({("sound", query["sound"])} if query.get("sound") is not None else set())


def video_bag(spec: dict) -> set[tuple[str, object]]:
    """Every attribute true of a video: its actors' digits, colours, sizes, motions, scenes, and its sound."""
    bag = {(f, a[f]) for a in spec["actors"] for f in FIELDS}
    return bag | ({("sound", spec["sound"])} if spec["sound"] else set())


def make_captions(spec: dict, pool: dict[str, np.ndarray], n: int, seed: int) -> tuple[list, list]:
    """n captions of a video: (list of word lists, list of queries), deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, spec["index"], 3])
    queries = [sample_query(spec, pool, rng) for _ in range(n)]
    return [word_query(q, rng) for q in queries], queries
