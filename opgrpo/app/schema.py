"""The configuration schema of the `opgrpo` entrypoint, registered with Hydra's ConfigStore.

Every key a user may override is declared here, so ``key=value`` and ``-m`` multirun overrides never
hit "not in struct". The sections reuse the plain dataclasses of the lower layers (reward, estimator,
NLI, trainer settings) so that one definition serves the notebook API and the Hydra app. Each field is
documented by the string under it (attribute docstrings, as TRL's configs); ``opgrpo stage=describe``
prints them. Each section reports its own problems (``problems()``); opgrpo.app.validate gathers them.

Custom resolvers: ``${offline:NAME}`` resolves to a small model or sample file shipped by an installed
package (``smollm2``, ``minilm``, ``sample_train``, ``sample_test``, ``sample_pair_labels``), for the CPU
default run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from opgrpo.app.tracking import LoggerConfig
from opgrpo.benchmark.config import BenchmarkConfig
from opgrpo.estimator.config import EstimatorConfig
from opgrpo.evaluation.config import EvalConfig
from opgrpo.evaluation.generate import GenerateConfig
from opgrpo.evaluation.modular import BaselineConfig
from opgrpo.evaluation.opbench import OPBenchConfig
from opgrpo.evaluation.pope import POPEConfig
from opgrpo.models.hub import HubSettings
from opgrpo.reward.config import RewardConfig
from opgrpo.training.common import LoraSettings
from opgrpo.training.grpo import GRPOSettings
from opgrpo.training.sft import SFTSettings
from opgrpo.training.spl import SPLConfig
from opgrpo.utils.checks import Problems

DEVICES = ("auto", "cpu", "cuda")




@dataclass
class ModelConfig:
    """The policy LLM."""

    name_or_path: str = MISSING
    """Hub id or local directory of the policy."""
    gguf_file: str = ""
    """GGUF file name inside ``name_or_path`` when the weights are GGUF ("" = safetensors/bin)."""
    dtype: str = "auto"
    """Weights dtype for loading: auto, float32, bfloat16 or float16."""
    chat_template: str = ""
    """Jinja chat template (string or path to a .jinja file); "" = the tokenizer's own."""
    trust_remote_code: bool = False
    """Allow custom model code from the hub (transformers ``trust_remote_code``)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """Optional LoRA adapter for SFT and GRPO."""

    def problems(self) -> list[str]:
        p = Problems()
        if self.dtype != "auto":
            from opgrpo.models.devices import DTYPE_NAMES

            # kept a string: the names (and aliases) belong to opgrpo.models.devices, shared with every dtype setting
            p.choice("dtype", self.dtype, ("auto", *DTYPE_NAMES))
        p.extend_from("lora.", self.lora.problems())
        return list(p)


@dataclass
class RewardSection(RewardConfig):
    """The OP reward (opgrpo.reward.RewardConfig) plus which estimator encodes the sentences."""

    estimator_path: str = ""
    """Sentence-transformers model of the reward; "" = this run's estimator stage output, else estimator.base_model."""
    encode_batch_size: int = 256
    """Sentences per encoder batch."""
    tau_cov_delta: float = 0.0
    """Offset of tau_cov from ``estimator.calibration.tau_cov`` (the presets set ``tau_cov`` to their sum): threshold
    sweeps move this, so their range is centred on whichever estimator is active."""
    tau_uniq_delta: float = 0.0
    """Offset of tau_uniq from ``estimator.calibration.tau_uniq`` (as ``tau_cov_delta``)."""
    extra_funcs: List[str] = field(default_factory=list)
    """More TRL reward functions trained alongside the OP reward, by import path (``package.module:function``), as
    TRL's ``reward_funcs``: each a callable ``(prompts, completions, **columns) -> list[float]``, logged as
    ``rewards/<its name>``; e.g. a format or length reward of your own."""
    extra_weights: List[float] = field(default_factory=list)
    """One weight per ``extra_funcs`` entry (empty = 1.0 each), as TRL's ``reward_weights``."""

    def problems(self) -> list[str]:
        p = Problems()
        p.extend(super().problems())
        p.positive("encode_batch_size", self.encode_batch_size)
        from opgrpo.utils.imports import import_object

        for i, path in enumerate(self.extra_funcs):
            try:
                if not callable(import_object(path)):
                    p.add(f"extra_funcs[{i}]", f"{path!r} is not callable")
            except ValueError as exc:
                p.add(f"extra_funcs[{i}]", str(exc))
        if self.extra_weights and len(self.extra_weights) != len(self.extra_funcs):
            p.add("extra_weights", f"{len(self.extra_weights)} weight(s) for {len(self.extra_funcs)} extra_funcs")
        if any(w < 0 for w in self.extra_weights):
            p.add("extra_weights", f"weights must be >= 0, got {list(self.extra_weights)}")
        return list(p)


@dataclass
class TrainerConfig:
    """The two training stages on TRL: opgrpo's own settings by name, TRL's under ``trl`` by TRL's name."""

    sft: SFTSettings = field(default_factory=SFTSettings)
    """SFT warm start; ``trainer.sft.trl.<field>``: any TRL ``SFTConfig`` field (``+`` for one the preset lacks)."""
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    """GRPO; ``trainer.grpo.trl.<field>``: any TRL ``GRPOConfig`` field (``+`` for one the preset lacks)."""


@dataclass
class DeepSpeedConfig:
    """A DeepSpeed config (JSON as YAML) passed to the HF trainers; launched with `accelerate launch`."""

    enabled: bool = False
    """Hand ``config`` to the trainers."""
    name: str = "none"
    """The preset's name (conf/deepspeed/)."""
    config: Dict[str, Any] = field(default_factory=dict)
    """The DeepSpeed config itself ("auto" values are filled by transformers)."""


@dataclass
class ReportConfig:
    """Sweep reports and side-by-side comparisons of runs (stage=report, stage=compare, the multirun's report)."""

    sweep_dir: str = ""
    """stage=report/compare: every run directory under this folder (a multirun or an Optuna study)."""
    run_dirs: List[str] = field(default_factory=list)
    """stage=report/compare: exactly these run directories (they replace report.sweep_dir's scan)."""
    labels: List[str] = field(default_factory=list)
    """One label per report.run_dirs entry ([] = names from the paths)."""
    allow_mixed_estimators: bool = False
    """Put runs whose reward numbers come from different estimators, or were measured by different reference rules
    (``eval/reference/rule``), side by side (refused by default: their rates are not comparable); they are then marked
    in the estimator / reference_rule column and a warning."""
    out_dir: str = ""
    """Where stage=report/compare write ("" = <report.sweep_dir>/report or /compare, else this run's report/ or
    compare/); the path is printed."""
    reference_weights: Dict[str, float] = field(default_factory=lambda: dict(vars(RewardConfig().weights)))
    """Component weights of reward/total_at_reference, the total every run is compared at (coverage, uniqueness,
    format, tag; default: the paper weights)."""
    wandb_project: str = ""
    """stage=report: also pull this W&B project's runs (when online)."""

    def problems(self, stages: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Invalid reference weights; for ``stages`` report/compare: no runs named, missing directories, labels."""
        from pathlib import Path

        from opgrpo.reward.config import COMPONENTS

        p = Problems()
        for name, value in self.reference_weights.items():
            if name not in COMPONENTS:
                p.add(f"reference_weights.{name}", f"unknown component; expected {', '.join(COMPONENTS)}")
            else:
                p.non_negative(f"reference_weights.{name}", value)
        if not any(v for v in self.reference_weights.values()):
            p.add("reference_weights", "all weights are zero: every total at reference would be 0")
        if not {"report", "compare"} & set(stages):
            return list(p)
        if not self.sweep_dir and not self.run_dirs:
            p.add("run_dirs", "stage=report/compare needs report.run_dirs=[dir,...] or report.sweep_dir=DIR")
        if self.sweep_dir and not self.run_dirs and not Path(self.sweep_dir).expanduser().is_dir():
            p.add("sweep_dir", f"no such directory {self.sweep_dir!r}")
        missing = [d for d in self.run_dirs if not Path(d).expanduser().exists()]
        if missing:
            p.add("run_dirs", f"no such directory: {', '.join(map(repr, missing))}")
        if self.labels and len(self.labels) != len(self.run_dirs):
            p.add("labels", f"{len(self.labels)} labels for {len(self.run_dirs)} report.run_dirs")
        return list(p)


@dataclass
class StoreConfig:
    """Where stages shared between runs are kept (opgrpo.app.reuse): a stage whose inputs do not depend on what a
    sweep varies (the estimator and SFT of a reward-weight sweep) is computed once, by the first job that needs it,
    and reused by the others from ``<dir>/<stage>-<input fingerprint>/``."""

    dir: str = ""
    """"" = ``<sweep dir>/.stages`` in a multirun (off in a single run); a path = that store (share it between sweeps
    on one file system); "off" = no store."""
    stages: List[str] = field(default_factory=lambda: ["estimator", "sft", "eval_base"])
    """The stages looked up in (and published to) the store."""
    stale_after_s: float = 120.0
    """A job computing a shared stage keeps a heartbeat on its lock; one silent for this long is taken over."""

    def problems(self) -> list[str]:
        from opgrpo.app.identity import STAGE_KEYS

        p = Problems()
        for name in self.stages:
            if name not in STAGE_KEYS:
                p.add("stages", f"{name!r} is not a pipeline stage ({', '.join(STAGE_KEYS)})")
        p.positive("stale_after_s", self.stale_after_s)
        return list(p)


@dataclass
class OPGRPOConfig:
    """The whole run: which stage(s), the policy, data, reward, estimator, trainers, evaluation, infrastructure."""

    stage: str = "pipeline"
    """What to run: one stage (see ``opgrpo stage=describe``) or ``pipeline``."""
    pipeline: List[str] = field(default_factory=lambda: ["estimator", "sft", "grpo", "eval"])
    """The stages of stage=pipeline, in order."""
    seed: int = 42
    """Seed of python, numpy and torch at the start of the run; the presets also pass it on to
    ``trainer.sft.trl.seed``, ``trainer.grpo.trl.seed`` and ``eval.generation.seed``, so ``-m seed=1,2,3`` gives replicates."""
    init_from: str = ""
    """A finished run directory (e.g. of ``experiment=cpu_demo``) this run starts from, with any preset: its completed
    estimator and SFT stages (found by their manifests) stand in for this run's ``estimator`` and ``sft`` stages, and
    later stages (``eval_base``, ``grpo``, ``eval``) use that estimator and SFT policy. Refused when no stage of the
    run reads them."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    resume: Optional[bool] = None
    """What to do with what the run directory already holds (opgrpo.app.reuse). null (default): a completed stage
    whose inputs match (its manifest) is reused, a training stage interrupted with the same inputs continues from its
    last checkpoint, anything else is moved aside to ``.superseded/`` with a WARNING naming what differs. true: the
    same, but a stage whose inputs differ in a key that changes training is refused (naming the keys; ``max_steps``
    may change). false: every stage runs afresh (earlier outputs moved aside)."""
    dist_timeout_min: int = 360
    """Multi-process runs: how long (minutes) the other ranks wait at a barrier while rank 0 runs a single-process
    stage (estimator, eval, report, ...) before the process group gives up."""
    objective: str = "eval/overall/accuracy"
    """The summary key the entrypoint returns to a sweeper."""
    tags: List[str] = field(default_factory=list)
    """Free-form tags (W&B)."""
    describe: str = ""
    """stage=describe: the section to document ("" = reward, trainer.grpo and estimator; "all" = every one)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    reward: RewardSection = field(default_factory=RewardSection)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    spl: SPLConfig = field(default_factory=SPLConfig)
    """Soft Preference Learning (algorithm=spl sets spl.enabled)."""
    pope: POPEConfig = field(default_factory=POPEConfig)
    """stage=pope: off-policy evaluation of logged responses."""
    hub: HubSettings = field(default_factory=HubSettings)
    """Hugging Face Hub: push the run's final model at its end (``hub.push=true hub.model_id=ORG/NAME``)."""
    opbench: OPBenchConfig = field(default_factory=OPBenchConfig)
    """stage=opbench: OP-Bench (OvertonBench) scores of one response per question, rated by a judge per user."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    """stage=generate: where the responses file of a policy or baseline goes."""
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    """stage=generate: who answers (baseline=none: the policy; baseline=modular: Modular Pluralism, Overton mode)."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """Stages shared between the jobs of a sweep (the estimator and SFT policy of a reward-weight sweep)."""


def _offline(name: str) -> str:
    from opgrpo.app import resources

    if name == "smollm2":
        return str(resources.smollm_path())
    if name == "minilm":
        return str(resources.minilm_path())
    if name in ("sample_train", "sample_test", "sample_pair_labels"):
        from opgrpo.benchmark import sample_data_path

        return str(sample_data_path(name.split("_", 1)[1]))
    raise ValueError(f"unknown offline resource {name!r} (smollm2, minilm, sample_train, sample_test, "
                     "sample_pair_labels)")


def _rank_suffix() -> str:
    """"" on rank 0, ".rank<N>" on the others: each rank of a multi-process run logs to its own Hydra log file."""
    from opgrpo.training.distributed import launcher_rank

    rank = launcher_rank()
    return f".rank{rank}" if rank else ""


def _hydra_subdir(name: str) -> str | None:
    """Hydra's ``output_subdir`` (its copy of the config) on rank 0 only: the other ranks would write the same files."""
    from opgrpo.training.distributed import launcher_rank

    return None if launcher_rank() else name


def _add(*values: float) -> float:
    """``${opgrpo_add:a,b}``: a + b, rounded to 6 decimals (a calibrated threshold plus a sweep's offset)."""
    return round(sum(float(v) for v in values), 6)


def register() -> None:
    """Register the schema and the resolvers (idempotent)."""
    if not OmegaConf.has_resolver("offline"):
        OmegaConf.register_new_resolver("offline", _offline, use_cache=True)
    if not OmegaConf.has_resolver("opgrpo_rank_suffix"):
        OmegaConf.register_new_resolver("opgrpo_rank_suffix", _rank_suffix)
        OmegaConf.register_new_resolver("opgrpo_hydra_subdir", _hydra_subdir)
        OmegaConf.register_new_resolver("opgrpo_add", _add)
    ConfigStore.instance().store(name="opgrpo_schema", node=OPGRPOConfig)
