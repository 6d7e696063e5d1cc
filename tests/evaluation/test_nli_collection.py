"""NLI benchmark response collection as the authors ran it (issue 17.1): resampling until the core and summary
parse, core and summary kept apart, NLI on the core block, unparsed items scored 0 and counted, std with ddof 0,
items without references scored 0. Fake generators and a table NLI scorer, so every number is hand-computed."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from opgrpo.benchmark import Item, Perspective
from opgrpo.evaluation.metrics import split_metrics
from opgrpo.evaluation.nli import (
    EntailmentScorer,
    ItemScore,
    NLIConfig,
    score_items,
    scored_text,
)
from opgrpo.evaluation.responses import collect_responses, extract_blocks

VALID = "<core perspectives>\nCore sentence.\n</core perspectives>\n\n<summary>\nSummary sentence.\n</summary>"
BROKEN = "<core perspectives>\nCore sentence.\n</core perspectives>\nSummary sentence."  # no summary block


class TableScorer(EntailmentScorer):
    """P(entailment) from a table; pairs not in it score 0."""

    def __init__(self, table):
        super().__init__(batch_size=4, progress=False)
        self.table = table

    def _score_unique(self, pairs):
        return np.array([self.table.get(p, 0.0) for p in pairs])


class ScriptedGenerator:
    """generate(prompts, seed): the next scripted response of each prompt; records every call."""

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = []

    def __call__(self, prompts, seed):
        self.calls.append((list(prompts), seed))
        return [self.script[p].pop(0) for p in prompts]


# --------------------------------------------------------------------------- the authors' regex


@pytest.mark.parametrize("text,blocks", [
    (VALID, ("Core sentence.", "Summary sentence.")),
    ("Intro.\n<Core  Perspectives> a\n b </core perspectives>\n<SUMMARY> s </summary> trailing", ("a\n b", "s")),
    (BROKEN, None),
    ("<core perspectives> \n </core perspectives><summary>s</summary>", None),  # empty core
    ("<core perspectives>c</core perspectives><summary>\n</summary>", None),  # empty summary
    ("<core perspectives>c</core perspectives> and then <summary>s</summary>", None),  # text between the blocks
    ("<summary>s</summary><core perspectives>c</core perspectives>", None),  # wrong order
    ("", None),
    (None, None),
])
def test_extract_blocks_is_the_authors_strict_regex(text, blocks):
    assert extract_blocks(text) == blocks


def test_scored_text_per_mode():
    assert scored_text(VALID, "core") == ("Core sentence.", True, "core")
    assert scored_text(VALID, "auto") == ("Core sentence.", True, "core")
    assert scored_text(VALID, "full") == (VALID, True, "full")
    assert scored_text(BROKEN, "core") == ("", False, "none")  # an empty answer, as the authors' answer_p
    assert scored_text(BROKEN, "auto") == (BROKEN, False, "full")
    assert scored_text(None, "auto") == ("", False, "full")
    with pytest.raises(ValueError, match="unknown NLI text"):
        scored_text(VALID, "summary")


# --------------------------------------------------------------------------- resampling


def test_collect_resamples_only_the_failed_items_batched_with_new_seeds():
    gen = ScriptedGenerator({"p0": [VALID], "p1": [BROKEN, VALID], "p2": ["no tags", "", BROKEN, "still none"],
                             "p3": ["x", BROKEN, VALID, "never drawn"]})
    out = collect_responses(["p0", "p1", "p2", "p3"], gen, max_attempts=3, seed=42)
    assert gen.calls == [(["p0", "p1", "p2", "p3"], 42), (["p1", "p2", "p3"], 43), (["p2", "p3"], 44)]
    assert out == [VALID, VALID, BROKEN, VALID]  # first valid response, else the last one drawn
    assert out.attempts == [1, 2, 3, 3]
    assert out.counts == {"resampled": 3, "never_parsed": 1}


def test_collect_with_one_attempt_samples_once():
    gen = ScriptedGenerator({"p0": [BROKEN], "p1": [VALID]})
    out = collect_responses(["p0", "p1"], gen, max_attempts=1, seed=7)
    assert gen.calls == [(["p0", "p1"], 7)] and out == [BROKEN, VALID] and out.attempts == [1, 1]
    with pytest.raises(ValueError, match="max_attempts"):
        collect_responses(["p0"], gen, max_attempts=0)


def test_generate_for_items_loads_the_policy_once_and_resamples(monkeypatch):
    from opgrpo.evaluation.run import generate_for_items
    from opgrpo.models import generation

    loads, calls = [], []
    answers = {"Situation A": [BROKEN, VALID], "Situation B": [VALID]}

    def fake_load(policy, **kwargs):
        loads.append(policy)
        return object(), object()

    def fake_generate(model, tok, prompts, *, seed, batch_size, **kwargs):
        situations = [p[-1]["content"].split("this topic: ")[1].strip() for p in prompts]
        calls.append((situations, seed, batch_size))
        return [[answers[s].pop(0)] for s in situations]

    monkeypatch.setattr(generation, "vllm_available", lambda: False)
    monkeypatch.setattr(generation, "load_policy", fake_load)
    monkeypatch.setattr(generation, "generate_responses", fake_generate)
    items = [Item("a", "Situation A", [Perspective("A", "a.")], "t"), Item("b", "Situation B", [Perspective("B", "b.")], "t")]
    out = generate_for_items(items, "policy-dir", prompt="implicit", backend="auto", temperature=0.7, top_p=0.9,
                             max_new_tokens=16, num_return_sequences=1, batch_size=2, seed=5, max_attempts=4)
    assert loads == ["policy-dir"]
    assert calls == [(["Situation A", "Situation B"], 5, 2), (["Situation A"], 6, 2)]
    assert out == [VALID, VALID] and out.attempts == [2, 1]


# --------------------------------------------------------------------------- scoring


def _evaluate(tmp_path, script, text, max_attempts=4):
    from fake_encoder import FakeEncoder

    from opgrpo.evaluation.run import evaluate
    from opgrpo.reward import RewardConfig

    splits = {"5": [Item("a", "Situation A", [Perspective("Duty", "Duties bind us.")], "t")],
              "6": [Item("b", "Situation B", [Perspective("Duty", "Duties bind us.")], "t")]}
    gen = ScriptedGenerator(script)
    table = {("Duties bind us.", "Core sentence."): 0.8, ("Duties bind us.", "Summary sentence."): 0.9}
    out = evaluate(splits, tmp_path, responses=lambda items: collect_responses([it.situation for it in items], gen,
                                                                                max_attempts=max_attempts),
                   source="test", nli=NLIConfig(progress=False, text=text), nli_scorer=lambda: TableScorer(table),
                   encoder=FakeEncoder, reward=RewardConfig(), threshold=0.33)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "nli_items.jsonl").read_text().splitlines())}
    responses = {r["id"]: r for r in map(json.loads, (tmp_path / "responses.jsonl").read_text().splitlines())}
    return out, rows, responses


def test_broken_then_valid_response_takes_two_attempts_and_nli_scores_the_core(tmp_path):
    never = "Summary sentence."  # no tags in any of the four samples
    out, rows, responses = _evaluate(tmp_path, {"Situation A": [BROKEN, VALID], "Situation B": [never] * 4}, "core")
    # a: the second sample parses; only its core is scored (0.8), not the summary sentence (0.9)
    assert rows["a"]["attempts"] == 2 and rows["a"]["text"] == "core" and rows["a"]["parsed"] is True
    assert rows["a"]["score"] == pytest.approx(0.8) and rows["a"]["response"] == VALID
    assert responses["a"] == {"id": "a", "split": "5", "situation": "Situation A", "response": VALID,
                              "core": "Core sentence.", "summary": "Summary sentence.", "parsed": True, "attempts": 2}
    # b: never parses in 4 samples: an empty answer, score 0, counted in its split
    assert rows["b"]["attempts"] == 4 and rows["b"]["text"] == "none" and rows["b"]["score"] == 0.0
    assert responses["b"]["core"] == "" and responses["b"]["summary"] == "" and responses["b"]["response"] == never
    assert out["6"]["unparsed"] == 1 and out["5"]["unparsed"] == 0 and out["overall"]["unparsed"] == 1
    assert out["6"]["count"] == 1 and out["6"]["mean"] == 0.0  # scored, not left out
    assert out["overall"]["mean"] == pytest.approx(0.4) and out["overall"]["accuracy"] == 0.5
    assert out["responses"]["resampled"] == 2 and out["responses"]["never_parsed"] == 1


def test_auto_and_full_modes_score_the_whole_response_where_they_should(tmp_path):
    never = "Summary sentence."
    out, rows, _ = _evaluate(tmp_path / "auto", {"Situation A": [BROKEN, VALID], "Situation B": [never] * 4}, "auto")
    assert rows["a"]["score"] == pytest.approx(0.8) and rows["b"]["score"] == pytest.approx(0.9)  # b: whole text
    assert rows["b"]["text"] == "full" and out["6"]["unparsed"] == 1  # still counted as unparsed
    out, rows, _ = _evaluate(tmp_path / "full", {"Situation A": [VALID], "Situation B": [never]}, "full", 1)
    assert rows["a"]["score"] == pytest.approx(0.9) and rows["a"]["text"] == "full"  # max over core and summary


def test_item_without_references_scores_zero_and_is_counted():
    refs = [["In the perspective of Duty, Duties bind us."], ["In the perspective of Nothing,"]]
    out = score_items(refs, ["Core sentence.", "Core sentence."], TableScorer({("Duties bind us.", "Core sentence."): 0.8}),
                      ids=["x", "y"])
    assert out[1].score == 0.0 and out[1].no_references and not out[1].skipped
    m = split_metrics(out, {"x": "5", "y": "5"})
    assert m["5"]["count"] == 2 and m["5"]["no_references"] == 1 and m["5"]["mean"] == pytest.approx(0.4)


def test_std_is_numpy_ddof0():
    m = split_metrics([ItemScore("x", 0.0), ItemScore("y", 1.0)], {"x": "5", "y": "5"})
    assert m["5"]["std_ddof0"] == 0.5  # np.std([0, 1]); ddof 1 would give 0.7071
    assert m["5"]["stderr"] == pytest.approx(0.5 / math.sqrt(2))


def test_nli_text_is_validated():
    assert NLIConfig(text="core").problems() == []
    assert any(p.startswith("text:") for p in NLIConfig(text="summary").problems())


def test_paper_eval_preset_collects_as_the_authors(compose):
    from hydra.errors import ConfigCompositionException

    from opgrpo.app.validate import ConfigError, check

    paper = compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"]).eval
    assert (paper.generation.max_attempts, paper.nli.text, paper.nli.dtype) == (4, "core", "float32")
    explicit = compose(["eval=explicit"]).eval
    assert (explicit.generation.max_attempts, explicit.nli.text) == (1, "full")
    cpu = compose(["experiment=cpu_demo"]).eval
    assert (cpu.generation.max_attempts, cpu.nli.text) == (1, "auto")
    with pytest.raises(ConfigError, match=r"eval\.generation\.max_attempts"):
        check(compose(["experiment=cpu_demo", "eval.generation.max_attempts=0"]))
    with pytest.raises(ConfigCompositionException, match=r"eval\.nli\.text"):  # an enum: refused while composing
        compose(["experiment=cpu_demo", "eval.nli.text=summary"])


def test_every_generation_setting_reaches_generate_for_items():
    """stage_eval passes ``asdict(eval.generation)`` to generate_for_items: max_attempts must be one of its arguments."""
    import inspect
    from dataclasses import asdict

    from opgrpo.evaluation.config import GenerationConfig
    from opgrpo.evaluation.run import generate_for_items

    assert "max_attempts" in asdict(GenerationConfig())
    assert set(asdict(GenerationConfig())) <= set(inspect.signature(generate_for_items).parameters)


def test_a_responses_file_is_scored_again_with_its_attempts(tmp_path):
    """The eval stage's responses.jsonl scored again (eval.responses_file): same scores, attempts kept."""
    from functools import partial

    from fake_encoder import FakeEncoder

    from opgrpo.evaluation.responses import load_responses
    from opgrpo.evaluation.run import evaluate
    from opgrpo.reward import RewardConfig

    first, _, _ = _evaluate(tmp_path / "first", {"Situation A": [BROKEN, VALID], "Situation B": ["x"] * 4}, "core")
    splits = {"5": [Item("a", "Situation A", [Perspective("Duty", "Duties bind us.")], "t")],
              "6": [Item("b", "Situation B", [Perspective("Duty", "Duties bind us.")], "t")]}
    table = {("Duties bind us.", "Core sentence."): 0.8, ("Duties bind us.", "Summary sentence."): 0.9}
    again = evaluate(splits, tmp_path / "again", responses=partial(load_responses, tmp_path / "first" / "responses.jsonl"),
                     source="file", nli=NLIConfig(progress=False, text="core"), nli_scorer=lambda: TableScorer(table),
                     encoder=FakeEncoder, reward=RewardConfig(), threshold=0.33)
    rows2 = {r["id"]: r for r in map(json.loads, (tmp_path / "again" / "nli_items.jsonl").read_text().splitlines())}
    assert {k: (r["score"], r["attempts"]) for k, r in rows2.items()} == {"a": (pytest.approx(0.8), 2), "b": (0.0, 4)}
    assert again["overall"]["mean"] == first["overall"]["mean"] and again["6"]["unparsed"] == 1
