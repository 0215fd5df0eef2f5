"""Layer 4, extensions: what goes beyond the paper's model, built on the engine.

``rerank`` and ``matching`` (CLIP2TV's re-ranking cross-encoder), ``distill`` (similarity distillation),
``normalisation`` (hubness, dual softmax, query-bank normalisation), ``specialisation`` (do the shared
centers become topics?).
"""

from . import distill  # noqa: F401  registers the distillation loss term with the trainer
