"""Shared test helpers (plain functions and constants; fixtures are in conftest.py)."""
from __future__ import annotations

from opgrpo.benchmark import Item, Perspective


def make_items(n: int = 8) -> list[Item]:
    names = ["Honesty", "Duty to oneself", "Care for others", "Autonomy"]
    return [
        Item(
            id=f"it{i}",
            situation=f"Telling a white lie to friend number {i} about a gift",
            perspectives=[Perspective(name, f"item it{i} shows why {name.lower()} matters.") for name in names[: 2 + i % 3]],
            source=f"test:{i}",
        )
        for i in range(n)
    ]


def completion_length(prompts, completions, **kw):
    return [len(c[0]["content"]) / 50.0 for c in completions]


TINY = dict(num_generations=2, prompts_per_step=2, mini_batch_size=1, per_device_batch_size=2,
            max_completion_length=8, max_prompt_length=256)
