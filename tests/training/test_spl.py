"""Soft Preference Learning: TRL's GRPO loss on one fixed batch of the tiny model with alpha = beta (plain KL-GRPO)
and alpha > beta (entropy bonus of the right sign and size), the reward-shaping form, and the Hydra wiring."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import completion_length, make_items, tiny_grpo
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from opgrpo.app.runconfig import to_config
from opgrpo.training.grpo import GRPOSettings, build_grpo_dataset, grpo_config
from opgrpo.training.spl import SPLConfig, SPLShapingReward, spl_settings, spl_shaping

P, C = 6, 5  # prompt / completion tokens of the fixed batch


def _trainer(model_path, settings, out):
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    trainer = GRPOTrainer(model=str(model_path), reward_funcs=[completion_length], args=grpo_config(settings, out),
                          train_dataset=build_grpo_dataset(make_items(2)), processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    return trainer


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, C, dtype=torch.long)
    mask[1, -2:] = 0  # second completion is 3 tokens long
    return {
        "prompt_ids": torch.randint(10, 1000, (2, P), generator=g), "prompt_mask": torch.ones(2, P, dtype=torch.long),
        "completion_ids": torch.randint(10, 1000, (2, C), generator=g), "completion_mask": mask,
        "advantages": torch.tensor([0.7, -0.7]),
        "ref_per_token_logps": -torch.rand(2, C, generator=g) * 3 - 8,  # a reference far from the policy: KL > 0
        "num_items_in_batch": mask.sum(),
    }


def _loss(trainer, batch) -> float:
    with torch.no_grad():
        return float(trainer._compute_loss(trainer.model, dict(batch)))


def _mean_entropy(trainer, batch) -> float:
    """Mean next-token entropy over the completion tokens, from the model's logits (computed here, not by TRL)."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    with torch.no_grad():
        logits = trainer.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, P - 1:-1].float()
    logp = torch.log_softmax(logits, -1)
    h = -(logp.exp() * logp).sum(-1)
    m = batch["completion_mask"].float()
    return float((h * m).sum() / m.sum())


def test_spl_settings_map_alpha_beta_to_trl():
    base = GRPOSettings(trl={"beta": 0.001, "entropy_coef": 0.0, "learning_rate": 1e-6})
    assert spl_settings(base, SPLConfig(alpha=0.001, beta=0.001)) == base  # alpha = beta: the paper's GRPO
    s = spl_settings(base, SPLConfig(alpha=0.05, beta=0.01))
    assert (s.trl["beta"], s.trl["entropy_coef"], s.trl["learning_rate"]) == (0.01, pytest.approx(0.04), 1e-6)
    r = spl_settings(base, SPLConfig(alpha=0.05, beta=0.01, mode="reward"))
    assert (r.trl["beta"], r.trl["entropy_coef"]) == (0.0, 0.0)  # both live in the spl_shaping reward
    assert base.trl["beta"] == 0.001  # a copy: the settings passed in are left alone
    with pytest.raises(ValueError, match="spl.mode=reward"):
        spl_settings(base, SPLConfig(alpha=0.0, beta=0.01))
    with pytest.raises(ValueError, match="spl.alpha"):
        SPLConfig(alpha=-1.0).validate()


def test_spl_loss_equals_grpo_when_alpha_equals_beta_and_adds_the_entropy_bonus(tiny_model, tmp_path, batch):
    base = tiny_grpo(beta=0.05)
    plain = _trainer(tiny_model, base, tmp_path / "plain")
    same = _trainer(tiny_model, spl_settings(base, SPLConfig(alpha=0.05, beta=0.05)), tmp_path / "same")
    no_kl = _trainer(tiny_model, replace(base, trl={**base.trl, "beta": 0.0}), tmp_path / "nokl")
    l_plain, l_same, l_nokl = _loss(plain, batch), _loss(same, batch), _loss(no_kl, batch)
    assert l_same == pytest.approx(l_plain, abs=1e-7)
    assert l_plain - l_nokl > 1e-3  # the KL term is really in the loss

    more = _trainer(tiny_model, spl_settings(base, SPLConfig(alpha=0.3, beta=0.05)), tmp_path / "more")
    h = _mean_entropy(more, batch)
    assert h > 1.0  # a random model over a 49k vocabulary: high entropy
    # alpha > beta: loss = plain KL-GRPO loss - (alpha - beta) * mean token entropy (a bonus lowers the loss)
    assert _loss(more, batch) == pytest.approx(l_plain - 0.25 * h, rel=1e-5)
    assert _loss(more, batch) < l_plain


def _manual_logp(model, prompt_ids, completion_ids) -> float:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return float(sum(logp[len(prompt_ids) - 1 + j, t] for j, t in enumerate(completion_ids)))


def test_reward_mode_shaping(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model)
    prompts = [[{"role": "user", "content": "Is a white lie ok?"}], [{"role": "user", "content": "Why?"}]]
    comp_ids = [[100, 200, 300, 400], [500, 600]]
    f = SPLShapingReward(str(tiny_model), alpha=0.1, beta=0.1, tokenizer=tok, policy=policy)
    assert f(prompts, [None, None], completion_ids=comp_ids) == pytest.approx([0.0, 0.0], abs=1e-5)  # pi = pi_ref

    with torch.no_grad():  # move the policy away from the reference
        for prm in policy.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    logged = {}
    f = SPLShapingReward(str(tiny_model), alpha=0.3, beta=0.1, tokenizer=tok, policy=policy, batch_size=2)
    got = f(prompts, [None, None], completion_ids=comp_ids, log_metric=logged.__setitem__)
    p_ids = [f._prompt_ids(p) for p in prompts]
    logp = [_manual_logp(policy, p, c) for p, c in zip(p_ids, comp_ids)]
    ref = [_manual_logp(f.reference, p, c) for p, c in zip(p_ids, comp_ids)]
    assert got == pytest.approx(list(-0.3 * np.array(logp) + 0.1 * np.array(ref)), abs=1e-4)
    assert got == pytest.approx(list(spl_shaping(logp, ref, 0.3, 0.1)), abs=1e-4)
    assert logged["spl/logp"] == pytest.approx(np.mean(logp), abs=1e-4) and "spl/ref_logp" in logged


def test_reward_mode_trains_with_the_shaping_reward(tiny_model, tmp_path):
    from opgrpo.training.grpo import run_grpo
    from opgrpo.utils.jsonio import read_jsonl

    settings = spl_settings(tiny_grpo(max_steps=1, save_steps=100, completion_samples_every=0),
                            SPLConfig(alpha=0.2, beta=0.1, mode="reward"))
    shaping = SPLShapingReward(str(tiny_model), 0.2, 0.1)
    run_grpo(tiny_model, make_items(2), [completion_length, shaping], [1.0, 1.0], settings, tmp_path)
    row = next(r for r in read_jsonl(tmp_path / "metrics.jsonl") if "reward" in r)
    assert row["spl/logp"] < 0 and "rewards/spl_shaping/mean" in row and "entropy" in row
    # pi = pi_ref at the first generation: shaping = -(alpha - beta) log pi > 0
    assert row["rewards/spl_shaping/mean"] == pytest.approx(-0.1 * row["spl/logp"], rel=1e-3)


# ---------------------------------------------------------------- Hydra


def test_algorithm_group_and_sweeps_compose(compose):
    from opgrpo.app.context import RunContext
    from opgrpo.app.stages import grpo_settings
    from opgrpo.app.validate import ConfigError, check

    cfg = compose(["experiment=cpu_demo"])
    assert cfg.spl.enabled is False
    cfg = compose(["experiment=cpu_demo", "algorithm=spl", "spl.alpha=0.1"])
    check(cfg)
    assert (cfg.spl.enabled, cfg.spl.alpha, cfg.spl.beta, cfg.spl.mode) == (True, 0.1, 0.001, "loss")
    s = grpo_settings(RunContext(to_config(cfg), run=None))
    assert (s.trl["beta"], s.trl["entropy_coef"]) == (0.001, pytest.approx(0.099))
    cfg = compose(["experiment=cpu_demo", "algorithm=spl", "spl.alpha=0.0001"])
    with pytest.raises(ConfigError, match="spl.alpha"):
        check(cfg)

    # multirun: spl.alpha and reward.aggregation sweep like the reward weights
    args = ["experiment=cpu_demo", "algorithm=spl", "spl.alpha=0.01,0.1", "reward.aggregation=total,gdpo",
            "reward.weights.coverage=0.1,0.5"]
    jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)[0]
    assert len(jobs) == 8
    seen = set()
    for job in jobs:
        cfg = compose(job)
        check(cfg)
        seen.add((cfg.spl.alpha, cfg.reward.aggregation, cfg.reward.weights.coverage))
    assert seen == {(a, g, c) for a in (0.01, 0.1) for g in ("total", "gdpo") for c in (0.1, 0.5)}
