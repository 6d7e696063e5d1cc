"""Checkpoints of a training stage: which ones exist, which is whole (a save killed half-way or cut by a full disk
is torn: ``checkpoint_problem``), the newest complete one to resume from, and a full disk while saving reported as
``DiskFullError`` naming the path rather than torch's "unexpected pos". Used by opgrpo.training.common's
``train_and_save``; no TRL or Hydra here.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("opgrpo.training.common")


CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
TRAINER_STATE = "trainer_state.json"  # written last by transformers' _save_checkpoint: its presence marks a whole save
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``output_dir``, newest (highest step) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_NAME.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def _torn_file(path: Path) -> str | None:
    """Why a weights/optimizer file is cut short (a kill or a full disk while writing it), or None."""
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    with open(path, "rb") as fh:
        head = fh.read(8)
        if path.suffix == ".safetensors":  # 8-byte header length, JSON header, then the tensors' bytes
            try:
                n = struct.unpack("<Q", head)[0]
                if size < 8 + n:
                    return f"is cut short ({size} bytes, inside its {n}-byte header)"
                header = json.loads(fh.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            except (struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError):
                return "has an unreadable header"
            if size < 8 + n + end:
                return f"is cut short ({size} bytes, its header promises {8 + n + end})"
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):  # torch.save's zip archive lost its directory
        return f"is cut short ({size} bytes, no zip directory at the end)"
    return None


def _weights_problem(path: Path) -> str | None:
    """Why ``path`` holds no loadable model weights (None: it does)."""
    for name in WEIGHT_INDEXES:
        index = path / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                return f"{name} is unreadable ({exc})"
            missing = [s for s in shards if not (path / s).is_file()]
            return f"weight shards {', '.join(missing)} named by {name} are missing" if missing else None
    if any((path / name).is_file() for name in WEIGHT_FILES):
        return None
    if any(sub.is_dir() and any((sub / n).is_file() for n in WEIGHT_FILES[2:]) for sub in path.iterdir()):
        return None  # several named adapters, one folder each
    return ("no model weights (model.safetensors, pytorch_model.bin, a sharded index or "
            "adapter_model.safetensors)")


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from, or None when it is complete.

    Complete means what transformers' ``_save_checkpoint`` writes, in its order: the weights (``model.safetensors``,
    ``pytorch_model.bin``, a sharded index with every shard, or ``adapter_model.safetensors`` for LoRA), the
    optimizer and scheduler state (``optimizer.pt``, ``scheduler.pt``; under DeepSpeed a ``global_step<N>/`` folder
    holds weights and optimizer state, under FSDP ``pytorch_model_fsdp*``), then ``trainer_state.json`` last. A kill
    while saving leaves no trainer_state.json; a full disk leaves a file cut short (checked from its header or zip
    directory, without loading it).
    """
    path = Path(path)
    state = path / TRAINER_STATE
    if not state.is_file():
        return f"no {TRAINER_STATE} (the trainer writes it last: the save did not finish)"
    try:
        step = json.loads(state.read_text(encoding="utf-8"))["global_step"]
        int(step)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{TRAINER_STATE} is unreadable ({type(exc).__name__}: {exc})"
    names = {p.name for p in path.iterdir()}
    if any(n.startswith("global_step") for n in names):  # DeepSpeed: `latest` names the folder to load
        tag = (path / "latest").read_text(encoding="utf-8").strip() if "latest" in names else ""
        if tag and not (path / tag).is_dir():
            return f"DeepSpeed's 'latest' names {tag}, which is missing"
    elif not any(n.startswith("pytorch_model_fsdp") for n in names):
        problem = _weights_problem(path)
        if problem:
            return problem
        if not names & {"optimizer.pt", "optimizer.bin"}:
            return "no optimizer.pt (optimizer state; resuming without it would restart Adam from zero)"
        if "scheduler.pt" not in names:
            return "no scheduler.pt (learning-rate schedule state)"
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in (".safetensors", ".pt", ".pth", ".bin"):
            problem = _torn_file(f)
            if problem:
                return f"{f.name} {problem}"
    return None


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """Path of the newest *complete* ``checkpoint-<step>`` folder in ``output_dir`` (None: none); every newer, torn
    one is skipped with a WARNING saying why (``checkpoint_problem``). Torn folders are left in place: the trainer
    writes into them again when it reaches their step."""
    for ckpt in checkpoints(output_dir):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return str(ckpt)
        logger.warning("skipping checkpoint %s: %s", ckpt, problem)
    return None


def resume_checkpoint(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The checkpoint ``trainer.train`` should resume from: the newest complete one; ``resume`` with none starts fresh.

    Starting fresh (rather than failing) keeps a requeued cluster job that died before (or during) its first save
    working.
    """
    if not resume:
        return None
    ckpt = last_checkpoint(output_dir)
    if ckpt is None:
        torn = " (the ones there are torn, see above)" if checkpoints(output_dir) else ""
        logger.warning("resume requested but no complete checkpoint in %s%s; starting from step 0", output_dir, torn)
    else:
        logger.info("resuming from %s", ckpt)
    return ckpt


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# how a full disk reads once a library has turned the OS error into its own: torch's zip writer ("unexpected pos",
# "file write failed"), safetensors' Rust IoError ("StorageFull"), the OS text itself
DISK_FULL_TEXT = ("no space left on device", "unexpected pos", "file write failed", "storagefull",
                  "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(exc).lower() for text in DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class DiskFullError(OSError):
    """A write failed for lack of space; ``path`` is what was being written. ``errno`` is ENOSPC."""

    def __init__(self, path: str | os.PathLike, cause: BaseException):
        self.path = str(path)
        try:
            free = f"{shutil.disk_usage(_existing_parent(Path(path))).free / 2**20:,.0f} MiB free there now"
        except OSError:
            free = "free space unknown"
        super().__init__(errno.ENOSPC, f"no space left on device while writing {self.path} ({free}; "
                                       f"{type(cause).__name__}: {cause}). Free space or move the output directory, "
                                       "then resume: training continues from the newest complete checkpoint")

    def __str__(self) -> str:
        return self.strerror


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextmanager
def reporting_full_disk(path: str | os.PathLike | Callable[[], str | os.PathLike]):
    """Turn a full-disk error raised inside the block into ``DiskFullError`` naming ``path`` (or what the callable
    returns when the error happens); every other error passes through unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(path() if callable(path) else path, exc) from exc
