"""Rows of text built from whole columns in C: NDJSON lines, ``netflow.*`` fragments, event-id
input, address and time text.

A :class:`Rows` is a recipe: constant pieces and per-row values (integers, addresses, times,
strings, a choice among constants), each value optionally wrapped in text that is written only
where the value is present. ``_kernels.render`` then builds every row without a Python call
per row; at 1-2 µs a record for the whole pipeline, per-row Python (0.1-0.5 µs an operation)
is what this avoids. See bench/README.md for the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunnelhound.normalize import _kernels

_Part = bytes | tuple[int, Any, np.ndarray | None, bytes, bytes, bytes, bytes]
_FALSE_TRUE = (b"false", b"true")
_MAY_BE_NONE = (_kernels.STR, _kernels.JSON)
"""Kinds whose value may be absent on a row without a mask (None in the list)."""
_INJECTIVE = (
    _kernels.STR,
    _kernels.I64,
    _kernels.U64,
    _kernels.IPV4,
    _kernels.IPV6,
    _kernels.HEX,
    _kernels.B64,
)
"""Kinds whose text differs whenever the value does (ISO drops sub-millisecond digits)."""


class Rows:
    """Pieces of ``n`` rows of text; each row is the pieces in order.

    Value methods take ``before``/``after`` (written around a present value) and ``absent``
    (written instead where the value is absent: ``mask`` False, or None in a text column).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._parts: list[_Part] = []
        self._lead = b""
        """Constant text not yet attached: it becomes the next value's lead (written on every
        row before it), so the C loop visits one piece per value, not two."""

    @property
    def parts(self) -> list[_Part]:
        """The pieces as ``_kernels.render`` takes them."""
        return [*self._parts, self._lead] if self._lead else self._parts

    def lit(self, text: str) -> Rows:
        """A constant piece."""
        data = text.encode()
        last = self._parts[-1] if self._parts else None
        if not self._lead and isinstance(last, tuple) and last[2] is None and last[0] not in _MAY_BE_NONE:
            # After a value that every row has: into the value's own "after".
            kind, values, mask, lead, before, after, absent = last
            self._parts[-1] = (kind, values, mask, lead, before, after + data, absent)
        else:
            self._lead += data
        return self

    def _value(
        self, kind: int, data: object, mask: np.ndarray | None, before: str, after: str, absent: str
    ) -> Rows:
        if mask is not None:
            if mask.all():
                mask = None
            elif not mask.any():
                return self.lit(absent) if absent else self
            else:
                mask = np.ascontiguousarray(mask, dtype=bool)
        self._parts.append((kind, data, mask, self._lead, before.encode(), after.encode(), absent.encode()))
        self._lead = b""
        return self

    def text(
        self,
        values: Sequence[str | None],
        before: str = "",
        after: str = "",
        absent: str = "",
        mask: np.ndarray | None = None,
    ) -> Rows:
        """Strings written as they are (JSON text, or values of ours that need no escaping);
        None is absent."""
        return self._value(_kernels.STR, list(values), mask, before, after, absent)

    def json(self, values: Sequence[str | None], before: str = "", after: str = "", absent: str = "") -> Rows:
        """JSON strings (quoted, escaped byte for byte as ``orjson.dumps``) of any text; None is absent."""
        return self._value(_kernels.JSON, list(values), None, before, after, absent)

    def integer(
        self,
        values: np.ndarray,
        before: str = "",
        after: str = "",
        absent: str = "",
        mask: np.ndarray | None = None,
    ) -> Rows:
        """Decimal text of an integer column (bool: ``false``/``true``)."""
        if values.dtype.kind == "b":
            return self.pick(values.astype(np.int64), _FALSE_TRUE, before, after, absent, mask)
        if values.dtype.kind == "u":
            return self._value(_kernels.U64, _contiguous(values, np.uint64), mask, before, after, absent)
        return self._value(_kernels.I64, _contiguous(values, np.int64), mask, before, after, absent)

    def pick(
        self,
        codes: np.ndarray,
        texts: Sequence[str | bytes],
        before: str = "",
        after: str = "",
        absent: str = "",
        mask: np.ndarray | None = None,
    ) -> Rows:
        """``texts[code]`` for each row's code."""
        choices = tuple(t if isinstance(t, bytes) else t.encode() for t in texts)
        return self._value(
            _kernels.PICK, (_contiguous(codes, np.int64), choices), mask, before, after, absent
        )

    def constant(self, text: str) -> Rows:
        """``text`` on every row as a value, not a literal: recipes with different constants
        can then be joined (:func:`concat_rows`)."""
        return self.pick(np.zeros(self.n, dtype=np.int64), (text,))

    def choose(self, condition: np.ndarray, yes: str, no: str) -> Rows:
        """``yes`` where ``condition`` holds, else ``no``."""
        return self.pick(condition.astype(np.int64), (no, yes))

    def ipv4(
        self, values: np.ndarray, before: str = "", after: str = "", mask: np.ndarray | None = None
    ) -> Rows:
        """Dotted quads of host-order integer addresses."""
        return self._value(_kernels.IPV4, _contiguous(values, np.uint32), mask, before, after, "")

    def ipv6(
        self, values: np.ndarray, before: str = "", after: str = "", mask: np.ndarray | None = None
    ) -> Rows:
        """RFC 5952 text (as ``socket.inet_ntop``) of 16-byte addresses."""
        return self._value(_kernels.IPV6, np.ascontiguousarray(values), mask, before, after, "")

    def hex(
        self, values: np.ndarray, before: str = "", after: str = "", mask: np.ndarray | None = None
    ) -> Rows:
        """Lower-case hex of each row of an (n, w) uint8 array (as ``bytes.hex``)."""
        values = np.ascontiguousarray(values, dtype=np.uint8).reshape(self.n, -1)
        return self._value(_kernels.HEX, (values, values.shape[1]), mask, before, after, "")

    def base64(
        self,
        values: np.ndarray,
        before: str = "",
        after: str = "",
        mask: np.ndarray | None = None,
        *,
        url: bool = False,
    ) -> Rows:
        """Base64 of each row of an (n, w) uint8 array, w <= 48 (as ``base64.b64encode``); with
        ``url``, the url-safe alphabet without padding (as ``urlsafe_b64encode(...).rstrip(b"=")``)."""
        values = np.ascontiguousarray(values, dtype=np.uint8).reshape(self.n, -1)
        return self._value(_kernels.B64, (values, values.shape[1], int(url)), mask, before, after, "")

    def spans(
        self,
        text: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        before: str = "",
        after: str = "",
        mask: np.ndarray | None = None,
    ) -> Rows:
        """``text[starts[i]:ends[i]]`` on row i: values written out together (one ``orjson``
        call for a column), each row pointing at its own, with no ``str`` per value."""
        data = (text, _contiguous(starts, np.int64), _contiguous(ends, np.int64))
        return self._value(_kernels.SPAN, data, mask, before, after, "")

    def splice(self, other: Rows, before: str = "", after: str = "", mask: np.ndarray | None = None) -> Rows:
        """The pieces of ``other`` (a recipe of the same rows, present on every row), between
        ``before`` and ``after``; with ``mask``, all of it only where ``mask`` holds."""
        if mask is not None and mask.all():
            mask = None
        if mask is not None and not mask.any():
            return self
        self.where(before, mask)
        for part in other.parts:
            if isinstance(part, bytes):
                self.where(part.decode(), mask)
                continue
            kind, data, own, lead, inner_before, inner_after, absent = part
            if mask is None:
                self._parts.append((kind, data, own, self._lead + lead, inner_before, inner_after, absent))
                self._lead = b""
                continue
            self.where(lead.decode(), mask)
            if absent:  # written on the rows the mask keeps and the part lacks (masked or None)
                self.where(absent.decode(), mask & ~_present(part, self.n))
            both = mask if own is None else own & mask
            self._parts.append(
                (kind, data, np.ascontiguousarray(both), self._lead, inner_before, inner_after, b"")
            )
            self._lead = b""
        return self.where(after, mask)

    def where(self, text: str, mask: np.ndarray | None) -> Rows:
        """Constant ``text`` on the rows where ``mask`` holds (every row if None)."""
        if not text or mask is None:
            return self.lit(text)
        return self.pick(np.zeros(self.n, dtype=np.int64), (text,), mask=mask)

    def take(self, index: np.ndarray | slice) -> Rows:
        """The recipe of the rows at ``index`` (int array, bool mask or slice)."""
        out = Rows(len(range(self.n)[index]) if isinstance(index, slice) else _count(index))
        out._parts = [part if isinstance(part, bytes) else _take_part(part, index) for part in self._parts]
        out._lead = self._lead
        return out

    def iso(self, ns: np.ndarray, before: str = "", after: str = "", mask: np.ndarray | None = None) -> Rows:
        """ISO 8601 UTC with milliseconds of int64 nanoseconds since the epoch (as numpy's
        ``datetime_as_string`` of ``datetime64[ms]`` writes it; what Elasticsearch ``date`` keeps)."""
        return self._value(_kernels.ISO, _contiguous(ns, np.int64), mask, before, after, "")

    # ----------------------------------------------------------------- rendering

    def block(self) -> bytes:
        """All rows joined into one bytes (rows carry their own separators)."""
        return _kernels.render(self.parts, self.n, _kernels.BLOCK) if self.n else b""

    def block_into(self, buffer: bytearray, start: int = 0, stop: int | None = None) -> int:
        """Rows ``start:stop`` (default all) joined, written into ``buffer`` from its start;
        returns the length.

        ``buffer`` grows when a block needs more room and never shrinks: a writer that
        reuses one buffer touches no fresh memory per block (page faults on a fresh 10 MB
        block cost as much as rendering it). Rendering a frame a piece at a time keeps the
        piece in cache for whatever reads it next (the write into the page cache).
        """
        stop = self.n if stop is None else stop
        return _kernels.render(self.parts, self.n, _kernels.BLOCK, buffer, start, stop)

    def lines(self) -> list[bytes]:
        """Each row as bytes."""
        return _kernels.render(self.parts, self.n, _kernels.BYTES)

    def strings(self) -> list[str]:
        """Each row as str."""
        return _kernels.render(self.parts, self.n, _kernels.TEXT)

    def xxh3_128(self) -> list[str]:
        """The xxh3-128 hex digest of each row's UTF-8 text (as ``xxhash.xxh3_128_hexdigest``)."""
        return _kernels.render(self.parts, self.n, _kernels.XXH3_128)

    def xxh3_128_digests(self) -> np.ndarray:
        """The canonical 16-byte xxh3-128 digests of the rows, as an (n, 16) uint8 array
        (:meth:`hex` of it is :meth:`xxh3_128`)."""
        raw = _kernels.render(self.parts, self.n, _kernels.XXH3_128_DIGEST) if self.n else b""
        return np.frombuffer(raw, dtype=np.uint8).reshape(self.n, 16)


def concat_rows(recipes: Sequence[Rows]) -> Rows:
    """One recipe of the rows of ``recipes`` in order: part by part where they are built alike
    (same kinds, constant texts and masks present or not), else one part that picks each row
    from its own recipe (:func:`_switch`)."""
    first = recipes[0]
    shape = [_shape(part) for part in first.parts]
    if any(len(r.parts) != len(shape) or [_shape(p) for p in r.parts] != shape for r in recipes[1:]):
        return _switch(recipes)
    out = Rows(sum(r.n for r in recipes))
    for i, part in enumerate(first.parts):
        if isinstance(part, bytes):
            out._parts.append(part)
            continue
        kind, _, mask, lead, before, after, absent = part
        pieces = [r.parts[i] for r in recipes]
        data = _concat_data(kind, [p[1] for p in pieces])
        masks = None if mask is None else np.concatenate([p[2] for p in pieces])
        out._parts.append((kind, data, masks, lead, before, after, absent))
    return out


def _switch(recipes: Sequence[Rows]) -> Rows:
    """The rows of recipes built differently (two templates' ``netflow`` objects): one part of
    kind ROWS, whose row i is row ``at[i]`` of sub-recipe ``which[i]``; a recipe that is itself
    such a part lends its sub-recipes, so joins of joins stay one level deep."""
    which: list[np.ndarray] = []
    at: list[np.ndarray] = []
    subs: list[tuple[list[_Part], int]] = []
    for recipe in recipes:
        inner = _sub_recipes(recipe)
        if inner is None:
            which.append(np.full(recipe.n, len(subs), dtype=np.int64))
            at.append(np.arange(recipe.n, dtype=np.int64))
            subs.append((recipe.parts, recipe.n))
        else:
            codes, rows, more = inner
            which.append(codes + len(subs))
            at.append(rows)
            subs.extend(more)
    out = Rows(sum(r.n for r in recipes))
    data = _merge_alike(np.concatenate(which), np.concatenate(at), subs)
    out._parts = [(_kernels.ROWS, data, None, b"", b"", b"", b"")]
    return out


_Subs = tuple[tuple[list[_Part], int], ...]


def _merge_alike(
    which: np.ndarray, at: np.ndarray, subs: Sequence[tuple[list[_Part], int]]
) -> tuple[np.ndarray, np.ndarray, _Subs]:
    """The ROWS data with one sub-recipe per shape: the same sub-recipe met twice (takes of one
    switch joined again) counts once, and sub-recipes built alike (one template's rows from
    several rounds) are joined part by part. Without this a stitched frame's switch gathered
    hundreds of sub-recipes, and every render call parses each of them."""
    if len(subs) < 2:
        return which, at, tuple(subs)
    first: dict[int, int] = {}
    groups: dict[object, list[int]] = {}
    same = np.arange(len(subs), dtype=np.int64)
    for i, (parts, _) in enumerate(subs):
        seen = first.setdefault(id(parts), i)
        if seen != i:
            same[i] = seen
            continue
        groups.setdefault(tuple(_shape(part) for part in parts), []).append(i)
    number = np.zeros(len(subs), dtype=np.int64)
    offset = np.zeros(len(subs), dtype=np.int64)
    merged: list[tuple[list[_Part], int]] = []
    for members in groups.values():
        recipes: list[Rows] = []
        rows = 0
        for i in members:
            number[i], offset[i] = len(merged), rows
            recipes.append(_recipe(*subs[i]))
            rows += recipes[-1].n
        joined = concat_rows(recipes) if len(recipes) > 1 else recipes[0]
        merged.append((joined.parts, joined.n))
    if len(merged) == len(subs):
        return which, at, tuple(subs)
    which = same[which]
    return number[which], at + offset[which], tuple(merged)


def _sub_recipes(recipe: Rows) -> tuple[np.ndarray, np.ndarray, _Subs] | None:
    """(which, at, sub-recipes) of a recipe that is one bare ROWS part, else None."""
    parts = recipe.parts
    if len(parts) != 1 or isinstance(parts[0], bytes):
        return None
    kind, data, mask, lead, before, after, absent = parts[0]
    if kind != _kernels.ROWS or mask is not None or lead or before or after or absent:
        return None
    return data


def rows_equal(a: Rows, b: Rows) -> np.ndarray | None:
    """Per row, whether ``a`` and ``b`` render the same text, found from their values without
    rendering; None when that cannot be told (recipes built differently, or kinds whose text
    may be equal for different values)."""
    if a.n != b.n or [_shape(p) for p in a.parts] != [_shape(p) for p in b.parts]:
        return None
    equal = np.ones(a.n, dtype=bool)
    for pa, pb in zip(a.parts, b.parts, strict=True):
        if isinstance(pa, bytes) or isinstance(pb, bytes):
            continue
        if pa[0] not in _INJECTIVE:
            return None
        here_a = _present(pa, a.n)
        here_b = _present(pb, b.n)
        values_a, values_b = _values(pa), _values(pb)
        same = values_a == values_b
        if same.ndim > 1:
            same = same.reshape(a.n, -1).all(axis=1)
        equal &= (here_a == here_b) & (~here_a | same)
    return equal


def _shape(part: _Part) -> object:
    """What must agree for two recipes' parts to be one part: all but the per-row data."""
    if isinstance(part, bytes):
        return part
    kind, data, mask, lead, before, after, absent = part
    extra = data[1:] if kind in (_kernels.HEX, _kernels.B64) else None  # a pick's texts are joined
    return (kind, mask is None, lead, before, after, absent, extra)


def _concat_data(kind: int, data: list[Any]) -> object:
    if kind in _MAY_BE_NONE:
        return [v for values in data for v in values]
    if kind == _kernels.PICK:
        offsets = np.cumsum([0, *(len(d[1]) for d in data[:-1])])
        codes = np.concatenate([d[0] + offset for d, offset in zip(data, offsets.tolist(), strict=True)])
        return (codes, tuple(text for d in data for text in d[1]))
    if kind in (_kernels.HEX, _kernels.B64):
        return (np.concatenate([d[0] for d in data]), *data[0][1:])
    if kind == _kernels.SPAN:
        shift = np.cumsum([0, *(len(d[0]) for d in data[:-1])]).tolist()
        return (
            b"".join(d[0] for d in data),
            np.concatenate([d[1] + k for d, k in zip(data, shift, strict=True)]),
            np.concatenate([d[2] + k for d, k in zip(data, shift, strict=True)]),
        )
    if kind == _kernels.ROWS:
        offsets = np.cumsum([0, *(len(d[2]) for d in data[:-1])])
        which = np.concatenate([d[0] + offset for d, offset in zip(data, offsets.tolist(), strict=True)])
        return _merge_alike(which, np.concatenate([d[1] for d in data]), [sub for d in data for sub in d[2]])
    return np.concatenate(data)


def _take_part(part: tuple[Any, ...], index: np.ndarray | slice) -> _Part:
    kind, data, mask, lead, before, after, absent = part
    if kind in _MAY_BE_NONE:
        taken: object = data[index] if isinstance(index, slice) else object_column(data)[index].tolist()
    elif kind in (_kernels.PICK, _kernels.HEX, _kernels.B64):
        taken = (np.ascontiguousarray(data[0][index]), *data[1:])
    elif kind == _kernels.SPAN:
        taken = (data[0], np.ascontiguousarray(data[1][index]), np.ascontiguousarray(data[2][index]))
    elif kind == _kernels.ROWS:
        which, at, subs = data
        taken = _take_switch(which, at, subs, index)
    else:
        taken = np.ascontiguousarray(data[index])
    return (
        kind,
        taken,
        None if mask is None else np.ascontiguousarray(mask[index]),
        lead,
        before,
        after,
        absent,
    )


def _recipe(parts: list[_Part], n: int) -> Rows:
    """The recipe of a switch's sub-recipe (its parts and rows)."""
    out = Rows(n)
    out._parts = list(parts)
    return out


def _take_switch(
    which: np.ndarray, at: np.ndarray, subs: _Subs, index: np.ndarray | slice
) -> tuple[np.ndarray, np.ndarray, _Subs]:
    """The ROWS data of the rows at ``index``; once they are under a quarter of the sub-recipes'
    rows, each sub-recipe is cut to the rows still used (a few rows kept must not hold whole
    frames' recipes alive, and cutting every take would cost more than the take)."""
    which, at = np.ascontiguousarray(which[index]), np.ascontiguousarray(at[index])
    if 4 * len(which) >= sum(n for _, n in subs):
        return which, at, subs
    codes = np.zeros(len(which), dtype=np.int64)
    rows = np.arange(len(which), dtype=np.int64)
    kept: list[tuple[list[_Part], int]] = []
    for number, (parts, n) in enumerate(subs):
        mine = np.flatnonzero(which == number)
        if not len(mine):
            continue
        taken = _recipe(parts, n).take(at[mine])
        codes[mine] = len(kept)
        rows[mine] = np.arange(len(mine))
        kept.append((taken.parts, taken.n))
    return codes, rows, tuple(kept)


def _present(part: tuple[Any, ...], n: int) -> np.ndarray:
    here = np.ones(n, dtype=bool) if part[2] is None else part[2]
    if part[0] in _MAY_BE_NONE:
        here = here & (object_column(part[1]) != None)  # noqa: E711 (elementwise)
    return here


def _values(part: tuple[Any, ...]) -> np.ndarray:
    kind, data = part[0], part[1]
    if kind in _MAY_BE_NONE:
        return object_column(data)
    return data[0] if kind in (_kernels.PICK, _kernels.HEX, _kernels.B64) else data


def object_column(values: list[Any]) -> np.ndarray:
    """An object column holding ``values`` as they are (``np.array`` would make lists of
    strings into a string array, and lists of tuples into a 2-D one)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _count(index: np.ndarray) -> int:
    return int(np.count_nonzero(index)) if index.dtype == bool else len(index)


def _contiguous(values: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=dtype)
