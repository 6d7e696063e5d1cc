"""The page of a sweep report (opgrpo.sweep.report): ``index.html``, one self-contained file (plotly.js and the
images embedded, opens offline). It is a short template around what plotly (``Figure.to_html``) and pandas
(``DataFrame.to_html``) write, plus a few lines of JavaScript for sorting the tables. Each arm's colour
(``opgrpo.sweep.arms``) marks its rows; links to a run's folder and files are relative to the page, so the report
and the runs can move together.
"""
from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from opgrpo.sweep.arms import Arms, arms_of
from opgrpo.sweep.records import EVAL_STAGE, START_STAGE, stage_times
from opgrpo.sweep.report_text import (
    cell_text,
    common_line,
    counts_line,
    display_columns,
    failed_rows,
    flagged_cells,
    group_display,
)
from opgrpo.utils.runfiles import COMPLETED


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return f"<p>({html.escape(alt)}: nothing to plot)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _html_table(frame, table_id: str, colours: Mapping[str, str] | None = None, raw: Sequence[str] = ()) -> str:
    """A pandas table as sortable HTML (values escaped, except the HTML of the ``raw`` columns; empty cells for NaN);
    ``colours``: value of the first column -> the swatch drawn before it (the arm's colour)."""
    first = frame.columns[0] if len(frame.columns) else None

    def cell(col):
        def fmt(value) -> str:
            text = str(value) if col in raw else html.escape(cell_text(value))
            if col == first and colours and str(value) in colours:
                text = f'<span class="swatch" style="background:{colours[str(value)]}"></span>' + text
            return text
        return fmt

    formatters = [cell(c) for c in frame.columns]  # by position: the headers are escaped below
    shown = frame.set_axis([html.escape(str(c)) for c in frame.columns], axis=1)
    return shown.to_html(index=False, escape=False, na_rep="", border=0, table_id=table_id, classes="sortable",
                         formatters=formatters)


def _scatter_html(g, fallback: Path | None, arms: Arms | None = None) -> str:
    """The interactive scatter with plotly.js embedded (the page works offline); the PNG when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return "<p>(plotly is not installed: the static plot instead)</p>" + _img(fallback, "Pareto plot")
    from opgrpo.sweep.plots import SCATTER_DIV, scatter_figure

    return scatter_figure(g, arms).to_html(full_html=False, include_plotlyjs=True, div_id=SCATTER_DIV,
                                           config={"displaylogo": False, "responsive": True})


def _start_sentence(g) -> str:
    from opgrpo.sweep.plots import START_COVERAGE

    if START_COVERAGE in g.columns and g[START_COVERAGE].notna().any():
        return (f"Open squares: each arm's start point, the policy before training ({START_STAGE}), mean over its "
                "seeds; the dotted line leads to where training took it.")
    return (f"No run has {START_STAGE} numbers (the policy before training), so no start point is drawn; add "
            f"{START_STAGE} to the pipeline (pipeline=[estimator,{START_STAGE},sft,grpo,eval]) to see where "
            "training started.")


def _link(target: Path, page_dir: Path, text: str) -> str:
    """A link to ``target`` relative to the page's folder; "" when it does not exist."""
    if not target.exists():
        return ""
    rel = os.path.relpath(target.resolve(), page_dir.resolve())
    return f'<a href="{html.escape(quote(Path(rel).as_posix()))}">{html.escape(text)}</a>'


def _seconds(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


COST_NOTE = (
    "job wall: the wall time of the job's stages, from the first stage to the end of the last "
    "(<code>time/job_s</code> in summary.json, recorded by each job; older runs: read from <code>cli.log</code>); "
    "evaluation: <code>eval</code> + <code>eval_base</code>; per stage: each stage's wall time (model loading and "
    "saving included); GRPO trainer: TRL's <code>train_runtime</code> alone; GRPO tokens: prompt and completion "
    "tokens GRPO processed (TRL's <code>num_tokens</code>). The evaluation's generated tokens are not recorded. "
    "Links open the run's folder and files (relative to this page).")


def _cost_section(records, df, arms: Arms, page_dir: Path) -> list[str]:
    """One row per run: its arm, status, wall times, GRPO tokens and links to its folder and files."""
    import pandas as pd

    by_run = {str(r): i for i, r in enumerate(df["run"])} if len(df) else {}
    stages = []
    times = {}
    for rec in records:
        times[rec.name] = stage_times(rec)
        stages += [k for k in times[rec.name] if k != "job" and k not in stages]
    rows = []
    for rec in records:
        t = times[rec.name]
        i = by_run.get(rec.name)
        cost = (lambda col: df.loc[i, col] if i is not None and col in df.columns else math.nan)
        path = Path(rec.path)
        local = bool(rec.path) and path.is_dir()
        rows.append({
            "run": rec.name, "arm": arms.arm_of.get(rec.name, ""), "status": rec.status,
            "job wall (s)": _seconds(cost("cost/job_wall_s")), "evaluation (s)": _seconds(cost("cost/eval_s")),
            **{f"{st} (s)": _seconds(t.get(st, math.nan)) for st in stages},
            "GRPO trainer (s)": _seconds(cost("cost/grpo_runtime_s")),
            "GRPO tokens": "" if math.isnan(cost("cost/grpo_tokens")) else f"{cost('cost/grpo_tokens'):,.0f}",
            "folder": _link(path, page_dir, "folder") if local else (
                f'<a href="{html.escape(rec.path)}">W&amp;B</a>' if rec.path.startswith("http") else ""),
            "config": _link(path / "config.yaml", page_dir, "config.yaml") if local else "",
            "completions": _link(path / "grpo" / "completions.jsonl", page_dir, "completions.jsonl") if local else "",
            "responses": _link(path / EVAL_STAGE / "responses.jsonl", page_dir, "responses.jsonl") if local else "",
        })
    frame = pd.DataFrame(rows)
    run_colours = {rec.name: arms.run_colour(rec.name) for rec in records}
    return ["<h2>Job cost and files</h2>",
            _html_table(frame, "cost", run_colours, raw=("folder", "config", "completions", "responses"))
            if rows else "<p>(no run)</p>",
            f'<p class="note">{COST_NOTE}</p>']


def _diff_section(diff, records, arms: Arms) -> list[str]:
    """The resolved config keys that differ between the runs (``records.config_diff``), one column per run."""
    import pandas as pd

    keys, values = diff
    head = "<h2>Config keys that differ between runs</h2>"
    if not values:
        return [head, "<p>(fewer than two runs have a config.yaml)</p>"]
    if not keys:
        return [head, f"<p>Every run's resolved config.yaml is the same ({len(values)} runs).</p>"]
    overridden = {k for r in records for k in r.overrides}
    frame = pd.DataFrame([{"key": k + (" *" if k in overridden else ""), **{run: row[k] for run, row in values.items()}}
                          for k in keys], columns=["key", *values])
    header_colours = "".join(f'<span class="swatch" style="background:{arms.run_colour(run)}"></span>'
                             f"{html.escape(run)} " for run in values)
    return [head, f'<p class="note">Runs: {header_colours}</p>', _html_table(frame, "config-diff"),
            f'<p class="note">{len(keys)} key(s) of the resolved <code>config.yaml</code> of each run (flattened, '
            "every preset and default applied) whose value differs; * = set on the command line of some run "
            "(the other differences come from presets, defaults or interpolations). <code>config_diff.csv</code>."
            "</p>"]


_STYLE = ("body{font-family:sans-serif;margin:1.5em 2em;color:#222}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f4f4f4;cursor:pointer}"
          "th[data-order=asc]::after{content:' \\25B2'}th[data-order=desc]::after{content:' \\25BC'}"
          "tr.front{background:#fff3c4}img{max-width:100%}p.warning{background:#fde2e1;padding:4px 8px}"
          "p.note{color:#555;font-size:13px}"
          ".swatch{display:inline-block;width:11px;height:11px;margin-right:5px;border:1px solid #444;"
          "vertical-align:middle}")
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = Array.from(table.tHead.rows[0].cells), front = heads.findIndex(function (h) {
    return h.textContent.trim() === 'pareto'; });
  Array.from(table.tBodies[0].rows).forEach(function (r) {
    if (front >= 0 && r.cells[front].textContent.trim() === 'yes') r.classList.add('front'); });
  heads.forEach(function (th, col) {
    th.title = 'click to sort';
    th.addEventListener('click', function () {
      var asc = th.dataset.order !== 'asc', body = table.tBodies[0];
      heads.forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? 'asc' : 'desc';
      function key(r) { var t = r.cells[col].textContent.trim(); return [t === '' ? 1 : 0, parseFloat(t), t]; }
      Array.from(body.rows).sort(function (a, b) {  /* numbers as numbers ("0.2 ± 0.05" by 0.2), empty last */
        var x = key(a), y = key(b), c;
        if (x[0] !== y[0]) return x[0] - y[0];
        c = (!isNaN(x[1]) && !isNaN(y[1])) ? x[1] - y[1] : x[2].localeCompare(y[2], undefined, {numeric: true});
        return asc ? c : -c;
      }).forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def write_html(df, g, records, path: Path, source: str, images: Mapping[str, Path | None],
               notes: Sequence[str], warnings: Sequence[str], paired=None, *, arms: Arms | None = None,
               diff=((), {})) -> None:
    """One self-contained page: the interactive scatter (with the start points, or a sentence saying there are
    none), the grouped table (sortable), the arms compared item by item (``paired``, when any two share items), the
    reward curves and the training dynamics, each run's cost and links, the config keys that differ (``diff``:
    ``records.config_diff``), every run, the failed, unfinished and skipped runs, the notes. ``arms``: the colours
    (None = ``arms_of(g, records)``)."""
    import pandas as pd

    esc = html.escape
    arms = arms or arms_of(g, records)
    done = df[df["status"] == COMPLETED]
    failed = pd.DataFrame(failed_rows(records), columns=["run", "status", "error", "overrides", "path"])
    front = g.attrs.get("front_order", [])
    replicated = bool(len(g)) and int(g["n_seeds"].max()) > 1
    run_colours = {r.name: arms.run_colour(r.name) for r in records}
    body = [
        f"<h1>Sweep report</h1><p><code>{esc(source)}</code></p><p>{esc(counts_line(df))}</p>",
        f"<p>{esc(common_line(df))}</p>",
        *(f'<p class="warning"><strong>Warning:</strong> {esc(w)}</p>' for w in warnings),
        "<h2>Coverage vs uniqueness</h2>",
        _scatter_html(g, images.get("pareto"), arms),
        (f"<p>Pareto front (both maximised): {esc(', '.join(front) or 'none')}. One colour per arm, in every plot "
         "and table. Hover over a point for its runs, overrides and NLI numbers; drag to zoom, double-click to "
         "reset.</p>"),
        f"<p>{esc(_start_sentence(g))}</p>",
        f"<h2>Runs{' (seed replicates grouped)' if replicated else ''}</h2>",
        _html_table(group_display(g, df), "groups", arms.colour) if len(g) else "<p>(no completed run)</p>",
        ('<p class="note">One row per group of runs that differ only by their seed: each number is the mean over '
         "the seeds ± the half-width of its 95% Student-t interval (none for one seed). Rows on the Pareto front "
         "are highlighted; click a column to sort. Every number of every group: <code>groups.csv</code>; of every "
         f"run: <code>runs.csv</code>. Metrics are from the final evaluation (<code>{EVAL_STAGE}/...</code>).</p>"),
        *_paired_section(paired),
        "<h2>Reward components over GRPO steps</h2>",
        _img(images.get("curves"), "reward curves"),
        "<h2>Training dynamics over GRPO steps</h2>",
        _img(images.get("dynamics"), "training dynamics"),
        ('<p class="note">As TRL logs them in each run\'s <code>grpo/metrics.jsonl</code>: KL to the reference '
         "policy, entropy, mean completion length, the share of completions cut at the length limit "
         "(<code>completions/clipped_ratio</code>), the share of tokens whose probability ratio was clipped "
         "(<code>clip_ratio/region_mean</code>), the gradient norm. Colour: the arm; dash and marker: the seed.</p>"),
        *_cost_section(records, df, arms, path.parent),
        *_diff_section(diff, records, arms),
        f"<details><summary>Every completed run, every column ({len(done)})</summary>",
        _html_table(_flagged_frame(done[display_columns(df)], df), "runs", run_colours) if len(done)
        else "<p>(none)</p>",
        ('<p class="note"><code>grpo_last/*</code> are the last GRPO step\'s reward components, the total at the '
         "reference weights and <code>grpo_last/reward</code>, the run's own trained total.</p></details>"),
        "<h2>Failed, unfinished and skipped runs</h2>",
        _html_table(failed, "failed", run_colours) if len(failed) else "<p>(none)</p>",
        "<h2>Notes</h2>", *(f'<p class="note">{esc(n)}</p>' for n in notes),
    ]
    path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sweep report</title>"
                    f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body)
                    + f"\n<script>{_SORT_JS}</script>\n</body></html>\n", encoding="utf-8")


def _flagged_frame(frame, df):
    """``frame`` with the cells of non-finite summary numbers as "NaN \u26a0" / "inf \u26a0" (``flagged_cells``)."""
    import pandas as pd

    return pd.DataFrame(flagged_cells(frame, df), columns=list(frame.columns), index=frame.index)


def _paired_section(paired) -> list[str]:
    """The "Arms compared item by item" heading, table and note ([] when no two arms share items)."""
    if paired is None or not len(paired):
        return []
    shown = paired.copy()
    for c in ("mean_a", "mean_b", "diff", "diff_ci95_low", "diff_ci95_high"):
        shown[c] = shown[c].map(lambda v: f"{v:+.3f}" if c.startswith("diff") else f"{v:.3f}")
    shown["wilcoxon_p"] = shown["wilcoxon_p"].map(lambda v: f"{v:.2g}")
    return [
        "<h2>Arms compared item by item</h2>",
        _html_table(shown, "paired"),
        ('<p class="note">Each pair is one held-out item evaluated by both arms with the same seed (an arm is a group '
         "of seed replicates at its final <code>eval</code>, or at <code>eval_base</code> for the untrained policy). "
         "diff = mean of a - b with its 95% Student-t interval; a_higher / b_higher / ties count the pairs; "
         "wilcoxon_p is the two-sided signed-rank test without the ties. Items of one seed share a policy, so these "
         "p-values are optimistic: read them with the per-seed numbers above. <code>paired.csv</code>.</p>"),
    ]
