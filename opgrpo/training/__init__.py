"""Training on TRL: what SFT and GRPO share (common), the trainer callbacks (callbacks), the SFT warm start
(sft), GRPO with the OP reward (grpo: read ``run_grpo`` top to bottom) and Soft Preference Learning (spl).
Settings are plain dataclasses (no Hydra) that the app's schema registers."""
