"""One PNG of a sweep report's figures and its cost table, side by side, for the README where no headless browser is
installed (scripts/report_screenshot.py needs /usr/bin/chromium). It is NOT a browser screenshot of index.html: it
puts together the images the page embeds (pareto.png, curves.png, dynamics.png) and draws the page's "Job cost and
files" table (links left out) from runs.csv.

    python scripts/report_figures_png.py REPORT_DIR OUT.png
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def _table(report: Path, width: int) -> Image.Image:
    rows = list(csv.DictReader(open(report / "runs.csv", newline="")))
    cols = [("run", "run"), ("reward.weights.coverage", "coverage w"), ("seed", "seed"), ("status", "status"),
            ("cost/job_wall_s", "job wall s"), ("cost/eval_s", "eval s"), ("cost/grpo_runtime_s", "GRPO trainer s"),
            ("cost/grpo_tokens", "GRPO tokens"), ("coverage_rate", "coverage"), ("uniqueness_rate", "uniqueness"),
            ("start/coverage_rate", "start cov"), ("start/uniqueness_rate", "start uniq")]
    cols = [(k, h) for k, h in cols if rows and k in rows[0]]
    font = ImageFont.load_default(size=15)
    line = 24
    img = Image.new("RGB", (width, line * (len(rows) + 2) + 10), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 4), "Job cost (page section \"Job cost and files\"; links to folder, config.yaml, completions, responses "
           "not shown)", fill="black", font=font)
    step = (width - 20) // len(cols)

    def fmt(v: str) -> str:
        try:
            f = float(v)
        except ValueError:
            return v
        return f"{f:,.0f}" if abs(f) >= 100 else f"{f:.3g}"

    for j, (_, h) in enumerate(cols):
        d.text((10 + j * step, 4 + line), h, fill="#333", font=font)
    for i, r in enumerate(rows):
        for j, (k, _) in enumerate(cols):
            d.text((10 + j * step, 4 + line * (i + 2)), fmt(r.get(k, "")), fill="black", font=font)
    return img


def main(report: str, out: str) -> None:
    report_dir = Path(report)
    pareto = Image.open(report_dir / "pareto.png").convert("RGB")
    curves = Image.open(report_dir / "curves.png").convert("RGB")
    dynamics = Image.open(report_dir / "dynamics.png").convert("RGB")
    width = max(curves.width, dynamics.width, pareto.width * 2)
    top = Image.new("RGB", (width, pareto.height), "white")
    top.paste(pareto, (0, 0))
    scale = min(1.0, (width - pareto.width) / curves.width, pareto.height / curves.height)
    small = curves.resize((int(curves.width * scale), int(curves.height * scale)))
    top.paste(small, (pareto.width, 0))
    table = _table(report_dir, width)
    canvas = Image.new("RGB", (width, top.height + dynamics.height + table.height), "white")
    canvas.paste(top, (0, 0))
    canvas.paste(dynamics, ((width - dynamics.width) // 2, top.height))
    canvas.paste(table, (0, top.height + dynamics.height))
    canvas = canvas.resize((int(canvas.width * 0.75), int(canvas.height * 0.75)), Image.LANCZOS)
    canvas.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE).save(out, optimize=True)  # < 300 KB
    print(out, canvas.size, Path(out).stat().st_size, "bytes")


if __name__ == "__main__":
    main(*sys.argv[1:3])
