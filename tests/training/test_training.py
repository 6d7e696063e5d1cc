"""Training layer: SFT targets and dataset, TRL's GRPOConfig/SFTConfig built from trainer.*.trl and what opgrpo
derives, and real SFT / GRPO steps on a
tiny randomly initialised Llama (with the SmolLM2 tokenizer and chat template), including resume and LoRA."""
from __future__ import annotations

import json
import math
from dataclasses import fields, replace

import pytest
import torch
from helpers import completion_length, make_items, sft_settings, tiny_grpo

from opgrpo.benchmark import Item
from opgrpo.text.perspectives import parse_strict_layout, split_perspective_sentences
from opgrpo.text.prompts import chat_prompt
from opgrpo.training.callbacks import MetricsJsonlCallback
from opgrpo.training.common import LoraSettings, lora_config
from opgrpo.training.grpo import (
    GRPOSettings,
    build_grpo_dataset,
    drop_long_prompts,
    grpo_config,
    optimizer_steps_per_epoch,
    run_grpo,
)
from opgrpo.training.sft import (
    SFTSettings,
    build_sft_dataset,
    run_sft,
    sft_config,
    sft_target,
)
from opgrpo.utils.jsonio import jsonable as _jsonable
from opgrpo.utils.jsonio import read_jsonl


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# ---------------------------------------------------------------- SFT targets and dataset


def test_sft_target_has_the_strict_layout_and_a_summary_naming_every_perspective():
    from opgrpo.reward import RewardConfig
    from opgrpo.reward.rules import format_score

    for item in make_items(4):
        target = sft_target(item)
        layout = parse_strict_layout(target)
        assert layout.strict, target
        assert split_perspective_sentences(layout.core) == item.references
        assert target.startswith("<core perspectives>\nIn the perspective of ")
        assert target.endswith("\n</summary>")
        for p in item.perspectives:
            assert p.name.lower() in layout.summary.lower()
        details = format_score(target, RewardConfig())
        assert details.summary_penalty == 0.0
        assert details.score == 2.0  # every sentence carries a phrase, no repeats, no summary penalty


def test_sft_target_custom_summary_and_bad_inputs():
    item = make_items(1)[0]
    assert "Names: Honesty and Duty to oneself." in sft_target(item, summary="Names: {names}.")
    with pytest.raises(ValueError, match="summary"):
        sft_target(item, summary="no placeholder")
    empty = Item(id="e", situation="s", perspectives=[], source="x")
    with pytest.raises(ValueError, match="no reference"):
        sft_target(empty)


def test_build_sft_dataset_is_conversational_prompt_completion():
    items = make_items(3) + [Item(id="e", situation="s", perspectives=[], source="x")]
    ds = build_sft_dataset(items)
    assert ds.column_names == ["prompt", "completion"]
    assert len(ds) == 3  # the item without references is skipped
    assert ds[1]["prompt"] == chat_prompt(items[1].situation, "implicit")
    assert ds[1]["completion"] == [{"role": "assistant", "content": sft_target(items[1])}]


def _paper(compose, section: str):
    from opgrpo.app.runconfig import to_config

    node = to_config(compose(["trainer=paper"]))
    for part in section.split("."):
        node = getattr(node, part)
    return node


def test_sft_config_derives_gradient_accumulation_and_names_bad_keys(compose, tmp_path):
    paper = _paper(compose, "trainer.sft")
    cfg = sft_config(paper, tmp_path, world_size=4)
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 4 == 256
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.max_length) == (1e-5, 1.0, 1300)
    assert cfg.lr_scheduler_type.value == "cosine" and cfg.warmup_steps == 0.1
    assert cfg.completion_only_loss is True
    with pytest.raises(ValueError, match="sft.global_batch_size"):
        sft_config(replace(paper, global_batch_size=250), tmp_path, world_size=4)
    with pytest.raises(ValueError, match="sft.bf16"):
        sft_config(SFTSettings(bf16="maybe"), tmp_path)


def test_sft_loss_is_on_the_completion_only(tiny_model, tmp_path):
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    items = make_items(2)
    settings = sft_settings(global_batch_size=2, per_device_train_batch_size=2, max_steps=1)
    trainer = SFTTrainer(
        model=str(tiny_model), args=sft_config(settings, tmp_path), train_dataset=build_sft_dataset(items),
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
    )
    row = trainer.train_dataset[0]
    tok = trainer.processing_class
    ids, labels = row["input_ids"], row["labels"]  # -100 = no loss
    trained = tok.decode([t for t, label in zip(ids, labels) if label != -100])
    ignored = tok.decode([t for t, label in zip(ids, labels) if label == -100])
    assert trained.startswith("<core perspectives>") and "</summary>" in trained
    assert items[0].situation in ignored and items[0].situation not in trained


def test_run_sft_trains_and_saves_final(tiny_model, tmp_path):
    settings = sft_settings(learning_rate=1e-2, global_batch_size=4, per_device_train_batch_size=2, max_steps=2,
                            logging_steps=1, warmup_steps=0.0)
    metrics = run_sft(tiny_model, make_items(8), settings, tmp_path)
    final = tmp_path / "final"
    assert metrics["global_step"] == 2 and metrics["final_dir"] == str(final)
    assert (final / "tokenizer_config.json").exists() and (final / "chat_template.jinja").exists()
    before, after = _weights(tiny_model), _weights(final)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    logged = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in logged)


# ---------------------------------------------------------------- GRPO config


def test_settings_dataclasses_are_omegaconf_structured_configs():
    from omegaconf import OmegaConf

    for cls in (GRPOSettings, SFTSettings, LoraSettings):
        conf = OmegaConf.structured(cls)
        assert set(conf.keys()) == {f.name for f in fields(cls)}


def test_settings_hold_only_what_trl_has_no_field_for():
    """TRL's settings live under ``trl`` by TRL's name: no typed field of GRPOSettings/SFTSettings repeats one of
    GRPOConfig/SFTConfig (bf16 excepted: opgrpo's "auto", resolved into TRL's bool)."""
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    for cls, trl_cls in ((GRPOSettings, GRPOConfig), (SFTSettings, SFTConfig)):
        own = {f.name for f in fields(cls)} - {"trl", "bf16"}
        assert not own & {f.name for f in dataclasses.fields(trl_cls)}, cls


def test_grpo_config_carries_every_paper_value(compose, tmp_path):
    preset = _paper(compose, "trainer.grpo")
    cfg = grpo_config(preset, tmp_path, world_size=4)
    paper = {
        "num_generations": 10,
        "generation_batch_size": 1024 * 10,
        "learning_rate": 1e-6,
        "beta": 0.001,
        "entropy_coef": 0.0,
        "epsilon": 0.2,
        "loss_type": "bnpo",
        "scale_rewards": "group",
        "temperature": 1.0,
        "top_p": 1.0,
        "max_completion_length": 800,
        "num_train_epochs": 15.0,
        "num_iterations": 1,
        "use_vllm": False,
        "vllm_mode": "colocate",
        "use_bias_correction_kl": False,
        "multi_objective_aggregation": "sum_then_normalize",
        "remove_unused_columns": False,
        "logging_steps": 1,
        "save_steps": 50,
        "save_total_limit": 2,
        "seed": 42,
        "log_completions": False,  # TRL's own table/parquet; completions.jsonl is completion_samples_every
        "gradient_checkpointing": True,  # the authors' micro-batch of 40
        "weight_decay": 0.01,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    }
    for key, value in paper.items():
        assert getattr(cfg, key) == value, key
    assert cfg.lr_scheduler_type.value == "constant" and cfg.warmup_steps == 0.0
    # mini-batch 256 prompts x 10 completions per optimizer step over 4 processes
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 4 == 256 * 10
    assert cfg.report_to == [] or cfg.report_to == "none" or cfg.report_to == ["none"]

    one = grpo_config(preset, tmp_path, world_size=1, reward_weights=[0.3, 0.3, 0.1, 1.0])
    assert one.reward_weights == [0.3, 0.3, 0.1, 1.0]
    # one generation batch (1024 prompts) feeds 1024 / 256 = 4 optimizer steps
    assert one.steps_per_generation // one.gradient_accumulation_steps == 4
    assert one.steps_per_generation % one.gradient_accumulation_steps == 0
    assert optimizer_steps_per_epoch(10800, preset) == 10 * 4
    # TRL's own defaults for what the preset leaves out; the clip is symmetric (0.2): GRPOTrainer takes an unset
    # epsilon_high as epsilon, so an override of trl.epsilon moves both bounds, as the old mapping did
    assert (cfg.epsilon_high, cfg.top_p, cfg.scale_rewards, cfg.use_vllm) == (None, 1.0, "group", False)


def test_presets_build_the_trl_configs_they_built_before_the_trl_section(compose, tmp_path):
    """Issue 28: the presets moved into TRL's names under ``trl``; the TRL configs they build are the ones the old
    mapping built (tests/training/trl_golden.json, written from the code before the change)."""
    from pathlib import Path

    from opgrpo.app.runconfig import to_config

    golden = json.loads((Path(__file__).parent / "trl_golden.json").read_text())
    for experiment, want in golden.items():
        cfg = compose([f"experiment={experiment}", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"])
        world = want["world_size"]
        grpo = grpo_config(to_config(cfg).trainer.grpo, tmp_path / "grpo", world_size=world,
                           reward_weights=[0.3, 0.3, 0.1, 1.0]).to_dict()
        sft = sft_config(to_config(cfg).trainer.sft, tmp_path / "sft", world_size=world).to_dict()
        for got, fields_ in ((grpo, want["grpo"]), (sft, want["sft"])):
            for key, value in fields_.items():
                assert json.loads(json.dumps(got[key], default=str)) == value, (experiment, key)


@pytest.mark.parametrize(
    "change, key",
    [
        (dict(num_generations=3, mini_batch_size=1, per_device_train_batch_size=4, prompts_per_step=4),
         "trl.num_generations"),
        (dict(num_generations=1), "grpo.trl: trl.GRPOConfig rejects them: GRPO requires at least 2 generations"),
        (dict(mini_batch_size=300), "mini_batch_size"),
        (dict(loss_type="token-mean"), "trl.loss_type"),
        (dict(scale_rewards="std"), "trl.scale_rewards"),
        (dict(bf16="yes"), "bf16"),
        (dict(vllm_mode="remote"), "trl.vllm_mode"),
        (dict(max_prompt_length=0), "max_prompt_length"),
        (dict(generation_batch_size=8), "trl.generation_batch_size"),  # derived from prompts_per_step
        (dict(learning_rte=1e-6), "trl.learning_rte"),
    ],
)
def test_grpo_config_rejects_invalid_values_naming_the_key(tmp_path, change, key):
    from helpers import with_trl

    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        grpo_config(with_trl(GRPOSettings, **change), tmp_path, world_size=1)


def test_group_geometry_depends_on_world_size(tmp_path):
    s = tiny_grpo(num_generations=2, prompts_per_step=4, mini_batch_size=1, per_device_train_batch_size=2)
    grpo_config(s, tmp_path, world_size=1)
    with pytest.raises(ValueError, match="per_device_train_batch_size x world size"):
        grpo_config(s, tmp_path, world_size=2)


def test_aggregation_reaches_trl_and_is_checked(tmp_path):
    assert grpo_config(GRPOSettings(), tmp_path).multi_objective_aggregation == "sum_then_normalize"
    cfg = grpo_config(GRPOSettings(), tmp_path, aggregation="normalize_then_sum")
    assert cfg.multi_objective_aggregation == "normalize_then_sum"
    with pytest.raises(ValueError, match="grpo.aggregation"):
        grpo_config(GRPOSettings(), tmp_path, aggregation="max")


def test_settings_report_every_problem_at_once():
    problems = GRPOSettings(prompts_per_step=0, max_prompt_length=0, bf16="x",
                            trl={"lr": 1e-6, "loss_type": "x", "num_generations": 0}).problems()
    assert [p.split(":")[0] for p in problems] == ["trl.lr", "trl.loss_type", "prompts_per_step", "trl.num_generations",
                                                   "max_prompt_length", "bf16"]


def test_lora_settings_to_peft():
    assert lora_config(LoraSettings()) is None
    cfg = lora_config(LoraSettings(enabled=True, r=8, alpha=16, dropout=0.0, target_modules="q_proj, v_proj"))
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (8, 16, 0.0)
    assert set(cfg.target_modules) == {"q_proj", "v_proj"}
    assert lora_config(LoraSettings(enabled=True)).target_modules == "all-linear"


# ---------------------------------------------------------------- GRPO dataset


def test_build_grpo_dataset_columns():
    items = make_items(3)
    ds = build_grpo_dataset(items)
    assert ds.column_names == ["prompt", "situation", "references", "item_id"]
    assert ds[2]["prompt"] == chat_prompt(items[2].situation, "implicit")
    assert ds[2]["references"] == items[2].references
    assert ds[2]["item_id"] == "it2"


def test_drop_long_prompts(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    items = make_items(3) + [Item(id="long", situation="word " * 600, perspectives=make_items(1)[0].perspectives,
                                  source="x")]
    ds, dropped = drop_long_prompts(build_grpo_dataset(items), tok, 512)
    assert dropped == 1 and ds["item_id"] == ["it0", "it1", "it2"]
    assert drop_long_prompts(build_grpo_dataset(items), tok, -1)[1] == 0


# ---------------------------------------------------------------- GRPO steps


class ColumnCheck:
    """A reward that records whether each completion arrived with its own item's situation and references."""

    __name__ = "column_check"

    def __init__(self):
        self.bad = 0
        self.seen = 0

    def __call__(self, prompts, completions, situation, references, item_id, **kw):
        for p, s, refs, iid in zip(prompts, situation, references, item_id):
            self.seen += 1
            if s not in p[-1]["content"] or not all(f"item {iid} " in r for r in refs):
                self.bad += 1
        return [0.0] * len(completions)


def test_run_grpo_scores_with_weighted_op_reward_components(tiny_model, tmp_path, minilm):
    from opgrpo.reward import make_reward_functions, reward_weights

    funcs = make_reward_functions(minilm)
    weights = reward_weights()
    check = ColumnCheck()
    settings = tiny_grpo(max_steps=2, save_steps=100, completion_samples_every=1, completion_samples=3)
    metrics = run_grpo(tiny_model, make_items(6), [*funcs, completion_length, check], [*weights, 0.5, 0.0],
                       settings, tmp_path)

    assert metrics["global_step"] == 2 and metrics["generation_batch_size"] == 4
    assert metrics["steps_per_generation"] == 2 and metrics["gradient_accumulation_steps"] == 1
    assert check.seen == 4 and check.bad == 0
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    gen = [r for r in rows if "reward" in r]
    assert gen and gen[0]["step"] == 1  # one generation batch feeds 2 optimizer steps
    names = ["coverage", "uniqueness", "format", "tag", "completion_length", "column_check"]
    for name in names:
        assert f"rewards/{name}/mean" in gen[0] and f"rewards/{name}/std" in gen[0]
    assert gen[0]["rewards/tag/mean"] == pytest.approx(-0.2)  # a random model never writes the layout
    expected = sum(w * gen[0][f"rewards/{n}/mean"] for n, w in zip(names, [*weights, 0.5, 0.0]))
    assert gen[0]["reward"] == pytest.approx(expected, abs=1e-5)
    for key in ("kl", "entropy", "completions/mean_length", "loss", "learning_rate"):
        assert any(key in r for r in rows), key
    samples = read_jsonl(tmp_path / "completions.jsonl")
    assert len(samples) == 6 and {s["step"] for s in samples} == {1, 2}
    assert set(samples[0]["rewards"]) == set(names)
    assert (tmp_path / "final" / "model.safetensors").exists()
    assert (tmp_path / "final" / "tokenizer_config.json").exists()


class StopAt:
    """Simulate a crash: raise once step ``step`` has been logged (after checkpoint step-1, before checkpoint step)."""

    def __init__(self, step):
        self.step = step

    def on_log(self, args, state, control, **kw):
        if state.global_step >= self.step:
            raise KeyboardInterrupt("simulated crash")


class CountSteps:
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kw):
        self.steps.append(state.global_step)


def _callback(obj):
    from transformers import TrainerCallback

    cb = TrainerCallback()
    for name in ("on_log", "on_step_end"):
        if hasattr(obj, name):
            setattr(cb, name, getattr(obj, name))
    return cb


def test_resume_continues_the_step_counter(tiny_model, tmp_path):
    settings = tiny_grpo(learning_rate=1e-3, max_steps=4, save_steps=1, save_total_limit=None,
                         completion_samples_every=0)
    items = make_items(8)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(tiny_model, items, [completion_length], [1.0], settings, tmp_path, callbacks=[_callback(StopAt(3))])
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3]

    counter = CountSteps()
    metrics = run_grpo(tiny_model, items, [completion_length], [1.0], settings, tmp_path, resume=True,
                       callbacks=[_callback(counter)])
    assert counter.steps == [3, 4]  # two more optimizer steps, counted on from the checkpoint
    assert metrics["global_step"] == 4
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "train_runtime" not in r] == [1, 2, 3, 4]
    assert rows[-1]["step"] == 4 and "train_runtime" in rows[-1]  # the trainer's end-of-run summary
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]


def test_model_only_checkpoints_and_cleaning(tiny_model, tmp_path):
    """Issue 20.7: a CPU run kept a 1.6 GB checkpoint (optimizer state) beside its final model."""
    items = make_items(8)
    kept = tiny_grpo(max_steps=2, save_steps=1, save_total_limit=None, completion_samples_every=0,
                     save_only_model=True)
    run_grpo(tiny_model, items, [completion_length], [1.0], kept, tmp_path / "kept")
    names = {p.name for p in (tmp_path / "kept" / "checkpoint-2").iterdir()}
    assert "model.safetensors" in names and not names & {"optimizer.pt", "scheduler.pt"}
    cleaned = tiny_grpo(max_steps=2, save_steps=1, completion_samples_every=0, clean_checkpoints=True)
    run_grpo(tiny_model, items, [completion_length], [1.0], cleaned, tmp_path / "cleaned")
    assert not list((tmp_path / "cleaned").glob("checkpoint-*"))
    assert (tmp_path / "cleaned" / "final" / "model.safetensors").exists()
    none = tiny_grpo(max_steps=1, save_strategy="no", completion_samples_every=0)
    run_grpo(tiny_model, items, [completion_length], [1.0], none, tmp_path / "none")
    assert not list((tmp_path / "none").glob("checkpoint-*")) and (tmp_path / "none" / "final").is_dir()


def test_run_grpo_with_lora_and_eval_items(tiny_model, tmp_path):
    settings = tiny_grpo(max_steps=1, save_steps=100, eval_steps=1, completion_samples_every=0)
    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0)
    run_grpo(tiny_model, make_items(4), [completion_length], [1.0], settings, tmp_path, peft=lora,
             eval_items=make_items(2))
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "eval_reward" in r]
    assert evals and "eval_rewards/completion_length/mean" in evals[0]
    assert (tmp_path / "final_adapter" / "adapter_config.json").exists()
    merged = _weights(tmp_path / "final")
    assert not any("lora" in k for k in merged)
    assert set(merged) == set(_weights(tiny_model))


def test_too_few_prompts_for_a_generation_batch(tiny_model, tmp_path):
    settings = tiny_grpo(prompts_per_step=8, max_steps=1)
    with pytest.raises(ValueError, match="grpo.prompts_per_step"):
        run_grpo(tiny_model, make_items(4), [completion_length], [1.0], settings, tmp_path)


def test_reward_weights_must_match_functions(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="reward_weights"):
        run_grpo(tiny_model, make_items(4), [completion_length], [1.0, 2.0], tiny_grpo(), tmp_path)


# ---------------------------------------------------------------- callbacks


def test_metrics_callback_writes_json_safe_lines_and_trims_on_resume(tmp_path):
    from transformers import TrainerControl, TrainerState

    path = tmp_path / "metrics.jsonl"
    cb = MetricsJsonlCallback(path)
    state = TrainerState()
    for step in (1, 2, 3):
        state.global_step = step
        cb.on_log(None, state, TrainerControl(), logs={"loss": float("nan") if step == 2 else 0.5, "kl": torch.tensor(0.1)})
    rows = read_jsonl(path)
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[1]["loss"] is None
    assert rows[0]["kl"] == pytest.approx(0.1)
    state.global_step = 2  # resumed from checkpoint-2
    cb.on_train_begin(None, state, TrainerControl())
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    state.global_step = 0  # a fresh run in the same directory starts a new file
    cb.on_train_begin(None, state, TrainerControl())
    assert read_jsonl(path) == []
    assert _jsonable({"a": [float("inf"), 1]}) == {"a": [None, 1]}


def test_trl_fields_pass_through_by_trls_name_and_are_checked(tmp_path):
    """Issues 18.2 and 28: every GRPOConfig/SFTConfig field is reachable through trainer.*.trl by TRL's own name and
    reaches TRL's config unchanged; a typo or a field opgrpo derives itself fails naming the key."""
    s = tiny_grpo(max_grad_norm=0.5, weight_decay=0.01, vllm_server_base_url="http://node7:8000",
                  optim="adamw_torch", hub_model_id="me/op-grpo", learning_rate=3e-6, beta=0.02)
    cfg = grpo_config(s, tmp_path)
    assert (cfg.max_grad_norm, cfg.weight_decay, cfg.optim, cfg.hub_model_id) == (0.5, 0.01, "adamw_torch", "me/op-grpo")
    assert (cfg.learning_rate, cfg.beta, cfg.vllm_server_base_url) == (3e-6, 0.02, "http://node7:8000")
    typo = tiny_grpo(optimm="adamw_torch")
    assert any(p.startswith("trl.optimm:") and "GRPOConfig" in p for p in typo.problems())
    derived = tiny_grpo(gradient_accumulation_steps=4)
    assert any(p.startswith("trl.gradient_accumulation_steps:") and "set by opgrpo" in p for p in derived.problems())
    with pytest.raises(ValueError, match=r"grpo\.trl\.gradient_accumulation_steps"):
        grpo_config(derived, tmp_path)
    sft = sft_config(sft_settings(global_batch_size=4, per_device_train_batch_size=4, neftune_noise_alpha=5.0),
                     tmp_path)
    assert sft.neftune_noise_alpha == 5.0
    assert any(p.startswith("trl.nope:") and "SFTConfig" in p for p in sft_settings(nope=1).problems())
    assert any(p.startswith("trl.packing_strategy:") for p in sft_settings(packing_strategy="x").problems())


def test_trainer_paper_preset_builds_the_authors_optimizer_settings(compose, tmp_path):
    """Issue 17.5: SFT as run_sft.sh on the authors' verl fork (sft_trainer.yaml: lr 1e-5 cosine, 10% warmup, AdamW
    betas (0.9, 0.95), weight decay 0.01, clipping 1.0, global batch 256, length 1300, 1 epoch); GRPO with verl's
    token-mean per micro-batch (TRL bnpo) and weight decay 0.01. Checked on the built TRL configs."""
    from opgrpo.app.runconfig import to_config
    from opgrpo.training.grpo import grpo_config
    from opgrpo.training.sft import sft_config

    cfg = compose(["experiment=paper", "benchmark.train_file=x.csv"])
    sft = sft_config(to_config(cfg).trainer.sft, tmp_path / "sft", world_size=4)
    assert (sft.learning_rate, sft.lr_scheduler_type.value, sft.warmup_steps) == (1e-5, "cosine", 0.1)
    assert (sft.adam_beta1, sft.adam_beta2, sft.weight_decay, sft.max_grad_norm) == (0.9, 0.95, 0.01, 1.0)
    assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps * 4 == 256
    assert (sft.max_length, sft.num_train_epochs) == (1300, 1.0)
    grpo = grpo_config(to_config(cfg).trainer.grpo, tmp_path / "grpo", world_size=4)
    assert (grpo.loss_type, grpo.weight_decay, grpo.learning_rate, grpo.beta) == ("bnpo", 0.01, 1e-6, 0.001)


def test_sft_file_examples_are_taught_as_written():
    """Issue 17.3: an example of benchmark.sft_file (the authors' full responses with LLM-written summaries) is the
    SFT target exactly as written, not the template built from references."""
    from opgrpo.benchmark.sft_file import SFTExample
    from opgrpo.training.sft import build_sft_dataset

    target = ("<core perspectives>\nIn the perspective of Duty, x.\n</core perspectives>\n\n"
              "<summary>\nAn LLM summary.\n</summary>")
    ds = build_sft_dataset([SFTExample("f:1", "A situation", target, "f:1")])
    assert ds[0]["completion"] == [{"role": "assistant", "content": target}]
