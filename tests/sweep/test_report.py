"""The sweep report on fabricated run directories with known numbers (opgrpo/sweep/records.py, table.py,
plots.py, report.py)."""
from __future__ import annotations

import csv
import json
import math
import sys
import types
from pathlib import Path

import pytest

from opgrpo.sweep.records import find_run_dirs, load_run, parse_overrides
from opgrpo.sweep.report import build_report
from opgrpo.sweep.table import pareto_front


# ---- pareto_front ---------------------------------------------------------------------------------------------
def test_pareto_front_hand_computed():
    pts = [
        (0.2, 0.9),   # 0 front: best uniqueness
        (0.5, 0.8),   # 1 front
        (0.5, 0.6),   # 2 dominated by 1 (same x, lower y)
        (0.8, 0.5),   # 3 front
        (0.3, 0.7),   # 4 dominated by 1
        (0.8, 0.4),   # 5 dominated by 3 (same x, lower y)
        (0.1, 0.9),   # 6 dominated by 0 (same y, lower x)
        (0.9, 0.1),   # 7 front: best coverage
    ]
    assert pareto_front(pts) == [0, 1, 3, 7]  # along the front: increasing x, decreasing y


def test_pareto_front_ties_nan_and_edges():
    assert pareto_front([]) == []
    assert pareto_front([(0.4, 0.4)]) == [0]
    assert sorted(pareto_front([(0.5, 0.5), (0.5, 0.5), (0.1, 0.1)])) == [0, 1]  # equal points both stay
    assert pareto_front([(math.nan, 0.9), (0.3, 0.3), (1.0, math.nan)]) == [1]  # NaN never dominates
    assert pareto_front([(0.2, 0.2), (0.6, 0.6), (0.4, 0.9)]) == [2, 1]
    assert pareto_front([(1, 0), (0, 1), (1, 1)]) == [2]


def test_parse_overrides():
    assert parse_overrides(["reward.weights.coverage=0.1", "+sweep/ablate=no_tag", "++x=a=b", "~logger", "flag"]) == {
        "reward.weights.coverage": "0.1", "sweep/ablate": "no_tag", "x": "a=b", "logger": "<deleted>", "flag": ""}


# ---- fabricated sweep -----------------------------------------------------------------------------------------
def make_run(root: Path, name: str, overrides: list[str], status: str | None = "completed", summary=None,
             curves: list[dict] | None = None, hydra: bool = True, error: str = "") -> Path:
    d = root / name
    d.mkdir(parents=True)
    if hydra:
        (d / ".hydra").mkdir()
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if status is not None:
        st = {"status": status, "overrides": overrides, **({"error": error} if error else {})}
        (d / "status.json").write_text(json.dumps(st))
    if summary is not None:
        (d / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    if curves is not None:
        (d / "grpo").mkdir()
        (d / "grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curves) + '{"torn": ')
    return d


def summary_for(cov_rate, uniq_rate, acc, *, total=0.5, runtime=None):
    s = {"eval/reward/coverage_rate": cov_rate, "eval/reward/uniqueness_rate": uniq_rate,
         "eval/reward/total": total, "eval/reward/coverage": 5 * cov_rate, "eval/reward/uniqueness": uniq_rate,
         "eval/reward/format": 1.5, "eval/reward/tag": 0.0, "eval/nli_backend": "causal_lm"}
    if acc is not None:
        s.update({"eval/overall/accuracy": acc, "eval/overall/accuracy_stderr": 0.01,
                  "eval/5/accuracy": acc + 0.1, "eval/>10/accuracy": acc - 0.1, "eval/10/accuracy": acc})
    if runtime is not None:
        s.update({"grpo/train_runtime": runtime, "grpo/global_step": 3, "sft/train_runtime": 10.0})
    return s


def curves_for(cov: list[float]) -> list[dict]:
    rows = [{"step": i + 1, "rewards/coverage/mean": c, "rewards/uniqueness/mean": 0.5, "reward": 0.3 * c + 0.15}
            for i, c in enumerate(cov)]
    rows.append({"step": len(cov), "train_runtime": 12.0})  # the trainer's final summary log has no rewards
    return rows


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    ov = lambda c, u: [f"reward.weights.coverage={c}", f"reward.weights.uniqueness={u}", "experiment=cpu_demo"]
    make_run(root, "0", ov(0.1, 0.1), summary=summary_for(0.2, 0.9, 0.30, runtime=100.0), curves=curves_for([1, 2, 3]))
    make_run(root, "1", ov(0.1, 0.5), summary=summary_for(0.5, 0.8, 0.40, runtime=50.0), curves=curves_for([0.5, 1]))
    make_run(root, "2", ov(0.5, 0.1), summary=summary_for(0.5, 0.6, 0.35))        # dominated by 1
    make_run(root, "3", ov(0.5, 0.5), summary=summary_for(0.8, 0.5, None))        # front, no NLI accuracy
    make_run(root, "10", ov(0.3, 0.3), summary=summary_for(0.3, 0.7, 0.20))       # dominated by 1
    make_run(root, "4", ov(0.9, 0.9), status="failed", error="RuntimeError: CUDA out of memory")
    make_run(root, "5", ov(0.7, 0.7), status="running")
    make_run(root, "6", ov(0.6, 0.6), status=None)                                # .hydra only: never started
    make_run(root, "7", ov(0.2, 0.2), summary='{"eval/reward/coverage_rate": 0.9,')  # corrupt summary
    make_run(root, "8", ov(0.4, 0.4))                                             # completed, no summary
    (root / "9").mkdir()
    (root / "9" / "status.json").write_text("{not json")                          # corrupt status
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "notes").mkdir()                                                      # not a run dir
    return root


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def test_find_run_dirs_any_depth_natural_order(sweep, tmp_path):
    names = [p.relative_to(sweep).as_posix() for p in find_run_dirs(sweep)]
    assert names == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
    nested = tmp_path / "study" / "a" / "b"
    make_run(nested.parent, "b", ["x=1"], summary=summary_for(0.1, 0.1, 0.1))
    make_run(nested, "inner", ["x=2"])  # inside a run dir: not searched
    assert [p.relative_to(tmp_path / "study").as_posix() for p in find_run_dirs(tmp_path / "study")] == ["a/b"]


def test_load_run_classifies_bad_runs(sweep):
    assert load_run(sweep / "0", sweep).status == "completed"
    failed = load_run(sweep / "4", sweep)
    assert (failed.status, failed.error) == ("failed", "RuntimeError: CUDA out of memory")
    assert failed.overrides["reward.weights.coverage"] == "0.9"
    assert load_run(sweep / "5", sweep).status == "unfinished"
    assert "no status.json" in load_run(sweep / "6", sweep).error
    corrupt = load_run(sweep / "7", sweep)
    assert corrupt.status == "failed" and "corrupt summary.json" in corrupt.error
    assert "no summary.json" in load_run(sweep / "8", sweep).error
    assert load_run(sweep / "9", sweep).status == "failed"


def test_build_report(sweep, tmp_path):
    out_dir = tmp_path / "report"
    out = build_report(sweep, out_dir)
    assert (out["runs"], out["completed"], out["failed"], out["unfinished"]) == (11, 5, 4, 2)
    # coverage/uniqueness of the completed runs: 0 (.2,.9) 1 (.5,.8) 2 (.5,.6) 3 (.8,.5) 10 (.3,.7)
    assert out["pareto"] == ["0", "1", "3"]
    assert out["pareto_front"] == "0, 1, 3"
    for key in ("csv", "markdown", "pareto_plot", "curves_plot", "html"):
        assert Path(out[key]).is_file() and Path(out[key]).parent == out_dir, key
    assert Path(out["pareto_plot"]).read_bytes()[:4] == b"\x89PNG"

    rows = read_csv(out_dir / "runs.csv")
    assert set(rows) == {str(i) for i in range(11)}
    assert {r: rows[r]["pareto"] for r in rows if rows[r]["status"] == "completed"} == {
        "0": "True", "1": "True", "2": "False", "3": "True", "10": "False"}
    assert rows["2"]["reward.weights.coverage"] == "0.5" and rows["2"]["reward.weights.uniqueness"] == "0.1"
    assert float(rows["1"]["coverage_rate"]) == 0.5 and float(rows["1"]["uniqueness_rate"]) == 0.8
    assert float(rows["1"]["reward/coverage"]) == 2.5
    assert float(rows["1"]["nli/overall"]) == 0.4 and float(rows["1"]["nli/5"]) == pytest.approx(0.5)
    assert float(rows["1"]["nli/>10"]) == pytest.approx(0.3)
    assert rows["3"]["nli/overall"] == ""  # missing, not invented
    assert float(rows["0"]["cost/grpo_runtime_s"]) == 100.0 and float(rows["0"]["cost/train_runtime_s"]) == 110.0
    assert float(rows["0"]["grpo_last/coverage"]) == 3.0 and float(rows["1"]["grpo_last/reward"]) == pytest.approx(0.45)
    assert rows["4"]["status"] == "failed" and rows["4"]["error"] == "RuntimeError: CUDA out of memory"
    assert rows["5"]["status"] == "unfinished"
    with open(out_dir / "runs.csv", newline="") as f:
        header = next(csv.reader(f))
    nli = [h for h in header if h.startswith("nli/")]
    assert nli == ["nli/overall", "nli/5", "nli/10", "nli/>10", "nli/overall_stderr"]

    md = (out_dir / "runs.md").read_text()
    completed_part, failed_part = md.split("## Failed and unfinished runs")
    assert "Overrides shared by every run: experiment=cpu_demo" in md
    assert "| 1 | completed | 0.1 | 0.5 |" in completed_part
    for name, text in [("4", "CUDA out of memory"), ("5", "status 'running'"), ("6", "no status.json"),
                       ("7", "corrupt summary.json"), ("8", "no summary.json"), ("9", "corrupt status.json")]:
        line = next(ln for ln in failed_part.splitlines() if ln.startswith(f"| {name} |"))
        assert text in line, (name, line)

    page = (out_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "Failed and unfinished runs" in page and "CUDA out of memory" in page
    for name in rows:
        assert f"<td>{name}</td>" in page, name
    assert '<tr class="front"><td>1</td>' in page and '<tr class="front"><td>2</td>' not in page


def test_report_without_curves_or_completed_runs(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "0", ["a=1"], status="failed", error="ValueError: boom")
    make_run(root, "1", ["a=2"], summary={"eval/overall/accuracy": 0.5})  # no reward rates: not plotted
    out = build_report(root, tmp_path / "out")
    assert (out["runs"], out["completed"], out["failed"]) == (2, 1, 1)
    assert out["pareto"] == [] and out["curves_plot"] == ""
    assert not (tmp_path / "out" / "curves.png").exists() and (tmp_path / "out" / "pareto.png").is_file()
    assert "ValueError: boom" in (tmp_path / "out" / "index.html").read_text()


def test_empty_sweep_and_missing_dir(tmp_path):
    out = build_report(tmp_path, tmp_path / "out")
    assert (out["runs"], out["completed"], out["pareto"]) == (0, 0, [])
    assert "(none)" in (tmp_path / "out" / "runs.md").read_text()
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "nope", tmp_path / "out2")


def test_report_run_inside_the_sweep_is_left_out(sweep):
    """`opgrpo stage=report` run whose run dir sits in the sweep dir: its own (running) dir is not a sweep run."""
    me = make_run(sweep, "99", ["stage=report"], status="running")
    out = build_report(sweep, me / "report")
    assert out["runs"] == 11 and "99" not in read_csv(me / "report" / "runs.csv")


def test_single_run_dir_as_sweep(tmp_path):
    run = make_run(tmp_path, "run", ["x=1"], summary=summary_for(0.4, 0.6, 0.5))
    out = build_report(run, tmp_path / "out")
    assert out["runs"] == 1 and out["pareto"] == ["run"]


def test_stage_report_logs_the_result(sweep, tmp_path):
    """stages.stage_report -> RunDir.log: the returned dict must flatten into summary.json."""
    from opgrpo.app.rundir import RunDir

    run = RunDir(tmp_path / "reportrun")
    run.log("report", build_report(sweep, run.stage_dir("report")))
    s = json.loads((tmp_path / "reportrun" / "summary.json").read_text())
    assert s["report/runs"] == 11 and s["report/completed"] == 5 and s["report/pareto_front"] == "0, 1, 3"
    assert s["report/html"].endswith("index.html")


# ---- W&B ------------------------------------------------------------------------------------------------------
def test_wandb_skipped_offline(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = build_report(sweep, tmp_path / "out", wandb_project="me/opgrpo")
    assert out["runs"] == 11 and "skipped" in out["wandb"]
    assert "skipped" in (tmp_path / "out" / "index.html").read_text()


def test_wandb_runs_pulled(sweep, tmp_path, monkeypatch):
    class FakeRun:
        def __init__(self, name, state, cfg, summary):
            self.name, self.state, self.config, self.summary, self.url = name, state, cfg, summary, f"https://x/{name}"

        def history(self, pandas=False):
            return [{"train/global_step": 1, "train/rewards/coverage/mean": 1.0, "train/reward": 0.4}]

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def runs(self, project):
            assert project == "me/opgrpo"
            return [FakeRun("w1", "finished", {"reward": {"weights": {"coverage": 0.2}}, "lr": 1e-6},
                            {"eval/reward/coverage_rate": 0.95, "eval/reward/uniqueness_rate": 0.95,
                             "eval/overall/accuracy": 0.6}),
                    FakeRun("w2", "crashed", {"reward": {"weights": {"coverage": 0.4}}}, {})]

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=FakeApi))
    out = build_report(sweep, tmp_path / "out", wandb_project="me/opgrpo")
    assert (out["runs"], out["completed"], out["failed"]) == (13, 6, 5)
    assert out["pareto"] == ["wandb:w1"]  # (0.95, 0.95) dominates every file run
    rows = read_csv(tmp_path / "out" / "runs.csv")
    assert rows["wandb:w1"]["reward.weights.coverage"] == "0.2" and rows["wandb:w2"]["status"] == "failed"
    assert float(rows["wandb:w1"]["grpo_last/coverage"]) == 1.0
