"""Start-up validation of a composed config: every mistake found before any model loads, each naming its key.

Each config section checks itself (``problems()`` on its dataclass: reward, trainer.sft, trainer.grpo,
estimator, eval, ...); this module gathers those under their full keys and adds only what spans
sections: which stages run, which models and files those stages will load, and the world size.
``validate(cfg)`` raises one ``ConfigError`` listing every problem as ``key: problem``.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from opgrpo.app.schema import DEVICES
from opgrpo.app.stages import PIPELINE_STAGES, STAGES
from opgrpo.utils.checks import Problems


class ConfigError(ValueError):
    """A configuration mistake; the message names the offending key(s)."""


MODEL_CONFIGS = ("config.json", "adapter_config.json", "modules.json")
MODEL_WEIGHTS = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.safetensors.index.json", "*.bin.index.json")


def _model_dir_problem(path: Path) -> str:
    """Why a local directory cannot be loaded as a model ("" when it looks loadable): a config file
    (transformers, peft adapter or sentence-transformers) and weights (or a GGUF file)."""
    if not path.is_dir():
        return f"{str(path)!r} is a file, not a model directory"
    has_config = any((path / name).is_file() for name in MODEL_CONFIGS)
    has_weights = any(any(path.glob(pattern)) for pattern in MODEL_WEIGHTS)
    if has_weights and (has_config or any(path.glob("*.gguf"))):
        return ""
    if (path / "modules.json").is_file():  # sentence-transformers: the weights sit in the module folders
        if any(any(path.glob(f"*/{pattern}")) for pattern in MODEL_WEIGHTS[:2]):
            return ""
    missing = [what for what, ok in (("a config.json", has_config), ("weights (*.safetensors, *.bin)", has_weights))
               if not ok]
    return f"{str(path)!r} holds no model: no {' and no '.join(missing)}"


def _check_model_ref(p: Problems, key: str, ref: str) -> None:
    """A model reference is a local directory holding a model, or a hub id (cached, when offline)."""
    if not ref:
        p.add(key, "empty model path / hub id")
        return
    path = Path(ref).expanduser()
    if path.exists():
        problem = _model_dir_problem(path)
        if problem:
            p.add(key, problem)
        return
    if ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1:
        p.add(key, f"no such model directory {ref!r}")
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(ref, "config.json"), str):
            p.add(key, f"{ref!r} is neither a local directory nor in the hub cache (HF_HUB_OFFLINE=1)")


def _check_data_ref(p: Problems, key: str, ref: str) -> None:
    if ref and not Path(ref).expanduser().exists() and (ref.startswith(("/", "./", "../", "~"))
                                                        or "." in Path(ref).name):
        p.add(key, f"no such file {ref!r}")


def _section(p: Problems, cfg: DictConfig, key: str, *args) -> None:
    """Add section ``key``'s own problems under ``key.`` (its missing values, reported by ``validate``, read as "")."""
    node = OmegaConf.select(cfg, key)
    if OmegaConf.missing_keys(node):
        node = node.copy()
        for k in OmegaConf.missing_keys(node):  # full keys ("benchmark.train_file")
            OmegaConf.update(node, k.removeprefix(f"{key}."), "")
    try:
        obj = OmegaConf.to_object(node)
    except (MissingMandatoryValue, ValueError):
        return
    if hasattr(obj, "problems"):
        p.extend_from(f"{key}.", obj.problems(*args))


def _stages(p: Problems, cfg: DictConfig) -> list[str]:
    if cfg.stage not in STAGES and cfg.stage != "pipeline":
        p.add("stage", f"unknown stage {cfg.stage!r}; expected pipeline or one of {', '.join(STAGES)}")
    for s in cfg.pipeline:
        if s not in PIPELINE_STAGES:
            p.add("pipeline", f"unknown stage {s!r}; expected {', '.join(PIPELINE_STAGES)}")
    return list(cfg.pipeline) if cfg.stage == "pipeline" else [cfg.stage]


def _get(cfg: DictConfig, key: str) -> str:
    """``key``'s value, "" when missing (a missing value is reported once, by ``validate``)."""
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    return "" if value is None else value


def _needs(stages: list[str], cfg: DictConfig) -> dict[str, bool]:
    # the policy model.name_or_path is loaded by the training stages, and by an evaluation that neither reads
    # a responses file nor evaluates another policy (eval.model_path, checked on its own)
    evaluates_it = any(s in ("eval", "eval_base") for s in stages) and not (
        _get(cfg, "eval.model_path") or _get(cfg, "eval.responses_file"))
    return {"policy": any(s in ("sft", "grpo") for s in stages) or evaluates_it,
            "train": any(s in ("estimator", "sft", "grpo") for s in stages),
            "test": any(s in ("eval", "eval_base") for s in stages),
            "pope": "pope" in stages}


def _models_and_files(p: Problems, cfg: DictConfig, stages: list[str], needs: dict[str, bool]) -> None:
    """Only the models and files that the chosen stages will load (``needs``: what ``_needs`` says they read)."""
    if needs["policy"] and _get(cfg, "model.name_or_path"):
        _check_model_ref(p, "model.name_or_path", _get(cfg, "model.name_or_path"))
    if cfg.eval.model_path:
        _check_model_ref(p, "eval.model_path", cfg.eval.model_path)
    if cfg.reward.estimator_path and any(s in ("grpo", "eval", "eval_base") for s in stages):
        _check_model_ref(p, "reward.estimator_path", cfg.reward.estimator_path)
    if "estimator" in stages or ("grpo" in stages and not cfg.reward.estimator_path):
        _check_model_ref(p, "estimator.base_model", cfg.estimator.base_model)
    if needs["train"]:
        train_file = _get(cfg, "benchmark.train_file")
        if not train_file and not OmegaConf.is_missing(cfg.benchmark, "train_file"):
            p.add("benchmark.train_file", "required by stage(s) " + ", ".join(stages))
        _check_data_ref(p, "benchmark.train_file", train_file)
    if needs["test"]:
        test_file = _get(cfg, "benchmark.test_file")
        if not test_file and not cfg.benchmark.test_files and not OmegaConf.is_missing(cfg.benchmark, "test_file"):
            p.add("benchmark.test_file", "required by the eval stage (or benchmark.test_files)")
        _check_data_ref(p, "benchmark.test_file", test_file)
        for name, ref in cfg.benchmark.test_files.items():
            _check_data_ref(p, f"benchmark.test_files.{name}", ref)
        _check_data_ref(p, "eval.responses_file", cfg.eval.responses_file)
        if cfg.eval.nli.backend != "none":
            _check_model_ref(p, "eval.nli.model", cfg.eval.nli.model)
    if needs["pope"]:
        if not cfg.pope.responses_file:
            p.add("pope.responses_file", "required by stage=pope")
        _check_data_ref(p, "pope.responses_file", cfg.pope.responses_file)
        _check_model_ref(p, "pope.model_path", cfg.pope.model_path or _get(cfg, "model.name_or_path"))


def _missing(cfg: DictConfig, needs: dict[str, bool]) -> list[str]:
    """Missing mandatory values (``???``) that the chosen stages need."""
    owner = {"model.name_or_path": needs["policy"] or needs["pope"], "benchmark.train_file": needs["train"],
             "benchmark.test_file": needs["test"] and not cfg.benchmark.test_files}
    keys: set[str] = set()
    for key in cfg.keys():
        if key == "hydra":  # Hydra's own node (when composed with it) has runtime-only missing values
            continue
        if OmegaConf.is_missing(cfg, key):
            keys.add(str(key))
        elif OmegaConf.is_config(cfg._get_node(key)):
            keys |= OmegaConf.missing_keys(cfg._get_node(key))
    return sorted(k for k in keys if owner.get(k, True))


def _check_deepspeed(p: Problems, cfg: DictConfig) -> None:
    """DeepSpeed runs on GPUs and on CPU (its CPU accelerator, gloo); refuse only what cannot work here."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        p.add("deepspeed", f"{cfg.deepspeed.name!r} needs the deepspeed package (pip install 'deepspeed>=0.16')")
        return
    ds = OmegaConf.to_container(cfg.deepspeed.config, resolve=True) or {}
    zero = ds.get("zero_optimization") or {}
    if zero.get("stage") not in (0, 1, 2, 3):
        p.add("deepspeed.config.zero_optimization.stage", f"must be 0, 1, 2 or 3 (got {zero.get('stage')!r})")
    offload = [k for k in ("offload_optimizer", "offload_param")
               if str((zero.get(k) or {}).get("device", "none")) not in ("none", "None")]
    if "offload_param" in offload and zero.get("stage") != 3:
        p.add("deepspeed.config.zero_optimization.offload_param", "parameter offload needs ZeRO stage 3")
    import torch

    if offload and not torch.cuda.is_available():
        p.add("deepspeed", f"{cfg.deepspeed.name!r} offloads {' and '.join(offload)} from the GPU to the CPU; "
                           "without CUDA there is nothing to offload: use deepspeed=zero2 or zero3 on CPU")


def _check_init_from(p: Problems, cfg: DictConfig) -> None:
    """``init_from`` (a finished run a preset starts from) must be given when some key interpolates it."""
    if cfg.init_from:
        if not Path(cfg.init_from).expanduser().is_dir():
            p.add("init_from", f"no such run directory {cfg.init_from!r}")
        return

    def users(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "hydra":
                    yield from users(v, f"{prefix}{k}.")
        elif isinstance(node, str) and "${init_from}" in node:
            yield prefix[:-1]

    found = list(users(OmegaConf.to_container(cfg, resolve=False)))
    if found:
        p.add("init_from", f"missing value: {', '.join(found)} start from it; set init_from=<a finished run directory, "
                           "e.g. of experiment=cpu_demo>")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every invalid key of `cfg` (resolving interpolations as it goes)."""
    p = Problems()
    _check_init_from(p, cfg)
    stages = _stages(p, cfg)
    needs = _needs(stages, cfg)
    for key in _missing(cfg, needs):
        p.add(key, "missing value (set it on the command line, e.g. key=value, or in an experiment preset)")
    if cfg.device not in DEVICES and not str(cfg.device).startswith("cuda:"):
        p.add("device", f"expected auto, cpu, cuda or cuda:N (got {cfg.device!r})")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.add("device", f"{cfg.device!r} requested but CUDA is not available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    for key in ("model", "benchmark", "reward", "estimator", "eval", "logger"):
        _section(p, cfg, key)
    if "sft" in stages:
        _section(p, cfg, "trainer.sft", world_size)
    if "grpo" in stages:
        _section(p, cfg, "trainer.grpo", world_size)
    if cfg.spl.enabled:
        _section(p, cfg, "spl")
    if "pope" in stages:
        _section(p, cfg, "pope")
    _section(p, cfg, "report", stages)  # reference weights always (the multirun's report uses them); runs for report/compare
    if cfg.deepspeed.enabled:
        _check_deepspeed(p, cfg)
    _models_and_files(p, cfg, stages, needs)
    if p:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(p)))
