"""The eval stage's body: a policy's responses (generated, or read from a file) -> NLI benchmark per split,
plus the OP reward components of the same responses and, optionally, the 1-5 judge evaluation.

Every input is an argument (no run context is read here): the test splits, how to get the responses, the
NLI settings, the reward's encoder and config, the accuracy threshold and the judge config. The NLI scorer
and the encoder come as zero-argument builders, called when first needed, so that the caller can share
one model across runs and the generating policy is freed before the NLI model loads.

Outputs in ``out_dir``: responses.jsonl (each response whole, its core and summary apart, whether they parse and
the samples drawn), the NLI metrics (nli_metrics.json/.csv), per-item scores
(nli_items.jsonl, each row with its item's split), reward.json (means, the rule they were measured by and the
estimator's identity; with a reference rule its numbers and the rule under ``reference``), reward_items.jsonl (each
response's reward with the estimator's fingerprint, and its reference numbers), judge.json (with a judge); the
printed table.
Returns the metrics dict logged to the run summary: ``reward`` holds the numbers at the run's own reward config
(its ``reward.tau_*`` and weights, named in ``reward/tau_cov``, ``reward/tau_uniq``); ``reference`` (with a
reference rule, opgrpo.reward.evaluation) the numbers every run is ranked and compared by, with the rule's
thresholds, weights and fingerprint (``reference/rule``).
"""
from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opgrpo.estimator.identity import label
from opgrpo.evaluation.responses import Collected, collect_responses, extract_blocks
from opgrpo.reward.evaluation import REFERENCE_KEYS, rule_fingerprint, rule_of

if TYPE_CHECKING:
    from opgrpo.benchmark import Item
    from opgrpo.evaluation.config import NLIConfig
    from opgrpo.evaluation.judge_eval import JudgeEvalConfig
    from opgrpo.evaluation.nli import EntailmentScorer
    from opgrpo.reward import RewardConfig

__all__ = ["evaluate", "generate_for_items", "reward_means"]

log = logging.getLogger("opgrpo.eval")


def generate_for_items(items: Sequence[Item], policy: str, *, prompt: str, backend: str, temperature: float,
                       top_p: float, max_new_tokens: int, num_return_sequences: int, batch_size: int, seed: int,
                       max_attempts: int = 1, chat_template: str = "", gguf_file: str = "", dtype: str = "auto",
                       trust_remote_code: bool = False, device: str = "auto", vllm_tensor_parallel_size: int = 1,
                       vllm_gpu_memory_utilization: float = 0.9, policy_dtype: str = "") -> Collected:
    """One response per item from ``policy`` (the first sample of each prompt, which the benchmark scores).

    ``prompt`` (implicit | explicit) renders each situation as a chat prompt; ``backend`` is auto (vLLM when
    installed), transformers or vllm; the sampling settings are those of ``eval.generation``. With
    ``max_attempts`` > 1 an item whose response lacks a non-empty core and summary is sampled again, up to that
    many samples (opgrpo.evaluation.responses.collect_responses; the model is loaded once). The model settings
    (chat template, GGUF file, dtype, remote code, device) apply to the transformers backend; dtype,
    tensor-parallel size and GPU memory share to the vLLM engine; ``policy_dtype`` (``eval.generation``), when set,
    replaces ``dtype`` (the model section's). Returns the responses with the attempts per item.
    """
    from opgrpo.models import generation
    from opgrpo.text.prompts import chat_prompt

    prompts = [chat_prompt(it.situation, prompt) for it in items]
    dtype = policy_dtype or dtype
    use_vllm = backend == "vllm" or (backend == "auto" and generation.vllm_available())
    kwargs = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                  num_return_sequences=num_return_sequences)
    log.info("generating %d responses with %s (%s)", len(prompts), policy, "vllm" if use_vllm else "transformers")
    policy_model: dict[str, Any] = {}  # emptied at the end, so the policy is freed before the NLI model loads
    if use_vllm:
        policy_model["engine"] = generation.load_vllm(
            policy, dtype=dtype, seed=seed, tensor_parallel_size=vllm_tensor_parallel_size,
            gpu_memory_utilization=vllm_gpu_memory_utilization)

        # the checkpoint's top-k and repetition penalty, which transformers (the authors' HF pipeline) applies
        defaults = generation.checkpoint_sampling_defaults(policy)

        def sample(batch: list, _seed: int) -> list[str]:  # the engine's own random stream moves on between calls
            outs = generation.vllm_chat(policy_model["engine"], batch, chat_template=chat_template,
                                        sampling_defaults=defaults, **kwargs)
            return [o[0] if o else "" for o in outs]
    else:
        policy_model["model"], policy_model["tokenizer"] = generation.load_policy(
            policy, gguf_file=gguf_file, dtype=dtype, chat_template=chat_template,
            trust_remote_code=trust_remote_code, device=device)

        def sample(batch: list, batch_seed: int) -> list[str]:
            outs = generation.generate_responses(policy_model["model"], policy_model["tokenizer"], batch,
                                                 batch_size=batch_size, seed=batch_seed, **kwargs)
            return [o[0] if o else "" for o in outs]
    try:
        return collect_responses(prompts, sample, max_attempts=max_attempts, seed=seed)
    finally:
        policy_model.clear()
        gc.collect()


def reward_means(items: Sequence[Item], responses: Sequence[str], encoder: Any, reward: RewardConfig, *,
                 prompt: str = "implicit", tokenizer: Any = None, per_item: list | None = None,
                 reference: RewardConfig | None = None, per_item_reference: list | None = None) -> dict[str, float]:
    """Mean over the responses of the OP reward total, components and rates (NaN without responses).
    Under ``reward.masking == "prompt"`` the keywords come from each item's ``prompt``-kind chat prompt, rendered
    with ``tokenizer``'s chat template when given (opgrpo.reward.score_responses). ``per_item``: a list that
    receives each response's {key: value} in item order. With ``reference`` (opgrpo.reward.evaluation.
    reference_config) the same responses are also scored by that rule from the same sentence embeddings, each
    response's reference numbers going to ``per_item_reference``."""
    from opgrpo.reward import SUMMARY_KEYS, score_responses
    from opgrpo.reward.evaluation import score_with_reference

    args = ([it.situation for it in items], list(responses), [it.references for it in items], encoder)
    if reference is None:
        scores = score_responses(*args, reward, prompt=prompt, tokenizer=tokenizer)
    else:
        scores, ref = score_with_reference(*args, reward, reference, prompt=prompt, tokenizer=tokenizer)
        if per_item_reference is not None:
            per_item_reference.extend(ref)
    if per_item is not None:
        per_item.extend({k: float(s[k]) for k in SUMMARY_KEYS} for s in scores)
    return {k: _mean([s[k] for s in scores]) for k in SUMMARY_KEYS}


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def evaluate(splits: Mapping[str, Sequence[Item]], out_dir: str | Path, *,
             responses: Callable[[list[Item]], Sequence[str]], source: str, nli: NLIConfig,
             nli_scorer: Callable[[], EntailmentScorer], encoder: Callable[[], Any], reward: RewardConfig,
             threshold: float, judge: JudgeEvalConfig | None = None,
             estimator: Mapping[str, Any] | None = None, prompt: str = "implicit",
             tokenizer: Callable[[], Any] | None = None, reference: RewardConfig | None = None) -> dict[str, Any]:
    """Score the responses to the items of ``splits`` ({split name: items}) and write the outputs to ``out_dir``.

    ``responses(items)`` gives one response per item, in order (e.g. ``generate_for_items`` or
    ``opgrpo.evaluation.responses.load_responses`` with the file bound); ``source`` names where they come
    from in the printed table. ``nli`` gives the backend, model name and sentence splitter; ``nli_scorer()``
    and ``encoder()`` return the NLI scorer and the reward's sentence encoder. Accuracy counts NLI scores
    strictly above ``threshold``. With ``judge`` (kind other than "none") the 1-5 judge also scores them.
    ``estimator``: the identity of the reward's estimator (opgrpo.estimator.identity), written with every reward
    number. Items ``responses`` gives ``None`` for (a responses file without them) are left out and counted per split.
    ``prompt``/``tokenizer()``: the prompt kind and the policy's tokenizer, for ``reward.masking == "prompt"``.
    ``reference``: the reference rule (opgrpo.reward.evaluation.reference_config); the responses are also scored by
    it, from the same sentence embeddings, under ``reference`` in the output (None: not scored).
    """
    from opgrpo.evaluation.metrics import (
        format_table,
        split_metrics,
        write_eval_outputs,
    )
    from opgrpo.evaluation.nli import score_items

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [it for name in splits for it in splits[name]]
    split_of = {it.id: name for name in splits for it in splits[name]}
    if not items:
        raise ValueError("benchmark.test_file: no usable test items")
    texts = responses(items)
    counts = dict(getattr(texts, "counts", {}))
    attempts = list(getattr(texts, "attempts", None) or [None] * len(texts))
    missing = {name: sum(t is None for it, t in zip(items, texts) if split_of[it.id] == name) for name in splits}
    if any(missing.values()):
        kept = [(it, t, a) for it, t, a in zip(items, texts, attempts) if t is not None]
        log.warning("evaluating the %d items with a response; left out per split: %s", len(kept),
                    ", ".join(f"{k}={v}" for k, v in missing.items() if v))
        items, texts, attempts = [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]
    texts = list(texts)
    with open(out_dir / "responses.jsonl", "w") as fh:  # core and summary apart, as the authors kept them
        for it, r, a in zip(items, texts, attempts):
            core, summary = extract_blocks(r) or ("", "")
            fh.write(json.dumps({"id": it.id, "split": split_of[it.id], "situation": it.situation, "response": r,
                                 "core": core, "summary": summary, "parsed": bool(core), "attempts": a}) + "\n")

    metrics: dict[str, Any] = {}
    if nli.backend != "none":
        item_scores = score_items(items, texts, nli_scorer(), splitter=nli.splitter, language=nli.language,
                                  text=nli.text, attempts=attempts)
        metrics = split_metrics(item_scores, split_of, threshold=threshold)
        write_eval_outputs(out_dir, metrics, item_scores, split_of)
    per_item: list[dict[str, float]] = []
    per_item_ref: list[dict[str, float]] = []
    reward_mean = reward_means(items, texts, encoder(), reward, prompt=prompt, per_item=per_item,
                               tokenizer=tokenizer() if tokenizer is not None and reward.masking == "prompt" else None,
                               reference=reference, per_item_reference=per_item_ref)
    identity = dict(estimator or {})
    own_rule = rule_of(reward, prompt)
    ref_out: dict[str, Any] = {}
    if reference is not None:
        rule = rule_of(reference, prompt)
        ref_out = {**{k: _mean([r[k] for r in per_item_ref]) for k in REFERENCE_KEYS},
                   "rule": rule_fingerprint(rule), "tau_cov": rule["tau_cov"], "tau_uniq": rule["tau_uniq"],
                   "weights": dict(rule["weights"])}
    (out_dir / "reward.json").write_text(json.dumps(
        {**reward_mean, "rule": own_rule, "estimator": identity,
         **({"reference": {**ref_out, "rule": rule, "fingerprint": ref_out["rule"]}} if ref_out else {})}, indent=2))
    with open(out_dir / "reward_items.jsonl", "w") as fh:  # each response's reward, with the estimator behind it
        for i, (it, scores) in enumerate(zip(items, per_item)):
            ref_row = {"reference": per_item_ref[i], "reference_rule": ref_out["rule"]} if ref_out else {}
            fh.write(json.dumps({"id": it.id, "split": split_of[it.id], **scores, **ref_row,
                                 "estimator": identity.get("fingerprint", ""),
                                 "estimator_tuned": identity.get("tuned")}) + "\n")
    if metrics:
        print(f"\nNLI ({nli.backend}: {nli.model}, scoring the {nli.text} text), responses of {source}\n"
              f"{format_table(metrics)}")
    else:
        print(f"\nNLI skipped (eval.nli.backend=none); responses of {source}")
    scored_with = f" (estimator {label(identity)})" if identity else ""
    print(f"OP reward of these responses{scored_with}, at this run's own reward config (tau_cov={reward.tau_cov:g} "
          f"tau_uniq={reward.tau_uniq:g}): " + ", ".join(f"{k}={v:.3f}" for k, v in reward_mean.items()))
    if ref_out:
        print(f"... by the reference rule {ref_out['rule']} (tau_cov={ref_out['tau_cov']:g} "
              f"tau_uniq={ref_out['tau_uniq']:g}, weights {'/'.join(f'{w:g}' for w in ref_out['weights'].values())}"
              "), the numbers runs are compared by: "
              + ", ".join(f"{k}={ref_out[k]:.3f}" for k in REFERENCE_KEYS))
    out: dict[str, Any] = {**metrics, "reward": {**reward_mean, "tau_cov": own_rule["tau_cov"],
                                                 "tau_uniq": own_rule["tau_uniq"]},
                           "nli_backend": nli.backend,
                           "responses": {"items": len(items), **{f"missing/{k}": v for k, v in missing.items()},
                                         **counts}}
    if ref_out:
        out["reference"] = ref_out
    if identity:
        out["reward_estimator"] = identity
    if judge is not None and judge.kind != "none":
        from opgrpo.evaluation.judge_eval import run_judge_eval, write_judge_outputs

        result = run_judge_eval(judge, [it.situation for it in items], texts)
        write_judge_outputs(out_dir, result, [it.id for it in items])
        out["judge"] = {"means": result.means, "counts": result.counts}
    return out
