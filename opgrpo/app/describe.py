"""``opgrpo stage=describe``: every setting of the sections a user edits most, with its value and meaning.

The text comes from the attribute docstrings of the config dataclasses (opgrpo.utils.fielddocs), the values
from the composed config (interpolations shown unresolved, so nothing is loaded). ``describe=KEY`` picks
one section (``describe=trainer.grpo``), ``describe=all`` every section.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from opgrpo.utils.fielddocs import field_docs

DEFAULT_SECTIONS = ("reward", "trainer.grpo", "estimator")


def _rows(node: DictConfig, prefix: str) -> Iterator[tuple[str, Any, str]]:
    cls = OmegaConf.get_type(node)
    docs = field_docs(cls) if cls is not None and dataclasses.is_dataclass(cls) else {}
    for key in node.keys():
        child = node._get_node(key)
        child_type = OmegaConf.get_type(child) if OmegaConf.is_config(child) else None
        if OmegaConf.is_dict(child) and child_type is not None and dataclasses.is_dataclass(child_type):
            yield from _rows(child, f"{prefix}{key}.")
            continue
        if key == "trl" and OmegaConf.is_dict(child):  # TRL's config fields by TRL's name, one row each
            for name in child.keys():
                value = child._get_node(name)._value()
                yield f"{prefix}trl.{name}", value, f"trl.{getattr(cls, 'trl_config', 'TRL config')} field"
            continue
        if OmegaConf.is_missing(node, key):
            value: Any = "???"
        elif OmegaConf.is_interpolation(node, key):
            value = child._value()
        else:
            value = OmegaConf.to_container(child) if OmegaConf.is_config(child) else child._value()
        yield f"{prefix}{key}", value, docs.get(str(key), "")


def describe(cfg: DictConfig, section: str = "") -> str:
    """The settings of ``section`` ("" = reward, trainer.grpo and estimator; "all" = every section)."""
    if section == "all":
        keys = [k for k in cfg.keys() if OmegaConf.is_dict(cfg._get_node(k)) and k != "hydra"]
    else:
        keys = [section] if section else list(DEFAULT_SECTIONS)
    out = []
    for key in keys:
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if not OmegaConf.is_dict(node):
            raise KeyError(f"describe: no config section {key!r}")
        cls = OmegaConf.get_type(node)
        out.append(f"== {key} ==" + (f"  {cls.__doc__.strip().splitlines()[0]}" if cls and cls.__doc__ else ""))
        rows = list(_rows(node, f"{key}."))
        width = max((len(k) + len(repr(v)) for k, v, _ in rows), default=0) + 3
        for k, v, text in rows:
            out.append(f"  {f'{k} = {v!r}':<{width}}  {text}")
        out.append("")
    return "\n".join(out)
