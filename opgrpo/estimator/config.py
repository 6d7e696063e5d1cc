"""Settings of the similarity-estimator stage: mining, judge, fine-tuning, search (plain dataclasses).

Defaults are the paper preset; the Hydra schema (opgrpo.app.schema) reuses these classes as the
``estimator`` section. Each field is documented by the string under it; string settings with fixed choices are
enums (opgrpo.utils.checks.Choice), which the Hydra schema validates when the config is composed.
``EstimatorConfig.problems()`` lists every invalid setting (keys relative to the section); ``validate()`` raises them
together.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List  # noqa: UP035 (typing.List: OmegaConf-friendly schema)

from opgrpo.judges import JudgeMode, Unlabelled, YesNoKind
from opgrpo.text.perspectives import Masking
from opgrpo.utils.checks import Choice, Problems


class TrainText(Choice):
    """What a triplet holds: the prefix-stripped explanations as written, or their keyword-masked form."""

    raw = "raw"
    masked = "masked"


class JudgePrompt(Choice):
    """Built-in judge prompts: the authors' verbatim sentence-pair prompt, or the project's prompt with the
    situation."""

    authors = "authors"
    situation = "situation"


class BatchSampler(Choice):
    """sentence-transformers batch samplers: no repeated text within a batch, or plain shuffled batches."""

    no_duplicates = "no_duplicates"
    batch_sampler = "batch_sampler"


TRAIN_TEXTS = tuple(t.value for t in TrainText)
JUDGE_PROMPT_NAMES = tuple(j.value for j in JudgePrompt)
BATCH_SAMPLERS = tuple(b.value for b in BatchSampler)


def _cap_problem(p: Problems, key: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or (value < 1 and value != -1):
        p.add(key, f"must be -1 (no cap) or a positive count (got {value!r})")


@dataclass
class MiningConfig:
    """How triplets are mined from training items (paper preset: SPEC.md and the authors' create_dataset.py)."""

    pair_threshold: float = 0.75
    """Cosine similarity (of the masked sentences) a pair needs to be a candidate anchor/positive."""
    judge_threshold: float = 0.5
    """P(yes) >= this means the judge says "same perspective"; below it, "different"."""
    max_triplets_per_item: int = 1
    """At most this many triplets per situation (each from a further confirmed, disjoint pair)."""
    batch_size: int = 64
    """Items per batch: one encode call, then judge rounds shared by all of them."""
    masking: Masking = Masking.situation
    """Keyword source for masking: "situation" (paper preset), "prompt" (the implicit prompt text, as the
    authors' reward took keywords from the prompt) or "none". Masking only finds the candidate pairs and orders
    the negatives; what the triplets hold is ``train_text``."""
    train_text: TrainText = TrainText.raw
    """Text the triplets hold, i.e. what the estimator is trained on: "raw" = the prefix-stripped explanations as
    written, punctuation kept (paper preset, as the authors' create_dataset.py saved them); "masked" = their
    keyword-masked form, punctuation dropped (the form the reward encodes generated sentences in)."""
    max_pairs_judged: int = -1
    """Candidate pairs per item the judge may be asked about, most similar first; -1 = every candidate (paper).
    An item whose first N candidates were all refused, with more left untried, is skipped as "pair_cap"."""
    max_negatives_judged: int = -1
    """Negative candidates per anchor the judge may be asked about, most similar to the anchor first; -1 = every
    remaining sentence (paper). An anchor whose first N were all called "same", with more left, is "negative_cap"."""
    judge_window: int = 4
    """Candidates per item sent to the judge in one round; the verdicts are read in order and an item stops at its
    first decision, so this changes the number of judge prompts and rounds, never the triplets."""
    prompt: JudgePrompt = JudgePrompt.authors
    """Built-in judge prompt: "authors" (SPEC.md's verbatim sentence-pair prompt, ``AUTHORS_JUDGE_PROMPT``) or
    "situation" (the project's prompt that also shows the situation)."""
    prompt_template: str = ""
    """Judge prompt with {a}, {b} (and optionally {situation}) replacing the built-in ``prompt``; "" = built-in."""
    encode_batch_size: int = 128
    """Batch size of the encoder's own forward passes."""

    def problems(self) -> list[str]:
        p = Problems()
        p.unit("pair_threshold", self.pair_threshold)
        p.unit("judge_threshold", self.judge_threshold)
        p.enum("masking", self.masking, Masking)
        p.enum("train_text", self.train_text, TrainText)
        _cap_problem(p, "max_pairs_judged", self.max_pairs_judged)
        _cap_problem(p, "max_negatives_judged", self.max_negatives_judged)
        p.positive("judge_window", self.judge_window)
        p.enum("prompt", self.prompt, JudgePrompt)
        if self.prompt_template:
            try:
                self.prompt_template.format(a="", b="", situation="")
                ok = "{a}" in self.prompt_template and "{b}" in self.prompt_template
            except (IndexError, KeyError, ValueError):
                ok = False
            if not ok:
                p.add("prompt_template", "must contain {a} and {b} and no other placeholder than {situation} "
                      "(write a literal brace as {{ or }})")
        return list(p)


@dataclass
class JudgeConfig:
    """The Yes/No judge that confirms mined pairs (an instruction-tuned LLM in the paper)."""

    kind: YesNoKind = YesNoKind.none
    """"transformers" (local causal LM), "http" (OpenAI-compatible endpoint), "labels" (human pair labels
    from ``labels_file``, see opgrpo.estimator.pair_labels) or "none" (thresholds only)."""
    model: str = ""
    """Hub id or local path ("transformers"), or the served model name ("http")."""
    mode: JudgeMode = JudgeMode.generate
    """"generate" (paper): greedy decoding of up to ``max_new_tokens``; the verdict is Yes when "yes" occurs
    (any case) in the first line after the last "Answer:", else No (``opgrpo.judges.answer_verdict``).
    "logprob": P(Yes) from the next-token probabilities of the Yes/No tokens (logprobs over "http")."""
    chat_template: bool = False
    """Wrap the prompt in the model's chat template. False (paper): the prompt is plain text, as the authors
    prompted their judge ("http": the /completions endpoint; a chat-only API needs true)."""
    max_new_tokens: int = 10
    """Tokens generated per verdict in mode "generate" (the authors: 10)."""
    base_url: str = ""
    """API root of the endpoint, e.g. http://127.0.0.1:8000/v1 ("http" only)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key ("http" only; may be unset for local servers)."""
    timeout: float = 30.0
    """Seconds per HTTP request."""
    batch_size: int = 16
    """Prompts per forward pass ("transformers")."""
    max_workers: int = 4
    """Concurrent HTTP requests ("http")."""
    max_retries: int = 2
    """Retries per HTTP request before the answer counts as missing."""
    probe: bool = True
    """"http": before the run starts, ask the endpoint one short question (timeout at most 10 s), so that an unknown
    ``model`` (404), refused credentials or an unreachable ``base_url`` fail at start-up naming the setting; false:
    no probe (the endpoint is checked when the stage starts)."""
    max_failure_share: float = 0.25
    """Mining fails (the stage fails, with the judge's own error) when more than this share of its judge prompts got
    no answer because the judge failed (HTTP errors after retries, a judge that raised); 1 = never for the share
    alone. Mining that yields no triplet although items had candidate pairs fails whatever the share."""
    dtype: str = "auto"
    """auto | float32 | bfloat16 | float16 ("transformers")."""
    max_length: int = 1024
    """Prompt tokens; longer prompts are cut from the left of the user content."""
    system_prompt: str = ""
    """Optional system message for the judge."""
    labels_file: str = ""
    """CSV/JSONL of same/different labels (id, name_a, name_b, label) for kind "labels"; also used for the
    label-defined held-out triplets of the test items."""
    unlabelled: Unlabelled = Unlabelled.different
    """kind "labels": a pair the file does not mention is "different" or unanswered ("skip")."""

    def problems(self) -> list[str]:
        p = Problems()
        p.enum("kind", self.kind, YesNoKind)
        if self.kind == "labels" and not self.labels_file:
            p.add("labels_file", "judge kind 'labels' needs a CSV/JSONL labels file")
        if self.labels_file and not Path(self.labels_file).is_file():
            p.add("labels_file", f"no such file {self.labels_file!r}")
        p.enum("unlabelled", self.unlabelled, Unlabelled)
        p.enum("mode", self.mode, JudgeMode)
        p.positive("max_new_tokens", self.max_new_tokens)
        p.unit("max_failure_share", self.max_failure_share)
        p.env_name("api_key_env", self.api_key_env)
        if self.kind == "http" and self.mode == "logprob" and not self.chat_template:
            p.add("chat_template", "mode 'logprob' over http reads chat-completion logprobs: set chat_template=true "
                  "(or mode=generate, which works on the plain /completions endpoint)")
        return list(p)


@dataclass
class TrainConfig:
    """Fine-tuning with MultipleNegativesRankingLoss (paper preset, found by the Optuna search)."""

    batch_size: int = 32
    """Triplets per training batch (MNRL uses the other positives of a batch as extra negatives)."""
    epochs: int = 2
    """Passes over the training triplets."""
    lr: float = 2.1456771788455288e-05
    """Peak learning rate (paper: 2.1457e-5, the authors' ``trainer_tripetloss.py`` value to its last digit)."""
    warmup_ratio: float = 0.03254893834779507
    """Share of the steps spent in linear warmup (paper: 0.0325, ``trainer_tripetloss.py``'s value unrounded)."""
    mnrl_scale: float = 60.0
    """Scale (inverse temperature) of MultipleNegativesRankingLoss (paper: 60, ``trainer_tripetloss.py``; the
    authors' GRPO reward loaded a model named ``st-scale70``, so ``estimator.train.mnrl_scale=70`` is the other
    reading)."""
    val_fraction: float = 0.0
    """Share of the mined triplets held out from the final training for its validation loss and the
    base-vs-fine-tuned comparison on mined triplets; 0 = train on all of them (paper: the authors'
    trainer_tripetloss.py). The held-out test-item evaluation needs no share of them."""
    seed: int = 42
    """Seed of the triplet split and of training."""
    batch_sampler: BatchSampler = BatchSampler.batch_sampler
    """sentence-transformers batch sampler: "batch_sampler" (plain shuffled batches, the library default the
    authors' final training used) or "no_duplicates" (no text twice in a batch, so no in-batch false negative)."""
    fp16: bool = True
    """fp16 mixed precision on a CUDA device, as the authors trained (ignored on CPU and other devices)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = run all epochs); for smoke tests."""
    eval_batch_size: int = 32
    """Batch size of the validation MNRL loss; fixed so the loss is comparable across searched batch sizes."""
    logging_steps: int = 10
    """Log the training loss every N steps."""

    def problems(self) -> list[str]:
        p = Problems()
        p.unit("val_fraction", self.val_fraction, open_high=True)
        p.positive("batch_size", self.batch_size)
        p.positive("eval_batch_size", self.eval_batch_size)
        p.positive("mnrl_scale", self.mnrl_scale)
        p.enum("batch_sampler", self.batch_sampler, BatchSampler)
        return list(p)


@dataclass
class SearchConfig:
    """Optuna (TPE, seeded) search over the fine-tuning hyperparameters; objective = validation loss."""

    n_trials: int = 20
    """Number of Optuna trials."""
    lr_min: float = 1e-6
    """Lowest learning rate tried (log-uniform)."""
    lr_max: float = 5e-5
    """Highest learning rate tried (log-uniform)."""
    batch_sizes: List[int] = field(default_factory=lambda: [32, 64, 128])
    """Batch sizes tried."""
    epochs_min: int = 2
    """Fewest epochs tried."""
    epochs_max: int = 5
    """Most epochs tried."""
    warmup_min: float = 0.0
    """Lowest warmup ratio tried."""
    warmup_max: float = 0.3
    """Highest warmup ratio tried."""
    seed: int = 42
    """Seed of the TPE sampler."""
    mnrl_scale: float = 20.0
    """MNRL scale during the search: the library's default 20, as the authors' hpo.py (the final training uses
    ``train.mnrl_scale``)."""
    val_fraction: float = 0.1
    """Share of the triplets held out for the objective, the validation MNRL loss (hpo.py: 90/10, split with
    ``train.seed`` like ``datasets``' ``train_test_split(test_size, seed)``)."""
    eval_batch_size: int = 8
    """Batch size of the objective's validation loss (hpo.py left it at the trainer's default, 8)."""
    batch_sampler: BatchSampler = BatchSampler.no_duplicates
    """Batch sampler of the trials (hpo.py: no_duplicates)."""

    def problems(self) -> list[str]:
        p = Problems()
        p.positive("n_trials", self.n_trials)
        p.positive("mnrl_scale", self.mnrl_scale)
        p.positive("eval_batch_size", self.eval_batch_size)
        p.enum("batch_sampler", self.batch_sampler, BatchSampler)
        if p.finite("val_fraction", self.val_fraction) and not 0.0 < self.val_fraction < 1.0:
            p.add("val_fraction", f"must be in (0, 1): the objective is a validation loss (got {self.val_fraction})")
        return list(p)


@dataclass
class Calibration:
    """The reward's similarity thresholds that suit this estimator (its cosine scale): the reward presets read
    them (``reward.tau_cov = estimator.calibration.tau_cov + reward.tau_cov_delta``), so picking another reward
    preset keeps them, and threshold sweeps move around them."""

    tau_cov: float = 0.7
    """Coverage threshold tau_cov for this estimator (the paper's 0.7 for mpnet)."""
    tau_uniq: float = 0.78
    """Uniqueness threshold tau_uniq for this estimator (the paper's 0.78 for mpnet)."""


@dataclass
class EstimatorConfig:
    """The whole estimator stage."""

    base_model: str = "sentence-transformers/paraphrase-mpnet-base-v2"
    """Hub id or local path of the sentence-transformers model to fine-tune."""
    mining: MiningConfig = field(default_factory=MiningConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    run_search: bool = False
    """Run the Optuna search first and train with its best parameters."""
    min_triplets: int = 2
    """With fewer mined triplets the base model is saved unchanged (logged; metrics say trained=false)."""
    calibration: Calibration = field(default_factory=Calibration)
    """Reward thresholds calibrated for this estimator (see Calibration)."""

    def problems(self) -> list[str]:
        """Every invalid setting, as ``key: message`` with keys relative to the estimator section."""
        p = Problems()
        for key in ("tau_cov", "tau_uniq"):
            value = getattr(self.calibration, key)
            if not 0.0 <= value <= 1.0:
                p.add(f"calibration.{key}", f"must be in [0, 1], got {value}")
        p.extend_from("mining.", self.mining.problems())
        p.extend_from("judge.", self.judge.problems())
        p.extend_from("train.", self.train.problems())
        p.extend_from("search.", self.search.problems())
        return list(p)

    def validate(self) -> EstimatorConfig:
        """Raise ``ConfigProblemsError`` (a ValueError) listing every invalid field; return self when valid."""
        p = Problems("estimator.")
        p.extend_from("", self.problems())
        p.raise_if_any()
        return self
