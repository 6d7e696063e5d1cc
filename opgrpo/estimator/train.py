"""Fine-tuning the similarity estimator: MultipleNegativesRankingLoss on triplets, and the Optuna search.

The estimator is a sentence-transformers model fine-tuned with MultipleNegativesRankingLoss on
(anchor, positive, negative) perspective triplets mined from training items (``opgrpo.estimator.mining``);
the reward later encodes reference and masked candidate sentences with it. ``train_estimator`` splits the
triplets (``split_triplets`` with ``train.val_fraction`` and ``train.seed``), trains and returns the
losses; ``search_hyperparameters`` runs it per Optuna trial and keeps the parameters with the lowest
validation loss.
"""
from __future__ import annotations

import gc
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from opgrpo.estimator.config import SearchConfig, TrainConfig
from opgrpo.estimator.triplets import split_triplets, triplet_texts
from opgrpo.models.devices import resolve_device

logger = logging.getLogger(__name__)


def _mnrl_loss_class():
    try:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
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

    a, p, n = triplet_texts(triplets)
    return Dataset.from_dict({"anchor": a, "positive": p, "negative": n})


def train_estimator(base_model: str, triplets: list[Any], config: TrainConfig | None = None,
                    output_dir: Path | str = "estimator", *, device: str = "auto",
                    save_model: bool = True) -> dict[str, Any]:
    """Fine-tune ``base_model`` on the triplets with MNRL; save a sentence-transformers model to output_dir.

    The triplets are split with ``split_triplets(config.val_fraction, config.seed)``; returns train_loss,
    val_loss (None without a validation part), train_size, val_size, steps and runtime_s.
    """
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    cfg = config or TrainConfig()
    if len(triplets) < 2:
        raise ValueError(f"need at least 2 triplets to fine-tune the estimator, got {len(triplets)}")
    train, val = split_triplets(triplets, cfg.val_fraction, cfg.seed)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    model = SentenceTransformer(str(base_model), device=dev)
    loss = _mnrl_loss_class()(model, scale=cfg.mnrl_scale)
    scratch = tempfile.TemporaryDirectory(prefix="opgrpo-estimator-")  # trainer files stay out of the model dir
    args = SentenceTransformerTrainingArguments(
        output_dir=scratch.name,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.lr, seed=cfg.seed, data_seed=cfg.seed, **_warmup_kwargs(cfg.warmup_ratio),
        batch_sampler=cfg.batch_sampler, fp16=bool(cfg.fp16) and dev.startswith("cuda"),
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


def search_hyperparameters(base_model: str, triplets: list[Any], config: SearchConfig | None = None,
                           output_dir: Path | str = "search", *, base: TrainConfig | None = None,
                           device: str = "auto") -> dict[str, Any]:
    """Optuna TPE search (seeded) minimising the validation MNRL loss; writes best_params.json and trials.csv.

    As the authors' hpo.py: the trials train with MNRL at ``config.mnrl_scale`` (the library's default 20) on
    ``1 - config.val_fraction`` of the triplets (split with ``base.seed``) and are scored by the loss on the rest
    (``config.eval_batch_size`` per batch). ``base`` supplies the other fixed fields (seed, max_steps, fp16); the
    best parameters use TrainConfig field names (lr, batch_size, epochs, warmup_ratio).
    """
    import optuna

    cfg = config or SearchConfig()
    base = base or TrainConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"the search needs a validation split: search.val_fraction must be in (0, 1), "
                         f"got {cfg.val_fraction}")
    base = replace(base, val_fraction=cfg.val_fraction, mnrl_scale=cfg.mnrl_scale,
                   eval_batch_size=cfg.eval_batch_size, batch_sampler=cfg.batch_sampler)

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
