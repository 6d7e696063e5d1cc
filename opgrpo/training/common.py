"""What the SFT warm start (`opgrpo.training.sft`) and GRPO (`opgrpo.training.grpo`) stages share (public names: `opgrpo.training`).

Both stages are thin layers over TRL: plain dataclass settings (OmegaConf-friendly, so the Hydra layer can
register them) are turned into a ``trl.SFTConfig`` / ``trl.GRPOConfig``, the trainer is built from a model
*path* (TRL loads the model in float32 and trains with bf16 autocast where the hardware has it), and every run
directory ends up with the same layout::

    <output_dir>/checkpoint-<step>/   TRL/transformers checkpoints (resume from the newest complete one)
    <output_dir>/metrics.jsonl        one JSON line per trainer log (opgrpo.training.callbacks.MetricsJsonlCallback)
    <output_dir>/final/               final model in the training dtype (bf16 when trained with bf16), tokenizer
                                      with its chat template, model card README.md (LoRA runs: merged weights)
    <output_dir>/final_adapter/       LoRA runs only: the adapter alone

Saving under faults: resume skips torn checkpoints (killed while saving, full disk; ``checkpoint_problem``) for the
newest complete one, and a full disk while saving raises ``DiskFullError`` naming the path, not torch's
"unexpected pos". This module imports TRL/transformers/peft/accelerate, never Hydra.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opgrpo.training.checkpoints import (
    checkpoint_problem,
    checkpoints,
    last_checkpoint,
    reporting_full_disk,
    resume_checkpoint,
)
from opgrpo.training.distributed import dist_info, trainer_state_kwargs
from opgrpo.utils.checks import ConfigProblemsError, Problems

logger = logging.getLogger(__name__)

BF16_CHOICES = ("auto", "true", "false")


@dataclass
class LoraSettings:
    """Optional LoRA adapter (peft). Disabled in the paper preset (full fine-tuning)."""

    enabled: bool = False
    """Train a LoRA adapter instead of all weights."""
    r: int = 16
    """Adapter rank (peft ``LoraConfig.r``)."""
    alpha: int = 32
    """Scaling numerator (peft ``lora_alpha``); the update is scaled by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter input (peft ``lora_dropout``)."""
    target_modules: str = "all-linear"
    """Modules to adapt: ``all-linear`` or a comma-separated list of module names (``q_proj,v_proj``)."""

    def targets(self) -> str | list[str]:
        """``all-linear`` or the list of module names."""
        targets = self.target_modules.strip()
        return targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]

    def problems(self) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``lora``); checked only when enabled."""
        p = Problems()
        if self.enabled:
            p.positive("r", self.r)
            p.unit("dropout", self.dropout, open_high=True)
            if not self.targets():
                p.add("target_modules", "is empty")
        return list(p)


def lora_config(settings: LoraSettings | None):
    """A peft ``LoraConfig`` for a causal LM, or ``None`` when ``settings`` is missing or disabled."""
    if settings is None or not settings.enabled:
        return None
    problems = Problems("lora.")
    problems.extend_from("", settings.problems())
    problems.raise_if_any()
    from peft import LoraConfig

    targets = settings.targets()
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def as_peft_config(peft):
    """``peft`` as a peft config: LoraSettings -> LoraConfig (None when disabled); a peft config or None as is."""
    if peft is None or isinstance(peft, LoraSettings):
        return lora_config(peft)
    return peft


def load_tokenizer(model_path: str | os.PathLike, chat_template: str = "", trust_remote_code: bool = False):
    """The policy tokenizer; ``chat_template`` ("" = the tokenizer's own) is a Jinja string or a .jinja file path.

    Trainers get this tokenizer (not the path) so that an overridden chat template is used in training and saved
    with the final model.
    """
    from opgrpo.models.generation import load_tokenizer as _load

    return _load(str(model_path), chat_template=chat_template, trust_remote_code=trust_remote_code)


def model_init_kwargs(dtype: str = "", trust_remote_code: bool = False) -> dict[str, Any]:
    """TRL ``model_init_kwargs``: ``dtype`` "" keeps TRL's float32 master weights (bf16 autocast on GPU).

    Loading a bf16 checkpoint with dtype "auto" trains pure bf16 weights, where lr 1e-6 updates mostly round away.
    """
    kwargs: dict[str, Any] = {}
    if dtype:
        kwargs["dtype"] = dtype
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def resolve_bf16(value: str | bool, key: str = "bf16") -> bool:
    """``auto`` -> bf16 mixed precision exactly when a CUDA device supports it; ``true``/``false`` force it."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v not in BF16_CHOICES:
        raise ValueError(f"{key} must be one of {BF16_CHOICES}, got {value!r}")
    if v == "auto":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return v == "true"


@functools.cache
def _trl_fields(config: str) -> dict[str, dataclasses.Field]:
    import trl

    return {f.name: f for f in dataclasses.fields(getattr(trl, config))}


def trl_value(settings: Any, name: str) -> Any:
    """The TRL field ``name`` as the run will get it: ``settings.trl[name]``, else the default of TRL's dataclass
    (``settings.trl_config``: ``GRPOConfig`` or ``SFTConfig``)."""
    if name in settings.trl:
        return settings.trl[name]
    f = _trl_fields(settings.trl_config)[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def trl_problems(settings: Any, derived: Iterable[str]) -> list[str]:
    """Problems with ``settings.trl`` (``trainer.grpo.trl`` / ``trainer.sft.trl``: ``trl.<config>`` fields by TRL's
    name): a key that is not a field of TRL's dataclass, one opgrpo derives itself (``derived``), or a value outside
    the choices TRL's field declares. TRL checks the values themselves when the stage builds its config."""
    p = Problems()
    known, cls = _trl_fields(settings.trl_config), settings.trl_config
    for key, value in (settings.trl or {}).items():
        if key not in known:
            close = sorted(k for k in known if key.lower() in k or k in key.lower())[:5]
            p.add(f"trl.{key}", f"not a field of trl.{cls}" + (f" (close: {', '.join(close)})" if close else ""))
        elif key in derived:
            p.add(f"trl.{key}", "set by opgrpo from its own settings (`opgrpo stage=describe` lists them); change "
                                "those instead")
        elif "choices" in known[key].metadata:
            p.choice(f"trl.{key}", value, known[key].metadata["choices"])
    return list(p)


def bookkeeping_kwargs(settings: Any, section: str, *, report_to=(), deepspeed: str | dict = "",
                       model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer-config fields SFT and GRPO derive alike: precision (``bf16`` "auto" resolved here), logging
    backends, DeepSpeed, model loading and the process group."""
    return dict(
        bf16=resolve_bf16(settings.bf16, f"{section}.bf16"),
        report_to=list(report_to) or "none",
        deepspeed=deepspeed or None,
        model_init_kwargs=model_kwargs or None,
        **trainer_state_kwargs(),  # reuse the process group opgrpo.training.distributed set up (DeepSpeed on CPU)
    )


def build_trl_config(settings: Any, section: str, world_size: int, derived: dict[str, Any]):
    """``trl.<settings.trl_config>(**settings.trl, **derived)``: TRL's fields by TRL's name, plus what opgrpo derives;
    ConfigProblemsError naming every key of ``settings.problems(world_size)`` first (keys under ``section``)."""
    import trl

    problems = Problems(f"{section}.")
    problems.extend_from("", settings.problems(world_size))
    problems.raise_if_any()
    try:
        return getattr(trl, settings.trl_config)(**dict(settings.trl), **derived)
    except ValueError as exc:  # TRL's own checks of its values (their messages name the fields in words)
        problems.add("trl", f"trl.{settings.trl_config} rejects them: {exc}")
        raise ConfigProblemsError(problems) from exc


def world_size() -> int:
    """Number of training processes, from the launcher's environment (opgrpo.training.distributed.dist_info)."""
    return dist_info().world_size


def _being_saved(trainer, output_dir: Path) -> Path:
    """The checkpoint folder a failed write during training was most likely filling (else ``output_dir``)."""
    ckpt = output_dir / f"checkpoint-{trainer.state.global_step}"
    return ckpt if ckpt.is_dir() and checkpoint_problem(ckpt) is not None else output_dir


def train_and_save(trainer, output_dir: str | os.PathLike, resume: bool, clean: bool = False, stage: str = ""):
    """``trainer.train()`` (resuming from the newest complete checkpoint when ``resume``), then ``save_final``;
    returns (train output, final dir). ``clean``: delete the checkpoints once final/ is saved. A full disk raises
    ``DiskFullError`` naming the checkpoint or folder.

    Preemption (opgrpo.training.preempt): during ``train()`` SIGTERM/SIGUSR1 (and submitit's signal) only note
    themselves; at the next step end every rank saves a checkpoint and stops, and ``Preempted`` (``stage``, step,
    signal) is raised instead of saving final/ (checkpoints kept). A signal after the last step: final/ is saved, then
    ``Preempted`` is raised all the same, so the job still ends as its launcher asked."""
    from opgrpo.training.callbacks import PreemptionCallback
    from opgrpo.training.preempt import Preempted, agreed, catching

    output_dir = Path(output_dir)
    checkpoint = resume_checkpoint(output_dir, resume)
    with catching() as watch:
        callback = PreemptionCallback(watch)
        trainer.add_callback(callback)
        try:
            with reporting_full_disk(lambda: _being_saved(trainer, output_dir)):
                output = trainer.train(resume_from_checkpoint=checkpoint)
        finally:
            trainer.remove_callback(callback)
        signum = watch.agreed or agreed(watch.signum, trainer.args.device)  # a signal after the last step end
    step = int(trainer.state.global_step)
    if signum and callback.stopped_at is not None:
        saved = output_dir / f"checkpoint-{step}"
        raise Preempted(step, signum, stage, str(saved), previous=watch.previous.get(signum))
    final = save_final(trainer, output_dir)
    if signum:
        raise Preempted(step, signum, stage, last_checkpoint(output_dir), previous=watch.previous.get(signum),
                        final=str(final))
    if clean and trainer.accelerator.is_main_process:
        for ckpt in checkpoints(output_dir):
            shutil.rmtree(ckpt, ignore_errors=True)
            logger.info("removed %s (training finished; final model in %s)", ckpt, final)
    return output, final


def save_final(trainer, output_dir: str | os.PathLike) -> Path:
    """Save the trained policy + tokenizer to ``output_dir/final`` (LoRA: merged weights, adapter in ``final_adapter``)
    in the training dtype (``final_dtype``), without the TRL model card a checkpoint save leaves in ``output_dir``
    (``opgrpo.models.model_card.write_model_card`` writes the run's card next to the weights instead).

    Every process must call this (DeepSpeed ZeRO-3 gathers the weights collectively); only the main process writes.
    A full disk raises ``DiskFullError`` naming the folder.
    """
    final = Path(output_dir) / "final"
    adapter = Path(output_dir) / "final_adapter"
    model = trainer.model
    is_peft = hasattr(model, "peft_config")
    with reporting_full_disk(adapter if is_peft else final):
        trainer.save_model(str(adapter if is_peft else final))
    if trainer.accelerator.is_main_process:
        tokenizer = trainer.processing_class
        with reporting_full_disk(final):
            if is_peft:
                unwrapped = trainer.accelerator.unwrap_model(model)
                merged = unwrapped.merge_and_unload() if hasattr(unwrapped, "merge_and_unload") else unwrapped
                merged.save_pretrained(str(final))
            if tokenizer is not None:
                tokenizer.save_pretrained(str(final))
            dtype = final_dtype(trainer.args)
            tied = {} if is_peft else tied_weight_keys(trainer.accelerator.unwrap_model(model))
            if dtype is not None or tied:  # DeepSpeed's saves store tied weights twice: tie them again
                cast_saved_weights(final, dtype, tied)
        trl_card = Path(output_dir) / "README.md"  # TRL's draft card (written at each checkpoint save)
        if trl_card.is_file() and "generated_from_trainer" in trl_card.read_text(encoding="utf-8", errors="replace"):
            trl_card.unlink()
    trainer.accelerator.wait_for_everyone()
    return final


def write_final_card(final: str | os.PathLike, stage: str, model_path: str | os.PathLike, settings: Any, peft: Any = None,
                     **fields: Any) -> Path:
    """The model card of ``final`` as the training layer knows it (base model, trainer settings, LoRA, ``fields``:
    ``opgrpo.models.model_card.model_card``'s other arguments); the app rewrites it with the run's data and eval numbers."""
    import dataclasses

    from opgrpo.models.model_card import write_model_card

    shown = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
    if isinstance(peft, LoraSettings) and peft.enabled:
        shown["lora"] = {k: v for k, v in dataclasses.asdict(peft).items() if k != "enabled"}
    return write_model_card(final, stage=stage, base_model=str(model_path), settings=shown, **fields)


def final_dtype(args):
    """The dtype ``final/`` is saved in: bfloat16 (float16) when the trainer ran bf16 (fp16) mixed precision, None
    (keep the dtype the weights were loaded and trained in) otherwise."""
    import torch

    if getattr(args, "bf16", False):
        return torch.bfloat16
    if getattr(args, "fp16", False):
        return torch.float16
    return None


def tied_weight_keys(model) -> dict[str, str]:
    """``{target: source}`` of the weights ``model`` ties (``lm_head.weight`` -> ``model.embed_tokens.weight`` when
    ``config.tie_word_embeddings``), as transformers declares them (``all_tied_weights_keys``); {} when none."""
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None and hasattr(model, "get_expanded_tied_weights_keys"):
        tied = model.get_expanded_tied_weights_keys(all_submodels=True)
    return {str(k): str(v) for k, v in (tied or {}).items()}


def cast_saved_weights(folder: str | os.PathLike, dtype=None, tied: dict[str, str] | None = None) -> int:
    """Rewrite the ``*.safetensors`` weights in ``folder`` with every floating-point tensor in ``dtype`` (a torch
    dtype; None = keep) and without the tied copies named in ``tied`` (``{target: source}``, ``tied_weight_keys``);
    record the dtype in ``config.json`` and the shard index's ``total_size`` / ``weight_map``; returns the number of
    files rewritten (files with nothing to change are left alone). ``*.bin`` weights are left as saved.

    Casting the saved files (rather than the live model) leaves the trainer's float32 master weights untouched and
    works whatever wrote them (plain, DeepSpeed ZeRO-3 gathered, LoRA merged). Tied copies: DeepSpeed hands
    ``save_pretrained`` a state dict whose tensors are cloned one by one (ZeRO-2) or gathered (ZeRO-3), so
    transformers no longer sees that ``lm_head.weight`` is ``model.embed_tokens.weight`` and stores both; a target is
    dropped when its source is saved too and equal to it, so the folder is laid out as the base model (a copy that
    differs is kept, with a warning).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    where: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as fh:
            where.update((key, path) for key in fh.keys())  # noqa: SIM118 (safe_open is not iterable)
    drop = {t: s for t, s in (tied or {}).items() if t in where and s in where and t != s}
    if dtype is None and not drop:
        return 0  # nothing to cast, no tied copy saved: no file read
    rewritten, total, dropped = 0, 0, set()
    for path in files:
        changed, tensors = False, {}
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata()
            # cast one tensor at a time: peak memory is about the file in the target dtype
            for key in fh.keys():  # noqa: SIM118 (safe_open is not iterable)
                t = fh.get_tensor(key)
                if key in drop and _same_tensor(t, key, drop[key], where):
                    dropped.add(key)
                    changed = True
                    continue
                if dtype is not None and t.is_floating_point() and t.dtype != dtype:
                    t, changed = t.to(dtype), True
                tensors[key] = t
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        if changed:
            tmp = path.with_name(path.name + ".tmp")
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
            rewritten += 1
        del tensors
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        data.setdefault("metadata", {})["total_size"] = total
        data["weight_map"] = {k: v for k, v in data.get("weight_map", {}).items() if k not in dropped}
        index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    config = folder / "config.json"
    if dtype is not None and config.is_file() and files:
        data = json.loads(config.read_text(encoding="utf-8"))
        name = str(dtype).removeprefix("torch.")
        data["dtype"] = name
        if "torch_dtype" in data:  # configs written by transformers < 5
            data["torch_dtype"] = name
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if dropped:
        logger.info("saved %s with its tied weights tied (dropped the copies %s)", folder, ", ".join(sorted(dropped)))
    if rewritten and dtype is not None:
        logger.info("saved %s in %s (%d weight file(s) rewritten)", folder, str(dtype).removeprefix("torch."),
                    rewritten)
    return rewritten


def _same_tensor(tensor, key: str, source: str, where: dict[str, Path]) -> bool:
    """Whether saved ``key`` equals its tie source ``source`` (read from its file); a warning when it does not."""
    import torch
    from safetensors import safe_open

    with safe_open(str(where[source]), framework="pt") as fh:
        src = fh.get_tensor(source)
    if src.shape == tensor.shape and torch.equal(src, tensor):
        return True
    logger.warning("%s is declared tied to %s but the saved tensors differ: both kept", key, source)
    return False


def train_metrics(train_output, trainer) -> dict[str, Any]:
    """Flatten ``trainer.train()``'s output and the last logged values into one JSON-friendly dict."""
    metrics: dict[str, Any] = dict(train_output.metrics or {})
    metrics["global_step"] = int(trainer.state.global_step)
    metrics["max_steps"] = int(trainer.state.max_steps)
    last: dict[str, Any] = {}
    for entry in trainer.state.log_history:
        if "train_runtime" not in entry:
            last.update(entry)
    for k, v in last.items():
        metrics.setdefault(f"last/{k}", v)
    return metrics
