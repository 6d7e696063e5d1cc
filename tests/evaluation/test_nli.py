"""NLI scoring: sentence splitting, item arithmetic, and both scorer backends with tiny random models."""
import json
import logging

import numpy as np
import pytest
import torch

from opgrpo.benchmark import Item, Perspective
from opgrpo.evaluation.nli import (
    CAUSAL_LM_TEMPLATE,
    CausalLMNLI,
    EntailmentScorer,
    NLIConfig,
    SequenceClassificationNLI,
    build_scorer,
    entailment_index,
    score_items,
    split_sentences,
)

NLI3 = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}


# --------------------------------------------------------------------------- helpers


class TableScorer(EntailmentScorer):
    """Fake scorer: fixed probabilities per pair; records what it was asked."""

    def __init__(self, table):
        super().__init__(batch_size=4, progress=False)
        self.table = table
        self.calls = []

    def _score_unique(self, pairs):
        self.calls.append(list(pairs))
        return np.array([self.table[p] for p in pairs])


def tiny_classifier(tmp_path, minilm_path, id2label, name="nli"):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=len(id2label), initializer_range=0.5,
                     id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = BertForSequenceClassification(cfg)
    # random init gives near-uniform softmax; scale the head so the probabilities differ visibly
    with torch.no_grad():
        model.classifier.weight.mul_(4.0)
    out = tmp_path / name
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def reference_probs(path, pairs, index, max_length=512):
    """One pair at a time, no padding: what the batched scorer must reproduce."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for p, h in pairs:
            enc = tok(p, h, truncation="longest_first", max_length=max_length, return_tensors="pt")
            out.append(torch.softmax(model(**enc).logits, -1)[0, index].item())
    return np.array(out)


PAIRS = [
    ("Lying to a friend damages trust.", "Honesty matters."),
    ("People have a right to privacy.", ("The diary is private and reading it without permission violates her "
                                         "autonomy, her trust and her sense of safety at home.")),
    ("Lying to a friend damages trust.", "Honesty matters."),  # duplicate
    ("A", "B"),
    ("Caring for family is a duty.", "You should help your sister move, even if it costs a weekend."),
    ("People have a right to privacy.", "Honesty matters."),
]


# --------------------------------------------------------------------------- splitting


def test_split_sentences_strips_tags_and_splits_lines_and_sentences():
    text = ("<core perspectives>\nIn the perspective of Honesty, Dr. Smith should tell the truth. It builds trust!\n"
            "In the perspective of Care, be kind.\n</core perspectives>\n\n<Summary>\nBoth matter.\n---\n- \n</summary>")
    assert split_sentences(text) == [
        "In the perspective of Honesty, Dr. Smith should tell the truth.",
        "It builds trust!",
        "In the perspective of Care, be kind.",
        "Both matter.",
    ]
    assert split_sentences(text, splitter="newline") == [
        "In the perspective of Honesty, Dr. Smith should tell the truth. It builds trust!",
        "In the perspective of Care, be kind.",
        "Both matter.",
    ]
    assert split_sentences("") == [] and split_sentences(None) == []
    assert split_sentences("<core  perspectives></core perspectives><summary> </summary>") == []
    with pytest.raises(ValueError, match="unknown splitter"):
        split_sentences("x", splitter="spacy")


# --------------------------------------------------------------------------- item arithmetic


def test_score_items_max_over_sentences_mean_over_perspectives(caplog):
    refs_a = ["In the perspective of Honesty, Lying is wrong.", "In the perspective of Care, Help friends."]
    table = {
        ("Lying is wrong.", "Tell the truth."): 0.9,
        ("Lying is wrong.", "Help her."): 0.2,
        ("Help friends.", "Tell the truth."): 0.1,
        ("Help friends.", "Help her."): 0.6,
        ("Rules matter.", "Tell the truth."): 0.3,
    }
    scorer = TableScorer(table)
    items = [
        Item("a", "s", [Perspective("Honesty", "Lying is wrong."), Perspective("Care", "Help friends.")], "f:1"),
        refs_a,  # same references as plain lines
        "In the perspective of Duty, Rules matter.\nIn the perspective of Care, Help friends.",  # answer string
        ["In the perspective of Care, Help friends."],
        ["In the perspective of Nothing,", ""],  # no explanation at all: no reference, scores 0
    ]
    responses = ["Tell the truth. Help her.", "<core perspectives>\nTell the truth.\n</core perspectives>",
                 "Tell the truth.", "", "Tell the truth."]
    with caplog.at_level(logging.WARNING, logger="opgrpo.evaluation.nli"):
        out = score_items(items, responses, scorer)
    assert len(scorer.calls) == 1  # all pairs of all items in one scorer call
    assert set(scorer.calls[0]) == {("Lying is wrong.", "Tell the truth."), ("Lying is wrong.", "Help her."),
                                    ("Help friends.", "Tell the truth."), ("Help friends.", "Help her."),
                                    ("Rules matter.", "Tell the truth.")}
    assert [s.id for s in out] == ["a", "1", "2", "3", "4"]
    assert out[0].perspective_scores == [0.9, 0.6] and out[0].score == pytest.approx(0.75)
    assert out[0].perspective_names == ["Honesty", "Care"] and out[0].n_sentences == 2
    assert out[1].perspective_scores == [0.9, 0.1] and out[1].score == pytest.approx(0.5)
    assert out[2].perspective_scores == [0.3, 0.1] and out[2].score == pytest.approx(0.2)
    assert out[3].score == 0.0 and out[3].perspective_scores == [0.0] and not out[3].skipped
    assert out[4].score == 0.0 and out[4].no_references and not out[4].skipped  # the authors' eva.py: 0, not left out
    assert "1 item(s) with no parsable reference perspective scored 0" in caplog.text
    assert "1 empty response" in caplog.text


def test_score_items_length_mismatch_and_nothing_to_score():
    scorer = TableScorer({})
    with pytest.raises(ValueError, match="2 items but 1 responses"):
        score_items([["x"], ["y"]], ["r"], scorer)
    out = score_items([["In the perspective of A, a."]], [""], scorer)
    assert out[0].score == 0.0 and scorer.calls == []  # no pair at all: the model is never called


def test_entailment_deduplicates_and_restores_order():
    table = {p: float(i) / 10 for i, p in enumerate(dict.fromkeys(PAIRS))}
    scorer = TableScorer(table)
    got = scorer.entailment(PAIRS)
    assert got.tolist() == [table[p] for p in PAIRS]
    assert len(scorer.calls[0]) == len(PAIRS) - 1
    assert scorer.entailment([]).shape == (0,)


# --------------------------------------------------------------------------- sequence classification


def test_entailment_index_by_name():
    assert entailment_index(NLI3) == 2
    assert entailment_index({0: "entailment", 1: "neutral", 2: "contradiction"}) == 0
    assert entailment_index({"0": "not_entailment", "1": "Entailment"}) == 1
    with pytest.raises(ValueError, match="LABEL_0"):
        entailment_index({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})


@pytest.mark.parametrize("id2label,index", [
    (NLI3, 2),
    ({0: "entailment", 1: "neutral", 2: "contradiction"}, 0),
])
def test_sequence_classification_matches_unbatched_forward(tmp_path, minilm_path, id2label, index):
    path = tiny_classifier(tmp_path, minilm_path, id2label)
    scorer = build_scorer(NLIConfig(model=str(path), batch_size=2, device="cpu", progress=False))
    assert isinstance(scorer, SequenceClassificationNLI) and scorer.entail_idx == index
    got = scorer.entailment(PAIRS)
    want = reference_probs(path, PAIRS, index)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[0] == got[2]
    assert np.ptp(got) > 0.01  # the pairs really get different scores


def old_loop_probs(path, pairs, index, batch_size=2, max_length=512):
    """The hand-written scoring loop SequenceClassificationNLI had before CrossEncoder.predict (issue 18):
    token-length-sorted batches padded by the tokenizer, softmax of the logits, the entailment column."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    unique = list(dict.fromkeys(pairs))
    enc = tok([p for p, _ in unique], [h for _, h in unique], truncation="longest_first", max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    order = sorted(range(len(unique)), key=lambda j: len(enc["input_ids"][j]), reverse=True)
    out = np.empty(len(unique))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tok.pad([{k: enc[k][j] for k in keys} for j in rows], return_tensors="pt")
            out[rows] = torch.softmax(model(**batch).logits.float(), dim=-1)[:, index].numpy()
    return out[[unique.index(p) for p in pairs]]


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_cross_encoder_scores_equal_the_old_loop_and_softmax_of_logits(tmp_path, minilm_path, batch_size):
    """Issue 18: CrossEncoder.predict gives the old loop's numbers (within 1e-6) with entailment at index 1."""
    id2label = {0: "neutral", 1: "entailment", 2: "contradiction"}
    path = tiny_classifier(tmp_path, minilm_path, id2label)
    scorer = SequenceClassificationNLI(path, batch_size=batch_size, device="cpu", dtype="float32", progress=False)
    assert scorer.entail_idx == 1
    got = scorer.entailment(PAIRS)
    np.testing.assert_allclose(got, old_loop_probs(path, PAIRS, 1, batch_size=batch_size), atol=1e-6)
    # by hand for the first pair: softmax of the model's logits, column 1
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        logits = model(**tok(*PAIRS[1], return_tensors="pt")).logits[0].double()
    assert got[1] == pytest.approx((logits.exp() / logits.exp().sum())[1].item(), abs=1e-6)


def test_sequence_classification_takes_a_cross_encoder_or_a_loaded_model(tmp_path, minilm_path):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tiny_classifier(tmp_path, minilm_path, NLI3)
    want = reference_probs(path, PAIRS, 2)
    # a saved CrossEncoder activation (Sigmoid) must not change the probabilities: softmax of the raw logits
    ce = CrossEncoder(str(path), device="cpu", activation_fn=torch.nn.Sigmoid())
    scorer = SequenceClassificationNLI(ce, batch_size=4, device="cpu", progress=False)
    np.testing.assert_allclose(scorer.entailment(PAIRS), want, atol=1e-5)
    model, tok = AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    loaded = SequenceClassificationNLI(model, tok, batch_size=4, device="cpu", dtype="float32", progress=False)
    np.testing.assert_allclose(loaded.entailment(PAIRS), want, atol=1e-5)
    assert loaded.model.config.id2label[loaded.entail_idx] == "ENTAILMENT"
    with pytest.raises(ValueError, match="needs its tokenizer"):
        SequenceClassificationNLI(model, device="cpu")


def test_sequence_classification_truncates_long_hypothesis(tmp_path, minilm_path):
    path = tiny_classifier(tmp_path, minilm_path, NLI3)
    long_pairs = [("Privacy matters.", " ".join(["word"] * 400)), ("Privacy matters.", "Short.")]
    scorer = SequenceClassificationNLI(path, batch_size=8, max_length=64, device="cpu", progress=False)
    got = scorer.entailment(long_pairs)
    np.testing.assert_allclose(got, reference_probs(path, long_pairs, 2, max_length=64), atol=1e-5)


def test_sequence_classification_rejects_unnamed_labels(tmp_path, minilm_path):
    path = tiny_classifier(tmp_path, minilm_path, {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ValueError, match="LABEL_1"):
        SequenceClassificationNLI(path, device="cpu")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown NLI backend"):
        build_scorer(NLIConfig(backend="bogus"))


# --------------------------------------------------------------------------- causal LM


def test_causal_lm_backend_asks_yes_no_judge(tmp_path, tiny_lm):
    from opgrpo.judges.yesno import YesNoLM

    path = tiny_lm
    scorer = build_scorer(NLIConfig(backend="causal_lm", model=str(path), batch_size=2, device="cpu",
                                    max_length=256, progress=False))
    assert isinstance(scorer, CausalLMNLI) and scorer.backend == "causal_lm"
    got = scorer.entailment(PAIRS)
    judge = YesNoLM(str(path), device="cpu", batch_size=1, max_length=256)
    want = [judge.prob_yes([CAUSAL_LM_TEMPLATE.format(premise=p, hypothesis=h)])[0] for p, h in PAIRS]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all((got >= 0) & (got <= 1)) and got[0] == got[2]

    out = score_items([["In the perspective of Honesty, Lying to a friend damages trust."]],
                      ["Honesty matters. A"], scorer)
    want_item = max(want[0], judge.prob_yes([CAUSAL_LM_TEMPLATE.format(
        premise="Lying to a friend damages trust.", hypothesis="A")])[0])
    assert out[0].score == pytest.approx(want_item, abs=1e-5)


# --------------------------------------------------------------------------- bad text (issue 16)


class ConstScorer(EntailmentScorer):
    """Fake scorer: P(entailment) 0.5 for every pair; fails like a Rust tokenizer on a lone surrogate."""

    def __init__(self):
        super().__init__(batch_size=4, progress=False)
        self.calls = []

    def _score_unique(self, pairs):
        self.calls.append(list(pairs))
        for p, h in pairs:
            (p + h).encode("utf-8")  # UnicodeEncodeError on a lone surrogate
        return np.full(len(pairs), 0.5)


def test_lone_surrogate_in_a_response_is_cleaned_before_the_classifier(tmp_path, minilm_path, caplog):
    path = tiny_classifier(tmp_path, minilm_path, NLI3)
    scorer = SequenceClassificationNLI(path, batch_size=4, device="cpu", progress=False)
    refs = [["In the perspective of Honesty, Lying to a friend damages trust."]]
    with caplog.at_level(logging.WARNING, logger="opgrpo.evaluation.nli"):
        out = score_items(refs, ["Lying \ud800 hurts.\x00 Honesty matters."], scorer)
    want = reference_probs(path, [("Lying to a friend damages trust.", "Lying \ufffd hurts."),
                                  ("Lying to a friend damages trust.", "Honesty matters.")], 2)
    assert out[0].score == pytest.approx(want.max(), abs=1e-5) and out[0].n_sentences == 2
    assert out[0].response == "Lying \ufffd hurts.  Honesty matters."  # what was scored, and writable as UTF-8
    assert "1 response(s)" in caplog.text
    # the scorer itself cleans what it is handed, for callers other than score_items
    got = scorer.entailment([("Lying to a friend damages trust.", "Lying \ud800 hurts.")])
    assert got[0] == pytest.approx(want[0], abs=1e-5) and scorer.cleaned == 1


def _run_eval(tmp_path, texts):
    from fake_encoder import FakeEncoder

    from opgrpo.evaluation.run import evaluate
    from opgrpo.reward import RewardConfig

    def item(iid, n):
        return Item(iid, f"Situation {iid}", [Perspective(f"N{k}", f"reason {k} of {iid}.") for k in range(n)], "t")

    splits = {"5": [item("a", 5), item("b", 5)], ">10": [item("c", 11)]}
    out = evaluate(splits, tmp_path, responses=lambda items: [texts[it.id] for it in items], source="test",
                   nli=NLIConfig(progress=False), nli_scorer=ConstScorer, encoder=FakeEncoder,
                   reward=RewardConfig(), threshold=0.33)
    rows = [json.loads(line) for line in (tmp_path / "nli_items.jsonl").read_text(encoding="utf-8").splitlines()]
    return out, rows


def test_evaluate_writes_each_items_split(tmp_path):
    out, rows = _run_eval(tmp_path, {"a": "Reason one.", "b": "Reason two.", "c": "Reason three."})
    assert [(r["id"], r["split"]) for r in rows] == [("a", "5"), ("b", "5"), ("c", ">10")]
    assert out["5"]["count"] == 2 and out[">10"]["count"] == 1 and out["overall"]["mean"] == 0.5


def test_eval_stage_survives_a_lone_surrogate_in_a_response(tmp_path):
    out, rows = _run_eval(tmp_path, {"a": "Reason one.", "b": "Bad \ud800 text.", "c": "Reason three."})
    assert rows[1]["response"] == "Bad \ufffd text." and rows[1]["score"] == 0.5
    assert out["overall"]["count"] == 3 and out["overall"]["mean"] == 0.5
    assert (tmp_path / "reward.json").exists()
