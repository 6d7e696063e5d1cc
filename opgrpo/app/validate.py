"""Start-up validation of a composed config: every mistake found before any model loads, each naming its key.

Each config section checks itself (``problems()`` on its dataclass: reward, trainer.sft, trainer.grpo,
estimator, eval, ...); this module gathers those under their full keys and adds only what spans
sections: which stages run, which models and files those stages will load, the world size, missing values
(``???``, also where another key interpolates one) and the batch arithmetic against the training data (counted
with the loader the run uses, whose parse the run then takes: opgrpo.app.context). ``validate(cfg)`` raises one
``ConfigError`` listing every problem as ``key: problem``.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue, OmegaConfBaseException

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
    _check_hub_cache(p, key, ref, MODEL_CONFIGS)


def _check_hub_cache(p: Problems, key: str, ref: str, files: tuple[str, ...]) -> None:
    """Offline (``HF_HUB_OFFLINE=1``), a hub id must be in the local cache: one of ``files`` (a model's config.json,
    a PEFT adapter's adapter_config.json, a tokenizer's files) cached."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(ref, name), str) for name in files):
            p.add(key, f"{ref!r} is neither a local directory nor in the hub cache (HF_HUB_OFFLINE=1)")


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


def _check_community(p: Problems, cfg: DictConfig) -> None:
    """baseline=modular's community models: a local model (``name_or_path``, its ``tokenizer``) as any model the run
    loads; an endpoint (``base_url``) only by the form of its URL (it is contacted when the stage starts)."""
    for i in range(len(_get(cfg, "baseline.community") or [])):
        key = f"baseline.community[{i}]"
        name_or_path, tokenizer, url = (_get(cfg, f"{key}.{k}") for k in ("name_or_path", "tokenizer", "base_url"))
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


def _section(p: Problems, cfg: DictConfig, key: str, *args) -> None:
    """Add section ``key``'s own problems under ``key.`` (its missing values, reported by ``validate``, read as "")."""
    node = OmegaConf.select(cfg, key)
    if OmegaConf.missing_keys(node):
        node = node.copy()
        for k in OmegaConf.missing_keys(node):  # full keys ("benchmark.train_file")
            try:
                OmegaConf.update(node, k.removeprefix(f"{key}."), "")
            except OmegaConfBaseException:  # a missing number or flag: the section's checks wait until it is set
                return
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
    # the policy model.name_or_path is loaded by the training stages, by an evaluation that neither reads a responses
    # file nor evaluates another policy, and by stage=generate unless it answers with another policy (eval.model_path,
    # checked on its own)
    evaluates_it = any(s in ("eval", "eval_base") for s in stages) and not (
        _get(cfg, "eval.model_path") or _get(cfg, "eval.responses_file"))
    generates_with_it = "generate" in stages and not _get(cfg, "eval.model_path")
    return {"policy": any(s in ("sft", "grpo") for s in stages) or evaluates_it or generates_with_it,
            "train": any(s in ("estimator", "sft", "grpo") for s in stages),
            "test": any(s in ("eval", "eval_base", "generate") for s in stages),
            "eval": any(s in ("eval", "eval_base") for s in stages),
            "generate": "generate" in stages,
            "pope": "pope" in stages}


NEEDS = ("policy", "train", "test", "eval", "generate", "pope")
"""What ``_needs`` says the chosen stages read: the policy, the training data, the test data, the evaluation's
responses file and NLI model, stage=generate's sections (``generate``, ``baseline``), POPE's logged responses."""


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
            p.add("benchmark.test_file", "required by stage(s) " + ", ".join(
                s for s in stages if s in ("eval", "eval_base", "generate")) + " (or benchmark.test_files)")
        _check_data_ref(p, "benchmark.test_file", test_file)
        for name, ref in cfg.benchmark.test_files.items():
            _check_data_ref(p, f"benchmark.test_files.{name}", ref)
    if needs["eval"]:
        _check_data_ref(p, "eval.responses_file", cfg.eval.responses_file)
        if cfg.eval.nli.backend != "none":
            _check_model_ref(p, "eval.nli.model", cfg.eval.nli.model)
    if needs["generate"]:
        _check_out_file(p, "generate.out_file", _get(cfg, "generate.out_file"))
        kind = _get(cfg, "baseline.kind")
        if getattr(kind, "value", kind) == "modular":  # a str or an Enum member
            _check_community(p, cfg)
    if needs["pope"]:
        if not cfg.pope.responses_file:
            p.add("pope.responses_file", "required by stage=pope")
        _check_data_ref(p, "pope.responses_file", cfg.pope.responses_file)
        _check_model_ref(p, "pope.model_path", cfg.pope.model_path or _get(cfg, "model.name_or_path"))


def _missing(cfg: DictConfig, needs: dict[str, bool]) -> list[str]:
    """Missing mandatory values (``???``) that the chosen stages need."""
    owner = {"model.name_or_path": needs["policy"] or needs["pope"], "benchmark.train_file": needs["train"],
             "benchmark.test_file": needs["test"] and not cfg.benchmark.test_files}
    sections = {"generate.": needs["generate"], "baseline.": needs["generate"]}  # read by stage=generate only
    keys: set[str] = set()
    for key in cfg.keys():
        if key == "hydra":  # Hydra's own node (when composed with it) has runtime-only missing values
            continue
        if OmegaConf.is_missing(cfg, key):
            keys.add(str(key))
        elif OmegaConf.is_config(cfg._get_node(key)):
            keys |= OmegaConf.missing_keys(cfg._get_node(key))
    return sorted(k for k in keys
                  if owner.get(k, next((v for prefix, v in sections.items() if k.startswith(prefix)), True)))


MISSING_HINT = "missing value (set it on the command line, e.g. key=value, or in an experiment preset)"
_REF = re.compile(r"\$\{([A-Za-z_][\w.\[\]-]*)\}")  # ${key} and ${a.b[0]}, also inside ${resolver:${key}}


def _interpolated_missing(cfg: DictConfig) -> dict[str, list[str]]:
    """Keys that interpolate a missing value (``trainer.sft.seed: ${seed}`` with ``seed=???``), under the missing
    key(s) they lead to (the key itself when none can be named). Whatever the stage, such a key fails wherever it
    is read, the resolved ``config.yaml`` included."""

    def state(key: str) -> str:
        try:
            OmegaConf.select(cfg, key, throw_on_missing=True)
        except MissingMandatoryValue:
            return "missing"
        except InterpolationToMissingValueError:
            return "broken"
        except Exception:  # noqa: BLE001 - another kind of failure (an unknown resolver): other checks report it
            return "ok"
        return "ok"

    def sources(key: str, raw: str, seen: set[str]) -> list[str]:
        out = []
        for ref in _REF.findall(raw):
            if ref in seen:
                continue
            seen.add(ref)
            kind = state(ref)
            if kind == "missing":
                out.append(ref)
            elif kind == "broken":
                node = _leaf(cfg, ref)
                out.extend(sources(ref, str(node._value()) if node is not None else "", seen))
        return out

    found: dict[str, list[str]] = {}

    def walk(node, prefix: str) -> None:
        names = node.keys() if OmegaConf.is_dict(node) else range(len(node))
        for name in names:
            if not prefix and name == "hydra":  # Hydra's own node (when composed with it)
                continue
            key = f"{prefix}[{name}]" if OmegaConf.is_list(node) else f"{prefix}.{name}" if prefix else str(name)
            child = node._get_node(name)
            if OmegaConf.is_interpolation(node, name):
                if state(key) == "broken":
                    for src in sources(key, str(child._value()), {key}) or [key]:
                        found.setdefault(src, []).append(key)
            elif OmegaConf.is_config(child) and not OmegaConf.is_missing(node, name):
                walk(child, key)

    walk(cfg, "")
    return found


def _leaf(cfg: DictConfig, key: str):
    """The node at ``key`` (unresolved), None when there is none."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    if "[" in name:
        name, _, rest = name.partition("[")
        node = node._get_node(name) if OmegaConf.is_config(node) else None
        name = int(rest.rstrip("]"))
    return node._get_node(name) if OmegaConf.is_config(node) else None


def _guarded(p: Problems, reported: set[str], check: Callable[..., Any], *args: Any, default: Any = None) -> Any:
    """Run one check; a missing value it reads (``???``, or an interpolation leading to one) or another value
    OmegaConf refuses is a problem of its key, listed once (``reported``: the keys already listed), never a
    traceback."""
    try:
        return check(*args)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "config"
        if key not in reported:
            reported.add(key)
            p.add(key, MISSING_HINT if isinstance(exc, MissingMandatoryValue)
                  else str(exc).splitlines()[0])
        return default


class _NoRunDir:
    """What ``RunContext``'s data methods write to, during the start-up count: nothing."""

    main = False
    path = Path(".")

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass


DATA_SETS = {"sft": ("sft_train_val", "trainer.sft.global_batch_size"),
             "grpo": ("grpo_train_val", "trainer.grpo.prompts_per_step")}
"""Per training stage: the ``RunContext`` method that gives its (train, validation) records and the batch key that
must fit them (``train_val`` where a context has no stage-specific method)."""


def _check_data_size(p: Problems, cfg: DictConfig, stages: list[str]) -> None:
    """The batch arithmetic against the data: one SFT batch (``trainer.sft.global_batch_size``) and one GRPO
    generation batch (``trainer.grpo.prompts_per_step``) must fit the training records the stage will use, counted
    with the run's own loading and splitting (``RunContext``, after ``benchmark.max_train_items``, the validation
    share, ``benchmark.sft_file``). Only for the stages that run, once the data keys and that trainer are valid. The
    parses are handed over to the run's context (``RunContext.hand_over``), which does not read the files again."""
    import logging

    from opgrpo.app.context import RunContext, forget_handed_over

    forget_handed_over()  # those of an earlier check (a multirun's previous job) that no run took
    wanted = [s for s in DATA_SETS if s in stages and not any(x.startswith(f"trainer.{s}.") for x in p)]
    if not wanted or any(x.startswith("benchmark.") for x in p) or not _get(cfg, "benchmark.train_file"):
        return
    ctx = RunContext(cfg, _NoRunDir(), hand_over=True)  # type: ignore[arg-type]
    quiet = [logging.getLogger(name) for name in ("opgrpo.app.context", "opgrpo.benchmark")]
    levels = [q.level for q in quiet]
    for q in quiet:  # the run itself logs the data's warnings (bad rows, template SFT targets) when it takes the data
        q.setLevel(logging.ERROR)
    try:
        for stage in wanted:
            method, key = DATA_SETS[stage]
            try:
                train, val = getattr(ctx, method, ctx.train_val)()
            except Exception as exc:  # noqa: BLE001 - data the run could not read is a problem of its key
                p.add("benchmark.sft_file" if stage == "sft" and _get(cfg, "benchmark.sft_file")
                      else "benchmark.train_file", f"cannot be read: {type(exc).__name__}: {exc}")
                return
            # SFT from the training items skips those without reference perspectives (build_sft_dataset)
            n = sum(1 for r in train if not hasattr(r, "references") or any(str(x).strip() for x in r.references))
            batch = OmegaConf.select(cfg, key)
            if batch > n:
                src = "benchmark.sft_file" if stage == "sft" and _get(cfg, "benchmark.sft_file") else \
                    "benchmark.train_file"
                cap = cfg.benchmark.max_train_items
                what = "prompts per generation batch" if stage == "grpo" else "examples per optimizer step"
                p.add(key, f"{batch} {what}, but stage {stage} has {n} training records ({src}"
                           + (f" capped by benchmark.max_train_items={cap}" if cap >= 0 and src.endswith("train_file")
                              else "") + f", {len(val)} held out for validation): no full batch can be drawn. Lower "
                           "it or use more data (experiment=cpu_demo fits the sample data)")
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


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
    broken = _interpolated_missing(cfg)  # before any check reads one of them
    reported: set[str] = set(broken) | {k for users in broken.values() for k in users}
    stages = _guarded(p, reported, _stages, p, cfg, default=[])
    needs = _guarded(p, reported, _needs, stages, cfg, default=dict.fromkeys(NEEDS, False))
    missing = _guarded(p, reported, _missing, cfg, needs, default=[])
    reported |= set(missing)
    for key in sorted(set(missing) | set(broken)):
        users = ", ".join(k for k in broken.get(key, []) if k != key)
        p.add(key, MISSING_HINT + (f"; {users} interpolate{'s' if ',' not in users else ''} it" if users else ""))
    _guarded(p, reported, _check_init_from, p, cfg)
    _guarded(p, reported, _check_device, p, cfg)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    for key in ("model", "benchmark", "reward", "estimator", "eval", "logger"):
        _guarded(p, reported, _section, p, cfg, key)
    if "sft" in stages:
        _guarded(p, reported, _section, p, cfg, "trainer.sft", world_size)
    if "grpo" in stages:
        _guarded(p, reported, _section, p, cfg, "trainer.grpo", world_size)
    if _guarded(p, reported, lambda: cfg.spl.enabled):
        _guarded(p, reported, _section, p, cfg, "spl")
    if "pope" in stages:
        _guarded(p, reported, _section, p, cfg, "pope")
    if "generate" in stages:  # where the responses go, and who answers (baseline=none | modular)
        _guarded(p, reported, _section, p, cfg, "generate")
        _guarded(p, reported, _section, p, cfg, "baseline")
    _guarded(p, reported, _section, p, cfg, "opbench", stages)  # template/tau/judge always; files for stage=opbench
    # reference weights always (the multirun's report uses them); runs for report/compare
    _guarded(p, reported, _section, p, cfg, "report", stages)
    _guarded(p, reported, _section, p, cfg, "hub", stages)  # hub.push: model id, token, Hub reachable, a training stage
    if _guarded(p, reported, lambda: cfg.deepspeed.enabled):
        _guarded(p, reported, _check_deepspeed, p, cfg)
    _guarded(p, reported, _models_and_files, p, cfg, stages, needs)
    _guarded(p, reported, _check_data_size, p, cfg, stages)
    if p:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(p)))


def _check_device(p: Problems, cfg: DictConfig) -> None:
    """``device``: auto, cpu, cuda or cuda:N, and CUDA present when a cuda device is asked for."""
    if cfg.device not in DEVICES and not str(cfg.device).startswith("cuda:"):
        p.add("device", f"expected auto, cpu, cuda or cuda:N (got {cfg.device!r})")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.add("device", f"{cfg.device!r} requested but CUDA is not available")
