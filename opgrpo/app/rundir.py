"""The run directory: resolved config, status, metrics (JSONL + flat summary JSON/CSV) of one run.

Layout of a run directory (Hydra's output dir):

    config.yaml          resolved config of this run (Hydra's own .hydra/ keeps the unresolved one)
    status.json          running | completed | failed (+ error), so sweeps can list failed runs
    metrics.jsonl        one JSON object per logged event: {"stage", "step"?, metrics...}
    summary.json/.csv    flat "stage/key" -> value of the final numbers; `main` returns one of them
    estimator/ sft/ grpo/ eval/ ...   each stage's own artefacts
"""
from __future__ import annotations

import csv
import json
import math
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opgrpo.training.distributed import dist_info
from opgrpo.utils.jsonio import append_jsonl, flatten
from opgrpo.utils.redact import redact
from opgrpo.utils.runfiles import (
    CONFIG_YAML,
    FAILED,
    METRICS_JSONL,
    SUMMARY_CSV,
    SUMMARY_JSON,
    write_status,
)


class RunDir:
    """One run's directory (file names in opgrpo.utils.runfiles); only rank 0 writes to it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # under `accelerate launch` every rank runs the app; only rank 0 writes the run's own files
        self.main = dist_info().is_main
        # the run's numbers: what its stages log, and those of stages it reuses (their manifests hold them,
        # opgrpo.app.reuse); an earlier summary.json is never taken as it is (it may be another run's)
        self.summary: dict[str, Any] = {}
        self.identity = ""
        """What the run computes (opgrpo.app.identity.run_identity; set when its stages start): its W&B id."""

    def stage_dir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_config(self, yaml_text: str) -> None:
        """config.yaml (rank 0), with no secret in it (a URL's credentials: opgrpo.utils.redact)."""
        if not self.main:
            return
        (self.path / CONFIG_YAML).write_text(redact(yaml_text))

    def set_status(self, status: str, **extra: Any) -> None:
        """Write status.json (RUNNING, COMPLETED or FAILED, see opgrpo.utils.runfiles) on rank 0."""
        if not self.main:
            return
        write_status(self.path, status, **extra)

    def fail(self, exc: BaseException) -> None:
        self.set_status(FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())

    def log(self, stage: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append an event to metrics.jsonl; events without a step also update the flat summary."""
        # scalar leaves only: lists, arrays and other objects stay in the stage's own files
        flat = {k: redact(v) for k, v in flatten(metrics).items()
                if isinstance(v, (int, float, str, bool)) or v is None}
        if not self.main:
            return
        record = {"stage": stage, **({"step": step} if step is not None else {}), **flat}
        append_jsonl(self.path / METRICS_JSONL, [record])
        if step is None:
            self.summary.update({f"{stage}/{k}": v for k, v in flat.items()})
            self._write_summary()

    def restore(self, entries: Mapping[str, Any]) -> None:
        """Put a reused stage's numbers (``stage/key`` -> value) into the summary and write it (rank 0)."""
        self.summary.update(entries)
        if self.main:
            self._write_summary()

    def _write_summary(self) -> None:
        (self.path / SUMMARY_JSON).write_text(json.dumps(self.summary, indent=2, default=str))
        with open(self.path / SUMMARY_CSV, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["key", "value"])
            w.writerows(sorted(self.summary.items()))

    def objective(self, key: str) -> float | None:
        value = self.summary.get(key)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
        return None
