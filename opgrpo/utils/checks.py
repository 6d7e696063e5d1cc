"""Collecting configuration problems: every config dataclass reports *all* its mistakes at once.

Each config section (``RewardConfig``, ``GRPOSettings``, ``EstimatorConfig``, ...) implements
``problems(self) -> list[str]`` with messages ``"<key relative to the section>: <what is wrong>"``, built
with a :class:`Problems` collector, and ``validate(self)`` that raises :class:`ConfigProblemsError` listing
them (``raise_if_any``). The Hydra app gathers the sections' problems under their full config keys
(``reward.tau_cov``, ``trainer.grpo.trl.num_generations``); a notebook user gets the same messages from ``validate()``.

String settings with a fixed set of values are :class:`Choice` enums (``enum.StrEnum``): the Hydra schema types
the field with the enum, so OmegaConf rejects a wrong value while the config is composed, naming the key and the
allowed values; code that builds the dataclasses from Python with plain strings gets the same message from
``problems()`` (:meth:`Problems.enum`). Only stdlib here: the lower layers never import OmegaConf.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from enum import Enum, StrEnum
from typing import Any


class Choice(StrEnum):
    """A string setting's allowed values (members named by their value, as OmegaConf converts a YAML string by member
    name). A member is a ``str``: it equals, hashes, prints, formats and ``json.dumps`` as its value; its ``repr`` is
    the value's too, so messages and ``opgrpo stage=describe`` show ``'bucketed'``, not ``<RewardMode.bucketed: ...>``.
    """

    def __repr__(self) -> str:
        return repr(self.value)


def choice_enum(name: str, values: Iterable[str], module: str) -> type[Choice]:
    """A :class:`Choice` enum with one member per value, for choices whose tuple another module owns (e.g.
    ``opgrpo.text.perspectives.MASKINGS``); ``module``: the defining module's ``__name__`` (pickling)."""
    return Choice(name, [(v, v) for v in values], module=module)


class ConfigProblemsError(ValueError):
    """One or more invalid settings; ``problems`` holds one ``key: message`` string each."""

    def __init__(self, problems: Sequence[str], section: str = ""):
        self.problems = list(problems)
        where = f" in {section}" if section else ""
        super().__init__(f"invalid setting(s){where}: " + "; ".join(self.problems))


class Problems(list):
    """A list of ``key: message`` strings with the common checks; keys get ``prefix`` (e.g. ``weights.``)."""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def add(self, key: str, message: str) -> None:
        self.append(f"{self.prefix}{key}: {message}")

    def extend_from(self, prefix: str, problems: Iterable[str]) -> None:
        """Add a nested section's problems under ``prefix`` (``lora.`` -> ``lora.r: ...``)."""
        self.extend(f"{self.prefix}{prefix}{p}" for p in problems)

    def env_name(self, key: str, value: str) -> None:
        """``value`` is the name of an environment variable (or ""): never a key typed in its place, which the message
        does not repeat (opgrpo.utils.redact.env_name_problem)."""
        from opgrpo.utils.redact import env_name_problem

        if env_name_problem(value):
            self.add(key, env_name_problem(value))

    def choice(self, key: str, value: Any, choices: Iterable[Any]) -> None:
        choices = tuple(choices)
        if value not in choices:
            self.add(key, f"expected one of {', '.join(map(str, choices))} (got {value!r})")

    def enum(self, key: str, value: Any, choices: type[Enum]) -> None:
        """``value`` is a member of the enum ``choices`` or one's value (a plain string from Python code)."""
        try:
            choices(value)
        except (ValueError, TypeError):
            self.add(key, f"must be one of [{', '.join(str(m.value) for m in choices)}]; got {value!r}")

    def finite(self, key: str, value: Any) -> bool:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            self.add(key, f"must be a finite number (got {value!r})")
        return ok

    def positive(self, key: str, value: Any) -> None:
        if self.finite(key, value) and value <= 0:
            self.add(key, f"must be positive (got {value})")

    def non_negative(self, key: str, value: Any) -> None:
        if self.finite(key, value) and value < 0:
            self.add(key, f"must be >= 0 (got {value})")

    def unit(self, key: str, value: Any, *, open_high: bool = False) -> None:
        """``value`` in [0, 1] (or [0, 1) with ``open_high``)."""
        if self.finite(key, value) and not (0.0 <= value < 1.0 if open_high else 0.0 <= value <= 1.0):
            self.add(key, f"must be in [0, {'1)' if open_high else '1]'} (got {value})")

    def raise_if_any(self, section: str = "") -> None:
        if self:
            raise ConfigProblemsError(self, section)
