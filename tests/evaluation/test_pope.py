"""POPE off-policy evaluation: hand-computed importance weights, a synthetic bandit with a known value (estimate
inside its bootstrap interval, error shrinking with n), scoring under a causal LM, and stage=pope end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from opgrpo.app.runconfig import to_config
from opgrpo.evaluation.pope import importance_weights, pope_estimate
from opgrpo.models.logprobs import sequence_logprobs

LOG = math.log


def test_hand_computed_weights_and_estimates():
    t, b, u = [LOG(0.5), LOG(0.25)], [LOG(0.25), LOG(0.5)], [1.0, 0.0]
    assert importance_weights(t, b, weighting="ips") == pytest.approx([2.0, 0.5])
    assert importance_weights(t, b, weighting="snips") == pytest.approx([1.0, 0.25])  # scaled by the max
    assert importance_weights(t, b, weighting="ips", clip=1.5) == pytest.approx([1.5, 0.5])
    ips = pope_estimate(u, t, b, weighting="ips", coverage_coef=0.0, n_bootstrap=0)
    assert ips["utility"] == pytest.approx((2 * 1 + 0.5 * 0) / 2)
    snips = pope_estimate(u, t, b, weighting="snips", coverage_coef=0.5, n_bootstrap=0)
    assert snips["utility"] == pytest.approx(2 / 2.5)
    cov = (2 * LOG(2) + 0.5 * LOG(4)) / 2.5  # weighted mean of -log pi(y)
    assert snips["coverage"] == pytest.approx(cov)
    assert snips["value"] == pytest.approx(0.8 + 0.5 * cov)
    assert snips["ess"] == pytest.approx(2.5**2 / (4 + 0.25))
    with pytest.raises(ValueError, match="same non-zero length"):
        pope_estimate([1.0], [0.0, 0.0], [0.0])


def _bandit(seed: int = 0, k: int = 10):
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.normal(size=k)); mu /= mu.sum()  # noqa: E702
    pi = np.exp(1.5 * rng.normal(size=k)); pi /= pi.sum()  # noqa: E702
    p = rng.uniform(size=k)  # Bernoulli utility of each arm
    return mu, pi, p


def _log(mu, pi, p, n, rng):
    arms = rng.choice(len(mu), size=n, p=mu)
    return rng.binomial(1, p[arms]).astype(float), np.log(pi[arms]), np.log(mu[arms])


COEF = 0.2


def test_synthetic_bandit_estimate_is_in_its_interval_and_error_shrinks():
    mu, pi, p = _bandit()
    truth = float(pi @ p + COEF * -(pi * np.log(pi)).sum())
    est = pope_estimate(*_log(mu, pi, p, 2000, np.random.default_rng(1)), coverage_coef=COEF, n_bootstrap=500)
    lo, hi = est["value_ci"]
    assert lo <= truth <= hi and lo < est["value"] < hi
    assert est["utility_ci"][0] <= pi @ p <= est["utility_ci"][1]

    errors, coverage = {}, {}
    for n in (100, 1000, 10000):
        errs, hits = [], []
        for seed in range(20):
            e = pope_estimate(*_log(mu, pi, p, n, np.random.default_rng(100 + seed)), coverage_coef=COEF,
                              n_bootstrap=200, seed=seed)
            errs.append(abs(e["value"] - truth))
            hits.append(e["value_ci"][0] <= truth <= e["value_ci"][1])
        errors[n], coverage[n] = float(np.mean(errs)), float(np.mean(hits))
    print(f"truth {truth:.4f}; mean |error| {errors}; 95% CI coverage {coverage}")
    assert errors[10000] < errors[1000] < errors[100]
    assert errors[10000] < 0.5 * errors[100]
    assert coverage[1000] >= 0.85 and coverage[10000] >= 0.85  # at n=100 heavy weights undercover (0.7 here)


def test_clipping_trades_bias_for_variance_and_ips_is_unbiased():
    mu, pi, p = _bandit(3)
    truth_u = float(pi @ p)
    runs = [_log(mu, pi, p, 500, np.random.default_rng(s)) for s in range(40)]
    ips = [pope_estimate(*r, weighting="ips", coverage_coef=0.0, n_bootstrap=0)["utility"] for r in runs]
    clipped = [pope_estimate(*r, weighting="ips", clip=2.0, coverage_coef=0.0, n_bootstrap=0)["utility"] for r in runs]
    assert abs(np.mean(ips) - truth_u) < 3 * np.std(ips) / math.sqrt(len(ips))  # unbiased within 3 standard errors
    assert np.std(clipped) < np.std(ips)


def test_sequence_logprobs_match_a_single_forward(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    prompts = [[{"role": "user", "content": "Is it fine to lie?"}], "plain text prompt"]
    responses = ["In the perspective of Honesty, no.", "Yes"]
    got = sequence_logprobs(model, tok, prompts, responses, batch_size=2)
    assert got == pytest.approx(sequence_logprobs(model, tok, prompts, responses, batch_size=1), abs=1e-4)
    for prompt, response, value in zip(prompts, responses, got):
        p_ids = (tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
                 if not isinstance(prompt, str) else tok(prompt, add_special_tokens=False)["input_ids"])
        c_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([list(p_ids) + c_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        manual = sum(float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(c_ids))
        assert value == pytest.approx(manual, abs=1e-3)
        assert value < 0


def test_stage_pope_writes_pope_json(tiny_model, tmp_path, compose):
    """Behaviour = target: every weight is 1, so the estimate is the mean utility + coef x mean surprisal."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.stages import stage_pope
    from opgrpo.app.validate import check

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    rows = [{"situation": f"Situation {i}", "response": f"In the perspective of X{i}, it is fine.",
             "utility": float(i % 3)} for i in range(6)]
    # behaviour log-probs taken with the same model and prompt rendering the stage uses
    logp = sequence_logprobs(model, tok, [_prompt(r) for r in rows], [r["response"] for r in rows])
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({**r, "behaviour_logprob": float(v)}) + "\n" for r, v in zip(rows, logp)))

    cfg = compose(["stage=pope", f"model.name_or_path={tiny_model}", f"pope.responses_file={path}",
                    "pope.coverage_coef=0.5", "pope.n_bootstrap=100", "device=cpu"])
    check(cfg)
    run = RunDir(tmp_path / "run")
    stage_pope(RunContext(to_config(cfg), run))
    out = json.loads((tmp_path / "run" / "pope" / "pope.json").read_text())
    assert out["n"] == 6 and out["ess"] == pytest.approx(6.0)
    assert out["utility"] == pytest.approx(1.0)
    assert out["coverage"] == pytest.approx(-float(np.mean(logp)), rel=1e-4)
    assert out["value"] == pytest.approx(1.0 + 0.5 * out["coverage"], rel=1e-6)
    assert out["value_ci"][0] <= out["value"] <= out["value_ci"][1]

    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=r"pope\.weighting"):  # an enum: refused while composing
        compose(["stage=pope", f"model.name_or_path={tiny_model}", "pope.weighting=dr"])
    with pytest.raises(ValueError, match="pope.responses_file"):
        check(compose(["stage=pope", f"model.name_or_path={tiny_model}"]))


def _prompt(row):
    from opgrpo.text.prompts import chat_prompt

    return chat_prompt(row["situation"], "implicit")
