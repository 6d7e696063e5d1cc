"""Human pair labels: loading with bad rows, the label judge in mining, label-defined held-out triplets,
the paired sign test, and the packaged sample labels against the sample data."""
import json
import math

import numpy as np
import pytest
from fake_encoder import FakeEncoder

from opgrpo.benchmark import Item, Perspective, load_items, sample_data_path
from opgrpo.estimator import (
    EstimatorConfig,
    JudgeConfig,
    MiningConfig,
    evaluate_estimator,
    evaluate_heldout,
    mine_triplets,
    mining_judge,
    paired_comparison,
)
from opgrpo.estimator.pair_labels import PairLabels, labelled_triplets
from opgrpo.judges import LabelJudge, PairQuery

CSV = """id,name_a,name_b,label
i1,Honesty,Duty to be truthful,same
i1, compassion ,KINDNESS,
i1,Honesty,Compassion,different
i2,Autonomy,,same
,A,B,same
i2,Autonomy,Freedom,maybe
i2,Autonomy,autonomy,same
i2,Autonomy,Right to choose,yes
"""


def test_load_csv_normalises_names_and_reports_bad_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    labels = PairLabels.load(path)
    assert len(labels) == 4
    assert labels.get("i1", "duty to be truthful", "  HONESTY") is True  # order, case and spaces ignored
    assert labels.get("i1", "Kindness", "Compassion") is True  # an empty label means "same"
    assert labels.get("i1", "Compassion", "Honesty") is False
    assert labels.get("i1", "Honesty", "Kindness") is None and labels.get("i9", "Honesty", "Compassion") is None
    assert labels.get("i1", None, "Honesty") is None
    assert labels.same_pairs("i1") == [("compassion", "kindness"), ("duty to be truthful", "honesty")]
    # data rows 4-7 are bad: the error names the file, the row and the field
    assert [(e.row, e.field) for e in labels.errors] == [(4, "name_b"), (5, "id"), (6, "label"), (7, "name_b")]
    assert str(labels.errors[2]).startswith(f"{path}: row 6: field 'label'")


def test_load_csv_with_bom_and_empty_file(tmp_path, caplog):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,name_a,name_b,label\ni,A,B,same\n".encode())
    assert PairLabels.load(path).get("i", "a", "b") is True
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert len(PairLabels.load(empty)) == 0 and "no usable pair labels" in caplog.text


def test_load_jsonl_and_missing_file(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"id": "x", "name_a": "A", "name_b": "B", "label": "no"}) + "\n\n[1, 2]\nnot json\n")
    labels = PairLabels.load(path)
    assert labels.get("x", "b", "a") is False
    assert [(e.row, e.field) for e in labels.errors] == [(3, "line"), (4, "line")]
    with pytest.raises(FileNotFoundError, match="pair labels file not found"):
        PairLabels.load(tmp_path / "absent.csv")


def test_jsonl_booleans_and_numbers_conflicts_and_apostrophes(tmp_path):
    rows = [{"id": "x", "name_a": "A", "name_b": "B", "label": False},
            {"id": "x", "name_a": "A", "name_b": "C", "label": 0},
            {"id": "x", "name_a": "A", "name_b": "D", "label": True},
            {"id": "x", "name_a": "A", "name_b": "E", "label": 1},
            {"id": "x", "name_a": "A", "name_b": "F", "label": None},
            {"id": "x", "name_a": "B", "name_b": "A", "label": "same"},  # contradicts row 1: first kept
            {"id": "x", "name_a": "Children\u2019s well-being", "name_b": "G", "label": "same"}]
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = PairLabels.load(path)
    assert [labels.get("x", "a", n) for n in "bcdef"] == [False, False, True, True, True]
    assert [(e.row, e.field) for e in labels.errors] == [(6, "label")] and "contradicts row 1" in str(labels.errors[0])
    assert labels.get("x", "children's well-being", "g") is True


def test_same_is_transitive_unless_labelled_otherwise():
    labels = PairLabels({("i", frozenset(("a", "b"))): True, ("i", frozenset(("b", "c"))): True,
                         ("i", frozenset(("c", "d"))): False, ("i", frozenset(("e", "f"))): True,
                         ("j", frozenset(("c", "e"))): True})
    assert labels.get("i", "a", "c") is True  # a~b, b~c
    assert labels.get("i", "a", "d") is None and labels.get("i", "c", "d") is False
    assert labels.get("i", "a", "e") is None  # another group
    assert labels.get("j", "b", "e") is None  # groups are per item


def test_check_against_names_typos():
    labels = PairLabels({("i1", frozenset(("honesty", "duty to be truthfull"))): True})
    it = Item("i1", "s", [Perspective("Honesty", "x"), Perspective("Duty to be truthful", "y")], "t")
    assert labels.check_against([it]) == ["<memory>: item i1: no perspective named duty to be truthfull"]
    assert labels.check_against([Item("other", "s", [], "t")]) == []
    as_dicts = Item("i1", "s", [{"name": "Honesty", "text": "x"}, {"text": "In the perspective of Duty to be truthfull, y"}],
                    "t")  # dict perspectives; a name taken from a full reference line
    assert labels.check_against([as_dicts]) == []


def test_label_judge_unlabelled_modes():
    labels = PairLabels({("i", frozenset(("a", "b"))): True, ("i", frozenset(("a", "c"))): False})
    queries = [PairQuery("i", "s", "A", "x", "B", "y"), PairQuery("i", "s", "A", "x", "C", "z"),
               PairQuery("i", "s", "B", "y", "C", "z"), PairQuery("i", "s", None, "x", "B", "y")]
    judge = LabelJudge(labels)
    assert judge.prob_same(queries) == [1.0, 0.0, 0.0, 0.0]
    assert (judge.answered, judge.unlabelled_pairs) == (2, 2)
    assert LabelJudge(labels, "skip").prob_same(queries) == [1.0, 0.0, None, None]
    with pytest.raises(ValueError, match="unlabelled"):
        LabelJudge(labels, "same")


S = math.sqrt(1 - 0.81)
VEC = {"a": [1, 0, 0], "b": [0.9, S, 0], "c": [0.8, 0, 0.6], "d": [0, 0, 1], "e": [0, 1, 0]}


def Encoder():
    return FakeEncoder({k: np.array(v, dtype=np.float32) for k, v in VEC.items()})


def _item(iid="i"):
    # cos(a,b)=.9, cos(a,c)=.8, cos(b,c)=.72, d orthogonal to a and b, cos(c,d)=.6
    names = ["Honesty", "Compassion", "Duty to be truthful", "Autonomy"]
    return Item(iid, "Situation", [Perspective(n, t) for n, t in zip(names, "abcd")], "t")


def test_mining_with_label_judge_hand_checked():
    labels = PairLabels({("i", frozenset(("honesty", "duty to be truthful"))): True})
    judge = LabelJudge(labels)
    triplets, stats = mine_triplets([_item()], Encoder(), judge, MiningConfig(masking="none"))
    # candidate pairs >= .75: (a,b) .9 -> unlabelled = different; (a,c) .8 -> same: anchor a, positive c.
    # negatives of a, most similar first: b (.9, different) -> hard negative b, although closer than c.
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [("a", "c", "b")]
    assert triplets[0].judge_pos == 1.0 and triplets[0].judge_neg == 0.0
    # asked: (a,b), (a,c) as pairs, then b and d as negatives of a
    assert stats["judge_prompts"] == 4 and judge.answered == 1 and judge.unlabelled_pairs == 3
    # "skip": unlabelled pairs are unanswered, so no negative can be confirmed as different; that is an
    # abstention, not a judge failure (which resume would retry)
    triplets, stats = mine_triplets([_item()], Encoder(), LabelJudge(labels, "skip"), MiningConfig(masking="none"))
    assert triplets == [] and stats["skip_no_negative"] == 1 and stats["skip_judge_errors"] == 0
    assert stats["judge_unanswered"] == 3


def test_labelled_triplets_hand_checked():
    labels = PairLabels({("i", frozenset(("honesty", "duty to be truthful"))): True,
                         ("i", frozenset(("compassion", "duty to be truthful"))): True,
                         ("i", frozenset(("honesty", "autonomy"))): False,
                         ("other", frozenset(("x", "y"))): True})
    got = [(t.anchor, t.positive, t.negative) for t in labelled_triplets([_item()], labels, masking="none")]
    # pairs in sorted name order: (compassion=b, truthful=c): a is labelled the same as c -> negative d only;
    # (truthful=c, honesty=a): b is the same as c -> d only. Both directions of each.
    assert got == [("b", "c", "d"), ("c", "b", "d"), ("c", "a", "d"), ("a", "c", "d")]
    acc = evaluate_estimator(Encoder(), labelled_triplets([_item()], labels, masking="none"), per_triplet=True,
                             with_loss=False)
    # cos(b,c)=.72 > cos(b,d)=0; cos(c,b)=.72 > cos(c,d)=.6; cos(c,a)=.8 > .6; cos(a,c)=.8 > 0
    assert acc["correct"] == [True, True, True, True] and acc["mnrl_loss"] is None


def test_labelled_triplets_skip_mode_and_duplicate_names():
    labels = PairLabels({("i", frozenset(("honesty", "duty to be truthful"))): True,
                         ("i", frozenset(("honesty", "autonomy"))): False,
                         ("i", frozenset(("duty to be truthful", "autonomy"))): False})
    # "skip": only perspectives labelled different from both are negatives: d (autonomy), not b
    got = [(t.anchor, t.positive, t.negative) for t in labelled_triplets([_item()], labels, "none", "skip")]
    assert got == [("c", "a", "d"), ("a", "c", "d")]
    twice = Item("i", "s", [Perspective("Honesty", "a"), Perspective("Honesty", "b"),
                            Perspective("Duty to be truthful", "c"), Perspective("Autonomy", "d")], "t")
    assert labelled_triplets([twice], labels, "none") == []  # which Honesty? the pair is left out


def test_labelled_triplets_mask_with_situation_keywords():
    it = Item("m", "Telling a friend the truth", [Perspective("Honesty", "Tell the truth, friend."),
                                                   Perspective("Candour", "A friend deserves the truth"),
                                                   Perspective("Kindness", "Spare feelings")], "t")
    labels = PairLabels({("m", frozenset(("honesty", "candour"))): True})
    t = labelled_triplets([it], labels)[0]  # names in sorted order: candour first
    assert (t.anchor, t.positive, t.negative) == ("A [KW] deserves the [KW]", "Tell the [KW] [KW]", "Spare feelings")
    assert t.raw_positive == "Tell the truth, friend."  # "tell" is not the keyword "telling"
    # the same triplet as the paper trains (as written) and as the reward compares (masked vs unmasked)
    t = labelled_triplets([it], labels, text="raw")[0]
    assert (t.anchor, t.positive, t.negative, t.text) == (
        "A friend deserves the truth", "Tell the truth, friend.", "Spare feelings", "raw")
    t = labelled_triplets([it], labels, text="reward")[0]
    assert (t.anchor, t.positive, t.negative, t.text) == (
        "A [KW] deserves the [KW]", "Tell the truth, friend.", "Spare feelings", "reward")
    with pytest.raises(ValueError, match="text must be one of"):
        labelled_triplets([it], labels, text="tokens")


def test_evaluate_encodes_each_sentence_once():
    enc = Encoder()
    triplets = labelled_triplets([_item()], PairLabels({("i", frozenset(("honesty", "duty to be truthful"))): True}),
                                 masking="none")
    evaluate_estimator(enc, triplets)
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("base,tuned,want", [
    ([False] * 5, [True] * 4 + [False], (4, 0, 2 / 16)),  # 4 fixed, 0 broken: 2 * (1/2)^4
    ([False, False, False, False, True], [True, True, True, True, False], (4, 1, 2 * 6 / 32)),
    ([True, False], [True, False], (0, 0, 1.0)),
    ([False, True], [True, False], (1, 1, 1.0)),
])
def test_paired_comparison_sign_test(base, tuned, want):
    got = paired_comparison(base, tuned)
    assert (got["fixed"], got["broken"]) == want[:2] and got["p_value"] == pytest.approx(want[2])


def test_paired_comparison_by_group():
    # pair x: 3 triplets, +2 -1 = net up; pair y: one broken = down; pair z: unchanged
    base = [False, False, True, True, True]
    tuned = [True, True, False, False, True]
    got = paired_comparison(base, tuned, groups=["x", "x", "x", "y", "z"])
    assert (got["fixed"], got["broken"]) == (2, 2)
    assert (got["groups"], got["groups_improved"], got["groups_worsened"], got["groups_p_value"]) == (3, 1, 1, 1.0)
    assert "groups" not in paired_comparison(base, tuned)


def test_mining_judge_labels(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("id,name_a,name_b\ni,a,b\n")
    judge = mining_judge(JudgeConfig(kind="labels", labels_file=str(path), unlabelled="skip"))
    assert isinstance(judge, LabelJudge) and judge.unlabelled == "skip" and len(judge.labels) == 1
    with pytest.raises(FileNotFoundError):
        mining_judge(JudgeConfig(kind="labels", labels_file=str(tmp_path / "none.csv")))
    (tmp_path / "bad.csv").write_text("ID,Name_A,Name_B\ni,a,b\n")  # wrong header case: no usable label
    with pytest.raises(ValueError, match="estimator.judge.labels_file: .* no usable pair labels"):
        mining_judge(JudgeConfig(kind="labels", labels_file=str(tmp_path / "bad.csv")))
    assert mining_judge(JudgeConfig(kind="none", labels_file=str(path))) is None  # labels only for held-out sets
    with pytest.raises(ValueError, match="estimator.judge.model must be set"):
        mining_judge(JudgeConfig(kind="transformers"))
    with pytest.raises(ValueError, match="estimator.judge.kind must be one of"):
        mining_judge(JudgeConfig(kind="oracle"))


def test_evaluate_heldout_reuses_the_given_models(tmp_path):
    # the labels: Honesty (a) ~ Duty to be truthful (c) in item i; nothing else labelled
    path = tmp_path / "labels.csv"
    path.write_text("id,name_a,name_b,label\ni,Honesty,Duty to be truthful,same\n")
    cfg = EstimatorConfig(mining=MiningConfig(masking="none"),
                          judge=JudgeConfig(kind="labels", labels_file=str(path)))
    # the "fine-tuned" model pulls c towards a and pushes b away; the base is the table above
    tuned_vec = dict(VEC, c=[1, 0, 0], b=[0, 1, 0])
    base = Encoder()
    tuned = FakeEncoder({k: np.array(v, dtype=np.float32) for k, v in tuned_vec.items()})
    out = evaluate_heldout(base, tuned, cfg, {"test_items": [_item()], "val_items": [_item()]},
                           mined_path=tmp_path / "test_triplets.jsonl")
    # labelled: (c,a) and (a,c) with negatives b and d (unlabelled = different): 4 triplets
    # base: cos(c,a)=.8 vs cos(c,b)=.72, .8 vs cos(c,d)=.6, cos(a,c)=.8 vs cos(a,b)=.9 (wrong), .8 vs 0 -> 3/4
    lab = out["test_items"]["labelled"]
    assert lab["n"] == 4 and lab["base"]["accuracy"] == 0.75 and lab["finetuned"]["accuracy"] == 1.0
    assert (lab["fixed"], lab["broken"], lab["groups"], lab["groups_improved"]) == (1, 0, 1, 1)
    assert lab["base"]["mnrl_loss"] is None  # labelled sets reuse sentences: no loss
    # mined with the base model and the label judge, as training mines: anchor a, positive c, negative b
    mined = out["test_items"]["mined"]
    assert mined["n"] == 1 and mined["mining"]["triplets"] == 1 and mined["base"]["accuracy"] == 0.0
    assert mined["finetuned"]["accuracy"] == 1.0 and mined["base"]["mnrl_loss"] is not None
    assert len((tmp_path / "test_triplets.jsonl").read_text().splitlines()) == 1
    assert set(out["val_items"]) == {"labelled", "labelled_raw", "labelled_reward"}  # no mining there
    assert out["val_items"]["labelled"] == lab
    # masking "none": the three text forms are the same triplets here
    assert out["test_items"]["labelled_raw"] == out["test_items"]["labelled_reward"] == lab


def test_sample_labels_match_the_sample_data():
    labels = PairLabels.load(sample_data_path("pair_labels"))
    assert labels.errors == [] and len(labels) == 58 and all(labels.labels.values())
    for split, per_item in (("train", {1}), ("test", {1, 2})):
        items, errors = load_items(sample_data_path(split))
        assert errors == [] and labels.check_against(items) == []
        assert {len(labels.same_pairs(it.id)) for it in items} == per_item
    assert EstimatorConfig().judge.kind == "none"  # the library default stays thresholds-only


def test_a_huge_field_in_a_labels_csv_is_read_not_a_raw_csv_error(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,name_a,name_b,label,note\nx,A,B,same," + "n" * 200_000 + "\nx,C,D,different,\n")
    labels = PairLabels.load(path)
    assert labels.get("x", "A", "B") is True and labels.get("x", "C", "D") is False
