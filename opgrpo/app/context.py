"""The state one `opgrpo` run carries from stage to stage: ``RunContext``.

A run's stages share three things: the run's typed config (``OPGRPOConfig``, built once from Hydra's by
opgrpo.app.runconfig), the run directory, and what earlier stages produced (the fine-tuned estimator, the SFT and
GRPO policies). They also share expensive objects that must be built once per run: the data files (read, and their
bad rows logged, once: the start-up check counts the training records with this same context, opgrpo.app.validate,
and the run keeps that parse), the reward's sentence encoder and the NLI scorer (``eval_base`` and ``eval`` of a
pipeline use the same one). ``RunContext`` holds all of that behind documented methods; stages read nothing else.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from opgrpo.app.rundir import RunDir
from opgrpo.app.schema import OPGRPOConfig
from opgrpo.app.tracking import JobTracker

log = logging.getLogger("opgrpo.app.context")


@dataclass
class RunContext:
    """Config, run directory, products of earlier stages, and the run's shared models and data."""

    cfg: OPGRPOConfig
    """The typed config of this run (stages read their sections from it: ``ctx.cfg.trainer.grpo``)."""
    run: RunDir | None = None
    """Where the run writes its config, status, metrics and each stage's folder; None while a multirun checks its
    arms before any run directory exists (opgrpo.app.callbacks): nothing is written then."""
    estimator_path: str = ""
    """The estimator stage's fine-tuned model (when it ran in this run)."""
    policy_path: str = ""
    """The latest trained policy of this run (SFT, then GRPO; or ``init_from``'s SFT policy), "" before any."""
    resume_stage: bool = False
    """Whether the training stage about to run continues from its last checkpoint (opgrpo.app.reuse decides)."""
    store_dir: str = ""
    """The store of stages shared between jobs ("" = none; opgrpo.app.reuse); the entrypoint sets it."""
    hub_push: dict = field(default_factory=dict)
    """The Hub push's outcome (``push``: done or failed, ``model_id``, ``url`` or ``error`` and ``retry``: the command
    that retries it); {} when none was tried. The entrypoint writes it into status.json."""
    tracker: JobTracker = field(default_factory=JobTracker)
    """This job's experiment tracker (its W&B run; does nothing when W&B is off or on ranks other than 0)."""
    _items: dict = field(default_factory=dict, repr=False)
    _models: dict = field(default_factory=dict, repr=False)

    # ---- data ----------------------------------------------------------------------------------
    def items(self, ref: str, limit: int = -1) -> list:
        """Items of one data file (read once per run; its bad rows go to ``data_errors.jsonl``)."""
        return self._load(ref, limit)[0]

    def _load(self, ref: str, limit: int = -1, max_rows: int = -1, kind: str = "items") -> tuple[list, list[int], int]:
        """(records, each one's row position, rows read) of one file: benchmark items, or the SFT file's examples
        (``kind="sft"``); read once per (file, limits), bad rows logged and written to ``data_errors.jsonl`` once."""
        key = (kind, ref, limit, max_rows)
        if key not in self._items:
            records, positions, errors = self._parse(kind, ref, limit, max_rows)
            bad = sum(not e.kept for e in errors)
            written = self._items.setdefault("errors_written", set())  # a row read twice is reported once
            new = [e for e in errors if (e.source, e.row, e.field, e.message) not in written]
            if new:
                written.update((e.source, e.row, e.field, e.message) for e in new)
                log.warning("%s: %d bad row(s) skipped, %d kept with a warning (see data_errors.jsonl)",
                            ref, bad, len(errors) - bad)
                if self.run is not None and self.run.main:
                    with open(self.run.path / "data_errors.jsonl", "a") as fh:
                        for e in new:
                            fh.write(json.dumps(e.__dict__) + "\n")
            name = Path(ref).name + (f"[:{max_rows}]" if max_rows >= 0 else "")
            self._log("data", {name: {"items": len(records), "bad_rows": bad}})
            self._items[key] = (records, positions, len(records) + bad)  # rows read: the records and the bad rows
        return self._items[key]

    def _parse(self, kind: str, ref: str, limit: int, max_rows: int) -> tuple[list, list[int], list]:
        """(records, each one's row position, row errors) of one file (opgrpo.benchmark's loaders)."""
        from opgrpo.benchmark import load_items
        from opgrpo.benchmark.sft_file import load_sft_examples

        b, positions = self.cfg.benchmark, []
        if kind == "sft":
            records, errors = load_sft_examples(ref, format=b.format, on_error=b.on_error, split=b.hf_split or None,
                                                positions=positions)
        else:
            records, errors = load_items(ref, format=b.format, on_error=b.on_error, split=b.hf_split or None,
                                         limit=None if limit < 0 else limit,
                                         max_rows=None if max_rows < 0 else max_rows, positions=positions)
        return records, positions, errors

    def _log(self, stage: str, metrics: dict) -> None:
        """``run.log`` once the run directory exists (a multirun's pre-check of its arms has none)."""
        if self.run is not None:
            self.run.log(stage, metrics)

    def train_val(self) -> tuple[list, list]:
        """(training items, validation items): the seeded split of ``benchmark.train_file`` (the estimator's items;
        ``opgrpo.benchmark.train_val_split``)."""
        if "train_val" not in self._items:
            from opgrpo.benchmark import train_val_split

            b = self.cfg.benchmark
            items = self.items(b.train_file, b.max_train_items)
            self._items["train_val"] = train_val_split(items, val_fraction=b.val_fraction, seed=b.split_seed)
        return self._items["train_val"]

    def grpo_train_val(self) -> tuple[list, list]:
        """(training items, validation items) of GRPO, as the authors built them: the first
        ``benchmark.grpo_max_items`` rows of ``benchmark.train_file`` (-1: all), in pandas'
        ``sample(frac=1.0, random_state=benchmark.split_seed)`` order, the first ``int(rows x (1 - val_fraction))``
        for training (``opgrpo.benchmark.splits.shuffled_split``)."""
        if "grpo_train_val" not in self._items:
            from opgrpo.benchmark.splits import shuffled_split

            b = self.cfg.benchmark
            items, positions, rows = self._load(b.train_file, b.max_train_items, b.grpo_max_items)
            train, val = shuffled_split(items, b.val_fraction, b.split_seed, positions=positions, n_rows=rows)
            self._log("data", {"grpo": {"rows": rows, "train": len(train), "val": len(val)}})
            self._items["grpo_train_val"] = (train, val)
        return self._items["grpo_train_val"]

    def sft_train_val(self) -> tuple[list, list]:
        """(training examples, validation examples) of SFT: the examples of ``benchmark.sft_file`` (full target
        responses, opgrpo.benchmark.sft_file) split 95/5 in the same pandas order as GRPO's items; without an SFT
        file, ``train_val()``'s items, whose targets the SFT stage builds with a template summary. The run's summary
        says which (``sft/targets``: ``file`` or ``template``)."""
        if "sft_train_val" not in self._items:
            b = self.cfg.benchmark
            if b.sft_file:
                from opgrpo.benchmark.splits import shuffled_split

                examples, positions, rows = self._load(b.sft_file, kind="sft")
                if not examples:
                    raise ValueError(f"benchmark.sft_file: no usable row in {b.sft_file} (see data_errors.jsonl)")
                split = shuffled_split(examples, b.sft_val_fraction, b.split_seed, positions=positions, n_rows=rows)
                self._log("sft", {"targets": "file", "file": str(b.sft_file), "rows": rows,
                                     "train_examples": len(split[0]), "val_examples": len(split[1])})
            else:
                split = self.train_val()
                log.warning("SFT targets are built from the training items with a template summary (no "
                            "benchmark.sft_file with LLM-written summaries, as the paper used)")
                self._log("sft", {"targets": "template", "train_examples": len(split[0])})
            self._items["sft_train_val"] = split
        return self._items["sft_train_val"]

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

    def encoder_source(self) -> tuple[str, str]:
        """(the config key that chose it, the path or hub id) of the reward's estimator, as ``encoder_path`` chooses
        it; nothing logged, nothing loaded (the start-up check uses it)."""
        from opgrpo.estimator.identity import run_estimator

        cfg = self.cfg
        if cfg.reward.estimator_path:
            return "reward.estimator_path", cfg.reward.estimator_path
        if self.estimator_path:
            return "estimator", self.estimator_path
        for key, source in (("eval.responses_file", cfg.eval.responses_file), ("eval.model_path", cfg.eval.model_path),
                            ("model.name_or_path", cfg.model.name_or_path)):
            found = run_estimator(source) if source else None
            if found:
                return key, found
        return "estimator.base_model", cfg.estimator.base_model

    def _choose_encoder(self) -> str:
        key, path = self.encoder_source()
        if key in ("eval.responses_file", "eval.model_path", "model.name_or_path"):
            source = getattr(getattr(self.cfg, key.split(".")[0]), key.split(".")[1])
            log.info("reward estimator: %s, the one of the run %s comes from (%s)", path, key, source)
        elif key == "estimator.base_model":
            log.warning("the reward is scored with the untuned base estimator %s (no reward.estimator_path, no "
                        "estimator stage in this run): coverage and uniqueness rates are not comparable with runs "
                        "scored by a fine-tuned estimator", path)
        return path

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
        cfg = self.cfg.eval.nli
        key = ("nli", cfg.backend, cfg.model)
        if key not in self._models:
            from opgrpo.evaluation.nli import build_scorer

            self._models[key] = build_scorer(cfg)
        return self._models[key]

    def current_policy(self) -> str:
        """The policy later stages start from: this run's latest trained one, else ``model.name_or_path``."""
        return self.policy_path or self.cfg.model.name_or_path

    def start_policy(self) -> str:
        """The policy this run starts from, before its own training: ``init_from``'s SFT policy, else
        ``model.name_or_path`` (what ``eval_base`` evaluates)."""
        if self.cfg.init_from:
            from opgrpo.app.identity import PRODUCTS

            sft = Path(self.cfg.init_from).expanduser() / "sft" / PRODUCTS["sft"]["policy_path"]
            if sft.is_dir():
                return str(sft)
        return self.cfg.model.name_or_path
