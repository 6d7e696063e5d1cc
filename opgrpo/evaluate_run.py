"""The eval stage: responses of a policy (generated, or read from a file) -> NLI benchmark per split,
plus the OP reward components of the same responses and, optionally, the 1-5 judge evaluation.

Outputs in the stage directory: responses.jsonl, the NLI metrics (JSON/CSV), per-item scores (JSONL),
reward.json, judge.json; the printed table. Returns the metrics dict logged to the run summary.
"""
from __future__ import annotations

import gc
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.config import to_object

log = logging.getLogger("opgrpo.eval")


def _generate(p, policy: str, items: list) -> list[str]:
    from opgrpo import generation
    from opgrpo.prompts import chat_prompt

    g = p.cfg.eval.generation
    prompts = [chat_prompt(it.situation, g.prompt) for it in items]
    use_vllm = g.backend == "vllm" or (g.backend == "auto" and generation.vllm_available())
    kwargs = dict(temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens,
                  num_return_sequences=g.num_return_sequences, seed=g.seed)
    log.info("generating %d responses with %s (%s)", len(prompts), policy, "vllm" if use_vllm else "transformers")
    if use_vllm:
        outs = generation.generate_responses_vllm(policy, prompts, chat_template=p.cfg.model.chat_template, **kwargs)
    else:
        m = p.cfg.model
        same_base = policy == m.name_or_path
        model, tok = generation.load_policy(policy, gguf_file=m.gguf_file if same_base else "", dtype=m.dtype,
                                            chat_template=m.chat_template, trust_remote_code=m.trust_remote_code,
                                            device=p.cfg.device)
        outs = generation.generate_responses(model, tok, prompts, batch_size=g.batch_size, **kwargs)
        del model
        gc.collect()
    return [o[0] if o else "" for o in outs]  # the benchmark scores the first sample of each prompt


def _nli_scorer(p):
    """One NLI scorer per run (eval_base and eval of a pipeline share it)."""
    cfg = to_object(p.cfg, "eval.nli")
    key = ("nli", cfg.backend, cfg.model)
    if key not in p._cache:
        from opgrpo.nli import build_scorer

        p._cache[key] = build_scorer(cfg)
    return p._cache[key]


def _reward_means(p, items: list, responses: list[str]) -> dict[str, Any]:
    from opgrpo.rewards import score_completions

    scores = score_completions([it.situation for it in items], responses, [it.references for it in items],
                               p.encoder(), to_object(p.cfg, "reward"))
    keys = ("total", "coverage", "uniqueness", "format", "tag", "coverage_rate", "uniqueness_rate")
    return {k: float(np.mean([s[k] for s in scores])) if scores else float("nan") for k in keys}


def evaluate(p, policy: str, out_dir: Path) -> dict[str, Any]:
    from opgrpo.evaluation import format_table, load_responses, split_metrics, write_eval_outputs
    from opgrpo.nli import score_items

    e = p.cfg.eval
    splits = p.test_splits()
    items = [it for name in splits for it in splits[name]]
    split_of = {it.id: name for name in splits for it in splits[name]}
    if not items:
        raise ValueError("benchmark.test_file: no usable test items")
    if e.responses_file:
        responses = load_responses(Path(e.responses_file), items)
        source = e.responses_file
    else:
        responses = _generate(p, policy, items)
        source = policy
    with open(out_dir / "responses.jsonl", "w") as fh:
        for it, r in zip(items, responses):
            fh.write(json.dumps({"id": it.id, "split": split_of[it.id], "situation": it.situation, "response": r}) + "\n")

    scorer = _nli_scorer(p)
    item_scores = score_items(items, responses, scorer, splitter=e.nli.splitter, language=e.nli.language)
    metrics = split_metrics(item_scores, split_of, threshold=e.threshold)
    write_eval_outputs(out_dir, metrics, item_scores)
    reward = _reward_means(p, items, responses)
    (out_dir / "reward.json").write_text(json.dumps(reward, indent=2))
    label = f"NLI ({e.nli.backend}: {e.nli.model})"
    print(f"\n{label}, responses of {source}\n{format_table(metrics)}")
    print("OP reward of these responses: " + ", ".join(f"{k}={v:.3f}" for k, v in reward.items()))
    out: dict[str, Any] = {**metrics, "reward": reward, "nli_backend": e.nli.backend}
    if e.judge.kind != "none":
        from opgrpo.judge_eval import run_judge_eval, write_judge_outputs

        result = run_judge_eval(to_object(p.cfg, "eval.judge"), [it.situation for it in items], responses)
        write_judge_outputs(out_dir, result, [it.id for it in items])
        out["judge"] = {"means": result.means, "counts": result.counts}
    return out
