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
from dataclasses import dataclass

import numpy as np

from tunnelhound.normalize.rows import Rows, concat_rows, rows_equal

__all__ = ["Columns", "Text"]


@dataclass(frozen=True, slots=True)
class Text:
    """A text column as a recipe: ``rows`` renders each row's text; ``present`` (None: every
    row) says where the column holds a text rather than None."""

    rows: Rows
    present: np.ndarray | None = None

    def strings(self) -> np.ndarray:
        """The object column of ``str`` (None where not present)."""
        out = np.empty(self.rows.n, dtype=object)
        out[:] = self.rows.strings()
        if self.present is not None:
            out[~self.present] = None
        return out

    def take(self, index: np.ndarray | slice) -> Text:
        """The recipe of the rows at ``index``."""
        return Text(self.rows.take(index), None if self.present is None else self.present[index])

    @staticmethod
    def concat(texts: Sequence[Text]) -> Text:
        """One recipe of all rows (see :func:`concat_rows`)."""
        rows = concat_rows([t.rows for t in texts])
        if all(t.present is None for t in texts):
            return Text(rows)
        present = [np.ones(t.rows.n, dtype=bool) if t.present is None else t.present for t in texts]
        return Text(rows, np.concatenate(present))


_PRESENT = "\x01"
"""Written before a present text when digesting, so a None row (nothing written) differs from ""."""


class Columns(MutableMapping[str, np.ndarray]):
    """Column name → array; text columns may be held as recipes (:class:`Text`) until read.

    Reading ``cols[name]`` renders a recipe once into an object array of ``str``, which then
    replaces it (a reader may change that array in place, so the recipe would no longer tell
    the truth). Assigning a column replaces either form. Names keep their order.
    """

    __slots__ = ("_columns",)

    def __init__(self, columns: Mapping[str, np.ndarray | Text | Rows] | None = None) -> None:
        self._columns: dict[str, np.ndarray | Text] = {
            name: Text(column) if isinstance(column, Rows) else column
            for name, column in (columns or {}).items()
        }

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._columns[name]
        if isinstance(column, Text):
            column = self._columns[name] = column.strings()
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

    def recipe(self, name: str) -> Text | None:
        """The column's recipe if it has not been read as an array yet, else None."""
        column = self._columns.get(name)
        return column if isinstance(column, Text) else None

    def text_equal(self, a: str, b: str) -> np.ndarray:
        """Per row, whether text columns ``a`` and ``b`` hold the same text (from the compact
        forms where they tell it, without building the strings)."""
        ra, rb = self.recipe(a), self.recipe(b)
        if ra is not None and rb is not None and ra.present is None and rb.present is None:
            equal = rows_equal(ra.rows, rb.rows)
            if equal is not None:
                return equal
        return np.asarray(self[a] == self[b], dtype=bool)

    def text_at(self, name: str, row: int) -> object:
        """Row ``row`` of column ``name``, the column left as it is (a recipe stays one)."""
        column = self._columns[name]
        if isinstance(column, Text):
            return column.take(np.array([row])).strings()[0]
        return column[row]

    def digests(self, name: str) -> np.ndarray:
        """The xxh3-128 digest of each row's text of column ``name``, an (n, 16) uint8 array,
        read from the recipe where there is one (no ``str`` is built): equal texts give equal
        digests in either form, and None differs from every text, "" included."""
        column = self._columns[name]
        if isinstance(column, Text):
            rows = Rows(column.rows.n).splice(column.rows, before=_PRESENT, mask=column.present)
        else:
            rows = Rows(len(column)).text(column.tolist(), before=_PRESENT)
        return rows.xxh3_128_digests()

    def hashes(self, name: str) -> np.ndarray:
        """A 64-bit hash of each row's text of column ``name`` (the head of its digest): equal
        texts hash equally in every frame and process."""
        return np.ascontiguousarray(self.digests(name)[:, :8]).view(np.uint64).reshape(-1)

    def put(self, name: str, column: np.ndarray | Text) -> None:
        """Set column ``name`` to an array or a recipe."""
        self._columns[name] = column

    def select(self, names: Sequence[str]) -> Columns:
        """Columns ``names``, in that order, each in the form it has (recipes stay recipes)."""
        out = Columns()
        out._columns = {name: self._columns[name] for name in names}
        return out

    def gather(self, names: Sequence[str], index: np.ndarray) -> Columns:
        """Columns ``names`` at rows ``index`` (recipes kept)."""
        out = Columns()
        for name in names:
            column = self._columns[name]
            out._columns[name] = column.take(index) if isinstance(column, Text) else column[index]
        return out

    def take(self, index: np.ndarray | slice) -> Columns:
        """The rows at ``index`` (int array, bool mask or slice) of every column, recipes kept."""
        return Columns(
            {
                name: column.take(index) if isinstance(column, Text) else column[index]
                for name, column in self._columns.items()
            }
        )

    @staticmethod
    def concat(parts: Sequence[Columns], names: Sequence[str]) -> Columns:
        """Columns ``names`` of ``parts``, rows in order; recipes stay recipes where every
        part has one."""
        out = Columns()
        for name in names:
            recipes = [p.recipe(name) for p in parts]
            out._columns[name] = (
                np.concatenate([p[name] for p in parts])
                if None in recipes
                else Text.concat([r for r in recipes if r is not None])
            )
        return out
