"""The page of a sweep report (opgrpo.sweep.report): ``index.html``, one self-contained file (plotly.js and the
images embedded, opens offline). It is a short template around what plotly (``Figure.to_html``) and pandas
(``DataFrame.to_html``) write, plus a few lines of JavaScript for sorting the tables.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from opgrpo.sweep.records import EVAL_STAGE
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


def _html_table(frame, table_id: str) -> str:
    """A pandas table as sortable HTML (values escaped; empty cells for NaN)."""
    return frame.to_html(index=False, escape=True, na_rep="", border=0, table_id=table_id,
                         classes="sortable", formatters={c: cell_text for c in frame.columns})


def _scatter_html(g, fallback: Path | None) -> str:
    """The interactive scatter with plotly.js embedded (the page works offline); the PNG when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return "<p>(plotly is not installed: the static plot instead)</p>" + _img(fallback, "Pareto plot")
    from opgrpo.sweep.plots import SCATTER_DIV, scatter_figure

    return scatter_figure(g).to_html(full_html=False, include_plotlyjs=True, div_id=SCATTER_DIV,
                                     config={"displaylogo": False, "responsive": True})


_STYLE = ("body{font-family:sans-serif;margin:1.5em 2em;color:#222}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f4f4f4;cursor:pointer}"
          "th[data-order=asc]::after{content:' \\25B2'}th[data-order=desc]::after{content:' \\25BC'}"
          "tr.front{background:#fff3c4}img{max-width:100%}p.warning{background:#fde2e1;padding:4px 8px}"
          "p.note{color:#555;font-size:13px}")
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
               notes: Sequence[str], warnings: Sequence[str], paired=None) -> None:
    """One self-contained page: the interactive scatter, the grouped table (sortable), the arms compared item by
    item (``paired``, when any two share items), the curves, every run, the failed, unfinished and skipped runs,
    the notes."""
    import pandas as pd

    esc = html.escape
    done = df[df["status"] == COMPLETED]
    failed = pd.DataFrame(failed_rows(records), columns=["run", "status", "error", "overrides", "path"])
    front = g.attrs.get("front_order", [])
    replicated = bool(len(g)) and int(g["n_seeds"].max()) > 1
    body = [
        f"<h1>Sweep report</h1><p><code>{esc(source)}</code></p><p>{esc(counts_line(df))}</p>",
        f"<p>{esc(common_line(df))}</p>",
        *(f'<p class="warning"><strong>Warning:</strong> {esc(w)}</p>' for w in warnings),
        "<h2>Coverage vs uniqueness</h2>",
        _scatter_html(g, images.get("pareto")),
        (f"<p>Pareto front (both maximised): {esc(', '.join(front) or 'none')}. Hover over a point for its runs, "
         "overrides and NLI numbers; drag to zoom, double-click to reset.</p>"),
        f"<h2>Runs{' (seed replicates grouped)' if replicated else ''}</h2>",
        _html_table(group_display(g, df), "groups") if len(g) else "<p>(no completed run)</p>",
        ('<p class="note">One row per group of runs that differ only by their seed: each number is the mean over '
         "the seeds ± the half-width of its 95% Student-t interval (none for one seed). Rows on the Pareto front "
         "are highlighted; click a column to sort. Every number of every group: <code>groups.csv</code>; of every "
         f"run: <code>runs.csv</code>. Metrics are from the final evaluation (<code>{EVAL_STAGE}/...</code>).</p>"),
        *_paired_section(paired),
        "<h2>Reward components over GRPO steps</h2>",
        _img(images.get("curves"), "reward curves"),
        f"<details><summary>Every completed run, every column ({len(done)})</summary>",
        _html_table(_flagged_frame(done[display_columns(df)], df), "runs") if len(done) else "<p>(none)</p>",
        ('<p class="note"><code>grpo_last/*</code> are the last GRPO step\'s reward components, the total at the '
         "reference weights and <code>grpo_last/reward</code>, the run's own trained total.</p></details>"),
        "<h2>Failed, unfinished and skipped runs</h2>",
        _html_table(failed, "failed") if len(failed) else "<p>(none)</p>",
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
