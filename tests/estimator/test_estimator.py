"""Estimator stage: triplet mining with a fake encoder and judge, fine-tuning, search and evaluation on MiniLM."""
import json
import math
import re

import numpy as np
import pytest

from opgrpo.benchmark import Item, Perspective
from opgrpo.estimator import (
    SKIP_REASONS,
    EstimatorConfig,
    JudgeConfig,
    MiningConfig,
    SearchConfig,
    TrainConfig,
    evaluate_estimator,
    load_triplets,
    mine_triplets,
    run_estimator_stage,
    search_hyperparameters,
    split_triplets,
    train_estimator,
)

S = math.sqrt(1 - 0.81)
VEC = {
    # item "main": cos(a1,a2)=0.9, cos(a1,a3)=0.8, cos(a2,a3)=0.72, a4 orthogonal to a1/a2, cos(a3,a4)=0.6
    "a1": [1, 0, 0], "a2": [0.9, S, 0], "a3": [0.8, 0, 0.6], "a4": [0, 0, 1],
    "f1": [1, 0, 0],  # item "few": one perspective
    "o1": [1, 0, 0], "o2": [0, 1, 0],  # item "far": nothing above 0.75
    "u1": [1, 0, 0], "u2": [0.9, S, 0],  # item "unconfirmed": judge says No
    "n1": [1, 0, 0], "n2": [0.9, S, 0], "n3": [0.8, 0, 0.6],  # item "noneg": every sentence judged "same"
    "e1": [1, 0, 0], "e2": [0.9, S, 0], "e3": [0, 1, 0],  # item "err": judge fails
}
# judge P(same) per unordered pair; missing pair -> 0.1 ("different")
SAME = {("a1", "a2"): 0.2, ("a1", "a3"): 0.9, ("u1", "u2"): 0.3, ("n1", "n2"): 0.95, ("n1", "n3"): 0.8}
ERRORS = {("e1", "e2")}


class FakeEncoder:
    def __init__(self):
        self.calls = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return np.array([VEC[t] for t in texts], dtype=float)


class FakeJudge:
    def __init__(self):
        self.pairs = []

    def prob_yes(self, prompts):
        out = []
        for p in prompts:
            a = re.search(r"Sentence A: (.*)", p).group(1)
            b = re.search(r"Sentence B: (.*)", p).group(1)
            key = tuple(sorted((a, b)))
            self.pairs.append(key)
            out.append(None if key in ERRORS else SAME.get(key, 0.1))
        return out


def item(iid, texts, situation="A situation"):
    return Item(iid, situation, [Perspective(f"Name{i}", t) for i, t in enumerate(texts)], "test")


def items():
    return [item("main", ["a1", "a2", "a3", "a4"]), item("few", ["f1"]), item("far", ["o1", "o2"]),
            item("unconfirmed", ["u1", "u2"]), item("noneg", ["n1", "n2", "n3"]), item("err", ["e1", "e2", "e3"]),
            {"not": "an item"}, item("", ["a1", "a2"]), item("main", ["a1", "a2"])]


CFG = MiningConfig(masking="none")


def test_mining_with_judge_hand_checked():
    enc, judge = FakeEncoder(), FakeJudge()
    triplets, stats = mine_triplets(items(), enc, judge, CFG)
    assert len(enc.calls) == 1  # one encode call for the whole batch of items
    assert [(t.item_id, t.anchor, t.positive, t.negative) for t in triplets] == [("main", "a1", "a3", "a2")]
    t = triplets[0]
    assert t.sim_pos == pytest.approx(0.8) and t.sim_neg == pytest.approx(0.9)
    assert t.judge_pos == 0.9 and t.judge_neg == 0.2
    assert stats["skip_too_few_perspectives"] == 1 and stats["skip_no_pair_above_threshold"] == 1
    assert stats["skip_no_confirmed_pair"] == 1 and stats["skip_no_negative"] == 1
    assert stats["skip_judge_errors"] == 1 and stats["skip_malformed"] == 2 and stats["skip_duplicate_id"] == 1
    assert stats["items"] == 9 and stats["triplets"] == 1
    # round 1: main (a1,a2),(a1,a3); unconfirmed (u1,u2); noneg (n1,n2),(n1,n3),(n2,n3)=0.72<0.75 not asked;
    # err (e1,e2). Round 2: main negatives of a1: a2, a4; noneg anchor n1 (pos n2): n3.
    assert stats["candidate_pairs"] == 6 and stats["judge_prompts"] == 9
    assert stats["judge_unanswered"] == 1
    assert judge.pairs.count(("a1", "a2")) == 2 and ("a1", "a4") in judge.pairs


def test_mining_without_judge_uses_thresholds():
    triplets, stats = mine_triplets(items(), FakeEncoder(), None, CFG)
    # main: most similar pair (a1,a2); remaining below 0.75 most similar to a1: a3 is 0.8 -> excluded, a4 = 0
    # err: (e1,e2) then e3 (cos 0 with e1). unconfirmed/noneg: no remaining sentence below the threshold.
    assert [(t.item_id, t.anchor, t.positive, t.negative) for t in triplets] == [
        ("main", "a1", "a2", "a4"), ("err", "e1", "e2", "e3")]
    assert triplets[0].judge_pos is None and triplets[0].judge_neg is None
    assert stats["skip_no_negative"] == 2 and stats["skip_no_confirmed_pair"] == 0
    assert stats["judge_prompts"] == 0


def test_mining_batches_and_max_triplets():
    enc = FakeEncoder()
    mine_triplets(items(), enc, None, MiningConfig(masking="none", batch_size=2))
    assert len(enc.calls) == 3  # 6 valid distinct items, 2 per batch
    main = item("main", ["a1", "a2", "a3", "a4"])
    VEC_EXTRA = {"b1": [0, 0, 1], "b2": [0, 0.1, math.sqrt(0.99)]}
    VEC.update(VEC_EXTRA)
    try:
        main.perspectives += [Perspective("X", "b1"), Perspective("Y", "b2")]
        triplets, _ = mine_triplets([main], FakeEncoder(), None,
                                    MiningConfig(masking="none", max_triplets_per_item=2))
    finally:
        for k in VEC_EXTRA:
            del VEC[k]
    # pairs >= .75 by similarity: (a4,b1)=1.0, (a4,b2)=.995, (b1,b2)=.995, (a1,a2)=.9, (a1,a3)=.8
    # disjoint picks: (a4,b1), then (a1,a2). Negatives: for a4 below .75: a3 (.6); for a1: a4 (0).
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [("a4", "b1", "a3"), ("a1", "a2", "a4")]


def test_mining_masks_to_find_pairs_but_triplets_hold_the_raw_prefix_stripped_text():
    situation = "Lying to a friend about a gift"
    texts = ["In the perspective of Honesty, Lying hurts the friend.", "Gifts matter, to friends!", "Other."]
    masked = {"[KW] hurts the [KW]": [1, 0, 0], "Gifts matter to friends": [0.9, S, 0], "Other": [0, 1, 0]}
    VEC.update(masked)
    try:
        enc = FakeEncoder()
        paper, _ = mine_triplets([item("m", texts, situation)], enc, None, MiningConfig())
        enc_masked = FakeEncoder()
        old, _ = mine_triplets([item("m", texts, situation)], enc_masked, None, MiningConfig(train_text="masked"))
    finally:
        for k in masked:
            del VEC[k]
    # keywords {lying, friend, gift}: "Gifts"/"friends" are other tokens; the encoder sees the masked form
    # (punctuation dropped) either way: masking only finds the candidate pairs
    assert enc.calls == enc_masked.calls == [["[KW] hurts the [KW]", "Gifts matter to friends", "Other"]]
    # paper: the triplet holds the unmasked sentences, "In the perspective of Honesty," stripped, punctuation kept
    t = paper[0]
    assert (t.anchor, t.positive, t.negative) == ("Lying hurts the friend.", "Gifts matter, to friends!", "Other.")
    assert t.text == "raw" and (t.raw_anchor, t.raw_negative) == ("Lying hurts the friend.", "Other.")
    # the masked option keeps the earlier behaviour
    t = old[0]
    assert (t.anchor, t.positive, t.negative) == ("[KW] hurts the [KW]", "Gifts matter to friends", "Other")
    assert t.text == "masked" and t.raw_anchor == "Lying hurts the friend."


# --- the paper's search order: every candidate pair, every remaining sentence, the verbatim prompt -------------

ANGLES = {"p1": 0, "p2": 20, "p3": 35, "p4": 90}  # unit vectors at these angles (degrees)


class AngleEncoder:
    def encode(self, texts, **kwargs):
        return np.array([[math.cos(math.radians(ANGLES[t])), math.sin(math.radians(ANGLES[t]))] for t in texts])


class PromptJudge:
    """Says "same" (1.0) only for the given unordered pairs; records every prompt it was given."""

    def __init__(self, same):
        self.same, self.prompts = {frozenset(p) for p in same}, []

    def prob_yes(self, prompts):
        self.prompts.extend(prompts)
        pairs = [frozenset(re.findall(r"Sentence [AB]: (\w+)", p)) for p in prompts]
        return [1.0 if pair in self.same else 0.0 for pair in pairs]


def _four():
    return [item("four", ["p1", "p2", "p3", "p4"])]


def test_every_candidate_pair_is_tried_and_the_third_one_confirmed():
    # cosines: (p2,p3) cos 15 = .966, (p1,p2) cos 20 = .940, (p1,p3) cos 35 = .819 (all >= .75);
    # p4 is at cos 90 = 0, cos 70 = .342, cos 55 = .574 from p1, p2, p3 (no candidate)
    judge = PromptJudge([("p1", "p3")])
    triplets, stats = mine_triplets(_four(), AngleEncoder(), judge, MiningConfig(masking="none"))
    assert stats["candidate_pairs"] == 3
    # the 3rd pair is anchor p1 / positive p3; negatives of p1 by cosine: p2 (.940, "different") -> p2
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [("p1", "p3", "p2")]
    assert triplets[0].sim_pos == pytest.approx(math.cos(math.radians(35)), abs=1e-6)
    # the verbatim prompt of SPEC.md, without any chat template, the pairs in similarity order
    assert judge.prompts[0] == ("Determine if the following sentence pair expresses the *same* meaning or "
                                "perspective. Respond strictly with 'Yes' or 'No'.\n\nSentence A: p2\n"
                                "Sentence B: p3\nAnswer:")
    assert [re.findall(r"Sentence [AB]: (\w+)", p) for p in judge.prompts[:3]] == [
        ["p2", "p3"], ["p1", "p2"], ["p1", "p3"]]
    # window 4: both remaining sentences asked as negatives at once (p2, p4); window 1: only p2 -> 3 + 1
    assert stats["judge_prompts"] == 5
    one, stats1 = mine_triplets(_four(), AngleEncoder(), PromptJudge([("p1", "p3")]),
                                MiningConfig(masking="none", judge_window=1))
    assert one == triplets and stats1["judge_prompts"] == 4


def test_a_cap_of_two_pairs_skips_the_item_and_counts_it():
    judge = PromptJudge([("p1", "p3")])
    triplets, stats = mine_triplets(_four(), AngleEncoder(), judge, MiningConfig(masking="none", max_pairs_judged=2))
    assert triplets == [] and stats["skip_pair_cap"] == 1 and stats["skip_no_confirmed_pair"] == 0
    assert stats["judge_prompts"] == 2  # (p2,p3), (p1,p2); (p1,p3) never asked
    # a cap that is not reached changes nothing
    capped3, _ = mine_triplets(_four(), AngleEncoder(), PromptJudge([("p1", "p3")]),
                               MiningConfig(masking="none", max_pairs_judged=3))
    assert [(t.anchor, t.positive, t.negative) for t in capped3] == [("p1", "p3", "p2")]


def test_every_remaining_sentence_is_tried_for_the_negative():
    # p2 is also "same" as p1: the negative is the next one down, p4 (cos 0)
    same = [("p1", "p3"), ("p1", "p2")]
    # candidate pairs in order: (p2,p3) No, (p1,p2) Yes -> anchor p1, positive p2; negatives of p1: p3 (.819,
    # "same"), p4 (0, "different")
    triplets, _ = mine_triplets(_four(), AngleEncoder(), PromptJudge(same), MiningConfig(masking="none"))
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [("p1", "p2", "p4")]
    triplets, stats = mine_triplets(_four(), AngleEncoder(), PromptJudge(same),
                                    MiningConfig(masking="none", max_negatives_judged=1))
    assert triplets == [] and stats["skip_negative_cap"] == 1 and stats["skip_no_negative"] == 0


def test_mining_prompt_options():
    judge = PromptJudge([("p1", "p3")])
    mine_triplets(_four(), AngleEncoder(), judge, MiningConfig(masking="none", prompt="situation"))
    assert judge.prompts[0].startswith("Situation: A situation\n\nSentence A: p2\nSentence B: p3\n\n")
    judge = PromptJudge([("p1", "p3")])
    mine_triplets(_four(), AngleEncoder(), judge, MiningConfig(masking="none", prompt_template="{a} vs {b}?"))
    assert judge.prompts[0] == "p2 vs p3?"


def test_mining_resume_from_partial_file(tmp_path):
    out = tmp_path / "triplets.jsonl"
    full, full_stats = mine_triplets(items(), FakeEncoder(), FakeJudge(), CFG, out_path=out)
    records = out.read_text().splitlines()
    assert [json.loads(r)["item_id"] for r in records] == ["main", "few", "far", "unconfirmed", "noneg", "err"]
    assert json.loads(records[0])["status"] == "ok" and json.loads(records[4])["status"] == "no_negative"
    assert load_triplets(out) == full

    # a crash after two records and half of the third
    out.write_text(records[0] + "\n" + records[1] + "\n" + records[2][:15])
    judge = FakeJudge()
    again, stats = mine_triplets(items(), FakeEncoder(), judge, CFG, out_path=out)
    assert again == full
    assert stats["resumed"] == 2
    assert not any(p[0] in ("a1", "f1") for p in judge.pairs)  # resumed items are not judged again
    for key in [f"skip_{r}" for r in SKIP_REASONS] + ["triplets", "items"]:
        assert stats[key] == full_stats[key], key
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and lines[2] == records[2][:15]  # the torn line is closed off and ignored
    assert load_triplets(out) == full

    # judge failures are retried on resume; everything else is done
    judge = FakeJudge()
    _, stats = mine_triplets(items(), FakeEncoder(), judge, CFG, out_path=out)
    assert stats["resumed"] == 5 and {p[0] for p in judge.pairs} == {"e1"}

    _, stats = mine_triplets(items(), FakeEncoder(), FakeJudge(), CFG, out_path=out, resume=False)
    assert stats["resumed"] == 0 and len(out.read_text().splitlines()) == 6


def test_judge_exception_and_bad_answers_count_as_unanswered():
    class Broken:
        def prob_yes(self, prompts):
            raise RuntimeError("server gone")

    class Short:
        def prob_yes(self, prompts):
            return ["nan-ish", float("nan")][:len(prompts)]

    for judge in (Broken(), Short()):
        triplets, stats = mine_triplets([item("main", ["a1", "a2", "a3", "a4"])], FakeEncoder(), judge, CFG)
        assert triplets == [] and stats["skip_judge_errors"] == 1 and stats["judge_unanswered"] == 2


# --- evaluation, fine-tuning, search on MiniLM -------------------------------------------------------


class VecModel:
    def __init__(self, table):
        self.table = table

    def encode(self, texts, **kwargs):
        return np.array([self.table[t] for t in texts], dtype=float)


def test_evaluate_estimator_hand_computed():
    table = {"a1": [1, 0], "p1": [1, 0], "n1": [0, 1], "a2": [0, 1], "p2": [0, 1], "n2": [1, 0],
             "a3": [1, 0], "p3": [0, 1], "n3": [1, 0]}
    trips = [{"anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in (1, 2)]
    m = evaluate_estimator(VecModel(table), trips, batch_size=2, scale=1.0)
    # row 1: a1 . [p1, p2, n1, n2] = [1, 0, 0, 1]; row 2: a2 . [...] = [0, 1, 1, 0]
    assert m["accuracy"] == 1.0 and m["n"] == 2
    assert m["mnrl_loss"] == pytest.approx(math.log((2 * math.e + 2) / math.e))
    assert m["cos_pos"] == 1.0 and m["cos_neg"] == 0.0
    trips.append({"anchor": "a3", "positive": "p3", "negative": "n3"})
    m = evaluate_estimator(VecModel(table), trips, batch_size=2, scale=1.0)
    # third chunk alone: a3 . [p3, n3] = [0, 1] -> loss log(1 + e); weighted mean over 3 rows
    expected = (2 * math.log((2 * math.e + 2) / math.e) + math.log(1 + math.e)) / 3
    assert m["accuracy"] == pytest.approx(2 / 3) and m["mnrl_loss"] == pytest.approx(expected)
    assert evaluate_estimator(VecModel(table), [])["accuracy"] is None


def _old_accuracy(table, trips):
    """The accuracy evaluate_estimator computed by hand before TripletEvaluator (issue 18)."""
    def unit(t):
        v = np.asarray(table[t], dtype=np.float64)
        return v / max(np.linalg.norm(v), 1e-12)

    return float(np.mean([unit(t["anchor"]) @ unit(t["positive"]) > unit(t["anchor"]) @ unit(t["negative"])
                          for t in trips]))


def test_evaluate_estimator_accuracy_is_triplet_evaluators_with_the_old_numbers():
    # unnormalised vectors; a2's positive and negative are one degree apart; a3 has p3 == n3 (a tie: wrong)
    deg = math.radians(1)
    table = {"a1": [3, 0], "p1": [2, 0.5], "n1": [0, 4],
             "a2": [1, 0], "p2": [math.cos(deg), math.sin(deg)], "n2": [math.cos(2 * deg), -math.sin(2 * deg)],
             "a3": [1, 1], "p3": [0, 1], "n3": [0, 1],
             "a4": [0, 1], "p4": [1, 0], "n4": [0.1, 1]}
    trips = [{"anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in (1, 2, 3, 4)]
    m = evaluate_estimator(VecModel(table), trips, per_triplet=True, with_loss=False)
    assert m["correct"] == [True, True, False, False]
    assert m["accuracy"] == 0.5 == _old_accuracy(table, trips)
    cos = (2 / math.hypot(2, 0.5) + math.cos(deg) + 1 / math.sqrt(2) + 0) / 4
    assert m["cos_pos"] == pytest.approx(cos, abs=1e-12)


def test_evaluate_estimator_matches_triplet_evaluator_on_minilm(minilm):
    try:
        from sentence_transformers.sentence_transformer.evaluation import (
            TripletEvaluator,
        )
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.evaluation import TripletEvaluator

    trips = _synthetic_triplets(8)
    ours = evaluate_estimator(minilm, trips, per_triplet=True)
    direct = TripletEvaluator([t["anchor"] for t in trips], [t["positive"] for t in trips],
                              [t["negative"] for t in trips], main_similarity_function="cosine",
                              write_csv=False)(minilm)
    assert set(direct) == {"cosine_accuracy"}  # the key this sentence-transformers version reports
    assert ours["accuracy"] == pytest.approx(direct["cosine_accuracy"], abs=1e-6)
    assert ours["accuracy"] == pytest.approx(np.mean(ours["correct"]), abs=1e-12)


@pytest.mark.parametrize("wins,losses,p", [
    (0, 0, 1.0), (1, 1, 1.0), (0, 1, 1.0), (5, 5, 1.0),
    (4, 0, 2 / 16),  # 2 * (1/2)^4
    (4, 1, 2 * (1 + 5) / 32),
    (3, 7, 2 * (1 + 10 + 45 + 120) / 1024),
    (10, 2, 2 * (1 + 12 + 66) / 4096),
    (0, 20, 2 / 2 ** 20),
])
def test_sign_test_hand_computed(wins, losses, p):
    from opgrpo.estimator.evaluate import _sign_test

    assert _sign_test(wins, losses) == pytest.approx(p, rel=1e-9)
    assert _sign_test(losses, wins) == pytest.approx(p, rel=1e-9)


def test_sign_test_equals_the_old_exact_sum():
    from math import comb

    from opgrpo.estimator.evaluate import _sign_test

    def old(w, l):
        n, k = w + l, min(w, l)
        return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0

    for w in range(0, 31, 3):
        for l in range(0, 31, 4):
            assert _sign_test(w, l) == pytest.approx(old(w, l), rel=1e-9, abs=1e-300)


def _synthetic_triplets(n=16):
    # the hard negative shares the anchor's wording; the positive shares only its meaning
    topics = [("honesty", "telling the truth"), ("family", "parents and children"), ("safety", "avoiding harm"),
              ("fairness", "treating people equally"), ("freedom", "choosing for oneself"),
              ("health", "a body that is well"), ("loyalty", "standing by friends"), ("privacy", "keeping secrets")]
    out = []
    for i in range(n):
        (a, a_syn), (b, _) = topics[i % 8], topics[(i + 3) % 8]
        out.append({"anchor": f"[KW] should value {a} in case {i}",
                    "positive": f"what matters is {a_syn}",
                    "negative": f"[KW] should value {b} in case {i}"})
    return out


def test_split_triplets_deterministic():
    trips = list(range(20))
    train, val = split_triplets(trips, 0.1, 42)
    assert len(val) == 2 and sorted(train + val) == trips
    assert split_triplets(trips, 0.1, 42) == (train, val) and split_triplets(trips, 0.1, 1) != (train, val)
    with pytest.raises(ValueError, match="val_fraction"):
        split_triplets(trips, 1.0, 42)


def test_train_estimator_few_steps(minilm_path, minilm, tmp_path):
    from sentence_transformers import SentenceTransformer

    trips = _synthetic_triplets(16)
    cfg = TrainConfig(batch_size=4, max_steps=2, val_fraction=0.2, lr=5e-5, eval_batch_size=32)
    metrics = train_estimator(str(minilm_path), trips, cfg, tmp_path / "est", device="cpu")
    assert metrics["steps"] == 2 and metrics["train_size"] == 12 and metrics["val_size"] == 4
    assert math.isfinite(metrics["train_loss"]) and metrics["val_loss"] > 0
    tuned = SentenceTransformer(str(tmp_path / "est"), device="cpu")
    assert not (tmp_path / "est" / "checkpoints").exists()
    x = ["[KW] values honesty above all"]
    assert tuned.encode(x).shape == minilm.encode(x).shape
    assert not np.allclose(tuned.encode(x), minilm.encode(x), atol=1e-6)  # weights moved
    # the 4 val triplets fit one eval batch, so our MNRL loss equals the trainer's validation loss
    _, val = split_triplets(trips, 0.2, 42)
    ours = evaluate_estimator(tuned, val, batch_size=32, scale=60.0)
    assert ours["mnrl_loss"] == pytest.approx(metrics["val_loss"], rel=1e-3)


def test_search_two_trials(minilm_path, tmp_path):
    trips = _synthetic_triplets(12)
    res = search_hyperparameters(str(minilm_path), trips, SearchConfig(n_trials=2, batch_sizes=[4, 8]),
                                 tmp_path / "search", base=TrainConfig(max_steps=1, val_fraction=0.25), device="cpu")
    assert res["n_trials"] == 2 and math.isfinite(res["best_value"])
    best = json.loads((tmp_path / "search" / "best_params.json").read_text())
    assert set(best) == {"lr", "batch_size", "epochs", "warmup_ratio"}
    assert set(best) <= set(TrainConfig.__dataclass_fields__)
    assert 1e-6 <= best["lr"] <= 5e-5 and best["batch_size"] in (4, 8) and 2 <= best["epochs"] <= 5
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "search" / "trials.csv")) == 2


@pytest.mark.slow
def test_run_estimator_stage_tiny(minilm_path, tmp_path):
    from opgrpo.benchmark import load_items, sample_data_path

    train_items, _ = load_items(sample_data_path("train"))
    # the CPU preset's mining: the sample pair labels as judge, MiniLM pairs from 0.3 (every item yields one)
    cfg = EstimatorConfig(base_model=str(minilm_path), mining=MiningConfig(pair_threshold=0.3, max_pairs_judged=100),
                          judge=JudgeConfig(kind="labels", labels_file=str(sample_data_path("pair_labels"))),
                          train=TrainConfig(batch_size=8, max_steps=2, val_fraction=0.25))
    res, models = run_estimator_stage(train_items[:12], cfg, tmp_path, device="cpu")
    saved = json.loads((tmp_path / "estimator" / "metrics.json").read_text())
    assert saved["model_path"] == res["model_path"] == str(tmp_path / "estimator" / "model")
    assert res["mining"]["items"] == 12 and res["mining"]["triplets"] == 12
    mined = load_triplets(tmp_path / "estimator" / "triplets.jsonl")
    assert len(mined) == 12 and all(t.judge_pos == 1.0 and t.judge_neg == 0.0 for t in mined)
    # every anchor/positive is a labelled pair: the names of the raw sentences are in the labels file
    from opgrpo.estimator.pair_labels import PairLabels

    labels = PairLabels.load(sample_data_path("pair_labels"))
    by_text = {p.text: p.name for it in train_items for p in it.perspectives}
    assert all(labels.get(t.item_id, by_text[t.raw_anchor], by_text[t.raw_positive]) for t in mined)
    assert res["trained"] and res["train"]["steps"] == 2 and res["train"]["train_size"] == 9
    assert res["base"]["n"] == res["finetuned"]["n"] == 3
    assert res["base"]["mnrl_loss"] != res["finetuned"]["mnrl_loss"]
    assert (tmp_path / "estimator" / "model" / "config_sentence_transformers.json").exists()
    from opgrpo.estimator.identity import estimator_identity, training_record

    assert training_record(tmp_path / "estimator" / "model") == {"trained": True, "base_model": str(minilm_path),
                                                                 "triplets": 12}
    assert estimator_identity(tmp_path / "estimator" / "model", minilm_path)["tuned"] is True
    # the stage hands back the models it evaluated (for the held-out evaluation): the same numbers again
    _, val = split_triplets(mined, 0.25, 42)
    for name in ("base", "finetuned"):
        again = evaluate_estimator(getattr(models, name), val, batch_size=32, scale=60.0)
        assert again["mnrl_loss"] == pytest.approx(res[name]["mnrl_loss"], rel=1e-5)


def test_run_estimator_stage_without_triplets_keeps_base(minilm_path, minilm, tmp_path):
    from sentence_transformers import SentenceTransformer

    its = [item("x", ["Honesty matters here.", "The weather is nice."]), item("y", ["only one"])]
    cfg = EstimatorConfig(base_model=str(minilm_path))
    res, models = run_estimator_stage(its, cfg, tmp_path, device="cpu")
    assert not res["trained"] and res["mining"]["triplets"] == 0
    assert models.finetuned is models.base  # nothing trained: the saved estimator is the base model
    assert res["mining"]["skip_no_pair_above_threshold"] == 1 and res["mining"]["skip_too_few_perspectives"] == 1
    kept = SentenceTransformer(res["model_path"], device="cpu")
    np.testing.assert_allclose(kept.encode(["abc"]), minilm.encode(["abc"]), atol=1e-6)
    # the same settings resume from triplets.jsonl; other mining settings start again
    assert run_estimator_stage(its, cfg, tmp_path, device="cpu")[0]["mining"]["resumed"] == 2
    cfg.mining.pair_threshold = -1.0  # every pair is a candidate; "x" has no third sentence for a negative
    res, models = run_estimator_stage(its, cfg, tmp_path, device="cpu")
    assert res["mining"]["resumed"] == 0 and res["mining"]["skip_no_negative"] == 1


def test_config_problems_name_every_bad_key(tmp_path):
    assert EstimatorConfig().problems() == [] and EstimatorConfig().validate() is not None
    cfg = EstimatorConfig(mining=MiningConfig(pair_threshold=1.2, masking="words"),
                          judge=JudgeConfig(kind="oracle", labels_file=str(tmp_path / "none.csv"), unlabelled="same"),
                          train=TrainConfig(val_fraction=1.0))
    keys = [p.split(":")[0] for p in cfg.problems()]
    assert keys == ["mining.pair_threshold", "mining.masking", "judge.kind", "judge.labels_file", "judge.unlabelled",
                    "train.val_fraction"]
    assert JudgeConfig(kind="labels").problems() == ["labels_file: judge kind 'labels' needs a CSV/JSONL labels file"]
    with pytest.raises(ValueError, match="estimator.mining.pair_threshold: must be in") as err:
        cfg.validate()
    assert "estimator.train.val_fraction" in str(err.value)


def test_new_settings_are_checked_naming_the_key():
    cfg = EstimatorConfig(mining=MiningConfig(train_text="tokens", max_pairs_judged=0, max_negatives_judged=-2,
                                              judge_window=0, prompt="mine", prompt_template="{a} {c}"),
                          judge=JudgeConfig(mode="sample", max_new_tokens=0),
                          search=SearchConfig(mnrl_scale=0.0, val_fraction=0.0, batch_sampler="random"))
    keys = [p.split(":")[0] for p in cfg.problems()]
    assert keys == ["mining.train_text", "mining.max_pairs_judged", "mining.max_negatives_judged",
                    "mining.judge_window", "mining.prompt", "mining.prompt_template", "judge.mode",
                    "judge.max_new_tokens", "search.mnrl_scale", "search.batch_sampler", "search.val_fraction"]
    http = JudgeConfig(kind="http", mode="logprob", chat_template=False)
    assert [p.split(":")[0] for p in http.problems()] == ["chat_template"]
    assert JudgeConfig(kind="http", mode="generate", chat_template=False).problems() == []
    assert MiningConfig(max_pairs_judged=-1, max_negatives_judged=3).problems() == []


def test_search_runs_at_mnrl_scale_20_on_a_90_10_split_even_when_training_uses_all(monkeypatch, tmp_path):
    import opgrpo.estimator.train as train_mod

    seen = []

    def fake_train(base_model, triplets, config, output_dir, **kwargs):
        seen.append(config)
        return {"val_loss": config.lr}

    monkeypatch.setattr(train_mod, "train_estimator", fake_train)
    paper_train = TrainConfig(val_fraction=0.0)  # the final training takes every triplet
    res = search_hyperparameters("base", list(range(20)), SearchConfig(n_trials=3), tmp_path, base=paper_train)
    assert res["n_trials"] == 3 and len(seen) == 3
    for c in seen:  # hpo.py: MultipleNegativesRankingLoss(model) = scale 20; train_test_split(test_size=0.1, seed=42)
        assert (c.mnrl_scale, c.val_fraction, c.seed, c.eval_batch_size, c.batch_sampler) == (
            20.0, 0.1, 42, 8, "no_duplicates")
    assert res["best_value"] == min(c.lr for c in seen)
    with pytest.raises(ValueError, match="search.val_fraction"):
        search_hyperparameters("base", list(range(20)), SearchConfig(val_fraction=0.0), tmp_path, base=paper_train)


def test_paper_and_cpu_presets(compose):
    paper = compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"]).estimator
    m, j, t, s = paper.mining, paper.judge, paper.train, paper.search
    assert (m.pair_threshold, m.train_text, m.max_pairs_judged, m.max_negatives_judged, m.prompt, m.masking) == (
        0.75, "raw", -1, -1, "authors", "situation")
    assert (j.kind, j.mode, j.chat_template, j.max_new_tokens) == ("transformers", "generate", False, 10)
    assert (t.val_fraction, t.mnrl_scale, t.batch_size, t.epochs, t.seed) == (0.0, 60.0, 32, 2, 42)
    assert (s.mnrl_scale, s.val_fraction, s.seed, s.n_trials, list(s.batch_sizes)) == (20.0, 0.1, 42, 20, [32, 64, 128])
    http = compose(["experiment=paper", "estimator=http_judge", "estimator.judge.base_url=http://h/v1",
                    "estimator.judge.model=m"]).estimator.judge
    assert (http.kind, http.mode, http.chat_template) == ("http", "generate", False)
    cpu = compose(["experiment=cpu_demo"]).estimator
    assert (cpu.mining.max_pairs_judged, cpu.mining.max_negatives_judged, cpu.train.val_fraction) == (100, 100, 0.1)
    assert cpu.judge.kind == "labels" and cpu.train.batch_sampler == "no_duplicates"
