"""The ``eval`` section: the NLI benchmark's model and scoring (``NLIConfig``), how responses are sampled
(``GenerationConfig``) and the judge evaluation, as plain dataclasses the Hydra schema reuses."""
from __future__ import annotations

from dataclasses import dataclass, field

from opgrpo.evaluation.judge_eval import JudgeEvalConfig
from opgrpo.models.generation import BACKENDS as GENERATION_BACKENDS
from opgrpo.text.prompts import PROMPT_KINDS
from opgrpo.utils.checks import Choice, Problems, choice_enum

PromptKind = choice_enum("PromptKind", PROMPT_KINDS, __name__)
GenerationBackend = choice_enum("GenerationBackend", GENERATION_BACKENDS, __name__)


class NLIBackend(Choice):
    """``NLIConfig.backend``: an MNLI classifier, a Yes/No LLM judge, or no NLI."""

    sequence_classification = "sequence_classification"
    causal_lm = "causal_lm"
    none = "none"


class Splitter(Choice):
    """``NLIConfig.splitter``: how a response is cut into hypotheses."""

    sentence_splitter = "sentence_splitter"
    newline = "newline"


class ScoredText(Choice):
    """``NLIConfig.text``: what of a response NLI scores (see the module docstring and :func:`scored_text`)."""

    auto = "auto"
    core = "core"
    full = "full"


BACKENDS = tuple(b.value for b in NLIBackend)
SPLITTERS = tuple(s.value for s in Splitter)
TEXTS = tuple(t.value for t in ScoredText)
"""What of a response NLI scores: see the module docstring and :func:`scored_text`."""

@dataclass
class NLIConfig:
    """How the NLI benchmark scores responses (defaults: the paper preset)."""

    backend: NLIBackend = NLIBackend.sequence_classification
    """``sequence_classification`` (MNLI classifier, the paper), ``causal_lm`` (Yes/No LLM judge) or ``none`` (no NLI:
    the evaluation scores the OP reward of the responses only, e.g. for CPU learning runs and cheap sweeps)."""
    model: str = "microsoft/deberta-v2-xlarge-mnli"
    """Hub id or local path of the NLI model (or of the judge LM for ``causal_lm``)."""
    batch_size: int = 32
    """Pairs per forward pass; pairs are length-sorted first, so padding stays small."""
    max_length: int = 512
    """Token limit per (premise, hypothesis) pair; the longer side is truncated first."""
    dtype: str = "auto"
    """``auto`` (bf16/fp16 on GPU, fp32 on CPU), ``float32``, ``float16`` or ``bfloat16``."""
    device: str = "auto"
    """``auto`` (cuda if available, else cpu) or a torch device string."""
    splitter: Splitter = Splitter.sentence_splitter
    """Response sentence splitter: ``sentence_splitter`` (rule-based, per line) or ``newline``."""
    language: str = "en"
    """Language code for ``sentence_splitter``."""
    progress: bool = True
    """Show a progress bar over batches."""
    text: ScoredText = ScoredText.auto
    """What of a response is scored: ``core`` (the block the authors' regex extracts; a response without a non-empty
    core and summary scores 0 and is counted as ``unparsed``, as in the paper), ``full`` (the whole response:
    baselines without the tags) or ``auto`` (core when the response parses, else the whole response)."""

    def problems(self) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``eval.nli``)."""
        p = Problems()
        p.enum("backend", self.backend, NLIBackend)
        p.enum("splitter", self.splitter, Splitter)
        p.enum("text", self.text, ScoredText)
        p.positive("batch_size", self.batch_size)
        p.positive("max_length", self.max_length)
        return list(p)


@dataclass
class GenerationConfig:
    """Sampling of policy responses for evaluation."""

    prompt: PromptKind = PromptKind.implicit
    """Prompt kind: implicit (the paper's) or explicit (the multi-perspective baseline prompt)."""
    temperature: float = 0.7
    """Sampling temperature (0 = greedy)."""
    top_p: float = 0.9
    """Nucleus-sampling threshold."""
    max_new_tokens: int = 1200
    """Longest response in tokens."""
    num_return_sequences: int = 1
    """Samples per prompt (the benchmark scores the first)."""
    batch_size: int = 8
    """Prompts per generation batch (transformers backend)."""
    backend: GenerationBackend = GenerationBackend.auto
    """auto (vLLM when installed and on a GPU), transformers or vllm."""
    seed: int = 42
    """Sampling seed."""
    vllm_tensor_parallel_size: int = 1
    """vLLM backend: GPUs the evaluation engine shards the model over (``LLM(tensor_parallel_size=...)``)."""
    vllm_gpu_memory_utilization: float = 0.9
    """vLLM backend: GPU memory share the engine may take (``LLM(gpu_memory_utilization=...)``)."""
    max_attempts: int = 1
    """Sample an item's response up to this many times until the authors' regex finds a non-empty core and
    summary (``benchmark_new/extract/extract.py``: 4); only the items that failed are sampled again, batched."""
    policy_dtype: str = ""
    """Weights dtype of the sampled policy: auto, float32, bfloat16 or float16 ("" = ``model.dtype``); eval=paper:
    float32, as the authors' ``extract.py`` loaded it (no dtype given: fp32)."""

    def problems(self) -> list[str]:
        p = Problems()
        if self.policy_dtype not in ("", "auto"):
            from opgrpo.models.devices import DTYPE_NAMES

            p.choice("policy_dtype", self.policy_dtype, ("", "auto", *DTYPE_NAMES))
        p.enum("prompt", self.prompt, PromptKind)
        p.positive("max_attempts", self.max_attempts)
        p.positive("vllm_tensor_parallel_size", self.vllm_tensor_parallel_size)
        p.unit("vllm_gpu_memory_utilization", self.vllm_gpu_memory_utilization)
        p.enum("backend", self.backend, GenerationBackend)
        p.non_negative("temperature", self.temperature)
        p.unit("top_p", self.top_p)
        p.positive("max_new_tokens", self.max_new_tokens)
        p.positive("num_return_sequences", self.num_return_sequences)
        p.positive("batch_size", self.batch_size)
        return list(p)


@dataclass
class EvalConfig:
    """The NLI benchmark and the judge evaluation."""

    nli: NLIConfig = field(default_factory=NLIConfig)
    """The NLI model and how responses are split into hypotheses."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """How responses are sampled."""
    responses_file: str = ""
    """Score these responses (CSV/TSV/JSONL/JSON, matched to the items by id) instead of generating."""
    model_path: str = ""
    """Evaluate this policy instead of model.name_or_path / the pipeline's trained policy."""
    threshold: float = 0.33
    """An item counts as correct when its NLI score is above this."""
    judge: JudgeEvalConfig = field(default_factory=JudgeEvalConfig)
    """The optional 1-5 LLM-judge evaluation."""

    def problems(self) -> list[str]:
        p = Problems()
        p.unit("threshold", self.threshold)
        p.extend_from("generation.", self.generation.problems())
        p.extend_from("nli.", self.nli.problems())
        p.extend_from("judge.", self.judge.problems())
        return list(p)
