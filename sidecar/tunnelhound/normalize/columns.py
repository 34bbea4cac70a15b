"""The columns of a :class:`~tunnelhound.normalize.frame.FlowFrame`, with text kept compact.

Most text columns of a normalized flow are a function of numbers the normalizer has anyway:
addresses (packed integers), ISO times (nanoseconds), event ids (16-byte digests), the
``netflow`` object (decoded element columns), one observer address per batch. Making a Python
``str`` per row for each of them, only for the NDJSON encoder to copy it out again, was a
third of the encoding cost. :class:`Columns` holds such a column as a *recipe*, a one-column
:class:`~tunnelhound.normalize.rows.Rows` that the encoder splices into the document (the C
kernel writes the text straight from the numbers), and builds the ``str`` object column only
when someone reads ``cols[name]``: every reader sees the same dtype and values as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence

import numpy as np

from tunnelhound.normalize.rows import Rows, concat_rows, rows_equal

__all__ = ["Columns"]


class Columns(MutableMapping[str, np.ndarray]):
    """Column name → array; text columns may be held as recipes until read.

    A recipe renders a text present on every row. Reading ``cols[name]`` renders it once into
    an object array of ``str``, which then replaces the recipe (a reader may change that array
    in place, so the recipe would no longer tell the truth). Assigning a column replaces
    either form. Names keep their order, whatever the form.
    """

    __slots__ = ("_columns",)

    def __init__(self, columns: Mapping[str, np.ndarray | Rows] | None = None) -> None:
        self._columns: dict[str, np.ndarray | Rows] = dict(columns or {})

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._columns[name]
        if isinstance(column, Rows):
            column = self._columns[name] = _text_column(column.strings())
        return column

    def __setitem__(self, name: str, column: np.ndarray) -> None:
        self._columns[name] = column

    def __delitem__(self, name: str) -> None:
        del self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def recipe(self, name: str) -> Rows | None:
        """The column's recipe if it has not been read as an array yet, else None."""
        column = self._columns.get(name)
        return column if isinstance(column, Rows) else None

    def text_equal(self, a: str, b: str) -> np.ndarray:
        """Per row, whether text columns ``a`` and ``b`` hold the same text (from the compact
        forms where they tell it, without building the strings)."""
        ra, rb = self.recipe(a), self.recipe(b)
        if ra is not None and rb is not None and (equal := rows_equal(ra, rb)) is not None:
            return equal
        return np.asarray(self[a] == self[b], dtype=bool)

    def take(self, index: np.ndarray | slice) -> Columns:
        """The rows at ``index`` (int array, bool mask or slice) of every column, recipes kept."""
        return Columns(
            {
                name: column.take(index) if isinstance(column, Rows) else column[index]
                for name, column in self._columns.items()
            }
        )

    @staticmethod
    def concat(parts: Sequence[Columns], names: Sequence[str]) -> Columns:
        """Columns ``names`` of ``parts``, rows in order; recipes stay recipes where every
        part has one built alike."""
        out = Columns()
        for name in names:
            recipes = [p.recipe(name) for p in parts]
            joined = concat_rows([r for r in recipes if r is not None]) if None not in recipes else None
            out._columns[name] = joined if joined is not None else np.concatenate([p[name] for p in parts])
        return out


def _text_column(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
