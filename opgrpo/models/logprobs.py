"""Log-probabilities of given completions under a causal LM (batched, right-padded forward passes): the target
policy's ``log pi(y|x)`` for off-policy evaluation (opgrpo.evaluation.pope) and the policy / reference log-probs
of the SPL shaping reward (opgrpo.training.spl)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["prompt_token_ids", "sequence_logprobs", "token_logprob_sums"]


def token_logprob_sums(model: Any, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                       batch_size: int = 8, pad_token_id: int = 0, temperature: float = 1.0) -> np.ndarray:
    """Sum over each completion's tokens of ``log p(token | prompt, earlier tokens)`` under ``model``, batched
    (right padding; prompt tokens are not scored). Empty completions score 0."""
    import torch

    device = next(model.parameters()).device
    out = np.zeros(len(completion_ids), dtype=float)
    order = sorted(range(len(completion_ids)), key=lambda i: -(len(prompt_ids[i]) + len(completion_ids[i])))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                seqs = [list(prompt_ids[i]) + list(completion_ids[i]) for i in chunk]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
                attn = torch.zeros((len(seqs), width), dtype=torch.long)
                scored = torch.zeros((len(seqs), width), dtype=torch.bool)
                for r, (i, s) in enumerate(zip(chunk, seqs)):
                    ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
                    attn[r, :len(s)] = 1
                    scored[r, len(prompt_ids[i]):len(s)] = True
                logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
                logp = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)
                tok = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
                sums = (tok * scored[:, 1:].to(device)).sum(-1).cpu().numpy()
                for r, i in enumerate(chunk):
                    out[i] = float(sums[r])
    finally:
        model.train(was_training)
    return out


def prompt_token_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """Token ids of a prompt: a string as it is (no special tokens added), or chat messages rendered with the
    tokenizer's chat template and the generation prompt."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def sequence_logprobs(model: Any, tokenizer: Any, prompts: Sequence[Any], responses: Sequence[str], *,
                      batch_size: int = 8, temperature: float = 1.0, append_eos: bool = True) -> np.ndarray:
    """``log pi(response | prompt)`` under a causal LM: prompts are strings (used as they are) or chat messages
    (rendered with the tokenizer's chat template and the generation prompt); responses are tokenized without
    special tokens, plus EOS when ``append_eos``."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    p_ids = [prompt_token_ids(tokenizer, p) for p in prompts]
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    c_ids = [list(tokenizer(r, add_special_tokens=False)["input_ids"]) + eos for r in responses]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return token_logprob_sums(model, p_ids, c_ids, batch_size=batch_size, pad_token_id=pad, temperature=temperature)
