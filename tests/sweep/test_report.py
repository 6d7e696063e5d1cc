"""The sweep report and the comparison on fabricated run directories with known numbers
(opgrpo/sweep/records.py, table.py, plots.py, report.py, compare.py; the report and compare stages and the
multirun's report in opgrpo/app)."""
from __future__ import annotations

import csv
import json
import math
import re
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest

from opgrpo.app.runconfig import to_config
from opgrpo.sweep.records import (
    find_run_dirs,
    load_run,
    parse_overrides,
    runs_from_dirs,
)
from opgrpo.sweep.report import build_report, report_dir
from opgrpo.sweep.table import (
    PAPER_WEIGHTS,
    pareto_front,
    reference_total,
    reference_weights,
)


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
             curves: list[dict] | None = None, hydra: bool = True, error: str = "", config: str = "") -> Path:
    d = root / name
    d.mkdir(parents=True)
    if config:
        (d / "config.yaml").write_text(config)
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


def curves_for(cov: list[float], own_coverage_weight: float = 0.3) -> list[dict]:
    rows = [{"step": i + 1, "rewards/coverage/mean": c, "rewards/uniqueness/mean": 0.5, "rewards/format/mean": 1.0,
             "rewards/tag/mean": -0.2, "rewards/op_total/mean": own_coverage_weight * c + 0.05,
             "reward": own_coverage_weight * c + 0.05} for i, c in enumerate(cov)]
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


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: list[list[str]] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.current = self.tables.setdefault(dict(attrs).get("id") or str(len(self.tables)), [])
        elif tag == "tr" and self.current is not None:
            self.current.append([])
        elif tag in ("td", "th") and self.current is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and self.current is not None:
            self.current[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def html_tables(page: str) -> dict[str, list[list[str]]]:
    """The page's tables by id: header row, then one list of cell texts per row (entities decoded)."""
    parser = _Tables()
    parser.feed(page)
    return parser.tables


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
    no_summary = load_run(sweep / "8", sweep)  # completed, nothing to compare (e.g. stage=describe): skipped
    why = "no evaluation numbers (eval/... in summary.json): no summary.json"
    assert (no_summary.status, no_summary.error) == ("skipped", why)
    assert load_run(sweep / "9", sweep).status == "failed"


def test_build_report(sweep, tmp_path):
    out_dir = tmp_path / "report"
    out = build_report(sweep, out_dir)
    assert (out["runs"], out["completed"], out["failed"], out["unfinished"], out["skipped"]) == (11, 5, 3, 2, 1)
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
    assert float(rows["1"]["reward/coverage"]) == 2.5 and float(rows["1"]["reward/total"]) == 0.5
    # paper weights: 0.3 x 2.5 + 0.3 x 0.8 + 0.1 x 1.5 + 1.0 x 0.0
    assert float(rows["1"]["reward/total_at_reference"]) == pytest.approx(1.14)
    assert rows["1"]["nli_backend"] == "causal_lm" and rows["4"]["nli_backend"] == ""
    assert float(rows["1"]["nli/overall"]) == 0.4 and float(rows["1"]["nli/5"]) == pytest.approx(0.5)
    assert float(rows["1"]["nli/>10"]) == pytest.approx(0.3)
    assert rows["3"]["nli/overall"] == ""  # missing, not invented
    assert float(rows["0"]["cost/grpo_runtime_s"]) == 100.0 and float(rows["0"]["cost/train_runtime_s"]) == 110.0
    assert float(rows["0"]["grpo_last/coverage"]) == 3.0 and float(rows["1"]["grpo_last/reward"]) == pytest.approx(0.35)
    # last step at the paper weights: 0.3 x 3 + 0.3 x 0.5 + 0.1 x 1.0 + 1.0 x -0.2
    assert float(rows["0"]["grpo_last/total_at_reference"]) == pytest.approx(0.95)
    assert "grpo_last/op_total" not in rows["0"]  # the run's own total is grpo_last/reward, once
    assert rows["4"]["status"] == "failed" and rows["4"]["error"] == "RuntimeError: CUDA out of memory"
    assert rows["5"]["status"] == "unfinished"
    with open(out_dir / "runs.csv", newline="") as f:
        header = next(csv.reader(f))
    nli = [h for h in header if h.startswith("nli/")]
    assert nli == ["nli/overall", "nli/5", "nli/10", "nli/>10", "nli/overall_stderr"]

    md = (out_dir / "runs.md").read_text()
    completed_part, failed_part = md.split("## Failed, unfinished and skipped runs")
    assert "Overrides shared by every run: experiment=cpu_demo" in md
    assert "| 1 | completed | causal_lm | 0.1 | 0.5 |" in completed_part
    assert "coverage=0.3 uniqueness=0.3 format=0.1 tag=1 (paper)" in md
    assert "NLI columns (nli/*) come from the NLI backend causal_lm" in md
    for name, text in [("4", "CUDA out of memory"), ("5", "interrupted"), ("6", "no status.json"),
                       ("7", "corrupt summary.json"), ("8", "no summary.json"), ("9", "corrupt status.json")]:
        line = next(ln for ln in failed_part.splitlines() if ln.startswith(f"| {name} |"))
        assert text in line, (name, line)

    page = (out_dir / "index.html").read_text()
    assert re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', page) == ["reward curves"]  # scatter: plotly
    assert "Failed, unfinished and skipped runs" in page and "CUDA out of memory" in page
    tables = html_tables(page)
    listed = [r[0] for r in tables["runs"][1:]] + [r[0] for r in tables["failed"][1:]]
    assert sorted(listed) == sorted(rows)  # every run once: completed in one table, the others in the other
    groups = {r[-1]: r for r in tables["groups"][1:]}  # no seed replicates: one group per completed run
    front_col = tables["groups"][0].index("pareto")
    assert {run: groups[run][front_col] for run in groups} == {"0": "yes", "1": "yes", "2": "", "3": "yes", "10": ""}


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
    assert (out["runs"], out["completed"], out["failed"], out["skipped"]) == (13, 6, 4, 1)
    assert out["pareto"] == ["wandb:w1"]  # (0.95, 0.95) dominates every file run
    rows = read_csv(tmp_path / "out" / "runs.csv")
    assert rows["wandb:w1"]["reward.weights.coverage"] == "0.2" and rows["wandb:w2"]["status"] == "failed"
    assert float(rows["wandb:w1"]["grpo_last/coverage"]) == 1.0


# ---- totals at common weights (issue 20.3) --------------------------------------------------------------------
def test_reference_total_hand_computed():
    comps = {"coverage": 2.0, "uniqueness": 0.75, "format": 1.5, "tag": -0.2}
    assert PAPER_WEIGHTS == {"coverage": 0.3, "uniqueness": 0.3, "format": 0.1, "tag": 1.0}
    assert reference_total(comps) == pytest.approx(0.6 + 0.225 + 0.15 - 0.2)  # not clipped at 0
    assert reference_total(comps, {"coverage": 1.0, "uniqueness": 1.0}) == pytest.approx(2.75)  # format/tag weight 0
    assert reference_total({"coverage": 2.0, "uniqueness": 0.75}, {"coverage": 1.0, "uniqueness": 1.0}) == 2.75
    assert math.isnan(reference_total({"coverage": 2.0, "uniqueness": 0.75}))  # format and tag are weighted, missing
    assert math.isnan(reference_total({**comps, "tag": "n/a"}))
    with pytest.raises(ValueError, match="unknown component"):
        reference_weights({"coverage": 1.0, "kl": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        reference_weights({"coverage": -1.0})


def test_identical_components_give_identical_reference_totals(tmp_path):
    """Two runs of a weight sweep with the same components: their own totals differ, the reference totals do not."""
    root = tmp_path / "sweep"
    comps = {"eval/reward/coverage": 1.0, "eval/reward/uniqueness": 0.75, "eval/reward/format": 2.0,
             "eval/reward/tag": 0.0, "eval/reward/coverage_rate": 0.15, "eval/reward/uniqueness_rate": 0.8}
    for name, w in (("0", 0.1), ("1", 0.5)):
        own = w * 1.0 + 0.3 * 0.75 + 0.1 * 2.0  # what the run's scorer reported at its own weights
        make_run(root, name, [f"reward.weights.coverage={w}"], summary={**comps, "eval/reward/total": own},
                 curves=curves_for([1.0, 2.0], own_coverage_weight=w))
    out = build_report(root, tmp_path / "out")
    rows = read_csv(Path(out["csv"]))
    assert float(rows["0"]["reward/total"]) != pytest.approx(float(rows["1"]["reward/total"]))
    for key, expected in (("reward/total_at_reference", 0.3 + 0.225 + 0.2),  # paper weights x the components
                          ("grpo_last/total_at_reference", 0.6 + 0.15 + 0.1 - 0.2)):
        assert float(rows["0"][key]) == float(rows["1"][key]) == pytest.approx(expected), key
    assert float(rows["0"]["grpo_last/reward"]) != pytest.approx(float(rows["1"]["grpo_last/reward"]))
    # other reference weights
    out = build_report(root, tmp_path / "out2", reference_weights={"coverage": 1.0, "uniqueness": 0.0,
                                                                   "format": 0.0, "tag": 0.0})
    rows = read_csv(Path(out["csv"]))
    assert float(rows["0"]["reward/total_at_reference"]) == float(rows["1"]["reward/total_at_reference"]) == 1.0
    assert "coverage=1 uniqueness=0 format=0 tag=0" in Path(out["markdown"]).read_text()


def test_curves_plot_components_and_reference_total_not_own_totals(tmp_path, monkeypatch):
    """One panel per component and one for the reference total, never the runs' own totals (op_total and reward
    were two identical panels, each at the run's own weights)."""
    import matplotlib.pyplot as plt

    root = tmp_path / "sweep"
    make_run(root, "0", ["a=1"], summary=summary_for(0.2, 0.9, 0.3), curves=curves_for([1, 2], 0.1))
    make_run(root, "1", ["a=2"], summary=summary_for(0.2, 0.9, 0.3), curves=curves_for([1, 2], 0.5))
    captured = {}
    monkeypatch.setattr(plt, "close", lambda fig=None: captured.setdefault("figs", []).append(fig))
    build_report(root, tmp_path / "out")
    curves_fig = captured["figs"][-1]
    titles = [ax.get_title() for ax in curves_fig.axes if ax.axison]
    assert titles == ["coverage (mean score)", "uniqueness (mean score)", "format (mean score)", "tag (mean score)",
                      "total at reference weights"]
    for ax in curves_fig.axes:
        if ax.axison:
            assert ax.get_xlabel() == "GRPO step" and ax.get_ylabel()
    ref_ax = curves_fig.axes[4]
    ys = [list(line.get_ydata()) for line in ref_ax.get_lines()]
    assert ys[0] == ys[1] == pytest.approx([0.3 + 0.05, 0.6 + 0.05])  # identical components, identical line


# ---- any runs, skipped runs, where the report goes (issue 20.4) ------------------------------------------------
REPORT_RUN_CONFIG = "stage: report\nobjective: eval/overall/accuracy\n"


def test_report_over_run_dirs_contains_exactly_those(sweep, tmp_path):
    """report.run_dirs: exactly the runs given (one from the sweep, one from elsewhere), nothing else of the sweep."""
    other = make_run(tmp_path / "elsewhere", "run_b", ["x=1"], summary=summary_for(0.4, 0.6, 0.5))
    out = build_report(None, tmp_path / "out", run_dirs=[sweep / "1", other])
    rows = read_csv(Path(out["csv"]))
    assert list(rows) == ["1", "run_b"] and out["runs"] == 2 and out["completed"] == 2
    assert float(rows["run_b"]["coverage_rate"]) == 0.4
    labelled = build_report(None, tmp_path / "out2", run_dirs=[sweep / "1", other], labels=["A", "B"])
    assert list(read_csv(Path(labelled["csv"]))) == ["A", "B"]
    # the same job name in two sweeps: told apart by their parents; a missing directory is listed, not dropped
    twin = make_run(tmp_path / "sweep2", "1", ["x=2"], summary=summary_for(0.1, 0.1, 0.1))
    recs = runs_from_dirs([sweep / "1", twin, tmp_path / "nope", sweep / "1" / "summary.json"])
    assert [r.name for r in recs] == ["00-00-00/1", "sweep2/1", "nope"]  # the file stands for its run, kept once
    assert (recs[2].status, recs[2].error) == ("failed", "no such directory")
    with pytest.raises(ValueError, match="1 labels for 2"):
        runs_from_dirs([sweep / "1", other], ["A"])


def test_run_without_eval_numbers_is_skipped_with_reason(sweep, tmp_path):
    """A completed stage=report run (or compare, describe) has no eval/ numbers: skipped with the reason, listed."""
    make_run(sweep, "11", ["stage=report"], summary={"report/runs": 11, "report/html": "x"}, config=REPORT_RUN_CONFIG)
    make_run(sweep, "12", ["stage=describe"], summary={}, config="stage: describe\n")
    rec = load_run(sweep / "11", sweep)
    assert rec.status == "skipped"
    assert rec.error == "no evaluation numbers (eval/... in summary.json): a stage=report run, it has report/ numbers"
    out = build_report(sweep, tmp_path / "out")
    assert (out["runs"], out["completed"], out["skipped"]) == (13, 5, 3)  # 8: completed without a summary.json
    assert out["pareto"] == ["0", "1", "3"]
    md = Path(out["markdown"]).read_text()
    completed_part, left_out = md.split("## Failed, unfinished and skipped runs")
    assert "| 11 |" not in completed_part
    assert "| 11 | skipped | no evaluation numbers" in left_out and "a stage=describe run" in left_out
    assert "3 run(s) skipped, without evaluation numbers: 8: no evaluation numbers" in out["warning"]
    assert "; 11: no evaluation numbers (eval/... in summary.json): a stage=report run" in out["warning"]
    assert "11: no evaluation numbers" in Path(out["html"]).read_text()


def test_objective_identical_in_every_run_warns(tmp_path):
    """Issue 20.2: NLI accuracy 0 in every CPU run was the objective, and nothing said so."""
    root = tmp_path / "sweep"
    cfg = "stage: eval\nobjective: eval/overall/accuracy\neval: {nli: {backend: causal_lm}}\n"
    for name, cov in (("0", 0.2), ("1", 0.4)):
        make_run(root, name, [f"a={name}"], summary=summary_for(cov, 0.8, 0.0), config=cfg)
    out = build_report(root, tmp_path / "out")
    assert "the objective eval/overall/accuracy is 0 in all 2 completed runs" in out["warning"]
    assert "objective=eval/reference/coverage_rate" in out["warning"]
    assert "the objective eval/overall/accuracy is 0" in Path(out["markdown"]).read_text()
    cfg = cfg.replace("eval/overall/accuracy", "eval/reward/coverage_rate")
    for name in ("0", "1"):
        (root / name / "config.yaml").write_text(cfg)
    assert build_report(root, tmp_path / "out")["warning"] == ""  # the coverage rate moves: 0.2 vs 0.4


def test_report_dir_is_predictable(tmp_path):
    assert report_dir("", tmp_path / "sweep") == tmp_path / "sweep" / "report"
    assert report_dir(tmp_path / "mine", tmp_path / "sweep") == tmp_path / "mine"
    assert report_dir("", "", tmp_path / "run" / "report") == tmp_path / "run" / "report"


def test_report_module_main_writes_where_it_says(sweep, tmp_path, capsys):
    from opgrpo.sweep.report import main

    main([str(sweep), "--reference-weights", "coverage=1,uniqueness=1,format=0,tag=0"])
    assert f"report: {sweep / 'report' / 'index.html'}" in capsys.readouterr().out
    assert float(read_csv(sweep / "report" / "runs.csv")["1"]["reward/total_at_reference"]) == 2.5 + 0.8
    main(["--run-dir", str(sweep / "0"), "--run-dir", str(sweep / "3"), str(tmp_path / "two")])
    assert list(read_csv(tmp_path / "two" / "runs.csv")) == ["0", "3"]
    assert f"report: {tmp_path / 'two' / 'index.html'}" in capsys.readouterr().out


def _ctx(compose, tmp_path, overrides):
    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir

    return RunContext(to_config(compose(overrides)), RunDir(tmp_path / "this_run"))


def test_stage_report_takes_run_dirs_and_writes_where_asked(sweep, tmp_path, compose, capsys):
    """Issue 20.4: stage=report ignored report.run_dirs, scanned the current directory and wrote to a new
    outputs/<date>/<time>/report/ without saying so."""
    from opgrpo.app.stages import stage_report

    skipped = make_run(tmp_path / "runs", "report_run", ["stage=report"], summary={"report/runs": 1},
                       config=REPORT_RUN_CONFIG)
    out_dir = tmp_path / "cmp"
    stage_report(_ctx(compose, tmp_path, ["stage=report", f"report.run_dirs=[{sweep / '0'},{sweep / '3'},{skipped}]",
                                          f"report.out_dir={out_dir}"]))
    rows = read_csv(out_dir / "runs.csv")
    assert list(rows) == ["0", "3", "report_run"] and rows["report_run"]["status"] == "skipped"
    assert f"report (2 of 3 runs compared): {out_dir / 'index.html'}" in capsys.readouterr().out
    summary = json.loads((tmp_path / "this_run" / "summary.json").read_text())
    assert summary["report/out_dir"] == str(out_dir) and summary["report/skipped"] == 1
    # a sweep directory: the report goes into it
    stage_report(_ctx(compose, tmp_path, ["stage=report", f"report.sweep_dir={sweep}"]))
    assert len(read_csv(sweep / "report" / "runs.csv")) == 11
    assert f"{sweep / 'report' / 'index.html'}" in capsys.readouterr().out


def test_report_config_problems(compose, tmp_path):
    from opgrpo.app.schema import ReportConfig

    assert ReportConfig().problems() == [] and ReportConfig().problems(["grpo"]) == []
    assert ReportConfig().problems(["report"]) == [
        "run_dirs: stage=report/compare needs report.run_dirs=[dir,...] or report.sweep_dir=DIR"]
    bad = ReportConfig(run_dirs=[str(tmp_path), str(tmp_path / "nope")], labels=["a"],
                       reference_weights={"coverage": -1.0, "kl": 1.0})
    assert bad.problems(["compare"]) == [
        "reference_weights.coverage: must be >= 0 (got -1.0)",
        "reference_weights.kl: unknown component; expected coverage, uniqueness, format, tag",
        f"run_dirs: no such directory: {str(tmp_path / 'nope')!r}",
        "labels: 1 labels for 2 report.run_dirs"]
    cfg = compose(["stage=report", "report.reference_weights.coverage=0.5"])
    assert dict(cfg.report.reference_weights) == {"coverage": 0.5, "uniqueness": 0.3, "format": 0.1, "tag": 1.0}


# ---- compare (issue 20.4) ---------------------------------------------------------------------------------------
def _nli_metrics(run: Path, acc: float, mean: float) -> None:
    (run / "eval").mkdir()
    m = {"accuracy": acc, "accuracy_stderr": 0.0, "mean": mean, "count": 2, "skipped": 0}
    (run / "eval" / "nli_metrics.json").write_text(json.dumps({"5": m, "overall": m}))


def test_compare_run_dirs(tmp_path, compose, capsys):
    from opgrpo.app.stages import stage_compare

    a = make_run(tmp_path / "x", "a", ["reward.weights.coverage=0.1", "experiment=cpu_demo"],
                 summary=summary_for(0.2, 0.9, 0.0), config="eval: {nli: {backend: causal_lm}}\n")
    b = make_run(tmp_path / "y", "b", ["reward.weights.coverage=0.5", "experiment=cpu_demo"],
                 summary={**summary_for(0.5, 0.8, 0.6), "eval/nli_backend": "sequence_classification"})
    c = make_run(tmp_path / "z", "c", ["stage=compare"], summary={"compare/runs": 2}, config="stage: compare\n")
    _nli_metrics(a, 0.0, 0.2)
    _nli_metrics(b, 0.6, 0.7)
    out_dir = tmp_path / "out"
    stage_compare(_ctx(compose, tmp_path, ["stage=compare", f"report.run_dirs=[{a},{b},{c}]",
                                           f"report.out_dir={out_dir}"]))
    assert f"comparison (2 of 3 runs compared): {out_dir / 'comparison.md'}" in capsys.readouterr().out
    md = (out_dir / "comparison.md").read_text()
    assert "|  | a (causal_lm) | b (sequence_classification) |" in md  # the backend heads each column
    for row in ("| coverage_rate | 0.2 | 0.5 |", "| uniqueness_rate | 0.9 | 0.8 |", "| reward/coverage | 1 | 2.5 |",
                "| reward/uniqueness | 0.9 | 0.8 |", "| reward/format | 1.5 | 1.5 |", "| reward/tag | 0 | 0 |",
                "| reward/total | 0.5 | 0.5 |", "| reward/total_at_reference | 0.72 | 1.14 |",
                "| nli/overall | 0 | 0.6 |", "| reward.weights.coverage | 0.1 | 0.5 |"):
        assert row in md, row
    assert "| c | skipped | no evaluation numbers (eval/... in summary.json): a stage=compare run" in md
    assert "NLI columns (nli/*) come from the NLI backend causal_lm and sequence_classification" in md
    assert "Shared by the compared runs: experiment=cpu_demo" in md  # said once, not a row
    assert "\n| experiment |" not in md and "\n| status |" not in md
    assert (out_dir / "nli_accuracy.png").read_bytes()[:4] == b"\x89PNG" and (out_dir / "pareto.png").is_file()
    nli_md = (out_dir / "nli_comparison.md").read_text()
    assert nli_md.startswith("| split | a (causal_lm) | b (sequence_classification) |")
    summary = json.loads((tmp_path / "this_run" / "summary.json").read_text())
    assert summary["compare/compared"] == 2 and summary["compare/out_dir"] == str(out_dir)


# ---- the multirun's own report (issue 15.6) ----------------------------------------------------------------------
def test_sweep_report_callback_paths(sweep, tmp_path, caplog, monkeypatch):
    import logging

    from opgrpo.app import callbacks

    with caplog.at_level(logging.INFO, logger="opgrpo"):
        html = callbacks.sweep_report(sweep)
    assert html == str(sweep / "report" / "index.html") and Path(html).is_file()
    only_reports = tmp_path / "reports"
    make_run(only_reports, "0", ["stage=report"], summary={"report/runs": 3}, config=REPORT_RUN_CONFIG)
    with caplog.at_level(logging.INFO, logger="opgrpo"):
        assert callbacks.sweep_report(only_reports) == ""
    assert "no sweep report: none of the 1 completed job(s) has evaluation numbers" in caplog.text
    assert not (only_reports / "report").exists()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("opgrpo.sweep.report.build_report", broken)
    with caplog.at_level(logging.WARNING, logger="opgrpo"):
        assert callbacks.sweep_report(sweep) == ""  # a warning, never a failed sweep
    assert "the sweep report could not be built (OSError: disk full)" in caplog.text


def test_multirun_ends_with_its_report(tmp_path, responses_file, tiny_lm):
    """A real 2-job multirun (stage=eval on a responses file): the report is in the sweep directory, its path is
    printed, and the identical responses give identical reference totals and a warning on the objective."""
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    sweep_dir = tmp_path / "sweep"
    res = subprocess.run([str(Path(sys.executable).parent / "opgrpo"), "-m", "experiment=cpu_demo", "stage=eval",
                          f"eval.responses_file={responses_file}", f"eval.nli.model={tiny_lm}",
                          "reward.weights.coverage=0.1,0.5", f"hydra.sweep.dir={sweep_dir}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert f"sweep report: {sweep_dir / 'report' / 'index.html'}" in log and f"sweep directory: {sweep_dir}" in log
    rows = read_csv(sweep_dir / "report" / "runs.csv")
    assert list(rows) == ["0", "1"] and {r["status"] for r in rows.values()} == {"completed"}
    assert rows["0"]["reward/total"] != rows["1"]["reward/total"]
    assert rows["0"]["reward/total_at_reference"] == rows["1"]["reward/total_at_reference"] != ""
    assert rows["0"]["nli_backend"] == "causal_lm"
    assert "the objective eval/reference/coverage_rate is" in log  # same responses: the objective cannot move
    assert (sweep_dir / "report" / "pareto.png").is_file()


def test_runs_scored_by_different_estimators_are_refused_unless_asked(tmp_path):
    """Issue 20.1: coverage and uniqueness rates from different estimators are not comparable; the report and compare
    refuse to put them on one plot unless report.allow_mixed_estimators, and then mark them."""
    from opgrpo.sweep.compare import compare_run_dirs
    from opgrpo.sweep.records import MixedEstimatorsError

    def est(fp, tuned):
        return {"eval/reward_estimator/fingerprint": fp, "eval/reward_estimator/tuned": tuned,
                "eval/reward_estimator/path": f"/models/{fp}"}

    a = make_run(tmp_path, "a", ["x=1"], summary={**summary_for(0.3, 0.8, 0.0), **est("aaaaaaaaaaaa", True)})
    b = make_run(tmp_path, "b", ["x=2"], summary={**summary_for(0.2, 0.9, 0.0), **est("bbbbbbbbbbbb", False)})
    same = make_run(tmp_path, "c", ["x=3"], summary={**summary_for(0.1, 0.7, 0.0), **est("aaaaaaaaaaaa", True)})
    with pytest.raises(MixedEstimatorsError, match="2 different estimators.*allow_mixed_estimators"):
        build_report(None, tmp_path / "r1", run_dirs=[a, b])
    with pytest.raises(MixedEstimatorsError):
        compare_run_dirs([a, b], tmp_path / "c1")
    ok = build_report(None, tmp_path / "r2", run_dirs=[a, same])
    assert ok["completed"] == 2 and "estimators" not in ok["warning"]
    mixed = build_report(None, tmp_path / "r3", run_dirs=[a, b], allow_mixed_estimators=True)
    assert "different estimators" in mixed["warning"]
    rows = read_csv(Path(mixed["csv"]))
    assert rows["a"]["estimator"] == "aaaaaaaaaaaa" and rows["b"]["estimator"] == "bbbbbbbbbbbb (untuned estimator)"
