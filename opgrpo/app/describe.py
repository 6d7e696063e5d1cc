"""``opgrpo stage=describe``: every setting of the sections a user edits most, with its value and meaning.

The text comes from the attribute docstrings of the config dataclasses (opgrpo.utils.fielddocs), the values from the
run's typed config. ``describe=KEY`` picks one section (``describe=trainer.grpo``), ``describe=all`` every section
and the top-level keys (``seed``, ``resume``, ``init_from``, ...). An unknown section is a start-up problem of the
key ``describe`` that lists the valid ones (``describe_problem``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from enum import Enum
from typing import Any

from opgrpo.utils.fielddocs import field_docs
from opgrpo.utils.redact import redact

DEFAULT_SECTIONS = ("reward", "trainer.grpo", "estimator")
TOP_LEVEL = "top-level"
"""The name ``describe=all`` gives the keys that belong to no section."""


def sections(cfg: Any, prefix: str = "") -> list[str]:
    """Every section of ``cfg`` (a config dataclass), nested ones as ``trainer.grpo``."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.append(f"{prefix}{f.name}")
            out.extend(sections(value, f"{prefix}{f.name}."))
    return out


def _section(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
    return node if dataclasses.is_dataclass(node) else None


def describe_problem(cfg: Any, section: str) -> str:
    """Why ``describe=section`` names no section ("" when it does), listing the valid ones."""
    if section in ("", "all") or _section(cfg, section) is not None:
        return ""
    return f"no config section {section!r}; expected all or one of: {', '.join(sections(cfg))}"


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in vars(value).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rows(node: Any, prefix: str, nested: bool = True) -> Iterator[tuple[str, Any, str]]:
    docs = field_docs(type(node))
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            if nested:
                yield from _rows(value, f"{prefix}{f.name}.")
            continue
        if f.name == "trl" and isinstance(value, dict):  # TRL's config fields by TRL's name, one row each
            what = getattr(node, "trl_config", "TRL config")
            for name, item in value.items():
                yield f"{prefix}trl.{name}", _plain(item), f"{what} field (TRL's documentation)"
            continue
        yield f"{prefix}{f.name}", _plain(value), docs.get(f.name, "")


def _block(title: str, doc: str | None, rows: list[tuple[str, Any, str]]) -> list[str]:
    out = [f"== {title} ==" + (f"  {doc.strip().splitlines()[0]}" if doc else "")]
    width = max((len(k) + len(repr(v)) for k, v, _ in rows), default=0) + 3
    out += [f"  {f'{k} = {v!r}':<{width}}  {text}" for k, v, text in rows]
    return [*out, ""]


def describe(cfg: Any, section: str = "") -> str:
    """The settings of ``section`` ("" = reward, trainer.grpo and estimator; "all" = the top-level keys and every
    section) of the typed config ``cfg``; credentials in URLs hidden (opgrpo.utils.redact)."""
    problem = describe_problem(cfg, section)
    if problem:
        raise KeyError(f"describe: {problem}")
    out: list[str] = []
    if section == "all":
        out += _block(TOP_LEVEL, "Keys of no section: what runs, seeds, resume, the objective.",
                      list(_rows(cfg, "", nested=False)))
        keys = [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]
    else:
        keys = [section] if section else list(DEFAULT_SECTIONS)
    for key in keys:
        node = _section(cfg, key)
        out += _block(key, type(node).__doc__, list(_rows(node, f"{key}.")))
    return redact("\n".join(out))
