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
