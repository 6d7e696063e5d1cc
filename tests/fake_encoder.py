"""A deterministic stand-in for a sentence-transformers encoder, so reward similarities are known.

Sentences listed in ``table`` get their given vector; any other sentence gets its own basis vector
(the same string always the same one), so distinct unknown sentences have cosine 0 and identical
ones cosine 1. Every ``encode`` call is recorded.
"""
from __future__ import annotations

import numpy as np


def unit(*pairs: tuple[int, float], dim: int = 512) -> np.ndarray:
    """Vector with the given (axis, value) entries."""
    v = np.zeros(dim, dtype=np.float32)
    for axis, value in pairs:
        v[axis] = value
    return v


class FakeEncoder:
    def __init__(self, table: dict[str, np.ndarray] | None = None, dim: int = 512, first_free_axis: int = 64):
        self.table = dict(table or {})
        self.dim = dim
        self._next = first_free_axis
        self._auto: dict[str, int] = {}
        self.calls: list[list[str]] = []

    def vector(self, s: str) -> np.ndarray:
        if s in self.table:
            return np.asarray(self.table[s], dtype=np.float32)
        if s not in self._auto:
            if self._next >= self.dim:
                raise RuntimeError("FakeEncoder ran out of axes")
            self._auto[s] = self._next
            self._next += 1
        return unit((self._auto[s], 1.0), dim=self.dim)

    def encode(self, sentences, normalize_embeddings=True, convert_to_numpy=True, **kwargs):
        self.calls.append(list(sentences))
        return np.stack([self.vector(s) for s in sentences]) if sentences else np.zeros((0, self.dim), np.float32)
