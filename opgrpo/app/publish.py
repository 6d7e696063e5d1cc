"""A run's models in and out of the Hugging Face Hub, from the composed config (the work is done by
opgrpo.models.model_card, opgrpo.models.hub and opgrpo.models.prefetch).

- ``write_card(ctx, stage, start_from)``: ``<stage>/final/README.md`` with the run's base model, data, reward and
  trainer settings (after the SFT and GRPO stages); ``card_evaluation(ctx, policy, metrics)`` adds the eval stage's
  numbers to the card of the policy it evaluated, when that is this run's trained one.
- ``push_final(ctx)``: at the end of a run with ``hub.push=true``, the last trained ``final/`` to ``hub.model_id``; a
  push that fails leaves the training results standing: it is recorded (``hub/push: failed``, the reason, the retry
  command) and the run completes. ``push_run(ctx)``: ``stage=push``, the final model of ``hub.run_dir``.
- ``stage_prefetch``'s work, ``prefetch_models(ctx)``: every model the config names (``model_refs``) into the HF
  cache, for compute nodes without internet.

Files are written on rank 0 only (the stages that call these run there, or check ``ctx.run.main``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from opgrpo.app.context import RunContext
from opgrpo.app.schema import OPGRPOConfig
from opgrpo.utils.redact import redact

log = logging.getLogger("opgrpo.app.publish")


# ---- model card ------------------------------------------------------------------------------------------
def _reward(ctx: RunContext, rewards: Any = None) -> dict[str, Any]:
    """The reward settings a GRPO card shows; ``rewards``: the stage's reward setup (TRL functions and weights)."""
    r = ctx.cfg.reward
    out: dict[str, Any] = {
        "weights": asdict(r.weights),
        "tau_cov (coverage threshold)": r.tau_cov,
        "tau_uniq (uniqueness threshold)": r.tau_uniq,
        "mode": r.mode,
        "aggregation": r.aggregation,
        "keyword masking": r.masking,
    }
    if rewards is not None:
        out["TRL reward functions (weight)"] = {getattr(f, "__name__", f"reward_{i}"): float(w)
                                                for i, (f, w) in enumerate(zip(rewards.funcs, rewards.weights))}
        out["TRL aggregation"] = rewards.trl_aggregation
    identity = ctx.estimator_identity()
    out["estimator"] = (f"{identity.get('path', '')} (fingerprint {identity.get('fingerprint', '?')}, "
                        f"{'fine-tuned' if identity.get('tuned') else 'untuned base'})")
    return out


def write_card(ctx: RunContext, stage: str, start_from: str = "", settings: Any = None,
               metrics: dict[str, Any] | None = None, rewards: Any = None) -> Path | None:
    """(Re)write ``<stage>/final/README.md`` (opgrpo.models.model_card.write_model_card) with what the config says about
    the run; ``start_from``: the checkpoint the stage trained from; ``settings``: the trainer settings it used
    (default ``trainer.<stage>``); ``metrics``: the stage's (for the number of training examples); ``rewards``:
    GRPO's reward setup (funcs, weights, trl_aggregation). Rank 0 only; None when there is no final model."""
    from opgrpo.models.model_card import write_model_card

    final = ctx.run.path / stage / "final"
    if not ctx.run.main or not (final / "config.json").is_file():
        return None
    cfg = ctx.cfg
    settings = asdict(settings if settings is not None else getattr(cfg.trainer, stage))
    lora = cfg.model.lora
    if lora.enabled:
        settings["lora"] = {k: v for k, v in asdict(lora).items() if k != "enabled"}
    files = [f for f in (cfg.benchmark.train_file, cfg.benchmark.sft_file if stage == "sft" else "") if f]
    return write_model_card(
        final, stage=stage, base_model=str(cfg.model.name_or_path), start_from=start_from,
        dataset=str(cfg.benchmark.name), data_files=files, settings=settings,
        reward=_reward(ctx, rewards) if stage == "grpo" else None, hub_model_id=str(cfg.hub.model_id),
        train_examples=(metrics or {}).get("num_examples", (metrics or {}).get("num_prompts")),
        model_name=Path(str(cfg.hub.model_id)).name if cfg.hub.model_id else "", tags=list(cfg.tags))


def eval_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of an eval stage's output for a model card: NLI accuracy per split (overall first) and
    the mean NLI score, the OP reward's coverage / uniqueness rates and total, the judge's means."""
    out: dict[str, float] = {}
    splits = [k for k, v in metrics.items() if isinstance(v, dict) and "accuracy" in v]
    for split in sorted(splits, key=lambda s: s != "overall"):
        out[f"{split}/accuracy"] = metrics[split]["accuracy"]
    if isinstance(metrics.get("overall"), dict) and "mean" in metrics["overall"]:
        out["overall/mean_nli_score"] = metrics["overall"]["mean"]
    reward = metrics.get("reward") or {}
    for key in ("coverage_rate", "uniqueness_rate", "total"):
        if key in reward:
            out[f"reward/{key}"] = reward[key]
    for key, value in ((metrics.get("judge") or {}).get("means") or {}).items():
        out[f"judge/{key}"] = value
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def card_evaluation(ctx: RunContext, policy: str, metrics: dict[str, Any]) -> Path | None:
    """Add ``metrics`` (an eval stage's output for ``policy``'s generated responses) to ``policy``'s model card when
    ``policy`` is a final model this run trained; None (nothing written) otherwise."""
    from opgrpo.models.model_card import update_model_card_evaluation

    cfg = ctx.cfg
    ours = {str(ctx.run.path / s / "final") for s in ("sft", "grpo")}
    if not ctx.run.main or str(policy) not in ours or cfg.eval.responses_file:
        return None
    nli = cfg.eval.nli
    items = (metrics.get("responses") or {}).get("items", "the")
    note = (f"On {items} test items of {cfg.benchmark.name}, one sampled response each (prompt "
            f"{cfg.eval.generation.prompt}, "
            f"temperature {cfg.eval.generation.temperature}). "
            + (f"NLI: {nli.backend} with `{nli.model}`; accuracy = share of items whose entailment score is above "
               f"{cfg.eval.threshold}. " if nli.backend != "none" else "No NLI scoring (eval.nli.backend=none). ")
            + "Reward rates are the OP reward's, with the estimator named under Reward.")
    return update_model_card_evaluation(policy, eval_numbers(metrics), eval_note=note,
                                        dataset=str(cfg.benchmark.name))


# ---- push ------------------------------------------------------------------------------------------------
def push_final(ctx: RunContext) -> str | None:
    """With ``hub.push``: upload this run's last trained model (``ctx.policy_path``, a ``final/`` of this run) to
    ``hub.model_id`` on rank 0 and log ``hub/push``, ``hub/model_id``, ``hub/url``; returns the commit URL (None:
    nothing pushed). A push that fails (no network, the Hub refusing) does not undo the training: it is logged as an
    error naming the step, the reason and the command that retries it (``stage=push``), recorded as ``hub/push:
    failed`` (``ctx.hub_push``, which the entrypoint puts into status.json) and the run goes on to complete."""
    from opgrpo.models.hub import push_command

    if not ctx.cfg.hub.push or not ctx.run.main or ctx.cfg.stage == "push":  # stage=push pushes by itself
        return None
    settings = ctx.cfg.hub
    final = Path(ctx.policy_path) if ctx.policy_path else None
    if final is None or final.parent.parent != ctx.run.path:
        raise RuntimeError("hub.push: this run trained no model to push (ctx.policy_path is "
                           f"{ctx.policy_path or 'empty'}); run stage sft or grpo, or push a folder with `hf upload`")
    try:
        return _push(ctx, final, ctx.run.path)
    except Exception as exc:  # noqa: BLE001 - the trained model stays in the run directory; the push is retried
        retry = push_command(settings, ctx.run.path)
        ctx.hub_push = {"push": "failed", "model_id": settings.model_id, "folder": str(final),
                        "error": redact(f"{type(exc).__name__}: {exc}"), "retry": retry}
        ctx.run.log("hub", ctx.hub_push)
        log.error("step hub push failed: %s was not uploaded to %s (%s); the training results stand. Retry the push "
                  "with:\n  %s", final, settings.model_id, ctx.hub_push["error"], retry)
        return None


def push_run(ctx: RunContext) -> str:
    """``stage=push``: upload the final model of ``hub.run_dir`` (grpo/final, else sft/final) to ``hub.model_id``;
    a failure fails the stage (the push is all it does)."""
    from opgrpo.models.hub import final_model_folder

    folder = final_model_folder(ctx.cfg.hub.run_dir)  # checked at start-up (HubSettings.problems)
    if folder is None:
        raise RuntimeError(f"hub.run_dir: {ctx.cfg.hub.run_dir!r} holds no trained model")
    return _push(ctx, folder, Path(ctx.cfg.hub.run_dir))


def _push(ctx: RunContext, folder: Path, run_dir: Path) -> str:
    """Upload ``folder`` (the final model of ``run_dir``) with ``hub.*``, print and record where it went."""
    from opgrpo.models.hub import push_folder

    settings = ctx.cfg.hub
    url = push_folder(folder, settings, stage=folder.parent.name, run_dir=str(run_dir))
    print(f"pushed {folder} to https://huggingface.co/{settings.model_id} ({url})")
    ctx.hub_push = {"push": "done", "model_id": settings.model_id, "url": url, "folder": str(folder)}
    ctx.run.log("hub", ctx.hub_push)
    return url


# ---- prefetch --------------------------------------------------------------------------------------------
def model_refs(cfg: OPGRPOConfig) -> list:
    """Every model the config names (``opgrpo.models.prefetch.ModelRef``: config key, hub id or path): the policy, the
    estimator's base model, the estimator's judge (kind transformers), the NLI model (unless eval.nli.backend=none),
    the evaluation and OP-Bench judges (kind transformers), reward.estimator_path, eval.model_path, pope.model_path when set,
    and with baseline=modular every community model (and its tokenizer's files).
    HTTP judges name a served model, not one to download."""
    from opgrpo.models.prefetch import ModelRef

    gguf = cfg.model.gguf_file
    refs = [ModelRef("model.name_or_path", str(cfg.model.name_or_path),
                     [gguf, "*.json", "*.jinja", "tokenizer*", "*.model", "*.txt"] if gguf else None),
            ModelRef("estimator.base_model", str(cfg.estimator.base_model))]
    if cfg.estimator.judge.kind == "transformers":
        refs.append(ModelRef("estimator.judge.model", str(cfg.estimator.judge.model)))
    if cfg.eval.nli.backend != "none":
        refs.append(ModelRef("eval.nli.model", str(cfg.eval.nli.model)))
    if cfg.eval.judge.kind == "transformers":
        refs.append(ModelRef("eval.judge.model", str(cfg.eval.judge.model)))
    if cfg.opbench.judge.kind == "transformers":
        refs.append(ModelRef("opbench.judge.model", str(cfg.opbench.judge.model)))
    for key, ref in (("reward.estimator_path", cfg.reward.estimator_path), ("eval.model_path", cfg.eval.model_path),
                     ("pope.model_path", cfg.pope.model_path)):
        if ref:
            refs.append(ModelRef(key, str(ref)))
    if cfg.baseline.kind == "modular":
        for i, spec in enumerate(cfg.baseline.community):
            if spec.name_or_path:
                refs.append(ModelRef(f"baseline.community[{i}].name_or_path", str(spec.name_or_path)))
            if spec.tokenizer:  # whole: in the presets it is also the LoRA adapters' base model
                refs.append(ModelRef(f"baseline.community[{i}].tokenizer", str(spec.tokenizer)))
    return [r for r in refs if r.ref]


def prefetch_models(ctx: RunContext) -> list:
    """Download ``model_refs(cfg)`` into the HF cache, print what happened to each, write ``prefetch.json`` in the
    run directory; raises RuntimeError naming every model that could not be fetched."""
    from huggingface_hub import constants

    from opgrpo.models.prefetch import prefetch, prefetch_table

    token = ctx.cfg.hub.token()
    fetched = prefetch(model_refs(ctx.cfg), token=token)
    print(f"prefetch into the HF cache {constants.HF_HUB_CACHE}:\n{prefetch_table(fetched)}")
    (ctx.run.path / "prefetch.json").write_text(json.dumps([asdict(f) for f in fetched], indent=2))
    counts: dict[str, int] = {}
    for f in fetched:
        counts[f.status] = counts.get(f.status, 0) + 1
    ctx.run.log("prefetch", {**counts, "downloaded_mib": sum(f.downloaded_bytes for f in fetched) / 2**20})
    bad = [f for f in fetched if not f.ok]
    if bad:
        raise RuntimeError("prefetch: could not fetch " + "; ".join(
            f"{', '.join(f.keys)} = {f.ref!r}: {f.detail}" for f in bad))
    print("done: on the compute nodes set HF_HUB_OFFLINE=1 (and the same HF_HOME / HF_HUB_CACHE)")
    return fetched
