"""The model card of a run's model: ``folder/README.md``, a ``huggingface_hub.ModelCard``.

Its metadata (``ModelCardData``: base model, data sets, tags, ``model-index`` eval results) is what the Hub reads;
its text says how the model was trained (base model, data, reward weights and thresholds, the trainer's main
settings) and how it scored (the run's evaluation, when known: ``update_model_card_evaluation`` rewrites the card
after the eval stage).

Plain arguments only (no Hydra); huggingface_hub is imported when a function needs it.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opgrpo.models.hub_ids import is_hub_id
from opgrpo.utils.redact import redact

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{{ load_ref }}", dtype="auto")
tokenizer = AutoTokenizer.from_pretrained("{{ load_ref }}")
messages = {{ messages }}
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
output = model.generate(**inputs, max_new_tokens=800, do_sample=True, temperature=0.7, top_p=0.9)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

Weights in {{ dtype }}; the tokenizer carries the chat template the model was trained with.

## Training

| | |
|---|---|
{% for k, v in training %}| {{ k }} | {{ v }} |
{% endfor %}{% if reward %}
### Reward

{% for k, v in reward %}- {{ k }}: {{ v }}
{% endfor %}{% endif %}
### Trainer settings

| setting | value |
|---|---|
{% for k, v in settings %}| `{{ k }}` | {{ v }} |
{% endfor %}
{{ eval_section }}## Framework versions

{% for k, v in versions %}- {{ k }}: {{ v }}
{% endfor %}"""


EVAL_SECTION = """## Evaluation

{% if evaluation %}| metric | value |
|---|---|
{% for k, v in evaluation %}| {{ k }} | {{ v }} |
{% endfor %}{% if eval_note %}
{{ eval_note }}
{% endif %}{% else %}Not evaluated in this run yet (the card is rewritten by the eval stage).
{% endif %}

"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "[]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) if value else "{}"
    text = str(value) if value != "" else '""'
    return text.replace("|", "\\|").replace("\n", " ")


def _flat(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with the trainer's ``trl`` section (TRL's fields by TRL's name) as one row per field:
    ``trl.learning_rate``."""
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if k == "trl" and isinstance(v, Mapping):
            out.update((f"trl.{name}", value) for name, value in v.items())
        else:
            out[k] = v
    return out


def _weights_dtype(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "the dtype they were saved in"
    return str(config.get("dtype") or config.get("torch_dtype") or "the dtype they were saved in")


def _versions() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("opgrpo", "trl", "transformers", "torch", "huggingface_hub"):
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            pass
    return out


def _eval_section(evaluation: Mapping[str, float], note: str) -> str:
    from jinja2 import Template

    return Template(EVAL_SECTION).render(evaluation=[(k, _fmt(v)) for k, v in evaluation.items()], eval_note=note)


def _eval_results(dataset: str, evaluation: Mapping[str, float]):
    """``model-index`` entries (huggingface_hub.EvalResult) for the numeric values of ``evaluation``."""
    from huggingface_hub import EvalResult

    results = []
    for metric, value in evaluation.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        results.append(EvalResult(task_type="text-generation", dataset_type=dataset, dataset_name=dataset,
                                  dataset_split="test", metric_type=metric.rsplit("/", 1)[-1], metric_name=metric,
                                  metric_value=float(value)))
    return results or None


def model_card(
    folder: str | os.PathLike,
    *,
    stage: str,
    base_model: str,
    model_name: str = "",
    start_from: str = "",
    dataset: str = "",
    data_files: Sequence[str] = (),
    train_examples: int | None = None,
    reward: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, float] | None = None,
    eval_note: str = "",
    hub_model_id: str = "",
    tags: Iterable[str] = (),
):
    """The ``huggingface_hub.ModelCard`` of the model saved in ``folder`` (see the module docstring).

    ``stage``: ``sft`` or ``grpo``; ``base_model``: what the run started from (a hub id goes into the metadata,
    a local path is named in the text only); ``start_from``: the checkpoint this stage trained from when it is not the
    base model (GRPO after SFT); ``dataset`` / ``data_files``: the benchmark's name and its files (hub ids go into the
    metadata); ``reward``: reward settings shown as a list (GRPO); ``settings``: the trainer's settings (scalars and
    short lists, shown as a table); ``evaluation``: ``metric -> value`` (``overall/accuracy``, ``reward/coverage_rate``,
    ...), also written as ``model-index`` eval results.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from opgrpo.text.prompts import chat_prompt

    folder = Path(folder)
    model_name = model_name or (hub_model_id.split("/")[-1] if hub_model_id else f"opgrpo-{stage}")
    hub_datasets = [f for f in data_files if is_hub_id(f)]
    evaluation = dict(evaluation or {})
    data = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
        library_name="transformers",
        pipeline_tag="text-generation",
        model_name=model_name,
        tags=list(dict.fromkeys(["opgrpo", "trl", stage, *tags])),
        eval_results=_eval_results(dataset or "opgrpo-benchmark", evaluation) if evaluation else None,
    )
    what = {"sft": "supervised fine-tuning on the OP-GRPO response layout (TRL SFTTrainer)",
            "grpo": "GRPO on the Overton-pluralistic reward (TRL GRPOTrainer)"}.get(stage, stage)
    base_text = f"[{base_model}](https://huggingface.co/{base_model})" if is_hub_id(base_model) else f"`{base_model}`"
    training = [("stage", what), ("base model", base_text)]
    if start_from and start_from != base_model:
        training.append(("trained from", f"`{start_from}`"))
    if dataset or data_files:
        training.append(("data", ", ".join([f"**{dataset}**"] * bool(dataset) + [f"`{f}`" for f in data_files])))
    if train_examples is not None:
        training.append(("training examples", str(train_examples)))
    summary = (f"A policy trained with opgrpo (OP-GRPO) from {base_text}: {what}. It answers a situation with the "
               "perspectives that bear on it (`<core perspectives>` lines, then a `<summary>`).")
    settings_rows = [(k, _fmt(v)) for k, v in _flat(settings or {}).items()
                     if not isinstance(v, Mapping) or v]  # empty dicts add nothing
    card = ModelCard.from_template(
        data,
        template_str=CARD_TEMPLATE,
        model_name=model_name,
        summary=summary,
        load_ref=hub_model_id or str(folder),
        messages=json.dumps(chat_prompt("Is it right to tell a white lie to spare a friend's feelings?")),
        dtype=_weights_dtype(folder),
        training=training,
        reward=[(k, _fmt(v)) for k, v in (reward or {}).items()],
        settings=settings_rows,
        eval_section=_eval_section(evaluation, eval_note),
        versions=_versions(),
    )
    return card


def write_model_card(folder: str | os.PathLike, **fields: Any) -> Path:
    """Write ``model_card(folder, **fields)`` to ``folder/README.md`` (replacing any card there); returns its path."""
    path = Path(folder) / "README.md"
    _save(model_card(folder, **fields), path)
    return path


def _save(card: Any, path: Path) -> None:
    """``card.save(path)`` (the text ``ModelCard.save`` writes) with credentials in URLs hidden (opgrpo.utils.redact):
    a card is published with the model."""
    path.write_text(redact(str(card)), encoding="utf-8", newline="")


def update_model_card_evaluation(folder: str | os.PathLike, evaluation: Mapping[str, float], *, eval_note: str = "",
                                 dataset: str = "") -> Path | None:
    """Put ``evaluation`` (``metric -> value``) into the card ``folder/README.md`` that ``write_model_card`` wrote:
    its Evaluation section and its ``model-index`` metadata; returns the path, or None when ``folder`` has no card
    of opgrpo's (another tool's card is left alone)."""
    import re

    from huggingface_hub import ModelCard

    path = Path(folder) / "README.md"
    if not path.is_file():
        return None
    card = ModelCard.load(str(path))
    if "opgrpo" not in (card.data.tags or []):
        return None
    model_name = card.data.model_name or Path(folder).name
    evaluation = dict(evaluation)
    card.data.eval_results = _eval_results(dataset or "opgrpo-benchmark", evaluation)
    card.data.model_name = model_name
    section = _eval_section(evaluation, eval_note)
    text, n = re.subn(r"## Evaluation\n.*?(?=^## )", lambda _: section, card.text, count=1, flags=re.DOTALL | re.MULTILINE)
    card.text = text if n else card.text.rstrip() + "\n\n" + section
    _save(card, path)
    return path
