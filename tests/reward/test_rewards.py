"""The OP reward, rule by rule and bucket edge by bucket edge, with hand-computed expectations."""
import math

import numpy as np
import pytest
from fake_encoder import FakeEncoder, unit

from opgrpo.reward import (
    OPRewardScorer,
    RewardConfig,
    RewardWeights,
    make_reward_functions,
    make_total_reward,
    reward_weights,
    score_completions,
)
from opgrpo.reward.inputs import completion_text, reference_sentences
from opgrpo.reward.rules import (
    coverage_score,
    format_score,
    greedy_match_count,
    uniqueness_rate,
    uniqueness_score,
)

NOMASK = RewardConfig(masking="none")


def refs(n, tag="r"):
    return [f"In the perspective of {tag.upper()}{i}, explanation {tag}{i}." for i in range(n)]


def strict(core_lines, summary="Summary."):
    core = "\n".join(core_lines)
    return f"<core perspectives>\n{core}\n</core perspectives>\n\n<summary>\n{summary}\n</summary>"


# ----------------------------------------------------------------------------- config
def test_paper_preset_values():
    c = RewardConfig.paper()
    assert c.weights.as_list() == [0.3, 0.3, 0.1, 1.0]
    assert (c.tau_cov, c.tau_uniq, c.mode, c.masking, c.clip_min) == (0.7, 0.78, "bucketed", "situation", 0.0)
    assert RewardConfig.continuous().mode == "continuous"
    assert reward_weights(c) == [0.3, 0.3, 0.1, 1.0]
    assert reward_weights(RewardConfig(weights=RewardWeights(coverage=2.0))) == [2.0, 0.3, 0.1, 1.0]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"weights": RewardWeights(coverage=-0.1)}, "weights.coverage"),
        ({"weights": RewardWeights(0, 0, 0, 0)}, "all weights are zero"),
        ({"tau_cov": 1.5}, "tau_cov"),
        ({"tau_uniq": -0.1}, "tau_uniq"),
        ({"mode": "soft"}, "mode"),
        ({"masking": "all"}, "masking"),
        ({"aggregation": "mean"}, "aggregation"),
        ({"coverage_edges": [0.4, 0.2, 0.6, 0.8]}, "coverage_edges"),
        ({"uniqueness_edges": [0.6, 0.8]}, "uniqueness_edges"),
        ({"format_thresholds": [0.3, 0.7]}, "format_thresholds"),
        ({"summary_edges": [0.75, 0.5, 1.25]}, "summary_edges"),
        ({"uniqueness_values": [1.0, 0.5]}, "uniqueness_values"),
        ({"summary_penalties": [0.0]}, "summary_penalties"),
        ({"max_completion_chars": 0}, "max_completion_chars"),
    ],
)
def test_validate_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RewardConfig(**kwargs).validate()


def test_validate_accepts_gdpo_and_presets():
    RewardConfig(aggregation="gdpo").validate()
    RewardConfig.paper().validate()
    RewardConfig.continuous().validate()


# ----------------------------------------------------------------------------- pure rules
@pytest.mark.parametrize(
    "k, n, expected",
    [(0, 5, 0), (1, 10, 1), (1, 5, 2), (3, 10, 2), (2, 5, 3), (5, 10, 3), (3, 5, 4), (7, 10, 4),
     (4, 5, 5), (9, 10, 5), (5, 5, 5)],
)
def test_coverage_buckets_at_edges(k, n, expected):
    assert coverage_score(k / n, RewardConfig()) == expected


@pytest.mark.parametrize(
    "rate, expected", [(1.0, 1.0), (5 / 6, 0.75), (0.8, 0.4), (0.7, 0.4), (0.6, 0.0), (0.5, 0.0), (0.0, 0.0)]
)
def test_uniqueness_buckets_at_edges(rate, expected):
    assert uniqueness_score(rate, RewardConfig()) == expected


def test_continuous_mode():
    c = RewardConfig.continuous()
    assert coverage_score(3 / 7, c) == pytest.approx(15 / 7)
    assert coverage_score(0.0, c) == 0.0
    assert uniqueness_score(0.8, c) == pytest.approx(0.8)


def test_greedy_matching_is_greedy_not_optimal():
    sim = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert greedy_match_count(sim, 0.7) == 1  # takes 0.9 first; the optimal matching would have 2
    assert greedy_match_count(np.array([[0.7, 0.2]]), 0.7) == 1  # >= tau
    assert greedy_match_count(np.array([[0.69999]]), 0.7) == 0
    assert greedy_match_count(np.zeros((0, 3)), 0.7) == 0
    # one-to-one: three candidates all close to the same single reference
    assert greedy_match_count(np.array([[0.9], [0.95], [0.8]]), 0.7) == 1
    assert greedy_match_count(np.array([[0.9, 0.1], [0.8, 0.75]]), 0.7) == 2


def test_uniqueness_rate_compares_with_non_redundant_only():
    # B repeats A; C repeats only B (redundant), so C stays.
    sim = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.8], [0.5, 0.8, 1.0]])
    assert uniqueness_rate(sim, 0.78) == pytest.approx(2 / 3)
    assert uniqueness_rate(sim, 0.8) == pytest.approx(2 / 3)
    assert uniqueness_rate(sim, 0.81) == 1.0
    assert uniqueness_rate(np.ones((1, 1)), 0.78) == 1.0
    assert uniqueness_rate(np.ones((0, 0)), 0.78) == 1.0
    assert uniqueness_rate(np.ones((4, 4)), 0.78) == 0.25


def _bad_lines(k):
    return [f"In the perspective of , nameless {i}" for i in range(k)]  # split point, but no phrase


@pytest.mark.parametrize("good, bad, base", [(7, 3, 2.0), (6, 4, 1.0), (3, 7, 1.0), (2, 8, 0.0), (1, 0, 2.0)])
def test_format_base_at_share_edges(good, bad, base):
    lines = [f"In the perspective of N{i}, x{i}." for i in range(good)] + _bad_lines(bad)
    d = format_score("\n".join(lines), RewardConfig())
    assert d.n_sentences == good + bad and d.phrase_share == pytest.approx(good / (good + bad))
    assert d.base == base and d.summary_penalty == 0.0  # no summary tag: the names are in the whole text
    assert d.score == base


def test_format_no_sentences_and_no_phrase():
    assert format_score("   ", RewardConfig()).score == 0.0
    d = format_score("Just an opinion.", RewardConfig())
    assert (d.base, d.score, d.summary_penalty) == (0.0, 0.0, 0.0)


def test_format_repeat_penalties():
    lines = ["In the perspective of Care, x.", "in the perspective of care, X.", "In the perspective of Care, y.",
             "In the perspective of Trust, z."]
    d = format_score("\n".join(lines), RewardConfig())
    # sentence repeats: {care x: 2} -> 1; name repeats: care x3 -> 2; total 3 repeats -> -1.5
    assert d.n_repeats == 3 and d.base == 2.0 and d.score == pytest.approx(0.5)
    assert format_score("\n".join(lines), RewardConfig(repeat_penalty=1.0)).score == 0.0  # clipped at 0


@pytest.mark.parametrize("k, penalty", [(4, 0.0), (3, 0.0), (2, -0.5), (1, -0.75), (0, -1.0)])
def test_summary_penalty_edges(k, penalty):
    names = ["Alpha", "Bravo", "Charlie", "Delta"]
    lines = [f"In the perspective of {n}, text {i}." for i, n in enumerate(names)]
    summary = "Weighing " + " and ".join(n.upper() for n in names[:k]) + "."
    d = format_score(strict(lines, summary), RewardConfig())
    assert d.summary_penalty == penalty and d.score == pytest.approx(2.0 + penalty)


def test_summary_share_counts_repeated_names():
    lines = ["In the perspective of Alpha, a.", "In the perspective of Alpha, b.", "In the perspective of Bravo, c."]
    d = format_score(strict(lines, "alpha only"), RewardConfig())
    # names [alpha, alpha, bravo]: share 2/3 -> -0.5; one repeated name -> -0.5
    assert d.summary_penalty == -0.5 and d.score == pytest.approx(1.0)


# ----------------------------------------------------------------------------- scorer: coverage
@pytest.mark.parametrize("k, n, bucket", [(0, 5, 0.0), (1, 5, 2.0), (2, 5, 3.0), (3, 5, 4.0), (4, 5, 5.0),
                                          (1, 10, 1.0), (8, 10, 5.0)])
def test_coverage_via_scorer(k, n, bucket):
    r = refs(n)
    lines = r[:k] + ["In the perspective of Other, unrelated."]
    out = score_completions(["s"], [strict(lines)], [r], FakeEncoder(), NOMASK)[0]
    assert out["n_references"] == n and out["n_candidates"] == k + 1 and out["n_matched"] == k
    assert out["coverage_rate"] == pytest.approx(k / n) and out["coverage"] == bucket


def test_coverage_threshold_is_inclusive_and_one_to_one():
    ref = "In the perspective of A, a."
    cand = {"In the perspective of X, x.": unit((0, 0.75), (1, math.sqrt(1 - 0.75**2))),
            "In the perspective of Y, y.": unit((0, 0.74), (2, math.sqrt(1 - 0.74**2)))}
    enc = FakeEncoder({ref: unit((0, 1.0)), **cand})
    text = strict(list(cand))
    for tau, matched in [(0.75, 1), (0.74, 1), (0.76, 0)]:
        out = score_completions(["s"], [text], [[ref]], enc, RewardConfig(masking="none", tau_cov=tau))[0]
        assert out["n_matched"] == matched  # two candidates above 0.74, but only one reference


def test_no_references_or_no_candidates_give_zero_coverage():
    enc = FakeEncoder()
    out = score_completions(["s"], [strict(["In the perspective of A, a."])], [[]], enc, NOMASK)[0]
    assert out["coverage"] == 0.0 and out["no_references"] and out["n_references"] == 0
    out = score_completions(["s"], ["   "], [refs(3)], enc, NOMASK)[0]
    assert out["coverage_rate"] == 0.0 and out["empty"]


# ----------------------------------------------------------------------------- scorer: uniqueness
def test_uniqueness_via_scorer_chain():
    a, b, c = "In the perspective of A, a.", "In the perspective of B, b.", "In the perspective of C, c."
    enc = FakeEncoder({a: unit((0, 1.0)), b: unit((0, 0.8), (1, 0.6)),
                       c: unit((0, 0.5), (1, 2 / 3), (2, math.sqrt(1 - 0.25 - 4 / 9)))})
    out = score_completions(["s"], [strict([a, b, c])], [refs(2)], enc, NOMASK)[0]
    assert out["uniqueness_rate"] == pytest.approx(2 / 3) and out["uniqueness"] == 0.4


@pytest.mark.parametrize("n_unique, n_dup, score", [(5, 0, 1.0), (5, 1, 0.75), (4, 1, 0.4), (3, 2, 0.0)])
def test_uniqueness_buckets_via_scorer(n_unique, n_dup, score):
    lines = [f"In the perspective of N{i}, x." for i in range(n_unique)]
    lines += ["In the perspective of N0, x." for _ in range(n_dup)]  # identical -> cosine 1
    out = score_completions(["s"], [strict(lines)], [refs(1)], FakeEncoder(), NOMASK)[0]
    assert out["uniqueness_rate"] == pytest.approx(n_unique / (n_unique + n_dup)) and out["uniqueness"] == score


def test_single_sentence_and_empty_are_fully_unique_by_spec_but_none_is_zero():
    enc = FakeEncoder()
    one, empty, none = score_completions(["s"] * 3, ["Only one opinion.", "", None], [refs(2)] * 3, enc, NOMASK)
    assert one["uniqueness_rate"] == 1.0 and one["uniqueness"] == 1.0 and one["n_candidates"] == 1
    # SPEC: uniqueness rate 1.0 with 0 sentences; format 0 with no sentences; no tags -> -0.2
    assert empty["uniqueness"] == 1.0 and empty["coverage"] == 0.0 and empty["format"] == 0.0
    assert empty["tag"] == -0.2 and empty["total"] == pytest.approx(0.3 * 1.0 - 0.2)
    assert none["uniqueness"] == 0.0 and none["format"] == 0.0 and none["total"] == 0.0


# ----------------------------------------------------------------------------- tag, total, clip, masking
def test_tag_total_and_clip():
    r = refs(5)
    enc = FakeEncoder()
    full = score_completions(["s"], [strict(r, "R0 R1 R2 R3 R4")], [r], enc, NOMASK)[0]
    assert (full["coverage"], full["uniqueness"], full["format"], full["tag"]) == (5.0, 1.0, 2.0, 0.0)
    assert full["total"] == pytest.approx(0.3 * 5 + 0.3 * 1 + 0.1 * 2)
    untagged = score_completions(["s"], ["\n".join(r)], [r], enc, NOMASK)[0]
    assert untagged["tag"] == -0.2 and untagged["format"] == 2.0
    assert untagged["total"] == pytest.approx(1.5 + 0.3 + 0.2 - 0.2)
    plain = score_completions(["s"], ["I do not know."], [r], enc, NOMASK)[0]
    # coverage 0, uniqueness 1 (one sentence), format 0, tag -0.2: 0.3 - 0.2 = 0.1
    assert plain["total"] == pytest.approx(0.1)
    w = RewardWeights(coverage=0.0, uniqueness=0.0, format=0.0, tag=1.0)
    assert score_completions(["s"], ["x"], [r], enc, RewardConfig(masking="none", weights=w))[0]["total"] == 0.0
    cfg = RewardConfig(masking="none", weights=w, clip_min=-1.0)
    assert score_completions(["s"], ["x"], [r], enc, cfg)[0]["total"] == pytest.approx(-0.2)


def test_continuous_mode_via_scorer():
    r = refs(7)
    out = score_completions(["s"], [strict(r[:3])], [r], FakeEncoder(), RewardConfig(mode="continuous", masking="none"))[0]
    assert out["coverage"] == pytest.approx(15 / 7) and out["uniqueness"] == 1.0


def test_situation_masking_feeds_the_estimator_masked_candidates_and_raw_references():
    ref = "In the perspective of Honesty, lying to a friend breaks trust."
    masked = "In the perspective of Honesty [KW] to a [KW] is wrong"
    enc = FakeEncoder({ref: unit((0, 1.0)), masked: unit((0, 1.0))})
    text = strict(["In the perspective of Honesty, lying to a FRIEND is wrong!"])
    out = score_completions(["Is lying to my friend OK?"], [text], [[ref]], enc)[0]
    assert out["n_matched"] == 1 and out["coverage"] == 5.0
    assert sorted(enc.calls[0]) == sorted([masked, ref])
    # masking="none" sends the sentence as written: no match
    enc2 = FakeEncoder({ref: unit((0, 1.0)), masked: unit((0, 1.0))})
    assert score_completions(["Is lying to my friend OK?"], [text], [[ref]], enc2, NOMASK)[0]["n_matched"] == 0


def test_prompt_masking_uses_the_prompt_text():
    enc = FakeEncoder()
    prompt = [{"role": "system", "content": "Provide analysis"}, {"role": "user", "content": "lying friend"}]
    text = "In the perspective of Honesty, lying to a friend; provide analysis."
    score_completions(["unrelated"], [text], [refs(1)], enc, RewardConfig(masking="prompt"), prompts=[prompt])
    assert "In the perspective of Honesty [KW] to a [KW] [KW] [KW]" in enc.calls[0]


# ----------------------------------------------------------------------------- batching, cache, memo
def test_one_encode_call_per_batch_dedup_and_reference_cache():
    enc = FakeEncoder()
    scorer = OPRewardScorer(enc, NOMASK)
    ra, rb = refs(3, "a"), refs(2, "b")
    same = "In the perspective of X, shared sentence."
    comps = [strict([ra[0], same]), strict([same, "In the perspective of Y, y."]), strict([rb[1], same])] * 2
    out = scorer.score(["A", "A", "B"] * 2, comps, [ra, ra, rb] * 2)
    assert len(enc.calls) == 1
    assert sorted(enc.calls[0]) == sorted(set(ra + rb + [same, "In the perspective of Y, y."]))
    assert [o["n_matched"] for o in out] == [1, 0, 1] * 2
    assert scorer.stats()["ref_cache_misses"] == 2 and scorer.stats().get("ref_cache_hits", 0) == 0
    scorer.score(["A", "B"], [strict(["In the perspective of Z, z."])] * 2, [ra, rb])
    assert enc.calls[1] == ["In the perspective of Z, z."]  # references come from the cache
    assert scorer.stats()["ref_cache_hits"] == 2 and scorer.stats()["calls"] == 2


def test_reference_cache_is_bounded():
    enc = FakeEncoder()
    scorer = OPRewardScorer(enc, NOMASK, cache_size=1)
    ra, rb = refs(1, "a"), refs(1, "b")
    for r in (ra, rb, ra):
        scorer.score(["s"], ["In the perspective of Z, z."], [r])
    assert scorer.stats()["ref_cache_misses"] == 3 and len(scorer._ref_cache) == 1


def test_batched_equals_one_at_a_time():
    r = refs(4)
    comps = [strict(r[:2]), "\n".join(r), "nothing", strict([r[0], r[0], "In the perspective of Q, q."]), ""]
    batched = score_completions(["s"] * 5, comps, [r] * 5, FakeEncoder(), NOMASK)
    single = [score_completions(["s"], [c], [r], FakeEncoder(), NOMASK)[0] for c in comps]
    assert batched == single


def test_trl_callables_share_one_scoring_pass():
    enc = FakeEncoder()
    r = refs(5)
    funcs = make_reward_functions(enc, NOMASK)
    total = make_total_reward(funcs[0].scorer)
    assert [f.__name__ for f in funcs] == ["coverage", "uniqueness", "format", "tag"]
    assert total.__name__ == "op_total"
    logged = {}
    kwargs = {
        "prompts": [[{"role": "user", "content": "q"}]] * 2,
        "completions": [[{"role": "assistant", "content": strict(r, "R0 R1 R2 R3 R4")}],
                     [{"role": "assistant", "content": "no tags"}]],
        "completion_ids": [[1, 2], [3]],
        "situation": ["s", "s"], "references": [r, r], "trainer_state": None,
        "log_extra": lambda *a: None, "log_metric": lambda k, v: logged.setdefault(k, []).append(v),
    }
    values = [f(**kwargs) for f in funcs] + [total(**kwargs)]
    assert values == [[5.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, -0.2], [pytest.approx(2.0), pytest.approx(0.1)]]
    assert len(enc.calls) == 1 and funcs[0].scorer.stats()["memo_hits"] == 4
    assert logged["op/coverage_rate"] == [0.5] and logged["op/strict_layout"] == [0.5]
    # TRL's weighted sum of the components equals the unclipped total
    w = reward_weights(NOMASK)
    assert sum(wi * v[0] for wi, v in zip(w, values)) == pytest.approx(values[4][0])


def test_memo_does_not_return_stale_results():
    enc = FakeEncoder()
    cov = make_reward_functions(enc, NOMASK)[0]
    r = refs(5)
    assert cov(prompts=["p"], completions=[strict(r)], situation=["s"], references=[r]) == [5.0]
    assert cov(prompts=["p"], completions=[strict(r[:1])], situation=["s"], references=[r]) == [2.0]


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_are_scored_counted_and_logged(caplog):
    enc = FakeEncoder()
    scorer = OPRewardScorer(enc, RewardConfig(masking="none", max_completion_chars=50))
    r = refs(2)
    comps = [None, 123, "", "ok\x00 text\ud800", "In the perspective of A, " + "a" * 100, b"\xff\xfebytes"]
    with caplog.at_level("WARNING", logger="opgrpo.reward.scorer"):
        out = scorer.score(None, comps, [r, r, r, r, r, None])
    assert [o["empty"] for o in out] == [True, True, True, False, False, False]
    assert all(o["coverage"] == o["uniqueness"] == o["format"] == 0.0 for o in out[:2])  # None, 123
    assert out[2]["uniqueness"] == 1.0 and out[2]["coverage"] == out[2]["format"] == 0.0  # "" by the rules
    assert out[3]["invalid_text"] and out[4]["truncated"] and out[5]["no_references"]
    assert out[5]["invalid_text"] and out[5]["n_candidates"] == 1  # non-UTF-8 bytes decoded with replacement
    s = scorer.stats()
    assert s["bad/empty"] == 3 and s["bad/not_text"] == 1 and s["bad/too_long"] == 1
    assert s["bad/invalid_text"] == 2 and s["bad/no_references"] == 1
    assert "batch item 4" in caplog.text and "truncated to 50" in caplog.text
    assert all("\ud800" not in x and "\x00" not in x for call in enc.calls for x in call)


def test_reference_forms_and_missing_phrase_count():
    assert reference_sentences("In the perspective of A, a.\nIn the perspective of B, b.") == (
        ["In the perspective of A, a.", "In the perspective of B, b."], 0, 0)
    assert reference_sentences([{"name": "Care", "text": "c"}, "plain line", 5]) == (
        ["In the perspective of Care, c", "plain line"], 1, 1)  # 5: neither text nor {name, text}
    scorer = OPRewardScorer(FakeEncoder(), NOMASK)
    scorer.score(["s"], ["x"], [["plain line", "In the perspective of A, a"]])
    assert scorer.stats()["bad/reference_without_phrase"] == 1


def test_completion_text_forms():
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
            {"role": "assistant", "content": [{"type": "text", "text": "a2"}]}]
    assert completion_text(conv) == "a2"
    assert completion_text({"content": "x"}) == "x"
    assert completion_text([]) is None and completion_text(None) is None and completion_text(3.5) is None


def test_column_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="references"):
        score_completions(["s", "s"], ["a", "b"], [refs(1)], FakeEncoder())


def test_unnormalised_encoder_output_is_normalised():
    ref = "In the perspective of A, a."
    cand = "In the perspective of B, b."
    enc = FakeEncoder({ref: unit((0, 3.0)), cand: unit((0, 2.0), (1, 2.0))})  # cosine 0.707
    scorer = OPRewardScorer(enc, NOMASK)
    assert scorer.score(["s"], [cand], [[ref]])[0]["n_matched"] == 1
    assert scorer.stats()["renormalised"] == 1


# ----------------------------------------------------------------------------- real estimator
def test_real_minilm_end_to_end(minilm):
    r = ["In the perspective of Honesty, telling the truth keeps trust between people.",
         "In the perspective of Kindness, sparing someone's feelings can be caring.",
         "In the perspective of Autonomy, people deserve accurate information to decide for themselves."]
    situation = "Should I return the wallet I found?"
    copy = strict(r, "Honesty, kindness and autonomy all matter.")
    repeat = strict([r[0]] * 4, "Honesty.")
    off = strict(["In the perspective of Astronomy, the moon orbits the earth every month."], "Astronomy.")
    out = score_completions([situation] * 3, [copy, repeat, off], [r] * 3, minilm)
    assert out[0]["coverage"] == 5.0 and out[0]["uniqueness"] == 1.0 and out[0]["format"] == 2.0
    assert out[0]["total"] == pytest.approx(2.0, abs=1e-6)
    assert out[1]["n_matched"] == 1 and out[1]["coverage"] == 2.0  # one-to-one: 4 copies match 1 reference
    assert out[1]["uniqueness_rate"] == 0.25 and out[1]["format"] == 0.0  # 3 repeats of sentence and name
    assert out[2]["coverage"] == 0.0
    single = [score_completions([situation], [c], [r], minilm)[0] for c in (copy, repeat, off)]
    for a, b in zip(out, single):
        assert {k: a[k] for k in ("coverage", "uniqueness", "format", "tag")} == {
            k: b[k] for k in ("coverage", "uniqueness", "format", "tag")}


# ----------------------------------------------------------------------------- real TRL
@pytest.mark.slow
def test_one_grpo_step_with_our_callables(tmp_path, minilm):
    """trl.GRPOTrainer accepts the component callables and weights, and logs rewards/<name>/mean."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from opgrpo.app.resources import smollm_path

    tok = AutoTokenizer.from_pretrained(smollm_path())
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         pad_token_id=tok.pad_token_id or tok.eos_token_id))
    r = refs(3)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Is lying OK, case {i}?"}],
                               "situation": f"Is lying OK, case {i}?", "references": r} for i in range(2)])
    funcs = make_reward_functions(minilm, RewardConfig())
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=1, logging_steps=1, report_to=[], use_cpu=True,
                      reward_weights=reward_weights(RewardConfig()), save_strategy="no")
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=data, processing_class=tok)
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    for name in ("coverage", "uniqueness", "format", "tag"):
        assert f"rewards/{name}/mean" in logged
    assert "op/coverage_rate" in logged
    assert funcs[0].scorer.stats()["calls"] == 1 and funcs[0].scorer.stats()["memo_hits"] == 3


def test_torch_path_used_for_cuda_encoders_matches_numpy_path():
    """An encoder on CUDA is asked for tensors and similarities run in torch (exercised here on CPU)."""
    import types

    import torch

    class TorchFake(FakeEncoder):
        device = types.SimpleNamespace(type="cuda")

        def encode(self, sentences, normalize_embeddings=True, convert_to_numpy=True, convert_to_tensor=False, **kw):
            assert convert_to_tensor
            return torch.from_numpy(super().encode(sentences))

    r = refs(4)
    comps = [strict(r[:2]), "\n".join(r + r[:1]), "nothing", ""]
    torch_out = score_completions(["s"] * 4, comps, [r] * 4, TorchFake(), NOMASK)
    assert torch_out == score_completions(["s"] * 4, comps, [r] * 4, FakeEncoder(), NOMASK)
    assert [o["n_matched"] for o in torch_out] == [2, 4, 0, 0]
