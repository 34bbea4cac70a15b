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

import numpy as np

from tunnelhound.normalize import _kernels

_Part = bytes | tuple[int, object, np.ndarray | None, bytes, bytes, bytes, bytes]
_FALSE_TRUE = (b"false", b"true")
_MAY_BE_NONE = (_kernels.STR, _kernels.JSON)
"""Kinds whose value may be absent on a row without a mask (None in the list)."""


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


def _contiguous(values: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=dtype)
