"""Free-text search over the test gallery with a trained checkpoint (the CLI's ``search``)."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import load_config
from .evaluate import encode_videos
from .index import chunked_topk
from .runs import load_run

__all__ = ["search_gallery"]


@torch.no_grad()
def search_gallery(
    query: str, checkpoint: str | Path | None = None, profile: str = "tutorial", k: int = 5
) -> list[tuple[str, float, str]]:
    """Top-``k`` test videos for ``query``: a list of (video id, score, one of its captions).

    The gallery is encoded once; the query is tokenised and encoded with the run's text encoder.
    """

    if not query or not query.strip():
        raise ValueError("search: the query is empty; expected a few words, e.g. 'a red seven moves left'")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as err:  # undecodable bytes of the command line arrive as lone surrogates
        raise ValueError(f"search: the query is not valid UTF-8 (character {err.start}: "
                         f"{query[err.start]!r}); expected UTF-8 text") from None
    path = Path(checkpoint) if checkpoint else load_config(profile).run_dir() / "best.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} not found: train first (python -m t2vlad_lib train "
            f"--profile {profile}) or pass --checkpoint"
        )
    run = load_run(path)
    model, data, cfg = run.model, run.data, run.cfg
    videos = encode_videos(model, data.test.videos, cfg.eval_batch_size)
    text = model.encode_text(data.encode_queries([query]))
    scores, ids = chunked_topk(text, videos, model.similarity, k=min(k, len(videos)))
    examples = data.test.texts.captions
    first_caption = {}
    pos = 0
    for row, vid in enumerate(data.test.videos.video_ids):
        n = int(data.test.query_masks[row].sum())
        first_caption[vid] = examples[pos] if n else ""
        pos += n
    out = []
    for s, i in zip(scores[0].tolist(), ids[0].tolist(), strict=True):
        vid = data.test.videos.video_ids[i]
        out.append((vid, s, first_caption[vid]))
    return out
