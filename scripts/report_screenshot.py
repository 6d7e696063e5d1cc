"""Screenshot of a sweep report's page (``index.html``) with headless Chromium (Debian's ``chromium`` package).

    python scripts/report_screenshot.py REPORT.html OUT.png
    python scripts/report_screenshot.py --sweep-dir multirun/<date>/<time> OUT.png   # build the report first

The page is self-contained (plotly.js embedded), so Chromium opens it from ``file://`` with every network
feature off; ``--virtual-time-budget`` lets plotly draw before the shot. ``screenshot()`` is what the test
(tests/sweep/test_report_html.py) calls. Only the standard library here; the report itself is built with
``opgrpo.sweep.report.build_report``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def screenshot(page: str | Path, png: str | Path, *, chromium: str = CHROMIUM, size: tuple[int, int] = (1400, 1000),
               budget_ms: int = 5000, timeout_s: float = 240.0) -> Path:
    """Render ``page`` (an HTML file) at ``size`` pixels into ``png``; RuntimeError (with Chromium's output) when
    no screenshot comes out."""
    page, png = Path(page).resolve(), Path(png).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"no such page: {page}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="report_shot_") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={png}", page.as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {res.returncode}): {(res.stdout + res.stderr)[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", nargs="?", help="the report's index.html (omit with --sweep-dir)")
    ap.add_argument("png", help="where the screenshot goes")
    ap.add_argument("--sweep-dir", default="", help="build this sweep's report (in a temporary folder) first")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--size", default="1400,1000", help="window WIDTH,HEIGHT in pixels")
    ap.add_argument("--budget-ms", type=int, default=5000, help="virtual time for the page's scripts")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split(","))
    with tempfile.TemporaryDirectory(prefix="report_") as tmp:
        page = args.page
        if args.sweep_dir:
            from opgrpo.sweep.report import build_report

            page = build_report(args.sweep_dir, Path(tmp) / "report")["html"]
        if not page:
            ap.error("give REPORT.html or --sweep-dir")
        out = screenshot(page, args.png, chromium=args.chromium, size=(width, height), budget_ms=args.budget_ms)
    print(f"screenshot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
