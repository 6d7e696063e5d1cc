"""What produced a stage's output: its manifest (``<stage>/manifest.json``), content hashes, and how two differ.

A manifest records a stage's inputs: the config keys the stage reads (with a data file's path replaced by the hash of
its bytes, so a moved file is the same input and an edited one is not), the fingerprints of the upstream artefacts it
used (the estimator, the policy it started from), the opgrpo version, and, once the stage completed, the fingerprint
of its own output and its summary numbers. ``inputs_fingerprint`` is a short hash of the inputs: two stages with equal
fingerprints were computed from the same inputs, wherever they lie (the way DVC's run cache or Nextflow's ``-resume``
decide). The git commit is recorded for lineage, not hashed (a commit that touches nothing of the method must not
throw a sweep's shared stages away).

Hashes are of bytes, computed once per process for a file whose size and modification time did not change
(``file_hash``). Plain Python: no Hydra, no torch; opgrpo.app.identity decides reuse, resume and sharing with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
"""The manifest's file name inside a stage's folder."""
STARTED, DONE = "started", "completed"
"""A manifest's ``state``: written when the stage starts (its inputs), then when it completed (with its output)."""


@lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """16 hex digits of the SHA-256 of a file's bytes (cached while its size and mtime stay the same); "" when
    ``path`` is not a file (a Hub dataset id: its name is the input)."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        return ""
    if not p.is_file():
        return ""
    return _file_hash(str(p.resolve()), st.st_size, st.st_mtime_ns)


def text_hash(value: Any) -> str:
    """16 hex digits of the SHA-256 of a JSON-able value in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    """``{"opgrpo": version, "commit": git commit of the checkout or ""}`` of the running code."""
    try:
        from importlib.metadata import version

        v = version("opgrpo")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a bare checkout on PYTHONPATH)
        v = "0+unknown"
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, text=True,
                                capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"opgrpo": v, "commit": commit}


@dataclass
class Manifest:
    """The inputs (and, once completed, the output) of one stage."""

    stage: str
    keys: dict[str, Any] = field(default_factory=dict)
    """Config key -> value the stage reads (a data file's value is ``sha256:<hash>``)."""
    data: dict[str, str] = field(default_factory=dict)
    """Config key of a data file -> ``{path}`` as read (lineage; its hash is in ``keys``)."""
    upstream: dict[str, str] = field(default_factory=dict)
    """Name (estimator, policy) -> fingerprint of the artefact the stage used (a hub id when not local)."""
    version: str = ""
    commit: str = ""
    state: str = STARTED
    output: str = ""
    """Fingerprint of what the stage produced (its model folder, or its numbers)."""
    products: dict[str, str] = field(default_factory=dict)
    """What later stages take from it, relative to the stage folder (``estimator_path: model``)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """The stage's final numbers (``stage/key`` -> value), restored into the run's summary when it is reused."""
    time: str = ""

    @property
    def fingerprint(self) -> str:
        """Short hash of the inputs (stage, keys, upstream, opgrpo version)."""
        return text_hash({"stage": self.stage, "keys": self.keys, "upstream": self.upstream, "version": self.version})

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/manifest.json`` atomically (temp file + rename), with the fingerprint beside the fields."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.time = time.strftime("%Y-%m-%dT%H:%M:%S")
        path = folder / MANIFEST
        tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({**asdict(self), "fingerprint": self.fingerprint}, indent=2, default=str))
        os.replace(tmp, path)
        return path


def read_manifest(folder: str | Path) -> Manifest | None:
    """The manifest in ``folder`` (None when there is none or it cannot be read: treated as no manifest)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "stage" not in data:
        return None
    data.pop("fingerprint", None)
    known = Manifest.__dataclass_fields__
    return Manifest(**{k: v for k, v in data.items() if k in known})


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def differences(old: Manifest, new: Manifest, ignore: tuple[str, ...] = ()) -> list[str]:
    """What differs between two manifests' inputs, one line each (``reward.weights.coverage: 1.0 -> 0.5``,
    ``upstream estimator: 3fa2... -> 9c1e...``), keys starting with one of ``ignore`` left out."""
    out = []
    for key in sorted(set(old.keys) | set(new.keys)):
        if key.startswith(ignore) if ignore else False:
            continue
        a, b = old.keys.get(key, "<unset>"), new.keys.get(key, "<unset>")
        if a != b:
            out.append(f"{key}: {_short(a)} -> {_short(b)}")
    for name in sorted(set(old.upstream) | set(new.upstream)):
        a, b = old.upstream.get(name, "<none>"), new.upstream.get(name, "<none>")
        if a != b:
            out.append(f"upstream {name}: {_short(a)} -> {_short(b)}")
    if old.version != new.version:
        out.append(f"opgrpo version: {old.version} -> {new.version}")
    return out
