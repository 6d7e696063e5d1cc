"""hydra-submitit-launcher's local launcher as ``launcher=submitit_local`` runs it (conf/hydra/launcher/
opgrpo_submitit_local.yaml): ``array_parallelism`` caps how many jobs run at once, as it does for SLURM arrays
(submitit's local executor starts every job of a sweep at once), and the empty literal ``<sweep>/.submitit/%j``
folder that submitit's local controller creates beside the jobs' own ``<sweep>/.submitit/<job id>/`` is removed.

Preempted and timed-out jobs: submitit's local controller sends SIGUSR2 ``signal_delay_s`` before ``timeout_min``;
the job saves a checkpoint (opgrpo.training.preempt) and submitit's handler calls ``checkpoint`` (the plugin's: the
same task function with the same overrides), so the controller reruns the job, which resumes (``resume=true``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as _PluginLocalLauncher

log = logging.getLogger(__name__)

ID_TAGS = ("%j", "%t", "%A", "%a")


def remove_stray_folder(submitit_folder: str | Path) -> bool:
    """Remove ``submitit_folder`` taken literally (``.../.submitit/%j``) when it is an empty folder: submitit's local
    controller creates it before it starts a job's tasks, which write into the folder named by the job id. Whether
    it removed one."""
    folder = Path(submitit_folder)
    if not any(tag in str(folder) for tag in ID_TAGS) or not folder.is_dir():
        return False
    try:
        folder.rmdir()  # only when empty
    except OSError:
        return False
    return True


class SubmititLocalLauncher(_PluginLocalLauncher):
    """The plugin's ``LocalLauncher`` with ``array_parallelism`` (0: every job at once): at most that many jobs of a
    sweep run at once, in waves (the next wave starts when the current one has ended)."""

    def __init__(self, array_parallelism: int = 0, **params: Any) -> None:
        super().__init__(**params)
        self.array_parallelism = int(array_parallelism or 0)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        n = self.array_parallelism
        try:
            if n <= 0 or len(job_overrides) <= n:
                return super().launch(job_overrides, initial_job_idx)
            log.info("submitit local: %d jobs, at most %d at once (hydra.launcher.array_parallelism)",
                     len(job_overrides), n)
            returns: list[JobReturn] = []
            for start in range(0, len(job_overrides), n):
                returns.extend(super().launch(job_overrides[start:start + n], initial_job_idx + start))
            return returns
        finally:
            remove_stray_folder(self.params["submitit_folder"])
