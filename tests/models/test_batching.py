"""The shared batching rule: length-sorted batches, left padding, the attention mask, results back in order."""
import torch

from opgrpo.models.batching import (
    left_pad,
    length_sorted_batches,
    pad_token_id,
    padded_batches,
)


def test_length_sorted_batches_stable_and_complete():
    # lengths 3, 1, 2, 1, 5: sorted (ties in input order) 1, 3, 2, 0, 4
    assert length_sorted_batches([3, 1, 2, 1, 5], 2) == [[1, 3], [2, 0], [4]]
    assert length_sorted_batches([3, 1], 0) == [[1], [0]]  # a batch holds at least one
    assert length_sorted_batches([], 4) == []


def test_left_pad_by_hand():
    ids, mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.dtype == mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    ids, mask = left_pad([[1, 2]], pad_id=9)
    assert ids.tolist() == [[1, 2]] and mask.tolist() == [[1, 1]]


def test_padded_batches_left_pad_and_restore_order():
    seqs = [[11, 12, 13], [21], [31, 32], [41, 42, 43, 44]]
    batches = list(padded_batches(seqs, 2, pad_id=-1))
    # shortest first: [1] and [2] together, then [0] and [3]
    assert [idx for idx, _, _ in batches] == [[1, 2], [0, 3]]
    idx, ids, mask = batches[0]
    assert ids.tolist() == [[-1, 21], [31, 32]] and mask.tolist() == [[0, 1], [1, 1]]
    idx, ids, mask = batches[1]
    assert ids.tolist() == [[-1, 11, 12, 13], [41, 42, 43, 44]] and mask.tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    # a caller scatters per-row results back by the indices: input order again
    out = [None] * len(seqs)
    for idx, ids, mask in padded_batches(seqs, 2, pad_id=0):
        for r, i in enumerate(idx):
            out[i] = ids[r][mask[r].bool()].tolist()  # the unpadded row
    assert out == seqs
    # another sort key (e.g. the prompts' character lengths): batches follow it
    assert [idx for idx, _, _ in padded_batches(seqs, 2, 0, lengths=[1, 9, 8, 2])] == [[0, 3], [2, 1]]


def test_pad_token_id_falls_back_to_eos_then_zero():
    class Tok:
        def __init__(self, pad, eos):
            self.pad_token_id, self.eos_token_id = pad, eos

    assert pad_token_id(Tok(3, 2)) == 3 and pad_token_id(Tok(None, 2)) == 2 and pad_token_id(Tok(None, None)) == 0
