"""The similarity estimator stage: mine triplets, (optionally) search hyperparameters, fine-tune, evaluate.

The estimator is a sentence-transformers model fine-tuned with MultipleNegativesRankingLoss on
(anchor, positive, negative) perspective triplets mined from training items (``opgrpo.mining``); the
reward later encodes reference and masked candidate sentences with it. Plain dataclass configs whose
defaults are the paper preset; ``run_estimator_stage`` runs the whole stage into ``run_dir/estimator``:

    triplets.jsonl   mining records (resumable)      model/        the fine-tuned estimator
    search/          best_params.json, trials.csv    metrics.json  mining, train, base vs fine-tuned

Held-out evaluation uses the validation part of the mined triplets (``split_triplets`` with
``train.val_fraction`` and ``train.seed``, the same split training uses), so with tiny data it is a
handful of triplets.
"""
from __future__ import annotations

import gc
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, List  # noqa: UP035 (typing.List: OmegaConf-friendly schema)

import numpy as np

from opgrpo.mining import SKIP_REASONS, MiningConfig, Triplet, load_triplets, mine_triplets

__all__ = ["MiningConfig", "JudgeConfig", "TrainConfig", "SearchConfig", "EstimatorConfig", "Triplet",
           "SKIP_REASONS", "mine_triplets", "load_triplets", "build_judge", "split_triplets",
           "train_estimator", "evaluate_estimator", "paired_comparison", "search_hyperparameters", "run_estimator_stage"]

logger = logging.getLogger(__name__)


@dataclass
class JudgeConfig:
    """The Yes/No judge that confirms mined pairs (an instruction-tuned LLM in the paper)."""

    kind: str = "none"
    """"transformers" (local causal LM), "http" (OpenAI-compatible endpoint), "labels" (human pair labels
    from ``labels_file``, see opgrpo.pair_labels) or "none" (thresholds only)."""
    model: str = ""
    """Hub id or local path ("transformers"), or the served model name ("http")."""
    base_url: str = ""
    """API root of the endpoint, e.g. http://127.0.0.1:8000/v1 ("http" only)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key ("http" only; may be unset for local servers)."""
    timeout: float = 30.0
    """Seconds per HTTP request."""
    batch_size: int = 16
    """Prompts per forward pass ("transformers")."""
    max_workers: int = 4
    """Concurrent HTTP requests ("http")."""
    max_retries: int = 2
    """Retries per HTTP request before the answer counts as missing."""
    dtype: str = "auto"
    """auto | float32 | bfloat16 | float16 ("transformers")."""
    max_length: int = 1024
    """Prompt tokens; longer prompts are cut from the left of the user content."""
    system_prompt: str = ""
    """Optional system message for the judge."""
    labels_file: str = ""
    """CSV/JSONL of same/different labels (id, name_a, name_b, label) for kind "labels"; also used for the
    label-defined held-out triplets of the test items."""
    unlabelled: str = "different"
    """kind "labels": a pair the file does not mention is "different" or unanswered ("skip")."""


@dataclass
class TrainConfig:
    """Fine-tuning with MultipleNegativesRankingLoss (paper preset, found by the Optuna search)."""

    batch_size: int = 32
    epochs: int = 2
    lr: float = 2.1e-5
    warmup_ratio: float = 0.03
    mnrl_scale: float = 60.0
    """Scale (inverse temperature) of MultipleNegativesRankingLoss."""
    val_fraction: float = 0.1
    """Share of the triplets held out for validation loss and the base-vs-fine-tuned evaluation."""
    seed: int = 42
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = run all epochs); for smoke tests."""
    eval_batch_size: int = 32
    """Batch size of the validation MNRL loss; fixed so the loss is comparable across searched batch sizes."""
    logging_steps: int = 10


@dataclass
class SearchConfig:
    """Optuna (TPE, seeded) search over the fine-tuning hyperparameters; objective = validation loss."""

    n_trials: int = 20
    lr_min: float = 1e-6
    lr_max: float = 5e-5
    batch_sizes: List[int] = field(default_factory=lambda: [32, 64, 128])
    epochs_min: int = 2
    epochs_max: int = 5
    warmup_min: float = 0.0
    warmup_max: float = 0.3
    seed: int = 42


@dataclass
class EstimatorConfig:
    """The whole estimator stage."""

    base_model: str = "sentence-transformers/paraphrase-mpnet-base-v2"
    """Hub id or local path of the sentence-transformers model to fine-tune."""
    mining: MiningConfig = field(default_factory=MiningConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    run_search: bool = False
    """Run the Optuna search first and train with its best parameters."""
    min_triplets: int = 2
    """With fewer mined triplets the base model is saved unchanged (logged; metrics say trained=false)."""


# ------------------------------------------------------------------------------------------- helpers

from opgrpo.devices import resolve_device as _device  # noqa: E402


def build_judge(config: JudgeConfig, device: str = "auto"):
    """The judge of ``config`` (None for kind "none"); an HTTP judge is checked for reachability."""
    from opgrpo.judges import make_judge

    kind = (config.kind or "none").lower()
    if kind == "transformers":
        return make_judge(kind, model_name_or_path=config.model, device=device, dtype=config.dtype,
                          batch_size=config.batch_size, max_length=config.max_length,
                          system_prompt=config.system_prompt)
    if kind == "http":
        judge = make_judge(kind, base_url=config.base_url, model=config.model, api_key_env=config.api_key_env,
                           timeout=config.timeout, max_retries=config.max_retries,
                           max_workers=config.max_workers, system_prompt=config.system_prompt)
        judge.check()
        return judge
    if kind == "labels":
        from opgrpo.pair_labels import LabelJudge, PairLabels

        labels = PairLabels.load(config.labels_file)
        if not len(labels):
            raise ValueError(f"estimator.judge.labels_file: {config.labels_file} has no usable pair labels "
                             f"(columns id, name_a, name_b, label; {len(labels.errors)} bad rows)")
        logger.info("label judge: %d labelled pairs from %s (%d bad rows skipped)", len(labels),
                    config.labels_file, len(labels.errors))
        return LabelJudge(labels, config.unlabelled)
    return make_judge(kind)


def _texts(triplets: list[Any]) -> tuple[list[str], list[str], list[str]]:
    def get(t, k):
        return t[k] if isinstance(t, dict) else getattr(t, k)

    return ([get(t, "anchor") for t in triplets], [get(t, "positive") for t in triplets],
            [get(t, "negative") for t in triplets])


def split_triplets(triplets: list[Any], val_fraction: float = 0.1, seed: int = 42) -> tuple[list, list]:
    """Deterministic (train, validation) split, the same rule as the items' split (opgrpo.data.train_val_split)."""
    from opgrpo.data import train_val_split

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train.val_fraction must be in [0, 1), got {val_fraction}")
    return train_val_split(triplets, val_fraction, seed)


def _mnrl_loss_class():
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    return MultipleNegativesRankingLoss


def _warmup_kwargs(ratio: float) -> dict[str, float]:
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:  # v5: a float warmup_steps < 1 is a ratio
        return {"warmup_steps": float(ratio)}
    return {"warmup_ratio": float(ratio)}


def _dataset(triplets: list[Any]):
    from datasets import Dataset

    a, p, n = _texts(triplets)
    return Dataset.from_dict({"anchor": a, "positive": p, "negative": n})


# ------------------------------------------------------------------------------------------ training

def train_estimator(base_model: str, triplets: list[Any], config: TrainConfig | None = None,
                    output_dir: Path | str = "estimator", *, device: str = "auto",
                    save_model: bool = True) -> dict[str, Any]:
    """Fine-tune ``base_model`` on the triplets with MNRL; save a sentence-transformers model to output_dir.

    The triplets are split with ``split_triplets(config.val_fraction, config.seed)``; returns train_loss,
    val_loss (None without a validation part), train_size, val_size, steps and runtime_s.
    """
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)

    cfg = config or TrainConfig()
    if len(triplets) < 2:
        raise ValueError(f"need at least 2 triplets to fine-tune the estimator, got {len(triplets)}")
    train, val = split_triplets(triplets, cfg.val_fraction, cfg.seed)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dev = _device(device)
    model = SentenceTransformer(str(base_model), device=dev)
    loss = _mnrl_loss_class()(model, scale=cfg.mnrl_scale)
    scratch = tempfile.TemporaryDirectory(prefix="opgrpo-estimator-")  # trainer files stay out of the model dir
    args = SentenceTransformerTrainingArguments(
        output_dir=scratch.name,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.lr, seed=cfg.seed, data_seed=cfg.seed, **_warmup_kwargs(cfg.warmup_ratio),
        batch_sampler="no_duplicates",  # in-batch negatives must not contain the anchor's own positive
        eval_strategy="no", save_strategy="no", logging_steps=cfg.logging_steps,
        report_to="none", use_cpu=dev == "cpu", disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=_dataset(train),
                                         eval_dataset=_dataset(val) if val else None, loss=loss)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # no raw dict prints on stdout; metrics are returned and logged
    t0 = time.perf_counter()
    out = trainer.train()
    runtime = time.perf_counter() - t0
    val_loss = trainer.evaluate()["eval_loss"] if val else None
    if save_model:
        model.save_pretrained(str(output_dir))
    metrics = {"train_loss": float(out.training_loss), "val_loss": None if val_loss is None else float(val_loss),
               "train_size": len(train), "val_size": len(val), "steps": int(out.global_step),
               "runtime_s": round(runtime, 2)}
    logger.info("estimator fine-tuned: %s", metrics)
    del trainer, model, loss
    scratch.cleanup()
    gc.collect()
    return metrics


def evaluate_estimator(model_or_path: Any, triplets: list[Any], *, batch_size: int = 32,
                       scale: float = 60.0, device: str = "auto", per_triplet: bool = False,
                       with_loss: bool = True) -> dict[str, Any]:
    """Triplet accuracy (cos(a, p) > cos(a, n)), mean similarities and the MNRL loss.

    ``per_triplet`` adds ``correct``, one bool per triplet (for ``paired_comparison``). ``with_loss=False``
    leaves ``mnrl_loss`` None: for triplet sets that reuse sentences (both directions of a pair) the
    in-chunk candidates contain the anchor itself, and the loss means nothing.
    The loss is MNRL over consecutive chunks of ``batch_size`` triplets (in-chunk positives and negatives
    as candidates), averaged with chunk sizes as weights, like the trainer's validation loss.
    """
    from sentence_transformers import SentenceTransformer

    if not triplets:
        return {"n": 0, "accuracy": None, "mnrl_loss": None, "cos_pos": None, "cos_neg": None}
    # a path is a str, and str has .encode too: test for the path first
    model = SentenceTransformer(str(model_or_path), device=_device(device)) if isinstance(
        model_or_path, (str, Path)) else model_or_path
    a, p, n = _texts(triplets)
    unique = list(dict.fromkeys(a + p + n))  # triplet sets reuse sentences: encode each once
    row = {t: i for i, t in enumerate(unique)}
    emb = model.encode(unique, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False).astype(np.float64)[[row[t] for t in a + p + n]]
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    k = len(triplets)
    ea, ep, en = emb[:k], emb[k:2 * k], emb[2 * k:]
    cos_pos, cos_neg = (ea * ep).sum(1), (ea * en).sum(1)
    total = 0.0
    for s in range(0, k if with_loss else 0, max(1, batch_size)):
        qa, docs = ea[s:s + batch_size], np.concatenate([ep[s:s + batch_size], en[s:s + batch_size]])
        logits = scale * qa @ docs.T
        logits -= logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        total += float(-logp[np.arange(len(qa)), np.arange(len(qa))].sum())
    out = {"n": k, "accuracy": float((cos_pos > cos_neg).mean()), "mnrl_loss": total / k if with_loss else None,
           "cos_pos": float(cos_pos.mean()), "cos_neg": float(cos_neg.mean())}
    if per_triplet:
        out["correct"] = (cos_pos > cos_neg).tolist()
    return out


def _sign_test(wins: int, losses: int) -> float:
    from math import comb

    n, k = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


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


def search_hyperparameters(base_model: str, triplets: list[Any], config: SearchConfig | None = None,
                           output_dir: Path | str = "search", *, base: TrainConfig | None = None,
                           device: str = "auto") -> dict[str, Any]:
    """Optuna TPE search (seeded) minimising the validation MNRL loss; writes best_params.json and trials.csv.

    ``base`` supplies the fixed fields (val_fraction, seed, mnrl_scale, max_steps, eval_batch_size); the
    best parameters use TrainConfig field names (lr, batch_size, epochs, warmup_ratio).
    """
    import optuna

    cfg = config or SearchConfig()
    base = base or TrainConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if base.val_fraction <= 0:
        raise ValueError("the search needs a validation split: train.val_fraction must be > 0")

    def objective(trial) -> float:
        params = {
            "lr": trial.suggest_float("lr", cfg.lr_min, cfg.lr_max, log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(cfg.batch_sizes)),
            "epochs": trial.suggest_int("epochs", cfg.epochs_min, cfg.epochs_max),
            "warmup_ratio": trial.suggest_float("warmup_ratio", cfg.warmup_min, cfg.warmup_max),
        }
        metrics = train_estimator(base_model, triplets, replace(base, **params),
                                  output_dir / f"trial_{trial.number}", device=device, save_model=False)
        return float(metrics["val_loss"])

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    study.optimize(objective, n_trials=cfg.n_trials)
    best = dict(study.best_params)
    (output_dir / "best_params.json").write_text(json.dumps(best, indent=2))
    study.trials_dataframe().to_csv(output_dir / "trials.csv", index=False)
    return {"best_params": best, "best_value": float(study.best_value), "n_trials": len(study.trials)}


# --------------------------------------------------------------------------------------------- stage

def _resumable(stage_dir: Path, cfg: EstimatorConfig) -> bool:
    """Resume mining only if triplets.jsonl was mined with the same base model, mining and judge settings."""
    judge = {k: v for k, v in asdict(cfg.judge).items()
             if k in ("kind", "model", "base_url", "system_prompt", "labels_file", "unlabelled")}
    if cfg.judge.kind == "labels" and Path(cfg.judge.labels_file).is_file():  # edited labels: mine again
        import hashlib

        judge["labels_sha1"] = hashlib.sha1(Path(cfg.judge.labels_file).read_bytes()).hexdigest()
    meta = {"base_model": cfg.base_model, "mining": asdict(cfg.mining), "judge": judge}
    path = stage_dir / "triplets.meta.json"
    same = True
    if path.exists():
        try:
            same = json.loads(path.read_text()) == meta
        except ValueError:
            same = False
        if not same:
            logger.warning("%s was mined with other settings: mining again from scratch", stage_dir / "triplets.jsonl")
    path.write_text(json.dumps(meta, indent=2))
    return same

def run_estimator_stage(items_train: list[Any], config: EstimatorConfig | None = None,
                        run_dir: Path | str = ".", *, device: str = "auto") -> dict[str, Any]:
    """Mine -> (search) -> train -> evaluate base vs fine-tuned on the held-out triplets.

    Returns {"model_path", "trained", "base", "finetuned", "mining", "train", "search"} and writes it to
    run_dir/estimator/metrics.json; the model is a sentence-transformers directory at model_path.
    """
    from sentence_transformers import SentenceTransformer

    cfg = config or EstimatorConfig()
    stage_dir = Path(run_dir) / "estimator"
    stage_dir.mkdir(parents=True, exist_ok=True)
    model_path = stage_dir / "model"
    dev = _device(device)
    t0 = time.perf_counter()
    judge = build_judge(cfg.judge, dev)  # first: an unreachable endpoint fails before any model loads
    # a typo in a label's name would silently cost that item its triplet
    label_problems = judge.labels.check_against(items_train) if hasattr(judge, "labels") else None
    for problem in label_problems or []:
        logger.warning("%s", problem)
    encoder = SentenceTransformer(str(cfg.base_model), device=dev)
    triplets, stats = mine_triplets(items_train, encoder, judge, cfg.mining,
                                    out_path=stage_dir / "triplets.jsonl", resume=_resumable(stage_dir, cfg))
    if hasattr(judge, "errors"):
        stats["judge_errors"] = int(judge.errors)
    if hasattr(judge, "unparseable"):
        stats["judge_unparseable"] = int(judge.unparseable)
    if label_problems is not None:
        stats["label_problems"] = len(label_problems)
        stats["label_bad_rows"] = len(judge.labels.errors)
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
    else:
        del encoder
        gc.collect()
        if cfg.run_search:
            result["search"] = search_hyperparameters(cfg.base_model, triplets, cfg.search, stage_dir / "search",
                                                      base=train_cfg, device=dev)
            train_cfg = replace(train_cfg, **result["search"]["best_params"])
        result["train"] = train_estimator(cfg.base_model, triplets, train_cfg, model_path, device=dev)
        result["train_config"] = asdict(train_cfg)
        result["trained"] = True
        result["finetuned"] = evaluate_estimator(model_path, val, batch_size=train_cfg.eval_batch_size,
                                                 scale=train_cfg.mnrl_scale, device=dev)
    result["total_s"] = round(time.perf_counter() - t0, 2)
    (stage_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    logger.info("estimator stage: base acc %s -> fine-tuned acc %s (%d held-out triplets)",
                result["base"]["accuracy"], result["finetuned"]["accuracy"], len(val))
    return result

