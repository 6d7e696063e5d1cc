"""A model folder is hashed once per content: renaming it (publishing a stage into the shared store) reuses the hash,
editing a file does not."""
from __future__ import annotations

import os

from opgrpo.estimator import identity


def test_a_renamed_folder_is_not_hashed_again(tmp_path, monkeypatch):
    src = tmp_path / "run" / "model"
    src.mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "model.safetensors").write_bytes(b"weights" * 100)
    calls = []
    real = identity._hash_folder
    monkeypatch.setattr(identity, "_hash_folder", lambda root: calls.append(root) or real(root))
    fp = identity.fingerprint(src)
    moved = tmp_path / "store" / "model"
    moved.parent.mkdir()
    os.rename(src, moved)
    assert identity.fingerprint(moved) == fp and len(calls) == 1
    (moved / "config.json").write_text('{"a": 2}')
    assert identity.fingerprint(moved) != fp and len(calls) == 2
