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
import os
import time
import traceback
from pathlib import Path
from typing import Any, Mapping


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out[prefix] = value


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # under `accelerate launch` every rank runs the app; only rank 0 writes the run's own files
        self.main = int(os.environ.get("RANK", "0")) == 0
        self.summary: dict[str, Any] = {}
        summary = self.path / "summary.json"
        if summary.exists():  # resumed runs keep what earlier attempts recorded
            self.summary = json.loads(summary.read_text())

    def stage_dir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_config(self, yaml_text: str) -> None:
        if not self.main:
            return
        (self.path / "config.yaml").write_text(yaml_text)

    def set_status(self, status: str, **extra: Any) -> None:
        if not self.main:
            return
        data = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        (self.path / "status.json").write_text(json.dumps(data, indent=2))

    def fail(self, exc: BaseException) -> None:
        self.set_status("failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())

    def log(self, stage: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append an event to metrics.jsonl; events without a step also update the flat summary."""
        flat: dict[str, Any] = {}
        _flatten("", metrics, flat)
        if not self.main:
            return
        record = {"stage": stage, **({"step": step} if step is not None else {}), **flat}
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        if step is None:
            self.summary.update({f"{stage}/{k}": v for k, v in flat.items()})
            self._write_summary()

    def _write_summary(self) -> None:
        (self.path / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str))
        with open(self.path / "summary.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["key", "value"])
            w.writerows(sorted(self.summary.items()))

    def objective(self, key: str) -> float | None:
        value = self.summary.get(key)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
        return None
