"""Layer 2, model: the networks and their losses, one idea per module.

``vlad`` (VLAD, NetVLAD, the cross-modal VLAD of eqs. 1-3), ``video`` (per-expert projection,
self-attention, GEU), ``alignment`` (global alignment, eq. 4), ``text`` (the BERT-like text encoder and its
state cache), ``t2vlad`` (the T2VLAD dual encoder and its ``ModelConfig``), ``losses``, ``optim``,
``baselines`` and ``mmt`` (CE-style, MMT-style, mean pooling). Imports only ``core``.
"""
