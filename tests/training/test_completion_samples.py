"""The project's sample writer (grpo/completions.jsonl, ``completion_samples_every``) and TRL's own completion log
(``log_completions``: table and parquet) are separate settings; every shipped trainer preset writes the file."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import TINY, completion_length, make_items, tiny_grpo, with_trl
from omegaconf import OmegaConf

from opgrpo.training.grpo import GRPOSettings, grpo_config, run_grpo
from opgrpo.utils.jsonio import read_jsonl

PRESETS = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "trainer").glob("*.yaml"))


def _preset(compose, name: str) -> GRPOSettings:
    return OmegaConf.to_object(compose([f"trainer={name}"]).trainer.grpo)


def test_presets_are_found():
    assert {"cpu", "paper"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_preset_writes_completions_jsonl_and_leaves_trl_table_off(compose, tiny_model, tmp_path,
                                                                                preset):
    settings = _preset(compose, preset)
    assert settings.completion_samples_every > 0 and settings.completion_samples > 0
    assert grpo_config(settings, tmp_path, world_size=1).log_completions is False  # TRL's parquet: GBs on the paper run
    # the preset's logging keys as shipped, the batch geometry shrunk to the tiny model; run until the first sample
    every = settings.completion_samples_every
    shrunk = with_trl(GRPOSettings, **TINY, num_train_epochs=1.0, max_steps=every, save_steps=1000, learning_rate=1e-5)
    run = replace(settings, prompts_per_step=shrunk.prompts_per_step, mini_batch_size=shrunk.mini_batch_size,
                  max_prompt_length=shrunk.max_prompt_length, trl={**settings.trl, **shrunk.trl})
    run_grpo(tiny_model, make_items(2), [completion_length], [1.0], run, tmp_path)
    rows = read_jsonl(tmp_path / "completions.jsonl")
    # one generation batch holds 2 prompts x 2 completions
    assert [r["step"] for r in rows] == [every] * min(settings.completion_samples, 4)
    assert set(rows[0]) == {"step", "prompt", "completion", "rewards", "advantage"}
    assert set(rows[0]["rewards"]) == {"completion_length"}
    assert not (tmp_path / "completions").exists()  # TRL's own parquet log stays off


def test_the_two_completion_logs_are_switched_separately(tiny_model, tmp_path):
    base = tiny_grpo(max_steps=1, save_steps=100, completion_samples_every=1)
    assert grpo_config(replace(base, trl={**base.trl, "log_completions": True}), tmp_path).log_completions is True
    off = replace(base, completion_samples_every=0)  # 0: the project's writer off
    assert off.problems() == []
    run_grpo(tiny_model, make_items(2), [completion_length], [1.0], off, tmp_path / "off")
    assert not (tmp_path / "off" / "completions.jsonl").exists()
    assert GRPOSettings(completion_samples_every=-1).problems() == ["completion_samples_every: must be >= 0 (got -1)"]
    assert GRPOSettings(completion_samples=0).problems() == ["completion_samples: must be positive (got 0)"]
