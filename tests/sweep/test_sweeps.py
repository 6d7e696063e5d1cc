"""Sweep presets (sweeps/*.yaml) compose with Hydra; the W&B sweep config; the Optuna spec reader and driver
(opgrpo/sweep/optuna/spec.py, opgrpo/app/optuna_cli.py)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

import opgrpo.app.paths
import opgrpo.app.schema
from opgrpo.app import optuna_cli
from opgrpo.sweep.optuna import outputs as oout
from opgrpo.sweep.optuna import run as orun
from opgrpo.sweep.optuna import spec as ospec
from opgrpo.sweep.optuna import study as ostudy
from opgrpo.sweep.optuna import trial as otrial

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "sweeps"
WANDB_CONFIGS = {"wandb_weights"}  # W&B sweep configs (run with `wandb sweep`), not Hydra presets
PAPER_WEIGHTS = {"coverage": 0.3, "uniqueness": 0.3, "format": 0.1, "tag": 1.0}


@pytest.fixture(scope="module")
def hydra_compose():
    opgrpo.app.schema.register()
    with initialize_config_dir(str(opgrpo.app.paths.config_dir()), version_base="1.3"):
        yield lambda overrides: compose("opgrpo", overrides=list(overrides), return_hydra_config=True)


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _jobs(cfg) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper builds from a composed preset's params."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def test_every_preset_composes(hydra_compose):
    presets = sorted(p.stem for p in SWEEPS.glob("*.yaml") if p.stem not in WANDB_CONFIGS)
    assert {"ablation", "thresholds", "optuna", "weights_grid", "cpu_weights"} <= set(presets)
    for name in presets:
        for base in ([], ["experiment=cpu_demo"], ["experiment=paper"]):
            cfg = hydra_compose([*base, f"sweep={name}"])
            assert cfg.hydra.sweeper.params, name
            # the experiment's objective stands: a sweep preset does not reset it (issue 20.2: on CPU the
            # causal-LM NLI stand-in leaves accuracy at 0 in every run, so cpu_demo ranks by the coverage rate)
            assert cfg.objective == ("eval/reference/coverage_rate" if base == ["experiment=cpu_demo"]
                                     else "eval/overall/accuracy"), (name, base)
            if name != "optuna":
                assert cfg.hydra.mode.name == "MULTIRUN", name


def test_ablation_drops_one_component_at_a_time(hydra_compose):
    cfg = hydra_compose(["sweep=ablation"])
    jobs = _jobs(cfg)
    arms = [j[0].split("=", 1)[1] for j in jobs]
    assert arms == ["full", "no_coverage", "no_uniqueness", "no_format", "no_tag"]
    for job in jobs:  # each job as Hydra composes it: the preset plus the job's override
        for base in ([], ["experiment=cpu_demo"]):
            weights = dict(hydra_compose([*base, "sweep=ablation", *job]).reward.weights)
            arm = job[0].split("=", 1)[1]
            expected = {k: (0.0 if arm == f"no_{k}" else v) for k, v in PAPER_WEIGHTS.items()}
            assert weights == expected, (base, arm)
    # on top of other reward settings: only the arm's weight changes
    cfg = hydra_compose(["sweep=ablation", "+sweep/ablate=no_uniqueness", "reward=continuous",
                         "reward.weights.coverage=0.5"])
    assert dict(cfg.reward.weights) == {"coverage": 0.5, "uniqueness": 0.0, "format": 0.1, "tag": 1.0}
    assert cfg.reward.mode == "continuous"
    from opgrpo.app.validate import check

    for job in jobs:  # every arm passes start-up validation (never all-zero weights)
        check(hydra_compose(["experiment=cpu_demo", "sweep=ablation", *job]))


def test_thresholds_grid(hydra_compose):
    jobs = _jobs(hydra_compose(["sweep=thresholds"]))
    assert len(jobs) == 3 * 3 * 2
    cfg = hydra_compose(["sweep=thresholds", *jobs[-1]])
    assert (cfg.reward.tau_cov, cfg.reward.tau_uniq, cfg.reward.mode) == (0.8, 0.85, "continuous")
    assert {tuple(j) for j in jobs} >= {("reward.tau_cov_delta=0", "reward.tau_uniq_delta=0", "reward.mode=bucketed")}
    # issue 20.6: the grid is centred on the active estimator's calibration (the CPU MiniLM's 0.55 / 0.6)
    cpu = {(c.reward.tau_cov, c.reward.tau_uniq) for c in
           (hydra_compose(["experiment=cpu_demo", "sweep=thresholds", *job]) for job in jobs)}
    assert cpu == {(a, b) for a in (0.45, 0.55, 0.65) for b in (0.52, 0.6, 0.67)}
    # a command-line value replaces that axis
    params = [f"{k}={v}" for k, v in hydra_compose(["sweep=thresholds"]).hydra.sweeper.params.items()]
    ovs = OverridesParser.create().parse_overrides([*params, "reward.tau_cov_delta=-0.05,0"])
    assert len(BasicSweeper.split_arguments(ovs, None)[0]) == 2 * 3 * 2


def test_optuna_preset_is_the_driver_spec(hydra_compose):
    cfg = hydra_compose(["sweep=optuna"])
    assert cfg.hydra.mode is None  # as a Hydra preset: a single run with the objective
    spec = optuna_cli.load_spec(SWEEPS / "optuna.yaml")
    assert set(spec.space) == set(cfg.hydra.sweeper.params)
    assert spec.direction == "maximize" and spec.objective == ""  # each trial's own config objective
    assert spec.fixed == []  # hydra/sweeper default not passed to trials, no objective forced on them
    assert spec.sampler == {"_target_": "optuna.samplers.TPESampler", "seed": 42}
    for key in spec.space:  # every searched key exists in the schema
        assert hydra_compose([f"{key}={cfg.reward.mode if key == 'reward.mode' else 0.5}"])


def test_wandb_sweep_config(hydra_compose, monkeypatch):
    spec = yaml.safe_load((SWEEPS / "wandb_weights.yml").read_text())
    assert spec["command"] == ["${env}", "${interpreter}", "-m", "opgrpo", "${args_no_hyphens}"]
    assert spec["method"] == "grid" and "program" not in spec
    grid = [k for k, v in spec["parameters"].items() if "values" in v]
    assert grid == ["reward.weights.coverage", "reward.weights.uniqueness", "reward.weights.format"]
    # what the agent runs (${args_no_hyphens} = key=value) composes, for every grid point's first value
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    monkeypatch.setenv("WANDB_RUN_ID", "run7")
    args = [f"{k}={v['value'] if 'value' in v else v['values'][-1]}" for k, v in spec["parameters"].items()]
    cfg = hydra_compose(args)
    assert cfg.reward.weights.coverage == 0.5 and cfg.reward.weights.format == 0.1
    assert cfg.logger.backend == "wandb" and cfg.hydra.run.dir == "outputs/wandb/sw1/run7"


# ---- the Optuna driver ----------------------------------------------------------------------------------------
def test_distributions():
    import optuna.distributions as od

    assert optuna_cli.distribution("a", "interval(0.1, 0.5)") == od.FloatDistribution(0.1, 0.5)
    assert optuna_cli.distribution("a", "tag(log, interval(1e-3, 1.0))") == od.FloatDistribution(1e-3, 1.0, log=True)
    assert optuna_cli.distribution("a", "int(interval(1, 8))") == od.IntDistribution(1, 8)
    assert optuna_cli.distribution("a", "range(2, 10, step=2)") == od.IntDistribution(2, 8, step=2)
    assert optuna_cli.distribution("a", "range(0.6, 0.8, step=0.1)") == od.FloatDistribution(0.6, 0.8, step=0.1)
    assert optuna_cli.distribution("a", "choice(bucketed, continuous)") == od.CategoricalDistribution(["bucketed", "continuous"])
    assert optuna_cli.distribution("a", "1,2") == od.CategoricalDistribution([1, 2])
    assert optuna_cli.distribution("a", 0.25) == "0.25" and optuna_cli.distribution("a", "x") == "x"
    with pytest.raises(ValueError, match="search space a"):
        optuna_cli.distribution("a", "interval(0.1")


def test_format_value():
    assert [ospec.format_value(v) for v in (0.1, 3, True, None, "eval/overall/accuracy", "a b", [1, "x"])] == [
        "0.1", "3", "true", "null", "eval/overall/accuracy", "'a b'", "[1,x]"]


def test_load_spec_flattens_settings(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        defaults:
          - override /reward: continuous
          - override /hydra/sweeper: null
        objective: eval/reward/total
        pipeline: [grpo, eval]
        trainer: {grpo: {trl: {max_steps: 3}}}
        hydra:
          sweeper:
            direction: minimize
            n_trials: 3
            params:
              reward.tau_cov: interval(0.6, 0.8)
              reward.weights.tag: 1.0
        """))
    spec = optuna_cli.load_spec(path)
    assert spec.fixed == ["reward=continuous", "reward.weights.tag=1.0", "objective=eval/reward/total",
                          "pipeline=[grpo,eval]", "trainer.grpo.trl.max_steps=3"]
    assert (spec.direction, spec.n_trials, spec.study_name, list(spec.space)) == ("minimize", 3, "s", ["reward.tau_cov"])
    # the user's base overrides win over the spec's settings of the same key
    ov = ostudy.trial_overrides(spec, {"reward.tau_cov": 0.7}, ["experiment=cpu_demo", "objective=eval/overall/accuracy"])
    assert ov == ["experiment=cpu_demo", "objective=eval/overall/accuracy", "reward=continuous",
                  "reward.weights.tag=1.0", "pipeline=[grpo,eval]", "trainer.grpo.trl.max_steps=3", "reward.tau_cov=0.7"]
    assert ostudy._objective_of(spec, ["objective=eval/overall/accuracy"]) == "eval/overall/accuracy"
    path.write_text("hydra: {sweeper: {direction: up}}\n")
    with pytest.raises(ValueError, match="direction"):
        optuna_cli.load_spec(path)


FAKE_ENTRYPOINT = textwrap.dedent("""\
    # A stand-in for `python -m opgrpo`: writes the run-directory files from its overrides.
    import json, sys
    from pathlib import Path
    ov = dict(a.split("=", 1) for a in sys.argv[1:])
    run = Path(ov.pop("hydra.run.dir"))
    run.mkdir(parents=True, exist_ok=True)
    if ov.get("reward.mode") == "broken":
        sys.exit("broken mode: no such reward.mode")
    status = {"status": "completed", "overrides": [f"{k}={v}" for k, v in ov.items()]}
    (run / "status.json").write_text(json.dumps(status))
    summary = {"eval/reward/total": 10 * float(ov["reward.tau_cov"]), "eval/reward/coverage_rate": float(ov["reward.tau_cov"]),
               "eval/reward/uniqueness_rate": 1 - float(ov["reward.tau_cov"]), "argv": sys.argv[1:]}
    (run / "summary.json").write_text(json.dumps(summary))
    """)


def test_driver_main_with_fake_entrypoint(tmp_path, capsys):
    """4 grid trials through the command line, each a real subprocess of a fake entrypoint; 2 of them fail."""
    script = tmp_path / "fake_opgrpo.py"
    script.write_text(FAKE_ENTRYPOINT)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""\
        objective: eval/reward/total
        hydra:
          sweeper:
            direction: maximize
            study_name: fake
            n_trials: 4
            sampler:
              _target_: optuna.samplers.GridSampler
              search_space: {reward.mode: [bucketed, broken], reward.tau_cov: [0.6, 0.7]}
              seed: 0
            params:
              reward.mode: choice(bucketed, broken)
              reward.tau_cov: choice(0.6, 0.7)
              reward.weights.tag: 1.0
        """))
    study = tmp_path / "study"
    rc = optuna_cli.main(["--spec", str(spec), "--study-dir", str(study), "--command", f"{sys.executable} {script}",
                   "experiment=cpu_demo"])
    assert rc == 0
    best = json.loads((study / "best.json").read_text())
    assert best["value"] == pytest.approx(7.0) and best["params"] == {"reward.mode": "bucketed", "reward.tau_cov": 0.7}
    assert (best["n_trials"], best["n_complete"], best["n_failed"]) == (4, 2, 2)
    assert best["overrides"][:3] == ["experiment=cpu_demo", "reward.weights.tag=1.0", "objective=eval/reward/total"]
    summary = json.loads((Path(best["run_dir"]) / "summary.json").read_text())
    assert summary["argv"][-1] == f"hydra.run.dir={best['run_dir']}"
    rows = _csv_rows(study / "study.csv")
    assert sorted(r["state"] for r in rows) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    for r in rows:
        assert Path(r["run_dir"]).name == f"trial_{r['number']}"
        if r["state"] == "FAIL":
            assert r["params_reward.mode"] == "broken" and "broken mode" in r["error"]
            status = json.loads((Path(r["run_dir"]) / "status.json").read_text())
            assert status["status"] == "failed" and "exit code 1" in status["error"]
    # the study dir is a sweep dir for the report: failed trials listed, not dropped
    rows = {r["run"]: r for r in _csv_rows(study / "report" / "runs.csv")}
    assert sorted(rows) == ["trial_0", "trial_1", "trial_2", "trial_3"]
    assert sorted(r["status"] for r in rows.values()) == ["completed", "completed", "failed", "failed"]
    assert "broken mode" in (study / "report" / "index.html").read_text()
    assert "report:" in capsys.readouterr().out


def _fake_launcher(calls, fail_when=None):
    def launch(cmd, run_dir, timeout):
        calls.append(cmd)
        ov = dict(a.split("=", 1) for a in cmd if "=" in a)
        x = float(ov["x"])
        run_dir.mkdir(parents=True, exist_ok=True)
        if fail_when and fail_when(x):
            raise OSError("cannot start")
        (run_dir / "status.json").write_text(json.dumps({"status": "completed", "overrides": []}))
        (run_dir / "summary.json").write_text(json.dumps({"m": x} if x < 0.9 else {"m": float("nan")}))
        return 0
    return launch


def _spec(tmp_path) -> ospec.StudySpec:
    path = tmp_path / "spec.yaml"
    path.write_text("objective: m\nhydra: {sweeper: {direction: minimize, n_trials: 2, study_name: t, "
                    "sampler: {_target_: optuna.samplers.RandomSampler, seed: 1}, params: {x: 'interval(0, 1)'}}}\n")
    return optuna_cli.load_spec(path)


def test_run_study_resumes_and_retries_interrupted(tmp_path):
    import optuna

    spec, study_dir, calls = _spec(tmp_path), tmp_path / "study", []
    res = orun.run_study(spec, study_dir, ["a=1"], launcher=_fake_launcher(calls), report=False)
    assert len(calls) == 2 and calls[0][:4] == [sys.executable, "-m", "opgrpo", "a=1"]
    assert calls[0][-1] == f"hydra.run.dir={study_dir.resolve() / 'trial_0'}"
    values = [t.value for t in res.study.trials if t.value is not None]
    assert res.best["value"] == min(values)

    # resume: the study continues up to n_trials finished trials, numbering on
    orun.run_study(spec, study_dir, ["a=1"], n_trials=3, launcher=_fake_launcher(calls), report=False)
    assert len(calls) == 3 and calls[-1][-1].endswith("trial_2")

    # a trial left running by a stopped driver is marked failed (interrupted) and its values are retried
    study = optuna.load_study(study_name="t", storage=ostudy.open_storage(study_dir.resolve()))  # study.journal
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    orphan_dir = study_dir / f"trial_{orphan.number}"
    orphan.set_user_attr("run_dir", str(orphan_dir))
    orphan_dir.mkdir()
    (orphan_dir / "status.json").write_text(json.dumps({"status": "running"}))
    res = orun.run_study(spec, study_dir, ["a=1"], n_trials=4, launcher=_fake_launcher(calls), report=False)
    assert len(calls) == 4 and f"x={ospec.format_value(orphan.params['x'])}" in calls[-1]
    states = {t.number: (t.state.name, bool(t.user_attrs.get("interrupted"))) for t in res.study.trials}
    assert states[orphan.number] == ("FAIL", True) and len(states) == 5
    assert "interrupted" in json.loads((orphan_dir / "status.json").read_text())["error"]
    assert res.best["n_trials"] == 5


def test_run_study_failures_do_not_stop_it(tmp_path):
    spec, calls = _spec(tmp_path), []
    spec.n_trials = 6
    res = orun.run_study(spec, tmp_path / "study", launcher=_fake_launcher(calls, fail_when=lambda x: x > 0.5),
                        report=True)
    assert len(calls) == 6
    states = [t.state.name for t in res.study.trials]
    xs = [t.params["x"] for t in res.study.trials]
    assert states == ["COMPLETE" if x <= 0.5 else "FAIL" for x in xs]  # launcher errors (x>0.5) fail their trial
    assert res.report["runs"] == 6 and res.report["failed"] == states.count("FAIL")
    # a finite objective is required: NaN or a missing key fails the trial
    value, error = otrial.read_outcome(Path(res.study.trials[0].user_attrs["run_dir"]), "nope", 0)
    assert value is None and "nope" in error


def test_read_outcome_reasons(tmp_path):
    """What a trial's run directory says, read through opgrpo.utils.runfiles (the report reads it the same way)."""
    run = tmp_path / "trial_0"
    run.mkdir()
    (run / "launch.log").write_text("$ python -m opgrpo\nTraceback\nValueError: boom\n")
    assert otrial.read_outcome(run, "m", 0) == (None, "run ended with status None")  # killed before status.json
    assert otrial.read_outcome(run, "m", 1) == (None, "exit code 1: Traceback | ValueError: boom")
    (run / "status.json").write_text("{torn")
    assert otrial.read_outcome(run, "m", 0) == (None, "run ended with status None")  # unusable = none
    (run / "status.json").write_text(json.dumps({"status": "failed", "error": "ValueError: boom"}))
    assert otrial.read_outcome(run, "m", 0) == (None, "ValueError: boom")
    (run / "status.json").write_text(json.dumps({"status": "completed"}))
    assert otrial.read_outcome(run, "m", 0) == (None, "no summary.json")
    (run / "summary.json").write_text("[1]")
    assert otrial.read_outcome(run, "m", 0) == (None, "summary.json is not an object")
    (run / "summary.json").write_text(json.dumps({"m": True}))
    assert otrial.read_outcome(run, "m", 0)[1] == "objective 'm' is missing or not a finite number in summary.json (True)"
    (run / "summary.json").write_text(json.dumps({"m": 3}))
    assert otrial.read_outcome(run, "m", 0) == (3.0, "")
    otrial.mark_failed(run, "gave up", ["x=1"])  # a completed run marked failed by the driver
    status = json.loads((run / "status.json").read_text())
    assert (status["status"], status["error"], status["overrides"]) == ("failed", "gave up", ["x=1"])
    otrial.mark_failed(run, "again", [])  # already failed: kept as it was
    assert json.loads((run / "status.json").read_text())["error"] == "gave up"


def test_objective_from_each_trial_config_and_identical_values_warn(tmp_path, caplog):
    """Issue 20.2: with no objective in the spec, a trial is scored by its own config's objective (cpu_demo's
    reward-based one); two trials with the same value are a tie the study cannot break, and it says so."""
    import logging

    spec = _spec(tmp_path)
    spec.objective = ""

    def launch(cmd, run_dir, timeout):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text("objective: eval/reward/coverage_rate\nstage: eval\n")
        (run_dir / "status.json").write_text(json.dumps({"status": "completed", "overrides": []}))
        (run_dir / "summary.json").write_text(json.dumps({"eval/reward/coverage_rate": 0.25,
                                                          "eval/overall/accuracy": 0.0}))
        return 0

    with caplog.at_level(logging.WARNING, logger="opgrpo.optuna"):
        res = orun.run_study(spec, tmp_path / "study", launcher=launch, report=False)
    assert [t.value for t in res.study.trials] == [0.25, 0.25]
    assert [t.user_attrs["objective"] for t in res.study.trials] == ["eval/reward/coverage_rate"] * 2
    best = json.loads((tmp_path / "study" / "best.json").read_text())
    assert best["objective"] == "eval/reward/coverage_rate"
    assert best["warning"].startswith("the objective eval/reward/coverage_rate is 0.25 in all 2 completed trials")
    assert "does not tell them apart" in caplog.text
    assert oout.identical_objective_warning([0.1, 0.2], "m") == "" and oout.identical_objective_warning([0.1], "m") == ""
    assert "causal-LM NLI stand-in" in oout.identical_objective_warning([0.0, 0.0], "eval/overall/accuracy")
    run = Path(res.study.trials[0].user_attrs["run_dir"])
    (run / "config.yaml").unlink()
    why = "no objective: neither the spec, an objective= override nor the run's config.yaml names one"
    assert otrial.read_outcome(run, "", 0) == (None, why)


def test_max_failure_rate_stops_the_study(tmp_path):
    spec, calls = _spec(tmp_path), []
    spec.n_trials, spec.max_failure_rate = 10, 0.5
    res = orun.run_study(spec, tmp_path / "study", launcher=_fake_launcher(calls, fail_when=lambda x: True), report=False)
    assert len(calls) == 1 and res.best["n_complete"] == 0 and res.best["value"] is None


def test_help_and_dry_run():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "opgrpo.app.optuna_cli", "--help"], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0 and "--study-dir" in res.stdout and "--spec" in res.stdout
    res = subprocess.run([sys.executable, "-m", "opgrpo.app.optuna_cli", "--dry-run", "experiment=cpu_demo"],
                         capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["objectives"] == ["each trial's config objective"] and out["n_trials"] == 20
    assert out["directions"] == ["maximize"] and out["storage"].endswith("study.journal")
    assert not any(c.startswith("objective=") for c in out["command"])
    assert "reward.weights.coverage=<sampled>" in out["command"] and "experiment=cpu_demo" in out["command"]


@pytest.mark.slow
def test_driver_runs_real_opgrpo(tmp_path):
    """Two trials of the real entrypoint: stage=eval on a responses file (CPU NLI scorer, MiniLM estimator)."""
    from opgrpo.benchmark import load_items, sample_data_path, split_by_count

    items, _ = load_items(sample_data_path("test"))
    responses = tmp_path / "responses.jsonl"
    with open(responses, "w") as fh:
        for it in (v[0] for v in split_by_count(items).values()):
            body = it.references[0]  # one sentence per response keeps the NLI pairs few
            fh.write(json.dumps({"id": it.id, "response": f"<core perspectives>\n{body}\n</core perspectives>\n\n"
                                                           f"<summary>\nA summary.\n</summary>"}) + "\n")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("objective: eval/reward/total\nhydra: {sweeper: {direction: maximize, n_trials: 2, "
                         "study_name: real, sampler: {_target_: optuna.samplers.GridSampler, "
                         "search_space: {reward.weights.coverage: [0.1, 0.5]}}, "
                         "params: {reward.weights.coverage: 'choice(0.1, 0.5)'}}}\n")
    study_dir = tmp_path / "study"
    env_before = dict(os.environ)
    os.environ.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
    try:
        res = orun.run_study(optuna_cli.load_spec(spec_path), study_dir,
                            ["experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses}"],
                            trial_timeout=900)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    trials = res.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], [t.user_attrs.get("error") for t in trials]
    by_w = {t.params["reward.weights.coverage"]: t for t in trials}
    for w, t in by_w.items():
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert t.value == summary["eval/reward/total"]
        status = json.loads((Path(t.user_attrs["run_dir"]) / "status.json").read_text())
        assert status["status"] == "completed" and f"reward.weights.coverage={w}" in status["overrides"]
    # same responses: the total differs by exactly 0.4 x mean coverage score
    cov = json.loads((Path(by_w[0.5].user_attrs["run_dir"]) / "summary.json").read_text())["eval/reward/coverage"]
    assert by_w[0.5].value - by_w[0.1].value == pytest.approx(0.4 * cov, abs=1e-6)
    assert cov > 0 and res.best["params"] == {"reward.weights.coverage": 0.5}
    assert res.report["runs"] == 2 and res.report["completed"] == 2
    assert (study_dir / "report" / "index.html").is_file() and (study_dir / "study.csv").is_file()
