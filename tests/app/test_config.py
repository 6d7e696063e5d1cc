"""Composition of every config group and experiment, and every start-up validation error."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from opgrpo.app.paths import config_dir
from opgrpo.app.runconfig import to_config
from opgrpo.app.validate import ConfigError, check

CONF = config_dir()
GROUPS = ["model", "benchmark", "reward", "estimator", "trainer", "eval", "deepspeed", "logger", "launcher"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))



def test_every_group_has_options():
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ is empty"
    assert {"cpu_demo", "paper"} <= set(_options("experiment"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group, compose):
    for option in _options(group):
        cfg = compose([f"{group}={option}"], return_hydra_config=group == "launcher")
        assert OmegaConf.select(cfg, group) is not None or group == "launcher"
        if group == "launcher" and option != "local":
            target = cfg.hydra.launcher._target_
            assert option.split("_")[-1] in target.lower(), target


@pytest.mark.parametrize("experiment", ["cpu_demo", "paper"] + ["__others__"])
def test_every_experiment_composes(experiment, compose):
    names = _options("experiment") if experiment == "__others__" else [experiment]
    for name in names:
        cfg = compose([f"experiment={name}"])
        assert name in cfg.tags or experiment == "__others__"


def test_cpu_demo_is_valid_and_small(compose):
    cfg = compose(["experiment=cpu_demo"])
    check(cfg)
    assert cfg.pipeline == ["estimator", "eval_base", "sft", "grpo", "eval"]
    assert cfg.eval.nli.backend == "causal_lm"
    assert cfg.trainer.grpo.trl.max_completion_length <= 128
    # the paper's rules and weights, thresholds calibrated for the MiniLM estimator (conf/reward/cpu.yaml)
    r = cfg.reward
    assert (r.weights.coverage, r.weights.uniqueness, r.mode, r.masking) == (0.3, 0.3, "bucketed", "situation")
    assert r.tau_cov < r.tau_uniq < 0.7


def test_paper_preset_has_spec_numbers(compose):
    cfg = compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"])
    r = cfg.reward
    assert (r.weights.coverage, r.weights.uniqueness, r.weights.format, r.weights.tag) == (0.3, 0.3, 0.1, 1.0)
    assert (r.tau_cov, r.tau_uniq, r.mode, r.masking) == (0.7, 0.78, "bucketed", "situation")
    g, gt = cfg.trainer.grpo, cfg.trainer.grpo.trl
    assert (gt.num_generations, g.prompts_per_step, g.mini_batch_size) == (10, 1024, 256)
    assert (gt.learning_rate, gt.beta, gt.entropy_coef, gt.epsilon, gt.temperature) == (1e-6, 0.001, 0.0, 0.2, 1.0)
    assert (g.max_prompt_length, gt.max_completion_length, gt.num_train_epochs) == (512, 800, 15)
    s, st = cfg.trainer.sft, cfg.trainer.sft.trl
    assert (st.num_train_epochs, st.learning_rate, st.lr_scheduler_type, st.warmup_steps, s.global_batch_size,
            st.max_length) == (1, 1e-5, "cosine", 0.1, 256, 1300)
    t = cfg.estimator.train
    assert (t.batch_size, t.epochs, t.mnrl_scale) == (32, 2, 60)
    # trainer_tripetloss.py's values to the last digit (SPEC: 2.1457e-5, 0.0325), not 2.1e-5 / 0.03
    assert (t.lr, t.warmup_ratio) == (2.1456771788455288e-05, 0.03254893834779507)
    assert (round(t.lr, 9), round(t.warmup_ratio, 4)) == (2.1457e-5, 0.0325)
    assert cfg.estimator.base_model == "sentence-transformers/paraphrase-mpnet-base-v2"
    assert cfg.estimator.search.n_trials == 20
    assert cfg.eval.nli.model == "microsoft/deberta-v2-xlarge-mnli"
    assert (cfg.eval.generation.temperature, cfg.eval.generation.top_p, cfg.eval.generation.max_new_tokens) == (0.7, 0.9, 1200)
    assert cfg.eval.threshold == 0.33
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-3B-Instruct"
    assert (cfg.benchmark.val_fraction, cfg.benchmark.split_seed) == (0.1, 42)


def test_the_paper_preset_evaluates_the_policy_in_fp32(compose, monkeypatch):
    # the authors' extract.py loaded the policy without a dtype (fp32); training keeps model.dtype (bf16)
    from dataclasses import asdict

    from opgrpo.evaluation.run import generate_for_items
    from opgrpo.models import generation

    cfg = compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"])
    assert cfg.model.dtype == "bfloat16" and cfg.eval.generation.policy_dtype == "float32"
    loaded = []

    class Loaded(Exception):
        pass

    def load_policy(name, **kwargs):
        loaded.append(kwargs["dtype"])
        raise Loaded

    monkeypatch.setattr(generation, "load_policy", load_policy)
    gen = {**asdict(to_config(cfg).eval.generation), "backend": "transformers"}
    with pytest.raises(Loaded):  # called as stage=eval calls it: the eval settings, then the model section's
        generate_for_items([], "policy", **gen, dtype=cfg.model.dtype)
    assert loaded == ["float32"]


def test_sections_become_lower_layer_dataclasses(compose):
    from opgrpo.reward import RewardConfig

    cfg = compose(["experiment=cpu_demo", "reward.weights.coverage=0.5"])
    reward = to_config(cfg).reward
    assert isinstance(reward, RewardConfig) and reward.weights.coverage == 0.5


def test_unknown_key_fails_at_composition(compose):
    with pytest.raises(Exception, match="reward.weights.coverge"):
        compose(["reward.weights.coverge=0.1"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("reward.weights.coverage=-0.1", "reward.weights.coverage"),
        ("reward.tau_cov=1.5", "reward.tau_cov"),
        ("reward.tau_uniq=-0.2", "reward.tau_uniq"),
        ("stage=train", "stage"),
        ("pipeline=[estimator,finetune]", "pipeline"),
        ("eval.threshold=2", "eval.threshold"),
        ("model.name_or_path=/no/such/model", "model.name_or_path"),
        ("benchmark.train_file=/no/such/file.csv", "benchmark.train_file"),
        ("benchmark.test_file=/no/such/test.csv", "benchmark.test_file"),
        ("trainer.grpo.trl.num_generations=3", "trainer.grpo"),
        ("estimator.mining.pair_threshold=1.2", "estimator.mining.pair_threshold"),
        ("estimator.judge.labels_file=/no/such/labels.csv", "estimator.judge.labels_file"),
        ("estimator.judge.labels_file=''", "estimator.judge.labels_file"),
        ("estimator.judge.kind=none estimator.judge.labels_file=/no/such/labels.csv", "estimator.judge.labels_file"),
        ("deepspeed=zero2_offload", "deepspeed"),  # on CPU: nothing to offload from (zero2/zero3 themselves run)
        ("deepspeed=zero3 deepspeed.config.zero_optimization.stage=5", "deepspeed.config.zero_optimization.stage"),
        ("reward.extra_funcs=[json:no_such_function]", "reward.extra_funcs[0]"),
        ("+trainer.grpo.trl.optimm=adamw_torch", "trainer.grpo.trl.optimm"),  # not a field of GRPOConfig
        ("+trainer.grpo.trl.foo=1", "trainer.grpo.trl.foo"),
        ("+trainer.sft.trl.gradient_accumulation_steps=2", "trainer.sft.trl.gradient_accumulation_steps"),  # derived
        ("trainer.grpo.trl.loss_type=token-mean", "trainer.grpo.trl.loss_type"),
        ("eval.generation.vllm_gpu_memory_utilization=1.5", "eval.generation.vllm_gpu_memory_utilization"),
        ("reward.extra_funcs=[json:dumps] reward.extra_weights=[1,2]", "reward.extra_weights"),
        ("estimator.train.batch_size=0", "estimator.train.batch_size"),  # issue 16.11: before the model loads
        ("benchmark.max_train_items=0", "benchmark.max_train_items"),  # issue 16.11: trained nothing, "completed"
        ("benchmark.max_test_items=-2", "benchmark.max_test_items"),
    ],
)
def test_validation_names_the_key(override, key, compose):
    cfg = compose(["experiment=cpu_demo", *override.split()])
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert key in str(err.value)


@pytest.mark.parametrize("override,key", [
    ("reward.mode=fuzzy", "reward.mode"),
    ("estimator.judge.kind=oracle", "estimator.judge.kind"),
    ("estimator.judge.unlabelled=same", "estimator.judge.unlabelled"),
    ("eval.nli.backend=magic", "eval.nli.backend"),
    ("benchmark.on_error=ignore", "benchmark.on_error"),
    ("logger.wandb.mode=sometimes", "logger.wandb.mode"),
])
def test_a_wrong_choice_fails_at_composition_naming_the_key(override, key, compose):
    """Enum settings (issue 18.1): OmegaConf rejects the value while the config is composed; the entrypoint reports it
    like the problems above, with status.json (tests/app/test_enums.py)."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        compose(["experiment=cpu_demo", override])
    assert err.value.__cause__.full_key == key


def test_all_zero_weights_fail(compose):
    cfg = compose(["experiment=cpu_demo"] + [f"reward.weights.{k}=0" for k in ("coverage", "uniqueness", "format", "tag")])
    with pytest.raises(ConfigError, match="reward.weights"):
        check(cfg)


def test_several_mistakes_reported_together(compose):
    cfg = compose(["experiment=cpu_demo", "reward.tau_cov=2", "eval.threshold=-1"])
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert "reward.tau_cov" in str(err.value) and "eval.threshold" in str(err.value)


def test_each_section_reports_every_problem_not_the_first(compose):
    cfg = compose(["experiment=cpu_demo", "reward.tau_cov=2", "reward.weights.tag=-1",
                   "+trainer.grpo.trl.learning_rte=0", "trainer.grpo.trl.loss_type=x", "eval.generation.top_p=2", "eval.nli.batch_size=0"])
    with pytest.raises(ConfigError) as err:
        check(cfg)
    for key in ("reward.tau_cov", "reward.weights.tag", "trainer.grpo.trl.learning_rte", "trainer.grpo.trl.loss_type",
                "eval.generation.top_p", "eval.nli.batch_size"):
        assert f"  {key}: " in str(err.value), key
    # the lower layers report the same problems without Hydra, keys relative to their section
    reward = to_config(cfg).reward
    reward.mode = "fuzzy"  # a plain string from Python (Hydra refuses it while composing: reward.mode is an enum)
    assert [p.split(":")[0] for p in reward.problems()] == ["weights.tag", "tau_cov", "mode"]
    with pytest.raises(ValueError, match="reward.tau_cov.*reward.mode"):
        reward.validate()


def test_a_missing_mandatory_value_is_a_listed_problem(compose):
    cfg = compose(["experiment=paper"])  # the paper preset leaves the data files to the user
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert "benchmark.train_file: missing value" in str(err.value)
    assert "benchmark.test_file: " in str(err.value)
    # a stage that does not read the test file does not ask for it
    with pytest.raises(ConfigError) as err:
        check(compose(["experiment=paper", "stage=grpo", "benchmark.val_fraction=1.5"]))
    assert "benchmark.test_file" not in str(err.value) and "benchmark.val_fraction" in str(err.value)


def test_choices_come_from_the_lower_layers(compose):
    from hydra.errors import ConfigCompositionException

    from opgrpo.benchmark.loading import FORMATS
    from opgrpo.evaluation.config import BACKENDS
    from opgrpo.reward.config import AGGREGATIONS

    for override, choices in (("benchmark.format=xml", FORMATS), ("eval.nli.backend=magic", BACKENDS),
                              ("reward.aggregation=max", AGGREGATIONS)):
        with pytest.raises(ConfigCompositionException) as err:
            compose(["experiment=cpu_demo", override])
        assert f"[{', '.join(choices)}]" in str(err.value.__cause__), override


def test_describe_documents_every_setting_of_a_section(compose, capsys):
    from dataclasses import fields

    from opgrpo.app.describe import describe
    from opgrpo.reward import RewardConfig

    text = describe(to_config(compose(["experiment=cpu_demo", "reward.tau_cov=0.61"])), "reward")
    assert "reward.tau_cov = 0.61" in text and "Cosine threshold for a candidate/reference match" in text
    for f in fields(RewardConfig):
        if f.name != "weights":
            assert f"reward.{f.name} = " in text, f.name
    assert "reward.weights.coverage = 0.3" in text
    grpo = describe(to_config(compose(["experiment=cpu_demo"])), "trainer.grpo")
    undocumented = [line for line in grpo.splitlines()[1:] if line.strip() and line.rstrip().endswith("=")]
    assert not undocumented
    # stage=describe needs no data: the paper preset's unset data files read as "" (not raised)
    assert "benchmark.train_file = ''" in describe(to_config(compose(["experiment=paper", "stage=describe"])),
                                                   "benchmark")


@pytest.mark.parametrize("contents", [[], ["README.md"], ["config.json"], ["model.safetensors"]])
def test_a_directory_without_a_model_is_refused_naming_the_key(compose, tmp_path, contents):
    """Issue 16.6: an empty or non-model directory passed validation and failed late with a misleading message."""
    model = tmp_path / "not_a_model"
    model.mkdir()
    for name in contents:
        (model / name).write_text("{}")
    for key in ("model.name_or_path", "reward.estimator_path", "eval.nli.model"):
        cfg = compose(["experiment=cpu_demo", "stage=eval" if key != "model.name_or_path" else "stage=grpo",
                       f"{key}={model}"])
        with pytest.raises(ConfigError) as err:
            check(cfg)
        assert f"{key}: " in str(err.value) and "holds no model" in str(err.value), key


def test_real_model_directories_pass(compose, minilm_path, tiny_lm):
    check(compose(["experiment=cpu_demo", "stage=grpo", f"model.name_or_path={tiny_lm}",
                      f"reward.estimator_path={minilm_path}"]))


def test_wandb_disabled_in_the_environment_wins(compose, monkeypatch, tmp_path):
    """Issue 16.7: logger.wandb.mode overwrote WANDB_MODE=disabled, so W&B ran (and could sync) against the user's wish."""
    from opgrpo.app.tracking import JobTracker, report_to, wandb_enabled

    cfg = compose(["experiment=cpu_demo", "logger=wandb", "logger.wandb.mode=online"])
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not JobTracker().start(cfg, tmp_path, [], "").active and not wandb_enabled(cfg)
    assert __import__("os").environ["WANDB_MODE"] == "disabled" and report_to(cfg) == []
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_enabled(cfg) and report_to(cfg) == []


def test_every_setting_is_documented(compose):
    """Config fields are documented one way (the string under each dataclass field); describe shows them all."""
    import re

    from opgrpo.app.describe import describe

    rows = [line.strip() for line in describe(to_config(compose(["experiment=cpu_demo"])), "all").splitlines()
            if line.startswith("  ")]
    assert len(rows) > 150
    undocumented = [r.split(" = ")[0] for r in rows if not re.search(r"\S\s{2,}\S", r)]
    assert undocumented == []


def test_validation_checks_only_the_models_the_stage_loads(compose, tiny_lm, responses_file):
    """Issue 20.5: evaluating another policy (eval.model_path) or a responses file must not require the default
    policy (Qwen2.5-3B, not in an offline cache) to be present."""
    offline_default = ["eval=cpu", "estimator=cpu", "model.name_or_path=Qwen/not-in-any-cache"]
    check(compose([*offline_default, "stage=eval", f"eval.model_path={tiny_lm}"]))
    check(compose([*offline_default, "stage=eval", f"eval.responses_file={responses_file}"]))
    with pytest.raises(ConfigError, match="model.name_or_path"):  # it is what eval would load here
        check(compose([*offline_default, "stage=eval"]))
    with pytest.raises(ConfigError, match="model.name_or_path"):  # training always starts from it
        check(compose([*offline_default, "stage=sft", f"eval.model_path={tiny_lm}"]))


def test_a_capped_test_file_is_said(compose, caplog):
    import logging

    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir

    cfg = compose(["experiment=cpu_demo"])  # keeps one item per split of the 14 sample test items
    with caplog.at_level(logging.WARNING, logger="opgrpo.app.context"):
        splits = RunContext(to_config(cfg), RunDir(__import__("tempfile").mkdtemp())).test_splits()
    assert sum(len(v) for v in splits.values()) == 7
    assert "using 7 of 14 test items: benchmark.max_test_items=1 per split" in caplog.text


def test_deepspeed_presets_pass_validation_on_cpu(compose):
    """ZeRO-2 and ZeRO-3 run on CPU (DeepSpeed's CPU accelerator, gloo): validation no longer refuses them."""
    for preset in ("zero2", "zero3"):
        check(compose(["experiment=cpu_demo", "stage=grpo", f"deepspeed={preset}"]))


@pytest.mark.parametrize("reward", ["cpu", "paper", "continuous", "authors_masking"])
def test_cpu_calibration_travels_with_the_estimator(compose, reward):
    """Issue 20.6: `experiment=cpu_demo reward=continuous` fell back to the paper's 0.7 / 0.78, where MiniLM gives
    coverage ~0; the thresholds now belong to the estimator preset, whichever reward preset is picked."""
    from opgrpo.app.runconfig import to_config

    r = to_config(compose(["experiment=cpu_demo", f"reward={reward}"])).reward
    assert (r.tau_cov, r.tau_uniq) == (0.55, 0.6)
    paper = to_config(compose([f"reward={reward}"])).reward  # estimator=paper: the paper's mpnet thresholds
    assert (paper.tau_cov, paper.tau_uniq) == (0.7, 0.78)


def test_threshold_offsets_and_pinned_values(compose):
    from opgrpo.app.runconfig import to_config

    r = to_config(compose(["experiment=cpu_demo", "reward.tau_cov_delta=0.1", "reward.tau_uniq_delta=-0.05"])).reward
    assert (r.tau_cov, r.tau_uniq) == (0.65, 0.55)
    pinned = to_config(compose(["experiment=cpu_demo", "reward.tau_cov=0.8"])).reward
    assert (pinned.tau_cov, pinned.tau_uniq) == (0.8, 0.6)
    with pytest.raises(ConfigError, match="reward.tau_cov"):
        check(compose(["experiment=cpu_demo", "reward.tau_cov_delta=0.6"]))


def test_report_settings_fail_at_startup(compose, tmp_path):
    with pytest.raises(ConfigError, match="report.run_dirs: stage=report/compare needs"):
        check(compose(["stage=report"]))
    with pytest.raises(ConfigError, match="report.run_dirs: no such directory"):
        check(compose(["stage=compare", f"report.run_dirs=[{tmp_path / 'nope'}]"]))
    with pytest.raises(ConfigError, match="report.reference_weights.coverage: must be >= 0"):
        check(compose(["experiment=cpu_demo", "stage=describe", "report.reference_weights.coverage=-1"]))
    check(compose(["stage=report", f"report.sweep_dir={tmp_path}"]))


def test_interpolated_missing_values_are_listed_problems(compose):
    """Issue 18.4: a ``???`` that other keys interpolate raised InterpolationToMissingValueError (a traceback, no
    status.json) instead of a ConfigError listing it, whatever the stage."""
    with pytest.raises(ConfigError) as err:
        check(compose(["experiment=cpu_demo", "stage=describe", "seed=???"]))
    message = str(err.value)
    assert "  seed: missing value" in message
    for user in ("trainer.sft.trl.seed", "trainer.grpo.trl.seed", "eval.generation.seed"):  # ${seed} in the presets
        assert user in message.split("  seed: ", 1)[1].splitlines()[0], user
    with pytest.raises(ConfigError) as err:
        check(compose(["experiment=cpu_demo", "estimator.calibration.tau_cov=???"]))
    assert "  estimator.calibration.tau_cov: missing value" in str(err.value)
    assert "reward.tau_cov interpolates it" in str(err.value)  # reward/cpu.yaml: tau_cov from the calibration
    with pytest.raises(ConfigError, match="  init_from: missing value.*model.name_or_path, reward.estimator_path"):
        check(compose(["experiment=cpu_learning", "init_from=???"]))


def test_batch_arithmetic_is_checked_against_the_training_data(compose):
    """Issue 18.4: GRPO's prompts_per_step and SFT's global batch against the training items the stage will use,
    counted from the data at start-up. Sample data: 36 training situations."""
    # 36 items, ceil(0.1 x 36) = 4 held out: 32 for training; 33 > 32 is refused, naming the key and the counts
    with pytest.raises(ConfigError) as err:
        check(compose(["experiment=cpu_demo", "stage=grpo", "trainer.grpo.prompts_per_step=34"]))
    assert ("trainer.grpo.prompts_per_step: 34 prompts per generation batch, but stage grpo has 32 training "
            "records (benchmark.train_file, 4 held out for validation)") in str(err.value)
    assert "trainer.sft" not in str(err.value)  # SFT does not run in stage=grpo
    check(compose(["experiment=cpu_demo", "stage=grpo", "trainer.grpo.prompts_per_step=32"]))
    # max_train_items=20: 20 items, ceil(0.1 x 20) = 2 held out, 18 for training
    capped = ["experiment=cpu_demo", "benchmark.max_train_items=20"]
    with pytest.raises(ConfigError) as err:
        check(compose([*capped, "trainer.sft.global_batch_size=20", "trainer.grpo.prompts_per_step=20"]))
    assert "trainer.sft.global_batch_size: 20 examples per optimizer step, but stage sft has 18" in str(err.value)
    assert "trainer.grpo.prompts_per_step: 20 prompts per generation batch, but stage grpo has 18" in str(err.value)
    assert "benchmark.max_train_items=20, 2 held out" in str(err.value)
    check(compose([*capped, "trainer.sft.global_batch_size=16", "trainer.grpo.prompts_per_step=18"]))
    # val_fraction=0.5: 18 of 36 held out, 18 left
    with pytest.raises(ConfigError, match="prompts_per_step: 20 prompts .* has 18 training records"):
        check(compose(["experiment=cpu_demo", "stage=grpo", "benchmark.val_fraction=0.5",
                          "trainer.grpo.prompts_per_step=20"]))
    # only the stages that run: an evaluation does not care about the trainers' batches
    check(compose(["experiment=cpu_demo", "stage=eval", "trainer.grpo.prompts_per_step=1024",
                      "trainer.sft.global_batch_size=256"]))
    # the bare defaults (the paper's batches on the sample data) fail at start-up on both keys
    with pytest.raises(ConfigError) as err:
        check(compose([]))
    assert "trainer.grpo.prompts_per_step: 1024 prompts" in str(err.value)
    assert "trainer.sft.global_batch_size: 256 examples" in str(err.value)


def test_the_data_count_is_the_one_the_run_trains_on(compose, tmp_path):
    """The start-up count uses the run's own loading and split (RunContext): the 32 items the check counts are the
    32 items SFT and GRPO get."""
    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir

    ctx = RunContext(to_config(compose(["experiment=cpu_demo"])), RunDir(tmp_path))
    assert len(ctx.train_val()[0]) == 32
    for method in ("sft_train_val", "grpo_train_val"):
        if hasattr(ctx, method):
            assert len(getattr(ctx, method)()[0]) == 32, method


def test_an_unreadable_training_file_is_a_listed_problem(compose, tmp_path):
    bad = tmp_path / "train.csv"
    bad.write_text("id,prompt,answer\n1,A situation,not a perspective line\n")
    with pytest.raises(ConfigError, match="benchmark.train_file: cannot be read"):
        check(compose(["experiment=cpu_demo", "stage=grpo", f"benchmark.train_file={bad}",
                          "benchmark.on_error=fail"]))
