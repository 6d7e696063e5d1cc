"""Issue 30.1 through the real entrypoint: runs that differ only in their reward thresholds and score the same
responses (stage=eval on eval.responses_file) get the same headline numbers, their own-threshold numbers differ,
and the multirun's report ranks them by the headline ones."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "opgrpo"


def test_threshold_sweep_on_the_same_responses_has_one_set_of_headline_numbers(tmp_path, responses_file):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    # cpu calibration 0.55 / 0.6: own thresholds 0.05 and 0.95 (coverage), 0.05 and 0.99 (uniqueness)
    res = subprocess.run([str(BIN), "-m", "experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses_file}",
                          "eval.nli.backend=none", "reward.tau_cov_delta=-0.5,0.4", "reward.tau_uniq_delta=-0.55,0.39",
                          f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(4)]
    own = {(s["eval/reward/tau_cov"], s["eval/reward/tau_uniq"]): s for s in summaries}
    assert set(own) == {(0.05, 0.05), (0.05, 0.99), (0.95, 0.05), (0.95, 0.99)}  # labelled with their thresholds
    # the own numbers move with the thresholds ...
    assert own[0.05, 0.99]["eval/reward/coverage_rate"] > own[0.95, 0.99]["eval/reward/coverage_rate"]
    assert own[0.95, 0.99]["eval/reward/uniqueness_rate"] > own[0.95, 0.05]["eval/reward/uniqueness_rate"]
    # ... the headline numbers, by the reference rule (tau 0.55 / 0.6, paper weights), do not
    keys = [f"eval/reference/{k}" for k in ("coverage_rate", "uniqueness_rate", "total", "coverage", "uniqueness",
                                            "format", "tag", "rule", "tau_cov", "tau_uniq")]
    assert len({tuple(s[k] for k in keys) for s in summaries}) == 1
    first = summaries[0]
    assert (first["eval/reference/tau_cov"], first["eval/reference/tau_uniq"]) == (0.55, 0.6)
    assert first["eval/reference/weights/coverage"] == 0.3 and len(first["eval/reference/rule"]) == 12
    reward_json = json.loads((sweep / "0" / "eval" / "reward.json").read_text())
    assert reward_json["reference"]["fingerprint"] == first["eval/reference/rule"]
    assert reward_json["reference"]["rule"]["masking"] == "situation" and reward_json["rule"]["tau_cov"] in (0.05, 0.95)
    items = [json.loads(x) for x in (sweep / "0" / "eval" / "reward_items.jsonl").read_text().splitlines()]
    assert sum(r["reference"]["coverage_rate"] for r in items) / len(items) == pytest.approx(
        first["eval/reference/coverage_rate"])
    # the multirun's report: one rule, so no refusal; the headline columns are equal and all four on the front
    with open(sweep / "report" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({(r["coverage_rate"], r["uniqueness_rate"], r["reward/total_at_reference"]) for r in rows}) == 1
    assert len({r["own/coverage_rate"] for r in rows}) > 1 and all(r["pareto"] == "True" for r in rows)
    assert {r["reference_rule"] for r in rows} == {f"{first['eval/reference/rule']} (tau 0.55/0.6)"}
    assert "the objective eval/reference/coverage_rate is" in res.stdout + res.stderr  # it cannot move here


def test_eval_base_gets_the_reference_numbers_whatever_reward_tau_is_pinned_to(tmp_path, responses_file):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    summaries = []
    for name, pinned in (("a", []), ("b", ["reward.tau_cov=0.3", "reward.tau_uniq=0.9"])):
        res = subprocess.run([str(BIN), "experiment=cpu_demo", "stage=eval_base", "eval.nli.backend=none",
                              f"eval.responses_file={responses_file}", *pinned, f"hydra.run.dir={tmp_path / name}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "by the reference rule" in res.stdout
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    a, b = summaries
    assert (b["eval_base/reward/tau_cov"], b["eval_base/reward/tau_uniq"]) == (0.3, 0.9)
    assert (b["eval_base/reference/tau_cov"], b["eval_base/reference/tau_uniq"]) == (0.55, 0.6)
    ref = {k: v for k, v in a.items() if k.startswith("eval_base/reference/")}
    assert ref and ref == {k: v for k, v in b.items() if k.startswith("eval_base/reference/")}
    assert a["eval_base/reward/tau_cov"] == 0.55  # no pin: the run's own thresholds are the calibration's
