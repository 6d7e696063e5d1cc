"""Start-up validation of a composed config: every mistake found before any model loads, each naming its key.

`validate(cfg)` collects all problems and raises one `ConfigError` listing them as ``key: problem``.
Checks that belong to a lower layer (reward rules, GRPO batch arithmetic) call that layer's own
validation and prefix the key with the config section.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from opgrpo.config import STAGES


class ConfigError(ValueError):
    """A configuration mistake; the message names the offending key(s)."""


def _check_model_ref(key: str, ref: str, problems: list[str]) -> None:
    """A model reference is an existing local directory, or a hub id (cached, when offline)."""
    if not ref:
        problems.append(f"{key}: empty model path / hub id")
        return
    path = Path(ref).expanduser()
    if path.exists():
        return
    if ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1:
        problems.append(f"{key}: no such model directory {ref!r}")
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(ref, "config.json"), str):
            problems.append(f"{key}: {ref!r} is neither a local directory nor in the hub cache (HF_HUB_OFFLINE=1)")


def _check_data_ref(key: str, ref: str, problems: list[str]) -> None:
    if ref and not Path(ref).expanduser().exists() and (ref.startswith(("/", "./", "../", "~")) or "." in Path(ref).name):
        problems.append(f"{key}: no such file {ref!r}")


def _prefixed(section: str, exc: Exception) -> str:
    """The lower layers name keys relative to their own section ("grpo.lr ..."); make them full config keys."""
    msg = str(exc)
    last = section.rsplit(".", 1)[-1] + "."
    if msg.startswith(section + "."):
        return msg
    if msg.startswith(last):
        return section + msg[len(last) - 1 :]
    return f"{section}: {msg}"


def _unit(key: str, value: float, problems: list[str]) -> None:
    if not 0.0 <= float(value) <= 1.0:
        problems.append(f"{key}: must be in [0, 1] (got {value})")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every invalid key of `cfg` (resolving interpolations as it goes)."""
    from opgrpo.config import to_object

    problems: list[str] = []
    stage = cfg.stage
    if stage not in STAGES:
        problems.append(f"stage: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    stages = list(cfg.pipeline) if stage == "pipeline" else [stage]
    for s in cfg.pipeline:
        if s not in STAGES[:4] and s != "eval_base":
            problems.append(f"pipeline: unknown stage {s!r}; expected estimator, eval_base, sft, grpo, eval")
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        problems.append(f"device: expected auto, cpu or cuda (got {cfg.device!r})")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.append(f"device: {cfg.device!r} requested but CUDA is not available")

    try:
        to_object(cfg, "reward").validate()
    except (ValueError, TypeError) as exc:
        problems.append(_prefixed("reward", exc))

    if cfg.reward.trl_weighting not in ("total", "components"):
        problems.append(f"reward.trl_weighting: expected total or components (got {cfg.reward.trl_weighting!r})")
    if (cfg.reward.aggregation == "sum" and cfg.reward.trl_weighting == "total"
            and cfg.trainer.grpo.multi_objective_aggregation in ("gdpo", "normalize", "normalize_then_sum")):
        problems.append("trainer.grpo.multi_objective_aggregation: per-component normalisation needs the components; "
                        "set reward.aggregation=gdpo (or reward.trl_weighting=components)")
    needs_policy = any(s in ("sft", "grpo", "eval", "eval_base") for s in stages)
    needs_train = any(s in ("estimator", "sft", "grpo") for s in stages)
    needs_test = any(s in ("eval", "eval_base") for s in stages)
    if needs_policy and not (stage == "eval" and cfg.eval.responses_file):
        _check_model_ref("model.name_or_path", cfg.model.name_or_path, problems)
    if cfg.eval.model_path:
        _check_model_ref("eval.model_path", cfg.eval.model_path, problems)
    if cfg.reward.estimator_path and any(s in ("grpo", "eval", "eval_base") for s in stages):
        _check_model_ref("reward.estimator_path", cfg.reward.estimator_path, problems)
    if "estimator" in stages or ("grpo" in stages and not cfg.reward.estimator_path):
        _check_model_ref("estimator.base_model", cfg.estimator.base_model, problems)
    if needs_train:
        if not cfg.benchmark.train_file:
            problems.append("benchmark.train_file: required by stage(s) " + ", ".join(stages))
        _check_data_ref("benchmark.train_file", cfg.benchmark.train_file, problems)
    if needs_test:
        if not cfg.benchmark.test_file and not cfg.benchmark.test_files:
            problems.append("benchmark.test_file: required by the eval stage (or benchmark.test_files)")
        _check_data_ref("benchmark.test_file", cfg.benchmark.test_file, problems)
        for name, ref in cfg.benchmark.test_files.items():
            _check_data_ref(f"benchmark.test_files.{name}", ref, problems)
        _check_data_ref("eval.responses_file", cfg.eval.responses_file, problems)
        _check_model_ref("eval.nli.model", cfg.eval.nli.model, problems)
    if cfg.benchmark.format not in ("auto", "csv", "jsonl", "hf", "hf_disk"):
        problems.append(f"benchmark.format: expected auto, csv, jsonl, hf or hf_disk (got {cfg.benchmark.format!r})")
    if cfg.benchmark.on_error not in ("skip", "fail"):
        problems.append(f"benchmark.on_error: expected skip or fail (got {cfg.benchmark.on_error!r})")
    if not 0.0 <= cfg.benchmark.val_fraction < 1.0:
        problems.append(f"benchmark.val_fraction: must be in [0, 1) (got {cfg.benchmark.val_fraction})")
    _unit("eval.threshold", cfg.eval.threshold, problems)
    _unit("eval.generation.top_p", cfg.eval.generation.top_p, problems)
    if cfg.eval.generation.temperature < 0:
        problems.append(f"eval.generation.temperature: must be >= 0 (got {cfg.eval.generation.temperature})")
    if cfg.eval.generation.prompt not in ("implicit", "explicit"):
        problems.append(f"eval.generation.prompt: expected implicit or explicit (got {cfg.eval.generation.prompt!r})")
    if cfg.eval.generation.backend not in ("auto", "transformers", "vllm"):
        problems.append(f"eval.generation.backend: expected auto, transformers or vllm (got {cfg.eval.generation.backend!r})")
    if cfg.eval.nli.backend not in ("sequence_classification", "causal_lm"):
        problems.append(f"eval.nli.backend: expected sequence_classification or causal_lm (got {cfg.eval.nli.backend!r})")
    _unit("estimator.mining.pair_threshold", cfg.estimator.mining.pair_threshold, problems)
    judge = cfg.estimator.judge
    if judge.kind not in ("none", "transformers", "http", "labels"):
        problems.append(f"estimator.judge.kind: expected none, transformers, http or labels (got {judge.kind!r})")
    if judge.kind == "labels" and not judge.labels_file:
        problems.append("estimator.judge.labels_file: judge kind 'labels' needs a CSV/JSONL labels file")
    if judge.labels_file and not Path(judge.labels_file).is_file():
        problems.append(f"estimator.judge.labels_file: no such file {judge.labels_file!r}")
    if judge.unlabelled not in ("different", "skip"):
        problems.append(f"estimator.judge.unlabelled: expected different or skip (got {judge.unlabelled!r})")
    if cfg.logger.backend not in ("csv", "wandb"):
        problems.append(f"logger.backend: expected csv or wandb (got {cfg.logger.backend!r})")
    if cfg.logger.wandb.mode not in ("offline", "online", "disabled"):
        problems.append(f"logger.wandb.mode: expected offline, online or disabled (got {cfg.logger.wandb.mode!r})")
    if cfg.deepspeed.enabled:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"deepspeed: {cfg.deepspeed.name!r} needs CUDA GPUs; use deepspeed=none on CPU")
    if cfg.spl.enabled:
        try:
            to_object(cfg, "spl").validate()
        except ValueError as exc:
            problems.append(str(exc))
    if stage == "pope":
        try:
            to_object(cfg, "pope").validate()
        except ValueError as exc:
            problems.append(str(exc))
        if not cfg.pope.responses_file:
            problems.append("pope.responses_file: required by stage=pope")
        _check_data_ref("pope.responses_file", cfg.pope.responses_file, problems)
        _check_model_ref("pope.model_path", cfg.pope.model_path or cfg.model.name_or_path, problems)
    if "grpo" in stages:
        from opgrpo.grpo import _check as check_grpo_settings

        try:
            check_grpo_settings(to_object(cfg, "trainer.grpo"), world_size=int(os.environ.get("WORLD_SIZE", "1")))
        except ValueError as exc:
            problems.append(_prefixed("trainer.grpo", exc))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
