"""GDPO aggregation: hand-computed groups where the plain sum collapses distinct component mixes, TRL parity on a
real GRPO step, and the Hydra wiring (reward.aggregation=gdpo hands TRL the components with their weights)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from gdpo_reference import gdpo_advantages, sum_advantages
from helpers import TINY, make_items, tiny_grpo

from opgrpo.app.runconfig import to_config

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

    from opgrpo.training.grpo import run_grpo

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
    settings = tiny_grpo(prompts_per_step=2, max_steps=2, save_steps=100, completion_samples_every=0)
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

    ctx = RunContext(to_config(cfg), run=None)
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

    from opgrpo.app.validate import check

    for old in ("reward.trl_weighting=components", "trainer.grpo.multi_objective_aggregation=gdpo"):
        with pytest.raises(ConfigCompositionException):
            compose(["experiment=cpu_demo", old])
    with pytest.raises(ConfigCompositionException, match=r"reward\.aggregation"):  # an enum: refused while composing
        compose(["experiment=cpu_demo", "reward.aggregation=sum"])
    check(compose(["experiment=cpu_demo", "reward.aggregation=gdpo"]))


# ---------------------------------------------------------------- GDPO weights (issue 17.6)

# A realistic group of 10 (the paper's group size): (coverage, uniqueness, format, tag) per completion.
GROUP = np.array([
    [5, 1.0, 2.0, -0.2],   # A: all five references covered, but a broken tag (e.g. no </summary>)
    [1, 1.0, 2.0, 0.0],    # B: one reference covered, correct tags
    [3, 1.0, 2.0, 0.0],
    [2, 0.75, 2.0, 0.0],
    [4, 1.0, 1.5, 0.0],
    [2, 1.0, 2.0, 0.0],
    [3, 0.75, 2.0, 0.0],
    [1, 0.4, 1.0, -0.2],
    [3, 1.0, 1.5, 0.0],
    [0, 0.0, 0.5, 0.0],
])
# paper totals 0.3 c + 0.3 u + 0.1 f + 1.0 t, by hand: A = 1.5 + 0.3 + 0.2 - 0.2 = 1.8 > B = 0.3 + 0.3 + 0.2 = 0.8
PAPER_TOTALS = [1.8, 0.8, 1.4, 1.025, 1.65, 1.1, 1.325, 0.32, 1.35, 0.05]


def test_paper_weights_under_gdpo_invert_the_total_and_the_preset_keeps_its_order(compose, caplog):
    from opgrpo.app.stages import grpo_rewards

    paper = [0.3, 0.3, 0.1, 1.0]
    assert GROUP @ np.array(paper) == pytest.approx(PAPER_TOTALS)
    # coverage z: mean 2.4, Bessel std sqrt(20.4 / 9) = 1.5055 -> A - B = (5 - 1) / 1.5055 = 2.657;
    # tag z: mean -0.04, std sqrt(0.064 / 9) = 0.08433 -> A - B = -0.2 / 0.08433 = -2.372;
    # uniqueness and format are equal for A and B. Before the batch normalisation (a positive affine map):
    # paper weights: 0.3 x 2.657 - 1.0 x 2.372 = -1.575 < 0 -> B above A; preset: 1.5 x 2.657 - 0.2 x 2.372 = 3.511
    # (TRL adds eps 1e-4 to each std)
    cov, tag = 4 / (math.sqrt(20.4 / 9) + 1e-4), 0.2 / (math.sqrt(0.064 / 9) + 1e-4)
    raw = gdpo_advantages(GROUP, paper, 10, batch_normalize=False)
    assert raw[0] - raw[1] == pytest.approx(0.3 * cov - 1.0 * tag, abs=1e-6) and 0.3 * cov - tag < -1.5
    raw = gdpo_advantages(GROUP, [1.5, 0.3, 0.2, 0.2], 10, batch_normalize=False)
    assert raw[0] - raw[1] == pytest.approx(1.5 * cov - 0.2 * tag, abs=1e-6) and 1.5 * cov - 0.2 * tag > 3.5

    with caplog.at_level("WARNING", logger="opgrpo.reward.trl"):
        setup = grpo_rewards(_context(compose(["experiment=cpu_demo", "reward.aggregation=gdpo"])))
    assert setup.weights == paper and setup.trl_aggregation == "normalize_then_sum"
    assert any("tag penalty" in r.getMessage() and "reward=gdpo" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")
    adv = gdpo_advantages(GROUP, setup.weights, 10)
    assert adv[0] < adv[1]  # the coverage-5 completion now gets a *lower* advantage than the coverage-1 one

    caplog.clear()
    with caplog.at_level("WARNING", logger="opgrpo.reward.trl"):
        preset = grpo_rewards(_context(compose(["experiment=cpu_demo", "reward=gdpo"])))
    assert preset.weights == [1.5, 0.3, 0.2, 0.2] and preset.trl_aggregation == "normalize_then_sum"
    assert not [r for r in caplog.records if "tag penalty" in r.getMessage()]
    adv = gdpo_advantages(GROUP, preset.weights, 10)
    assert adv[0] > adv[1]
    # the whole group keeps the paper total's order (all totals distinct)
    assert list(np.argsort(-adv)) == list(np.argsort(-np.array(PAPER_TOTALS)))
    # ... which the paper weights do not
    assert list(np.argsort(-gdpo_advantages(GROUP, paper, 10))) != list(np.argsort(-np.array(PAPER_TOTALS)))


def test_gdpo_preset_keeps_the_paper_total_and_checks_its_weights(compose):
    from opgrpo.app.validate import ConfigError, check
    from opgrpo.reward import RewardConfig, RewardWeights

    cfg = compose(["experiment=cpu_demo", "reward=gdpo"])
    check(cfg)
    assert [cfg.reward.weights[c] for c in ("coverage", "uniqueness", "format", "tag")] == [0.3, 0.3, 0.1, 1.0]
    with pytest.raises(ConfigError, match="reward.gdpo_weights.tag"):
        check(compose(["experiment=cpu_demo", "reward=gdpo", "reward.gdpo_weights.tag=-1"]))
    # gdpo_weights only matter under gdpo; the warning names the key that holds the weights in use
    assert RewardConfig(gdpo_weights=RewardWeights(1.5, 0.3, 0.2, 0.2)).trained_weights() == [0.3, 0.3, 0.1, 1.0]
    assert RewardConfig(aggregation="gdpo").warnings()[0].startswith("weights: aggregation=gdpo with weights "
                                                                      "0.3/0.3/0.1/1 ")
    assert RewardConfig(aggregation="gdpo", gdpo_weights=RewardWeights(0.3, 0.3, 0.1, 2.0)).warnings()[0].startswith(
        "gdpo_weights:")
    assert RewardConfig(aggregation="total").warnings() == []
