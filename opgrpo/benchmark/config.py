"""The ``benchmark`` section: which data files, their format, bad-row policy and the seeded splits (a plain
dataclass the Hydra schema reuses; notebooks build it directly)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

from opgrpo.benchmark.loading import FORMATS, ON_ERROR
from opgrpo.utils.checks import Problems, choice_enum

MISSING = "???"
"""OmegaConf's marker of a value that must be set (this layer does not import OmegaConf)."""

# string settings with fixed choices are enums (opgrpo.utils.checks.Choice): built from the loader's tuples
DataFormat = choice_enum("DataFormat", FORMATS, __name__)
OnError = choice_enum("OnError", ON_ERROR, __name__)


@dataclass
class BenchmarkConfig:
    """The data: training items and test items with their reference perspectives."""

    name: str = "sample"
    """A label for the data set (shown in summaries)."""
    train_file: str = MISSING
    """Training items: CSV, JSONL, a Hugging Face ``save_to_disk`` directory or a hub id."""
    test_file: str = ""
    """Test items in one file, split by perspective count into 5..10 and >10."""
    test_files: Dict[str, str] = field(default_factory=dict)
    """Or one test file per split name (``test_files.5=...``)."""
    format: DataFormat = DataFormat.auto
    """File format: auto (by suffix), csv, tsv, jsonl, hf (hub id or save_to_disk directory) or hf_disk."""
    hf_split: str = ""
    """Split name for Hugging Face datasets ("" = the only or the train split)."""
    on_error: OnError = OnError.skip
    """A malformed row: skip (counted, logged with file/row/field) or fail."""
    val_fraction: float = 0.1
    """Share of the training items held out for validation (seeded split)."""
    split_seed: int = 42
    """Seed of the train/validation split."""
    max_train_items: int = -1
    """Use at most this many training items (-1 = all)."""
    max_test_items: int = -1
    """Use at most this many test items per split (-1 = all)."""
    grpo_max_items: int = -1
    """GRPO trains on the first this many rows of ``train_file`` (-1 = all), in pandas' ``sample(frac=1.0,
    random_state=split_seed)`` order, the first ``int(rows x (1 - val_fraction))`` for training (the authors'
    ``valueprism_sum_rl.py``: 12,000 rows, 90/10)."""
    sft_file: str = ""
    """SFT from this file of full target responses (columns ``prompt`` and ``answer``, as the authors'
    ``train_summary_sft_full_cleaned.csv``; opgrpo.benchmark.sft_file); "" = targets built from the training items
    with a template summary (labelled ``sft/targets: template`` in the run's summary)."""
    sft_val_fraction: float = 0.05
    """Share of ``sft_file`` held out for validation (the authors' 95/5, same pandas order as ``grpo_max_items``)."""

    def problems(self) -> list[str]:
        from pathlib import Path

        p = Problems()
        p.enum("format", self.format, DataFormat)
        p.enum("on_error", self.on_error, OnError)
        p.unit("val_fraction", self.val_fraction, open_high=True)
        p.unit("sft_val_fraction", self.sft_val_fraction, open_high=True)
        if self.sft_file and not Path(self.sft_file).expanduser().exists():
            p.add("sft_file", f"file not found: {self.sft_file}")
        for name in ("max_train_items", "max_test_items", "grpo_max_items"):
            value = getattr(self, name)
            if value == 0 or value < -1:
                p.add(name, f"must be -1 (all) or a positive count, got {value} (0 items would train or test nothing)")
        return list(p)
