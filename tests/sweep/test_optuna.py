"""`opgrpo-optuna` beyond one objective and one process (issue 18.4/18.5): a two-objective study (coverage rate and
uniqueness rate) with its Pareto trials and Optuna's Pareto-front plot, trials in parallel on one journal-file
study (threads of one driver, two driver processes, stale trials of drivers that are gone), trials through a
Hydra launcher, and `opgrpo -m sweep=optuna` stopping with the `opgrpo-optuna` command to run instead."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

import opgrpo.app.paths
import opgrpo.app.schema
from opgrpo.app import optuna_cli
from opgrpo.sweep.optuna import heartbeat as ohb
from opgrpo.sweep.optuna import run as orun
from opgrpo.sweep.optuna import spec as ospec
from opgrpo.sweep.optuna import study as ostudy

COV, UNIQ = "eval/reward/coverage_rate", "eval/reward/uniqueness_rate"
# hand-made (coverage rate, uniqueness rate) per value of x; both maximised, the Pareto front is x = 0, 1, 3:
# 2 is dominated by 1, 4 by 1 (same coverage, lower uniqueness), 5 by 0; x = 6 has no uniqueness rate (fails)
POINTS = {0: (0.2, 0.9), 1: (0.5, 0.5), 2: (0.4, 0.4), 3: (0.9, 0.1), 4: (0.5, 0.3), 5: (0.1, 0.8), 6: (0.7, None)}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_run(run_dir: Path, summary: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "overrides": []}))
    (run_dir / "summary.json").write_text(json.dumps(summary))


def _x(cmd) -> float:
    return float(dict(a.split("=", 1) for a in cmd if "=" in a)["x"])


def _spec(tmp_path, text: str) -> ospec.StudySpec:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return optuna_cli.load_spec(path)


PARETO_SPEC = f"""\
    hydra:
      sweeper:
        direction: [maximize, maximize]
        objectives: [{COV}, {UNIQ}]
        study_name: pareto
        n_trials: 7
        sampler: {{_target_: optuna.samplers.GridSampler, search_space: {{x: [0, 1, 2, 3, 4, 5, 6]}}, seed: 0}}
        params: {{x: 'choice(0, 1, 2, 3, 4, 5, 6)'}}
    """


def test_two_objective_study_pareto_trials_and_plot(tmp_path):
    """Stub trial runner (the launcher is replaced only here): the study's Pareto set is exactly x = 0, 1, 3."""
    def launch(cmd, run_dir, timeout):
        cov, uniq = POINTS[int(_x(cmd))]
        _write_run(run_dir, {COV: cov, **({UNIQ: uniq} if uniq is not None else {}), "eval/overall/accuracy": 0.0})
        return 0

    spec = _spec(tmp_path, PARETO_SPEC)
    assert (spec.objectives, spec.directions, spec.objective) == ([COV, UNIQ], ["maximize", "maximize"], "")
    study_dir = tmp_path / "study"
    res = orun.run_study(spec, study_dir, ["experiment=cpu_demo"], launcher=launch, report=False)
    assert len(res.study.directions) == 2
    assert sorted(int(t.params["x"]) for t in res.study.best_trials) == [0, 1, 3]
    best = json.loads((study_dir / "best.json").read_text())
    assert (best["n_trials"], best["n_complete"], best["n_failed"]) == (7, 6, 1)
    assert best["objectives"] == [COV, UNIQ] and best["directions"] == ["maximize", "maximize"]
    front = {int(p["params"]["x"]): p for p in best["pareto"]}
    assert sorted(front) == [0, 1, 3]
    for x, p in front.items():
        assert p["values"] == {COV: POINTS[x][0], UNIQ: POINTS[x][1]}
        assert p["overrides"] == ["experiment=cpu_demo", f"x={x}"] and Path(p["run_dir"]).is_dir()
    assert json.loads((study_dir / "pareto.json").read_text()) == best["pareto"]
    pareto_csv = _rows(study_dir / "pareto.csv")
    assert sorted((int(r["params_x"]), float(r[COV]), float(r[UNIQ])) for r in pareto_csv) == [
        (0, 0.2, 0.9), (1, 0.5, 0.5), (3, 0.9, 0.1)]
    rows = {int(r["params_x"]): r for r in _rows(study_dir / "study.csv")}
    assert {x for x, r in rows.items() if r["pareto"] == "True"} == {0, 1, 3}
    assert rows[6]["state"] == "FAIL" and UNIQ in rows[6]["error"] and rows[6][COV] == ""
    assert float(rows[4][UNIQ]) == 0.3 and rows[4]["pareto"] == "False"
    # Optuna's own Pareto-front plot, one self-contained HTML file (plotly.js inlined, no CDN)
    html = (study_dir / "pareto_front.html").read_text()
    assert best["pareto_front_html"] == str(study_dir.resolve() / "pareto_front.html")
    assert len(html) > 1_000_000 and '<script src="http' not in html and "Plotly.newPlot" in html
    esc = lambda text: text.replace("/", "\\u002f")  # plotly escapes "/" in the figure's JSON
    assert esc(f'"title":{{"text":"{COV}"}}') in html and esc(f'"title":{{"text":"{UNIQ}"}}') in html  # axes
    assert '\\"x=3\\"' in html  # the hover shows each trial's overrides


def test_multi_objective_spec_and_command_line(tmp_path, capsys):
    spec = _spec(tmp_path, f"hydra: {{sweeper: {{objectives: [{COV}, {UNIQ}], direction: maximize}}}}\n")
    assert spec.directions == ["maximize", "maximize"]  # one direction for every objective
    assert ostudy.objectives_of(spec, ["objective=eval/overall/accuracy"]) == ([COV, UNIQ], ["maximize", "maximize"])
    spec = _spec(tmp_path, "hydra: {sweeper: {objectives: [a], direction: minimize}}\n")
    assert (spec.objectives, spec.objective, spec.direction) == ([], "a", "minimize")  # one = single-objective
    for text, match in [("hydra: {sweeper: {objectives: [a, b], direction: [maximize, maximize, maximize]}}",
                         "3 directions for 2 objectives"),
                        ("hydra: {sweeper: {objectives: [a, b], direction: [maximize, up]}}", "direction must be"),
                        ("hydra: {sweeper: {objectives: [a, b, c], direction: [maximize, minimize]}}",
                         "2 directions for 3 objectives"),
                        ("hydra: {sweeper: {objectives: [a, a]}}", "objectives"),
                        ("objective: m\nhydra: {sweeper: {objectives: [a, b]}}", "not both")]:
        with pytest.raises(ValueError, match=match):
            _spec(tmp_path, text + "\n")
    # the default spec stays single-objective; --objectives / --directions make it two-objective
    assert optuna_cli.main(["--dry-run", "experiment=cpu_demo"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["objectives"] == ["each trial's config objective"] and out["directions"] == ["maximize"]
    assert optuna_cli.main(["--dry-run", "--objectives", f"{COV},{UNIQ}", "--directions", "maximize,minimize"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["objectives"] == [COV, UNIQ] and out["directions"] == ["maximize", "minimize"]
    with pytest.raises(SystemExit):
        optuna_cli.main(["--dry-run", "--objectives", "a,b,c", "--directions", "maximize,minimize"])
    assert "2 directions for 3 objectives" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the preset is the spec, not a setting of each trial
        optuna_cli.main(["--dry-run", "sweep=optuna", "experiment=cpu_demo"])
    assert "sweep=optuna: a sweep preset is not a trial setting" in capsys.readouterr().err


SINGLE_SPEC = """\
    objective: m
    hydra: {sweeper: {direction: maximize, n_trials: 5, study_name: t,
                      sampler: {_target_: optuna.samplers.RandomSampler, seed: 3}, params: {x: 'interval(0, 1)'}}}
    """


def test_n_jobs_threads_run_trials_at_once_and_share_the_count(tmp_path):
    """--n-jobs 2: two trials run at the same time (each thread's first trial waits for the other's), and the
    study still has exactly n_trials trials."""
    barrier, seen, lock = threading.Barrier(2, timeout=30), set(), threading.Lock()

    def launch(cmd, run_dir, timeout):
        with lock:
            first = threading.get_ident() not in seen
            seen.add(threading.get_ident())
        if first:
            barrier.wait()
        _write_run(run_dir, {"m": _x(cmd)})
        return 0

    res = orun.run_study(_spec(tmp_path, SINGLE_SPEC), tmp_path / "study", launcher=launch, report=False, n_jobs=2)
    assert len(seen) == 2
    assert sorted(t.number for t in res.study.trials) == [0, 1, 2, 3, 4]
    assert {t.state.name for t in res.study.trials} == {"COMPLETE"}
    assert res.best["value"] == max(t.value for t in res.study.trials) and res.best["n_trials"] == 5
    assert (tmp_path / "study" / "study.journal").is_file()


FAKE_ENTRYPOINT = textwrap.dedent("""\
    # A stand-in for `python -m opgrpo`: its first trial in each driver waits until both drivers run one.
    import json, os, sys, time
    from pathlib import Path
    ov = dict(a.split("=", 1) for a in sys.argv[1:])
    run = Path(ov.pop("hydra.run.dir"))
    run.mkdir(parents=True, exist_ok=True)
    drivers = run.parent / "drivers"
    drivers.mkdir(exist_ok=True)
    (drivers / str(os.getppid())).touch()
    deadline = time.time() + 60
    while len(os.listdir(drivers)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    (run / "status.json").write_text(json.dumps({"status": "completed"}))
    (run / "summary.json").write_text(json.dumps({"m": float(ov["x"])}))
    """)


def test_two_driver_processes_share_one_study(tmp_path):
    """Two `opgrpo-optuna` processes on one --study-dir (the journal file): 5 trials in all, numbered 0-4, each
    driver ran at least one of them, both drivers end successfully."""
    fake, spec = tmp_path / "fake_opgrpo.py", tmp_path / "spec.yaml"
    fake.write_text(FAKE_ENTRYPOINT)
    spec.write_text(textwrap.dedent(SINGLE_SPEC))
    study_dir = tmp_path / "study"
    cmd = [sys.executable, "-m", "opgrpo.app.optuna_cli", "--spec", str(spec), "--study-dir", str(study_dir),
           "--command", f"{sys.executable} {fake}", "--no-report"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    import optuna

    study = optuna.load_study(study_name="t", storage=ostudy.open_storage(study_dir.resolve()))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert {t.user_attrs["driver"].rsplit(":", 1)[1] for t in trials} == {str(p.pid) for p in procs}
    assert sorted(os.listdir(study_dir / "drivers")) == sorted(str(p.pid) for p in procs)
    assert sorted(p.name for p in study_dir.glob("trial_*")) == [f"trial_{n}" for n in range(5)]
    best = json.loads((study_dir / "best.json").read_text())
    assert best["n_trials"] == 5 and best["value"] == max(t.value for t in trials)


def test_running_trials_of_live_drivers_are_left_alone(tmp_path):
    """A trial another live driver runs is not retried; once that driver is gone it is, with the same values."""
    import optuna

    spec = _spec(tmp_path, SINGLE_SPEC)
    study_dir, calls = (tmp_path / "study").resolve(), []

    def launch(cmd, run_dir, timeout):
        calls.append(cmd)
        _write_run(run_dir, {"m": _x(cmd)})
        return 0

    orun.run_study(spec, study_dir, launcher=launch, report=False, n_trials=1)
    study = optuna.load_study(study_name="t", storage=ostudy.open_storage(study_dir))
    other = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        other.set_user_attr("driver", f"{ohb.HOST}:{sleeper.pid}")
        other.set_user_attr("run_dir", str(study_dir / f"trial_{other.number}"))
        ohb.touch_heartbeat(study_dir / f"trial_{other.number}")
        res = orun.run_study(spec, study_dir, launcher=launch, report=False, n_trials=2)
        assert len(calls) == 1  # 1 finished + 1 running = 2: nothing to ask
        assert res.study.trials[other.number].state.name == "RUNNING"
    finally:
        sleeper.kill()
        sleeper.wait()
    res = orun.run_study(spec, study_dir, launcher=launch, report=False, n_trials=2)
    assert len(calls) == 2 and _x(calls[-1]) == other.params["x"]
    assert res.study.trials[other.number].state.name == "FAIL"
    assert res.study.trials[other.number].user_attrs["interrupted"] is True

    # is_stale: another machine's trial by its heartbeat's age; this process's only while a worker runs it
    run_dir = tmp_path / "elsewhere"
    trial = SimpleNamespace(number=7, user_attrs={"driver": "node-42:123", "run_dir": str(run_dir)})
    assert ohb.is_stale(trial, study_dir)  # no heartbeat at all
    ohb.touch_heartbeat(run_dir)
    assert not ohb.is_stale(trial, study_dir, stale_after=60)
    old = time.time() - 120
    os.utime(run_dir / ohb.HEARTBEAT, (old, old))
    assert ohb.is_stale(trial, study_dir, stale_after=60)
    with ohb.heartbeat(run_dir, every=0.05):  # touched while the driver waits for its trial
        time.sleep(0.3)
        assert time.time() - (run_dir / ohb.HEARTBEAT).stat().st_mtime < 0.2
    mine = SimpleNamespace(number=7, user_attrs={"driver": f"{ohb.HOST}:{os.getpid()}", "run_dir": str(run_dir)})
    ohb.touch_heartbeat(run_dir)
    assert ohb.is_stale(mine, study_dir)  # no worker of this process runs it
    ohb.LIVE.add((str(study_dir), 7))
    try:
        assert not ohb.is_stale(mine, study_dir)
    finally:
        ohb.LIVE.discard((str(study_dir), 7))


def test_trials_through_a_hydra_launcher(tmp_path):
    """--launcher (or a launcher=slurm override): each trial is a one-job multirun whose job directory is
    trial_<n> (hydra.sweep.subdir=.), so hydra-submitit-launcher submits it and the driver waits for it."""
    calls = []

    def launch(cmd, run_dir, timeout):
        calls.append(cmd)
        _write_run(run_dir, {"m": _x(cmd)})
        return 0

    spec = _spec(tmp_path, SINGLE_SPEC)
    study_dir = (tmp_path / "study").resolve()
    orun.run_study(spec, study_dir, ["experiment=paper", "launcher=slurm", "hydra.launcher.partition=gpu"],
                  launcher=launch, report=False, n_trials=1, command=["opgrpo"])
    x = calls[0][-4]
    assert calls[0] == ["opgrpo", "-m", "launcher=slurm", "experiment=paper", "hydra.launcher.partition=gpu",
                        "objective=m", x, f"store.dir={study_dir / '.stages'}", f"hydra.sweep.dir={study_dir / 'trial_0'}",
                        "hydra.sweep.subdir=."]
    assert json.loads((study_dir / "spec.json").read_text())["hydra_launcher"] == "slurm"
    assert ostudy.split_launcher(["launcher=local", "a=1"]) == ("", ["launcher=local", "a=1"])
    assert ostudy.split_launcher(["launcher=slurm"], "submitit_local") == ("submitit_local", [])


@pytest.fixture(scope="module")
def hydra_compose():
    opgrpo.app.schema.register()
    with initialize_config_dir(str(opgrpo.app.paths.config_dir()), version_base="1.3"):
        yield lambda overrides: compose("opgrpo", overrides=list(overrides), return_hydra_config=True)


def test_multirun_of_the_optuna_preset_points_to_the_driver(hydra_compose, capsys):
    """Issue 18.4: `opgrpo -m sweep=optuna` used to end in `RuntimeError: Unknown plugin class ...
    hydra_optuna_sweeper`; the preset's callback stops the multirun first with the equivalent command."""
    cfg = hydra_compose(["experiment=cpu_demo", "sweep=optuna", "launcher=slurm", "reward.mode=continuous"])
    assert cfg.hydra.callbacks.optuna_driver_only._target_ == "opgrpo.app.optuna_cli.NotAHydraSweeper"
    assert cfg.hydra.callbacks.sweep_outcome  # the app's own callback stays
    with pytest.raises(SystemExit) as exc:
        optuna_cli.NotAHydraSweeper().on_multirun_start(config=cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "opgrpo-optuna --launcher slurm experiment=cpu_demo reward.mode=continuous\n" in err
    assert "does not support Optuna >= 4" in err
    assert "opgrpo-optuna --spec my_space a=1" in optuna_cli.not_a_sweeper_message(["sweep=my_space", "a=1"])


def test_opgrpo_multirun_sweep_optuna_exits_with_the_hint(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "opgrpo", "-m", "sweep=optuna", "experiment=cpu_demo",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=False, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Run the study with\n    opgrpo-optuna experiment=cpu_demo\n" in res.stderr
    assert "Unknown plugin class" not in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "sweep").exists()  # nothing ran


@pytest.mark.slow
def test_real_two_objective_trial_through_the_submitit_launcher(tmp_path):
    """One real trial of the entrypoint (stage=eval on a responses file, OP reward only, CPU MiniLM estimator) as
    a one-job multirun through hydra-submitit-launcher's local executor, scored on coverage and uniqueness rate."""
    from opgrpo.benchmark import load_items, sample_data_path, split_by_count

    items, _ = load_items(sample_data_path("test"))
    responses = tmp_path / "responses.jsonl"
    body = "<core perspectives>\n{}\n</core perspectives>\n\n<summary>\nA summary.\n</summary>"
    responses.write_text("".join(json.dumps({"id": it.id, "response": body.format(it.references[0])}) + "\n"
                                 for it in (v[0] for v in split_by_count(items).values())))
    spec = _spec(tmp_path, PARETO_SPEC.replace("n_trials: 7", "n_trials: 1").replace(
        "x: [0, 1, 2, 3, 4, 5, 6]", "reward.tau_cov_delta: [0.0]").replace(
        "x: 'choice(0, 1, 2, 3, 4, 5, 6)'", "reward.tau_cov_delta: 'choice(0.0)'"))
    env_before = dict(os.environ)
    os.environ.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
    try:
        res = orun.run_study(spec, tmp_path / "study", ["experiment=cpu_demo", "stage=eval", "eval.nli.backend=none",
                                                       f"eval.responses_file={responses}"],
                            hydra_launcher="submitit_local", trial_timeout=900, report=False)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    (trial,) = res.study.trials
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("error")
    run_dir = Path(trial.user_attrs["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert trial.values == [summary[COV], summary[UNIQ]] and 0 < summary[COV] <= 1
    assert (run_dir / ".submitit").is_dir() and (run_dir / "multirun.yaml").is_file()  # it went through submitit
    assert res.best["pareto"][0]["number"] == 0 and (tmp_path / "study" / "pareto_front.html").is_file()
