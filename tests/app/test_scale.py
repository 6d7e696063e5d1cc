"""The scale path, run for real on CPU: 2 processes (gloo, DeepSpeed's CPU accelerator) through the `opgrpo`
entrypoint, each launch matching a README command: ZeRO-2 GRPO under `accelerate launch --multi_gpu` (multi-GPU),
ZeRO-3 GRPO with a reference model as two torchrun "nodes" (multi-node), SFT under ZeRO-2 and a killed ZeRO-2 run
resumed (torchrun), rank-0-only stages, and a 2-task submitit job (the SLURM code path on submitit's local executor).

Every GRPO run adds ``tests/dist_rewards.py:own_item`` as an extra reward: each rank records which items it scored,
so the tests check that each rank's rewards belong to its own items, and the reward varies so the weights move.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "opgrpo"
TINY_GRPO = ["experiment=cpu_demo", "model.gguf_file=", "trainer.grpo.trl.max_completion_length=12",
             "reward.extra_funcs=[dist_rewards:own_item]"]



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    rewards = tmp_path / "rewards"
    rewards.mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "DIST_REWARDS_DIR": str(rewards),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OPGRPO_RUN_DIR"):
        env.pop(key, None)
    env.update(extra)
    return env


def _launch(make_cmd, env: dict[str, str], timeout: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``make_cmd(port)`` on a free port; again on another port if something took this one before the launcher
    bound it (the port is free when chosen, not reserved)."""
    for _ in range(3):
        res = subprocess.run(make_cmd(str(_free_port())), env=env, capture_output=True, text=True, timeout=timeout,
                             cwd=cwd, check=False)
        if res.returncode == 0 or not any(s in res.stdout + res.stderr for s in ("EADDRINUSE", "ddress already in use")):
            return res
    return res


def torchrun(tmp_path: Path, overrides: list[str], nproc: int = 2, timeout: int = 900, **env: str):
    return _launch(lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                                 "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", port,
                                 "-m", "opgrpo", *overrides], _env(tmp_path, **env), timeout, tmp_path)


def accelerate_launch(tmp_path: Path, overrides: list[str], nproc: int = 2, timeout: int = 900):
    """The README's multi-GPU command (``accelerate launch --multi_gpu``), here on 2 CPU processes."""
    return _launch(lambda port: [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(nproc),
                                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                                 "--multi_gpu", "--main_process_port", port, "-m", "opgrpo", *overrides],
                   _env(tmp_path), timeout, tmp_path)


def two_nodes(tmp_path: Path, overrides: list[str], timeout: int = 900):
    """The README's multi-node command (torchrun on each node, ``--nnodes 2 --node_rank i``), here as two "nodes"
    of one process each on this machine; returns node 0's result after both ended."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(i),
                               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", port,
                               "-m", "opgrpo", *overrides],
                              env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path) for i in (0, 1)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    assert procs[1].returncode == 0, outs[1][1][-4000:]
    return subprocess.CompletedProcess(procs[0].args, procs[0].returncode, *outs[0])


def reward_rows(tmp_path: Path) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = {}
    for path in sorted((tmp_path / "rewards").glob("rank*.jsonl")):
        rows[int(path.stem[4:])] = [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def assert_own_items(rows: dict[int, list[dict]]) -> None:
    """Both ranks scored completions, and each row's prompt and references are those of the item it names."""
    from opgrpo.benchmark import load_items, sample_data_path
    from opgrpo.text.prompts import prompt_text

    items = {it.id: it for it in load_items(sample_data_path("train"))[0]}
    assert sorted(rows) == [0, 1], f"ranks that scored: {sorted(rows)}"
    for rank, rs in rows.items():
        assert rs, f"rank {rank} scored nothing"
        for r in rs:
            item = items[r["item_id"]]
            assert r["references"] == list(item.references), (rank, r["item_id"])
            assert r["prompt"] == prompt_text(item.situation), (rank, r["item_id"])
    # the ranks shard each generation batch: each scores its own half of every step's completions
    assert len(rows[0]) == len(rows[1])


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def load_final(path: Path):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model


def tensor_names(folder: Path) -> list[str]:
    from safetensors import safe_open

    names: list[str] = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            names += list(fh.keys())
    return sorted(names)


def max_weight_change(a, b) -> float:
    return max((p.detach().float() - q.detach().float()).abs().max().item()
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def one_set_of_files(run: Path) -> None:
    """Rank 0 wrote the run's files, each rank its own log, Hydra's config copy once."""
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    logs = sorted(p.name for p in run.glob("*.log"))
    assert logs == ["cli.log", "cli.rank1.log"], logs
    assert not list(run.glob(".hydra/rank*")) and (run / ".hydra" / "config.yaml").exists()


# Not slow: the default `make test` (CI) keeps one real 2-process DeepSpeed run.
def test_zero2_grpo_two_processes(tmp_path, tiny_model):
    run = tmp_path / "run"
    res = accelerate_launch(tmp_path, [*TINY_GRPO, "stage=grpo", "deepspeed=zero2",
                                       f"model.name_or_path={tiny_model}", "trainer.grpo.trl.max_steps=2",
                                       f"hydra.run.dir={run}"])
    assert res.returncode == 0, res.stderr[-4000:]
    s = summary(run)
    assert s["grpo/world_size"] == 2 and s["grpo/global_step"] == 2
    assert json.loads((run / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 2
    assert_own_items(reward_rows(tmp_path))
    one_set_of_files(run)
    assert max_weight_change(load_final(run / "grpo" / "final"), load_final(tiny_model)) > 0
    # tied embeddings saved once, as in the base model (DeepSpeed's cloned state dict used to add lm_head.weight)
    assert tensor_names(run / "grpo" / "final") == tensor_names(tiny_model)
    assert "lm_head.weight" not in tensor_names(run / "grpo" / "final")


@pytest.mark.slow
def test_zero3_grpo_with_reference_model_and_generation(tmp_path, tiny_model):
    run = tmp_path / "run"
    res = two_nodes(tmp_path, [*TINY_GRPO, "stage=grpo", "deepspeed=zero3", f"model.name_or_path={tiny_model}",
                               "trainer.grpo.trl.max_steps=2", "trainer.grpo.trl.beta=0.04", f"hydra.run.dir={run}"])
    assert res.returncode == 0, res.stderr[-4000:]
    s = summary(run)
    assert s["grpo/world_size"] == 2 and s["grpo/global_step"] == 2
    # completions were generated with the ZeRO-3 sharded policy, and the KL to the reference model was logged
    rows = reward_rows(tmp_path)
    assert_own_items(rows)
    logged = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert any("kl" in r for r in logged), logged[0].keys()
    # the final model is the gathered full model (every parameter, full shapes), not ZeRO-3 shards
    final = load_final(run / "grpo" / "final")
    base = load_final(tiny_model)
    assert [p.shape for p in final.parameters()] == [p.shape for p in base.parameters()]
    assert max_weight_change(final, base) > 0
    assert not list((run / "grpo" / "final").glob("*zero*"))


@pytest.mark.slow
def test_zero2_sft_two_processes(tmp_path, tiny_model):
    run = tmp_path / "run"
    res = torchrun(tmp_path, ["experiment=cpu_demo", "model.gguf_file=", "stage=sft", "deepspeed=zero2",
                              f"model.name_or_path={tiny_model}", "trainer.sft.trl.max_steps=2",
                              "trainer.sft.global_batch_size=4", "trainer.sft.trl.per_device_train_batch_size=2",
                              "trainer.sft.trl.max_length=256", f"hydra.run.dir={run}"])
    assert res.returncode == 0, res.stderr[-4000:]
    s = summary(run)
    assert s["sft/world_size"] == 2 and s["sft/global_step"] == 2
    assert max_weight_change(load_final(run / "sft" / "final"), load_final(tiny_model)) > 0
    one_set_of_files(run)


@pytest.mark.slow
def test_zero2_grpo_killed_after_second_checkpoint_resumes(tmp_path, tiny_model):
    run = tmp_path / "run"
    args = [*TINY_GRPO, "stage=grpo", "deepspeed=zero2", f"model.name_or_path={tiny_model}",
            "trainer.grpo.trl.max_steps=6", "trainer.grpo.trl.save_steps=2", "trainer.grpo.trl.save_total_limit=null",
            "trainer.grpo.trl.save_only_model=false", "trainer.grpo.clean_checkpoints=false",  # full checkpoints, kept
            f"hydra.run.dir={run}"]
    # scoring for step 6 happens after step 5 was logged, before checkpoint-6: the newest checkpoint is the 2nd (4)
    killed = torchrun(tmp_path, args, DIST_REWARDS_KILL_AT="5")
    assert killed.returncode != 0
    grpo = run / "grpo"
    assert sorted(p.name for p in grpo.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert list((grpo / "checkpoint-4").glob("global_step*")), "no DeepSpeed checkpoint"
    steps_before = [json.loads(line)["step"] for line in (grpo / "metrics.jsonl").read_text().splitlines()]
    assert max(steps_before) == 5

    res = torchrun(tmp_path, [*args, "resume=true"])
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout + res.stderr
    assert "resuming from" in out and "checkpoint-4" in out
    s = summary(run)
    assert s["grpo/global_step"] == 6 and s["grpo/world_size"] == 2
    logged = [json.loads(line) for line in (grpo / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in logged if "loss" in r]
    assert train_steps == [1, 2, 3, 4, 5, 6], train_steps  # step 5 logged once, nothing missing
    # step 5 (scored at global_step 4) was scored before the kill and again after the resume; step 4 only once
    rows = reward_rows(tmp_path)[0]
    assert sum(r["step"] == 4 for r in rows) == 2 * sum(r["step"] == 3 for r in rows) > 0


@pytest.mark.slow
def test_rank0_only_stage_and_shared_run_dir(tmp_path, responses_file, tiny_lm):
    """stage=eval runs on rank 0 while rank 1 waits; a multi-process run without a shared run dir fails at start-up."""
    run = tmp_path / "run"
    res = torchrun(tmp_path, ["experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses_file}",
                              f"eval.nli.model={tiny_lm}", f"hydra.run.dir={run}"])
    assert res.returncode == 0, res.stderr[-4000:]
    assert "eval/overall/accuracy" in summary(run)
    rank1_log = (run / "cli.rank1.log").read_text()
    assert "rank 1 waits while rank 0 runs stage eval" in rank1_log
    assert "NLI" not in rank1_log and "reward estimator" not in rank1_log
    one_set_of_files(run)

    bad = torchrun(tmp_path, ["experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses_file}"])
    assert bad.returncode != 0
    assert "OPGRPO_RUN_DIR" in bad.stderr + bad.stdout and "hydra.run.dir" in bad.stderr + bad.stdout


@pytest.mark.slow
def test_submitit_two_tasks_form_one_process_group(tmp_path, tiny_model):
    sweep = tmp_path / "sweep"
    res = subprocess.run(
        [str(BIN), "-m", "launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1",
         *TINY_GRPO, "stage=grpo", "deepspeed=zero2", f"model.name_or_path={tiny_model}", "trainer.grpo.trl.max_steps=2",
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    run = sweep / "0"
    s = summary(run)
    assert s["grpo/world_size"] == 2 and s["grpo/global_step"] == 2
    assert_own_items(reward_rows(tmp_path))
    one_set_of_files(run)
    task_logs = "\n".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "joins one process group" in task_logs or "joins one process group" in (run / "cli.log").read_text()
