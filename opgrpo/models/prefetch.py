"""Prefetching the models a config names: ``prefetch(refs)`` downloads every hub id into the
HF cache (``snapshot_download``; local paths are skipped and said so), so that compute nodes without internet run
with ``HF_HUB_OFFLINE=1``. Weights in formats the project never loads (ONNX, OpenVINO, TF, Flax, ``original/``
checkpoints, ``.bin`` files shadowed by ``.safetensors``) are left out.

Plain arguments only (no Hydra); huggingface_hub is imported when a function needs it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opgrpo.models.hub_ids import is_hub_id
from opgrpo.utils.offline import offline_setting

logger = logging.getLogger("opgrpo.models.hub")  # the logger of the module this part was split from


FOREIGN_WEIGHTS = ["*.onnx", "*.onnx_data", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "flax_model*", "tf_model*",
                   "rust_model.ot", "*.tflite", "coreml/*", "original/*", "*.gguf"]
"""Files ``prefetch`` leaves on the Hub: formats transformers / sentence-transformers never load here."""


@dataclass
class ModelRef:
    """One model a config names: the key(s) naming it, the reference (hub id or path), optional file patterns."""

    key: str
    ref: str
    allow_patterns: list[str] | None = None
    """Only these files (e.g. one GGUF file and the tokenizer); None = the whole repository but FOREIGN_WEIGHTS."""


@dataclass
class Fetched:
    """What ``prefetch`` did with one reference."""

    ref: str
    keys: list[str]
    status: str
    """``local`` (a local path: nothing to download), ``downloaded``, ``cached`` (already in the cache; offline: the
    cache has a snapshot of it), ``missing`` (a local path that does not exist) or ``failed``."""
    path: str = ""
    """The local directory (the cache snapshot for hub ids)."""
    downloaded_bytes: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("local", "downloaded", "cached")


def _shadowed(files: Iterable[str]) -> list[str]:
    """``.bin``/``.pt``/``.pth`` weights with a ``.safetensors`` file in the same folder (transformers loads that)."""
    files = list(files)
    with_st = {str(Path(f).parent) for f in files if f.endswith(".safetensors")}
    return [f for f in files if f.endswith((".bin", ".pt", ".pth")) and str(Path(f).parent) in with_st
            and not Path(f).name.startswith(("training_args", "optimizer", "scheduler"))]


def _fetch(ref: ModelRef, token: str | None) -> tuple[str, str, int]:
    """(status, snapshot path, bytes downloaded) for one hub id; raises what snapshot_download raises."""
    import huggingface_hub
    from huggingface_hub import constants

    kwargs: dict[str, Any] = {"token": token}
    if ref.allow_patterns:
        kwargs["allow_patterns"] = list(ref.allow_patterns)
    else:
        kwargs["ignore_patterns"] = list(FOREIGN_WEIGHTS)
    to_download = None
    try:  # the file list first (huggingface_hub >= 1.0): leave out shadowed .bin files, count the bytes
        listing = huggingface_hub.snapshot_download(ref.ref, dry_run=True, **kwargs)
        skip = _shadowed(f.filename for f in listing)
        if "ignore_patterns" in kwargs:
            kwargs["ignore_patterns"] += skip
        to_download = sum(f.file_size or 0 for f in listing if f.will_download and f.filename not in skip)
    except Exception as exc:  # noqa: BLE001 - the real download below reports the failure
        logger.debug("dry run of %s failed (%s); downloading without it", ref.ref, exc)
    path = huggingface_hub.snapshot_download(ref.ref, **kwargs)
    status = "cached" if to_download == 0 or constants.HF_HUB_OFFLINE else "downloaded"
    return status, str(path), int(to_download or 0)


def prefetch(refs: Iterable[ModelRef], token: str | None = None) -> list[Fetched]:
    """Download every hub id among ``refs`` into the HF cache (``snapshot_download``); local paths are reported,
    not downloaded. One entry per distinct reference (its config keys joined), in the order first named; a failure
    is reported in its entry, never raised. With ``HF_HUB_OFFLINE=1`` nothing is downloaded and the entries say
    whether the cache holds a snapshot of each model."""
    from huggingface_hub import constants

    grouped: dict[str, tuple[ModelRef, list[str]]] = {}
    for r in refs:
        if r.ref:
            grouped.setdefault(r.ref, (r, []))[1].append(r.key)
    out = []
    for ref, (model, keys) in grouped.items():
        if not is_hub_id(ref):
            path = Path(ref).expanduser()
            if path.exists():
                out.append(Fetched(ref, keys, "local", str(path), detail="local path, nothing to download"))
            else:
                out.append(Fetched(ref, keys, "missing", detail="no such local directory"))
            continue
        try:
            status, path, size = _fetch(model, token)
            out.append(Fetched(ref, keys, status, path, size))
        except Exception as exc:  # noqa: BLE001 - one entry per model, the caller lists the failures
            why = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            if constants.HF_HUB_OFFLINE:  # name the switch the user set (TRANSFORMERS_OFFLINE=1 works too)
                switch = offline_setting() or "huggingface_hub's offline mode"
                why = f"not in the HF cache, and {switch} forbids downloading it ({why})"
            out.append(Fetched(ref, keys, "failed", detail=why))
    return out


def prefetch_table(fetched: Sequence[Fetched]) -> str:
    """A plain-text table of ``prefetch``'s entries (status, reference, config keys, size or reason)."""
    rows = []
    for f in fetched:
        size = f"{f.downloaded_bytes / 2**20:,.0f} MiB downloaded" if f.status == "downloaded" else ""
        rows.append((f.status, f.ref, ", ".join(f.keys), size or f.detail or f.path))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows)
