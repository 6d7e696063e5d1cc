"""Composition of every config group and experiment, and every start-up validation error."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from opgrpo.config import register, to_object
from opgrpo.paths import config_dir
from opgrpo.validate import ConfigError, validate

CONF = config_dir()
GROUPS = ["model", "benchmark", "reward", "estimator", "trainer", "eval", "deepspeed", "logger", "launcher"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str], return_hydra_config: bool = False):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("opgrpo", overrides=overrides, return_hydra_config=return_hydra_config)


def test_every_group_has_options():
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ is empty"
    assert {"cpu_demo", "paper"} <= set(_options("experiment"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    for option in _options(group):
        cfg = _compose([f"{group}={option}"], return_hydra_config=group == "launcher")
        assert OmegaConf.select(cfg, group) is not None or group == "launcher"
        if group == "launcher" and option != "local":
            target = cfg.hydra.launcher._target_
            assert option.split("_")[-1] in target.lower(), target


@pytest.mark.parametrize("experiment", ["cpu_demo", "paper"] + ["__others__"])
def test_every_experiment_composes(experiment):
    names = _options("experiment") if experiment == "__others__" else [experiment]
    for name in names:
        cfg = _compose([f"experiment={name}"])
        assert name in cfg.tags or experiment == "__others__"


def test_cpu_demo_is_valid_and_small():
    cfg = _compose(["experiment=cpu_demo"])
    validate(cfg)
    assert cfg.pipeline == ["estimator", "eval_base", "sft", "grpo", "eval"]
    assert cfg.eval.nli.backend == "causal_lm"
    assert cfg.trainer.grpo.max_completion_length <= 128
    # the paper's rules and weights, thresholds calibrated for the MiniLM estimator (conf/reward/cpu.yaml)
    r = cfg.reward
    assert (r.weights.coverage, r.weights.uniqueness, r.mode, r.masking) == (0.3, 0.3, "bucketed", "situation")
    assert r.tau_cov < r.tau_uniq < 0.7


def test_paper_preset_has_spec_numbers():
    cfg = _compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"])
    r = cfg.reward
    assert (r.weights.coverage, r.weights.uniqueness, r.weights.format, r.weights.tag) == (0.3, 0.3, 0.1, 1.0)
    assert (r.tau_cov, r.tau_uniq, r.mode, r.masking) == (0.7, 0.78, "bucketed", "situation")
    g = cfg.trainer.grpo
    assert (g.num_generations, g.prompts_per_step, g.mini_batch_size) == (10, 1024, 256)
    assert (g.lr, g.beta, g.entropy_coef, g.epsilon, g.temperature) == (1e-6, 0.001, 0.0, 0.2, 1.0)
    assert (g.max_prompt_length, g.max_completion_length, g.num_epochs) == (512, 800, 15)
    s = cfg.trainer.sft
    assert (s.epochs, s.lr, s.scheduler, s.warmup_ratio, s.global_batch_size, s.max_length) == (1, 1e-5, "cosine", 0.1, 256, 1300)
    t = cfg.estimator.train
    assert (t.batch_size, t.epochs, t.lr, t.warmup_ratio, t.mnrl_scale) == (32, 2, 2.1e-5, 0.03, 60)
    assert cfg.estimator.base_model == "sentence-transformers/paraphrase-mpnet-base-v2"
    assert cfg.estimator.search.n_trials == 20
    assert cfg.eval.nli.model == "microsoft/deberta-v2-xlarge-mnli"
    assert (cfg.eval.generation.temperature, cfg.eval.generation.top_p, cfg.eval.generation.max_new_tokens) == (0.7, 0.9, 1200)
    assert cfg.eval.threshold == 0.33
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-3B-Instruct"
    assert (cfg.benchmark.val_fraction, cfg.benchmark.split_seed) == (0.1, 42)


def test_sections_become_lower_layer_dataclasses():
    from opgrpo.rewards import RewardConfig

    cfg = _compose(["experiment=cpu_demo", "reward.weights.coverage=0.5"])
    reward = to_object(cfg, "reward")
    assert isinstance(reward, RewardConfig) and reward.weights.coverage == 0.5


def test_unknown_key_fails_at_composition():
    with pytest.raises(Exception, match="reward.weights.coverge"):
        _compose(["reward.weights.coverge=0.1"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("reward.weights.coverage=-0.1", "reward.weights.coverage"),
        ("reward.tau_cov=1.5", "reward.tau_cov"),
        ("reward.tau_uniq=-0.2", "reward.tau_uniq"),
        ("reward.mode=fuzzy", "reward.mode"),
        ("stage=train", "stage"),
        ("pipeline=[estimator,finetune]", "pipeline"),
        ("eval.threshold=2", "eval.threshold"),
        ("model.name_or_path=/no/such/model", "model.name_or_path"),
        ("benchmark.train_file=/no/such/file.csv", "benchmark.train_file"),
        ("benchmark.test_file=/no/such/test.csv", "benchmark.test_file"),
        ("trainer.grpo.num_generations=3", "trainer.grpo"),
        ("estimator.mining.pair_threshold=1.2", "estimator.mining.pair_threshold"),
        ("estimator.judge.kind=oracle", "estimator.judge.kind"),
        ("estimator.judge.labels_file=/no/such/labels.csv", "estimator.judge.labels_file"),
        ("estimator.judge.labels_file=''", "estimator.judge.labels_file"),
        ("estimator.judge.kind=none estimator.judge.labels_file=/no/such/labels.csv", "estimator.judge.labels_file"),
        ("estimator.judge.unlabelled=same", "estimator.judge.unlabelled"),
        ("eval.nli.backend=magic", "eval.nli.backend"),
        ("benchmark.on_error=ignore", "benchmark.on_error"),
        ("deepspeed=zero2", "deepspeed"),
        ("logger.wandb.mode=sometimes", "logger.wandb.mode"),
    ],
)
def test_validation_names_the_key(override, key):
    cfg = _compose(["experiment=cpu_demo", *override.split()])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert key in str(err.value)


def test_all_zero_weights_fail():
    cfg = _compose(["experiment=cpu_demo"] + [f"reward.weights.{k}=0" for k in ("coverage", "uniqueness", "format", "tag")])
    with pytest.raises(ConfigError, match="reward.weights"):
        validate(cfg)


def test_several_mistakes_reported_together():
    cfg = _compose(["experiment=cpu_demo", "reward.tau_cov=2", "eval.threshold=-1"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "reward.tau_cov" in str(err.value) and "eval.threshold" in str(err.value)
