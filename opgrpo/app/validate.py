"""Start-up validation of a run's typed config: every mistake found before any model loads, each naming its key.

Each config section checks itself (``problems()`` on its dataclass: reward, trainer.sft, trainer.grpo,
estimator, eval, ...); this module gathers those under their full keys and adds only what spans sections: which
stages run, which models and files those stages will load, the world size, and the batch arithmetic against the
training data (counted by the run's own context, which keeps what it parsed: opgrpo.app.context).
``validate(ctx)`` raises one ``ConfigError`` listing every problem as ``key: problem``; ``check(cfg, run)`` builds the
typed config from Hydra's (opgrpo.app.runconfig), the run's context, and validates it: what the entrypoint and a
multirun's pre-check of every arm do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from opgrpo.app.context import RunContext
from opgrpo.app.runconfig import ConfigError, config_error, needs, stages_of, to_config
from opgrpo.app.rundir import RunDir
from opgrpo.app.schema import DEVICES, OPGRPOConfig
from opgrpo.app.stages import PIPELINE_STAGES, STAGES
from opgrpo.utils.checks import Problems
from opgrpo.utils.offline import offline_setting, offline_switch

__all__ = ["ConfigError", "check", "validate"]


def _attr(node: Any, key: str) -> Any:
    """``node.key`` of a dataclass or a mapping (community model specs are either), "" when unset."""
    value = node.get(key) if isinstance(node, dict) else getattr(node, key, "")
    return "" if value is None else value


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


def _check_model_ref(p: Problems, key: str, ref: str, role: str = "") -> None:
    """A model reference is a local directory holding a model, or a hub id (cached, when offline); ``role``: what the
    run uses it for, when the key alone does not say (added to the message)."""
    if not ref:
        p.add(key, "empty model path / hub id" + (f" ({role})" if role else ""))
        return
    path = Path(ref).expanduser()
    if path.exists():
        problem = _model_dir_problem(path)
        if problem:
            p.add(key, problem + (f" ({role})" if role else ""))
        return
    if ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1:
        p.add(key, f"no such model directory {ref!r}" + (f" ({role})" if role else ""))
        return
    _check_hub_cache(p, key, ref, MODEL_CONFIGS, role)


def _check_hub_cache(p: Problems, key: str, ref: str, files: tuple[str, ...], role: str = "") -> None:
    """Offline (``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``, opgrpo.utils.offline), a hub id must be in the local
    cache: one of ``files`` (a model's config.json, a PEFT adapter's adapter_config.json, a tokenizer's files) cached;
    the message says how to fetch it."""
    if offline_switch():
        from huggingface_hub import try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(ref, name), str) for name in files):
            p.add(key, f"{ref!r} is neither a local directory nor in the hub cache ({offline_setting()})"
                  + (f" ({role})" if role else "") + "; `opgrpo stage=prefetch` with the same overrides, where the "
                  "Hub is reachable, fetches it (or give a local directory)")


TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")


def _check_tokenizer_ref(p: Problems, key: str, ref: str) -> None:
    """A tokenizer reference: a local directory holding a tokenizer, or a hub id (cached, when offline)."""
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir() or not any((path / name).is_file() for name in TOKENIZER_FILES):
            p.add(key, f"{ref!r} holds no tokenizer (no {', '.join(TOKENIZER_FILES)})")
    elif ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1:
        p.add(key, f"no such tokenizer directory {ref!r}")
    else:
        _check_hub_cache(p, key, ref, TOKENIZER_FILES)


def _url_problem(url: str) -> str:
    """Why ``url`` is not an http(s) API root ("" when it is one); only its form: nothing is contacted."""
    from urllib.parse import urlparse

    try:
        parts = urlparse(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"not a valid URL {url!r} ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}"
    return ""


def _check_community(p: Problems, cfg: OPGRPOConfig) -> None:
    """baseline=modular's community models: a local model (``name_or_path``, its ``tokenizer``) as any model the run
    loads; an endpoint (``base_url``) only by the form of its URL (it is contacted when the stage starts)."""
    for i, spec in enumerate(cfg.baseline.community or []):
        key = f"baseline.community[{i}]"
        name_or_path, tokenizer, url = (_attr(spec, k) for k in ("name_or_path", "tokenizer", "base_url"))
        if name_or_path:
            _check_model_ref(p, f"{key}.name_or_path", name_or_path)
            if tokenizer:
                _check_tokenizer_ref(p, f"{key}.tokenizer", tokenizer)
        if url and _url_problem(url):
            p.add(f"{key}.base_url", _url_problem(url))


def _check_out_file(p: Problems, key: str, ref: str) -> None:
    """An output file must be writable where it points: not a directory, no file where a parent folder must be."""
    if not ref:
        return
    path = Path(ref).expanduser()
    if path.is_dir():
        p.add(key, f"{ref!r} is a directory; give a file name (e.g. {str(path / 'responses.jsonl')!r})")
        return
    parent = next((d for d in path.parents if d.exists()), None)
    if parent is not None and not parent.is_dir():
        p.add(key, f"cannot create {ref!r}: {str(parent)!r} is a file, not a directory")


def _check_data_ref(p: Problems, key: str, ref: str) -> None:
    if ref and not Path(ref).expanduser().exists() and (ref.startswith(("/", "./", "../", "~"))
                                                        or "." in Path(ref).name):
        p.add(key, f"no such file {ref!r}")


def _stages(p: Problems, cfg: OPGRPOConfig) -> list[str]:
    if cfg.stage not in STAGES and cfg.stage != "pipeline":
        p.add("stage", f"unknown stage {cfg.stage!r}; expected pipeline or one of {', '.join(STAGES)}")
    for s in cfg.pipeline:
        if s not in PIPELINE_STAGES:
            p.add("pipeline", f"unknown stage {s!r}; expected {', '.join(PIPELINE_STAGES)}")
    return stages_of(cfg)


ENCODER_STAGES = ("grpo", "eval", "eval_base")
"""The stages that score with the reward's estimator (RunContext.encoder)."""


def _check_models(p: Problems, ctx: RunContext, stages: list[str]) -> None:
    """The models the chosen stages load beyond the policy and the data's: the reward's estimator (as
    ``RunContext.encoder_path`` will choose it, unless this run's estimator stage makes it first), the estimator's base
    and its judge, the local judges of eval and opbench."""
    cfg = ctx.cfg
    first_estimator = stages.index("estimator") if "estimator" in stages else len(stages)
    if any(s in ENCODER_STAGES for s in stages[:first_estimator]) or (
            cfg.reward.estimator_path and any(s in ENCODER_STAGES for s in stages)):
        key, ref = ctx.encoder_source()
        users = ", ".join(s for s in stages if s in ENCODER_STAGES)
        if key in ("reward.estimator_path", "estimator.base_model"):
            _check_model_ref(p, key, ref, f"the reward estimator of stage {users}")
        else:  # the estimator recorded by the run the evaluated responses or policy come from
            _check_model_ref(p, "reward.estimator_path", ref, f"the estimator of the run {key} comes from, which "
                             f"stage {users} scores with; set reward.estimator_path to choose another")
    if "estimator" in stages:
        _check_model_ref(p, "estimator.base_model", cfg.estimator.base_model)
        if cfg.estimator.judge.kind == "transformers":
            _check_model_ref(p, "estimator.judge.model", cfg.estimator.judge.model)
        elif cfg.estimator.judge.kind == "http":
            _check_http_judge(p, "estimator.judge", cfg.estimator.judge, probe=ctx.run is not None)
    if cfg.eval.judge.kind == "transformers" and any(s in ("eval", "eval_base") for s in stages):
        _check_model_ref(p, "eval.judge.model", cfg.eval.judge.model)
    if cfg.opbench.judge.kind == "transformers" and "opbench" in stages:
        _check_model_ref(p, "opbench.judge.model", cfg.opbench.judge.model)


def _check_http_judge(p: Problems, key: str, judge: Any, probe: bool) -> None:
    """An HTTP judge needs a model and an http(s) base_url; the run itself (not a multirun's pre-check, which may run
    where the endpoint is out of reach) asks it one short question (opgrpo.judges.http.probe_endpoint)."""
    for name in ("base_url", "model"):
        if not getattr(judge, name):
            p.add(f"{key}.{name}", "required for judge kind 'http'")
    if judge.base_url and _url_problem(judge.base_url):
        p.add(f"{key}.base_url", _url_problem(judge.base_url))
    if probe and judge.probe and not any(x.startswith(f"{key}.") for x in p):
        from opgrpo.judges.http import probe_endpoint

        found = probe_endpoint(judge.base_url, judge.model, api_key_env=judge.api_key_env,
                               chat_template=judge.chat_template, timeout=min(float(judge.timeout), 10.0))
        if found:
            p.add(f"{key}.{found[0]}", found[1])


def _models_and_files(p: Problems, ctx: RunContext, stages: list[str], need: dict[str, bool]) -> None:
    """Only the models and files that the chosen stages will load (``need``: what opgrpo.app.runconfig.needs says
    they read)."""
    cfg = ctx.cfg
    if need["policy"] and cfg.model.name_or_path:
        _check_model_ref(p, "model.name_or_path", cfg.model.name_or_path)
    if cfg.eval.model_path:
        _check_model_ref(p, "eval.model_path", cfg.eval.model_path)
    _check_models(p, ctx, stages)
    b = cfg.benchmark
    if need["train"]:
        if not b.train_file:
            p.add("benchmark.train_file", "required by stage(s) " + ", ".join(stages))
        _check_data_ref(p, "benchmark.train_file", b.train_file)
    if need["test"]:
        if not b.test_file and not b.test_files:
            p.add("benchmark.test_file", "required by stage(s) " + ", ".join(
                s for s in stages if s in ("eval", "eval_base", "generate")) + " (or benchmark.test_files)")
        _check_data_ref(p, "benchmark.test_file", b.test_file)
        for name, ref in b.test_files.items():
            _check_data_ref(p, f"benchmark.test_files.{name}", ref)
    if need["eval"]:
        _check_data_ref(p, "eval.responses_file", cfg.eval.responses_file)
        if cfg.eval.nli.backend != "none":
            _check_model_ref(p, "eval.nli.model", cfg.eval.nli.model)
    if need["generate"]:
        _check_out_file(p, "generate.out_file", cfg.generate.out_file)
        if cfg.baseline.kind == "modular":
            _check_community(p, cfg)
    if need["pope"]:
        if not cfg.pope.responses_file:
            p.add("pope.responses_file", "required by stage=pope")
        _check_data_ref(p, "pope.responses_file", cfg.pope.responses_file)
        _check_model_ref(p, "pope.model_path", cfg.pope.model_path or cfg.model.name_or_path)


DATA_SETS = {"sft": ("sft_train_val", "global_batch_size"), "grpo": ("grpo_train_val", "prompts_per_step")}
"""Per training stage: the ``RunContext`` method that gives its (train, validation) records and the batch key of
``trainer.<stage>`` that must fit them."""


def _check_data_size(p: Problems, ctx: RunContext, stages: list[str]) -> None:
    """The batch arithmetic against the data: one SFT batch (``trainer.sft.global_batch_size``) and one GRPO
    generation batch (``trainer.grpo.prompts_per_step``) must fit the training records the stage will use, counted
    by the run's own context (after ``benchmark.max_train_items``, the validation share, ``benchmark.sft_file``),
    which keeps the parse for the run. Only for the stages that run, once the data keys and that trainer are valid."""
    cfg = ctx.cfg
    wanted = [s for s in DATA_SETS if s in stages and not any(x.startswith(f"trainer.{s}.") for x in p)]
    if not wanted or any(x.startswith("benchmark.") for x in p) or not cfg.benchmark.train_file:
        return
    for stage in wanted:
        method, name = DATA_SETS[stage]
        src = "benchmark.sft_file" if stage == "sft" and cfg.benchmark.sft_file else "benchmark.train_file"
        try:
            train, val = getattr(ctx, method)()
        except Exception as exc:  # noqa: BLE001 - data the run could not read is a problem of its key
            p.add(src, f"cannot be read: {type(exc).__name__}: {exc}")
            return
        # SFT from the training items skips those without reference perspectives (build_sft_dataset)
        n = sum(1 for r in train if not hasattr(r, "references") or any(str(x).strip() for x in r.references))
        batch = getattr(getattr(cfg.trainer, stage), name)
        if batch > n:
            cap = cfg.benchmark.max_train_items
            what = "prompts per generation batch" if stage == "grpo" else "examples per optimizer step"
            p.add(f"trainer.{stage}.{name}", f"{batch} {what}, but stage {stage} has {n} training records ({src}"
                  + (f" capped by benchmark.max_train_items={cap}" if cap >= 0 and src.endswith("train_file")
                     else "") + f", {len(val)} held out for validation): no full batch can be drawn. Lower "
                  "it or use more data (experiment=cpu_demo fits the sample data)")


def _check_deepspeed(p: Problems, cfg: OPGRPOConfig) -> None:
    """DeepSpeed runs on GPUs and on CPU (its CPU accelerator, gloo); refuse only what cannot work here."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        p.add("deepspeed", f"{cfg.deepspeed.name!r} needs the deepspeed package (pip install 'deepspeed>=0.16')")
        return
    zero = cfg.deepspeed.config.get("zero_optimization") or {}
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


def _check_device(p: Problems, cfg: OPGRPOConfig) -> None:
    """``device``: auto, cpu, cuda or cuda:N, and CUDA present when a cuda device is asked for."""
    if cfg.device not in DEVICES and not str(cfg.device).startswith("cuda:"):
        p.add("device", f"expected auto, cpu, cuda or cuda:N (got {cfg.device!r})")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.add("device", f"{cfg.device!r} requested but CUDA is not available")


def validate(ctx: RunContext, found: list[str] = ()) -> None:
    """Raise ConfigError naming every invalid key of ``ctx.cfg`` (and the problems ``found`` while it was built: a
    key listed there is not reported again); the data the batch check counts stays parsed in ``ctx`` for the run."""
    cfg, p = ctx.cfg, Problems()
    stages = _stages(p, cfg)
    if cfg.init_from:
        from opgrpo.app.reuse import init_from_problem

        if init_from_problem(cfg, stages):
            p.add("init_from", init_from_problem(cfg, stages))
    _check_device(p, cfg)
    if "describe" in stages:
        from opgrpo.app.describe import describe_problem

        if describe_problem(cfg, cfg.describe):
            p.add("describe", describe_problem(cfg, cfg.describe))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    sections: list[tuple[str, tuple]] = [(k, ()) for k in ("model", "benchmark", "reward", "estimator", "eval",
                                                           "logger", "store")]
    sections += [(f"trainer.{s}", (world_size,)) for s in ("sft", "grpo") if s in stages]
    sections += [(k, ()) for k, on in (("spl", cfg.spl.enabled), ("pope", "pope" in stages),
                                       ("generate", "generate" in stages), ("baseline", "generate" in stages)) if on]
    # opbench: template/tau/judge always, files for stage=opbench; report: the reference weights always (the
    # multirun's report uses them), runs for report/compare; hub.push: model id, token, Hub, a training stage
    sections += [(k, (stages,)) for k in ("opbench", "report", "hub")]
    for key, args in sections:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if hasattr(node, "problems"):  # POPEConfig checks itself when built
            p.extend_from(f"{key}.", node.problems(*args))
    if cfg.deepspeed.enabled:
        _check_deepspeed(p, cfg)
    _models_and_files(p, ctx, stages, needs(stages, cfg))
    if not found:
        _check_data_size(p, ctx, stages)
    reported = {f.split(":", 1)[0] for f in found}
    problems = list(dict.fromkeys([*found, *(x for x in p if x.split(":", 1)[0] not in reported)]))
    if problems:
        raise config_error(problems)


def check(cfg: DictConfig, run: RunDir | None = None) -> RunContext:
    """The run's context for Hydra's composed ``cfg``: the typed config built once (opgrpo.app.runconfig.to_config)
    and validated (``validate``); ``run``: the run directory (None: a pre-check before it exists, e.g. of every arm
    of a multirun). Raises ConfigError naming every problem."""
    found: list[str] = []
    ctx = RunContext(to_config(cfg, found), run)
    validate(ctx, found)
    return ctx
