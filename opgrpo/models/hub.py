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

This module holds the push (``HubSettings``, ``push_folder``); the card is written by ``opgrpo.models.model_card``,
the prefetch done by ``opgrpo.models.prefetch``, hub ids told from paths by ``opgrpo.models.hub_ids``.

Plain arguments only (no Hydra); huggingface_hub is imported when a function needs it.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opgrpo.utils.checks import Problems
from opgrpo.utils.offline import offline_setting

__all__ = ["TRAINING_STAGES", "HubSettings", "final_model_folder", "push_command", "push_folder"]

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
    run_dir: str = ""
    """``stage=push``: the finished run whose last trained model (``grpo/final``, else ``sft/final``; or a model folder
    itself) is uploaded, e.g. to retry a push that failed at the end of that run."""

    def token(self) -> str | None:
        """The token from ``token_env``, else the saved login's (huggingface_hub.get_token), else None."""
        from huggingface_hub import get_token

        return os.environ.get(self.token_env or "HF_TOKEN") or get_token()

    def problems(self, stages: Sequence[str] = ()) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``hub``); with ``push`` (or ``stage=push``): a
        model id, a token, the Hub reachable, and (when ``stages`` are given) a training stage that makes a model to
        push, or for ``stage=push`` a ``run_dir`` holding one."""
        p = Problems()
        p.env_name("token_env", self.token_env)
        if not self.push and "push" not in stages:
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
            p.add("push", f"{offline_setting() or 'HF_HUB_OFFLINE=1'} is set: the push would fail; unset it (or push "
                          "later, where the Hub is reachable: opgrpo stage=push hub.model_id=ORG/NAME hub.run_dir=<run>)")
        elif not self.token():
            p.add("token_env", f"no Hub token: ${self.token_env or 'HF_TOKEN'} is unset and no `hf auth login` token "
                               "is saved")
        if "push" in stages:
            if not self.run_dir:
                p.add("run_dir", "required by stage=push: the finished run whose final model to upload "
                                 "(hub.run_dir=outputs/DATE/TIME)")
            elif final_model_folder(self.run_dir) is None:
                p.add("run_dir", f"{self.run_dir!r} holds no trained model (no config.json in it, in grpo/final or in "
                                 "sft/final)")
        elif stages and not set(stages) & set(TRAINING_STAGES):
            p.add("push", f"the stage(s) {', '.join(stages)} train no model to push (needs sft or grpo)")
        return list(p)


def final_model_folder(path: str | os.PathLike) -> Path | None:
    """The model a run directory ``path`` ends with: ``grpo/final``, else ``sft/final`` (``path`` itself when it is a
    model folder); None when none holds a ``config.json``."""
    path = Path(path).expanduser()
    for folder in (path, *(path / stage / "final" for stage in reversed(TRAINING_STAGES))):
        if (folder / "config.json").is_file():
            return folder
    return None


def push_command(settings: HubSettings, run_dir: str | os.PathLike) -> str:
    """The one command that pushes ``run_dir``'s final model with ``settings`` (``opgrpo stage=push ...``: what a
    run whose push failed prints to retry it); settings left at their defaults are not repeated."""
    import shlex

    args = ["opgrpo", "stage=push", f"hub.model_id={settings.model_id}", f"hub.run_dir={Path(run_dir)}"]
    defaults = HubSettings()
    for name in ("revision", "private", "token_env", "commit_message"):
        value = getattr(settings, name)
        if value != getattr(defaults, name):
            args.append(f"hub.{name}={str(value).lower() if isinstance(value, bool) else value}")
    return shlex.join(args)


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
