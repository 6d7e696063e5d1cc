"""The report shows what training did and what it cost (issue 30.3), on run directories built here: the training
dynamics TRL logs (KL, entropy, completion length, clipped completions, clipped ratio, grad norm), one colour per arm
in every plot and table with seeds told apart, each job's wall time, evaluation time and GRPO tokens, relative links
to each run's folder, config.yaml, completions and responses, the eval_base start point (or a sentence saying there is
none), and the resolved config keys that differ. No torch here: the report never imports it."""
from __future__ import annotations

import csv
import html
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from opgrpo.sweep.arms import PALETTE
from opgrpo.sweep.curves import DYNAMICS
from opgrpo.sweep.records import load_run, run_extras, stage_times
from opgrpo.sweep.report import build_report

CONFIG = """stage: pipeline
seed: {seed}
reward:
  weights: {{coverage: {w}, uniqueness: 0.3}}
trainer:
  grpo:
    trl: {{beta: {beta}, learning_rate: 1.0e-05}}
"""


def _run(root: Path, name: str, w: str, seed: int, *, cov: float, base: bool = True, timed: bool = True,
         beta: float = 0.001, kl: float = 0.0) -> Path:
    """A finished pipeline run: overrides, resolved config, status, summary (eval, eval_base, times, GRPO tokens),
    grpo/metrics.jsonl with TRL's keys, grpo/completions.jsonl, eval/responses.jsonl."""
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    overrides = [f"reward.weights.coverage={w}", f"seed={seed}"]
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / "config.yaml").write_text(CONFIG.format(seed=seed, w=w, beta=beta))
    (d / "status.json").write_text(json.dumps({"status": "completed", "overrides": overrides}))
    s = {"eval/reward/coverage_rate": cov, "eval/reward/uniqueness_rate": 0.8, "eval/reward/total": 0.5,
         "eval/reward/coverage": cov, "eval/reward/uniqueness": 0.8, "eval/reward/format": 1.0, "eval/reward/tag": 0.0,
         "grpo/train_runtime": 40.0, "grpo/global_step": 2, "grpo/last/num_tokens": 2444.0}
    if base:
        s.update({"eval_base/reward/coverage_rate": 0.05, "eval_base/reward/uniqueness_rate": 0.9})
    if timed:
        s.update({"time/eval_base_s": 10.0, "time/grpo_s": 50.0, "time/eval_s": 20.0, "time/job_s": 120.0})
    (d / "summary.json").write_text(json.dumps(s))
    (d / "grpo").mkdir()
    rows = [{"step": k, "rewards/coverage/mean": cov * k, "kl": kl * k, "entropy": 4.0 - k / 2,
             "completions/mean_length": 90.0 + k, "completions/clipped_ratio": 1.0, "clip_ratio/region_mean": 0.0,
             "grad_norm": 1.3 * (k - 1)} for k in (1, 2)]
    (d / "grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "grpo" / "completions.jsonl").write_text('{"step": 2, "completion": "x"}\n')
    (d / "eval").mkdir()
    (d / "eval" / "responses.jsonl").write_text('{"id": "a", "response": "x"}\n')
    return d


@pytest.fixture()
def sweep(tmp_path):
    """Two arms (coverage weight 0.1 with seeds 1 and 2, identical numbers; 0.5 with seed 1, whose preset also
    moved trainer.grpo.trl.beta), every run with eval_base."""
    root = tmp_path / "sweep"
    _run(root, "0", "0.1", 1, cov=0.2)
    _run(root, "1", "0.1", 2, cov=0.2)
    _run(root, "2", "0.5", 1, cov=0.4, beta=0.04, kl=0.01)
    return root


def _figures(monkeypatch) -> list:
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    return figs


class _Page(HTMLParser):
    """Tables by id (cell texts) and every link's href."""

    def __init__(self):
        super().__init__()
        self.tables, self.links, self.table, self.cell = {}, [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(a.get("id", str(len(self.tables))), [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = []
        elif tag == "a":
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.table[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _page(out) -> tuple[str, _Page]:
    text = Path(out["html"]).read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    return text, parser


def test_dynamics_plot_has_every_quantity_trl_logs(sweep, tmp_path, monkeypatch):
    figs = _figures(monkeypatch)
    out = build_report(sweep, tmp_path / "report")
    assert Path(out["dynamics_plot"]).read_bytes()[:4] == b"\x89PNG"
    dynamics = figs[-1]
    titles = [ax.get_title() for ax in dynamics.axes if ax.axison]
    assert titles == [f"{title} ({key})" for key, title, _ in DYNAMICS]
    assert all(ax.get_xlabel() == "GRPO step" for ax in dynamics.axes if ax.axison)
    kl = dynamics.axes[0]
    assert [line.get_ydata()[-1] for line in kl.get_lines()] == pytest.approx([0.0, 0.0, 0.02])
    page, _ = _page(out)
    assert "<h2>Training dynamics over GRPO steps</h2>" in page and 'alt="training dynamics"' in page


def test_one_colour_per_arm_in_every_plot_and_table_seeds_told_apart(sweep, tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    figs = _figures(monkeypatch)
    out = build_report(sweep, tmp_path / "report")
    pareto, curves, dynamics = figs
    blue, orange = PALETTE[:2]
    for fig in (curves, dynamics):
        lines = fig.axes[0].get_lines()
        assert [to_hex(line.get_color()) for line in lines] == [blue, blue, orange]  # arm 0.1 (two seeds), arm 0.5
        assert lines[0].get_linestyle() != lines[1].get_linestyle()  # the seeds of one arm: different dashes ...
        assert lines[0].get_marker() != lines[1].get_marker()  # ... and markers
        x0, x1 = lines[0].get_xdata(), lines[1].get_xdata()
        assert list(lines[0].get_ydata()) == list(lines[1].get_ydata()) and all(a != b for a, b in zip(x0, x1))
        assert all(abs(a - b) < 0.1 for a, b in zip(x0, x1))  # beside each other, a small shift
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert texts == ["coverage=0.1 seed=1", "coverage=0.1 seed=2", "coverage=0.5 seed=1"]
    ax = pareto.axes[0]
    from matplotlib.collections import PathCollection

    filled = [to_hex(c.get_facecolor()[0]) for c in ax.collections if isinstance(c, PathCollection)
              and len(c.get_facecolor()) and c.get_facecolor()[0][3] > 0]
    assert filled == [blue, orange]
    page, parsed = _page(out)
    assert f'<span class="swatch" style="background:{blue}"></span>coverage=0.1' in page  # the grouped table
    assert f'<span class="swatch" style="background:{orange}"></span>coverage=0.5' in page
    assert page.count(f'<span class="swatch" style="background:{blue}"></span>0<') >= 2  # cost and runs tables
    assert re.search(r'"marker":\{[^}]*"color":"%s"' % blue, page)


def test_cost_links_and_start_point_on_the_page(sweep, tmp_path):
    out_dir = tmp_path / "elsewhere" / "report"
    out = build_report(sweep, out_dir)
    page, parsed = _page(out)
    head, *rows = parsed.tables["cost"]
    got = {r[0]: dict(zip(head, r)) for r in rows}
    assert got["0"]["arm"] == "coverage=0.1" and got["2"]["arm"] == "coverage=0.5"
    assert got["0"]["job wall (s)"] == "120" and got["0"]["evaluation (s)"] == "30"  # eval 20 + eval_base 10
    assert got["0"]["grpo (s)"] == "50" and got["0"]["GRPO trainer (s)"] == "40" and got["0"]["GRPO tokens"] == "2,444"
    for name in ("0", "1", "2"):
        for rel in ("", "/config.yaml", "/grpo/completions.jsonl", "/eval/responses.jsonl"):
            href = f"../../sweep/{name}{rel}"
            assert href in parsed.links, href  # relative to the page
            assert (out_dir / href).resolve() == (sweep / name / rel.lstrip("/")).resolve()
    assert not any(link.startswith("/") for link in parsed.links)
    rows_csv = list(csv.DictReader(open(out["csv"], newline="")))
    assert {r["cost/job_wall_s"] for r in rows_csv} == {"120.0"} and rows_csv[0]["start/coverage_rate"] == "0.05"
    assert "Open squares: each arm's start point, the policy before training (eval_base)" in html.unescape(page)
    assert "No run has eval_base numbers" not in page
    assert '"name":"start: before training (eval_base)"' in page  # drawn in the interactive scatter


def test_without_eval_base_the_page_says_there_is_no_start_point(tmp_path, monkeypatch):
    root = tmp_path / "sweep"
    _run(root, "0", "0.1", 1, cov=0.2, base=False)
    _run(root, "1", "0.5", 1, cov=0.4, base=False)
    figs = _figures(monkeypatch)
    out = build_report(root, tmp_path / "report")
    page, _ = _page(out)
    assert "No run has eval_base numbers (the policy before training), so no start point is drawn" in page
    assert "start: before training" not in page
    labels = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    assert not any("start" in text for text in labels)


def test_config_diff_shows_resolved_keys_not_only_overrides(sweep, tmp_path):
    out = build_report(sweep, tmp_path / "report")
    _, parsed = _page(out)
    head, *rows = parsed.tables["config-diff"]
    assert head == ["key", "0", "1", "2"]
    got = {r[0]: r[1:] for r in rows}
    assert got == {"seed *": ["1", "2", "1"], "reward.weights.coverage *": ["0.1", "0.1", "0.5"],
                   "trainer.grpo.trl.beta": ["0.001", "0.001", "0.04"]}  # from the preset: no override named it
    diff = list(csv.DictReader(open(out["config_diff_csv"], newline="")))
    assert [r["key"] for r in diff] == ["seed", "reward.weights.coverage", "trainer.grpo.trl.beta"]


def test_wall_times_from_cli_log_for_runs_that_did_not_record_them(tmp_path):
    d = _run(tmp_path, "old", "0.1", 1, cov=0.2, timed=False)
    (d / "cli.log").write_text(
        "[2026-12-05 06:46:06,133][opgrpo.benchmark.loading][INFO] loaded 36 items\n"
        "[2026-12-05 06:46:06,148][opgrpo.app.stages][INFO] === stage eval_base ===\n"
        "[2026-12-05 06:46:21,048][opgrpo.app.stages][INFO] === stage grpo ===\n"
        "a continuation line without a time stamp\n"
        "[2026-12-05 06:47:11,148][opgrpo.app.stages][INFO] === stage eval ===\n"
        "[2026-12-05 06:47:30,148][opgrpo][INFO] run directory: x\n")
    rec = load_run(d)
    assert stage_times(rec) == {"eval_base": 14.9, "grpo": 50.1, "eval": 19.0, "job": 84.0}
    extras = run_extras(rec)
    assert extras["cost/job_wall_s"] == 84.0 and extras["cost/eval_s"] == pytest.approx(33.9)
    assert "time" not in os.listdir(d)  # nothing written into the run
