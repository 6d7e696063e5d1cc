"""What each pipeline stage depends on, declared next to the stages, and the manifest of its inputs for one run.

``STAGE_KEYS`` lists, per stage, the config keys (prefixes of dotted keys of ``OPGRPOConfig``) the stage reads.
``stage_manifest(name, ctx)`` turns them into an ``opgrpo.utils.manifest.Manifest``: the values of those keys from
the run's typed config, a data file's path replaced by the hash of its bytes, a local model folder's path by the
fingerprint of its files (so a copied model or a moved data file is the same input), and the fingerprints of the
upstream artefacts the stage uses (the reward's estimator, the policy it starts from). Keys that only observe a run
(``OBSERVE``: logging, checkpoint cadence, worker counts, timeouts) are not inputs; keys that only extend it
(``EXTEND``: ``max_steps``) are inputs, but a resumed run may change them. opgrpo.app.reuse decides with these.
"""
from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from opgrpo.utils.manifest import Manifest, code_version, file_hash, text_hash
from opgrpo.utils.redact import redact_obj

_BENCH = ("benchmark.format", "benchmark.on_error", "benchmark.hf_split")
_TRAIN_DATA = ("benchmark.train_file", "benchmark.max_train_items", "benchmark.val_fraction", "benchmark.split_seed")
_TEST_DATA = ("benchmark.test_file", "benchmark.test_files", "benchmark.max_test_items")
_EVAL = ("eval.", "reward.", "report.reference_weights", "model.chat_template", "model.dtype", "model.gguf_file",
         "model.trust_remote_code")

STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "estimator": ("seed", "estimator.", *_BENCH, *_TRAIN_DATA, *_TEST_DATA),
    "sft": ("seed", "model.", "trainer.sft.", "benchmark.sft_file", "benchmark.sft_val_fraction", *_BENCH,
            *_TRAIN_DATA),
    "grpo": ("seed", "model.", "trainer.grpo.", "reward.", "spl.", "benchmark.grpo_max_items", *_BENCH,
             *_TRAIN_DATA),
    "eval": ("seed", *_EVAL, *_BENCH, *_TEST_DATA),
    "eval_base": ("seed", *_EVAL, *_BENCH, *_TEST_DATA),
}
"""Per pipeline stage, the config keys it reads (a key, or a prefix ending in "."); its upstream artefacts are in
``UPSTREAM``."""
UPSTREAM: dict[str, tuple[str, ...]] = {"grpo": ("estimator", "policy"), "eval": ("estimator", "policy"),
                                        "eval_base": ("estimator", "policy")}
"""Per stage, the artefacts of earlier stages (or of ``init_from``) it uses: their fingerprints are inputs."""
PRODUCTS: dict[str, dict[str, str]] = {"estimator": {"estimator_path": "model"}, "sft": {"policy_path": "final"},
                                       "grpo": {"policy_path": "final"}}
"""What later stages take from a stage's folder (RunContext attribute -> path inside the folder)."""
OBSERVE = frozenset({
    "logging_steps", "logging_first_step", "logging_strategy", "report_to", "save_steps", "save_total_limit",
    "save_strategy", "save_only_model", "clean_checkpoints", "completion_samples_every", "dataloader_num_workers",
    "output_dir", "encode_batch_size", "max_workers", "timeout", "max_retries", "api_key_env", "run_name",
    "log_completions", "num_completions_to_print", "disable_tqdm", "push_to_hub", "hub_model_id", "max_failure_share",
    "probe",
})
"""Last components of keys that do not change what a stage produces (not inputs)."""
EXTEND = frozenset({"max_steps", "num_train_epochs"})
"""Last components of keys a resumed training run may change (they extend the run, the steps so far stand)."""
DATA_KEYS = ("benchmark.train_file", "benchmark.test_file", "benchmark.test_files.", "benchmark.sft_file",
             "estimator.judge.labels_file", "eval.responses_file")
"""Keys naming a data file: the file's bytes are the input, not its path."""
MODEL_KEYS = ("model.name_or_path", "estimator.base_model", "reward.estimator_path", "eval.model_path",
              "eval.nli.model", "estimator.judge.model")
"""Keys naming a model: a local folder's content is the input (fingerprint), a hub id its name."""


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flat_config(cfg: Any) -> dict[str, Any]:
    """The typed config (a dataclass) as ``{"dotted.key": value}`` (lists and leaves as values, enums as strings)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        items = ((f.name, getattr(node, f.name)) for f in fields(node)) if is_dataclass(node) else node.items()
        for k, v in items:
            key = f"{prefix}{k}"
            if is_dataclass(v) or (isinstance(v, dict) and v):
                walk(v, key + ".")
            else:
                out[key] = _plain(asdict(v) if is_dataclass(v) else v)

    walk(cfg, "")
    return out


def _selected(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p if p.endswith(".") else p + ".") for p in prefixes)


def model_identity(path: str) -> str:
    """``tree:<fingerprint>`` of a local model folder (its files' names and bytes), else the hub id / path itself."""
    from opgrpo.estimator.identity import fingerprint

    if path and Path(path).expanduser().is_dir():
        fp = fingerprint(Path(path).expanduser())
        return f"tree:{fp}" if fp else str(path)
    return str(path)


def stage_keys(name: str, cfg: Any, flat: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of the config keys stage ``name`` reads, observing keys left out, data files by content, local
    model folders by fingerprint (``flat``: ``flat_config(cfg)`` when the caller has it)."""
    keys = {}
    for key, value in (flat if flat is not None else flat_config(cfg)).items():
        if not _selected(key, STAGE_KEYS[name]) or key.rsplit(".", 1)[-1] in OBSERVE:
            continue
        if isinstance(value, str) and value and _selected(key, DATA_KEYS) and file_hash(value):
            value = f"sha256:{file_hash(value)}"
        elif isinstance(value, str) and value and key in MODEL_KEYS:
            value = model_identity(value)
        keys[key] = redact_obj(value)  # a URL's credentials are no input (and must not reach the manifest)
    return keys


def stage_manifest(name: str, cfg: Any, upstream: dict[str, str] | None = None) -> Manifest:
    """The (started) manifest of stage ``name`` under ``cfg``, with the given upstream paths fingerprinted
    (``{"estimator": path, "policy": path}``)."""
    version, flat = code_version(), flat_config(cfg)
    return Manifest(stage=name, keys=stage_keys(name, cfg, flat),
                    data={k: redact_obj(str(v)) for k, v in flat.items()
                          if _selected(k, DATA_KEYS) and _selected(k, STAGE_KEYS[name]) and v},
                    upstream={k: model_identity(v) for k, v in (upstream or {}).items()},
                    version=version["opgrpo"], commit=version["commit"])


def extend_keys(manifest: Manifest) -> tuple[str, ...]:
    """The keys of ``manifest`` a resumed run may change (``EXTEND``)."""
    return tuple(k for k in manifest.keys if k.rsplit(".", 1)[-1] in EXTEND)


def run_identity(cfg: Any, stages: list[str] | tuple[str, ...]) -> str:
    """Short hash of what a run computes: its stages and the inputs each reads from the config (no upstream
    artefacts: they are products of the same inputs). Equal for the same command in the same data; the W&B run id
    is made of it and the run directory (opgrpo.app.tracking)."""
    flat = flat_config(cfg)
    return text_hash({name: stage_keys(name, cfg, flat) if name in STAGE_KEYS else {} for name in stages})
