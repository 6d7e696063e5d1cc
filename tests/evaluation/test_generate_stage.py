"""stage=generate through the real CLI: a responses file of any policy and prompt kind that stage=eval then scores,
and the baseline presets (baseline=none | modular | modular_paper) as they compose."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "opgrpo"


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_then_eval_scores_the_file(tmp_path, tiny_lm):
    """A tiny random policy answers the explicit prompt for one test item per split; stage=eval reads that file."""
    from opgrpo.benchmark import load_items, sample_data_path, split_by_count

    items, _ = load_items(sample_data_path("test"))
    expected = [v[0] for v in split_by_count(items).values() if v]  # experiment=cpu_demo: max_test_items=1
    res = _run(["experiment=cpu_demo", "stage=generate", f"model.name_or_path={tiny_lm}", "eval.generation.prompt=explicit",
                "eval.generation.backend=transformers", "eval.generation.max_new_tokens=6",
                f"hydra.run.dir={tmp_path / 'gen'}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    path = tmp_path / "gen" / "generate" / "responses.jsonl"
    rows = _rows(path)
    assert [r["id"] for r in rows] == [it.id for it in expected]
    assert {r["prompt"] for r in rows} == {"explicit"} and {r["source"] for r in rows} == {str(tiny_lm)}
    assert all(isinstance(r["response"], str) and r["attempts"] == 1 and r["parsed"] is False for r in rows)
    summary = json.loads((tmp_path / "gen" / "summary.json").read_text())
    assert summary["generate/items"] == len(expected) and summary["generate/file"] == str(path)
    assert f"stage=eval eval.responses_file={path}" in res.stdout

    res = _run(["experiment=cpu_demo", "stage=eval", f"eval.responses_file={path}", "eval.nli.backend=none",
                f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["eval/responses/items"] == len(expected) and summary["eval/nli_backend"] == "none"
    assert 0.0 <= summary["eval/reward/total"]
    scored = _rows(tmp_path / "eval" / "eval" / "responses.jsonl")
    assert [(r["id"], r["response"]) for r in scored] == [(r["id"], r["response"]) for r in rows]


@pytest.mark.slow
def test_modular_baseline_through_the_cli(tmp_path, tiny_lm):
    """baseline=modular with two local community models (the tiny LM under two labels) into generate.out_file."""
    out = tmp_path / "mp" / "responses.jsonl"
    community = f"[{{name_or_path:'{tiny_lm}',label:one}},{{name_or_path:'{tiny_lm}',label:two}}]"
    res = _run(["experiment=cpu_demo", "stage=generate", "baseline=modular", f"baseline.community={community}",
                "baseline.community_max_new_tokens=4", "baseline.max_new_tokens=4",
                f"model.name_or_path={tiny_lm}", "eval.generation.backend=transformers", f"generate.out_file={out}",
                "benchmark.max_test_items=1", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    assert rows and all([d["model"] for d in r["drafts"]] == ["one", "two"] for r in rows)
    assert {r["prompt"] for r in rows} == {"modular/feng2024"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["generate/community_models"] == 2 and summary["generate/items"] == len(rows)


def test_baseline_presets_compose(compose):
    from omegaconf import OmegaConf

    from opgrpo.app.runconfig import to_config

    assert to_config(compose(["experiment=cpu_demo"])).baseline.kind == "none"
    feng = to_config(compose(["experiment=cpu_demo", "baseline=modular"])).baseline
    assert (feng.kind, feng.prompts, feng.temperature, feng.top_p, feng.max_new_tokens) == ("modular", "feng2024", 0.1,
                                                                                            1.0, 200)
    assert [c.label for c in feng.community] == ["news_center", "news_left", "news_right", "reddit_center",
                                                 "reddit_left", "reddit_right"]
    assert feng.problems() == []
    paper = to_config(compose(["experiment=paper", "baseline=modular_paper", "stage=describe"])).baseline
    assert (paper.prompts, paper.top_p, paper.max_new_tokens, len(paper.community)) == ("authors", 0.9, 500, 6)
    cfg = compose(["experiment=cpu_demo", "baseline=modular", "baseline.community=[{base_url: 'http://h:8000/v1'}]",
                   "generate.out_file=x.csv"])
    assert OmegaConf.select(cfg, "baseline.community")[0].model == ""
    assert to_config(cfg).baseline.problems() == ["community[0].model: the endpoint http://h:8000/v1 needs the "
                                                     "served model name"]
    assert to_config(cfg).generate.problems()[0].startswith("out_file: must end in .jsonl or .ndjson")
