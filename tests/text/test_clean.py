"""Text sanitising (opgrpo.text.clean) and its use where text enters the estimator encoder (mining, evaluation).

A lone surrogate reaches a model as soon as a JSON file holds an escape such as "\\ud800" (``json.loads``
returns it as is); the Rust tokenizers then fail with an opaque ``TypeError``. ``StrictEncoder`` below
fails the same way, so the tests see whether the text was cleaned before the model.
"""
import json
import logging

import numpy as np
import pytest

from opgrpo.benchmark import Item, Perspective
from opgrpo.text.clean import clean_messages, clean_text, clean_texts


def test_clean_text_replaces_lone_surrogates_and_controls_and_keeps_the_rest():
    assert clean_text("\ud800") == ("\ufffd", True)
    assert clean_text("a\udfffb") == ("a\ufffdb", True)
    assert clean_text("\ud83d\ude00 ok") == ("\U0001F600 ok", True)  # a split surrogate pair is joined again
    assert clean_text("a\x00b\x1bc\x7fd\x85e") == ("a b c d e", True)
    assert clean_text("tab\tnew\nline\r\n") == ("tab\tnew\nline\r\n", False)
    assert clean_text("é 😀 \u202e [KW]") == ("é 😀 \u202e [KW]", False)
    assert clean_text("") == ("", False)
    for raw in ("\ud800", "x\udc80y", "\ud83d\ude00", "\x00"):
        clean_text(raw)[0].encode("utf-8")  # always encodable after cleaning
        assert clean_text(clean_text(raw)[0]) == (clean_text(raw)[0], False)  # idempotent
    with pytest.raises(TypeError, match="str"):
        clean_text(None)


def test_clean_texts_counts_and_logs_once(caplog):
    with caplog.at_level(logging.WARNING, logger="opgrpo.text.clean"):
        out, n = clean_texts(["ok", "bad\ud800", "x\x00", "fine"], where="unit test")
    assert out == ["ok", "bad\ufffd", "x ", "fine"] and n == 2
    records = [r for r in caplog.records if "unit test" in r.getMessage()]
    assert len(records) == 1 and "2 text(s)" in records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="opgrpo.text.clean"):
        assert clean_texts(["ok"], where="unit test") == (["ok"], 0)
    assert caplog.records == []  # nothing changed: nothing logged


def test_clean_messages_cleans_string_and_part_contents():
    msgs = [[{"role": "system", "content": "be\x00 brief"}, {"role": "user", "content": "lie\ud800?"}],
            [{"role": "user", "content": [{"type": "text", "text": "a\udfff"}, {"type": "image"}]}]]
    out, n = clean_messages(msgs)
    assert n == 3
    assert out[0] == [{"role": "system", "content": "be  brief"}, {"role": "user", "content": "lie\ufffd?"}]
    assert out[1] == [{"role": "user", "content": [{"type": "text", "text": "a\ufffd"}, {"type": "image"}]}]
    assert msgs[0][1]["content"] == "lie\ud800?"  # the input is not modified


# --------------------------------------------------------------------------- estimator encoder boundary


class StrictEncoder:
    """Fails like a Rust tokenizer on text that is not valid Unicode; otherwise one basis vector per text."""

    def __init__(self):
        self.axes: dict[str, int] = {}
        self.calls: list[list[str]] = []

    def encode(self, texts, **kwargs):
        texts = list(texts)
        self.calls.append(texts)
        for t in texts:
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise TypeError("TextInputSequence must be str") from None
        rows = np.zeros((len(texts), 64))
        for r, t in enumerate(texts):
            rows[r, self.axes.setdefault(t, len(self.axes))] = 1.0
            rows[r, 63] = 0.0 if t.startswith("Promises") else 1.0  # cosine 0.5 between the others, else 0
        return rows


def test_mining_cleans_texts_before_the_encoder_and_the_file(tmp_path, caplog):
    from opgrpo.estimator import MiningConfig, mine_triplets

    persp = [Perspective("Honesty", "Lying \ud800 hurts trust."), Perspective("Care", "Kindness\x00 matters."),
             Perspective("Duty", "Promises bind.")]
    out = tmp_path / "mined.jsonl"
    enc = StrictEncoder()
    with caplog.at_level(logging.WARNING):
        triplets, stats = mine_triplets([Item("it1", "Is lying OK?", persp, "t:1")], enc, None,
                                        MiningConfig(masking="none", pair_threshold=0.4), out_path=out)
    assert enc.calls == [["Lying \ufffd hurts trust.", "Kindness  matters.", "Promises bind."]]
    assert stats["cleaned_texts"] == 2 and len(triplets) == 1
    assert triplets[0].anchor == "Lying \ufffd hurts trust." and triplets[0].raw_anchor == "Lying \ufffd hurts trust."
    rec = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert rec["status"] == "ok" and rec["anchor"] == "Lying \ufffd hurts trust."
    assert "2 text(s)" in caplog.text


def test_evaluate_estimator_cleans_texts_before_the_encoder():
    from opgrpo.estimator import evaluate_estimator

    enc = StrictEncoder()
    trips = [{"anchor": "a\ud800", "positive": "a\ud800", "negative": "n\x00"}]
    m = evaluate_estimator(enc, trips, batch_size=2, scale=1.0)
    assert enc.calls == [["a\ufffd", "n "]]
    assert m["n"] == 1 and m["accuracy"] == 1.0 and m["cos_pos"] == pytest.approx(1.0)


def test_training_and_eval_prompts_are_cleaned():
    """Issue 16.4: a situation with a lone surrogate (a JSON "\\ud800" escape) must not reach the tokenizer."""
    from opgrpo.text.prompts import chat_prompt

    content = chat_prompt("Lying\ud800 to a\x07 friend")[0]["content"]
    assert "\ud800" not in content and "\x07" not in content
    assert "Lying\ufffd to a  friend" in content
    content.encode("utf-8")  # would raise on a lone surrogate
