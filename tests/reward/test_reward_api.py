"""The reward API's promise on bad input (issue 16): whole-argument mistakes raise one clear error naming the
argument; per-item bad values are scored 0 and counted; a missing situation is a counted bad input."""
import logging

import pytest
from fake_encoder import FakeEncoder

from opgrpo.reward import (
    OPRewardScorer,
    RewardConfig,
    make_reward_functions,
    score_completions,
)
from opgrpo.reward.inputs import reference_sentences

NOMASK = RewardConfig(masking="none")
REF = "In the perspective of Honesty, lying to a friend damages trust."
GOOD = f"<core perspectives>\n{REF}\n</core perspectives>\n\n<summary>\nHonesty.\n</summary>"
SITUATION = "Is lying to a friend OK?"


def _gen():
    yield GOOD


@pytest.mark.parametrize("kwargs, error, words", [
    ({"completions": None}, TypeError, "completions must be a list"),
    ({"completions": 5}, TypeError, "completions must be a list"),
    ({"completions": _gen()}, TypeError, "completions must be a list.*generator"),
    ({"completions": GOOD}, TypeError, "completions must be a list.*not one str"),
    ({"completions": {"a": GOOD}}, TypeError, "completions must be a list.*dict"),
    ({"situations": SITUATION}, TypeError, "situations must be a list.*not one str"),
    ({"situations": 7}, TypeError, "situations must be a list"),
    ({"references": [REF]}, ValueError, "references must have one entry per completion \\(2\\), got 1"),
    ({"prompts": ["p"] * 3}, ValueError, "prompts must have one entry per completion \\(2\\), got 3"),
    ({"encoder": None}, TypeError, "encoder must have an encode"),
    ({"encoder": "all-MiniLM-L6-v2"}, TypeError, "encoder must have an encode.*str"),
    ({"config": {"masking": "none"}}, TypeError, "config must be a RewardConfig.*dict"),
])
def test_whole_argument_mistakes_raise_one_clear_error(kwargs, error, words):
    args = {"situations": [SITUATION] * 2, "completions": [GOOD, GOOD], "references": [[REF]] * 2,
            "encoder": FakeEncoder(), "config": None, "prompts": None}
    args.update(kwargs)
    with pytest.raises(error, match=words):
        score_completions(**args)


def test_sized_non_list_columns_are_accepted():
    import numpy as np

    out = score_completions(np.array([SITUATION]), (GOOD,), [[REF]], FakeEncoder(), NOMASK)
    assert out[0]["coverage"] == 5.0


def test_bad_reference_values_are_scored_zero_and_counted(caplog):
    scorer = OPRewardScorer(FakeEncoder(), NOMASK)
    refs = [[REF], 123, [REF, 123, None, float("nan"), {"name": "Care"}], [REF]]
    with caplog.at_level(logging.WARNING, logger="opgrpo.reward.scorer"):
        out = scorer.score(None, [GOOD] * 4, refs)
    assert [o["coverage"] for o in out] == [5.0, 0.0, 5.0, 5.0]  # valid items and valid entries still count
    assert out[1]["no_references"] and out[1]["n_references"] == 0
    assert out[2]["n_references"] == 1 and not out[2]["no_references"]
    s = scorer.stats()
    assert s["bad/invalid_reference"] == 5 and s["bad/no_references"] == 1
    assert "invalid reference at batch item 1 (int)" in caplog.text


def test_reference_dict_is_one_perspective_not_its_keys():
    one = {"name": "Honesty", "text": "lying to a friend damages trust."}
    assert reference_sentences(one) == ([REF], 0, 0)
    assert reference_sentences([one, {"name": "Care", "text": "be kind."}]) == (
        [REF, "In the perspective of Care, be kind."], 0, 0)
    for form in (one, [one], [REF]):
        out = score_completions([SITUATION], [GOOD], [form], FakeEncoder(), NOMASK)[0]
        assert (out["n_references"], out["n_matched"], out["coverage"]) == (1, 1, 5.0)


def test_missing_situation_is_counted_and_scores_zero_coverage_and_uniqueness(caplog):
    scorer = OPRewardScorer(FakeEncoder(), RewardConfig())  # paper preset: masking="situation"
    with caplog.at_level(logging.WARNING, logger="opgrpo.reward.scorer"):
        out = scorer.score([SITUATION, None, "   "], [GOOD] * 3, [[REF]] * 3)
    # with the situation: the masked candidate ("... Honesty [KW] to a [KW] damages trust") is not the raw
    # reference (FakeEncoder: cosine 0), so coverage 0; one sentence: uniqueness 1.0; format 2; tag 0
    assert out[0]["total"] == pytest.approx(0.3 * 1.0 + 0.1 * 2.0) and not out[0]["no_situation"]
    for o in out[1:]:  # no situation: unmasked scoring would give coverage 5 (total 2.0); the rule gives 0
        assert o["no_situation"] and o["coverage"] == o["uniqueness"] == 0.0
        assert o["coverage_rate"] == o["uniqueness_rate"] == 0.0
        assert o["format"] == 2.0 and o["tag"] == 0.0 and o["total"] == pytest.approx(0.1 * 2.0)
    assert scorer.stats()["bad/no_situation"] == 2
    assert "no situation at batch item 1" in caplog.text


def test_missing_prompt_under_prompt_masking_follows_the_same_rule():
    scorer = OPRewardScorer(FakeEncoder(), RewardConfig(masking="prompt"))
    out = scorer.score(None, [GOOD, GOOD], [[REF]] * 2, prompts=["Lying to a friend, OK?", None])
    assert not out[0]["no_prompt"] and out[0]["uniqueness"] == 1.0
    assert out[1]["no_prompt"] and out[1]["coverage"] == out[1]["uniqueness"] == 0.0 and out[1]["format"] == 2.0
    assert scorer.stats()["bad/no_prompt"] == 1


def test_trl_callables_log_missing_situations():
    logged = {}
    funcs = make_reward_functions(FakeEncoder())
    values = funcs[0](prompts=["p", "p"], completions=[GOOD, GOOD], situation=[SITUATION, None],
                      references=[[REF]] * 2, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert values == [0.0, 0.0] and logged["op/bad_no_situation"] == 1.0
