"""GRPO stage of OP-GRPO on TRL's ``GRPOTrainer``: settings, the paper -> TRL mapping, and one run.

One GRPO run, top to bottom (``run_grpo``):

1. ``build_grpo_dataset(items)``: one row per situation with columns ``prompt`` (the implicit chat prompt),
   ``situation``, ``references`` (the item's "In the perspective of X, ..." lines) and ``item_id``. TRL passes every
   column but ``prompt`` to the reward functions as keyword lists aligned with the completions, so each completion
   is scored against *its own* item's references.
2. Prompts longer than ``max_prompt_length`` tokens (chat template applied) are dropped and counted: TRL 1.16's
   ``GRPOConfig`` has no prompt-length limit of its own.
3. ``grpo_config(settings)`` maps the paper's numbers onto TRL (see the table below).
4. ``GRPOTrainer`` repeats: sample ``prompts_per_step`` prompts, generate ``num_generations`` completions each (the
   generation batch), score every completion with each reward function, combine the components with
   ``reward_weights`` (``rewards/<name>/mean|std`` are logged per component), turn the group-normalised reward into
   advantages, and take ``prompts_per_step / mini_batch_size`` optimizer steps over that batch with the clipped
   token-mean loss plus ``beta`` x KL to the reference model.
5. Checkpoints every ``save_steps`` optimizer steps in ``output_dir``; ``resume=True`` restarts from the last one
   with the same step counter; the final policy + tokenizer go to ``output_dir/final``.

Paper (SPEC "GRPO") -> ``GRPOConfig``:

=====================================  ==========================================================================
group size 10                          ``num_generations=10``
1,024 prompts per step                 ``generation_batch_size = prompts_per_step x num_generations`` (10,240)
mini-batch 256 (prompts, verl style)   ``per_device_train_batch_size x gradient_accumulation_steps x world size
                                       = mini_batch_size x num_generations`` completions per optimizer step, so
                                       one generation batch feeds 1024 / 256 = 4 optimizer steps
lr 1e-6                                ``learning_rate`` (constant schedule, no warmup: verl's default)
KL loss 0.001, low-variance estimator  ``beta=0.001``; TRL's per-token KL is the k3 / "low_var_kl" estimator
                                       exp(r) - r - 1 and enters the loss, not the reward; ``kl_bias_correction``
                                       (TRL ``use_bias_correction_kl``) off, as in verl
entropy bonus 0                        ``entropy_coef=0.0``
clip 0.2                               ``epsilon=0.2`` (``epsilon_high`` defaults to the same value)
token-mean loss                        ``loss_type="bnpo"`` (conf/trainer/paper.yaml): token losses summed and
                                       divided by the number of completion tokens of each local micro-batch, as
                                       verl's token-mean (authors' micro-batch: 40 completions per GPU,
                                       ``per_device_batch_size=40``). ``dapo`` (the dataclass default, TRL's)
                                       divides by the tokens of the whole accumulated mini-batch across
                                       processes, ``grpo`` per sequence, ``dr_grpo`` by a constant
AdamW weight decay 0.01 (verl)         ``weight_decay=0.01`` (conf/trainer/paper.yaml; dataclass default 0.0)
max prompt 512 / response 800          prompt filter (step 2) / ``max_completion_length=800``
rollout temperature 1.0                ``temperature=1.0``, ``top_p=1.0``
15 epochs                              ``num_train_epochs=15``
vLLM generation                        ``use_vllm`` / ``vllm_mode`` (off by default; needs vllm installed)
=====================================  ==========================================================================
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Callable, Iterable, Sequence

from opgrpo.text.prompts import chat_prompt
from opgrpo.training.common import (
    BF16_CHOICES,
    LoraSettings,
    as_peft_config,
    bookkeeping_kwargs,
    extra_problems,
    load_tokenizer,
    model_init_kwargs,
    train_and_save,
    train_metrics,
    world_size,
    write_final_card,
)
from opgrpo.training.distributed import setup_process_group
from opgrpo.utils.checks import Choice, Problems

logger = logging.getLogger(__name__)



class LossType(Choice):
    """``GRPOConfig.loss_type`` values TRL accepts."""

    dapo = "dapo"
    bnpo = "bnpo"
    grpo = "grpo"
    dr_grpo = "dr_grpo"
    cispo = "cispo"
    sapo = "sapo"
    luspo = "luspo"
    vespo = "vespo"


class ScaleRewards(Choice):
    """``GRPOConfig.scale_rewards``: divide the advantage by the group's or the batch's std, or not at all."""

    group = "group"
    batch = "batch"
    none = "none"


class VllmMode(Choice):
    """``GRPOConfig.vllm_mode``: vLLM inside the training processes, or a ``trl vllm-serve`` server."""

    colocate = "colocate"
    server = "server"


LOSS_TYPES = tuple(t.value for t in LossType)
SCALE_REWARDS = tuple(s.value for s in ScaleRewards)
TRL_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
VLLM_MODES = tuple(m.value for m in VllmMode)


@dataclass
class GRPOSettings:
    """GRPO settings. The dataclass defaults are the paper's batch and sampling numbers with TRL's neutral choices
    elsewhere (``loss_type=dapo``, ``weight_decay=0.0``, 4 completions per device, no gradient checkpointing); the
    paper preset (SPEC "GRPO (paper run)": bnpo, weight decay 0.01, the authors' micro-batch) is
    conf/trainer/paper.yaml (``trainer=paper``)."""

    num_generations: int = 10
    """Group size: completions sampled per prompt (GRPOConfig.num_generations)."""
    prompts_per_step: int = 1024
    """Prompts per generation batch, across all processes (generation batch = this x num_generations)."""
    mini_batch_size: int = 256
    """Prompts per optimizer step (verl's ppo_mini_batch_size): each step trains on mini_batch_size x num_generations
    completions, so one generation batch gives prompts_per_step / mini_batch_size optimizer steps."""
    per_device_batch_size: int = 4
    """Completions per forward/backward pass on one process (GRPOConfig.per_device_train_batch_size); gradient
    accumulation = mini_batch_size x num_generations / (this x world size)."""
    lr: float = 1e-6
    """Learning rate (GRPOConfig.learning_rate)."""
    scheduler: str = "constant"
    """Learning-rate schedule (GRPOConfig.lr_scheduler_type); verl's default is constant."""
    warmup_ratio: float = 0.0
    """Share of the steps spent in linear warmup (GRPOConfig.warmup_steps as a ratio in [0, 1))."""
    beta: float = 0.001
    """KL-loss coefficient against the reference policy (k3 / low-variance estimator, in the loss, not the reward)."""
    kl_bias_correction: bool = False
    """Multiply the per-token KL by the importance ratio (TRL use_bias_correction_kl); off as in verl."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient (GRPOConfig.entropy_coef); SPL-style diversity when > 0."""
    epsilon: float = 0.2
    """PPO clip range (GRPOConfig.epsilon)."""
    loss_type: LossType = LossType.dapo
    """Loss aggregation (GRPOConfig.loss_type); ``dapo`` is the token-mean over the accumulated mini-batch."""
    scale_rewards: ScaleRewards = ScaleRewards.group
    """Advantage scaling: ``group`` (divide by the group's std), ``batch`` or ``none``."""
    temperature: float = 1.0
    """Rollout sampling temperature."""
    top_p: float = 1.0
    """Rollout nucleus-sampling threshold."""
    max_prompt_length: int = 512
    """Prompts longer than this many tokens (chat template applied) are dropped before training (-1: keep all)."""
    max_completion_length: int = 800
    """Longest completion in tokens (GRPOConfig.max_completion_length)."""
    num_epochs: float = 15.0
    """Passes over the training prompts (GRPOConfig.num_train_epochs)."""
    num_iterations: int = 1
    """Optimisation passes over each generation batch (GRPO's mu; GRPOConfig.num_iterations)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run ``num_epochs``)."""
    logging_steps: int = 1
    """Log every N optimizer steps."""
    save_steps: int = 50
    """Checkpoint every N optimizer steps (0: no checkpoints, only ``final/``)."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints (-1: keep all)."""
    save_only_model: bool = False
    """Checkpoints hold the weights only, no optimizer/scheduler state (about a third of the disk; a resume from
    one restarts from step 0, since transformers cannot continue without the optimizer state)."""
    clean_checkpoints: bool = False
    """Delete this stage's checkpoints once training ended and ``final/`` is saved (they exist to resume a killed
    run; a finished one has ``final/``): the CPU presets and sweeps use it to keep a run's disk small."""
    eval_steps: int = -1
    """With eval items: evaluate every N optimizer steps (-1: every ``save_steps``)."""
    use_vllm: bool = False
    """Generate with vLLM (needs the vllm package and a GPU)."""
    vllm_mode: VllmMode = VllmMode.colocate
    """vLLM placement: ``colocate`` (inside the training processes) or ``server`` (``trl vllm-serve``)."""
    vllm_gpu_memory_utilization: float = 0.3
    """GPU memory share vLLM may take in colocate mode."""
    vllm_server_base_url: str = ""
    """``vllm_mode=server``: the ``trl vllm-serve`` server's URL (e.g. ``http://gpu-node-7:8000``; "" =
    localhost:8000)."""
    vllm_tensor_parallel_size: int = 1
    """``vllm_mode=colocate``: GPUs each vLLM engine shards the model over."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (``TrainingArguments.max_grad_norm``; 0 = no clipping)."""
    weight_decay: float = 0.0
    """AdamW weight decay (``TrainingArguments.weight_decay``)."""
    extra: Dict[str, Any] = field(default_factory=dict)
    """Any other field of TRL's config by name, passed through as given (e.g. ``{optim: adamw_torch_fused,
    push_to_hub: true}`` in a preset; on the command line ``+trainer.grpo.extra.optim=adamw_torch_fused``, Hydra's
    ``+`` for a new key); each key is checked against the dataclass at start-up."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower)."""
    bf16: str = "auto"
    """bf16 mixed precision: ``auto`` (on where CUDA supports it), ``true`` or ``false``."""
    seed: int = 42
    """Random seed (prompt order, sampling)."""
    log_completions: bool = False
    """TRL's own completion log (GRPOConfig.log_completions): at every log step, the whole generation batch as a
    table (console, W&B) and a parquet file under output_dir/completions (GBs on the paper run). Independent of
    completions.jsonl (``completion_samples_every``)."""
    completion_samples: int = 4
    """Rows per sample in completions.jsonl (also TRL's num_completions_to_print)."""
    completion_samples_every: int = 10
    """Write completion samples (prompt, completion, per-component rewards, advantage) to completions.jsonl every
    N optimizer steps (0: never)."""

    def problems(self, world_size: int = 1) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``trainer.grpo``); see ``check_settings``."""
        return check_settings(self, world_size)


def check_settings(settings: GRPOSettings, world_size: int = 1) -> list[str]:
    """Every setting TRL would reject later (or silently misuse), as ``key: message`` (keys relative to
    ``trainer.grpo``); the batch arithmetic is checked for ``world_size`` processes."""
    s = settings
    p = Problems()
    if s.num_generations < 2:
        p.add("num_generations", f"must be at least 2 (GRPO needs a group), got {s.num_generations}")
    for name in ("prompts_per_step", "mini_batch_size", "per_device_batch_size", "lr", "epsilon", "temperature",
                 "max_completion_length", "num_iterations", "logging_steps", "completion_samples"):
        p.positive(name, getattr(s, name))
    p.non_negative("completion_samples_every", s.completion_samples_every)
    p.non_negative("save_steps", s.save_steps)
    if world_size <= 0:
        p.add("world_size", f"must be positive, got {world_size}")
    elif not p and s.prompts_per_step % s.mini_batch_size:
        p.add("mini_batch_size", f"({s.mini_batch_size}) must divide trainer.grpo.prompts_per_step "
                                 f"({s.prompts_per_step}): each generation batch is split into whole mini-batches")
    elif not p:
        completions_per_update = s.mini_batch_size * s.num_generations
        per_pass = s.per_device_batch_size * world_size
        if completions_per_update % per_pass:
            p.add("num_generations",
                  f"num_generations x mini_batch_size ({s.num_generations} x {s.mini_batch_size} = "
                  f"{completions_per_update} completions per optimizer step) must be divisible by "
                  f"per_device_batch_size x world size ({s.per_device_batch_size} x {world_size} = {per_pass})")
    if not 0.0 < s.top_p <= 1.0:
        p.add("top_p", f"must be in (0, 1], got {s.top_p}")
    p.non_negative("beta", s.beta)
    p.non_negative("entropy_coef", s.entropy_coef)
    p.unit("warmup_ratio", s.warmup_ratio, open_high=True)
    if s.max_prompt_length == 0 or s.max_prompt_length < -1:
        p.add("max_prompt_length", f"must be positive or -1, got {s.max_prompt_length}")
    if s.num_epochs <= 0 and s.max_steps <= 0:
        p.add("num_epochs", "must be positive (or set trainer.grpo.max_steps)")
    p.enum("loss_type", s.loss_type, LossType)
    p.enum("scale_rewards", s.scale_rewards, ScaleRewards)
    p.enum("vllm_mode", s.vllm_mode, VllmMode)
    # bf16 stays a string, not an enum: YAML true/false arrive as "True"/"False"
    p.choice("bf16", str(s.bf16).lower(), BF16_CHOICES)
    p.positive("vllm_tensor_parallel_size", s.vllm_tensor_parallel_size)
    p.non_negative("max_grad_norm", s.max_grad_norm)
    p.non_negative("weight_decay", s.weight_decay)
    if s.extra and not p:
        from trl import GRPOConfig

        p.extend(extra_problems(s.extra, GRPOConfig, grpo_config_kwargs(s, "", world_size=world_size)))
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
    """The ``trl.GRPOConfig`` for ``settings`` on ``world_size`` processes; ValueError naming the key if invalid.

    TRL derives ``steps_per_generation`` (micro-batches per generation batch per process) from the generation
    batch and the world size it actually runs on, so pass the real world size (``run_grpo`` does).
    ``deepspeed``: DeepSpeed config, a JSON path or a dict ("" = none); ``model_kwargs``: TRL ``model_init_kwargs``;
    ``aggregation``: TRL ``multi_objective_aggregation`` (see ``opgrpo.reward.grpo_reward_setup``).
    """
    from trl import GRPOConfig

    s = settings
    problems = Problems("grpo.")
    problems.extend_from("", check_settings(s, world_size))
    if aggregation not in TRL_AGGREGATIONS:
        problems.add("aggregation", f"expected one of {', '.join(TRL_AGGREGATIONS)} (got {aggregation!r})")
    problems.raise_if_any()
    kwargs = grpo_config_kwargs(s, output_dir, world_size=world_size, report_to=report_to,
                                reward_weights=reward_weights, aggregation=aggregation, evaluate=evaluate,
                                deepspeed=deepspeed, model_kwargs=model_kwargs)
    problems.extend_from("", extra_problems(s.extra, GRPOConfig, kwargs))
    problems.raise_if_any()
    return GRPOConfig(**kwargs, **dict(s.extra))


def grpo_config_kwargs(settings: GRPOSettings, output_dir: str | os.PathLike, *, world_size: int = 1,
                       report_to: Sequence[str] = (), reward_weights: Sequence[float] | None = None,
                       aggregation: str = "sum_then_normalize", evaluate: bool = False, deepspeed: str | dict = "",
                       model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``trl.GRPOConfig`` fields opgrpo sets from ``settings`` (``grpo_config`` adds ``settings.extra``)."""
    s = settings
    accumulation = s.mini_batch_size * s.num_generations // max(1, s.per_device_batch_size * world_size)
    eval_kwargs: dict[str, Any] = {}
    if evaluate:
        eval_kwargs = dict(
            eval_strategy="steps",
            eval_steps=s.eval_steps if s.eval_steps > 0 else s.save_steps or 50,
            per_device_eval_batch_size=s.num_generations,  # one whole group per device batch
        )
    return dict(
        output_dir=str(output_dir),
        # batch geometry
        num_generations=s.num_generations,
        generation_batch_size=s.prompts_per_step * s.num_generations,
        per_device_train_batch_size=s.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        num_iterations=s.num_iterations,
        # optimisation
        learning_rate=s.lr,
        lr_scheduler_type=s.scheduler,
        warmup_steps=s.warmup_ratio,
        beta=s.beta,
        use_bias_correction_kl=s.kl_bias_correction,
        entropy_coef=s.entropy_coef,
        epsilon=s.epsilon,
        epsilon_high=s.epsilon,  # symmetric clip, as in the paper
        loss_type=str(s.loss_type),  # TRL gets plain strings, not the enum members
        scale_rewards=str(s.scale_rewards),
        multi_objective_aggregation=aggregation,
        reward_weights=None if reward_weights is None else [float(w) for w in reward_weights],
        num_train_epochs=s.num_epochs,
        max_steps=s.max_steps,
        # generation
        temperature=s.temperature,
        top_p=s.top_p,
        max_completion_length=s.max_completion_length,
        use_vllm=s.use_vllm,
        vllm_mode=str(s.vllm_mode),
        vllm_gpu_memory_utilization=s.vllm_gpu_memory_utilization,
        vllm_server_base_url=s.vllm_server_base_url or None,
        vllm_tensor_parallel_size=s.vllm_tensor_parallel_size,
        # data: keep situation/references/item_id for the reward functions
        remove_unused_columns=False,
        # bookkeeping
        log_completions=s.log_completions,
        num_completions_to_print=s.completion_samples,
        **bookkeeping_kwargs(s, "grpo", report_to=report_to, deepspeed=deepspeed, model_kwargs=model_kwargs),
        **eval_kwargs,
    )


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
    return (num_prompts // s.prompts_per_step) * (s.prompts_per_step // s.mini_batch_size) * s.num_iterations


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

    output, final = train_and_save(trainer, output_dir, resume, clean=settings.clean_checkpoints)
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
