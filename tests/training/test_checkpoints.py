"""Saving and resuming under faults: a torn newest checkpoint (killed while saving, full disk) is skipped for the
newest complete one, with a warning naming it; a full disk while saving names the path and "no space left on
device" instead of torch's "unexpected pos"."""
from __future__ import annotations

import errno
import json
import logging
import shutil
import struct

import pytest
from helpers import make_items, sft_settings

from opgrpo.training.checkpoints import (
    checkpoint_problem,
    reporting_full_disk,
    resume_checkpoint,
)
from opgrpo.training.sft import run_sft
from opgrpo.utils.jsonio import read_jsonl

SETTINGS = sft_settings(learning_rate=1e-3, global_batch_size=2, per_device_train_batch_size=2, max_steps=4,
                        save_steps=2, save_total_limit=None, logging_steps=1, warmup_steps=0.0)


class CountSteps:
    def __init__(self):
        from transformers import TrainerCallback

        self.steps: list[int] = []
        self.callback = TrainerCallback()
        self.callback.on_step_end = lambda args, state, control, **kw: self.steps.append(state.global_step)


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    """A finished 4-step SFT run with complete checkpoints at steps 2 and 4 (copied by each test)."""
    out = tmp_path_factory.mktemp("sft_run")
    run_sft(tiny_model, make_items(4), SETTINGS, out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    return out


def _copy(src, dst):
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# how a save can be torn, and the reason the warning must give
TEARS = {
    "killed before trainer_state.json": (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json"),
    "trainer_state.json cut short": (lambda c: _truncate(c / "trainer_state.json", 0.3), "trainer_state.json"),
    "no model weights": (lambda c: (c / "model.safetensors").unlink(), "model weights"),
    "optimizer.pt cut short (full disk)": (lambda c: _truncate(c / "optimizer.pt"), "optimizer.pt"),
    "model.safetensors cut short": (lambda c: _truncate(c / "model.safetensors", 0.9), "model.safetensors"),
    "no optimizer state": (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt"),
}


@pytest.mark.parametrize("tear", list(TEARS))
def test_resume_skips_a_torn_newest_checkpoint_for_the_newest_complete_one(tiny_model, finished_run, tmp_path,
                                                                          caplog, tear):
    out = _copy(finished_run, tmp_path / "sft")
    tear_fn, reason = TEARS[tear]
    tear_fn(out / "checkpoint-4")
    assert checkpoint_problem(out / "checkpoint-2") is None
    assert reason in checkpoint_problem(out / "checkpoint-4")

    counter = CountSteps()
    with caplog.at_level(logging.WARNING, logger="opgrpo.training.common"):
        metrics = run_sft(tiny_model, make_items(4), SETTINGS, out, resume=True, callbacks=[counter.callback])
    assert counter.steps == [3, 4]  # resumed at checkpoint-2, not from scratch and not from the torn one
    assert metrics["global_step"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("checkpoint-4" in w and reason in w for w in warnings), warnings
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]
    assert checkpoint_problem(out / "checkpoint-4") is None  # saved again, whole this time


def _safetensors(path, nbytes: int = 16):
    header = json.dumps({"w": {"dtype": "F32", "shape": [nbytes // 4], "data_offsets": [0, nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * nbytes)


def _zip(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 100)


def _checkpoint(path, step: int, files=("model.safetensors", "optimizer.pt", "scheduler.pt")):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for name in files:
        (_safetensors if name.endswith(".safetensors") else _zip)(path / name)
    return path


def test_checkpoint_problem_knows_each_layout(tmp_path):
    assert checkpoint_problem(_checkpoint(tmp_path / "full", 1)) is None
    assert checkpoint_problem(_checkpoint(tmp_path / "lora", 1, ("adapter_model.safetensors", "optimizer.pt",
                                                                   "scheduler.pt"))) is None
    # sharded weights: every shard the index names must be there
    sharded = _checkpoint(tmp_path / "sharded", 1, ("optimizer.pt", "scheduler.pt"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    _safetensors(sharded / "model-00001-of-00002.safetensors")
    assert "model-00002-of-00002.safetensors" in checkpoint_problem(sharded)
    _safetensors(sharded / "model-00002-of-00002.safetensors")
    assert checkpoint_problem(sharded) is None
    # DeepSpeed keeps weights and optimizer state in global_step<N>/, named by `latest`
    ds = _checkpoint(tmp_path / "ds", 3, ())
    assert "model weights" in checkpoint_problem(ds)
    (ds / "global_step3").mkdir()
    (ds / "latest").write_text("global_step3")
    assert checkpoint_problem(ds) is None
    (ds / "latest").write_text("global_step4")
    assert "global_step4" in checkpoint_problem(ds)
    # an empty scheduler.pt (disk full the moment it was opened)
    empty = _checkpoint(tmp_path / "empty", 1)
    (empty / "scheduler.pt").write_bytes(b"")
    assert "scheduler.pt is empty" in checkpoint_problem(empty)
    state = _checkpoint(tmp_path / "state", 1)
    (state / "trainer_state.json").write_text("[]")
    assert "trainer_state.json" in checkpoint_problem(state)


def test_resume_checkpoint_takes_the_newest_complete_and_names_every_skipped_one(tmp_path, caplog):
    _checkpoint(tmp_path / "checkpoint-2", 2)
    _checkpoint(tmp_path / "checkpoint-10", 10)
    (tmp_path / "checkpoint-10" / "trainer_state.json").unlink()
    _checkpoint(tmp_path / "checkpoint-12", 12)
    _truncate(tmp_path / "checkpoint-12" / "model.safetensors")
    (tmp_path / "checkpoint-9.tmp").mkdir()  # not a checkpoint name
    with caplog.at_level(logging.WARNING, logger="opgrpo.training.common"):
        assert resume_checkpoint(tmp_path, True) == str(tmp_path / "checkpoint-2")
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 2
    assert "checkpoint-12" in skipped[0] and "model.safetensors is cut short" in skipped[0]
    assert "checkpoint-10" in skipped[1] and "trainer_state.json" in skipped[1]
    assert resume_checkpoint(tmp_path, False) is None

    caplog.clear()
    shutil.rmtree(tmp_path / "checkpoint-2")
    with caplog.at_level(logging.WARNING, logger="opgrpo.training.common"):
        assert resume_checkpoint(tmp_path, True) is None  # nothing complete: start from step 0, and say so
    assert any("no complete checkpoint" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- full disk


TORCH_FULL_DISK = RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")
TORCH_UNEXPECTED_POS = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1088 vs 979")
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("error", [ENOSPC, TORCH_UNEXPECTED_POS, TORCH_FULL_DISK], ids=["enospc", "pos", "write"])
def test_full_disk_while_checkpointing_names_the_checkpoint(tiny_model, tmp_path, monkeypatch, error):
    import torch

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "checkpoint-" in str(f):
            raise error
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as info:
        run_sft(tiny_model, make_items(4), SETTINGS, tmp_path)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert "no space left on device" in message and str(tmp_path / "checkpoint-2") in message
    assert info.value.__cause__ is error  # the original error stays attached


def test_full_disk_while_saving_the_final_model_names_final(tiny_model, tmp_path, monkeypatch):
    from transformers import Trainer

    real = Trainer.save_model

    def save_model(self, output_dir=None, _internal_call=False):
        if str(output_dir).endswith("final"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir, _internal_call)

    monkeypatch.setattr(Trainer, "save_model", save_model)
    settings = sft_settings(global_batch_size=2, per_device_train_batch_size=2, max_steps=1, save_steps=100)
    with pytest.raises(OSError, match="no space left on device") as info:
        run_sft(tiny_model, make_items(2), settings, tmp_path)
    assert str(tmp_path / "final") in str(info.value)


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(RuntimeError, match="^boom$"), reporting_full_disk(tmp_path):
        raise RuntimeError("boom")
    with pytest.raises(OSError) as info, reporting_full_disk(lambda: tmp_path / "x"):
        raise OSError(errno.EACCES, "Permission denied")
    assert info.value.errno == errno.EACCES
    with pytest.raises(OSError, match="no space left on device") as info, reporting_full_disk(lambda: tmp_path / "x"):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise ValueError("wrapped by a library") from exc
    assert str(tmp_path / "x") in str(info.value) and info.value.errno == errno.ENOSPC
