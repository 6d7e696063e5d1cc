"""Issue 17.8: the command ``stage=generate`` prints for scoring its file. ``eval=paper`` scores the core block only
(``eval.nli.text=core``), so a baseline's untagged responses need ``eval.nli.text=full`` or every one scores 0
(regression: the hint used to be ``stage=eval eval.responses_file=FILE`` alone)."""
from __future__ import annotations

from opgrpo.evaluation.generate import eval_command


def test_explicit_prompt_responses_are_scored_whole_with_the_explicit_prompt():
    assert eval_command("g/responses.jsonl", "explicit") == (
        "stage=eval eval.responses_file=g/responses.jsonl eval.generation.prompt=explicit eval.nli.text=full")


def test_modular_responses_are_scored_whole():
    for prompts in ("modular/feng2024", "modular/authors"):
        assert eval_command("mp.jsonl", prompts) == "stage=eval eval.responses_file=mp.jsonl eval.nli.text=full"


def test_implicit_prompt_keeps_the_runs_eval_settings():
    assert eval_command("r.jsonl", "implicit") == "stage=eval eval.responses_file=r.jsonl"


def test_the_printed_overrides_compose_to_whole_response_scoring_on_the_paper_preset(compose):
    overrides = eval_command("r.jsonl", "explicit").split()
    cfg = compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv", *overrides])
    assert (cfg.stage, cfg.eval.responses_file, cfg.eval.nli.text, cfg.eval.generation.prompt) == (
        "eval", "r.jsonl", "full", "explicit")
    assert compose(["experiment=paper", "benchmark.train_file=x.csv"]).eval.nli.text == "core"  # why it is needed
