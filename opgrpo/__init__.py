"""OP-GRPO: Overton-pluralistic GRPO."""
