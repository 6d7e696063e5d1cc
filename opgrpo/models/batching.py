"""Left-padded, length-sorted batches of token ids: the one batching rule of every local LM in the package.

Prompts are sorted by length (stable, so ties keep their input order) and cut into batches, which wastes
little padding; each batch is left-padded so that the last column is every row's next position (what
generation and next-token scoring need). Callers get each batch's input indices with its tensors and put
their results back by those indices, so outputs come in input order.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad token id, else its EOS id, else 0."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Input indices in batches of ``batch_size``, shortest first (ties in input order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = max(1, int(batch_size))
    return [order[s:s + size] for s in range(0, len(order), size)]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int):
    """``(input_ids, attention_mask)``, long tensors of shape (len(sequences), longest), padded on the left."""
    import torch

    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for r, seq in enumerate(sequences):
        if len(seq):
            ids[r, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[r, width - len(seq):] = 1
    return ids, mask


def padded_batches(sequences: Sequence[Sequence[int]], batch_size: int, pad_id: int, *,
                   lengths: Sequence[int] | None = None) -> Iterator[tuple[list[int], Any, Any]]:
    """``(indices, input_ids, attention_mask)`` per length-sorted batch of ``sequences``, left-padded.

    ``indices`` are the batch rows' positions in ``sequences``; ``lengths`` (default: the token counts)
    is the sort key.
    """
    key = [len(s) for s in sequences] if lengths is None else lengths
    for idx in length_sorted_batches(key, batch_size):
        ids, mask = left_pad([sequences[i] for i in idx], pad_id)
        yield idx, ids, mask
