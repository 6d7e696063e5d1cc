"""Issue 17.5: TRL's ``bnpo`` (verl's token-mean) normalises per local micro-batch, so the micro-batch is part of the
loss. ``trainer=paper`` uses the authors' (run_grpo.sh: ppo_micro_batch_size_per_gpu=40, gradient checkpointing on
4 GPUs), and the batch arithmetic checked at start-up holds for it."""
from __future__ import annotations


def test_paper_preset_micro_batch_is_the_authors(compose, tmp_path):
    from opgrpo.app.runconfig import to_config
    from opgrpo.training.grpo import grpo_config

    grpo = to_config(compose(["experiment=paper", "benchmark.train_file=x.csv", "benchmark.test_file=y.csv"])).trainer.grpo
    trl = grpo.trl
    assert (trl["per_device_train_batch_size"], trl["activation_checkpointing"], trl["loss_type"]) == (40, True, "bnpo")
    for world in (1, 2, 4, 8):  # 256 prompts x 10 completions = 2560 per optimizer step, whole micro-batches of 40
        assert grpo.problems(world_size=world) == [], world
    config = grpo_config(grpo, tmp_path, world_size=4)
    # 2560 completions / (40 per GPU x 4 GPUs) = 16 micro-batches per GPU per optimizer step, as verl's 640 / 40
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (40, 16)
    assert config.generation_batch_size == 10240 and config.activation_checkpointing is True
    # a world size that cannot split the mini-batch into whole micro-batches of 40 is named at start-up
    assert any(p.startswith("trl.num_generations:") and "40 x 3 = 120" in p for p in grpo.problems(world_size=3))
