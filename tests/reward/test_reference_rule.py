"""Issue 30.1: the reference rule scores a run's responses at the estimator's calibrated thresholds, the reference
weights and the paper's scoring rules, whatever the run's own reward config, from the same sentence embeddings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from fake_encoder import FakeEncoder, unit

from opgrpo.reward import RewardConfig, RewardWeights
from opgrpo.reward.evaluation import (
    EmbeddingMemo,
    reference_config,
    rule_fingerprint,
    rule_of,
    score_with_reference,
)

R1, R2 = "In the perspective of Honesty, truth matters.", "In the perspective of Care, feelings matter."
S1 = "In the perspective of Honesty, lying erodes trust."
S2 = "In the perspective of Care, kindness protects feelings."
S3 = "In the perspective of Loyalty, friends stand together."
RESPONSE = (f"<core perspectives>\n{S1}\n{S2}\n{S3}\n</core perspectives>\n\n<summary>\nHonesty, Care and Loyalty "
            "matter.\n</summary>")
A = 0.8125  # S3 . S1 = 0.8 * A = 0.65


def _encoder() -> FakeEncoder:
    # cos(S1, R1) = 0.6, cos(S2, R2) = 0.5, cos(S3, S1) = 0.65, every other pair 0
    return FakeEncoder({R1: unit((0, 1.0)), R2: unit((1, 1.0)), S1: unit((0, 0.6), (2, 0.8)),
                        S2: unit((1, 0.5), (3, math.sqrt(0.75))), S3: unit((2, A), (4, math.sqrt(1 - A * A)))})


def _score(own: RewardConfig, ref: RewardConfig, enc=None):
    enc = enc or _encoder()
    (o,), (r,) = score_with_reference(["Lying to a friend"], [RESPONSE], [[R1, R2]], enc, own, ref)
    return o, r, enc


def test_reference_numbers_hand_computed():
    # own: loose thresholds, continuous mode; reference: tau 0.55 / 0.7 with the paper's buckets
    own = RewardConfig(tau_cov=0.45, tau_uniq=0.6, mode="continuous", masking="none",
                       weights=RewardWeights(coverage=0.9, uniqueness=0.1, format=0.0, tag=0.0))
    ref = reference_config(own, 0.55, 0.7, {"coverage": 1.0, "uniqueness": 2.0})
    o, r, _ = _score(own, ref)
    # own: both references matched (0.6 and 0.5 >= 0.45); S3 repeats S1 (0.65 >= 0.6) -> 2 of 3 unique
    assert o["coverage_rate"] == 1.0 and o["uniqueness_rate"] == pytest.approx(2 / 3)
    assert o["coverage"] == 5.0  # continuous: 5 * rate
    # reference: only S1-R1 (0.6 >= 0.55) -> 1 of 2; 0.65 < 0.7 -> all 3 unique
    assert r["coverage_rate"] == 0.5 and r["uniqueness_rate"] == 1.0
    assert r["coverage"] == 3.0 and r["uniqueness"] == 1.0  # paper buckets: 1 + edges 0.2, 0.4 reached; rate 1
    assert r["format"] == 2.0 and r["tag"] == 0.0
    assert r["total"] == 1.0 * 3.0 + 2.0 * 1.0  # weighted sum (format, tag weight 0), not clipped


def test_runs_differing_only_in_their_thresholds_get_the_same_reference_numbers():
    ref = reference_config(RewardConfig(masking="none"), 0.55, 0.7)
    loose = _score(RewardConfig(tau_cov=0.45, tau_uniq=0.6, masking="none"), ref)
    strict = _score(RewardConfig(tau_cov=0.65, tau_uniq=0.8, masking="none", mode="continuous"), ref)
    assert loose[0]["coverage_rate"] == 1.0 and strict[0]["coverage_rate"] == 0.0  # own numbers differ
    assert loose[1] == strict[1]  # reference numbers do not


def test_the_second_rule_encodes_no_sentence_again():
    own = RewardConfig(tau_cov=0.45, tau_uniq=0.6, masking="none")
    _, _, enc = _score(own, reference_config(own, 0.55, 0.7))
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == sorted([S1, S2, S3, R1, R2])


def test_memo_returns_the_rows_of_the_first_call_in_the_order_asked():
    enc = _encoder()
    memo = EmbeddingMemo(enc)
    first = memo.encode([S1, S2, S1], normalize_embeddings=True)
    again = memo.encode([S2, S3, S1], normalize_embeddings=True)
    assert enc.calls == [[S1, S2], [S3]] and memo.encoded == 3
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])


def test_rule_names_every_number_changing_knob_and_nothing_else():
    run = RewardConfig(tau_cov=0.5, tau_uniq=0.9, mode="continuous", aggregation="gdpo", clip_min=-1.0,
                       coverage_edges=[0.1, 0.5])
    ref = reference_config(run, 0.55, 0.6, {"coverage": 1, "uniqueness": 1, "format": 0.1, "tag": 1})
    rule = rule_of(ref)
    assert rule["tau_cov"] == 0.55 and rule["tau_uniq"] == 0.6 and rule["mode"] == "bucketed"
    assert rule["coverage_edges"] == [0.2, 0.4, 0.6, 0.8]  # the paper's scoring rules, not the run's
    assert "aggregation" not in rule and "clip_min" not in rule
    # ints and floats, enum members and strings: one rule, one fingerprint
    same = reference_config(RewardConfig(), 0.55, 0.6, {"coverage": 1.0, "uniqueness": 1.0, "format": 0.1, "tag": 1.0})
    assert rule_fingerprint(rule_of(same)) == rule_fingerprint(rule) and len(rule_fingerprint(rule)) == 12
    assert rule_fingerprint(rule_of(reference_config(run, 0.56, 0.6))) != rule_fingerprint(rule)
    masked = reference_config(RewardConfig(masking="prompt"), 0.55, 0.6)
    assert rule_of(masked, "explicit")["prompt"] == "explicit" and "prompt" not in rule
    assert rule_fingerprint(rule_of(masked, "explicit")) != rule_fingerprint(rule_of(masked, "implicit"))


def test_reference_config_rejects_an_unknown_component():
    with pytest.raises(ValueError, match="unknown component.*'style'"):
        reference_config(RewardConfig(), 0.5, 0.5, {"style": 1.0})


def test_memo_keeps_tensor_rows_as_tensors():
    """On a GPU the scorer asks for tensors (convert_to_tensor=True); the memo answers with one stacked tensor."""
    import torch

    class TensorEncoder:
        device = torch.device("cpu")

        def __init__(self):
            self.calls = []

        def encode(self, sentences, convert_to_tensor=True, **kw):
            self.calls.append(list(sentences))
            return torch.stack([torch.full((4,), float(len(s))) for s in sentences])

    enc = TensorEncoder()
    memo = EmbeddingMemo(enc)
    first = memo.encode(["a", "bbb"], convert_to_tensor=True)
    again = memo.encode(["bbb", "a", "cc"], convert_to_tensor=True)
    assert isinstance(again, torch.Tensor) and again.shape == (3, 4) and memo.device == enc.device
    assert torch.equal(again[0], first[1]) and again[2, 0].item() == 2.0 and enc.calls == [["a", "bbb"], ["cc"]]
