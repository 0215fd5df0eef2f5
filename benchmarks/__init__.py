"""Speed and memory benchmarks (scripts, not tests): ``python -m benchmarks.run [--only NAME] [--quick]``.

Each benchmark is a function returning ``{"rows": [...]}`` for notebook plots: :mod:`benchmarks.efficiency`
(video encoding vs MMT, encode-once evaluation, similarity GFLOP/s) and :mod:`benchmarks.retrieval`
(exact vs faiss retrieval up to 1,000,000 videos). Results: ``benchmarks/RESULTS.md``.
"""
