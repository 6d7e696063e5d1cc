"""A run's models and the Hugging Face Hub: the model card next to the weights, the push, and the prefetch.

- ``write_model_card(folder, ...)``: ``folder/README.md``, a ``huggingface_hub.ModelCard`` whose metadata
  (``ModelCardData``: base model, data sets, tags, ``model-index`` eval results) the Hub reads, and whose text says
  how the model was trained (base model, data, reward weights and thresholds, the trainer's main settings) and how it
  scored (the run's evaluation, when known: the card is rewritten after the eval stage).
- ``push_folder(folder, HubSettings)``: ``HfApi.create_repo`` + ``HfApi.upload_folder`` (the real huggingface_hub
  calls; ``hub.push=true hub.model_id=ORG/NAME`` in the app).
- ``prefetch(refs)``: ``snapshot_download`` of every hub id into the HF cache (local paths are skipped and said so),
  so that compute nodes without internet run with ``HF_HUB_OFFLINE=1``. Weights in formats the project never loads
  (ONNX, OpenVINO, TF, Flax, ``original/`` checkpoints, ``.bin`` files shadowed by ``.safetensors``) are left out.

Plain arguments only (no Hydra); huggingface_hub is imported when a function needs it.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opgrpo.utils.checks import Problems

logger = logging.getLogger(__name__)

TRAINING_STAGES = ("sft", "grpo")


# ---- settings -----------------------------------------------------------------------------------------
@dataclass
class HubSettings:
    """Pushing the run's final model to the Hugging Face Hub (``hub.push=true hub.model_id=ORG/NAME``)."""

    push: bool = False
    """At the end of the run, upload the last trained model's folder (``grpo/final``, else ``sft/final``: weights,
    tokenizer, chat template, model card) to ``model_id``."""
    model_id: str = ""
    """Hub repository, ``ORG/NAME`` or ``NAME`` (your namespace); created if missing. Required with ``push``."""
    private: bool = True
    """Create the repository private (an existing repository keeps its visibility)."""
    revision: str = ""
    """Branch to push to ("" = main); created from main if missing (e.g. one branch per sweep job)."""
    token_env: str = "HF_TOKEN"
    """Environment variable holding a write token; unset = the token of ``hf auth login``."""
    commit_message: str = ""
    """Commit message ("" = "opgrpo: <stage> model from <run directory>")."""

    def token(self) -> str | None:
        """The token from ``token_env``, else the saved login's (huggingface_hub.get_token), else None."""
        from huggingface_hub import get_token

        return os.environ.get(self.token_env or "HF_TOKEN") or get_token()

    def problems(self, stages: Sequence[str] = ()) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``hub``); with ``push``: a model id, a token,
        the Hub reachable, and (when ``stages`` are given) a training stage that makes a model to push."""
        p = Problems()
        if not self.push:
            return list(p)
        if not self.model_id:
            p.add("model_id", "required when hub.push=true (hub.model_id=ORG/NAME)")
        else:
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(self.model_id)
            except HFValidationError as exc:
                p.add("model_id", f"{self.model_id!r} is not a valid repository id ({exc})")
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            p.add("push", "HF_HUB_OFFLINE=1 is set: the push at the end of the run would fail; unset it (or push "
                          "later with `hf upload ORG/NAME <run>/grpo/final`)")
        elif not self.token():
            p.add("token_env", f"no Hub token: ${self.token_env or 'HF_TOKEN'} is unset and no `hf auth login` token "
                               "is saved")
        if stages and not set(stages) & set(TRAINING_STAGES):
            p.add("push", f"the stage(s) {', '.join(stages)} train no model to push (needs sft or grpo)")
        return list(p)


# ---- model card ---------------------------------------------------------------------------------------
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


FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".gguf", ".safetensors", ".bin", ".pt")


def is_hub_id(ref: str) -> bool:
    """Whether ``ref`` names a Hub repository rather than a local path: not an existing path, not path-like
    (``/``, ``./``, ``~``, two or more ``/``), not a file name (``train.csv``)."""
    ref = str(ref or "")
    if not ref or Path(ref).expanduser().exists() or Path(ref).suffix.lower() in FILE_SUFFIXES:
        return False
    return not ref.startswith(("/", ".", "~")) and ref.count("/") <= 1


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "[]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) if value else "{}"
    text = str(value) if value != "" else '""'
    return text.replace("|", "\\|").replace("\n", " ")


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
    settings_rows = [(k, _fmt(v)) for k, v in (settings or {}).items()
                     if not isinstance(v, Mapping) or v]  # empty dicts (extra={}) add nothing
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
    model_card(folder, **fields).save(str(path))
    return path


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
    card.save(str(path))
    return path


# ---- push ---------------------------------------------------------------------------------------------
def push_folder(folder: str | os.PathLike, settings: HubSettings, *, stage: str = "", run_dir: str = "") -> str:
    """Upload ``folder`` to ``settings.model_id`` (``HfApi.create_repo`` with ``exist_ok``, the branch
    ``settings.revision`` if set, then ``HfApi.upload_folder``); returns the commit URL. ``training_args.bin`` (a
    pickle the Hub flags) stays local."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    problems = Problems("hub.")
    problems.extend_from("", settings.problems())
    if not (folder / "config.json").is_file():
        problems.add("push", f"{folder} holds no model (no config.json)")
    problems.raise_if_any()
    api = HfApi(token=settings.token())
    repo = api.create_repo(settings.model_id, private=settings.private, exist_ok=True, repo_type="model")
    if settings.revision:
        api.create_branch(settings.model_id, branch=settings.revision, exist_ok=True, repo_type="model")
    message = settings.commit_message or f"opgrpo: {stage or folder.parent.name} model" + (
        f" from {run_dir}" if run_dir else "")
    info = api.upload_folder(repo_id=settings.model_id, folder_path=str(folder), repo_type="model",
                             revision=settings.revision or None, commit_message=message,
                             ignore_patterns=["training_args.bin", "*.tmp"])
    url = str(getattr(info, "commit_url", "") or repo)
    logger.info("pushed %s to %s (%s)", folder, settings.model_id, url)
    return url


# ---- prefetch -----------------------------------------------------------------------------------------
FOREIGN_WEIGHTS = ["*.onnx", "*.onnx_data", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "flax_model*", "tf_model*",
                   "rust_model.ot", "*.tflite", "coreml/*", "original/*", "*.gguf"]
"""Files ``prefetch`` leaves on the Hub: formats transformers / sentence-transformers never load here."""


@dataclass
class ModelRef:
    """One model a config names: the key(s) naming it, the reference (hub id or path), optional file patterns."""

    key: str
    ref: str
    allow_patterns: list[str] | None = None
    """Only these files (e.g. one GGUF file and the tokenizer); None = the whole repository but FOREIGN_WEIGHTS."""


@dataclass
class Fetched:
    """What ``prefetch`` did with one reference."""

    ref: str
    keys: list[str]
    status: str
    """``local`` (a local path: nothing to download), ``downloaded``, ``cached`` (already in the cache; offline: the
    cache has a snapshot of it), ``missing`` (a local path that does not exist) or ``failed``."""
    path: str = ""
    """The local directory (the cache snapshot for hub ids)."""
    downloaded_bytes: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("local", "downloaded", "cached")


def _shadowed(files: Iterable[str]) -> list[str]:
    """``.bin``/``.pt``/``.pth`` weights with a ``.safetensors`` file in the same folder (transformers loads that)."""
    files = list(files)
    with_st = {str(Path(f).parent) for f in files if f.endswith(".safetensors")}
    return [f for f in files if f.endswith((".bin", ".pt", ".pth")) and str(Path(f).parent) in with_st
            and not Path(f).name.startswith(("training_args", "optimizer", "scheduler"))]


def _fetch(ref: ModelRef, token: str | None) -> tuple[str, str, int]:
    """(status, snapshot path, bytes downloaded) for one hub id; raises what snapshot_download raises."""
    import huggingface_hub
    from huggingface_hub import constants

    kwargs: dict[str, Any] = {"token": token}
    if ref.allow_patterns:
        kwargs["allow_patterns"] = list(ref.allow_patterns)
    else:
        kwargs["ignore_patterns"] = list(FOREIGN_WEIGHTS)
    to_download = None
    try:  # the file list first (huggingface_hub >= 1.0): leave out shadowed .bin files, count the bytes
        listing = huggingface_hub.snapshot_download(ref.ref, dry_run=True, **kwargs)
        skip = _shadowed(f.filename for f in listing)
        if "ignore_patterns" in kwargs:
            kwargs["ignore_patterns"] += skip
        to_download = sum(f.file_size or 0 for f in listing if f.will_download and f.filename not in skip)
    except Exception as exc:  # noqa: BLE001 - the real download below reports the failure
        logger.debug("dry run of %s failed (%s); downloading without it", ref.ref, exc)
    path = huggingface_hub.snapshot_download(ref.ref, **kwargs)
    status = "cached" if to_download == 0 or constants.HF_HUB_OFFLINE else "downloaded"
    return status, str(path), int(to_download or 0)


def prefetch(refs: Iterable[ModelRef], token: str | None = None) -> list[Fetched]:
    """Download every hub id among ``refs`` into the HF cache (``snapshot_download``); local paths are reported,
    not downloaded. One entry per distinct reference (its config keys joined), in the order first named; a failure
    is reported in its entry, never raised. With ``HF_HUB_OFFLINE=1`` nothing is downloaded and the entries say
    whether the cache holds a snapshot of each model."""
    from huggingface_hub import constants

    grouped: dict[str, tuple[ModelRef, list[str]]] = {}
    for r in refs:
        if r.ref:
            grouped.setdefault(r.ref, (r, []))[1].append(r.key)
    out = []
    for ref, (model, keys) in grouped.items():
        if not is_hub_id(ref):
            path = Path(ref).expanduser()
            if path.exists():
                out.append(Fetched(ref, keys, "local", str(path), detail="local path, nothing to download"))
            else:
                out.append(Fetched(ref, keys, "missing", detail="no such local directory"))
            continue
        try:
            status, path, size = _fetch(model, token)
            out.append(Fetched(ref, keys, status, path, size))
        except Exception as exc:  # noqa: BLE001 - one entry per model, the caller lists the failures
            why = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            if constants.HF_HUB_OFFLINE:
                why = "not in the HF cache, and HF_HUB_OFFLINE=1 forbids downloading it (" + why + ")"
            out.append(Fetched(ref, keys, "failed", detail=why))
    return out


def prefetch_table(fetched: Sequence[Fetched]) -> str:
    """A plain-text table of ``prefetch``'s entries (status, reference, config keys, size or reason)."""
    rows = []
    for f in fetched:
        size = f"{f.downloaded_bytes / 2**20:,.0f} MiB downloaded" if f.status == "downloaded" else ""
        rows.append((f.status, f.ref, ", ".join(f.keys), size or f.detail or f.path))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows)
