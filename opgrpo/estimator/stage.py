"""The estimator stage in one function: build the judge, mine triplets, (search,) fine-tune, evaluate.

``run_estimator_stage`` writes everything into ``run_dir/estimator``:

    triplets.jsonl   mining records (resumable)      model/        the fine-tuned estimator
    search/          best_params.json, trials.csv    metrics.json  mining, train, base vs fine-tuned
    triplets.meta.json  what triplets.jsonl was mined with (settings and a hash of the items): resumed only if equal

``model/opgrpo_estimator.json`` records whether training ran (opgrpo.estimator.identity.TRAINED_MARKER): with too
few triplets the base model is saved unchanged, and is then no "tuned" estimator. Mining whose judge failed on more
than ``estimator.judge.max_failure_share`` of its prompts, or that mined no triplet although items had candidate
pairs, raises ``MiningFailed`` with the judge's own error, and no model is saved.

and returns the metrics with the loaded base and fine-tuned models, so that a held-out evaluation
(``opgrpo.estimator.evaluate.evaluate_heldout``) needs no second load. The base-vs-fine-tuned numbers
here use the validation part of the mined triplets (``split_triplets`` with ``train.val_fraction`` and
``train.seed``, the same split training uses), so with tiny data it is a handful of triplets, and none with
``train.val_fraction=0`` (the paper preset trains on all triplets; the held-out items are evaluated apart).
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from opgrpo.estimator.config import EstimatorConfig, JudgeConfig
from opgrpo.estimator.evaluate import evaluate_estimator
from opgrpo.estimator.identity import write_training_record
from opgrpo.estimator.mining import mine_triplets
from opgrpo.estimator.train import search_hyperparameters, train_estimator
from opgrpo.estimator.triplets import split_triplets
from opgrpo.models.devices import resolve_device
from opgrpo.utils.redact import redact_obj

logger = logging.getLogger(__name__)


@dataclass
class EstimatorModels:
    """The stage's two sentence-transformers models, loaded once (``finetuned is base`` when untrained)."""

    base: Any
    finetuned: Any


def mining_judge(config: JudgeConfig, device: str = "auto"):
    """The judge of ``estimator.judge`` (None for kind "none"); kind "labels" reads ``labels_file``.

    An HTTP judge is checked for reachability; a labels file without one usable label is an error.
    """
    from opgrpo.judges import build_judge

    labels = None
    if (config.kind or "none").lower() == "labels":
        from opgrpo.estimator.pair_labels import PairLabels

        labels = PairLabels.load(config.labels_file)
        if not len(labels):
            raise ValueError(f"estimator.judge.labels_file: {config.labels_file} has no usable pair labels "
                             f"(columns id, name_a, name_b, label; {len(labels.errors)} bad rows)")
        logger.info("label judge: %d labelled pairs from %s (%d bad rows skipped)", len(labels),
                    config.labels_file, len(labels.errors))
    return build_judge(config.kind, purpose="yes_no", model=config.model, base_url=config.base_url,
                       api_key_env=config.api_key_env, timeout=config.timeout, max_retries=config.max_retries,
                       max_workers=config.max_workers, batch_size=config.batch_size,
                       max_length=config.max_length, device=device, dtype=config.dtype,
                       system_prompt=config.system_prompt, labels=labels, unlabelled=config.unlabelled,
                       mode=config.mode, chat_template=config.chat_template, max_new_tokens=config.max_new_tokens,
                       section="estimator.judge")


class MiningFailed(RuntimeError):
    """Triplet mining could not use its judge (failed calls above ``estimator.judge.max_failure_share``, or no
    triplet from items with candidate pairs); the message carries the judge's own error."""


def items_digest(items: list[Any]) -> str:
    """SHA-256 over what mining reads of the items, in order: each one's id, situation and reference lines."""
    digest = hashlib.sha256()
    for item in items:
        try:
            refs = [str(x) for x in item.references]
        except (AttributeError, TypeError):
            refs = []
        row = [str(getattr(item, "id", "")), str(getattr(item, "situation", "")), refs]
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def _resumable(stage_dir: Path, cfg: EstimatorConfig, items: list[Any]) -> bool:
    """Resume mining only if triplets.jsonl was mined from the same items (``items_digest``) with the same base model,
    mining and judge settings."""
    judge = {k: v for k, v in asdict(cfg.judge).items()
             if k in ("kind", "model", "base_url", "system_prompt", "labels_file", "unlabelled", "mode", "chat_template",
                      "max_new_tokens")}
    if cfg.judge.kind == "labels" and Path(cfg.judge.labels_file).is_file():  # edited labels: mine again
        judge["labels_sha1"] = hashlib.sha1(Path(cfg.judge.labels_file).read_bytes()).hexdigest()
    meta = {"base_model": cfg.base_model, "mining": asdict(cfg.mining), "judge": redact_obj(judge),  # no URL password
            "items_sha256": items_digest(items)}
    path = stage_dir / "triplets.meta.json"
    same = True
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        same = old == meta
        mined = stage_dir / "triplets.jsonl"
        if not same and isinstance(old, dict) and {**old, "items_sha256": None} == {**meta, "items_sha256": None}:
            why = ("from other items (data changed: the items' ids, situations or reference lines differ)"
                   if "items_sha256" in old else "before its items were recorded (data unknown)")
            logger.warning("%s was mined %s: mining again from scratch", mined, why)
        elif not same:
            logger.warning("%s was mined with other settings: mining again from scratch", mined)
    path.write_text(json.dumps(meta, indent=2))
    return same


def _judge_error(failures: Counter) -> str:
    """The most common judge failure with its count, and the next ones."""
    ranked = failures.most_common()
    text = "; ".join(f"{reason} ({n}x)" for reason, n in ranked[:3])
    return text + (f"; and {len(ranked) - 3} other errors" if len(ranked) > 3 else "")


NO_CANDIDATE = ("malformed", "duplicate_id", "too_few_perspectives", "no_pair_above_threshold")
"""Skip reasons of items the judge was never asked about (opgrpo.estimator.mining.SKIP_REASONS)."""


def check_mining(stats: dict[str, int], failures: Counter, judge: Any, max_failure_share: float) -> None:
    """Raise ``MiningFailed`` when the judge failed on more than ``max_failure_share`` of the prompts mining asked, or
    when a judge was asked and no triplet came of the items that had candidate pairs, resumed ones included (``stats``
    of ``mine_triplets``; ``failures``: failed prompts by reason)."""
    if judge is None:
        return
    failed, prompts = sum(failures.values()), stats.get("judge_prompts", 0)
    where = f" at {judge.where}" if hasattr(judge, "where") else ""
    error = f"; judge error: {_judge_error(failures)}" if failures else ""
    if prompts and failed / prompts > max_failure_share:
        raise MiningFailed(f"estimator mining: the judge{where} failed on {failed} of {prompts} prompts "
                           f"({failed / prompts:.0%}, more than estimator.judge.max_failure_share="
                           f"{max_failure_share:g}){error}")
    with_pairs = stats.get("items", 0) - sum(stats.get(f"skip_{r}", 0) for r in NO_CANDIDATE)
    if stats.get("triplets", 0) == 0 and with_pairs > 0:
        hint = "" if failures else (": the judge confirmed no pair (or called no remaining sentence different); check "
                                    "estimator.judge (model, mode, prompt) and estimator.mining.judge_threshold")
        raise MiningFailed(f"estimator mining: 0 triplets from {stats.get('items', 0)} items, {with_pairs} of them "
                           f"with candidate pairs ({stats.get('resumed', 0)} resumed; {prompts} judge prompts, "
                           f"{stats.get('judge_unanswered', 0)} unanswered, {failed} failed, "
                           f"{stats.get('judge_unparseable', 0)} unparseable replies){hint}{error}")


def run_estimator_stage(items_train: list[Any], config: EstimatorConfig | None = None,
                        run_dir: Path | str = ".", *, device: str = "auto") -> tuple[dict[str, Any], EstimatorModels]:
    """Mine -> (search) -> train -> evaluate base vs fine-tuned on the held-out triplets.

    Returns ``(metrics, models)``: metrics {"model_path", "trained", "base", "finetuned", "mining", "train",
    "search", ...}, also written to run_dir/estimator/metrics.json (the model is a sentence-transformers
    directory at model_path), and the loaded base and fine-tuned models.
    """
    from sentence_transformers import SentenceTransformer

    cfg = config or EstimatorConfig()
    stage_dir = Path(run_dir) / "estimator"
    stage_dir.mkdir(parents=True, exist_ok=True)
    model_path = stage_dir / "model"
    dev = resolve_device(device)
    t0 = time.perf_counter()
    judge = mining_judge(cfg.judge, dev)  # first: an unreachable endpoint fails before any model loads
    # a typo in a label's name would silently cost that item its triplet
    label_problems = judge.labels.check_against(items_train) if hasattr(judge, "labels") else None
    for problem in label_problems or []:
        logger.warning("%s", problem)
    encoder = SentenceTransformer(str(cfg.base_model), device=dev)
    failures: Counter = Counter()
    triplets, stats = mine_triplets(items_train, encoder, judge, cfg.mining, out_path=stage_dir / "triplets.jsonl",
                                    resume=_resumable(stage_dir, cfg, items_train), failures=failures)
    if hasattr(judge, "errors"):
        stats["judge_errors"] = int(judge.errors)
        failures.update(getattr(judge, "failures", {}))
    if hasattr(judge, "unparseable"):
        stats["judge_unparseable"] = int(judge.unparseable)
    if label_problems is not None:
        stats["label_problems"] = len(label_problems)
        stats["label_bad_rows"] = len(judge.labels.errors)
    stats["judge_failed"] = sum(failures.values())
    check_mining(stats, failures, judge, cfg.judge.max_failure_share)
    del judge
    gc.collect()
    mining_s = time.perf_counter() - t0
    result: dict[str, Any] = {"model_path": str(model_path), "trained": False, "mining": stats,
                              "mining_s": round(mining_s, 2), "search": None, "train": None}
    train_cfg = cfg.train
    _, val = split_triplets(triplets, train_cfg.val_fraction, train_cfg.seed)
    result["base"] = evaluate_estimator(encoder, val, batch_size=train_cfg.eval_batch_size,
                                        scale=train_cfg.mnrl_scale)
    if len(triplets) < max(2, cfg.min_triplets):
        logger.warning("only %d triplets mined from %d items (need %d): the base model is saved as the "
                       "estimator unchanged", len(triplets), stats["items"], max(2, cfg.min_triplets))
        encoder.save_pretrained(str(model_path))
        result["finetuned"] = result["base"]
        tuned = encoder
    else:
        if cfg.run_search:
            result["search"] = search_hyperparameters(cfg.base_model, triplets, cfg.search, stage_dir / "search",
                                                      base=train_cfg, device=dev)
            train_cfg = replace(train_cfg, **result["search"]["best_params"])
        result["train"] = train_estimator(cfg.base_model, triplets, train_cfg, model_path, device=dev)
        result["train_config"] = asdict(train_cfg)
        result["trained"] = True
        tuned = SentenceTransformer(str(model_path), device=dev)
        result["finetuned"] = evaluate_estimator(tuned, val, batch_size=train_cfg.eval_batch_size,
                                                 scale=train_cfg.mnrl_scale)
    write_training_record(model_path, trained=result["trained"], base_model=cfg.base_model, triplets=len(triplets))
    result["total_s"] = round(time.perf_counter() - t0, 2)
    (stage_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    logger.info("estimator stage: base acc %s -> fine-tuned acc %s (%d held-out triplets)",
                result["base"]["accuracy"], result["finetuned"]["accuracy"], len(val))
    return result, EstimatorModels(base=encoder, finetuned=tuned)
