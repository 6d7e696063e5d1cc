"""A local Yes/No judge: an instruction-tuned causal LM, read from its next-token logits or its greedy reply.

``YesNoLM.prob_yes(prompts) -> list[float]`` is all the estimator's triplet mining and the causal-LM NLI
backend need. Two modes: "logprob" (one forward pass per left-padded, length-sorted batch from
``opgrpo.models.batching``; P(Yes) from the Yes/No token logits) and "generate" (the authors' judge: greedy
decoding of a few tokens, verdict by ``answer_verdict``: 1.0 when "yes" occurs in the answer line, else 0.0). The prompt goes through the model's chat
template, or as plain text (``chat_template=False``, the authors'). ``load_local_lm`` loads the tokenizer and
model the local judges (this one and ``opgrpo.judges.chat.LocalChatJudge``) share. Every judge cleans its
prompts first (``opgrpo.text.clean``: lone surrogates and control characters), counts them in ``cleaned`` and
logs one WARNING per call.
"""
from __future__ import annotations

import inspect
import logging
import math
import re
from typing import Any, Protocol

from opgrpo.models.batching import pad_token_id, padded_batches
from opgrpo.models.devices import resolve_device, resolve_dtype
from opgrpo.text.clean import clean_texts

logger = logging.getLogger(__name__)

YES_VARIANTS = ("Yes", " Yes", "yes")
NO_VARIANTS = ("No", " No", "no")
JUDGE_MODES = ("generate", "logprob")
ANSWER_CUE = "Answer:"

_LEADS_YES = re.compile(r"[\W_]*yes(?![a-z])", re.IGNORECASE)
_LEADS_NO = re.compile(r"[\W_]*no(?![a-z])", re.IGNORECASE)


def answer_line(reply: str | None) -> str | None:
    """The first line of a reply after its last "Answer:" (after the whole reply when there is none), stripped.

    The authors' rule: ``(prompt + reply).split("Answer:")[-1].strip().split("\n")[0]``; the prompt ends in
    "Answer:", so that is the reply's own last "Answer:" if it wrote one, else the reply. None for no reply.
    """
    if reply is None:
        return None
    return str(reply).split(ANSWER_CUE)[-1].strip().split("\n")[0].strip()


def answer_verdict(reply: str | None) -> float | None:
    """1.0 (Yes) when "yes" occurs anywhere in ``answer_line(reply)``, in any case (SPEC.md, the authors'
    ``"yes" in line.lower()``: "No, yes" and "eyes" read Yes too), else 0.0 (No: every other reply, an empty one
    too, as the authors counted it). None only when there is no reply (a failed request)."""
    line = answer_line(reply)
    if line is None:
        return None
    return 1.0 if "yes" in line.lower() else 0.0


def answer_is_clear(reply: str | None) -> bool:
    """Whether the answer line starts with the word yes or no; an unclear line (neither) still gets
    ``answer_verdict``'s substring reading, and the judges count it."""
    line = answer_line(reply)
    return line is not None and bool(_LEADS_YES.match(line) or _LEADS_NO.match(line))


class Judge(Protocol):
    def prob_yes(self, prompts: list[str]) -> list[float | None]: ...


def load_local_lm(model_name_or_path: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any, str]:
    """``(tokenizer, model, device)``: a causal LM in eval mode on the resolved device and dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_name_or_path), dtype=resolve_dtype(dtype, device))
    model.to(device).eval()
    return tokenizer, model, device


class YesNoLM:
    """Instruction-tuned causal LM answering Yes/No.

    ``mode="logprob"``: P(yes) = softmax over the logits of the single-token "Yes"/" Yes"/"yes" and
    "No"/" No"/"no" variants, summed over the Yes variants, at the first generated position after the prompt.
    ``mode="generate"``: greedy decoding (the model's own generation config otherwise, as a plain
    ``generate(do_sample=False)`` call) of up to ``max_new_tokens``; P(yes) is ``answer_verdict`` of the reply,
    1.0 or 0.0; ``unparseable`` counts replies whose answer line starts with neither the word yes nor no.
    ``chat_template=True`` wraps the prompt in the tokenizer's chat template (a model without one gets the
    prompt plus "\nAnswer:"); False tokenizes the prompt as plain text with the tokenizer's special tokens, as
    ``tokenizer(prompt)`` does (the authors' judge).
    """

    def __init__(self, model_name_or_path: str, *, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 16, max_length: int = 1024, system_prompt: str = "",
                 progress: bool = False, mode: str = "logprob", chat_template: bool = True,
                 max_new_tokens: int = 10):
        import torch

        if mode not in JUDGE_MODES:
            raise ValueError(f"Yes/No judge mode must be one of {JUDGE_MODES}; got {mode!r}")
        self.tokenizer, self.model, self.device = load_local_lm(model_name_or_path, device, dtype)
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        self.system_prompt = system_prompt
        self.progress = progress
        self.mode = mode
        self.chat_template = bool(chat_template)
        self.max_new_tokens = max(1, int(max_new_tokens))
        self.pad_id = pad_token_id(self.tokenizer)
        self.yes_ids = self._single_token_ids(YES_VARIANTS)
        self.no_ids = self._single_token_ids(NO_VARIANTS)
        if mode == "logprob" and (not self.yes_ids or not self.no_ids):
            raise ValueError(f"tokenizer of {model_name_or_path} has no single-token Yes/No variants")
        self._variant_ids = torch.tensor(self.yes_ids + self.no_ids, device=self.device)
        self.unparseable = 0
        """Replies (mode "generate") whose answer line starts with neither the word yes nor no (read by
        ``answer_verdict``: Yes when "yes" occurs in it, else No)."""
        params = inspect.signature(self.model.forward).parameters
        self._keep_kw = "logits_to_keep" in params
        self._pos_kw = "position_ids" in params
        self.truncated = 0
        self.cleaned = 0
        """Prompts that held lone surrogates or control characters (cleaned before the model)."""

    def _single_token_ids(self, variants) -> list[int]:
        ids: list[int] = []
        for v in variants:
            toks = self.tokenizer.encode(v, add_special_tokens=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(toks[0])
        return ids

    def _render(self, content: str) -> list[int]:
        if not self.chat_template:  # plain text, special tokens as tokenizer(prompt) adds them
            return self.tokenizer.encode((self.system_prompt + "\n\n" if self.system_prompt else "") + content)
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": content})
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        else:  # base model without template: plain prompt ending in an answer cue
            text = (self.system_prompt + "\n\n" if self.system_prompt else "") + content + "\nAnswer:"
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of the templated prompt, cut from the left of the user content to fit max_length."""
        ids = self._render(prompt)
        if len(ids) <= self.max_length:
            return ids
        self.truncated += 1
        content_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        excess = len(ids) - self.max_length
        for _ in range(4):  # decode/re-encode may shift a token or two
            keep = len(content_ids) - excess
            if keep <= 0:
                break
            ids = self._render(self.tokenizer.decode(content_ids[-keep:]))
            if len(ids) <= self.max_length:
                return ids
            excess += len(ids) - self.max_length + 2
        # template overhead alone is too long: keep the end, which holds the generation prompt
        return ids[-self.max_length:]

    def _encoded_batches(self, prompts: list[str]) -> tuple[list[list[int]], Any]:
        prompts, changed = clean_texts(["" if p is None else str(p) for p in prompts], where="Yes/No judge",
                                       log=logger, what="prompt")
        self.cleaned += changed
        encoded = [self.encode_prompt(p) for p in prompts]
        batches = padded_batches(encoded, self.batch_size, self.pad_id)
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=math.ceil(len(encoded) / self.batch_size), desc="judge", unit="batch")
        return encoded, batches

    def replies(self, prompts: list[str]) -> list[str]:
        """The greedy replies (up to ``max_new_tokens``, special tokens dropped) to the rendered prompts."""
        import torch

        encoded, batches = self._encoded_batches(prompts)
        out = [""] * len(encoded)
        gen_kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                                      "pad_token_id": self.pad_id, "temperature": None, "top_p": None, "top_k": None}
        with torch.inference_mode():
            for idx, ids, mask in batches:
                gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                          **gen_kwargs)
                for r, i in enumerate(idx):
                    out[i] = self.tokenizer.decode(gen[r, ids.shape[1]:], skip_special_tokens=True)
        return out

    def prob_yes(self, prompts: list[str]) -> list[float]:
        import torch

        if self.mode == "generate":
            out_g: list[float] = []
            for reply in self.replies(prompts):
                if not answer_is_clear(reply):
                    self.unparseable += 1
                    logger.debug("unclear judge reply (read as %s): %r", "Yes" if answer_verdict(reply) else "No",
                                 reply[:80])
                out_g.append(float(answer_verdict(reply)))
            return out_g
        encoded, batches = self._encoded_batches(prompts)
        out: list[float] = [0.0] * len(encoded)
        with torch.inference_mode():
            for idx, ids, mask in batches:  # left padding: the last column is every row's next position
                kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
                if self._pos_kw:  # positions restart at 0 after the padding, as for an unpadded prompt
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
                if self._keep_kw:
                    kwargs["logits_to_keep"] = 1
                logits = self.model(**kwargs).logits[:, -1, :].float()
                probs = torch.softmax(logits.index_select(-1, self._variant_ids), dim=-1)
                p_yes = probs[:, :len(self.yes_ids)].sum(-1).clamp(0.0, 1.0).tolist()
                for r, i in enumerate(idx):
                    out[i] = float(p_yes[r])
        return out
