"""From Hydra's composed ``DictConfig`` to the one typed config of a run (``OPGRPOConfig``), built once.

``to_config(cfg)`` is the only place that reads the raw ``DictConfig``: it lists every missing value (``???``) the
chosen stages need and every interpolation that leads to one (``trainer.sft.seed: ${seed}`` with ``seed=???``;
``${init_from}/estimator/model`` with no ``init_from``), each naming its key, as one ``ConfigError``; then it resolves
the config and turns it into the schema's dataclasses (``OmegaConf.to_object``). Missing values no chosen stage reads
become "" so that ``stage=report`` needs no policy. Enum choices were already checked by OmegaConf when Hydra composed
the config. Everything after this reads the typed object (opgrpo.app.validate, opgrpo.app.context, the stages).
"""
from __future__ import annotations

import copy
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import (
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from opgrpo.app.schema import OPGRPOConfig


class ConfigError(ValueError):
    """A configuration mistake; the message names the offending key(s)."""


def config_error(problems: list[str]) -> ConfigError:
    """One ``ConfigError`` listing ``problems`` (``key: message`` each, duplicates once)."""
    return ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(problems)))


MISSING_HINT = "missing value (set it on the command line, e.g. key=value, or in an experiment preset)"
_REF = re.compile(r"\$\{([A-Za-z_][\w.\[\]-]*)\}")  # ${key} and ${a.b[0]}, also inside ${resolver:${key}}


def stages_of(cfg: Any) -> list[str]:
    """The stages a config runs: ``stage``, or the ``pipeline`` list for ``stage=pipeline``."""
    return list(cfg.pipeline) if cfg.stage == "pipeline" else [str(cfg.stage)]


def needs(stages: list[str], cfg: Any) -> dict[str, bool]:
    """What the chosen stages read: the policy ``model.name_or_path`` (training, an evaluation that neither reads a
    responses file nor evaluates another policy, stage=generate unless it answers with ``eval.model_path``), the
    training data, the test data, the evaluation's responses file and NLI model, stage=generate's sections, POPE's
    logged responses. ``cfg``: the DictConfig or the typed config (both read by attribute)."""
    own_policy = not (cfg.eval.model_path or cfg.eval.responses_file)
    return {"policy": any(s in ("sft", "grpo") for s in stages)
            or (any(s in ("eval", "eval_base") for s in stages) and own_policy)
            or ("generate" in stages and not cfg.eval.model_path),
            "train": any(s in ("estimator", "sft", "grpo") for s in stages),
            "test": any(s in ("eval", "eval_base", "generate") for s in stages),
            "eval": any(s in ("eval", "eval_base") for s in stages),
            "generate": "generate" in stages,
            "pope": "pope" in stages}


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Every missing value (``???``) under ``node`` by full key, nothing resolved (an interpolation is not missing
    itself: ``interpolated_missing`` reports what it leads to); Hydra's own node skipped."""
    keys = []
    names = node.keys() if OmegaConf.is_dict(node) else range(len(node))
    for name in names:
        if not prefix and name == "hydra":  # Hydra's own node (when composed with it) has runtime-only missing values
            continue
        key = f"{prefix}[{name}]" if OmegaConf.is_list(node) else f"{prefix}.{name}" if prefix else str(name)
        child = node._get_node(name)
        if OmegaConf.is_missing(node, name):
            keys.append(key)
        elif OmegaConf.is_config(child) and not OmegaConf.is_interpolation(node, name):
            keys.extend(_missing_keys(child, key))
    return keys


def _missing(cfg: DictConfig, need: dict[str, bool]) -> list[str]:
    """The missing values (``???``) that the chosen stages need."""
    owner = {"model.name_or_path": need["policy"] or need["pope"], "benchmark.train_file": need["train"],
             "benchmark.test_file": need["test"] and not cfg.benchmark.test_files}
    sections = {"generate.": need["generate"], "baseline.": need["generate"]}  # read by stage=generate only
    return sorted(k for k in _missing_keys(cfg)
                  if owner.get(k, next((v for prefix, v in sections.items() if k.startswith(prefix)), True)))


def interpolated_missing(cfg: DictConfig) -> dict[str, list[str]]:
    """Keys that interpolate a missing value, under the missing key(s) they lead to (the key itself when none can be
    named). Whatever the stage, such a key fails wherever it is read, the resolved ``config.yaml`` included."""

    def state(key: str) -> str:
        try:
            OmegaConf.select(cfg, key, throw_on_missing=True)
        except MissingMandatoryValue:
            return "missing"
        except InterpolationToMissingValueError:
            return "broken"
        except Exception:  # noqa: BLE001 - another kind of failure (an unknown resolver): resolving reports it
            return "ok"
        return "ok"

    def sources(raw: str, seen: set[str]) -> list[str]:
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
                out.extend(sources(str(node._value()) if node is not None else "", seen))
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
                    for src in sources(str(child._value()), {key}) or [key]:
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


def _init_from_users(cfg: DictConfig) -> list[str]:
    """The keys that start from ``init_from`` (interpolate ``${init_from}``) while it is empty."""
    if OmegaConf.is_missing(cfg, "init_from") or cfg.init_from:  # a missing one is reported with its users
        return []

    def users(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "hydra":
                    yield from users(v, f"{prefix}{k}.")
        elif isinstance(node, str) and "${init_from}" in node:
            yield prefix[:-1]

    return list(users(OmegaConf.to_container(cfg, resolve=False)))


def to_config(cfg: DictConfig, problems: list[str] | None = None) -> OPGRPOConfig:
    """The run's typed config from Hydra's composed ``cfg``. Every missing value the chosen stages need, every
    interpolation that leads to one and an unset ``init_from`` that keys start from are problems naming their key:
    raised at once as one ``ConfigError``, or, given a ``problems`` list, added to it while the config is still built
    (those values read as "") so that validation can list everything else too. A value that cannot be built at all
    (a missing number) raises ``ConfigError`` with every problem found."""
    try:
        need = needs(stages_of(cfg), cfg)
    except OmegaConfBaseException:  # the stage keys themselves are missing: every missing key is reported
        need = dict.fromkeys(("policy", "train", "test", "eval", "generate", "pope"), True)
    broken = interpolated_missing(cfg)
    missing = _missing(cfg, need)
    found = []
    for key in sorted(set(missing) | set(broken)):
        users = ", ".join(k for k in broken.get(key, []) if k != key)
        found.append(f"{key}: {MISSING_HINT}"
                     + (f"; {users} interpolate{'s' if ',' not in users else ''} it" if users else ""))
    users = _init_from_users(cfg)
    if users:
        found.append(f"init_from: missing value: {', '.join(users)} start from it; set init_from=<a finished run "
                     "directory, e.g. of experiment=cpu_demo>")
    if found and problems is None:
        raise config_error(found)
    node = copy.deepcopy(cfg)
    schema = None
    for key in _missing_keys(cfg):  # read as "" (a policy for stage=report; a needed one is reported above)
        try:
            OmegaConf.update(node, key, "", force_add=False)
        except OmegaConfBaseException:  # not a string: the schema's default, else it stays missing and fails below
            schema = schema if schema is not None else OmegaConf.structured(OPGRPOConfig)
            default = OmegaConf.select(schema, key, default=None, throw_on_missing=False)
            if default is not None:
                OmegaConf.update(node, key, default, force_add=False)
    try:
        if "hydra" in node:
            with open_dict(node):
                del node["hydra"]
        config = OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "config"
        raise config_error(found or [f"{key}: {str(exc).splitlines()[0]}"]) from None
    if problems is not None:
        problems.extend(found)
    return config
