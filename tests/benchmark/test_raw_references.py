"""Issue 17.7: a reference line is kept exactly as written, a name may hold "." or "(e.g., ...)", and the SFT target
holds the raw lines (regression: the name used to be cut at the first "." and the line rebuilt from the cut name)."""
from __future__ import annotations

import json

from opgrpo.benchmark import Perspective, load_items
from opgrpo.text.perspectives import parse_reference

GOOD_EVIL = "In the perspective of Good vs. Evil, lying to the robber protects the innocent family."
CHILD = "In the perspective of Duty to protect the vulnerable (e.g., the child), the parent must step in."


def test_parse_reference_keeps_dots_and_parenthesised_commas_in_the_name():
    assert parse_reference(GOOD_EVIL) == ("Good vs. Evil", "lying to the robber protects the innocent family.")
    assert parse_reference(CHILD) == ("Duty to protect the vulnerable (e.g., the child)", "the parent must step in.")
    # a name without any comma still ends at the first "." (the reward's phrase rule); an empty name is reported
    assert parse_reference("In the perspective of Care. It matters") == ("Care", "It matters")
    assert parse_reference("In the perspective of , x") == ("", "x")


def test_csv_references_and_sft_target_hold_the_raw_lines(tmp_path):
    from opgrpo.training.sft import build_sft_dataset, sft_target

    path = tmp_path / "bench.csv"
    path.write_text('prompt,answer\n"A robber asks where the family hides","' + GOOD_EVIL + "\n" + CHILD + '"\n',
                    encoding="utf-8")
    (item,), errors = load_items(path)
    assert errors == []
    assert item.references == [GOOD_EVIL, CHILD]
    assert [(p.name, p.text) for p in item.perspectives] == [
        ("Good vs. Evil", "lying to the robber protects the innocent family."),
        ("Duty to protect the vulnerable (e.g., the child)", "the parent must step in."),
    ]
    expected = (
        "<core perspectives>\n"
        "In the perspective of Good vs. Evil, lying to the robber protects the innocent family.\n"
        "In the perspective of Duty to protect the vulnerable (e.g., the child), the parent must step in.\n"
        "</core perspectives>\n\n<summary>\n"
        "This situation has to be weighed from several perspectives: Good vs. Evil and Duty to protect the "
        "vulnerable (e.g., the child). Each of them captures something that matters here, and a balanced judgement "
        "takes all of them into account.\n</summary>"
    )
    assert sft_target(item) == expected
    assert build_sft_dataset([item])[0]["completion"] == [{"role": "assistant", "content": expected}]


def test_raw_line_is_kept_as_written_including_odd_spacing(tmp_path):
    odd = "In the perspective of Good vs. Evil,lying  protects   the innocent."
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"prompt": "S", "answer": odd}) + "\n", encoding="utf-8")
    (item,), errors = load_items(path)
    assert errors == [] and item.references == [odd]
    assert item.perspectives == [Perspective("Good vs. Evil", "lying  protects   the innocent.")]


def test_name_record_may_hold_dots_and_parenthesised_commas_but_not_a_bare_comma(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"situation": "S1", "perspectives": [{"name": "Good vs. Evil", "text": "x."},
                                                  {"name": "Care (e.g., for kin)", "text": "y."}]},
            {"situation": "S2", "perspectives": [{"name": "Care, kin", "text": "z."}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    items, errors = load_items(path)
    assert items[0].references == ["In the perspective of Good vs. Evil, x.",
                                   "In the perspective of Care (e.g., for kin), y."]
    assert [(e.row, e.field) for e in errors] == [(2, "perspectives[1].name")]


# --------------------------------------------------------------------------- the raw line at evaluation time

EVAL_SITUATION = "Lying to a friend"
RAW_LINE = "In the perspective of Good vs. Evil, lying to a friend erodes trust."
EVAL_SENTENCE = "In the perspective of Good vs. Evil, an honest analysis of lying to a friend shows trust erodes."
EVAL_RESPONSE = f"<core perspectives>\n{EVAL_SENTENCE}\n</core perspectives>\n\n<summary>\nGood vs. Evil.\n</summary>"
# keywords of the implicit prompt "Provide a structured comprehensive analysis and your opinions on this topic: Lying
# to a friend": provide, structured, comprehensive, analysis, opinions, topic, lying, friend ("analysis" is masked;
# the situation alone would leave it: "... an honest analysis of [KW] to a [KW] ...", a sentence of its own here)
EVAL_MASKED = "In the perspective of Good vs Evil an honest [KW] of [KW] to a [KW] shows trust erodes"


def test_eval_reward_with_authors_masking_covers_a_raw_reference_line(compose, tmp_path):
    """Issue 17.7 end to end: an item loaded from a CSV whose name holds a "." reaches the eval-time reward as its raw
    line, and ``reward=authors_masking`` masks the response with the keywords of the item's implicit prompt (the
    prompts reach the eval reward). The encoder puts exactly the raw line and the prompt-masked sentence on one
    axis, so coverage is 5 (1 of 1 reference matched) only if both hold; a rebuilt line, a missing prompt or
    situation masking each give 0."""
    from fake_encoder import FakeEncoder, unit

    from opgrpo.app.runconfig import to_config
    from opgrpo.evaluation.run import evaluate, reward_means

    path = tmp_path / "test.csv"
    path.write_text(f'prompt,answer\n"{EVAL_SITUATION}","{RAW_LINE}"\n', encoding="utf-8")
    (item,), errors = load_items(path)
    assert errors == [] and item.references == [RAW_LINE]
    cfg = compose(["reward=authors_masking", "eval.nli.backend=none"])
    reward, nli = to_config(cfg).reward, to_config(cfg).eval.nli
    assert reward.masking == "prompt" and reward.tau_cov == 0.7

    def encoder():
        return FakeEncoder({RAW_LINE: unit((0, 1.0)), EVAL_MASKED: unit((0, 1.0))})

    assert reward_means([item], [EVAL_RESPONSE], encoder(), reward)["coverage"] == 5.0
    enc = encoder()
    metrics = evaluate({"5": [item]}, tmp_path / "eval", responses=lambda items: [EVAL_RESPONSE], source="file",
                       nli=nli, nli_scorer=lambda: None, encoder=lambda: enc, reward=reward, threshold=0.33,
                       prompt="implicit")
    assert metrics["reward"]["coverage"] == 5.0 and metrics["reward"]["coverage_rate"] == 1.0
    encoded = [s for call in enc.calls for s in call]
    assert RAW_LINE in encoded and EVAL_MASKED in encoded
    (row,) = [json.loads(line) for line in (tmp_path / "eval" / "reward_items.jsonl").read_text().splitlines()]
    assert row["coverage"] == 5.0
    # the same response under situation masking: "analysis" stays, the sentence is not the reference's twin
    situation = to_config(compose(["reward=paper"])).reward
    assert reward_means([item], [EVAL_RESPONSE], encoder(), situation)["coverage"] == 0.0
