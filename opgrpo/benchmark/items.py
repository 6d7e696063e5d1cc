"""The benchmark's records: an :class:`Item` (a situation plus its reference :class:`Perspective` s) and the
:class:`DataError` / :class:`DataFormatError` that name the file, row and field of a bad input row."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataError", "DataFormatError", "Item", "Perspective"]


@dataclass
class Perspective:
    """One reference perspective: a value, right or duty and why it bears on the situation."""

    name: str
    text: str

    @property
    def line(self) -> str:
        return f"In the perspective of {self.name}, {self.text}"


@dataclass
class Item:
    """One benchmark item; ``source`` is "file:row" of where it was read."""

    id: str
    situation: str
    perspectives: list[Perspective]
    source: str

    @property
    def references(self) -> list[str]:
        return [p.line for p in self.perspectives]

    @property
    def num_perspectives(self) -> int:
        return len(self.perspectives)


@dataclass
class DataError:
    """A problem with one row (``row`` is None for a file-level problem); ``kept`` if the row was still used."""

    source: str
    row: int | None
    field: str
    message: str
    kept: bool = False

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source}: row {self.row}"
        return f"{where}: field {self.field!r}: {self.message}" + (" (row kept)" if self.kept else "")


class DataFormatError(ValueError):
    """A data file (or one of its rows) is not in the expected format; ``error`` says where."""

    def __init__(self, error: DataError):
        super().__init__(str(error))
        self.error = error
