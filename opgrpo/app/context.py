"""The state one `opgrpo` run carries from stage to stage: ``RunContext``.

A run's stages share three things: the composed config, the run directory, and what earlier stages
produced (the fine-tuned estimator, the SFT and GRPO policies). They also share expensive objects that
must be built once per run: the data files (read, and their bad rows logged, once), the reward's
sentence encoder and the NLI scorer (``eval_base`` and ``eval`` of a pipeline use the same one).
``RunContext`` holds all of that behind documented methods; stages read nothing else.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from opgrpo.app.rundir import RunDir
from opgrpo.app.tracking import JobTracker
from opgrpo.app.schema import to_object

log = logging.getLogger("opgrpo.app.context")


@dataclass
class RunContext:
    """Config, run directory, products of earlier stages, and the run's shared models and data."""

    cfg: DictConfig
    """The composed, validated config of this run."""
    run: RunDir
    """Where the run writes its config, status, metrics and each stage's folder."""
    estimator_path: str = ""
    """The estimator stage's fine-tuned model (when it ran in this run)."""
    policy_path: str = ""
    """The latest trained policy of this run (SFT, then GRPO), "" before any training stage."""
    tracker: JobTracker = field(default_factory=JobTracker)
    """This job's experiment tracker (its W&B run; does nothing when W&B is off or on ranks other than 0)."""
    _items: dict = field(default_factory=dict, repr=False)
    _models: dict = field(default_factory=dict, repr=False)

    def section(self, key: str) -> Any:
        """Config section ``key`` (e.g. ``"reward"``, ``"trainer.grpo"``) as its lower-layer dataclass."""
        return to_object(self.cfg, key)

    # ---- data ----------------------------------------------------------------------------------
    def items(self, ref: str, limit: int = -1) -> list:
        """Items of one data file (read once per run; its bad rows go to ``data_errors.jsonl``)."""
        from opgrpo.benchmark import load_items

        key = (ref, limit)
        if key not in self._items:
            b = self.cfg.benchmark
            items, errors = load_items(ref, format=b.format, on_error=b.on_error, split=b.hf_split or None,
                                       limit=None if limit < 0 else limit)
            if errors:
                kept = sum(e.kept for e in errors)
                log.warning("%s: %d bad row(s) skipped, %d kept with a warning (see data_errors.jsonl)",
                            ref, len(errors) - kept, kept)
                if self.run.main:
                    with open(self.run.path / "data_errors.jsonl", "a") as fh:
                        for e in errors:
                            fh.write(json.dumps(e.__dict__) + "\n")
            self.run.log("data", {Path(ref).name: {"items": len(items),
                                                    "bad_rows": sum(not e.kept for e in errors)}})
            self._items[key] = items
        return self._items[key]

    def train_val(self) -> tuple[list, list]:
        """(training items, validation items): the seeded split of ``benchmark.train_file``."""
        if "train_val" not in self._items:
            from opgrpo.benchmark import train_val_split

            b = self.cfg.benchmark
            items = self.items(b.train_file, b.max_train_items)
            self._items["train_val"] = train_val_split(items, val_fraction=b.val_fraction, seed=b.split_seed)
        return self._items["train_val"]

    def all_test_items(self) -> list:
        """Every item of the test file(s), without ``benchmark.max_test_items``."""
        b = self.cfg.benchmark
        refs = list(b.test_files.values()) if b.test_files else [b.test_file] if b.test_file else []
        return [it for ref in refs for it in self.items(ref)]

    def test_splits(self) -> dict[str, list]:
        """Test items by split name (one file per split, or split by perspective count), capped at
        ``benchmark.max_test_items`` per split."""
        if "test" not in self._items:
            from opgrpo.benchmark import split_by_count

            b = self.cfg.benchmark
            if b.test_files:
                splits = {name: self.items(ref) for name, ref in b.test_files.items()}
            else:
                splits = split_by_count(self.all_test_items())
            if b.max_test_items >= 0:
                total = sum(len(v) for v in splits.values())
                splits = {k: v[: b.max_test_items] for k, v in splits.items()}
                used = sum(len(v) for v in splits.values())
                if used < total:  # a preset's cap must never cut a user's test file silently
                    log.warning("using %d of %d test items: benchmark.max_test_items=%d per split", used, total,
                                b.max_test_items)
            self._items["test"] = splits
        return self._items["test"]

    # ---- models --------------------------------------------------------------------------------
    def device(self) -> str:
        from opgrpo.models.devices import resolve_device

        return resolve_device(self.cfg.device)

    def encoder_path(self) -> str:
        """The reward's estimator: ``reward.estimator_path``, else this run's fine-tuned one, else the estimator of
        the run the evaluated responses or policy come from (``eval.responses_file``, ``eval.model_path``,
        ``model.name_or_path`` inside a run directory), else ``estimator.base_model`` (untuned: a WARNING says so)."""
        if "encoder_choice" not in self._models or self.estimator_path:
            self._models["encoder_choice"] = self._choose_encoder()
        return self._models["encoder_choice"]

    def _choose_encoder(self) -> str:
        from opgrpo.estimator.identity import run_estimator

        cfg = self.cfg
        if cfg.reward.estimator_path or self.estimator_path:
            return cfg.reward.estimator_path or self.estimator_path
        for key in ("eval.responses_file", "eval.model_path", "model.name_or_path"):
            source = OmegaConf.select(cfg, key, default="")
            found = run_estimator(source) if source else None
            if found:
                log.info("reward estimator: %s, the one of the run %s comes from (%s)", found, key, source)
                return found
        log.warning("the reward is scored with the untuned base estimator %s (no reward.estimator_path, no "
                    "estimator stage in this run): coverage and uniqueness rates are not comparable with runs "
                    "scored by a fine-tuned estimator", cfg.estimator.base_model)
        return cfg.estimator.base_model

    def estimator_identity(self) -> dict:
        """Path, content fingerprint and tuned/untuned of the reward's estimator (opgrpo.estimator.identity)."""
        from opgrpo.estimator.identity import estimator_identity

        return estimator_identity(self.encoder_path(), self.cfg.estimator.base_model)

    def encoder(self):
        """The reward's sentence encoder (loaded once per path)."""
        path = self.encoder_path()
        if self._models.get("encoder_path") != path:
            from sentence_transformers import SentenceTransformer

            log.info("reward estimator: %s", path)
            self._models["encoder"] = SentenceTransformer(path, device=self.device())
            self._models["encoder_path"] = path
        return self._models["encoder"]

    def nli_scorer(self):
        """The NLI entailment scorer of ``eval.nli`` (one per run: eval_base and eval share it)."""
        cfg = self.section("eval.nli")
        key = ("nli", cfg.backend, cfg.model)
        if key not in self._models:
            from opgrpo.evaluation.nli import build_scorer

            self._models[key] = build_scorer(cfg)
        return self._models[key]

    def current_policy(self) -> str:
        """The policy later stages start from: this run's latest trained one, else ``model.name_or_path``."""
        return self.policy_path or self.cfg.model.name_or_path
