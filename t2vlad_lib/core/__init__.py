"""Layer 0, core: what every other layer uses and that knows nothing of T2VLAD.

``batch`` (padded text and video batches, evaluation sets), ``metrics`` (R@K, MdR, MnR), ``stats`` (paired
verdicts: per-seed deltas, bootstrap over queries, sign test), ``utils`` (seed,
device, cache directory, the FAST switch, timing in turns), ``checkpoint`` (checkpoint files: atomic,
digest-verified, code-free; the run-directory lock). Imports nothing else of ``t2vlad_lib``.
"""
