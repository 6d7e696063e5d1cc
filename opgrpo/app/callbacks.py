"""Hydra callbacks of the `opgrpo` app (registered under ``hydra.callbacks`` in conf/opgrpo.yaml).

``SweepOutcome``: at the end of a multirun, read every job's ``status.json`` in the sweep directory, print
which jobs failed or never finished and where the sweep is, and remember it so that the entrypoint exits
non-zero (``opgrpo -m`` must not report success when members failed). It reads files rather than
in-process state, so it also sees jobs that a launcher (submitit) ran in other processes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from opgrpo.utils.runfiles import COMPLETED, RunFileError, read_status

log = logging.getLogger("opgrpo")


@dataclass
class Outcome:
    """What the last multirun of this process left: its directory and the jobs that did not complete."""

    sweep_dir: str = ""
    jobs: int = 0
    failed: list[str] = field(default_factory=list)


LAST_MULTIRUN = Outcome()


def sweep_outcome(sweep_dir: str | Path) -> Outcome:
    """Every job directory (one holding Hydra's ``.hydra/``) under ``sweep_dir`` and those not completed."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted({p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")})
    failed = []
    for job in jobs:
        try:
            status = read_status(job) or {}
        except RunFileError as exc:
            status = {"status": "unreadable", "error": str(exc)}
        if status.get("status") != COMPLETED:
            why = status.get("error") or f"status {status.get('status', 'missing')}"
            failed.append(f"{job.relative_to(sweep_dir)}: {str(why).splitlines()[0][:300]}")
    return Outcome(str(sweep_dir), len(jobs), failed)


class SweepOutcome(Callback):
    """Report failed jobs at the end of a multirun and make the entrypoint exit non-zero if there are any."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        outcome = sweep_outcome(config.hydra.sweep.dir)
        LAST_MULTIRUN.sweep_dir, LAST_MULTIRUN.jobs, LAST_MULTIRUN.failed = (
            outcome.sweep_dir, outcome.jobs, outcome.failed)
        if outcome.failed:
            log.error("%d of %d job(s) of the sweep did not complete:\n  %s", len(outcome.failed), outcome.jobs,
                      "\n  ".join(outcome.failed))
        log.info("sweep directory: %s (%d job(s), %d completed)", outcome.sweep_dir, outcome.jobs,
                 outcome.jobs - len(outcome.failed))
