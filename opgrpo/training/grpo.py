"""GRPO stage of OP-GRPO on TRL's ``GRPOTrainer``: opgrpo's settings, TRL's under TRL's names, one run.

One GRPO run, top to bottom (``run_grpo``):

1. ``build_grpo_dataset(items)``: one row per situation with columns ``prompt`` (the implicit chat prompt),
   ``situation``, ``references`` (the item's "In the perspective of X, ..." lines) and ``item_id``. TRL passes every
   column but ``prompt`` to the reward functions as keyword lists aligned with the completions, so each completion
   is scored against *its own* item's references.
2. Prompts longer than ``max_prompt_length`` tokens (chat template applied) are dropped and counted: TRL 1.16's
   ``GRPOConfig`` has no prompt-length limit of its own.
3. ``grpo_config(settings)``: ``trl.GRPOConfig(**settings.trl, **what opgrpo derives)``: the paper's numbers are
   TRL fields by TRL's name in conf/trainer/paper.yaml (``trainer.grpo.trl``), opgrpo derives the rest (table below).
4. ``GRPOTrainer`` repeats: sample ``prompts_per_step`` prompts, generate ``num_generations`` completions each (the
   generation batch), score every completion with each reward function, combine the components with
   ``reward_weights`` (``rewards/<name>/mean|std`` are logged per component), turn the group-normalised reward into
   advantages, and take ``prompts_per_step / mini_batch_size`` optimizer steps over that batch with the clipped
   token-mean loss plus ``beta`` x KL to the reference model.
5. Checkpoints every ``trl.save_steps`` optimizer steps in ``output_dir``; ``resume=True`` restarts from the last one
   with the same step counter; the final policy + tokenizer go to ``output_dir/final``. SIGTERM/SIGUSR1 save a
   checkpoint at the next step and raise ``Preempted`` (opgrpo.training.preempt) instead.

Paper (SPEC "GRPO") -> ``GRPOConfig`` (``trl.*``: conf/trainer/paper.yaml, ``trainer.grpo.trl``):

=====================================  ==========================================================================
group size 10                          ``trl.num_generations=10``
1,024 prompts per step                 derived ``generation_batch_size = prompts_per_step x num_generations``
mini-batch 256 (prompts, verl style)   derived ``gradient_accumulation_steps``, so that ``per_device_train_batch_size
                                       x gradient_accumulation_steps x world size = mini_batch_size x
                                       num_generations`` completions per optimizer step: one generation batch
                                       feeds 1024 / 256 = 4 optimizer steps
lr 1e-6                                ``trl.learning_rate``, ``trl.lr_scheduler_type=constant``, no warmup (verl)
KL loss 0.001, low-variance estimator  ``trl.beta=0.001``; TRL's per-token KL is the k3 / "low_var_kl" estimator
                                       exp(r) - r - 1 and enters the loss, not the reward;
                                       ``trl.use_bias_correction_kl=false``, as in verl
entropy bonus 0                        ``trl.entropy_coef`` (TRL's default 0.0)
clip 0.2                               ``trl.epsilon=0.2`` (TRL's ``epsilon_high`` defaults to the same value)
token-mean loss                        ``trl.loss_type=bnpo``: token losses summed and divided by the number of
                                       completion tokens of each local micro-batch, as verl's token-mean
                                       (authors' micro-batch: 40 completions per GPU,
                                       ``trl.per_device_train_batch_size=40``). ``dapo`` (TRL's default) divides
                                       by the tokens of the whole accumulated mini-batch across processes,
                                       ``grpo`` per sequence, ``dr_grpo`` by a constant
AdamW weight decay 0.01 (verl)         ``trl.weight_decay=0.01``
max prompt 512 / response 800          prompt filter (``max_prompt_length``, step 2) / ``trl.max_completion_length``
rollout temperature 1.0                ``trl.temperature`` / ``trl.top_p`` (TRL's defaults, 1.0)
15 epochs                              ``trl.num_train_epochs=15``
vLLM generation                        ``trl.use_vllm`` / ``trl.vllm_mode`` (off by default; needs vllm installed)
=====================================  ==========================================================================

opgrpo derives ``output_dir``, ``generation_batch_size``, ``gradient_accumulation_steps``, ``reward_weights`` and
``multi_objective_aggregation`` (the reward), ``num_completions_to_print`` (``completion_samples``), ``bf16`` (its
"auto"), ``report_to``, ``deepspeed``, ``model_init_kwargs`` and, with eval items, the eval batch (``DERIVED``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterable, Sequence

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
from opgrpo.utils.checks import ConfigProblemsError, Problems

logger = logging.getLogger(__name__)


# string fields TRL checks only once training runs (the loss, the advantage), so opgrpo names them at start-up
TRL_CHOICES = {
    "loss_type": ("dapo", "bnpo", "grpo", "dr_grpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none"),
    "vllm_mode": ("colocate", "server"),
}
TRL_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
# GRPOConfig fields opgrpo derives (grpo_config); ``trainer.grpo.trl`` may not set them
DERIVED = ("output_dir", "generation_batch_size", "gradient_accumulation_steps", "reward_weights",
           "multi_objective_aggregation", "num_completions_to_print", "eval_strategy", "per_device_eval_batch_size",
           "bf16", "report_to", "deepspeed", "model_init_kwargs")


@dataclass
class GRPOSettings:
    """GRPO settings: what opgrpo adds to TRL (the verl-style batch: prompts per step and mini-batch, the prompt-length
    filter, completion samples, checkpoint cleaning, bf16 "auto"), and ``trl``: any ``trl.GRPOConfig`` field by TRL's
    own name, passed through unchanged (``trainer.grpo.trl.beta=0.01``; a key the preset does not list takes Hydra's
    ``+``: ``+trainer.grpo.trl.optim=adamw_torch_fused``). A field not in ``trl`` keeps TRL's default. The paper's
    values (SPEC "GRPO (paper run)") are conf/trainer/paper.yaml (``trainer=paper``, the default)."""

    trl_config: ClassVar[str] = "GRPOConfig"

    prompts_per_step: int = 1024
    """Prompts per generation batch, across all processes (GRPOConfig.generation_batch_size = this x
    trl.num_generations)."""
    mini_batch_size: int = 256
    """Prompts per optimizer step (verl's ppo_mini_batch_size): each step trains on mini_batch_size x num_generations
    completions, so one generation batch gives prompts_per_step / mini_batch_size optimizer steps; gradient
    accumulation = mini_batch_size x num_generations / (trl.per_device_train_batch_size x world size)."""
    max_prompt_length: int = 512
    """Prompts longer than this many tokens (chat template applied) are dropped before training (-1: keep all)."""
    clean_checkpoints: bool = False
    """Delete this stage's checkpoints once training ended and ``final/`` is saved (they exist to resume a killed
    run; a finished one has ``final/``): the CPU presets and sweeps use it to keep a run's disk small."""
    bf16: str = "auto"
    """bf16 mixed precision: ``auto`` (on where CUDA supports it), ``true`` or ``false`` (GRPOConfig.bf16)."""
    completion_samples: int = 4
    """Rows per sample in completions.jsonl (also TRL's num_completions_to_print)."""
    completion_samples_every: int = 10
    """Write completion samples (prompt, completion, per-component rewards, advantage) to completions.jsonl every
    N optimizer steps (0: never). TRL's own completion log (a table and a parquet of the whole generation batch: GBs
    on the paper run) is ``trl.log_completions``."""
    trl: Dict[str, Any] = field(default_factory=dict)
    """``trl.GRPOConfig`` fields by TRL's name, passed through as given (``{learning_rate: 1.0e-6, beta: 0.001}`` in a
    preset; ``trainer.grpo.trl.beta=0.01`` on the command line, ``+trainer.grpo.trl.optim=adamw_torch_fused`` for a
    key the preset does not list). Each key is checked against GRPOConfig at start-up; TRL checks the values."""

    def problems(self, world_size: int = 1) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``trainer.grpo``), the batch arithmetic for
        ``world_size`` processes."""
        p = Problems()
        p.extend_from("", trl_problems(self, DERIVED))
        for key, choices in TRL_CHOICES.items():
            if key in self.trl:
                p.choice(f"trl.{key}", str(self.trl[key]), choices)
        group, per_device = trl_value(self, "num_generations"), trl_value(self, "per_device_train_batch_size")
        for name, value in (("prompts_per_step", self.prompts_per_step), ("mini_batch_size", self.mini_batch_size),
                            ("trl.num_generations", group), ("trl.per_device_train_batch_size", per_device),
                            ("completion_samples", self.completion_samples)):
            p.positive(name, value)
        p.non_negative("completion_samples_every", self.completion_samples_every)
        if world_size <= 0:
            p.add("world_size", f"must be positive, got {world_size}")
        elif not p and self.prompts_per_step % self.mini_batch_size:
            p.add("mini_batch_size", f"({self.mini_batch_size}) must divide trainer.grpo.prompts_per_step "
                                     f"({self.prompts_per_step}): each generation batch is split into whole mini-batches")
        elif not p and (self.mini_batch_size * group) % (per_device * world_size):
            p.add("trl.num_generations",
                  f"num_generations x mini_batch_size ({group} x {self.mini_batch_size} = "
                  f"{group * self.mini_batch_size} completions per optimizer step) must be divisible by "
                  f"per_device_train_batch_size x world size ({per_device} x {world_size} = {per_device * world_size})")
        if self.max_prompt_length == 0 or self.max_prompt_length < -1:
            p.add("max_prompt_length", f"must be positive or -1, got {self.max_prompt_length}")
        # bf16 stays a string, not an enum: YAML true/false arrive as "True"/"False"
        p.choice("bf16", str(self.bf16).lower(), BF16_CHOICES)
        return list(p)


def grpo_config(
    settings: GRPOSettings,
    output_dir: str | os.PathLike,
    *,
    world_size: int = 1,
    report_to: Sequence[str] = (),
    reward_weights: Sequence[float] | None = None,
    aggregation: str = "sum_then_normalize",
    evaluate: bool = False,
    deepspeed: str | dict = "",
    model_kwargs: dict[str, Any] | None = None,
):
    """``trl.GRPOConfig(**settings.trl, **what opgrpo derives)`` on ``world_size`` processes; ValueError naming the
    key if a setting is invalid.

    TRL derives ``steps_per_generation`` (micro-batches per generation batch per process) from the generation
    batch and the world size it actually runs on, so pass the real world size (``run_grpo`` does).
    ``deepspeed``: DeepSpeed config, a JSON path or a dict ("" = none); ``model_kwargs``: TRL ``model_init_kwargs``;
    ``aggregation``: TRL ``multi_objective_aggregation`` (see ``opgrpo.reward.grpo_reward_setup``); ``evaluate``:
    evaluate every ``trl.eval_steps`` (default: every ``trl.save_steps``, 50 without checkpoints), one group per
    device batch.
    """
    if aggregation not in TRL_AGGREGATIONS:
        raise ConfigProblemsError([f"grpo.aggregation: expected one of {', '.join(TRL_AGGREGATIONS)} "
                                   f"(got {aggregation!r})"])
    s = settings
    group = trl_value(s, "num_generations")
    derived: dict[str, Any] = dict(
        output_dir=str(output_dir),
        generation_batch_size=s.prompts_per_step * group,
        gradient_accumulation_steps=s.mini_batch_size * group // max(1, trl_value(s, "per_device_train_batch_size")
                                                                      * world_size),
        multi_objective_aggregation=aggregation,
        reward_weights=None if reward_weights is None else [float(w) for w in reward_weights],
        num_completions_to_print=s.completion_samples,
        **bookkeeping_kwargs(s, "grpo", report_to=report_to, deepspeed=deepspeed, model_kwargs=model_kwargs),
    )
    if evaluate:
        saving = trl_value(s, "save_strategy") != "no"
        derived.update(eval_strategy="steps", per_device_eval_batch_size=group)  # one whole group per device batch
        if "eval_steps" not in s.trl:
            derived["eval_steps"] = trl_value(s, "save_steps") if saving else 50
    return build_trl_config(s, "grpo", world_size, derived)


def build_grpo_dataset(items: Iterable):
    """A ``datasets.Dataset`` with columns prompt (implicit chat prompt), situation, references, item_id."""
    from datasets import Dataset

    rows: dict[str, list] = {"prompt": [], "situation": [], "references": [], "item_id": []}
    for item in items:
        rows["prompt"].append(chat_prompt(item.situation, "implicit"))
        rows["situation"].append(item.situation)
        rows["references"].append(list(item.references))
        rows["item_id"].append(str(item.id))
    if not rows["prompt"]:
        raise ValueError("no GRPO training items")
    return Dataset.from_dict(rows)


def drop_long_prompts(dataset, tokenizer, max_prompt_length: int):
    """(dataset without prompts longer than ``max_prompt_length`` tokens after the chat template, number dropped)."""
    if max_prompt_length < 0:
        return dataset, 0

    def length(row) -> dict:
        ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding in newer transformers
            ids = ids["input_ids"]
        return {"_prompt_tokens": len(ids)}

    lengths = dataset.map(length)["_prompt_tokens"]
    keep = [i for i, n in enumerate(lengths) if n <= max_prompt_length]
    dropped = len(lengths) - len(keep)
    if dropped:
        logger.warning("dropped %d of %d prompts longer than %d tokens", dropped, len(lengths), max_prompt_length)
    return (dataset.select(keep) if dropped else dataset), dropped


def optimizer_steps_per_epoch(num_prompts: int, settings: GRPOSettings) -> int:
    """Optimizer steps one pass over ``num_prompts`` prompts takes (TRL drops the last partial generation batch)."""
    s = settings
    return (num_prompts // s.prompts_per_step) * (s.prompts_per_step // s.mini_batch_size) * trl_value(s, "num_iterations")


def run_grpo(
    model_path: str | os.PathLike,
    train_items: Sequence,
    reward_funcs: Sequence[Callable],
    reward_weights: Sequence[float],
    settings: GRPOSettings,
    output_dir: str | os.PathLike,
    *,
    reward_aggregation: str = "sum_then_normalize",
    peft: LoraSettings | None = None,
    report_to: Sequence[str] = (),
    resume: bool = False,
    callbacks: Sequence = (),
    eval_items: Sequence | None = None,
    deepspeed: str | dict = "",
    chat_template: str = "",
    sample_every: int = -1,
    dtype: str = "",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Train ``model_path`` with GRPO on ``train_items``; return the run's metrics (see module docstring).

    ``reward_funcs`` are TRL reward callables ``(prompts, completions, **columns) -> list[float]`` (named by their
    ``__name__``; each is logged as ``rewards/<name>/mean|std``), ``reward_weights`` one weight per function,
    ``reward_aggregation`` TRL's ``multi_objective_aggregation`` (``opgrpo.reward.grpo_reward_setup`` gives all three).
    ``peft``: LoraSettings or a peft config (None: full fine-tuning). ``deepspeed``: DeepSpeed config, a JSON path or a dict ("" = off).
    ``chat_template``: Jinja string or .jinja path overriding the tokenizer's ("" = its own). ``sample_every``:
    overrides ``settings.completion_samples_every`` (the completions.jsonl writer; 0 = off) when > 0. ``dtype``: weights dtype for loading ("" = TRL's
    float32). ``resume``: continue from the last checkpoint in ``output_dir`` (fresh start when there is none).
    """
    from trl import GRPOTrainer

    from opgrpo.training.callbacks import (
        CompletionSamplesCallback,
        MetricsJsonlCallback,
    )
    from opgrpo.training.reward_nan import RewardNanCallback, count_nan

    if len(reward_funcs) == 0:
        raise ValueError("run_grpo needs at least one reward function")
    if len(reward_weights) != len(reward_funcs):
        raise ValueError(
            f"reward_weights has {len(reward_weights)} entries for {len(reward_funcs)} reward functions"
        )
    output_dir = Path(output_dir)
    setup_process_group(deepspeed=bool(deepspeed))  # before the trainer config: it must reuse this group
    world = world_size()
    args = grpo_config(
        settings, output_dir, world_size=world, report_to=report_to, reward_weights=reward_weights,
        aggregation=reward_aggregation, evaluate=bool(eval_items), deepspeed=deepspeed, model_kwargs=model_init_kwargs(dtype, trust_remote_code),
    )

    tokenizer = load_tokenizer(model_path, chat_template, trust_remote_code)
    train_dataset, dropped = drop_long_prompts(build_grpo_dataset(train_items), tokenizer, settings.max_prompt_length)
    if len(train_dataset) < settings.prompts_per_step:
        raise ValueError(
            f"grpo.prompts_per_step ({settings.prompts_per_step}) is larger than the {len(train_dataset)} usable "
            "training prompts: no full generation batch can be drawn"
        )
    eval_dataset = None
    if eval_items:
        eval_dataset, _ = drop_long_prompts(build_grpo_dataset(eval_items), tokenizer, settings.max_prompt_length)

    reward_funcs = count_nan(reward_funcs)  # rewards/<name>/nan_share; a WARNING when one is NaN for a whole step
    own_callbacks = [RewardNanCallback(reward_funcs), MetricsJsonlCallback(output_dir / "metrics.jsonl")]
    samples = None
    every = sample_every if sample_every > 0 else settings.completion_samples_every
    if every > 0:  # the project's completions.jsonl; TRL's own table/parquet is settings.log_completions
        samples = CompletionSamplesCallback(output_dir / "completions.jsonl", every, settings.completion_samples)
        own_callbacks.append(samples)
    trainer = GRPOTrainer(
        model=str(model_path),
        reward_funcs=list(reward_funcs),
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=as_peft_config(peft),
        callbacks=[*own_callbacks, *callbacks],
    )
    if samples is not None:
        samples.bind(trainer)
    for func in reward_funcs:  # reward functions that score with the policy (SPL reward mode) need the trainer
        if hasattr(func, "bind"):
            func.bind(trainer)

    output, final = train_and_save(trainer, output_dir, resume, clean=settings.clean_checkpoints, stage="grpo")
    if trainer.accelerator.is_main_process:  # the stage rewrites it with the run's data, reward and eval numbers
        names = [getattr(f, "__name__", f"reward_{i}") for i, f in enumerate(reward_funcs)]
        write_final_card(final, "grpo", model_path, settings, peft, train_examples=len(train_dataset),
                         reward={"TRL reward functions (weight)": dict(zip(names, map(float, reward_weights))),
                                 "aggregation": reward_aggregation})
    metrics = train_metrics(output, trainer)
    metrics.update(
        num_prompts=len(train_dataset),
        dropped_long_prompts=dropped,
        steps_per_epoch=optimizer_steps_per_epoch(len(train_dataset), settings),
        world_size=trainer.accelerator.num_processes,  # the process group the trainer really used
        generation_batch_size=args.generation_batch_size,
        steps_per_generation=args.steps_per_generation,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        final_dir=str(final),
        settings=asdict(settings),
    )
    return metrics
