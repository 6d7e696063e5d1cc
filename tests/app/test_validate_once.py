"""Each data file is parsed once per run: the start-up check counts the training records with the run's own context
(opgrpo.app.validate.check), which keeps that parse for the stages (on the paper run: a 12,000-row CSV)."""
from __future__ import annotations

import csv
import json
import logging
import sys

import pytest

from opgrpo.app.rundir import RunDir
from opgrpo.app.validate import check


@pytest.fixture
def parses(monkeypatch):
    """Every call of the real loaders the run's context uses (opgrpo.benchmark.load_items and
    opgrpo.benchmark.sft_file.load_sft_examples), as (loader, file), each still calling the real one."""
    import opgrpo.benchmark
    import opgrpo.benchmark.sft_file

    calls: list[tuple[str, str]] = []

    def counting(name: str, real):
        def spy(path, *args, **kwargs):
            calls.append((name, str(path)))
            return real(path, *args, **kwargs)

        return spy

    for module, name in ((opgrpo.benchmark, "load_items"), (opgrpo.benchmark.sft_file, "load_sft_examples")):
        monkeypatch.setattr(module, name, counting(name, getattr(module, name)))
    yield calls


def _train_file(cfg) -> str:
    return str(cfg.benchmark.train_file)


def _sample_rows(compose) -> list[list[str]]:
    """The sample training file's CSV rows (header first, 36 items)."""
    with open(compose(["experiment=cpu_demo"]).benchmark.train_file, newline="") as fh:
        return list(csv.reader(fh))


def test_the_start_up_count_is_the_runs_parse(compose, parses, tmp_path):
    """stage=pipeline [estimator, sft, grpo] on the sample data: the check counts SFT's and GRPO's records with the
    run's own context (one parse: both read all rows), and the run's estimator, SFT and GRPO data come from it."""
    cfg = compose(["experiment=cpu_demo", "pipeline=[estimator,sft,grpo]"])
    ctx = check(cfg, RunDir(tmp_path / "run"))
    assert parses == [("load_items", _train_file(cfg))]
    train, val = ctx.train_val()
    assert (len(train), len(val)) == (32, 4)  # 36 sample situations, ceil(0.1 x 36) held out
    assert len(ctx.sft_train_val()[0]) == 32 and len(ctx.grpo_train_val()[0]) == 32
    assert parses == [("load_items", _train_file(cfg))]
    # a second run in the same process (a multirun's next job) parses again: nothing outlives a run's context
    check(cfg, RunDir(tmp_path / "next")).train_val()
    assert parses == [("load_items", _train_file(cfg))] * 2


def test_grpos_capped_rows_and_the_sft_file_are_parsed_once(compose, parses, tmp_path):
    """The paper's shape: GRPO on the first benchmark.grpo_max_items rows, SFT on benchmark.sft_file."""
    sft = tmp_path / "sft.csv"
    with open(sft, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "answer"])
        for i in range(20):
            target = (f"<core perspectives>\nIn the perspective of Care, case {i}.\n</core perspectives>\n"
                      "<summary>\nA summary.\n</summary>")
            w.writerow([f"Situation {i}", target])
    cfg = compose(["experiment=cpu_demo", "pipeline=[sft,grpo]", "benchmark.grpo_max_items=30",
                   f"benchmark.sft_file={sft}"])
    ctx = check(cfg, RunDir(tmp_path / "run"))
    assert len(ctx.sft_train_val()[0]) == 19  # int(20 x 0.95)
    assert len(ctx.grpo_train_val()[0]) == 27  # int(30 x 0.9)
    assert sorted(parses) == [("load_items", _train_file(cfg)), ("load_sft_examples", str(sft))]


def test_each_job_reads_the_file_as_it_is_at_its_check(compose, parses, tmp_path):
    """Two jobs of a multirun, the file edited between them: each job's context parses the file at its own check."""
    rows = _sample_rows(compose)
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as fh:
        csv.writer(fh).writerows(rows[:31])  # header + 30 items
    cfg = compose(["experiment=cpu_demo", "stage=grpo", f"benchmark.train_file={train}"])
    assert len(check(cfg, RunDir(tmp_path / "run")).grpo_train_val()[0]) == 27  # int(30 x 0.9)
    assert parses == [("load_items", str(train))]
    with open(train, "w", newline="") as fh:
        csv.writer(fh).writerows(rows[:21])  # 20 items now
    assert len(check(cfg, RunDir(tmp_path / "next")).grpo_train_val()[0]) == 18  # int(20 x 0.9)
    assert parses == [("load_items", str(train))] * 2


def test_the_bad_rows_are_logged_and_written_once(compose, parses, tmp_path, caplog):
    """The check's parse logs each bad row once and writes data_errors.jsonl into the run directory; the run's stages
    reading the same data add nothing."""
    rows = _sample_rows(compose)
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows(rows)
        w.writerow(["bad-1", "A situation with no perspectives", "", ""])
    cfg = compose(["experiment=cpu_demo", "stage=grpo", f"benchmark.train_file={train}"])
    run = RunDir(tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        ctx = check(cfg, run)
        ctx.grpo_train_val()
    assert parses == [("load_items", str(train))]
    loader = [r.getMessage() for r in caplog.records if r.name == "opgrpo.benchmark.loading"]
    assert len(loader) == 1 and loader[0].startswith(f"{train}: row ") and "field 'answer'" in loader[0], loader
    assert caplog.text.count("1 bad row(s) skipped") == 1
    errors = [json.loads(line) for line in (run.path / "data_errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["source"] == str(train) and not errors[0]["kept"]


def test_a_check_without_a_run_directory_writes_nothing(compose, tmp_path, monkeypatch):
    """A multirun's pre-check of its arms (no run directory yet) parses and counts but writes no file."""
    monkeypatch.chdir(tmp_path)
    ctx = check(compose(["experiment=cpu_demo", "stage=grpo"]))
    assert ctx.run is None and len(ctx.grpo_train_val()[0]) == 32
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_real_run_through_the_entrypoint_parses_its_training_file_once(parses, tiny_lm, tmp_path, monkeypatch):
    """`opgrpo experiment=cpu_demo stage=sft` (1 step, the tiny LM) in this process: start-up check, then the run."""
    from hydra.core.global_hydra import GlobalHydra

    from opgrpo.app import cli
    from opgrpo.benchmark import sample_data_path

    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["opgrpo", "experiment=cpu_demo", "stage=sft", f"model.name_or_path={tiny_lm}",
                                      "trainer.sft.trl.max_steps=1", f"hydra.run.dir={run}"])
    GlobalHydra.instance().clear()
    cli.main()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert (run / "sft" / "final").is_dir()
    assert parses == [("load_items", str(sample_data_path("train")))]
