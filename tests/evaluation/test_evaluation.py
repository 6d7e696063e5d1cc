"""NLI metrics per split, their files and run comparison (hand-computed numbers); responses files are in
test_responses.py."""
import csv
import json
import math

import pytest

from opgrpo.evaluation.metrics import format_table, split_metrics, write_eval_outputs
from opgrpo.evaluation.nli import ItemScore
from opgrpo.evaluation.responses import load_responses
from opgrpo.sweep.compare import compare_runs

SPLITS = {"a": "5", "b": "5", "c": "5", "d": "6", "e": "6"}


def scores():
    return [
        ItemScore("d", 0.5, [0.5, 0.5], ["X", "Y"], 2, "resp d"),
        ItemScore("a", 0.75, [0.9, 0.6], ["Honesty", "Care"], 2, "resp a"),
        ItemScore("b", 0.33, [0.33], ["Duty"], 1, "resp b"),  # exactly the threshold: not counted
        ItemScore("c", 0.0, [0.0], ["Duty"], 0, ""),
        ItemScore("e", float("nan"), response="resp e", skipped=True),
    ]


def test_split_metrics_hand_computed():
    m = split_metrics(scores(), SPLITS, threshold=0.33)
    assert list(m) == ["5", "6", "overall"]  # known split order, overall last
    five = m["5"]  # scores 0.75, 0.33, 0.0
    assert five["count"] == 3 and five["skipped"] == 0 and five["no_references"] == 0 and five["unparsed"] == 0
    assert five["mean"] == pytest.approx(0.36)
    assert "std" not in five  # the key says which std it is
    assert five["std_ddof0"] == pytest.approx(math.sqrt(0.2826 / 3))  # ddof 0, as the authors' np.std
    assert five["stderr"] == pytest.approx(math.sqrt(0.2826 / 3) / math.sqrt(3))
    assert five["accuracy"] == pytest.approx(1 / 3)
    assert five["accuracy_stderr"] == pytest.approx(math.sqrt(2 / 27))
    six = m["6"]  # one scored item, one skipped
    assert six["count"] == 1 and six["skipped"] == 1 and six["mean"] == 0.5 and six["accuracy"] == 1.0
    assert six["std_ddof0"] == 0.0 and six["stderr"] == 0.0 and six["accuracy_stderr"] == 0.0  # ddof 0: defined
    overall = m["overall"]  # 0.5, 0.75, 0.33, 0.0
    assert overall["count"] == 4 and overall["skipped"] == 1
    assert overall["mean"] == pytest.approx(0.395)
    assert overall["std_ddof0"] == pytest.approx(math.sqrt(0.2973 / 4))
    assert overall["accuracy"] == 0.5
    # a callable split lookup and a different threshold
    m2 = split_metrics(scores(), lambda i: "all", threshold=0.32)
    assert list(m2) == ["all", "overall"] and m2["all"]["accuracy"] == pytest.approx(3 / 4)


def test_write_eval_outputs_formats(tmp_path):
    m = split_metrics(scores(), SPLITS)
    paths = write_eval_outputs(tmp_path / "run", m, scores(), SPLITS)
    data = json.loads(paths["metrics_json"].read_text())
    assert data["5"]["count"] == 3 and data["6"]["std_ddof0"] == 0.0
    assert data["overall"]["accuracy"] == 0.5
    rows = list(csv.DictReader(paths["metrics_csv"].open()))
    assert [r["split"] for r in rows] == ["5", "6", "overall"]
    assert list(rows[0]) == ["split", "count", "skipped", "no_references", "unparsed", "mean", "std_ddof0", "stderr",
                             "accuracy", "accuracy_stderr"]
    assert float(rows[0]["mean"]) == pytest.approx(0.36) and rows[1]["std_ddof0"] == "0.0"
    records = [json.loads(line) for line in paths["items_jsonl"].read_text().splitlines()]
    assert records[1] == {"id": "a", "split": "5", "score": 0.75, "skipped": False, "no_references": False,
                          "parsed": None, "text": "full", "attempts": None, "n_sentences": 2,
                          "perspectives": [{"name": "Honesty", "score": 0.9}, {"name": "Care", "score": 0.6}],
                          "response": "resp a"}
    assert records[4]["skipped"] is True and records[4]["score"] is None
    # the per-item file doubles as a responses file
    assert load_responses(paths["items_jsonl"], ["c", "a", "b", "d", "e"]) == ["", "resp a", "resp b", "resp d",
                                                                                "resp e"]


def test_format_table():
    text = format_table(split_metrics(scores(), SPLITS))
    lines = text.splitlines()
    assert lines[0].split() == ["split", "count", "no_refs", "unparsed", "mean", "std(ddof0)", "stderr", "accuracy",
                                "acc_stderr"]
    assert lines[2].split() == ["5", "3", "0", "0", "0.3600", "0.3069", "0.1772", "0.3333", "0.2722"]
    assert lines[3].split() == ["6", "1", "0", "0", "0.5000", "0.0000", "0.0000", "1.0000", "0.0000"]
    assert lines[4].split()[0] == "overall"


# --------------------------------------------------------------------------- comparison


def test_compare_runs_writes_table_and_plot(tmp_path):
    write_eval_outputs(tmp_path / "base", split_metrics(scores(), SPLITS), scores(), SPLITS)
    better = [ItemScore(i, 0.9, [0.9]) for i in "abcd"]
    write_eval_outputs(tmp_path / "opgrpo", split_metrics(better, SPLITS), better, SPLITS)
    out = compare_runs([tmp_path / "base", tmp_path / "opgrpo" / "nli_metrics.json"], tmp_path / "cmp")
    assert set(out["metrics"]) == {"base", "opgrpo"}
    assert out["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(out["csv"].open()))
    assert [(r["run"], r["split"]) for r in rows] == [("base", "5"), ("base", "6"), ("base", "overall"),
                                                      ("opgrpo", "5"), ("opgrpo", "6"), ("opgrpo", "overall")]
    assert float(rows[3]["accuracy"]) == 1.0 and rows[3]["std_ddof0"] == "0.0"
    md = out["markdown"].read_text().splitlines()
    assert md[0] == "| split | base | opgrpo |"
    assert md[2] == "| 5 | 0.333 ± 0.272 (0.360) | 1.000 ± 0.000 (0.900) |"
    labelled = compare_runs([tmp_path / "base", tmp_path / "opgrpo"], tmp_path / "cmp2", labels=["B", "O"])
    assert labelled["csv"].read_text().splitlines()[1].startswith("B,5,3,")
    with pytest.raises(ValueError, match="2 labels for 1 runs"):
        compare_runs([tmp_path / "base"], tmp_path / "cmp3", labels=["a", "b"])
    with pytest.raises(FileNotFoundError, match="nli_metrics.json"):
        compare_runs([tmp_path / "cmp"], tmp_path / "cmp4")
