"""The configuration schema of the `opgrpo` entrypoint, registered with Hydra's ConfigStore.

Every key a user may override is declared here, so ``key=value`` and ``-m`` multirun overrides never
hit "not in struct". The sections reuse the plain dataclasses of the lower layers (reward, estimator,
NLI, trainer settings) so that one definition serves the notebook API and the Hydra app. `validate`
checks values at start-up, before any model loads, and names the offending key.

Custom resolvers: ``${offline:NAME}`` resolves to a small model or sample file shipped by an installed
package (``smollm2``, ``minilm``, ``sample_train``, ``sample_test``,
``sample_pair_labels``), for the CPU default run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from opgrpo.estimator import EstimatorConfig
from opgrpo.judge_eval import JudgeEvalConfig
from opgrpo.nli import NLIConfig
from opgrpo.pope import POPEConfig
from opgrpo.rewards import RewardConfig
from opgrpo.spl import SPLConfig
from opgrpo.training import GRPOSettings, LoraSettings, SFTSettings

STAGES = ("estimator", "sft", "grpo", "eval", "report", "compare", "pipeline", "pope")


@dataclass
class ModelConfig:
    """The policy LLM."""

    name_or_path: str = MISSING  # hub id or local directory
    gguf_file: str = ""  # GGUF file name inside name_or_path, if the weights are GGUF
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    chat_template: str = ""  # Jinja template string or path to a .jinja file; "" = the tokenizer's own
    trust_remote_code: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class BenchmarkConfig:
    """The data feed: training items and test items with their reference perspectives."""

    name: str = "sample"
    train_file: str = MISSING  # CSV / JSONL / HF datasets directory or hub id
    test_file: str = ""  # one file, split by perspective count into 5..10 and >10
    test_files: Dict[str, str] = field(default_factory=dict)  # or one file per split name
    format: str = "auto"  # auto | csv | jsonl | hf (hub id or save_to_disk dir) | hf_disk
    hf_split: str = ""  # split name for Hugging Face datasets
    on_error: str = "skip"  # skip (count and log bad rows) | fail
    val_fraction: float = 0.1
    split_seed: int = 42
    max_train_items: int = -1  # -1 = all
    max_test_items: int = -1  # per split; -1 = all


@dataclass
class GenerationConfig:
    """Sampling of policy responses for evaluation."""

    prompt: str = "implicit"  # implicit | explicit
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 1200
    num_return_sequences: int = 1
    batch_size: int = 8
    backend: str = "auto"  # auto (vLLM when installed and on a GPU) | transformers | vllm
    seed: int = 42


@dataclass
class EvalConfig:
    """The NLI benchmark and the judge evaluation."""

    nli: NLIConfig = field(default_factory=NLIConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    responses_file: str = ""  # score these responses instead of generating
    model_path: str = ""  # evaluate this policy instead of model.name_or_path / the pipeline's output
    threshold: float = 0.33
    judge: JudgeEvalConfig = field(default_factory=JudgeEvalConfig)


@dataclass
class RewardSection(RewardConfig):
    """The OP reward (opgrpo.rewards.RewardConfig) plus which estimator encodes the sentences."""

    estimator_path: str = ""  # sentence-transformers model; "" = the estimator stage's output, else estimator.base_model
    encode_batch_size: int = 256
    # GRPO: "total" trains on the clipped weighted total (SPEC) and logs each component with weight 0;
    # "components" hands the four components and their weights to TRL (unclipped sum, or GDPO-style
    # per-component normalisation through trainer.grpo.multi_objective_aggregation)
    trl_weighting: str = "total"


@dataclass
class TrainerConfig:
    sft: SFTSettings = field(default_factory=SFTSettings)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)


@dataclass
class DeepSpeedConfig:
    """A DeepSpeed config (JSON as YAML) passed to the HF trainers; launched with `accelerate launch`."""

    enabled: bool = False
    name: str = "none"
    config: Dict[str, Any] = field(default_factory=dict)


@dataclass
class WandbConfig:
    project: str = "opgrpo"
    entity: str = ""
    group: str = ""
    name: str = ""
    tags: List[str] = field(default_factory=list)
    mode: str = "offline"  # offline | online | disabled


@dataclass
class LoggerConfig:
    """Metrics always go to the run directory (JSONL/CSV); W&B on top when backend=wandb."""

    backend: str = "csv"  # csv | wandb
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class ReportConfig:
    sweep_dir: str = ""  # stage=report: a multirun directory
    run_dirs: List[str] = field(default_factory=list)  # stage=compare: run directories side by side
    labels: List[str] = field(default_factory=list)
    wandb_project: str = ""  # stage=report: also pull this W&B project's runs (when online)


@dataclass
class OPGRPOConfig:
    stage: str = "pipeline"
    pipeline: List[str] = field(default_factory=lambda: ["estimator", "sft", "grpo", "eval"])
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = False  # continue the run directory's last checkpoints
    objective: str = "eval/overall/accuracy"  # the metric `main` returns to a sweeper
    tags: List[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    reward: RewardSection = field(default_factory=RewardSection)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    spl: SPLConfig = field(default_factory=SPLConfig)  # algorithm=spl (conf/algorithm/) sets spl.enabled
    pope: POPEConfig = field(default_factory=POPEConfig)  # stage=pope: off-policy evaluation of logged responses


def _offline(name: str) -> str:
    from opgrpo import offline

    if name == "smollm2":
        return str(offline.smollm_path())
    if name == "minilm":
        return str(offline.minilm_path())
    if name in ("sample_train", "sample_test", "sample_pair_labels"):
        from opgrpo.data import sample_data_path

        return str(sample_data_path(name.split("_", 1)[1]))
    raise ValueError(f"unknown offline resource {name!r} (smollm2, minilm, sample_train, sample_test, "
                     "sample_pair_labels)")


def register() -> None:
    """Register the schema and the resolvers (idempotent)."""
    if not OmegaConf.has_resolver("offline"):
        OmegaConf.register_new_resolver("offline", _offline, use_cache=True)
    ConfigStore.instance().store(name="opgrpo_schema", node=OPGRPOConfig)


def to_object(cfg: DictConfig, key: str) -> Any:
    """The section `key` as its (lower-layer) dataclass instance."""
    return OmegaConf.to_object(OmegaConf.select(cfg, key))
