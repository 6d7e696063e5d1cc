"""A local chat judge: an instruction-tuned causal LM that answers prompts through transformers generation.

``LocalChatJudge.complete(prompts, *, max_tokens, temperature) -> list[str | None]`` is the interface the
judge-based evaluation (``opgrpo.evaluation.judge_eval``) needs, the same as ``ChatEndpoint.complete``.
Prompts are cleaned first (``opgrpo.text.clean``), counted in ``cleaned``.
"""
from __future__ import annotations

import logging
from typing import Any

from opgrpo.judges.yesno import load_local_lm
from opgrpo.models.batching import pad_token_id, padded_batches
from opgrpo.text.clean import clean_texts

logger = logging.getLogger(__name__)


class LocalChatJudge:
    """A local instruction-tuned causal LM answering through its chat template (transformers generate).

    Greedy at temperature 0, sampling otherwise; prompts are length-sorted into left-padded batches.
    """

    def __init__(self, model_name_or_path: str, *, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 8, max_length: int = 4096):
        self.tokenizer, self.model, self.device = load_local_lm(model_name_or_path, device, dtype)
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        self.pad_id = pad_token_id(self.tokenizer)
        self.cleaned = 0
        """Prompts that held lone surrogates or control characters (cleaned before the model)."""

    def _encode(self, prompt: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        else:
            text = prompt + "\n"
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids[-self.max_length:]

    def complete(self, prompts: list[str], *, max_tokens: int = 16, temperature: float = 0.0) -> list[str | None]:
        import torch

        prompts, changed = clean_texts(["" if p is None else str(p) for p in prompts], where="chat judge",
                                       log=logger, what="prompt")
        self.cleaned += changed
        encoded = [self._encode(p) for p in prompts]
        out: list[str | None] = [None] * len(encoded)
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self.pad_id}
        if temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            for idx, ids, mask in padded_batches(encoded, self.batch_size, self.pad_id):
                gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                          **gen_kwargs)
                for r, i in enumerate(idx):
                    out[i] = self.tokenizer.decode(gen[r, ids.shape[1]:], skip_special_tokens=True)
        return out
