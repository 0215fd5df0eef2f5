"""t2vlad_lib: T2VLAD (CVPR 2021) rebuilt from scratch, one concept per module.

Data flows one way: ``data`` (experts, padded batches) -> ``text`` / ``video`` (encoders) ->
``vlad`` / ``alignment`` (local and global alignment) -> ``model`` (similarity) -> ``losses`` /
``metrics``.
"""

__version__ = "0.1.0"
