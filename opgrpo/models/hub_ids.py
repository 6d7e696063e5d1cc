"""Telling a Hugging Face Hub repository id (``ORG/NAME``) from a local path or file name in a config value.

Used by the model card (opgrpo.models.model_card: hub ids go into its metadata) and the prefetch
(opgrpo.models.prefetch: hub ids are downloaded, local paths are not).
"""
from __future__ import annotations

from pathlib import Path

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".gguf", ".safetensors", ".bin", ".pt")


def is_hub_id(ref: str) -> bool:
    """Whether ``ref`` names a Hub repository rather than a local path: not an existing path, not path-like
    (``/``, ``./``, ``~``, two or more ``/``), not a file name (``train.csv``)."""
    ref = str(ref or "")
    if not ref or Path(ref).expanduser().exists() or Path(ref).suffix.lower() in FILE_SUFFIXES:
        return False
    return not ref.startswith(("/", ".", "~")) and ref.count("/") <= 1
