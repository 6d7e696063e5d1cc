"""Training on TRL: what SFT and GRPO share (common), the trainer callbacks (callbacks), the SFT warm start
(sft), GRPO with the OP reward (grpo: read ``run_grpo`` top to bottom), Soft Preference Learning (spl), checkpoints
(which are whole, resume, full disks), reward_nan (NaN shares of reward functions) and distributed (ranks).
Settings are plain dataclasses (no Hydra) that the app's schema registers."""
