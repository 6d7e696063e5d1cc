"""The benchmark's records: an :class:`Item` (a situation plus its reference :class:`Perspective` s) and the
:class:`DataError` / :class:`DataFormatError` that name the file, row and field of a bad input row."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataError", "DataFormatError", "Item", "Perspective"]


@dataclass
class Perspective:
    """One reference perspective: a value, right or duty and why it bears on the situation.

    ``raw`` is the reference line exactly as the data wrote it (set by the loader for answer lines); ``line``
    returns it, so references, rewards and SFT targets never see a line rebuilt from a mis-parsed name.
    """

    name: str
    """The name as parsed from the line (or as given in a ``{name, text}`` record)."""
    text: str
    """The explanation (the text after the name's comma)."""
    raw: str | None = field(default=None, compare=False, repr=False)
    """The reference line as written ("In the perspective of Good vs. Evil, ..."); None when built from parts."""

    @property
    def line(self) -> str:
        """The reference line: ``raw`` when known, else "In the perspective of {name}, {text}"."""
        return self.raw if self.raw is not None else f"In the perspective of {self.name}, {self.text}"


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
