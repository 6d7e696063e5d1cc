"""The stages of an `opgrpo` run: one short function each, registered in ``STAGES``.

Each stage reads the config and the run's state through ``RunContext`` (opgrpo.app.context), calls the lower
layers with plain arguments, and logs its numbers to the run directory. ``run_stages`` runs ``stage``, or every
stage of ``pipeline`` in order, then prints the before/after table. ``stage_grpo`` is the GRPO recipe, read top
to bottom: data -> policy -> reward functions -> trainer config -> train -> save.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Callable

from opgrpo.app.context import RunContext
from opgrpo.app.publish import (
    card_evaluation,
    prefetch_models,
    push_final,
    push_run,
    write_card,
)
from opgrpo.app.runconfig import stages_of
from opgrpo.app.tracking import report_to, reward_used, tracked_job

log = logging.getLogger("opgrpo.app.stages")


# ---- training stages --------------------------------------------------------------------------------
def _trainer_kwargs(ctx: RunContext, stage: str) -> dict:
    """What SFT and GRPO take alike: LoRA, trackers (the job's W&B run under ``stage/``), resume, DeepSpeed config,
    chat template."""
    from opgrpo.training.common import lora_config

    deepspeed: dict | str = ""
    if ctx.cfg.deepspeed.enabled:  # every rank hands the dict to its trainer; rank 0 keeps a copy for the record
        deepspeed = dict(ctx.cfg.deepspeed.config)
        if ctx.run.main:
            (ctx.run.path / "deepspeed.json").write_text(json.dumps(deepspeed, indent=2))
    return dict(peft=lora_config(ctx.cfg.model.lora), report_to=report_to(ctx.cfg), resume=ctx.resume_stage,
                deepspeed=deepspeed, chat_template=ctx.cfg.model.chat_template,
                callbacks=ctx.tracker.trainer_callbacks(stage))


def stage_sft(ctx: RunContext) -> None:
    """SFT warm start on the response layout (TRL SFTTrainer); the policy goes to sft/final."""
    from opgrpo.training.sft import run_sft

    train, _ = ctx.sft_train_val()  # benchmark.sft_file (95/5), else the training items with template summaries
    out_dir = ctx.run.stage_dir("sft")
    metrics = run_sft(ctx.current_policy(), train, ctx.cfg.trainer.sft, out_dir, **_trainer_kwargs(ctx, "sft"))
    write_card(ctx, "sft", ctx.current_policy(), metrics=metrics)  # sft/final/README.md: base model, data, settings
    ctx.policy_path = str(out_dir / "final")
    ctx.run.log("sft", metrics)


def stage_grpo(ctx: RunContext) -> None:
    """GRPO on the OP reward (TRL GRPOTrainer), top to bottom; the policy goes to grpo/final."""
    from opgrpo.training.grpo import run_grpo

    # 1. data: the first benchmark.grpo_max_items rows in pandas' seed-42 order, 90% (the authors' split)
    train, _ = ctx.grpo_train_val()
    # 2. policy: this run's latest trained one (SFT), else model.name_or_path; TRL loads it by path
    policy = ctx.current_policy()
    # 3. reward functions: the OP reward on the run's estimator, combined as reward.aggregation says
    rewards = grpo_rewards(ctx)
    # 4. trainer config: trainer.grpo with the algorithm's options (SPL) applied
    settings = grpo_settings(ctx)
    # 5. train and 6. save (checkpoints, metrics.jsonl, completions.jsonl, final/ in grpo/)
    out_dir = ctx.run.stage_dir("grpo")
    ctx.tracker.set_config({"reward_used": reward_used(ctx.cfg.reward, rewards.funcs, rewards.weights,
                                                       rewards.trl_aggregation)})
    metrics = run_grpo(policy, train, rewards.funcs, rewards.weights, settings, out_dir,
                       reward_aggregation=rewards.trl_aggregation, **_trainer_kwargs(ctx, "grpo"))
    write_card(ctx, "grpo", policy, settings, metrics, rewards)  # grpo/final/README.md, with the reward
    ctx.policy_path = str(out_dir / "final")
    ctx.run.log("grpo", {**metrics, "reward_estimator": ctx.estimator_identity()})


def grpo_rewards(ctx: RunContext):
    """The TRL reward functions, weights and aggregation (opgrpo.reward.grpo_reward_setup), plus SPL's shaping
    reward in ``spl.mode=reward`` (r - alpha log pi + beta log pi_ref)."""
    from opgrpo.reward import grpo_reward_setup

    cfg = ctx.cfg.reward
    tokenizer = None
    if cfg.masking == "prompt":  # the authors' variant masks with the decoded chat prompt
        from opgrpo.models.generation import load_tokenizer

        tokenizer = load_tokenizer(ctx.current_policy(), chat_template=ctx.cfg.model.chat_template)
    setup = grpo_reward_setup(ctx.encoder(), cfg, batch_size=cfg.encode_batch_size, tokenizer=tokenizer)
    if cfg.extra_funcs:
        from opgrpo.utils.imports import import_object

        setup.funcs.extend(import_object(path) for path in cfg.extra_funcs)
        setup.weights.extend(float(w) for w in cfg.extra_weights or [1.0] * len(cfg.extra_funcs))
    if ctx.cfg.spl.enabled and ctx.cfg.spl.mode == "reward":
        from opgrpo.training.common import trl_value
        from opgrpo.training.spl import SPLShapingReward

        spl = ctx.cfg.spl
        setup.funcs.append(SPLShapingReward(ctx.current_policy(), spl.alpha, spl.beta,
                                            temperature=trl_value(ctx.cfg.trainer.grpo, "temperature")))
        setup.weights.append(1.0)
    return setup


def grpo_settings(ctx: RunContext):
    """``trainer.grpo`` with ``spl.enabled`` (algorithm=spl) applied: beta / entropy_coef (mode=loss) or the KL
    moved into the reward (mode=reward, see opgrpo.training.spl)."""
    settings = ctx.cfg.trainer.grpo
    if ctx.cfg.spl.enabled:
        from opgrpo.training.spl import spl_settings

        settings = spl_settings(settings, ctx.cfg.spl)
    return settings


# ---- estimator and evaluation stages ----------------------------------------------------------------
def stage_estimator(ctx: RunContext) -> None:
    """Mine triplets, fine-tune the similarity estimator, compare it with its base on held-out items."""
    from opgrpo.estimator.evaluate import evaluate_heldout
    from opgrpo.estimator.stage import run_estimator_stage

    train, val = ctx.train_val()
    cfg = ctx.cfg.estimator
    # Mining uses the whole training CSV (SPEC, the authors' create_dataset.py); the 10% validation items are
    # held back only when the held-out evaluation uses them (a labels file defines their triplets).
    hold_out = bool(val and cfg.judge.labels_file)
    out, models = run_estimator_stage(train if hold_out else train + val, cfg, ctx.run.path, device=ctx.cfg.device)
    ctx.estimator_path = str(out["model_path"])
    ctx.run.log("estimator", {k: v for k, v in out.items() if k not in ("model_path", "train_config")})
    sets = {}
    test_items = ctx.all_test_items()  # not only the eval subset (benchmark.max_test_items)
    if test_items:
        sets["test_items"] = test_items
    if hold_out:
        sets["val_items"] = val
    if sets:  # base vs fine-tuned on items the estimator never trained on
        ctx.run.log("estimator", evaluate_heldout(models.base, models.finetuned, cfg, sets,
                                                  mined_path=ctx.run.stage_dir("estimator") / "test_triplets.jsonl"))


def stage_eval(ctx: RunContext, name: str = "eval", policy: str | None = None) -> None:
    """NLI benchmark per split and the OP reward of a policy's responses (generated, or from a file)."""
    from dataclasses import asdict
    from functools import partial

    from opgrpo.evaluation.responses import load_responses
    from opgrpo.evaluation.run import evaluate, generate_for_items
    from opgrpo.reward.evaluation import reference_config

    e, m, cal = ctx.cfg.eval, ctx.cfg.model, ctx.cfg.estimator.calibration
    policy = policy or e.model_path or ctx.current_policy()
    if e.responses_file:
        responses, source = partial(load_responses, e.responses_file), e.responses_file
    else:
        responses = partial(generate_for_items, policy=policy, **asdict(ctx.cfg.eval.generation),
                            chat_template=m.chat_template, gguf_file=m.gguf_file if policy == m.name_or_path else "",
                            dtype=m.dtype, trust_remote_code=m.trust_remote_code, device=ctx.cfg.device)
        source = policy
    metrics = evaluate(ctx.test_splits(), ctx.run.stage_dir(name), responses=responses, source=source,
                       nli=ctx.cfg.eval.nli, nli_scorer=ctx.nli_scorer, encoder=ctx.encoder,
                       reward=ctx.cfg.reward, threshold=e.threshold, judge=ctx.cfg.eval.judge,
                       estimator=ctx.estimator_identity(), prompt=e.generation.prompt,
                       tokenizer=partial(_eval_tokenizer, policy, m),  # and by the one rule runs are compared by
                       reference=reference_config(ctx.cfg.reward, cal.tau_cov, cal.tau_uniq,
                                                  ctx.cfg.report.reference_weights))
    ctx.run.log(name, metrics)
    card_evaluation(ctx, policy, metrics)  # this run's trained policy: its model card gets these numbers


def _eval_tokenizer(policy: str, m) -> object:
    """The evaluated policy's tokenizer (its chat template renders the prompts ``reward.masking=prompt`` masks with)."""
    from opgrpo.models.generation import load_tokenizer

    return load_tokenizer(policy, chat_template=m.chat_template, trust_remote_code=m.trust_remote_code,
                          gguf_file=m.gguf_file if policy == m.name_or_path else "")


def stage_eval_base(ctx: RunContext) -> None:
    """``stage_eval`` of the policy the run starts from (``eval.model_path``, else ``init_from``'s SFT policy, else
    ``model.name_or_path``), as ``eval_base``."""
    stage_eval(ctx, "eval_base", policy=ctx.cfg.eval.model_path or ctx.start_policy())


def stage_pope(ctx: RunContext) -> None:
    """Part of POPE: IPS/SNIPS estimate of a logged utility + an entropy term, bootstrap intervals; of
    ``pope.responses_file`` under ``pope.model_path`` (or the current policy), rows without a utility scored with
    the OP reward total (opgrpo.evaluation.pope)."""
    from transformers import AutoModelForCausalLM

    from opgrpo.evaluation.pope import load_logged_responses, run_pope
    from opgrpo.models.generation import load_tokenizer

    cfg = ctx.cfg.pope
    rows = load_logged_responses(cfg.responses_file)
    utility = None
    if any(cfg.utility_key not in r for r in rows):
        from opgrpo.reward import OPRewardScorer

        reward = ctx.cfg.reward
        results = OPRewardScorer(ctx.encoder(), reward, batch_size=reward.encode_batch_size).score(
            [r.get("situation", "") for r in rows], [r["response"] for r in rows],
            [r.get("references", []) for r in rows])
        utility = [float(r["total"]) for r in results]
    path = cfg.model_path or ctx.current_policy()
    tokenizer = load_tokenizer(path, chat_template=ctx.cfg.model.chat_template)
    # the target policy's log-probs in the checkpoint's own dtype, as before the package move (load_policy's
    # "auto" would turn them to bf16 on a GPU, which changes the importance weights)
    model = AutoModelForCausalLM.from_pretrained(path).to(ctx.device())
    out = run_pope(rows, model, tokenizer, cfg, utility=utility)
    out.update(model=str(path), responses_file=cfg.responses_file)
    (ctx.run.stage_dir("pope") / "pope.json").write_text(json.dumps(out, indent=2))
    log.info("POPE value %.4f [%.4f, %.4f] (utility %.4f, coverage %.4f, ESS %.1f of %d)", out["value"],
             *out.get("value_ci", [float("nan")] * 2), out["utility"], out["coverage"], out["ess"], out["n"])
    ctx.run.log("pope", {k: v for k, v in out.items() if isinstance(v, (int, float))})


def stage_opbench(ctx: RunContext) -> None:
    """OP-Bench (opgrpo.evaluation.opbench): ``opbench.judge`` rates ``opbench.responses_file`` for every user of
    ``opbench.users_file``; cluster coverage at ``opbench.tau``, Prism / ModelSlant / Full scores in opbench/."""
    from opgrpo.evaluation.opbench import run_opbench

    out = run_opbench(ctx.cfg.opbench, ctx.run.stage_dir("opbench"))
    ctx.run.log("opbench", out)


def stage_generate(ctx: RunContext) -> None:
    """Responses of a policy or baseline to the test items, as a file stage=eval scores (eval.responses_file=FILE):
    the policy's (``eval.model_path``, else this run's trained one or ``model.name_or_path``) with ``eval.generation``
    (prompt kind implicit or explicit), or Modular Pluralism's around it (``baseline=modular``); in
    ``generate.out_file``, else generate/responses.jsonl (opgrpo.evaluation.generate)."""
    from dataclasses import asdict

    from opgrpo.evaluation.generate import generate_responses_file

    e, m = ctx.cfg.eval, ctx.cfg.model
    policy = e.model_path or ctx.current_policy()
    out_file = ctx.cfg.generate.out_file or ctx.run.stage_dir("generate") / "responses.jsonl"
    out = generate_responses_file(ctx.test_splits(), out_file, policy=policy,
                                  generation=asdict(ctx.cfg.eval.generation), baseline=ctx.cfg.baseline,
                                  chat_template=m.chat_template, dtype=m.dtype, trust_remote_code=m.trust_remote_code,
                                  gguf_file=m.gguf_file if policy == m.name_or_path else "", device=ctx.cfg.device)
    ctx.run.log("generate", out)


# ---- runs side by side -------------------------------------------------------------------------------
def stage_report(ctx: RunContext) -> None:
    """Sweep report of exactly ``report.run_dirs`` (else every run under ``report.sweep_dir``): runs table,
    coverage-vs-uniqueness Pareto plot, reward curves (opgrpo.sweep.report), in ``report.out_dir``, else
    ``<sweep_dir>/report``, else this run's ``report/``; prints where."""
    from opgrpo.sweep.report import build_report, report_dir

    r = ctx.cfg.report
    out_dir = report_dir(r.out_dir, r.sweep_dir, ctx.run.path / "report")
    out = build_report(r.sweep_dir or None, out_dir, run_dirs=list(r.run_dirs), labels=list(r.labels),
                       reference_weights=dict(r.reference_weights), wandb_project=r.wandb_project,
                       exclude=[ctx.run.path], allow_mixed_estimators=r.allow_mixed_estimators)
    print(f"report ({out['completed']} of {out['runs']} runs compared): {out['html']}")
    ctx.run.log("report", out)


def stage_compare(ctx: RunContext) -> None:
    """Exactly ``report.run_dirs`` (else every run under ``report.sweep_dir``) side by side: rates, components,
    totals, NLI per split (opgrpo.sweep.compare), in ``report.out_dir``, else ``<sweep_dir>/compare``, else
    this run's ``compare/``; prints where."""
    from opgrpo.sweep.compare import compare_run_dirs
    from opgrpo.sweep.records import find_run_dirs

    r = ctx.cfg.report
    out_dir = Path(r.out_dir) if r.out_dir else (Path(r.sweep_dir) if r.sweep_dir else ctx.run.path) / "compare"
    run_dirs = list(r.run_dirs) or (find_run_dirs(r.sweep_dir, exclude=[ctx.run.path, out_dir])
                                    if r.sweep_dir else [])
    out = compare_run_dirs(run_dirs, out_dir, labels=list(r.labels), reference_weights=dict(r.reference_weights),
                           allow_mixed_estimators=r.allow_mixed_estimators)
    print(f"comparison ({out['compared']} of {out['runs']} runs compared): {out['markdown']}")
    ctx.run.log("compare", out)


def stage_prefetch(ctx: RunContext) -> None:
    """Download every model the config names (policy, estimator base, NLI, local judges, reward.estimator_path) into
    the HF cache (opgrpo.app.publish.prefetch_models), local paths skipped: run it where the Hub is reachable, then
    the compute nodes run with HF_HUB_OFFLINE=1. With HF_HUB_OFFLINE=1 it checks that the cache holds them all."""
    prefetch_models(ctx)


def stage_push(ctx: RunContext) -> None:
    """Upload a finished run's final model (``hub.run_dir``: grpo/final, else sft/final) to ``hub.model_id``."""
    push_run(ctx)


def stage_describe(ctx: RunContext) -> None:
    """Print the settings of ``describe`` (a section; "" = reward, trainer.grpo, estimator) with their meaning."""
    from opgrpo.app.describe import describe

    print(describe(ctx.cfg, ctx.cfg.describe))


ALL_RANKS = ("sft", "grpo")
"""Stages every rank of a multi-process run takes part in (the trainers shard the batch); every other stage runs on
rank 0 while the other ranks wait (estimator, eval, generate, report, compare, pope, opbench: single-process work
whose files one process writes), then the other ranks take over what it produced (the estimator's path)."""


STAGES: dict[str, Callable[[RunContext], None]] = {
    "estimator": stage_estimator,
    "eval_base": stage_eval_base,
    "sft": stage_sft,
    "grpo": stage_grpo,
    "eval": stage_eval,
    "report": stage_report,
    "compare": stage_compare,
    "pope": stage_pope,
    "opbench": stage_opbench,
    "generate": stage_generate,
    "describe": stage_describe,
    "prefetch": stage_prefetch,
    "push": stage_push,
}
"""Every stage by name: ``stage=NAME`` runs one, ``stage=pipeline`` the ``pipeline`` list in order."""
PIPELINE_STAGES = ("estimator", "eval_base", "sft", "grpo", "eval")
"""The stages a ``pipeline`` list may hold."""


def run_on_ranks(name: str, ctx: RunContext) -> None:
    """Run stage ``name``: on every rank (``ALL_RANKS``), else on rank 0 with the others waiting for its outcome;
    a failure on rank 0 fails every rank with the reason instead of leaving them at a barrier."""
    from opgrpo.training.distributed import broadcast, dist_info

    info = dist_info()
    if name in ALL_RANKS or info.world_size == 1:
        STAGES[name](ctx)
        return
    outcome = None
    if info.is_main:
        try:
            STAGES[name](ctx)
            outcome = {"ok": True, "estimator_path": ctx.estimator_path, "policy_path": ctx.policy_path}
        except BaseException as exc:
            broadcast({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            raise
    else:
        log.info("rank %d waits while rank 0 runs stage %s", info.rank, name)
    outcome = broadcast(outcome)
    if not outcome["ok"]:
        raise RuntimeError(f"stage {name} failed on rank 0: {outcome['error']}")
    ctx.estimator_path, ctx.policy_path = outcome["estimator_path"], outcome["policy_path"]


def run_stage(name: str, ctx: RunContext) -> None:
    """Run stage ``name`` on its ranks (``run_on_ranks``); a pipeline stage first asks opgrpo.app.reuse (rank 0
    decides from manifests, every rank follows) whether it is reused, resumed or run afresh, and records its
    completed manifest after."""
    from opgrpo.app import reuse
    from opgrpo.training.distributed import barrier, broadcast, dist_info

    if name not in PIPELINE_STAGES:
        run_on_ranks(name, ctx)
        return
    info = dist_info()
    plan = None
    if info.is_main:
        try:
            plan = reuse.plan_stage(name, ctx)
        except BaseException as exc:
            reuse.release_held()  # a refusal after the store's lock was taken: the next job must not wait for it
            broadcast(reuse.Plan("error", error=f"{type(exc).__name__}: {exc}"))
            raise
    plan = broadcast(plan)
    if plan.action == "error":
        raise RuntimeError(f"stage {name} could not start on rank 0: {plan.error}")
    reuse.apply_plan(name, plan, ctx)
    if plan.action == "reuse":
        return
    try:
        run_on_ranks(name, ctx)
    except BaseException:
        reuse.release_held()  # a shared stage that failed here: another job may compute it
        raise
    if name in ALL_RANKS:
        barrier()  # every rank has written its share before rank 0 records (and may move) the stage's folder
    if info.is_main:
        reuse.finish_stage(name, ctx, plan)


def run_stages(ctx: RunContext) -> RunContext:
    """Seed, then run ``stage`` (or the pipeline's stages in order) in ``ctx`` (the checked config, the run directory,
    the data the start-up check parsed); a pipeline ends with its table."""
    import numpy as np
    import torch

    from opgrpo.app.summary import before_after_table

    cfg, run = ctx.cfg, ctx.run
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    stages = stages_of(cfg)
    from opgrpo.app.identity import run_identity

    run.identity = run_identity(cfg, stages)
    if run.main:
        from opgrpo.app.reuse import prepare_run

        prepare_run(ctx, stages)  # the numbers of matching stages not run now; init_from's products
    if cfg.init_from:
        from opgrpo.training.distributed import broadcast

        ctx.estimator_path, ctx.policy_path = broadcast((ctx.estimator_path, ctx.policy_path))
    with tracked_job(cfg, run) as tracker:  # one W&B run per job; finished (exit 1 on error) when the block ends
        ctx.tracker = tracker
        job_start = time.monotonic()
        for name in stages:
            log.info("=== stage %s ===", name)
            start = time.monotonic()
            run_stage(name, ctx)
            # wall times, for the sweep report's job cost: time/<stage>_s and time/job_s (every stage so far)
            now = time.monotonic()
            run.log("time", {f"{name}_s": round(now - start, 2), "job_s": round(now - job_start, 2)})
            tracker.log_summary(run.summary)  # each stage's final numbers (eval/NLI, ...) into the W&B summary
        push_final(ctx)  # hub.push=true: the last trained final/ (weights, tokenizer, card) to hub.model_id, rank 0
    if cfg.stage == "pipeline" and run.main:
        print(before_after_table(run.summary, threshold=cfg.eval.threshold, nli_backend=cfg.eval.nli.backend)
              + f"\nrun directory: {run.path}")
    return ctx
