"""GDPO aggregation: hand-computed groups where the plain sum collapses distinct component mixes, TRL parity on a
real GRPO step, and the Hydra wiring (reward.aggregation=gdpo hands TRL the components with their weights)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from gdpo_reference import gdpo_advantages, sum_advantages
from helpers import TINY, make_items

S = 1 / math.sqrt(2)  # z-score of 1 in the pair (1, 0): mean 0.5, Bessel std sqrt(0.5)


def test_sum_collapses_component_mixes_that_gdpo_separates():
    # two groups of two, weights (1, 1): group A differs in component 1 only, group B in both components
    scores = np.array([[1, 0], [0, 0],   # A: sums 1, 0
                       [1, 1], [0, 0]])  # B: sums 2, 0
    plain = sum_advantages(scores, [1, 1], 2)
    # group-normalised sums: (1-0.5)/std(1,0) and (2-1)/std(2,0) are both 1/sqrt(2) -> identical advantages
    assert plain == pytest.approx([S, -S, S, -S], abs=1e-3)
    assert plain[0] == pytest.approx(plain[2], abs=1e-3)

    g = gdpo_advantages(scores, [1, 1], 2, batch_normalize=False)
    # per component z-scores: A (S, 0) and (-S, 0); B (S, S) and (-S, -S) -> sums S, -S, 2S, -2S
    assert g == pytest.approx([S, -S, 2 * S, -2 * S], abs=1e-3)
    full = gdpo_advantages(scores, [1, 1], 2)
    batch_std = math.sqrt((S**2 * 2 + 4 * S**2 * 2) / 3)  # Bessel std of (S, -S, 2S, -2S), mean 0
    assert full == pytest.approx([S / batch_std, -S / batch_std, 2 * S / batch_std, -2 * S / batch_std], abs=1e-3)
    assert full[2] > full[0] + 0.5  # B's better completion now earns more than A's


def test_gdpo_weights_scale_each_components_z_score():
    # group of 3; component 1 (values 0, 1, 2: z = -1, 0, 1), component 2 (values 0, 0, 3: z = -1/sqrt(3) x2, 2/sqrt(3))
    scores = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 3.0]])
    z2 = [-1 / math.sqrt(3), -1 / math.sqrt(3), 2 / math.sqrt(3)]
    expected = [0.3 * z1 + 2.0 * b for z1, b in zip([-1, 0, 1], z2)]
    assert gdpo_advantages(scores, [0.3, 2.0], 3, batch_normalize=False) == pytest.approx(expected, abs=1e-3)
    # scaling a component's raw values (e.g. coverage 0-5 vs format 0-2) does not change its say, only its weight does
    rescaled = scores * np.array([10.0, 0.1])
    assert gdpo_advantages(rescaled, [0.3, 2.0], 3) == pytest.approx(gdpo_advantages(scores, [0.3, 2.0], 3), abs=1e-3)
    assert not np.allclose(sum_advantages(rescaled, [0.3, 2.0], 3), sum_advantages(scores, [0.3, 2.0], 3), atol=1e-2)


def test_constant_component_and_unscorable_rows_give_no_signal():
    scores = np.array([[1.0, 5.0], [0.0, 5.0], [np.nan, np.nan], [1.0, 5.0]])
    a = gdpo_advantages(scores, [1.0, 1.0], 2, batch_normalize=False)
    assert a[:2] == pytest.approx([S, -S], abs=1e-3)  # component 2 is constant: contributes 0
    assert a[2] == 0.0 and a[3] == 0.0  # unscorable row -> 0; its partner is alone in its group -> 0
    with pytest.raises(ValueError, match="group_size"):
        gdpo_advantages(np.zeros((5, 2)), [1, 1], 2)
    with pytest.raises(ValueError, match="len\\(weights\\)"):
        gdpo_advantages(np.zeros((4, 3)), [1, 1], 2)


def test_trl_normalize_then_sum_is_gdpo_on_a_real_step(tiny_model, tmp_path, monkeypatch):
    """One GRPO generation batch on the tiny model: TRL's advantages equal gdpo_advantages of the rewards it saw."""
    from trl import GRPOTrainer

    from opgrpo.training.grpo import GRPOSettings, run_grpo

    seen: dict[str, list] = {"a": [], "b": []}

    def reward_a(prompts, completions, **kw):
        out = [float(len(c[0]["content"]) % 3) for c in completions]
        seen["a"].append(out)
        return out

    def reward_b(prompts, completions, **kw):
        out = [float(sum(map(ord, c[0]["content"])) % 5) for c in completions]
        seen["b"].append(out)
        return out

    advantages = []
    original = GRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        out = original(self, inputs)
        advantages.append(out["advantages"].detach().cpu().numpy())
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", spy)
    settings = GRPOSettings(**{**TINY, "prompts_per_step": 2}, max_steps=2, save_steps=100, completion_samples_every=0)
    run_grpo(tiny_model, make_items(4), [reward_a, reward_b], [0.3, 1.0], settings, tmp_path,
             reward_aggregation="normalize_then_sum")
    assert advantages and len(seen["a"]) == len(advantages)
    assert max(np.abs(a).max() for a in advantages) > 0.5  # not a vacuous all-zero batch
    for k, adv in enumerate(advantages):
        scores = np.stack([seen["a"][k], seen["b"][k]], axis=1)
        assert adv == pytest.approx(gdpo_advantages(scores, [0.3, 1.0], TINY["num_generations"]), abs=1e-4)


# ---------------------------------------------------------------- Hydra wiring


def _context(cfg):
    from fake_encoder import FakeEncoder

    from opgrpo.app.context import RunContext

    ctx = RunContext(cfg, run=None)
    ctx.encoder = lambda: FakeEncoder()
    return ctx


def test_one_aggregation_knob_decides_what_trl_gets(compose):
    from opgrpo.app.stages import grpo_rewards

    cfg = compose(["experiment=cpu_demo", "reward.aggregation=gdpo", "reward.weights.format=0.25"])
    setup = grpo_rewards(_context(cfg))
    assert [f.__name__ for f in setup.funcs] == ["coverage", "uniqueness", "format", "tag"]
    assert setup.weights == [0.3, 0.3, 0.25, 1.0] and setup.trl_aggregation == "normalize_then_sum"

    cfg = compose(["experiment=cpu_demo", "reward.aggregation=components"])
    setup = grpo_rewards(_context(cfg))
    assert [f.__name__ for f in setup.funcs] == ["coverage", "uniqueness", "format", "tag"]
    assert setup.weights == [0.3, 0.3, 0.1, 1.0] and setup.trl_aggregation == "sum_then_normalize"

    cfg = compose(["experiment=cpu_demo"])  # default: the clipped total, components logged at weight 0
    setup = grpo_rewards(_context(cfg))
    assert setup.funcs[0].__name__ == "op_total" and setup.weights == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert setup.trl_aggregation == "sum_then_normalize"


def test_the_old_knobs_are_gone_and_bad_values_name_the_key(compose):
    from hydra.errors import ConfigCompositionException

    from opgrpo.app.validate import ConfigError, validate

    for old in ("reward.trl_weighting=components", "trainer.grpo.multi_objective_aggregation=gdpo"):
        with pytest.raises(ConfigCompositionException):
            compose(["experiment=cpu_demo", old])
    with pytest.raises(ConfigError, match="reward.aggregation"):
        validate(compose(["experiment=cpu_demo", "reward.aggregation=sum"]))
    validate(compose(["experiment=cpu_demo", "reward.aggregation=gdpo"]))
