"""Who this process is in a multi-process run, and the process group every stage shares.

Launchers start one process per device and describe it in the environment: torchrun, ``accelerate launch`` and
``deepspeed`` set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``; a SLURM or submitit
task with several tasks per job carries only submitit's own variables, which ``export_submitit_env`` turns into the
torch ones (one process group per job, every task a rank).

``setup_process_group`` then creates accelerate's ``PartialState`` once, before any trainer does, and the trainers
reuse it (``trainer_state_kwargs``: ``accelerator_config={"use_configured_state": True}``). Creating it here rather
than inside ``TrainingArguments`` is what makes DeepSpeed work on CPU: accelerate picks a backend only for
accelerators, so on CPU under DeepSpeed every rank used to end with a world size of 1 while the DeepSpeed engine saw
2 ("train_batch_size 4 != 4 * 1 * 2"). Here the backend is gloo on CPU (DeepSpeed's CPU accelerator) and NCCL
(accelerate's default) on GPUs; the DeepSpeed state is requested with ``ACCELERATE_USE_DEEPSPEED``.

The process group is destroyed when the process exits (``atexit``): a gloo group left to the interpreter's own
teardown aborts the process now and then ("terminate called without an active exception", SIGABRT) after the run
finished, and the launcher then reports the whole run failed.

Which stage runs where is the app's business (opgrpo.app.stages); this module gives it ``barrier`` and
``broadcast``. It imports torch/accelerate lazily and never Hydra.
"""
from __future__ import annotations

import atexit
import datetime
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run (from the launcher's environment)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run's files and runs the single-process stages."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank, local rank and world size from ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` (1 process when unset)."""
    env = os.environ
    return DistInfo(rank=int(env.get("RANK", "").strip() or 0), local_rank=int(env.get("LOCAL_RANK", "").strip() or 0),
                    world_size=max(1, int(env.get("WORLD_SIZE", "").strip() or 1)))


def launcher_rank() -> int:
    """This process's rank as the launcher numbers it, readable before ``export_submitit_env`` (log file names)."""
    for key in ("RANK", "SUBMITIT_LOCAL_GLOBALID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and os.environ.get("SLURM_PROCID", "").isdigit():
        return int(os.environ["SLURM_PROCID"])
    return 0


def export_submitit_env() -> bool:
    """Inside a submitit job (SLURM or the local executor) with several tasks, export the torch variables (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) from submitit's job environment, so that the
    job's tasks form one process group. Every GPU of the node stays visible (accelerate picks ``cuda:LOCAL_RANK``).
    Returns whether it exported; variables a launcher already set (torchrun inside the job) are left alone."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or "RANK" in os.environ:
        return False
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return False
    if env.num_tasks <= 1:
        return False
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    log.info("submitit job %s: task %d of %d joins one process group (master %s:%s)", env.job_id, env.global_rank,
             env.num_tasks, os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))
    return True


def _single_process_env() -> None:
    """DeepSpeed needs a process group even for one process: describe a world of one on a free local port."""
    if "LOCAL_RANK" in os.environ:
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])


_OURS = {"deepspeed": None}
"""Whether this module created accelerate's shared state (and for DeepSpeed or not): only then do the trainers
reuse it. A state some earlier single-process trainer left in this process is not ours; transformers resets it."""


def setup_process_group(deepspeed: bool = False, timeout_min: int = 0) -> DistInfo:
    """Create the run's process group (accelerate ``PartialState``) when there are several processes or DeepSpeed
    is on; nothing for a plain single-process run. Idempotent. ``timeout_min``: how long a collective (a barrier while
    rank 0 runs a single-process stage) may wait (0 = torch's default, 30 minutes)."""
    info = dist_info()
    if not (info.distributed or deepspeed):
        if _OURS["deepspeed"] is not None and not info.distributed:  # an in-process DeepSpeed run came before
            _reset_state()
        return info
    if _OURS["deepspeed"] == deepspeed and is_configured():
        return info
    _reset_state()  # whatever an earlier trainer in this process left (its precision, its backend)
    import torch
    from accelerate import PartialState

    kwargs: dict[str, Any] = {}
    if timeout_min > 0:
        kwargs["timeout"] = datetime.timedelta(minutes=timeout_min)
    on_gpu = torch.cuda.is_available()
    if deepspeed:
        _single_process_env()
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        state = PartialState(**({} if on_gpu else {"backend": "gloo"}), **kwargs)
    else:
        state = PartialState(cpu=not on_gpu, **kwargs)
    _OURS["deepspeed"] = deepspeed
    _destroy_at_exit()
    info = dist_info()
    if state.num_processes != info.world_size:
        raise RuntimeError(f"process group has {state.num_processes} process(es) but WORLD_SIZE={info.world_size} "
                           f"(backend {state.backend}, {state.distributed_type})")
    log.info("process group: rank %d of %d (local rank %d), backend %s, %s", info.rank, info.world_size,
             info.local_rank, state.backend, state.distributed_type)
    return info


_AT_EXIT = {"registered": False}


def _destroy_at_exit() -> None:
    """Register (once) ``destroy_process_group`` to run at interpreter exit."""
    if not _AT_EXIT["registered"]:
        atexit.register(destroy_process_group)
        _AT_EXIT["registered"] = True


def destroy_process_group() -> None:
    """Destroy torch's default process group, if there is one, before the interpreter exits.

    Left alive, a gloo group's threads are torn down by the C++ static destructors at exit, and a thread still
    joinable then calls ``std::terminate``: the rank dies with SIGABRT after the run completed (seen as a flaky
    ``exitcode -6`` of a 2-process run; a bare init + broadcast + exit aborted in 3 of 15 torchrun launches, none of
    20 with this call). Local to this process: no collective, so a rank whose peer already died does not wait."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as exc:  # noqa: BLE001 - at exit, a failed teardown must not mask the run's outcome
            log.debug("destroy_process_group at exit: %s", exc)


def is_configured() -> bool:
    """Whether this process already has accelerate's shared state (the trainers then reuse it)."""
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return False
    return PartialState._shared_state != {}


def _reset_state() -> None:
    """Forget accelerate's shared state of this process (never the torch process group itself)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    _OURS["deepspeed"] = None


def trainer_state_kwargs() -> dict[str, Any]:
    """``TrainingArguments`` fields that make a trainer reuse the process group of ``setup_process_group`` (only a
    state this module created: one left by an earlier single-process trainer is reset by transformers as usual)."""
    ours = _OURS["deepspeed"] is not None and is_configured()
    return {"accelerator_config": {"use_configured_state": True}} if ours else {}


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` as rank ``src`` has it, on every rank (a picklable object; no-op for one process)."""
    if not _group_ready():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order ([obj] for one process)."""
    if not _group_ready():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
