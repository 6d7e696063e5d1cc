"""The training layer of OP-GRPO: SFT warm start, then GRPO, both on TRL. Import the public names from here.

- ``opgrpo.sft``: SFT targets in the response layout, the prompt/completion dataset, ``SFTSettings``, ``run_sft``.
- ``opgrpo.grpo``: ``GRPOSettings`` (paper preset), the paper -> ``trl.GRPOConfig`` mapping, the reward dataset,
  ``run_grpo`` (read its module docstring to follow one GRPO run top to bottom).
- ``opgrpo.train_common``: LoRA settings, precision, checkpoint/resume and final-save helpers both stages share.
- ``opgrpo.callbacks``: ``metrics.jsonl`` and ``completions.jsonl`` writers.

Settings are plain dataclasses (no Hydra here) so that the config layer can register them with ConfigStore.
"""
from opgrpo.grpo import (
    GRPOSettings,
    build_grpo_dataset,
    drop_long_prompts,
    grpo_config,
    optimizer_steps_per_epoch,
    run_grpo,
)
from opgrpo.sft import SFTSettings, build_sft_dataset, run_sft, sft_config, sft_target
from opgrpo.train_common import LoraSettings, as_peft_config, last_checkpoint, lora_config, resolve_bf16

__all__ = [
    "GRPOSettings",
    "LoraSettings",
    "SFTSettings",
    "as_peft_config",
    "build_grpo_dataset",
    "build_sft_dataset",
    "drop_long_prompts",
    "grpo_config",
    "last_checkpoint",
    "lora_config",
    "optimizer_steps_per_epoch",
    "resolve_bf16",
    "run_grpo",
    "run_sft",
    "sft_config",
    "sft_target",
]
