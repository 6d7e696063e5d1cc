"""``stage=generate``: one response per test item, written as a responses file that ``stage=eval
eval.responses_file=FILE`` scores, so that a baseline is evaluated exactly like a trained policy.

Who answers: the policy alone with the ``eval.generation`` settings and prompt kind (implicit or explicit; the
generation, resampling and model loading of ``opgrpo.evaluation.run.generate_for_items``), or with ``baseline.kind
== "modular"`` Modular Pluralism (opgrpo.evaluation.modular: community drafts, then the policy as the main model).

The file is JSON Lines, one row per item in split order, with the fields the eval stage's own ``responses.jsonl``
has (``id``, ``split``, ``situation``, ``response``, its ``core`` and ``summary`` blocks as the authors' regex finds
them, ``parsed``, ``attempts``) plus where it came from (``source``: the policy, ``prompt``: the prompt kind or
``modular/<prompts>``) and, for Modular Pluralism, ``drafts``: ``[{"model": label, "text": draft or null}]``.
``opgrpo.evaluation.responses.load_responses`` matches it to the items by ``id``.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opgrpo.evaluation.responses import extract_blocks
from opgrpo.utils.checks import Problems

if TYPE_CHECKING:
    from opgrpo.benchmark import Item
    from opgrpo.evaluation.modular import BaselineConfig

__all__ = ["OUT_SUFFIXES", "GenerateConfig", "eval_command", "generate_responses_file", "response_row"]

log = logging.getLogger(__name__)

OUT_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class GenerateConfig:
    """stage=generate: where the responses file goes (who answers: ``eval.generation``, ``baseline``)."""

    out_file: str = ""
    """Write the responses here (.jsonl); "" = ``<run dir>/generate/responses.jsonl``."""

    def problems(self) -> list[str]:
        p = Problems()
        if self.out_file and Path(self.out_file).suffix.lower() not in OUT_SUFFIXES:
            p.add("out_file", f"must end in {' or '.join(OUT_SUFFIXES)} (a JSON Lines file), got {self.out_file!r}")
        return list(p)


def response_row(item: Item, split: str, response: str, **extra: Any) -> dict[str, Any]:
    """One row of the responses file (the eval stage's fields, then ``extra``)."""
    core, summary = extract_blocks(response) or ("", "")
    return {"id": item.id, "split": split, "situation": item.situation, "response": response, "core": core,
            "summary": summary, "parsed": bool(core), **extra}


def generate_responses_file(splits: Mapping[str, Sequence[Item]], out_file: str | Path, *, policy: str,
                            generation: Mapping[str, Any], baseline: BaselineConfig | None = None,
                            chat_template: str = "", gguf_file: str = "", dtype: str = "auto",
                            trust_remote_code: bool = False, device: str = "auto") -> dict[str, Any]:
    """Write the responses of ``policy`` (or of Modular Pluralism around it) to the items of ``splits`` ({split: items})
    into ``out_file``; return the numbers for the run's summary (items per split, unparsed responses, ...).

    ``generation``: the ``eval.generation`` settings as a mapping (``generate_for_items``' keyword arguments:
    prompt, backend, temperature, top_p, max_new_tokens, num_return_sequences, batch_size, seed, max_attempts,
    vLLM settings). ``baseline``: ``None`` or kind "none" for the policy alone, kind "modular" for Modular Pluralism
    (its own sampling settings; ``generation``'s backend, batch size, seed and vLLM settings apply). The model
    settings (chat template, GGUF file, dtype, remote code, device) are the policy's; ``generation["policy_dtype"]``,
    when set, replaces ``dtype`` (for Modular Pluralism's main model too, unless ``baseline.dtype`` is set).
    """
    from opgrpo.evaluation.run import generate_for_items

    if baseline is not None:  # a misspelt kind must not fall back to the policy alone without a word
        p = Problems()
        p.extend_from("baseline.", baseline.problems())
        p.raise_if_any("stage=generate")
    items = [it for name in splits for it in splits[name]]
    split_of = [name for name in splits for _ in splits[name]]
    if not items:
        raise ValueError("benchmark.test_file: no usable test items to generate responses for")
    out_file = Path(out_file)
    if out_file.suffix.lower() not in OUT_SUFFIXES:
        raise ValueError(f"generate.out_file: must end in {' or '.join(OUT_SUFFIXES)}, got {str(out_file)!r}")
    dtype = generation.get("policy_dtype") or dtype
    model = dict(chat_template=chat_template, gguf_file=gguf_file, dtype=dtype, trust_remote_code=trust_remote_code,
                 device=device)
    summary: dict[str, Any] = {"items": len(items), "source": str(policy)}
    if baseline is not None and baseline.kind == "modular":
        from opgrpo.evaluation.modular import modular_responses

        keys = ("backend", "batch_size", "seed", "vllm_tensor_parallel_size", "vllm_gpu_memory_utilization")
        result = modular_responses([it.situation for it in items], policy, baseline,
                                   **{k: generation[k] for k in keys if k in generation}, **model)
        prompt = f"modular/{baseline.prompts}"
        rows = [response_row(it, split, text, attempts=1, source=str(policy), prompt=prompt,
                             drafts=[{"model": m, "text": d} for m, d in zip(result.labels, drafts)])
                for it, split, text, drafts in zip(items, split_of, result.responses, result.drafts)]
        summary.update(baseline="modular", community_models=len(result.labels), **result.counts)
    else:
        texts = generate_for_items(items, policy, **generation, **model)
        attempts = list(getattr(texts, "attempts", None) or [1] * len(texts))
        prompt = str(generation.get("prompt", "implicit"))
        rows = [response_row(it, split, text, attempts=a, source=str(policy), prompt=prompt)
                for it, split, text, a in zip(items, split_of, texts, attempts)]
        summary.update(baseline="none", **dict(getattr(texts, "counts", {})))
    summary["prompt"] = prompt
    summary["never_parsed"] = sum(not r["parsed"] for r in rows)  # no core and summary (baselines: expected)
    summary.update({f"items/{name}": len(splits[name]) for name in splits})
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")  # ASCII escapes: a lone surrogate cannot break the write
    summary["file"] = str(out_file)
    command = eval_command(out_file, prompt)
    log.info("%d responses (%s, %s) written to %s; score them with %s", len(rows), policy, prompt, out_file, command)
    print(f"responses of {policy} ({prompt}) to {len(rows)} test items: {out_file}\n"
          f"score them with: opgrpo ... {command}")
    return summary


def eval_command(out_file: str | Path, prompt: str) -> str:
    """The overrides that score ``out_file`` with ``stage=eval`` (printed after generating it).

    ``eval=paper`` scores the core block only (``eval.nli.text=core``: an untagged response scores 0), so the
    responses of a baseline, which have no ``<core perspectives>``/``<summary>`` tags, are scored whole
    (``eval.nli.text=full``); the explicit prompt also sets ``eval.generation.prompt=explicit``, the prompt whose
    keywords ``reward.masking=prompt`` masks (together the explicit settings of ``eval=explicit``, without
    replacing the rest of the run's eval preset). The implicit prompt keeps the run's own settings.
    """
    command = f"stage=eval eval.responses_file={out_file}"
    if prompt == "explicit":
        return f"{command} eval.generation.prompt=explicit eval.nli.text=full"
    if prompt.startswith("modular"):
        return f"{command} eval.nli.text=full"
    return command
