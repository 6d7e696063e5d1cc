"""SFT warm start: teach the policy the OP-GRPO response layout before RL.

Each training item becomes one conversational prompt/completion pair: the prompt is the *implicit* chat prompt
(it never asks for perspectives), the completion is the item's reference perspectives in the target layout::

    <core perspectives>
    In the perspective of A, ...
    In the perspective of B, ...
    </core perspectives>

    <summary>
    <short text naming every perspective>
    </summary>

The summary names every perspective so that the format reward's summary penalty is 0 on SFT targets. TRL's
``SFTTrainer`` computes the loss on the completion tokens only (prompt/completion datasets). Paper preset
(conf/trainer/paper.yaml, ``trainer.sft.trl`` in TRL's names): 1 epoch, lr 1e-5 cosine, 10% warmup, global batch
256, max length 1300.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterable, Sequence

from opgrpo.text.prompts import chat_prompt
from opgrpo.training.common import (
    BF16_CHOICES,
    LoraSettings,
    as_peft_config,
    bookkeeping_kwargs,
    build_trl_config,
    load_tokenizer,
    model_init_kwargs,
    train_and_save,
    train_metrics,
    trl_problems,
    trl_value,
    world_size,
    write_final_card,
)
from opgrpo.training.distributed import setup_process_group
from opgrpo.utils.checks import Problems

logger = logging.getLogger(__name__)

SUMMARY_TEMPLATE = (
    "This situation has to be weighed from several perspectives: {names}. "
    "Each of them captures something that matters here, and a balanced judgement takes all of them into account."
)


def _names(item) -> list[str]:
    return [p.name.strip() for p in item.perspectives if p.name and p.name.strip()]


def _join_names(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def sft_target(item, summary: str = "template") -> str:
    """The assistant message an SFT example teaches for ``item`` (the SPEC target layout).

    ``summary="template"`` uses ``SUMMARY_TEMPLATE``; any other string containing ``{names}`` is used as the
    summary template instead (``{names}`` = the perspective names joined as "A, B and C").
    """
    if summary == "template":
        template = SUMMARY_TEMPLATE
    elif "{names}" in summary:
        template = summary
    else:
        raise ValueError(f"summary must be 'template' or a format string containing '{{names}}', got {summary!r}")
    lines = [line.strip() for line in item.references if line and line.strip()]
    if not lines:
        raise ValueError(f"item {getattr(item, 'id', '?')!r} has no reference perspectives to build an SFT target")
    names = _names(item)
    text = template.format(names=_join_names(names)).strip()
    core = "\n".join(lines)
    return f"<core perspectives>\n{core}\n</core perspectives>\n\n<summary>\n{text}\n</summary>"


def build_sft_dataset(items: Iterable, summary: str = "template"):
    """A ``datasets.Dataset`` in TRL's conversational prompt/completion form (loss on the completion only).

    Columns: ``prompt`` (implicit chat prompt messages), ``completion`` ([assistant message]). Items without
    references are skipped (logged).
    """
    from datasets import Dataset

    prompts, completions, skipped = [], [], 0
    for item in items:
        target = getattr(item, "target", None)  # an SFT-file example (benchmark.sft_file): its response as written
        if target is None and not any(line.strip() for line in item.references):
            skipped += 1
            continue
        prompts.append(chat_prompt(item.situation, "implicit"))
        completions.append([{"role": "assistant",
                             "content": target if target is not None else sft_target(item, summary)}])
    if skipped:
        logger.warning("SFT: skipped %d items without reference perspectives", skipped)
    if not prompts:
        raise ValueError("no SFT examples: every item lacks reference perspectives")
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


# SFTConfig fields opgrpo derives (sft_config); ``trainer.sft.trl`` may not set them
DERIVED = ("output_dir", "gradient_accumulation_steps", "completion_only_loss", "bf16", "report_to", "deepspeed",
           "model_init_kwargs")


@dataclass
class SFTSettings:
    """SFT warm-start settings: what opgrpo adds to TRL (the global batch, the summary of the targets, checkpoint
    cleaning, bf16 "auto"), and ``trl``: any ``trl.SFTConfig`` field by TRL's own name, passed through unchanged
    (``trainer.sft.trl.learning_rate=2e-5``; a key the preset does not list takes Hydra's ``+``:
    ``+trainer.sft.trl.optim=adamw_torch_fused``). A field not in ``trl`` keeps TRL's default. The paper's schedule
    (1 epoch, lr 1e-5 cosine, 10% warmup, length 1300) and ``run_sft.sh``'s optimizer (weight decay 0.01, beta2 0.95,
    clipping 1.0) are conf/trainer/paper.yaml (``trainer=paper``, the default)."""

    trl_config: ClassVar[str] = "SFTConfig"

    global_batch_size: int = 256
    """Examples per optimizer step across all processes; gradient accumulation = this / (trl.per_device_train_batch_size
    x world size)."""
    clean_checkpoints: bool = False
    """Delete this stage's checkpoints once training ended and ``final/`` is saved (they exist to resume a killed
    run; a finished one has ``final/``): the CPU presets and sweeps use it to keep a run's disk small."""
    bf16: str = "auto"
    """bf16 mixed precision: ``auto`` (on where CUDA supports it), ``true`` or ``false`` (SFTConfig.bf16)."""
    summary: str = "template"
    """Summary text of the SFT targets: ``template`` or a format string with ``{names}``."""
    trl: Dict[str, Any] = field(default_factory=dict)
    """``trl.SFTConfig`` fields by TRL's name, passed through as given (``{learning_rate: 1.0e-5, max_length: 1300}`` in
    a preset; ``trainer.sft.trl.learning_rate=2e-5`` on the command line, ``+trainer.sft.trl.optim=adamw_torch_fused``
    for a key the preset does not list). Each key is checked against SFTConfig at start-up; TRL checks the values."""

    def problems(self, world_size: int = 1) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``trainer.sft``), batch arithmetic for
        ``world_size`` processes."""
        p = Problems()
        p.extend_from("", trl_problems(self, DERIVED))
        per_device = trl_value(self, "per_device_train_batch_size")
        p.positive("trl.per_device_train_batch_size", per_device)
        per_step = per_device * world_size
        if self.global_batch_size <= 0 or (per_step > 0 and self.global_batch_size % per_step):
            p.add("global_batch_size", f"({self.global_batch_size}) must be a positive multiple of "
                                       f"per_device_train_batch_size x world size ({per_device} x {world_size} "
                                       f"= {per_step})")
        # bf16 stays a string, not an enum: YAML true/false arrive as "True"/"False"
        p.choice("bf16", str(self.bf16).lower(), BF16_CHOICES)
        return list(p)


def sft_config(
    settings: SFTSettings,
    output_dir: str | os.PathLike,
    *,
    world_size: int = 1,
    report_to: Sequence[str] = (),
    deepspeed: str | dict = "",
    model_kwargs: dict[str, Any] | None = None,
):
    """``trl.SFTConfig(**settings.trl, **what opgrpo derives)``; raises ValueError naming the offending key.

    ``deepspeed``: DeepSpeed config, a JSON path or a dict ("" = none); ``model_kwargs``: TRL ``model_init_kwargs``.
    """
    s = settings
    per_step = max(1, trl_value(s, "per_device_train_batch_size") * world_size)
    derived = dict(
        output_dir=str(output_dir),
        gradient_accumulation_steps=s.global_batch_size // per_step,
        completion_only_loss=True,
        **bookkeeping_kwargs(s, "sft", report_to=report_to, deepspeed=deepspeed, model_kwargs=model_kwargs),
    )
    return build_trl_config(s, "sft", world_size, derived)


def run_sft(
    model_path: str | os.PathLike,
    train_items: Sequence,
    settings: SFTSettings,
    output_dir: str | os.PathLike,
    *,
    peft: LoraSettings | None = None,
    report_to: Sequence[str] = (),
    resume: bool = False,
    callbacks: Sequence = (),
    deepspeed: str | dict = "",
    chat_template: str = "",
    dtype: str = "",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``model_path`` on the SFT targets of ``train_items``; save to ``output_dir/final``; return metrics.

    ``peft``: LoraSettings or a peft config (None: full fine-tuning). ``deepspeed``: DeepSpeed config, a JSON path or a dict ("" = off).
    ``chat_template``: Jinja string or .jinja path overriding the tokenizer's ("" = its own). ``dtype``: weights
    dtype for loading ("" = TRL's float32). ``resume``: continue from the last checkpoint in ``output_dir``.
    """
    from trl import SFTTrainer

    from opgrpo.training.callbacks import MetricsJsonlCallback

    output_dir = Path(output_dir)
    setup_process_group(deepspeed=bool(deepspeed))  # before the trainer config: it must reuse this group
    args = sft_config(
        settings, output_dir, world_size=world_size(), report_to=report_to, deepspeed=deepspeed,
        model_kwargs=model_init_kwargs(dtype, trust_remote_code),
    )
    tokenizer = load_tokenizer(model_path, chat_template, trust_remote_code)
    dataset = build_sft_dataset(train_items, settings.summary)
    trainer = SFTTrainer(
        model=str(model_path),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=as_peft_config(peft),
        callbacks=[MetricsJsonlCallback(output_dir / "metrics.jsonl"), *callbacks],
    )
    output, final = train_and_save(trainer, output_dir, resume, clean=settings.clean_checkpoints, stage="sft")
    if trainer.accelerator.is_main_process:  # the stage rewrites it with the run's data, reward and eval numbers
        write_final_card(final, "sft", model_path, settings, peft, train_examples=len(dataset))
    metrics = train_metrics(output, trainer)
    metrics.update(num_examples=len(dataset), final_dir=str(final), settings=asdict(settings),
                   world_size=trainer.accelerator.num_processes)  # the process group the trainer really used
    return metrics
