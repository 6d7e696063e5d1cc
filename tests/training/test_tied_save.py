"""#27.7: ``final/`` of a model with tied input/output embeddings is saved tied, as the base model is.

Under DeepSpeed the trainer hands ``save_pretrained`` an explicit state dict whose tensors are copies (ZeRO-2:
``clone_tensors_for_torch_save``, ZeRO-3: gathered), so transformers' tied-weight dedup (by shared storage) no
longer sees that ``lm_head.weight`` is ``model.embed_tokens.weight`` and both were stored: the file grew by the
embedding matrix. ``save_final`` drops the tied copies the model declares.
"""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch

from opgrpo.training.common import cast_saved_weights, save_final, tied_weight_keys


def _names(folder) -> list[str]:
    from safetensors import safe_open

    names = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            names += list(fh.keys())
    return sorted(names)


def _tiny(tie: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg)


def _deepspeed_like_trainer(model):
    """What ``save_final`` uses of a trainer, whose ``save_model`` takes the route transformers' Trainer takes under
    DeepSpeed ZeRO-2: ``accelerator.get_state_dict`` = the unwrapped model's state dict, each tensor cloned."""
    from deepspeed.checkpoint.utils import clone_tensors_for_torch_save

    def save_model(output_dir):
        model.save_pretrained(output_dir, state_dict=clone_tensors_for_torch_save(model.state_dict()))

    accelerator = SimpleNamespace(is_main_process=True, unwrap_model=lambda m: m, wait_for_everyone=lambda: None)
    return SimpleNamespace(model=model, save_model=save_model, accelerator=accelerator, processing_class=None,
                           args=SimpleNamespace(bf16=False, fp16=False))


def _logits(path, ids):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"], info
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied again on load
    return model(ids).logits


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_deepspeed_route_saves_tied_embeddings_once(tmp_path, dtype):
    model = _tiny()
    assert tied_weight_keys(model) == {"lm_head.weight": "model.embed_tokens.weight"}
    model.save_pretrained(tmp_path / "base")  # the base model's own layout: the embedding once
    assert "lm_head.weight" not in _names(tmp_path / "base")

    trainer = _deepspeed_like_trainer(model)
    trainer.save_model(tmp_path / "as_deepspeed_saves")  # what final/ held before the fix
    assert "lm_head.weight" in _names(tmp_path / "as_deepspeed_saves")

    trainer.args.bf16 = dtype is torch.bfloat16
    final = save_final(trainer, tmp_path / "run")
    assert _names(final) == _names(tmp_path / "base")
    if dtype is None:
        assert (final / "model.safetensors").stat().st_size == (tmp_path / "base" / "model.safetensors").stat().st_size
    ids = torch.tensor([[1, 5, 9, 2]])
    expected = _logits(tmp_path / "base", ids)
    got = _logits(final, ids)
    if dtype is None:
        assert torch.equal(got, expected)
    else:
        assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), expected, atol=0.05)


def test_untied_model_keeps_its_lm_head(tmp_path):
    model = _tiny(tie=False)
    assert tied_weight_keys(model) == {}
    final = save_final(_deepspeed_like_trainer(model), tmp_path / "run")
    assert "lm_head.weight" in _names(final)


def test_sharded_save_drops_the_copy_from_its_shard_and_the_index(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path / "base")
    model.save_pretrained(tmp_path / "sharded", state_dict={k: v.clone() for k, v in model.state_dict().items()},
                          max_shard_size="4KB")
    index_path = tmp_path / "sharded" / "model.safetensors.index.json"
    assert "lm_head.weight" in json.loads(index_path.read_text())["weight_map"]
    assert cast_saved_weights(tmp_path / "sharded", None, tied_weight_keys(model)) == 1
    index = json.loads(index_path.read_text())
    assert sorted(index["weight_map"]) == _names(tmp_path / "sharded") == _names(tmp_path / "base")
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in model.state_dict().values()) \
        - model.lm_head.weight.numel() * 4
    ids = torch.tensor([[3, 4]])
    assert torch.equal(_logits(tmp_path / "sharded", ids), _logits(tmp_path / "base", ids))


def test_a_tied_copy_that_differs_is_kept_with_a_warning(tmp_path, caplog):
    model = _tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["lm_head.weight"] += 1.0
    model.save_pretrained(tmp_path, state_dict=state)
    with caplog.at_level(logging.WARNING):
        assert cast_saved_weights(tmp_path, None, tied_weight_keys(model)) == 0
    assert "lm_head.weight" in _names(tmp_path)
    assert "saved tensors differ" in caplog.text
