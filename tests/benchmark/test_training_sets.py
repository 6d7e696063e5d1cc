"""The training sets as the authors built them (issue 17.3): GRPO on the first ``benchmark.grpo_max_items`` rows in
pandas' seed-42 order, 90/10; SFT from its own file of full target responses, 95/5; the template fallback
labelled. Hand-written files, expected rows worked out by hand from pandas' permutation."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from opgrpo.app.runconfig import to_config
from opgrpo.benchmark import load_items
from opgrpo.benchmark.sft_file import SFTExample, load_sft_examples
from opgrpo.benchmark.splits import pandas_permutation, shuffled_split

TARGET = ("<core perspectives>\nIn the perspective of Duty, {k} binds.\nIn the perspective of Care, {k} helps.\n"
          "</core perspectives>\n\n<summary>\nAn LLM-written summary of situation {k}.\n</summary>")


def write_train(path, n, bad=()):
    """``n`` rows; the 0-based rows in ``bad`` have an answer without the perspective phrase (a bad row)."""
    rows = [{"prompt": f"situation {k}",
             "answer": "not a perspective" if k in bad else f"In the perspective of Duty, reason {k}."}
            for k in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_sft(path, n, bad=()):
    rows = [{"prompt": f"situation {k}", "answer": "plain text, no tags" if k in bad else TARGET.format(k=k)}
            for k in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def situations(records):
    return [r.situation for r in records]


# --------------------------------------------------------------------------- the split rule


def test_pandas_permutation_is_dataframe_sample():
    assert pandas_permutation(6, 42) == [0, 1, 5, 2, 4, 3]
    frame = pd.DataFrame({"x": range(57), "y": ["a"] * 57})
    assert pandas_permutation(57, 42) == frame.sample(frac=1.0, random_state=42).index.tolist()
    assert pandas_permutation(0) == []


def test_first_six_of_ten_rows_in_pandas_order_then_90_10(tmp_path):
    path = write_train(tmp_path / "train.csv", 10)
    positions: list[int] = []
    items, errors = load_items(path, max_rows=6, positions=positions)
    assert errors == [] and len(items) == 6 and positions == [0, 1, 2, 3, 4, 5]
    train, val = shuffled_split(items, 0.1, 42, positions=positions, n_rows=6)
    # permutation of 6 rows with seed 42: [0, 1, 5, 2, 4, 3]; int(6 * 0.9) = 5 train rows
    assert situations(train) == ["situation 0", "situation 1", "situation 5", "situation 2", "situation 4"]
    assert situations(val) == ["situation 3"]


def test_a_bad_row_keeps_its_place_in_the_permutation(tmp_path):
    path = write_train(tmp_path / "train.csv", 10, bad={2})
    positions: list[int] = []
    items, errors = load_items(path, max_rows=6, positions=positions)
    assert [e.row for e in errors] == [3] and positions == [0, 1, 3, 4, 5]  # six rows read, not seven
    train, val = shuffled_split(items, 0.1, 42, positions=positions, n_rows=6)
    assert situations(train) == ["situation 0", "situation 1", "situation 5", "situation 4"]  # row 2 is absent
    assert situations(val) == ["situation 3"]


def test_split_sizes_round_down_as_the_authors():
    rows = list(range(20))
    assert [len(s) for s in shuffled_split(rows, 0.05, 42)] == [19, 1]  # int(20 * 0.95)
    assert [len(s) for s in shuffled_split(list(range(36)), 0.1, 42)] == [32, 4]  # int(32.4)
    assert [len(s) for s in shuffled_split(list(range(19)), 0.1, 42)] == [17, 2]  # int(17.1)
    assert shuffled_split(["only"], 0.1, 42) == (["only"], [])  # the training part is never empty
    assert shuffled_split([], 0.1, 42) == ([], [])
    with pytest.raises(ValueError, match="positions"):
        shuffled_split(["a", "b"], 0.1, 42, positions=[0, 0], n_rows=2)


# --------------------------------------------------------------------------- the SFT file


def test_sft_file_in_the_authors_format(tmp_path, caplog):
    path = write_sft(tmp_path / "train_summary_sft_full_cleaned.csv", 5, bad={1})
    positions: list[int] = []
    examples, errors = load_sft_examples(path, positions=positions)
    assert [e.situation for e in examples] == ["situation 0", "situation 2", "situation 3", "situation 4"]
    assert examples[0] == SFTExample("train_summary_sft_full_cleaned:1", "situation 0", TARGET.format(k=0),
                                     f"{path}:1")
    assert [(e.row, e.field, e.kept) for e in errors] == [(2, "answer", False)] and "target layout" in errors[0].message
    assert positions == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="row 2: field 'answer'"):
        load_sft_examples(path, on_error="fail")


def test_sft_file_aliases_and_jsonl(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"situation": "s", "response": TARGET.format(k=1)}) + "\n"
                    + json.dumps({"situation": "t", "response": ""}) + "\n")
    examples, errors = load_sft_examples(path)
    assert [(e.situation, e.target) for e in examples] == [("s", TARGET.format(k=1))]
    assert [(e.row, e.field) for e in errors] == [(2, "response")]
    csv_path = tmp_path / "nocol.csv"
    csv_path.write_text("prompt,text\nx,y\n")
    with pytest.raises(ValueError, match="no column 'answer'"):
        load_sft_examples(csv_path)


# --------------------------------------------------------------------------- the run context


def _context(compose, tmp_path, *overrides):
    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir

    cfg = compose(["experiment=cpu_demo", f"benchmark.train_file={tmp_path / 'train.csv'}", *overrides])
    return RunContext(to_config(cfg), RunDir(tmp_path / "run"))


def test_context_grpo_items_and_sft_targets_from_file(compose, tmp_path):
    write_train(tmp_path / "train.csv", 10)
    write_sft(tmp_path / "sft.csv", 20)
    ctx = _context(compose, tmp_path, "benchmark.grpo_max_items=6", f"benchmark.sft_file={tmp_path / 'sft.csv'}")
    train, val = ctx.grpo_train_val()
    assert situations(train) == ["situation 0", "situation 1", "situation 5", "situation 2", "situation 4"]
    assert situations(val) == ["situation 3"]
    sft_train, sft_val = ctx.sft_train_val()
    order = pandas_permutation(20, 42)
    assert situations(sft_train) == [f"situation {k}" for k in order[:19]] and len(sft_val) == 1
    assert all(isinstance(e, SFTExample) and e.target == TARGET.format(k=int(e.situation.split()[1]))
               for e in sft_train)
    summary = ctx.run.summary
    assert summary["sft/targets"] == "file" and summary["sft/train_examples"] == 19
    assert summary["data/grpo/rows"] == 6 and summary["data/grpo/train"] == 5
    assert len(ctx.train_val()[0]) + len(ctx.train_val()[1]) == 10  # train + val: the whole file (mined together
    # unless a labels file holds the validation part back: test_estimator_stage_mines_the_whole_training_csv)


def test_context_without_sft_file_uses_the_labelled_template(compose, tmp_path):
    write_train(tmp_path / "train.csv", 10)
    ctx = _context(compose, tmp_path)
    assert ctx.sft_train_val() == ctx.train_val()
    assert ctx.run.summary["sft/targets"] == "template"
    train, val = ctx.grpo_train_val()  # grpo_max_items=-1: every row, same pandas order
    order = pandas_permutation(10, 42)
    assert situations(train) == [f"situation {k}" for k in order[:9]]
    assert situations(val) == [f"situation {order[9]}"]


def test_benchmark_settings_in_the_presets_and_their_checks(compose, tmp_path):
    from opgrpo.app.validate import ConfigError, check

    paper = compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"]).benchmark
    assert (paper.grpo_max_items, paper.val_fraction, paper.sft_val_fraction, paper.split_seed) == (12000, 0.1, 0.05, 42)
    assert compose(["experiment=cpu_demo"]).benchmark.grpo_max_items == -1
    for override, key in (("benchmark.grpo_max_items=0", "benchmark.grpo_max_items"),
                          (f"benchmark.sft_file={tmp_path / 'missing.csv'}", "benchmark.sft_file"),
                          ("benchmark.sft_val_fraction=1.0", "benchmark.sft_val_fraction")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            check(compose(["experiment=cpu_demo", override]))


def test_a_bad_row_read_by_two_stages_is_reported_once(compose, tmp_path):
    write_train(tmp_path / "train.csv", 10, bad={2, 8})
    ctx = _context(compose, tmp_path, "benchmark.grpo_max_items=6")
    train, val = ctx.grpo_train_val()  # the first six rows: row 2 is bad
    assert situations(train) == ["situation 0", "situation 1", "situation 5", "situation 4"]
    assert len(ctx.train_val()[0]) + len(ctx.train_val()[1]) == 8  # the whole file: rows 2 and 8 are bad
    lines = (tmp_path / "run" / "data_errors.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["row"] for line in lines) == [3, 9]


# --------------------------------------------------------------------------- the estimator's mining items


def _run_estimator_stage_recording(monkeypatch, tmp_path):
    """Replace the estimator stage's body (mining, training) and held-out evaluation by recorders: the items
    ``stage_estimator`` hands to mining and the item sets it evaluates on."""
    import opgrpo.estimator.evaluate as evaluate_module
    import opgrpo.estimator.stage as stage_module

    seen: dict = {}

    def fake_stage(items, cfg, run_dir, *, device="auto"):
        seen["mined"] = list(items)
        return {"model_path": str(tmp_path / "model"), "trained": False}, stage_module.EstimatorModels(None, None)

    def fake_heldout(base, finetuned, cfg, sets, mined_path):
        seen["sets"] = {k: list(v) for k, v in sets.items()}
        return {}

    monkeypatch.setattr(stage_module, "run_estimator_stage", fake_stage)
    monkeypatch.setattr(evaluate_module, "evaluate_heldout", fake_heldout)
    return seen


def test_estimator_stage_mines_the_whole_training_csv(compose, tmp_path, monkeypatch):
    """Issue 17.3 / SPEC "Triplet mining for the estimator: the training CSV": without a labels file nothing uses the
    10% validation items, so all 10 rows are mined (the old stage mined int(10 x 0.9) = 9 and dropped one)."""
    from opgrpo.app.stages import stage_estimator

    write_train(tmp_path / "train.csv", 10)
    seen = _run_estimator_stage_recording(monkeypatch, tmp_path)
    ctx = _context(compose, tmp_path, "estimator.judge.kind=none", "estimator.judge.labels_file=")
    stage_estimator(ctx)
    assert sorted(situations(seen["mined"]), key=lambda s: int(s.split()[1])) == [f"situation {k}" for k in range(10)]
    assert "val_items" not in seen["sets"]  # the test items only


def test_estimator_stage_with_a_labels_file_holds_the_validation_items_back(compose, tmp_path, monkeypatch):
    """With a labels file (experiment=cpu_demo) the held-out evaluation uses the validation items: they are not
    mined (9 of 10 rows mined, the 10th evaluated)."""
    from opgrpo.app.stages import stage_estimator

    write_train(tmp_path / "train.csv", 10)
    seen = _run_estimator_stage_recording(monkeypatch, tmp_path)
    ctx = _context(compose, tmp_path)
    assert ctx.cfg.estimator.judge.labels_file  # cpu_demo: the sample data's pair labels
    stage_estimator(ctx)
    train, val = ctx.train_val()
    assert len(seen["mined"]) == 9 and situations(seen["mined"]) == situations(train)
    assert situations(seen["sets"]["val_items"]) == situations(val) and len(val) == 1
