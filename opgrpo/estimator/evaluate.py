"""How good an estimator is: triplet accuracy and MNRL loss, base vs fine-tuned with a sign test, held-out.

``evaluate_estimator`` scores one model on triplets (cos(a, p) > cos(a, n), mean similarities, the MNRL
loss); ``paired_comparison`` counts the triplets fine-tuning fixed and broke, with an exact sign test;
``evaluate_heldout`` runs both on items the estimator never trained on (label-defined triplets, and
triplets mined from the test items), reusing the models the stage already holds.

Library calls: the accuracy is sentence-transformers' ``TripletEvaluator`` (cosine, margin 0) and the cosines
its ``pairwise_cos_sim``; the sign test is ``scipy.stats.binomtest``. Hand-written, and why:

- the encoding: every distinct sentence is encoded once, in one ``model.encode`` call (triplet sets reuse
  sentences), and symmetrically (the estimator compares perspectives with perspectives), where
  ``TripletEvaluator`` would encode anchors, positives and negatives separately through ``encode_query`` /
  ``encode_document``; the evaluator is handed those embeddings (``_EmbeddedTripletEvaluator``);
- ``correct`` per triplet and the mean cosines: ``TripletEvaluator`` returns only the mean accuracy;
- the MNRL loss: sentence-transformers' ``MultipleNegativesRankingLoss`` runs the model's forward pass on
  tokenised features; this one is computed from the embeddings already at hand (and works for any encoder
  with ``encode``), with the trainer's chunking so it matches its validation loss.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.estimator.config import EstimatorConfig
from opgrpo.estimator.mining import mine_triplets
from opgrpo.estimator.triplets import triplet_texts
from opgrpo.models.devices import resolve_device
from opgrpo.text.clean import clean_texts

logger = logging.getLogger(__name__)


def _embedded_triplet_evaluator():
    try:  # sentence-transformers >= 6 moved the evaluators (the old path warns)
        from sentence_transformers.sentence_transformer.evaluation import (
            TripletEvaluator,
        )
    except ImportError:
        from sentence_transformers.evaluation import TripletEvaluator

    class _EmbeddedTripletEvaluator(TripletEvaluator):
        """``TripletEvaluator`` whose anchors, positives and negatives are embeddings already computed."""

        def embed_inputs(self, model: Any, sentences: Any, *args: Any, **kwargs: Any) -> Any:
            return sentences

        def store_metrics_in_model_card_data(self, *args: Any, **kwargs: Any) -> None:
            pass  # an evaluation of ours, not a line in the model's card

    return _EmbeddedTripletEvaluator


def evaluate_estimator(model_or_path: Any, triplets: list[Any], *, batch_size: int = 32,
                       scale: float = 60.0, device: str = "auto", per_triplet: bool = False,
                       with_loss: bool = True) -> dict[str, Any]:
    """Triplet accuracy (cos(a, p) > cos(a, n), by ``TripletEvaluator``), mean similarities and the MNRL loss.

    ``per_triplet`` adds ``correct``, one bool per triplet (for ``paired_comparison``). ``with_loss=False``
    leaves ``mnrl_loss`` None: for triplet sets that reuse sentences (both directions of a pair) the
    in-chunk candidates contain the anchor itself, and the loss means nothing.
    The loss is MNRL over consecutive chunks of ``batch_size`` triplets (in-chunk positives and negatives
    as candidates), averaged with chunk sizes as weights, like the trainer's validation loss.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import pairwise_cos_sim

    if not triplets:
        return {"n": 0, "accuracy": None, "mnrl_loss": None, "cos_pos": None, "cos_neg": None}
    # a path is a str, and str has .encode too: test for the path first
    model = SentenceTransformer(str(model_or_path), device=resolve_device(device)) if isinstance(
        model_or_path, (str, Path)) else model_or_path
    a, p, n = triplet_texts(triplets)
    a, p, n = (clean_texts(x)[0] for x in (a, p, n))
    unique = list(dict.fromkeys(a + p + n))  # triplet sets reuse sentences: encode each once
    row = {t: i for i, t in enumerate(unique)}
    emb = model.encode(unique, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False).astype(np.float64)[[row[t] for t in a + p + n]]
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    k = len(triplets)
    ea, ep, en = emb[:k], emb[k:2 * k], emb[2 * k:]
    evaluator = _embedded_triplet_evaluator()(ea, ep, en, main_similarity_function="cosine",
                                              similarity_fn_names=["cosine"], write_csv=False)
    accuracy = float(evaluator(model)[evaluator.primary_metric])
    cos_pos, cos_neg = (pairwise_cos_sim(ea, x).numpy() for x in (ep, en))  # the evaluator's own cosines
    total = 0.0
    for s in range(0, k if with_loss else 0, max(1, batch_size)):
        qa, docs = ea[s:s + batch_size], np.concatenate([ep[s:s + batch_size], en[s:s + batch_size]])
        logits = scale * qa @ docs.T
        logits -= logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        total += float(-logp[np.arange(len(qa)), np.arange(len(qa))].sum())
    out = {"n": k, "accuracy": accuracy, "mnrl_loss": total / k if with_loss else None,
           "cos_pos": float(cos_pos.mean()), "cos_neg": float(cos_neg.mean())}
    if per_triplet:
        out["correct"] = (cos_pos > cos_neg).tolist()
    return out


def _sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (``scipy.stats.binomtest``, p = 0.5) of ``wins`` against ``losses``; 1.0 if none."""
    from scipy.stats import binomtest

    n = wins + losses
    return float(binomtest(wins, n, 0.5, alternative="two-sided").pvalue) if n else 1.0


def paired_comparison(base_correct: list[bool], tuned_correct: list[bool],
                      groups: list[Any] | None = None) -> dict[str, Any]:
    """How many triplets fine-tuning fixed and broke, with a two-sided exact sign test on those changes.

    ``p_value`` is the probability, if fixes and breaks were equally likely, of a split at least this
    uneven (1.0 when nothing changed). Triplets that share an anchor/positive pair are not independent:
    with ``groups`` (one key per triplet, e.g. the pair) the same test is also run on the groups whose
    accuracy went up or down (``groups_improved``, ``groups_worsened``, ``groups_p_value``).
    """
    if len(base_correct) != len(tuned_correct):
        raise ValueError("paired_comparison needs the same triplets for both models")
    fixed = sum(1 for b, t in zip(base_correct, tuned_correct) if t and not b)
    broken = sum(1 for b, t in zip(base_correct, tuned_correct) if b and not t)
    out: dict[str, Any] = {"fixed": fixed, "broken": broken, "p_value": _sign_test(fixed, broken)}
    if groups is not None:
        delta: dict[Any, int] = {}
        for g, b, t in zip(groups, base_correct, tuned_correct):
            delta[g] = delta.get(g, 0) + int(t) - int(b)
        up, down = sum(d > 0 for d in delta.values()), sum(d < 0 for d in delta.values())
        out.update({"groups": len(delta), "groups_improved": up, "groups_worsened": down,
                    "groups_p_value": _sign_test(up, down)})
    return out


def evaluate_heldout(base: Any, finetuned: Any, config: EstimatorConfig, item_sets: dict[str, list],
                     mined_path: Path | str) -> dict[str, Any]:
    """Base vs fine-tuned estimator on items it never trained on (the test items; the validation items).

    ``base`` and ``finetuned`` are loaded sentence-transformers models (anything with ``encode``);
    ``item_sets`` maps a set name ("test_items", "val_items") to its items. Returns, per set and triplet
    kind, ``n``, both models' ``evaluate_estimator`` metrics and the ``paired_comparison``.

    "labelled" (when ``config.judge.labels_file`` is set): every triplet the human pair labels define
    on the items, independent of any model, with the triplets fine-tuning fixed and broke and a sign
    test, also counted by labelled pair (triplets sharing a pair are not independent). This is the
    headline check; the validation items serve as a dev set for preset choices. The same triplets in three
    text forms (``labelled_triplets``): "labelled" all keyword-masked, "labelled_raw" all as written (the
    paper's training text), "labelled_reward" a masked anchor against unmasked positive and negative (how the
    reward compares a generated sentence with the references), so that estimators trained on either
    ``mining.train_text`` are compared on every form.

    "mined" (set "test_items" only): triplets mined from them as training mines, with the *base* model's
    similarities, written to ``mined_path``; their texts are ``mining.train_text``. A diagnostic, biased
    either way: without a judge the base scores 1.0 by construction; with one, the hard negative is the base model's most confusable sentence,
    which favours any other model. An LLM judge (transformers/http) is not re-run here (cost): those runs
    mine thresholds-only.
    """
    from opgrpo.estimator.pair_labels import PairLabels, labelled_triplets
    from opgrpo.judges import build_judge

    models = {"base": base, "finetuned": finetuned}
    labels, judge = None, None  # thresholds-only mining unless the (free) labels are the judge
    if config.judge.labels_file:
        labels = PairLabels.load(config.judge.labels_file)  # read once for the triplets and the judge
        if config.judge.kind == "labels":
            judge = build_judge("labels", labels=labels, unlabelled=config.judge.unlabelled)
    out: dict = {}
    for set_name, items in item_sets.items():
        triplet_sets = {}
        if labels is not None:
            for problem in labels.check_against(items):
                logger.warning("%s", problem)
            for name, text in (("labelled", "masked"), ("labelled_raw", "raw"), ("labelled_reward", "reward")):
                triplet_sets[name] = labelled_triplets(items, labels, config.mining.masking, config.judge.unlabelled,
                                                       text=text)
        if set_name == "test_items":
            triplet_sets["mined"], stats = mine_triplets(items, base, judge, config.mining, out_path=Path(mined_path),
                                                         resume=False)
            out.setdefault(set_name, {})["mined"] = {"n": len(triplet_sets["mined"]), "mining": stats}
        for name, triplets in triplet_sets.items():
            target = out.setdefault(set_name, {}).setdefault(name, {})
            target["n"] = len(triplets)
            if not triplets:
                continue
            res = {k: evaluate_estimator(m, triplets, scale=config.train.mnrl_scale, per_triplet=True,
                                         with_loss=name == "mined") for k, m in models.items()}
            pairs = [(t.item_id, frozenset((t.raw_anchor, t.raw_positive))) for t in triplets]
            paired = paired_comparison(res["base"].pop("correct"), res["finetuned"].pop("correct"),
                                       groups=pairs if name.startswith("labelled") else None)
            target.update(res)
            target.update(paired)
            logger.info("estimator on %d %s triplets of the %s: accuracy %.3f -> %.3f (fixed %d, broken %d, sign "
                        "test p=%.3g), mean cos(a,p)-cos(a,n) %.3f -> %.3f", len(triplets), name,
                        set_name.replace("_", " "), res["base"]["accuracy"], res["finetuned"]["accuracy"],
                        paired["fixed"], paired["broken"], paired["p_value"],
                        res["base"]["cos_pos"] - res["base"]["cos_neg"],
                        res["finetuned"]["cos_pos"] - res["finetuned"]["cos_neg"])
            if "groups" in paired and name == "labelled":
                logger.info("... by labelled pair: %d of %d improved, %d worsened (sign test p=%.3g)",
                            paired["groups_improved"], paired["groups"], paired["groups_worsened"],
                            paired["groups_p_value"])
    return out
