"""Issue 18.3: ``final/`` is what a Hub user expects: weights in the training dtype (bf16 when trained with bf16,
not TRL's float32 master weights), the tokenizer with its chat template, and the model card README.md next to the
weights (not TRL's draft card in the stage folder)."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import completion_length, make_items, sft_settings, tiny_grpo

from opgrpo.training.common import cast_saved_weights
from opgrpo.training.grpo import run_grpo
from opgrpo.training.sft import run_sft


def _dtypes(path) -> set:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {fh.get_tensor(k).dtype for k in fh.keys()}  # noqa: SIM118 (safe_open is not iterable)


def test_sft_trained_with_bf16_saves_a_bf16_final_with_tokenizer_template_and_card(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # bf16 mixed precision on CPU needs transformers' use_cpu (trainer.sft.trl.use_cpu), as a GPU run needs nothing
    settings = sft_settings(learning_rate=1e-2, global_batch_size=2, per_device_train_batch_size=2, max_steps=1,
                            warmup_steps=0.0, save_steps=1, bf16="true", use_cpu=True)
    run_sft(tiny_model, make_items(4), settings, tmp_path)
    final = tmp_path / "final"
    assert _dtypes(tiny_model / "model.safetensors") == {torch.float32}  # what TRL loaded and trained (masters)
    assert _dtypes(final / "model.safetensors") == {torch.bfloat16}
    assert json.loads((final / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.dtype == torch.bfloat16
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (final / name).is_file(), name
    source = AutoTokenizer.from_pretrained(tiny_model)
    assert AutoTokenizer.from_pretrained(final).chat_template == source.chat_template
    card = (final / "README.md").read_text()
    assert str(tiny_model) in card and "Weights in bfloat16" in card and "`trl.learning_rate` | 0.01" in card
    assert "sft" in card.split("---")[1]  # a metadata tag
    assert not (tmp_path / "README.md").exists()  # TRL's draft card of the checkpoint save is gone


def test_grpo_without_mixed_precision_keeps_float32_and_names_its_reward_functions(tiny_model, tmp_path):
    settings = tiny_grpo(max_steps=1, save_steps=1, completion_samples_every=0, bf16="false")
    run_grpo(tiny_model, make_items(4), [completion_length], [0.5], settings, tmp_path)
    final = tmp_path / "final"
    assert _dtypes(final / "model.safetensors") == {torch.float32}
    assert json.loads((final / "config.json").read_text())["dtype"] == "float32"
    card = (final / "README.md").read_text()
    assert "completion_length 0.5" in card and "GRPO" in card and "Weights in float32" in card
    assert not (tmp_path / "README.md").exists() and (final / "chat_template.jinja").is_file()


def test_cast_saved_weights_casts_every_shard_and_fixes_index_and_config(tmp_path):
    from safetensors.torch import load_file, save_file

    save_file({"a": torch.ones(4), "ids": torch.arange(3)}, str(tmp_path / "model-00001-of-00002.safetensors"),
              metadata={"format": "pt"})
    save_file({"b": torch.ones(2, 2, dtype=torch.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"),
              metadata={"format": "pt"})
    index = {"metadata": {"total_size": 16 + 24 + 16},
             "weight_map": {"a": "model-00001-of-00002.safetensors", "ids": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "float32"}))

    assert cast_saved_weights(tmp_path, torch.bfloat16) == 2
    first = load_file(str(tmp_path / "model-00001-of-00002.safetensors"))
    assert first["a"].dtype == torch.bfloat16 and torch.equal(first["a"], torch.ones(4, dtype=torch.bfloat16))
    assert first["ids"].dtype == torch.int64  # integer buffers keep their dtype
    assert load_file(str(tmp_path / "model-00002-of-00002.safetensors"))["b"].dtype == torch.bfloat16
    # 4 + 4 bf16 values (2 bytes each) + 3 int64 (8 bytes each)
    assert json.loads((tmp_path / "model.safetensors.index.json").read_text())["metadata"]["total_size"] == 8 + 8 + 24
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == "bfloat16"
    assert cast_saved_weights(tmp_path, torch.bfloat16) == 0  # already in bf16: nothing rewritten
    assert not list(tmp_path.glob("*.tmp"))


def test_model_card_metadata_and_evaluation_update(tmp_path):
    from huggingface_hub import ModelCard

    from opgrpo.models.model_card import update_model_card_evaluation, write_model_card

    (tmp_path / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    write_model_card(tmp_path, stage="grpo", base_model="Qwen/Qwen2.5-3B-Instruct", start_from="/runs/1/sft/final",
                     dataset="valueprism", data_files=["/data/vp/train.csv"],
                     reward={"weights": {"coverage": 0.3, "uniqueness": 0.3}, "tau_cov": 0.7},
                     settings={"trl": {"learning_rate": 1e-6}, "extra": {}}, hub_model_id="org/op-grpo-3b")
    card = ModelCard.load(str(tmp_path / "README.md"))
    assert card.data.base_model == "Qwen/Qwen2.5-3B-Instruct" and card.data.datasets is None  # a local file
    assert {"opgrpo", "grpo"} <= set(card.data.tags) and card.data.model_name == "op-grpo-3b"
    assert 'from_pretrained("org/op-grpo-3b"' in card.text
    assert "weights: coverage 0.3, uniqueness 0.3" in card.text and "tau_cov: 0.7" in card.text
    assert "`/runs/1/sft/final`" in card.text and "Not evaluated in this run yet" in card.text
    assert "`extra`" not in card.text  # empty settings are left out
    assert "| `trl.learning_rate` | 1e-06 |" in card.text  # TRL's fields, one row each by TRL's name

    update_model_card_evaluation(tmp_path, {"overall/accuracy": 0.25, "reward/coverage_rate": 0.5},
                                 eval_note="NLI: deberta.", dataset="valueprism")
    card = ModelCard.load(str(tmp_path / "README.md"))
    assert "| overall/accuracy | 0.25 |" in card.text and "NLI: deberta." in card.text
    assert "Not evaluated" not in card.text and card.text.index("## Evaluation") < card.text.index("## Framework")
    assert [(r.metric_name, r.metric_value, r.dataset_name) for r in card.data.eval_results] == [
        ("overall/accuracy", 0.25, "valueprism"), ("reward/coverage_rate", 0.5, "valueprism")]

    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("---\ntags: [mine]\n---\n# Someone else's card\n")
    assert update_model_card_evaluation(other, {"overall/accuracy": 1.0}) is None
    assert "Someone else's card" in (other / "README.md").read_text()


@pytest.mark.parametrize("ref, hub", [("Qwen/Qwen2.5-3B-Instruct", True), ("gpt2", True), ("/abs/model", False),
                                      ("./rel", False), ("runs/1/sft/final", False), ("", False),
                                      ("train.csv", False), ("org/data-set", True)])
def test_is_hub_id(ref, hub):
    from opgrpo.models.hub_ids import is_hub_id

    assert is_hub_id(ref) is hub
