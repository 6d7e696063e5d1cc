"""The report as a page people open (issue 18.5): the self-contained HTML with the plotly scatter and the sortable
pandas tables, seed replicates grouped with 95% intervals, the fixed PNGs, and a headless-Chromium screenshot that
shows the scatter (scripts/report_screenshot.py; skipped where /usr/bin/chromium is missing)."""
from __future__ import annotations

import csv
import importlib.util
import math
import re
from pathlib import Path

import pytest
from test_report import (  # tests/sweep is on sys.path
    curves_for,
    html_tables,
    make_run,
    summary_for,
)

from opgrpo.sweep.report import build_report

T1, T2 = 12.706205, 4.302653  # t_{0.975} with 1 and 2 degrees of freedom
HW3 = T2 * 0.1 / math.sqrt(3)  # 0.1, 0.2, 0.3: s = 0.1 -> 0.248414
HW2 = T1 * math.sqrt(0.02) / math.sqrt(2)  # two values 0.2 apart: s = sqrt(0.02)
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def seed_sweep(tmp_path):
    """coverage weight 0.1 x seeds 1-3, 0.5 x seeds 1-2 (seed 3 failed), 0.3 and 0.9 x seed 1 (0.9: no NLI)."""
    root = tmp_path / "sweep"
    runs = [("0.1", 1, 0.1, 0.9, 0.1), ("0.1", 2, 0.2, 0.8, 0.2), ("0.1", 3, 0.3, 0.7, 0.3),
            ("0.5", 1, 0.5, 0.2, 0.6), ("0.5", 2, 0.7, 0.4, 0.8), ("0.5", 3, None, None, None),
            ("0.3", 1, 0.15, 0.5, 0.5), ("0.9", 1, 0.65, 0.1, None)]
    for k, (w, seed, cov, uniq, acc) in enumerate(runs):
        ov = [f"reward.weights.coverage={w}", f"seed={seed}", "experiment=cpu_demo"]
        if cov is None:
            make_run(root, str(k), ov, status="failed", error="RuntimeError: killed")
        else:
            make_run(root, str(k), ov, summary=summary_for(cov, uniq, acc), curves=curves_for([cov, 2 * cov]))
    return root


def test_page_is_self_contained_with_grouped_sortable_table(seed_sweep, tmp_path):
    out = build_report(seed_sweep, tmp_path / "report")
    page = Path(out["html"]).read_text(encoding="utf-8")
    assert Path(out["html"]).name == "index.html"
    assert re.search(r"plotly\.js v\d", page) and 'id="pareto-scatter"' in page  # plotly.js itself is in the page
    assert "<script src=" not in page and "<link " not in page  # nothing to fetch: opens offline
    assert "table.sortable" in page and "click to sort" in page
    tables = html_tables(page)
    head, *rows = tables["groups"]
    assert head[:2] == ["group", "n_seeds"] and "seed" not in head
    got = {r[0]: dict(zip(head, r)) for r in rows}
    assert list(got) == ["coverage=0.1", "coverage=0.5", "coverage=0.3", "coverage=0.9"]
    assert got["coverage=0.1"]["n_seeds"] == "3" and got["coverage=0.1"]["runs"] == "0, 1, 2"
    assert got["coverage=0.1"]["coverage_rate"] == f"0.2 ± {HW3:.2g}" == "0.2 ± 0.25"
    assert got["coverage=0.1"]["uniqueness_rate"] == "0.8 ± 0.25" and got["coverage=0.1"]["nli/overall"] == "0.2 ± 0.25"
    assert got["coverage=0.5"]["coverage_rate"] == f"0.6 ± {HW2:.2g}" and got["coverage=0.5"]["n_seeds"] == "2"
    assert got["coverage=0.9"]["coverage_rate"] == "0.65" and got["coverage=0.9"]["nli/overall"] == ""  # one run
    assert {g: r["pareto"] for g, r in got.items()} == {"coverage=0.1": "yes", "coverage=0.5": "yes",
                                                        "coverage=0.3": "", "coverage=0.9": "yes"}
    assert sorted(r[0] for r in tables["runs"][1:]) == ["0", "1", "2", "3", "4", "6", "7"]  # every run kept
    assert [r[0] for r in tables["failed"][1:]] == ["5"]
    assert (out["groups"], out["pareto_groups"]) == (4, ["coverage=0.1", "coverage=0.5", "coverage=0.9"])
    with open(out["groups_csv"], newline="") as f:
        groups = {r["group"]: r for r in csv.DictReader(f)}
    assert float(groups["coverage=0.1"]["coverage_rate_ci95"]) == pytest.approx(0.248414, abs=1e-6)
    assert groups["coverage=0.9"]["coverage_rate_ci95"] == "" and groups["coverage=0.1"]["seeds"] == "1, 2, 3"
    md = Path(out["markdown"]).read_text()
    assert "## Seed replicates grouped (mean ± 95% t-interval half-width)" in md
    assert "| coverage=0.1 | 3 |" in md


def test_scatter_figure_points_error_bars_and_hover(seed_sweep):
    """One trace per arm in its own colour (issue 30.3), error bars over seeds, NLI accuracy in the legend."""
    from opgrpo.sweep.arms import PALETTE
    from opgrpo.sweep.plots import scatter_figure
    from opgrpo.sweep.records import collect_runs
    from opgrpo.sweep.table import group_table, runs_table

    records = collect_runs(seed_sweep)
    fig = scatter_figure(group_table(records, runs_table(records)))
    front, *arms = fig.data
    assert front.mode == "lines+markers" and front.line.shape == "vh"  # the front's staircase, along increasing coverage
    assert list(front.x) == pytest.approx([0.2, 0.6, 0.65]) and list(front.y) == pytest.approx([0.8, 0.3, 0.1])
    assert [a.name for a in arms] == ["coverage=0.1 (n=3) · NLI 0.20", "coverage=0.5 (n=2) · NLI 0.70",
                                      "coverage=0.3 · NLI 0.50", "coverage=0.9"]
    assert [a.x[0] for a in arms] == pytest.approx([0.2, 0.6, 0.15, 0.65])
    assert [a.y[0] for a in arms] == pytest.approx([0.8, 0.3, 0.5, 0.1])
    assert [a.marker.color for a in arms] == list(PALETTE[:4])  # one colour per arm
    for a, half in zip(arms, (HW3, HW2)):
        assert a.error_x.array[0] == pytest.approx(half) and a.error_y.array[0] == pytest.approx(half)
        assert a.error_x.color == a.marker.color
    assert arms[2].error_x.array[0] is None  # one run: no bar
    hover = arms[0].hovertext[0]
    for text in ("<b>coverage=0.1</b>", "runs: 0, 1, 2 (seeds 1, 2, 3, n=3)", "overrides: reward.weights.coverage=0.1",
                 "coverage rate: 0.2 ± 0.25", "NLI accuracy (causal_lm): overall 0.2 ± 0.25, 5 0.3 ± 0.25"):
        assert text in hover, text
    assert "seed=" not in hover
    assert "NLI accuracy: none recorded" in arms[3].hovertext[0]
    assert fig.layout.xaxis.title.text == "coverage rate (eval)" and fig.layout.yaxis.title.text == "uniqueness rate (eval)"


def test_coincident_points_share_their_hover(tmp_path):
    """The README's CPU sweep: four runs on one point; the hover of that point names all four."""
    from opgrpo.sweep.plots import scatter_figure
    from opgrpo.sweep.records import collect_runs
    from opgrpo.sweep.table import group_table, runs_table

    root = tmp_path / "sweep"
    for k, w in enumerate(("0.1", "0.5")):
        make_run(root, str(k), [f"reward.weights.coverage={w}"], summary=summary_for(0.135, 0.833, 0.0))
    records = collect_runs(root)
    fig = scatter_figure(group_table(records, runs_table(records)))
    a, b = fig.data[-2:]  # one trace per arm
    assert a.hovertext[0] == b.hovertext[0] and a.hovertext[0].startswith("<i>2 groups at this point</i>")
    assert "coverage=0.1" in a.hovertext[0] and "coverage=0.5" in a.hovertext[0]
    assert [*a.text, *b.text] == ["coverage=0.1<br>coverage=0.5", ""]  # one label block, not two on top of each other
    assert "all 2 points coincide" in fig.layout.title.text
    lo, hi = fig.layout.xaxis.range
    assert lo < 0.135 < hi and hi - lo >= 0.1  # a readable window around one point, not -0.5..1


def _figures(monkeypatch):
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    return figs


def test_pareto_png_arm_colours_and_labelled_axes(tmp_path, monkeypatch):
    """Issue 30.3: each arm its own colour (the same as its curves and its table swatch), NLI accuracy in the legend
    (it was the colour, on a fixed 0..1 scale: issue 18)."""
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    from opgrpo.sweep.arms import PALETTE

    root = tmp_path / "sweep"
    for k, (w, cov) in enumerate((("0.1", 0.2), ("0.5", 0.4))):
        make_run(root, str(k), [f"reward.weights.coverage={w}"], summary=summary_for(cov, 0.8, 0.0))
    figs = _figures(monkeypatch)
    build_report(root, tmp_path / "out")
    (main_ax,) = figs[0].axes  # no colour bar any more
    points = [c for c in main_ax.collections if isinstance(c, PathCollection)]
    assert [to_hex(c.get_facecolor()[0]) for c in points] == list(PALETTE[:2])
    texts = [t.get_text() for t in main_ax.get_legend().get_texts()]
    assert texts[:2] == ["coverage=0.1 · NLI 0.00", "coverage=0.5 · NLI 0.00"] and "Pareto front" in texts
    assert main_ax.get_xlabel().startswith("coverage rate") and main_ax.get_ylabel().startswith("uniqueness rate")
    assert main_ax.get_legend().get_texts()[0].get_fontsize() >= 9


def test_pareto_png_error_bars_for_seed_groups(seed_sweep, tmp_path, monkeypatch):
    figs = _figures(monkeypatch)
    build_report(seed_sweep, tmp_path / "out")
    ax = figs[0].axes[0]
    assert "means over seeds with 95% t-intervals" in ax.get_title()
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert labels == {"Pareto front", "95% interval over seeds", "coverage=0.1 (n=3) · NLI 0.20",
                      "coverage=0.5 (n=2) · NLI 0.70", "coverage=0.3 · NLI 0.50", "coverage=0.9"}
    notes = sorted(t.get_text() for t in ax.texts)
    assert notes == ["coverage=0.1 (n=3)", "coverage=0.3", "coverage=0.5 (n=2)", "coverage=0.9"]


def test_curves_png_identical_panels_merged_legend_readable(tmp_path, monkeypatch):
    """Issue 18: two identical panels; here uniqueness and format are 1.0 at every step of every run: one panel."""
    root = tmp_path / "sweep"
    for k, w in enumerate(("0.1", "0.5", "0.9")):
        rows = [{"step": s, "rewards/coverage/mean": s * float(w), "rewards/uniqueness/mean": 1.0,
                 "rewards/format/mean": 1.0, "rewards/tag/mean": -0.2 * k} for s in (1, 2)]
        make_run(root, str(k), [f"reward.weights.coverage={w}"], summary=summary_for(0.2, 0.8, 0.1), curves=rows)
    figs = _figures(monkeypatch)
    build_report(root, tmp_path / "out")
    curves = figs[-1]
    shown = [ax for ax in curves.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["coverage (mean score)", "uniqueness = format (mean score, identical)",
                                                "tag (mean score)", "total at reference weights"]
    for ax in shown:
        assert ax.get_xlabel() == "GRPO step" and ax.get_ylabel()
    (legend,) = curves.legends
    assert [t.get_text() for t in legend.get_texts()] == ["coverage=0.1", "coverage=0.5", "coverage=0.9"]
    assert legend.get_texts()[0].get_fontsize() >= 9


# ---- the screenshot -----------------------------------------------------------------------------------------
def _screenshot_module():
    spec = importlib.util.spec_from_file_location("report_screenshot", REPO / "scripts" / "report_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _near(pixels, rgb, tol=12) -> list[tuple[int, int]]:
    return [xy for xy, p in pixels if all(abs(a - b) <= tol for a, b in zip(p, rgb))]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_screenshot_shows_the_scatter(seed_sweep, tmp_path):
    from PIL import Image

    out = build_report(seed_sweep, tmp_path / "report")
    png = _screenshot_module().screenshot(out["html"], tmp_path / "shot.png")
    img = Image.open(png).convert("RGB")
    assert img.size == (1400, 1000)
    width, height = img.size
    data = img.load()
    pixels = [((x, y), data[x, y]) for y in range(height) for x in range(width)]
    red = _near(pixels, (0xD6, 0x27, 0x28), tol=20)  # the Pareto front line
    group_a = _near(pixels, (0x1F, 0x77, 0xB4))  # the first arm's colour (opgrpo.sweep.arms.PALETTE)
    group_b = _near(pixels, (0xFF, 0x7F, 0x0E))  # the second arm's
    grey = _near(pixels, (0x94, 0x67, 0xBD), tol=6)  # the fourth arm's (the run without NLI accuracy)
    assert len(red) > 100 and len(group_a) > 40 and len(group_b) > 40 and len(grey) > 40, \
        (len(red), len(group_a), len(group_b), len(grey))
    # the plot region (around the front and the markers) is drawn, not blank
    xs, ys = [x for x, _ in red + group_a + group_b], [y for _, y in red + group_a + group_b]
    box = [(x, y) for y in range(min(ys), max(ys) + 1) for x in range(min(xs), max(xs) + 1)]
    inked = sum(1 for x, y in box if sum(data[x, y]) < 3 * 235)
    assert max(xs) - min(xs) > 200 and max(ys) - min(ys) > 150 and inked > 0.02 * len(box), (len(box), inked)
