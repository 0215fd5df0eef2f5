"""How hard is DigitClips? Two reference text-to-video R@1 numbers on a generated directory.

* ``oracle_r1``: a reader that knows every video's true attributes. ``kind="structured"`` matches the
  caption's query (actors bound to distinct actors, temporal order); ``kind="bag"`` only reads the
  caption's bag of attribute words (``captions.parse_bag``) and scores a video by how many it has.
* ``ridge_baseline``: a global-only linear baseline: ridge regression from a caption's bag of words to
  the video's standardised, temporally max-pooled expert features; cosine similarity for retrieval.

R@1 counts a query as solved only when its video scores strictly above every other video (ties count as
misses, as with tie-averaged ranks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .captions import encode_pool, match, parse_bag, video_bag
from .digitclips import read_attributes
from .released import load_split

__all__ = ["oracle_r1", "ridge_baseline"]


def _queries(root: Path, split: str, protocol: str):
    data = load_split(root, split, verbose=False)
    attrs = read_attributes(root)
    rows = []  # (video row, caption words, query)
    for i, v in enumerate(data.video_ids):
        picks = [data.caption_index[i]] if protocol == "index" else range(len(data.captions[i]))
        rows += [(i, data.captions[i][k].split(), attrs["queries"][v][k]) for k in picks]
    return data, [attrs["specs"][v] for v in data.video_ids], rows


def oracle_r1(root: str | Path, split: str = "test", protocol: str = "all",
              kind: str = "structured") -> float:
    """R@1 (percent) of the attribute oracle on a DigitClips directory (needs ``attributes.json``)."""
    root = Path(root)
    _, specs, rows = _queries(root, split, protocol)
    if kind == "structured":
        pool = encode_pool(specs)
        hits = [bool(match(q, pool)[i]) and match(q, pool).sum() == 1 for i, _, q in rows]
        return 100.0 * float(np.mean(hits))
    if kind != "bag":
        raise ValueError(f"oracle kind {kind!r}; expected 'structured' or 'bag'")
    bags = [video_bag(s) for s in specs]
    vocab = {a: j for j, a in enumerate(sorted(set().union(*bags), key=str))}
    vid = np.zeros((len(specs), len(vocab)))
    for i, b in enumerate(bags):
        vid[i, [vocab[a] for a in b]] = 1
    hits = []
    for i, words, _ in rows:
        cap = np.zeros(len(vocab))
        cap[[vocab[a] for a in parse_bag(words) if a in vocab]] = 1
        score = vid @ cap
        hits.append(score[i] > np.delete(score, i).max())
    return 100.0 * float(np.mean(hits))


def _pooled(data) -> np.ndarray:
    """(V, sum_e D_e) temporal max-pool per expert, zeros for missing experts."""
    parts = []
    for e in data.experts:
        parts.append(np.stack([np.zeros(data.dims[e], np.float32) if x is None else x.max(0)
                               for x in data.features[e]]))
    return np.concatenate(parts, 1)


def ridge_baseline(root: str | Path, lam: float = 10.0, protocol: str = "all") -> float:
    """Test R@1 (percent) of a bag-of-words -> pooled-features ridge regression fit on all train captions."""
    root = Path(root)
    train, test = load_split(root, "train", verbose=False), load_split(root, "test", verbose=False)
    words = sorted({w for caps in train.captions for c in caps for w in c.split()})
    vocab = {w: j for j, w in enumerate(words)}

    def bow(caps: list[str]) -> np.ndarray:
        x = np.zeros((len(caps), len(vocab) + 1))
        for r, c in enumerate(caps):
            for w in c.split():
                if w in vocab:
                    x[r, vocab[w]] = 1
            x[r, -1] = 1  # bias
        return x

    vtrain, vtest = _pooled(train), _pooled(test)
    mu, sd = vtrain.mean(0), vtrain.std(0) + 1e-6
    vtrain, vtest = (vtrain - mu) / sd, (vtest - mu) / sd
    rows = [(i, c) for i, caps in enumerate(train.captions) for c in caps]
    x = bow([c for _, c in rows])
    y = vtrain[[i for i, _ in rows]]
    w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    if protocol == "index":
        qrows = [(i, caps[test.caption_index[i]]) for i, caps in enumerate(test.captions)]
    else:
        qrows = [(i, c) for i, caps in enumerate(test.captions) for c in caps]
    q = bow([c for _, c in qrows]) @ w
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-9
    v = vtest / (np.linalg.norm(vtest, axis=1, keepdims=True) + 1e-9)
    sims = q @ v.T
    gt = np.array([i for i, _ in qrows])
    best = sims[np.arange(len(gt)), gt]
    sims[np.arange(len(gt)), gt] = -np.inf
    return 100.0 * float(np.mean(best > sims.max(1)))
