"""The `opgrpo` entrypoint as a user runs it: --help, start-up errors, from any directory, python -m."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "opgrpo"


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("how", ["script_repo_root", "script_other_dir", "python_m"])
def test_help_lists_groups_from_anywhere(how, tmp_path):
    if how == "python_m":
        cmd, cwd = [sys.executable, "-m", "opgrpo", "--help"], tmp_path
    else:
        cmd, cwd = [str(BIN), "--help"], REPO if how == "script_repo_root" else tmp_path
    res = _run(cmd, cwd)
    assert res.returncode == 0, res.stderr
    for group in ("model", "reward", "estimator", "benchmark", "trainer", "eval", "deepspeed", "launcher", "logger",
                  "experiment", "sweep"):
        assert f"{group}:" in res.stdout, group
    assert "cpu_demo" in res.stdout and "stage=" in res.stdout


def test_invalid_value_fails_at_startup_naming_key(tmp_path):
    res = _run([str(BIN), "experiment=cpu_demo", "reward.weights.coverage=-1", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert res.returncode != 0
    assert "reward.weights.coverage" in res.stderr + res.stdout
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "reward.weights.coverage" in status["error"]


def test_unknown_key_fails(tmp_path):
    res = _run([str(BIN), "experiment=cpu_demo", "reward.nonsense=1"], tmp_path)
    assert res.returncode != 0 and "reward.nonsense" in res.stderr


def test_multirun_over_reward_weight_evaluates_responses(tmp_path, responses_file, tiny_lm):
    """A real two-value multirun: stage=eval on a responses file, MiniLM for the reward, and the causal-LM
    NLI backend with a tiny random LM (the SmolLM2 judge makes the same run take minutes)."""
    responses = responses_file
    res = _run([str(BIN), "-m", "experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses}",
                f"eval.nli.model={tiny_lm}",
                "reward.weights.coverage=0.1,0.5", f"hydra.sweep.dir={tmp_path}/sweep", "objective=eval/reward/total"],
               tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    totals = []
    for sub in ("0", "1"):
        run = tmp_path / "sweep" / sub
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        summary = json.loads((run / "summary.json").read_text())
        assert 0.0 <= summary["eval/overall/accuracy"] <= 1.0
        totals.append(summary["eval/reward/total"])
        assert (run / "config.yaml").exists() and (run / "eval" / "responses.jsonl").exists()
    # same responses, coverage weight 0.1 vs 0.5: the total differs exactly by 0.4 * mean coverage
    cov = json.loads((tmp_path / "sweep" / "1" / "summary.json").read_text())["eval/reward/coverage"]
    assert totals[1] - totals[0] == pytest.approx(0.4 * cov, abs=1e-6)


def test_stage_describe_prints_the_sections_without_loading_models(tmp_path):
    out = _run([sys.executable, "-m", "opgrpo", "experiment=cpu_demo", "stage=describe", f"hydra.run.dir={tmp_path}"],
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    for section in ("== reward ==", "== trainer.grpo ==", "== estimator =="):
        assert section in out.stdout
    assert "trainer.grpo.trl.num_generations = 4" in out.stdout


def test_multirun_with_a_failed_member_exits_non_zero_and_names_it(tmp_path):
    """Issue 16.5: one job that fails while it runs must not make `opgrpo -m` report success; the good job still runs,
    and the summary gives the failed job's whole reason (issue 30.2). Here arm 1 prefetches a hub id that is not in
    the cache with the Hub off: valid at start-up, failed at run time."""
    from opgrpo.app.resources import minilm_path

    res = _run([str(BIN), "-m", "experiment=cpu_demo", "stage=prefetch", "eval.nli.backend=none",
                f"estimator.base_model={minilm_path()},nosuch/model-abc", f"hydra.sweep.dir={tmp_path}/sweep"],
               tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert json.loads((tmp_path / "sweep" / "0" / "status.json").read_text())["status"] == "completed"
    assert json.loads((tmp_path / "sweep" / "1" / "status.json").read_text())["status"] == "failed"
    log = res.stdout + res.stderr  # Hydra's job logging goes to stdout
    assert "1 of 2 job(s) of the sweep did not complete" in log
    assert "\n  1: RuntimeError: prefetch: could not fetch estimator.base_model = 'nosuch/model-abc'" in log
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in log  # the reason, not only its first words
    assert f"sweep directory: {tmp_path}/sweep" in log


def test_multirun_with_an_invalid_arm_starts_no_job(tmp_path):
    """Issue 30.2: every arm is composed and checked before the first job starts; the invalid arm is named with its
    whole reason, exit 2, and no job ran (no sweep directory)."""
    res = _run([str(BIN), "-m", "experiment=cpu_demo", "stage=describe", "reward.tau_cov=0.5,2.0",
                "reward.weights.coverage=0.1,-1", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "invalid configuration in 3 arm(s) of the sweep; no job was started" in res.stderr
    assert "arm 1 (reward.tau_cov=0.5 reward.weights.coverage=-1):" in res.stderr
    assert "arm 2 (reward.tau_cov=2.0 reward.weights.coverage=0.1):\n  invalid configuration:\n  reward.tau_cov: must " \
           "be in [0, 1] (got 2.0)" in res.stderr
    assert "arm 0 " not in res.stderr and not (tmp_path / "sweep").exists()


def test_cluster_launcher_without_multirun_fails_at_startup(tmp_path):
    """Issue 16.11: launcher=slurm without -m used to run the job here without a word."""
    res = _run([str(BIN), "experiment=cpu_demo", "stage=describe", "launcher=submitit_local",
                f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert res.returncode == 2
    log = res.stdout + res.stderr
    assert "launcher" in log and "-m" in log
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


def test_responses_for_some_test_items_are_scored_and_the_rest_reported(tmp_path, responses_file, tiny_lm):
    """Issue 20.5: a responses file for fewer items than the test file ended in a traceback ("7 responses for 14
    items"); now the items it names are scored, the others counted per split. Issue 20.1: the reward numbers name
    their estimator, and an untuned one is labelled."""
    rows = responses_file.read_text().splitlines()
    some = tmp_path / "some.jsonl"
    some.write_text("\n".join(rows[:3]) + "\n")
    run = tmp_path / "run"
    res = _run([str(BIN), "experiment=cpu_demo", "stage=eval", f"eval.responses_file={some}",
                f"eval.nli.model={tiny_lm}", f"hydra.run.dir={run}"], tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["eval/responses/items"] == 3
    missing = {k.rsplit("/", 1)[1]: v for k, v in s.items() if k.startswith("eval/responses/missing/")}
    assert sum(missing.values()) == len(rows) - 3 and len(missing) == len(rows)
    assert len([json.loads(line) for line in (run / "eval" / "responses.jsonl").read_text().splitlines()]) == 3
    assert s["eval/reward_estimator/tuned"] is False and len(s["eval/reward_estimator/fingerprint"]) == 12
    assert json.loads((run / "eval" / "reward.json").read_text())["estimator"]["tuned"] is False
    items = [json.loads(line) for line in (run / "eval" / "reward_items.jsonl").read_text().splitlines()]
    assert len(items) == 3 and {r["estimator"] for r in items} == {s["eval/reward_estimator/fingerprint"]}
    assert sum(r["coverage_rate"] for r in items) / 3 == pytest.approx(s["eval/reward/coverage_rate"])
    assert "(untuned estimator)" in res.stdout


def test_help_lists_stages_presets_keys_and_companion_commands(tmp_path, compose):
    """Issue 18.4: --help never mentioned opgrpo-optuna, the stages (from the registry) or what a key means."""
    from opgrpo.app.paths import config_dir
    from opgrpo.app.stages import STAGES

    res = _run([sys.executable, "-m", "opgrpo", "--help"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    sections = dict(part.split(" ==\n", 1) for part in res.stdout.split("\n== ")[1:])
    lines = {name: [line.strip() for line in text.split("\n\n")[0].splitlines()] for name, text in sections.items()}
    stages = lines["Stages (stage=NAME)"]
    assert [line.split()[0] for line in stages] == [*STAGES, "pipeline"]  # every registered stage, in order
    assert all(len(line.split(None, 1)) == 2 for line in stages)  # each with its line of text
    presets = [line.split()[0] for line in lines["Experiments (experiment=NAME)"]]
    assert sorted(presets) == sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    assert {"cpu_demo", "cpu_learning", "paper"} <= set(presets)
    companions = " ".join(lines["Companion commands"])
    for command in ("opgrpo-optuna", "make demo", "make test", "make bench"):
        assert command in companions, command
    keys = [line.split("=", 1)[0] for line in lines[next(k for k in lines if k.startswith("Most used keys"))]]
    for key in ("stage", "pipeline", "experiment", "seed", "init_from", "model.name_or_path", "benchmark.train_file",
                "benchmark.test_file", "reward.weights.coverage", "trainer.grpo.trl.num_generations",
                "trainer.grpo.prompts_per_step", "trainer.grpo.trl.learning_rate", "trainer.grpo.trl.max_steps", "deepspeed", "launcher",
                "logger", "eval.nli.backend", "hydra.run.dir"):
        assert key in keys, key
    cfg = compose([], return_hydra_config=True)
    groups = {"experiment", "deepspeed", "launcher", "logger"}
    for key in keys:  # every listed key exists (a renamed key would leave the help behind)
        assert key in groups or OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=False) != "<absent>", key
    assert "OPGRPO_RUN_DIR" in res.stdout


def test_missing_values_fail_at_startup_listed_with_status(tmp_path):
    """Issue 18.4: a missing mandatory value read by a check or interpolated by another key ended in a raw
    MissingMandatoryValue / InterpolationToMissingValueError traceback without status.json."""
    res = _run([str(BIN), "experiment=cpu_demo", "stage=describe", "seed=???", f"hydra.run.dir={tmp_path}/a"], tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode == 2, log[-3000:]
    assert "Traceback" not in log and "seed: missing value" in log
    assert "trainer.sft.trl.seed" in log and "eval.generation.seed" in log  # the keys that interpolate it
    status = json.loads((tmp_path / "a" / "status.json").read_text())
    assert status["status"] == "failed" and "seed: missing value" in status["error"]
    # the paper preset without its data files: listed like any other problem, status.json failed
    res = _run([str(BIN), "experiment=paper", f"hydra.run.dir={tmp_path}/b"], tmp_path)
    assert res.returncode == 2 and "benchmark.train_file: missing value" in res.stdout + res.stderr
    status = json.loads((tmp_path / "b" / "status.json").read_text())
    assert status["status"] == "failed" and "benchmark.train_file: missing value" in status["error"]


def test_bare_config_fails_at_startup_asking_for_an_experiment(tmp_path):
    """Issue 18.4: a bare `opgrpo` (Qwen2.5-3B, 1,024 prompts per step on the 32 sample training items) passed
    validation and failed only at GRPO, after the estimator and SFT had run."""
    res = _run([str(BIN), f"hydra.run.dir={tmp_path}/run"], tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode == 2, log[-3000:]
    # 36 sample training items, ceil(0.1 x 36) = 4 held out: 32 for SFT and GRPO
    assert "trainer.grpo.prompts_per_step: 1024 prompts per generation batch, but stage grpo has 32 training" in log
    assert "trainer.sft.global_batch_size: 256 examples per optimizer step, but stage sft has 32 training" in log
    assert "experiment: none chosen" in log and "experiment=cpu_demo" in log and "experiment=paper" in log
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "experiment=cpu_demo" in status["error"]
    assert not (tmp_path / "run" / "estimator").exists()  # nothing ran


@pytest.mark.parametrize("case", ["parent_is_a_file", "log_file_is_a_directory"])
def test_an_unwritable_run_directory_is_said_first_in_one_line(tmp_path, case):
    """Issue 27.6: a run directory Hydra cannot create (a file where a folder must be) or whose log file it cannot
    open (Hydra's own failure: ``ValueError: Unable to configure handler 'file'``, the cause further up) is named with
    the OS error in the first line of stderr, without a traceback. (Tests run as root: chmod cannot make a folder
    unwritable, so these two stand in for a read-only file system.)"""
    (tmp_path / "file").write_text("x")
    run, bad = tmp_path / "file" / "run", str(tmp_path / "file" / "run")
    if case == "log_file_is_a_directory":
        run = tmp_path / "run"
        (run / "cli.log").mkdir(parents=True)
        bad = str(run / "cli.log")
    res = _run([sys.executable, "-m", "opgrpo", "experiment=cpu_demo", "stage=describe", f"hydra.run.dir={run}"],
               tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    first = res.stderr.splitlines()[0]
    assert first.startswith(f"opgrpo: cannot write the run directory {run} (hydra.run.dir): [Errno")
    assert bad in first and ("Not a directory" in first or "Is a directory" in first)
    assert "Traceback" not in res.stderr and "Unable to configure handler" not in res.stderr
