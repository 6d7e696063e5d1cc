"""String settings with fixed choices are Enum fields (opgrpo.utils.checks.Choice, a StrEnum) that OmegaConf validates
when the config is composed (issue 18.1: no hand-written choice lists); a wrong value fails at start-up naming the key
and the choices, and what the run writes (config.yaml, metrics, W&B config) keeps plain strings."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import typing
from enum import Enum
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from opgrpo.app.runconfig import to_config
from opgrpo.app.schema import OPGRPOConfig

BIN = Path(sys.executable).parent / "opgrpo"
CHOICES = {"reward.mode": "[bucketed, continuous]",
           "spl.mode": "[loss, reward]",
           "eval.nli.backend": "[sequence_classification, causal_lm, none]"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def _enum_fields(cls: type, prefix: str = ""):
    """(key, enum class) of every Enum-typed field of the schema, nested sections included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if isinstance(t, type) and issubclass(t, Enum):
            yield prefix + f.name, t
        elif dataclasses.is_dataclass(t):
            yield from _enum_fields(t, f"{prefix}{f.name}.")


def test_the_choice_settings_are_enums_named_by_their_values():
    fields = dict(_enum_fields(OPGRPOConfig))
    for key in ("reward.mode", "reward.masking", "reward.aggregation", "eval.nli.backend", "eval.nli.splitter",
                "eval.nli.text", "eval.judge.kind", "estimator.mining.masking", "estimator.mining.train_text",
                "estimator.mining.prompt", "estimator.judge.kind", "estimator.judge.mode", "estimator.judge.unlabelled",
                "estimator.train.batch_sampler", "estimator.search.batch_sampler", "spl.mode", "pope.weighting",
                "baseline.kind", "baseline.prompts", "benchmark.format", "benchmark.on_error",
                "eval.generation.prompt", "eval.generation.backend", "logger.backend", "logger.wandb.mode"):
        assert key in fields, key
    for key, enum in fields.items():
        # OmegaConf converts a YAML string by member NAME; the lower layers compare and look up by VALUE
        assert all(m.name == m.value and isinstance(m, str) for m in enum), key
        # a launcher (submitit) pickles the composed config: every enum, functional ones too, must unpickle
        assert all(pickle.loads(pickle.dumps(m)) is m for m in enum), key


def test_the_tuples_other_code_uses_are_unchanged():
    from opgrpo.estimator.config import BATCH_SAMPLERS, JUDGE_PROMPT_NAMES, TRAIN_TEXTS
    from opgrpo.evaluation.config import BACKENDS, SPLITTERS, TEXTS
    from opgrpo.evaluation.modular import BASELINE_KINDS
    from opgrpo.evaluation.pope import WEIGHTINGS
    from opgrpo.judges import CHAT_KINDS, YES_NO_KINDS
    from opgrpo.reward.config import AGGREGATIONS, MODES
    from opgrpo.training.grpo import TRL_CHOICES
    from opgrpo.training.spl import SPL_MODES

    assert MODES == ("bucketed", "continuous") and AGGREGATIONS == ("total", "components", "gdpo")
    # TRL's string fields checked at start-up (trainer.grpo.trl.*; TRL itself checks them only once training runs)
    LOSS_TYPES = TRL_CHOICES["loss_type"]
    assert LOSS_TYPES == ("dapo", "bnpo", "grpo", "dr_grpo", "cispo", "sapo", "luspo", "vespo")
    assert (TRL_CHOICES["scale_rewards"], TRL_CHOICES["vllm_mode"], SPL_MODES) == (
        ("group", "batch", "none"), ("colocate", "server"), ("loss", "reward"))
    assert (BACKENDS, SPLITTERS, TEXTS) == (("sequence_classification", "causal_lm", "none"),
                                            ("sentence_splitter", "newline"), ("auto", "core", "full"))
    assert (TRAIN_TEXTS, JUDGE_PROMPT_NAMES, BATCH_SAMPLERS) == (("raw", "masked"), ("authors", "situation"),
                                                                 ("no_duplicates", "batch_sampler"))
    assert (YES_NO_KINDS, CHAT_KINDS) == (("none", "transformers", "http", "labels"), ("none", "transformers", "http"))
    assert (BASELINE_KINDS, WEIGHTINGS) == (("none", "modular"), ("snips", "ips"))
    assert all(type(v) is str for v in (*MODES, *LOSS_TYPES, *BACKENDS, *YES_NO_KINDS))


def test_a_member_behaves_as_its_string():
    from opgrpo.reward.config import RewardConfig, RewardMode

    mode = RewardMode.continuous
    assert mode == "continuous" and str(mode) == f"{mode}" == "continuous" and repr(mode) == "'continuous'"
    assert {"continuous": 1}[mode] == 1 and mode in ("bucketed", "continuous")
    assert json.loads(json.dumps(dataclasses.asdict(RewardConfig(mode=mode))))["mode"] == "continuous"


@pytest.mark.parametrize("section,cls_path,field,bad", [
    ("reward", "opgrpo.reward.config:RewardConfig", "mode", "bogus"),
    ("eval.nli", "opgrpo.evaluation.nli:NLIConfig", "backend", "magic"),
    ("estimator.judge", "opgrpo.estimator.config:JudgeConfig", "mode", "sampling"),
    ("spl", "opgrpo.training.spl:SPLConfig", "mode", "both"),
])
def test_python_callers_with_plain_strings_still_get_the_message(section, cls_path, field, bad):
    """No Hydra: the dataclasses built from Python with plain strings; the enum itself checks the value."""
    from opgrpo.utils.imports import import_object

    cls = import_object(cls_path)
    choices = [m.value for m in typing.get_type_hints(cls)[field]]
    assert [p for p in cls(**{field: bad}).problems() if p.startswith(f"{field}:")] == [
        f"{field}: must be one of [{', '.join(choices)}]; got '{bad}'"]
    assert CHOICES.get(f"{section}.{field}", f"[{', '.join(choices)}]") == f"[{', '.join(choices)}]"
    for value in choices:  # plain strings, as a notebook passes them
        assert not [p for p in cls(**{field: value}).problems() if p.startswith(f"{field}:")], value


def test_reward_config_from_python_reports_a_wrong_mode():
    from opgrpo.reward.config import RewardConfig

    assert RewardConfig(mode="bogus").problems() == ["mode: must be one of [bucketed, continuous]; got 'bogus'"]
    assert RewardConfig(mode="continuous").problems() == []
    with pytest.raises(ValueError, match=r"reward\.mode: must be one of \[bucketed, continuous\]; got 'bogus'"):
        RewardConfig(mode="bogus").validate()


def test_composition_rejects_a_wrong_value_naming_key_and_choices(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        compose(["experiment=cpu_demo", "reward.mode=bogus"])
    cause = err.value.__cause__
    assert cause.full_key == "reward.mode" and "expected one of [bucketed, continuous]" in str(cause)


def test_composed_values_become_enum_members_of_the_lower_layer(compose):
    from opgrpo.evaluation.config import NLIBackend
    from opgrpo.reward.config import RewardMode
    from opgrpo.training.spl import SPLMode

    cfg = compose(["experiment=cpu_demo", "reward.mode=continuous", "spl.mode=reward",
                   "trainer.grpo.trl.loss_type=dr_grpo"])
    assert to_config(cfg).reward.mode is RewardMode.continuous
    assert to_config(cfg).spl.mode is SPLMode.reward
    assert type(to_config(cfg).trainer.grpo.trl["loss_type"]) is str  # TRL's field: passed to TRL as written
    assert to_config(cfg).eval.nli.backend is NLIBackend.causal_lm  # from the preset's YAML
    assert compose(["reward=continuous"]).reward.mode == "continuous"  # a group option's YAML string


@pytest.mark.parametrize("override, key, bad", [
    ("reward.mode=bogus", "reward.mode", "bogus"),
    ("spl.mode=ppo", "spl.mode", "ppo"),
    ("eval.nli.backend=1", "eval.nli.backend", "1"),
])
def test_composition_rejects_each_wrong_choice_naming_key_and_choices(compose, override, key, bad):
    """What the removed command-line pre-check found, the structured config finds when Hydra composes."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        compose(["experiment=cpu_demo", override])
    cause = err.value.__cause__
    assert cause.full_key == key and f"expected one of {CHOICES[key]}" in str(cause) and bad in str(cause)


@pytest.mark.parametrize("override", ["reward.mode=RewardMode.continuous", "reward=continuous", "~reward.mode",
                                      "reward.mode=null"])
def test_composition_accepts_what_is_not_a_wrong_choice(compose, override):
    """A group option, a member's qualified name, a deletion or null are not wrong choices (null: no value)."""
    try:
        compose(["experiment=cpu_demo", override])
    except Exception as exc:  # noqa: BLE001 - only a wrong-choice rejection fails this test
        assert "expected one of" not in str(getattr(exc, "__cause__", exc)), override


def test_a_wrong_choice_fails_at_startup_naming_key_and_choices(tmp_path):
    """Through the real entrypoint: Hydra's composition error names the key and the choices; no run has started, so
    there is no run directory (no status.json, no config.yaml) and no Python traceback."""
    res = _run(["experiment=cpu_demo", "stage=describe", "reward.mode=bogus", f"hydra.run.dir={tmp_path}/run"],
               tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode != 0, log[-3000:]
    assert "Traceback" not in log
    assert "reward.mode" in log and "Invalid value 'bogus', expected one of [bucketed, continuous]" in log
    assert not (tmp_path / "run").exists()


def test_a_wrong_choice_in_a_sweep_fails_before_any_job(tmp_path):
    res = _run(["-m", "experiment=cpu_demo", "stage=describe", "reward.mode=bucketed,bogus",
                f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert res.returncode == 2, (res.stdout + res.stderr)[-3000:]
    assert "arm 1 (reward.mode=bogus)" in res.stderr, res.stderr[-3000:]
    assert "Invalid value 'bogus', expected one of [bucketed, continuous]" in res.stderr
    assert "full_key: reward.mode" in res.stderr
    assert "arm 0" not in res.stderr  # the valid arm is not listed
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_over_choices_composes_and_writes_plain_strings(tmp_path):
    """Hydra sweeps over enum keys still compose; config.yaml and the metrics keep plain strings (yaml.safe_load)."""
    res = _run(["-m", "experiment=cpu_demo", "stage=describe", "reward.mode=bucketed,continuous",
                "trainer.grpo.trl.loss_type=grpo", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    modes = []
    for job in ("0", "1"):
        text = (tmp_path / "sweep" / job / "config.yaml").read_text()
        assert "!!python" not in text and "RewardMode" not in text
        config = yaml.safe_load(text)
        modes.append(config["reward"]["mode"])
        assert config["trainer"]["grpo"]["trl"]["loss_type"] == "grpo" and config["eval"]["nli"]["backend"] == "causal_lm"
        assert json.loads((tmp_path / "sweep" / job / "status.json").read_text())["status"] == "completed"
    assert modes == ["bucketed", "continuous"]


def test_what_a_run_records_keeps_plain_strings(compose, tmp_path):
    """The W&B config, metrics.jsonl/summary and the model card's settings of enum settings."""
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.tracking import wandb_init_kwargs

    cfg = compose(["experiment=cpu_demo", "reward.mode=continuous", "logger.wandb.mode=offline",
                   "trainer.grpo.trl.loss_type=dr_grpo", "+trainer.grpo.trl.scale_rewards=batch"])
    config = wandb_init_kwargs(to_config(cfg), tmp_path, ["reward.mode=continuous"])["config"]
    assert json.loads(json.dumps(config))["reward"]["mode"] == "continuous"
    assert yaml.safe_load(OmegaConf.to_yaml(cfg, resolve=True))["reward"]["mode"] == "continuous"
    run = RunDir(tmp_path / "run")
    run.log("grpo", {"settings": dataclasses.asdict(to_config(cfg).trainer.grpo)})
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["settings/trl/loss_type"] == "dr_grpo" and record["settings/trl/scale_rewards"] == "batch"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["grpo/settings/trl/loss_type"] == "dr_grpo"


def test_describe_shows_the_values_as_strings(compose):
    from opgrpo.app.describe import describe

    text = describe(to_config(compose(["experiment=cpu_demo", "reward.mode=continuous"])), "reward")
    assert "reward.mode = 'continuous'" in text and "reward.masking = 'situation'" in text
