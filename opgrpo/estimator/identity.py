"""Which similarity estimator produced a reward number: its path and a fingerprint of its content.

Coverage and uniqueness rates depend on the estimator as much as on the responses (the same responses score 0.118
with the base MiniLM and 0.153 with the fine-tuned one), so every reward number a run writes carries
``estimator_identity``: where the model was loaded from, a short hash of its weights and config files (equal
fingerprints = the same model, wherever it lies), and whether it is the untuned base model: the estimator stage
records in the model folder whether training ran (``TRAINED_MARKER``, so a base model saved unchanged for want of
triplets is not "tuned"); a folder without that record is tuned when it differs from the base model by path and
content. ``run_estimator`` finds
the estimator a run trained or used, from any path inside that run (its policy, its responses file), so that a
stand-alone evaluation of a run's outputs scores them with that run's estimator.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

UNTUNED = "untuned estimator"
"""The label tables show next to numbers scored with an estimator that was not fine-tuned."""
CONTENT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")
ESTIMATOR_DIR = "estimator/model"
"""Where the estimator stage saves its fine-tuned model inside a run directory."""
TRAINED_MARKER = "opgrpo_estimator.json"
"""The estimator stage's record inside the model folder it saved: ``{"trained", "base_model", "triplets"}``. Left out
of the fingerprint (the record describes the model, it is not part of it)."""


def write_training_record(model_dir: str | Path, *, trained: bool, base_model: str | Path, triplets: int) -> Path:
    """Record in ``model_dir`` whether training ran on the model saved there, from which base and how many triplets."""
    path = Path(model_dir) / TRAINED_MARKER
    path.write_text(json.dumps({"trained": bool(trained), "base_model": str(base_model), "triplets": int(triplets)},
                               indent=2))
    return path


def training_record(model_dir: str | Path) -> dict[str, Any] | None:
    """The stage's record in ``model_dir`` (``write_training_record``); None when there is none or it is unreadable."""
    path = Path(model_dir) / TRAINED_MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("trained"), bool) else None


def _hash_folder(root: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in CONTENT_SUFFIXES
                    and p.relative_to(root).as_posix() != TRAINED_MARKER):
        digest.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


_HASHES: dict[tuple, str] = {}
"""Fingerprints by the folder's stamp (each file's name inside it, size, mtime, device and inode): a folder renamed
(a stage published into the shared store) keeps its stamp, so its weights are not hashed a second time."""


def fingerprint(path: str | Path) -> str:
    """12 hex digits of a SHA-256 over the model folder's weight, config and vocabulary files (names and bytes);
    "" when ``path`` is not a local folder (a hub id not downloaded: nothing to hash)."""
    root = Path(path)
    if not root.is_dir():
        return ""
    stats = ((p, p.stat()) for p in sorted(root.rglob("*")) if p.is_file())
    stamp = tuple((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
                  for p, st in stats)
    if stamp not in _HASHES:
        if len(_HASHES) >= 32:
            _HASHES.pop(next(iter(_HASHES)))
        _HASHES[stamp] = _hash_folder(root)
    return _HASHES[stamp]


def estimator_identity(path: str | Path, base_model: str | Path) -> dict[str, Any]:
    """``{"path", "fingerprint", "tuned"}`` of the estimator at ``path``; ``tuned`` is False when it is
    ``base_model`` itself (by path or by content) or when the estimator stage recorded that no training ran on it
    (``TRAINED_MARKER``)."""
    fp = fingerprint(path)
    same_path = str(path) == str(base_model) or (Path(path).exists() and Path(base_model).exists()
                                                 and Path(path).resolve() == Path(base_model).resolve())
    tuned = not (same_path or (fp and fp == fingerprint(base_model)))
    record = training_record(path) if Path(path).is_dir() else None
    if record is not None:
        tuned = tuned and record["trained"]
    return {"path": str(path), "fingerprint": fp, "tuned": tuned}


def label(identity: dict[str, Any]) -> str:
    """How a table names the estimator: ``<fingerprint>`` or ``<fingerprint> (untuned estimator)``."""
    name = identity.get("fingerprint") or Path(str(identity.get("path", ""))).name
    return name if identity.get("tuned") else f"{name} ({UNTUNED})"


def find_run_dir(path: str | Path, max_up: int = 4) -> Path | None:
    """The run directory ``path`` lies in (a folder holding ``config.yaml`` and ``status.json``), or None."""
    p = Path(path).resolve()
    for cand in [p, *p.parents][: max_up + 1]:
        if (cand / "config.yaml").is_file() and (cand / "status.json").is_file():
            return cand
    return None


def run_estimator(path: str | Path) -> str | None:
    """The estimator the run containing ``path`` used: the one its summary records, else its estimator stage's
    model, else its ``reward.estimator_path``; None when ``path`` is not inside a run or the run names none."""
    run = find_run_dir(path)
    if run is None:
        return None
    summary = run / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except ValueError:
            data = {}
        for key in ("grpo/reward_estimator/path", "eval/reward_estimator/path"):
            used = data.get(key)
            if used and Path(used).exists():
                return str(used)
    if (run / ESTIMATOR_DIR).is_dir():
        return str(run / ESTIMATOR_DIR)
    return None
