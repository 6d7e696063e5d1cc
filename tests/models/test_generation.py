"""Prompt building and batched generation with a tiny randomly initialised causal LM built here."""
from __future__ import annotations

import shutil

import pytest

from opgrpo.models.generation import generate_responses, load_policy, load_tokenizer
from opgrpo.text.prompts import IMPLICIT_TEMPLATE, chat_prompt, prompt_text


def test_implicit_prompt_is_the_spec_text_and_asks_for_no_perspectives():
    text = prompt_text("  Eating meat  ")
    assert text == "Provide a structured comprehensive analysis and your opinions on this topic: Eating meat\n\n"
    assert "perspective" not in IMPLICIT_TEMPLATE.lower()


def test_explicit_prompt_asks_for_the_perspective_form():
    text = prompt_text("Eating meat", "explicit")
    assert text.startswith("Provide a structured multi-perspectives analysis within 450 words on this topic: Eating meat\n")
    assert "In the perspective of <Perspective name>, <your explanation to this aspect>\n" in text


def test_chat_prompt_messages():
    assert chat_prompt("x") == [{"role": "user", "content": prompt_text("x")}]
    msgs = chat_prompt("x", "explicit", system="be brief")
    assert msgs[0] == {"role": "system", "content": "be brief"} and msgs[1]["role"] == "user"
    with pytest.raises(ValueError, match="unknown prompt kind"):
        prompt_text("x", "sideways")


def test_batched_generation_shapes_order_and_determinism(tiny_lm):
    model, tok = load_policy(str(tiny_lm), device="cpu")
    prompts = [chat_prompt("a"), chat_prompt("a much longer situation " * 5), chat_prompt("b")]
    out = generate_responses(model, tok, prompts, max_new_tokens=8, num_return_sequences=2, batch_size=2, seed=1,
                             progress=False)
    assert len(out) == 3 and all(len(o) == 2 and all(isinstance(s, str) for s in o) for o in out)
    again = generate_responses(model, tok, prompts, max_new_tokens=8, num_return_sequences=2, batch_size=2, seed=1,
                               progress=False)
    assert again == out  # same seed, same samples
    # greedy decoding of a prompt does not depend on which batch (and padding) it lands in
    alone = generate_responses(model, tok, prompts[2:], temperature=0, max_new_tokens=8, batch_size=1, progress=False)
    batched = generate_responses(model, tok, prompts, temperature=0, max_new_tokens=8, batch_size=3, progress=False)
    assert batched[2] == alone[0]


def test_chat_template_override_and_missing_template(tiny_lm, tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}")
    tok = load_tokenizer(str(tiny_lm), chat_template=str(template))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<<hi>>"
    bare = tmp_path / "bare"
    shutil.copytree(tiny_lm, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    import json

    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model.chat_template"):
        load_tokenizer(str(bare))


def test_generation_cleans_lone_surrogates_in_prompts(tiny_lm, caplog):
    import logging

    model, tok = load_policy(str(tiny_lm), device="cpu")
    with caplog.at_level(logging.WARNING, logger="opgrpo.models.generation"):
        # raw messages (chat_prompt cleans too): generation must clean whatever messages it is given
        bad = generate_responses(model, tok, [[{"role": "user", "content": "Lying \ud800 to a friend\x00"}]],
                                 temperature=0, max_new_tokens=6, progress=False)
    good = generate_responses(model, tok, [[{"role": "user", "content": "Lying \ufffd to a friend "}]], temperature=0,
                              max_new_tokens=6, progress=False)
    assert bad == good and len(bad[0]) == 1
    assert "1 prompt(s)" in caplog.text


# ---- vLLM samples with the checkpoint's generation defaults, as transformers does (issue 29) ------------------
def test_sampling_defaults_are_what_transformers_generate_adds():
    from transformers import GenerationConfig

    from opgrpo.models.generation import sampling_defaults, vllm_sampling_kwargs

    qwen = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    assert sampling_defaults(qwen) == {"top_k": 20, "repetition_penalty": 1.05}
    assert sampling_defaults(None) == {"top_k": 50, "repetition_penalty": 1.0}  # transformers' global defaults
    assert sampling_defaults({"min_p": 0.1}) == {"top_k": 50, "repetition_penalty": 1.0, "min_p": 0.1}
    # the call's temperature and top-p win; the checkpoint's top-k and repetition penalty join them
    assert vllm_sampling_kwargs(temperature=0.7, top_p=0.9, max_new_tokens=12, num_return_sequences=2,
                                defaults=sampling_defaults(qwen)) == {
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 12, "n": 2, "top_k": 20, "repetition_penalty": 1.05}
    # top-k 0 (transformers: no filtering) is left to vLLM's default, which filters nothing either
    assert "top_k" not in vllm_sampling_kwargs(temperature=1.0, top_p=1.0, max_new_tokens=1, defaults={"top_k": 0})


def test_the_vllm_backend_passes_the_checkpoints_top_k_and_repetition_penalty(tiny_lm, tmp_path, monkeypatch):
    import sys
    import types

    from helpers import make_items
    from transformers import GenerationConfig

    from opgrpo.evaluation.run import generate_for_items
    from opgrpo.models import generation

    policy = tmp_path / "policy"
    shutil.copytree(tiny_lm, policy)
    GenerationConfig(do_sample=True, top_k=20, repetition_penalty=1.05).save_pretrained(policy)
    made = []

    class SamplingParams:  # a stand-in for vllm.SamplingParams (vLLM is not installed here)
        def __init__(self, **kwargs):
            made.append(kwargs)

    class Engine:
        def chat(self, prompts, params, use_tqdm=True, **kwargs):
            out = types.SimpleNamespace(text=" a response ")
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams))
    monkeypatch.setattr(generation, "load_vllm", lambda *a, **k: Engine())
    texts = generate_for_items(make_items(2), str(policy), prompt="implicit", backend="vllm", temperature=0.7,
                               top_p=0.9, max_new_tokens=16, num_return_sequences=1, batch_size=2, seed=0)
    assert list(texts) == ["a response", "a response"]
    assert made == [{"temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "n": 1, "top_k": 20,
                     "repetition_penalty": 1.05}]
