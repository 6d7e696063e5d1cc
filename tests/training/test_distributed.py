"""Two-process CPU GRPO run (torchrun, gloo; accelerate picks the ranks up from the environment): every completion is scored against
its own item's references, and every group is whole and normalised on its own, even when a group straddles ranks.

The same file is the worker script: ``torchrun --nproc_per_node 2 tests/test_distributed.py worker MODEL_DIR OUT_DIR``.
(``accelerate launch --cpu --num_processes 2`` would need MPI for multi-CPU; torchrun gives accelerate the same
RANK/WORLD_SIZE environment with the gloo backend.)
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

NUM_GENERATIONS = 2
PROMPTS_PER_STEP = 3  # 6 completions per generation batch, 3 per rank: the middle group straddles the ranks
MAX_STEPS = 6  # mini-batch 1 prompt -> 3 optimizer steps per generation batch -> 2 generation batches


def make_items(n: int = 6):
    from opgrpo.benchmark import Item, Perspective

    return [
        Item(
            id=f"id{i}",
            situation=f"Whether to report colleague id{i} for a small mistake",
            perspectives=[Perspective("Honesty", f"tag id{i} truth matters."), Perspective("Loyalty", f"tag id{i} bonds.")],
            source=f"dist:{i}",
        )
        for i in range(n)
    ]


class OwnItemReward:
    """Records, per completion, whether its prompt and references belong to its item; reward = item number plus a
    length term in [0, 0.7), so a reward that reached the wrong row shows in the gathered table."""

    __name__ = "own_item"

    def __init__(self, out: Path, rank: int):
        self.path = out / f"rank{rank}.jsonl"
        self.rank = rank

    def __call__(self, prompts, completions, references, item_id, trainer_state=None, **kw):
        rewards, rows = [], []
        for prompt, completion, refs, iid in zip(prompts, completions, references, item_id, strict=True):
            text = prompt[-1]["content"]
            ok_prompt = f"colleague {iid} " in text
            ok_refs = all(f"tag {iid} " in r for r in refs)
            rows.append({"rank": self.rank, "step": trainer_state.global_step, "item_id": iid,
                         "ok_prompt": ok_prompt, "ok_refs": ok_refs})
            rewards.append(int(iid[2:]) + (len(completion[0]["content"]) % 7) / 10.0)
        with self.path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        return rewards


def worker(model_dir: str, out_dir: str) -> None:
    from opgrpo.training.grpo import GRPOSettings, run_grpo

    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    settings = GRPOSettings(
        prompts_per_step=PROMPTS_PER_STEP, mini_batch_size=1, max_prompt_length=256,
        completion_samples=NUM_GENERATIONS * PROMPTS_PER_STEP,
        completion_samples_every=PROMPTS_PER_STEP,  # once per generation batch
        trl=dict(num_generations=NUM_GENERATIONS, per_device_train_batch_size=1, max_completion_length=8,
                 max_steps=MAX_STEPS, save_steps=100, logging_steps=1, activation_checkpointing=False, beta=0.001,
                 use_bias_correction_kl=False, lr_scheduler_type="constant", save_total_limit=2),
    )
    metrics = run_grpo(model_dir, make_items(), [OwnItemReward(out, rank)], [1.0], settings, out / "run")
    if rank == 0:
        (out / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "settings"}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_grpo_scores_each_completion_against_its_own_item(tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from opgrpo.app.resources import smollm_path

    model_dir = tmp_path / "tiny"
    tok = AutoTokenizer.from_pretrained(smollm_path())
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "ACCELERATE_USE_CPU": "true"}  # what `accelerate launch --cpu` sets: gloo process group on CPU
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           __file__, "worker", str(model_dir), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == MAX_STEPS

    # Per rank: every completion arrived with its own item's prompt and references.
    rows = []
    for rank in (0, 1):
        path = tmp_path / f"rank{rank}.jsonl"
        assert path.exists(), f"rank {rank} scored nothing"
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and all(r["ok_prompt"] and r["ok_refs"] for r in rows)
    # Across ranks, each generation batch holds PROMPTS_PER_STEP whole groups of NUM_GENERATIONS completions.
    by_step = defaultdict(Counter)
    for r in rows:
        by_step[r["step"]][r["item_id"]] += 1
    assert len(by_step) == MAX_STEPS // PROMPTS_PER_STEP
    for counts in by_step.values():
        assert len(counts) == PROMPTS_PER_STEP and set(counts.values()) == {NUM_GENERATIONS}
    assert all(len({r["rank"] for r in rows if r["step"] == s}) == 2 for s in by_step)  # both ranks scored
    ranks_of = defaultdict(set)
    for r in rows:
        ranks_of[(r["step"], r["item_id"])].add(r["rank"])
    assert any(len(ranks) == 2 for ranks in ranks_of.values())  # the case that matters: a group split over ranks

    # Gathered on rank 0: rewards sit on their own prompt's rows and advantages are normalised within each group.
    samples = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert len(samples) == len(rows)
    groups = defaultdict(list)
    for s in samples:
        item = int(s["prompt"].split("colleague id")[1].split()[0])
        assert item <= s["rewards"]["own_item"] < item + 0.7
        groups[(s["step"], item)].append(s["advantage"])
    assert set(map(len, groups.values())) == {NUM_GENERATIONS}
    for advantages in groups.values():
        assert abs(sum(advantages)) < 1e-3


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    worker(sys.argv[2], sys.argv[3])
