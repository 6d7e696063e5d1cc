"""What the SFT warm start (`opgrpo.training.sft`) and GRPO (`opgrpo.training.grpo`) stages share (public names: `opgrpo.training`).

Both stages are thin layers over TRL: plain dataclass settings (OmegaConf-friendly, so the Hydra layer can
register them) are turned into a ``trl.SFTConfig`` / ``trl.GRPOConfig``, the trainer is built from a model
*path* (TRL loads the model in float32 and trains with bf16 autocast where the hardware has it), and every run
directory ends up with the same layout::

    <output_dir>/checkpoint-<step>/   TRL/transformers checkpoints (resume from the last one)
    <output_dir>/metrics.jsonl        one JSON line per trainer log (opgrpo.training.callbacks.MetricsJsonlCallback)
    <output_dir>/final/               final model + tokenizer (LoRA runs: merged weights)
    <output_dir>/final_adapter/       LoRA runs only: the adapter alone

This module imports TRL/transformers/peft/accelerate, never Hydra.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opgrpo.utils.checks import Problems

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


def bookkeeping_kwargs(settings: Any, section: str, *, report_to=(), deepspeed: str = "",
                       model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer-config fields SFT and GRPO share: logging, checkpoints, precision, seed, logging backends,
    DeepSpeed and model loading. ``settings`` has the fields both SFTSettings and GRPOSettings declare."""
    s = settings
    return dict(
        logging_steps=s.logging_steps,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=None if s.save_total_limit < 0 else s.save_total_limit,
        activation_checkpointing=s.gradient_checkpointing,
        bf16=resolve_bf16(s.bf16, f"{section}.bf16"),
        seed=s.seed,
        report_to=list(report_to) or "none",
        deepspeed=deepspeed or None,
        model_init_kwargs=model_kwargs or None,
    )


def world_size() -> int:
    """Number of training processes, from the launcher's environment (accelerate, torchrun, deepspeed set WORLD_SIZE).

    Read from the environment rather than from accelerate's PartialState: creating that state here, before the
    trainer's arguments do, would fix its settings (CPU/DeepSpeed) too early.
    """
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """Path of the highest ``checkpoint-<step>`` folder in ``output_dir``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(output_dir).is_dir():
        return None
    return get_last_checkpoint(str(output_dir))


def resume_checkpoint(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The checkpoint ``trainer.train`` should resume from; ``resume`` with no checkpoint starts fresh.

    Starting fresh (rather than failing) keeps a requeued cluster job that died before its first save working.
    """
    if not resume:
        return None
    ckpt = last_checkpoint(output_dir)
    if ckpt is None:
        logger.warning("resume requested but no checkpoint in %s; starting from step 0", output_dir)
    else:
        logger.info("resuming from %s", ckpt)
    return ckpt


def save_final(trainer, output_dir: str | os.PathLike) -> Path:
    """Save the trained policy + tokenizer to ``output_dir/final`` (LoRA: merged weights, adapter in ``final_adapter``).

    Every process must call this (DeepSpeed ZeRO-3 gathers the weights collectively); only the main process writes.
    """
    final = Path(output_dir) / "final"
    model = trainer.model
    is_peft = hasattr(model, "peft_config")
    if is_peft:
        trainer.save_model(str(Path(output_dir) / "final_adapter"))
    else:
        trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        tokenizer = trainer.processing_class
        if is_peft:
            unwrapped = trainer.accelerator.unwrap_model(model)
            merged = unwrapped.merge_and_unload() if hasattr(unwrapped, "merge_and_unload") else unwrapped
            merged.save_pretrained(str(final))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(final))
    trainer.accelerator.wait_for_everyone()
    return final


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
