"""Compile a Sigma rule's parsed condition into one vectorized predicate over :class:`Fields`.

This is our pySigma "backend": pySigma parses the rule and its condition into a tree of
``ConditionAND``/``OR``/``NOT`` over ``field = value`` leaves whose values already carry the
modifiers (``SigmaCIDRExpression``, ``SigmaCompareExpression``, wildcard ``SigmaString`` …);
each leaf becomes a numpy test over a whole column and the tree combines the masks.

Sigma semantics kept: strings match case-insensitively unless ``|cased``; ``re`` is
case-sensitive unless its ``i`` flag is set; a missing field never matches a value (so
``not sel`` is true where the field is absent); ``null`` matches where it is absent.  String
tests run once per distinct value (memoized across batches, bounded), so a test on an address
column costs a set lookup per row, not a regex.
"""

from __future__ import annotations

import ipaddress
import operator
import re
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from .fields import Column, Fields

__all__ = ["Predicate", "compile_condition", "condition_fields"]

Predicate = Callable[[Fields], np.ndarray]
_Test = Callable[[Column, int], np.ndarray]

_MEMO_MAX = 65536
"""Distinct values remembered per string test (then the memo starts over)."""

_COMPARE: dict[CompareOperators, Callable[[Any, Any], Any]] = {
    CompareOperators.LT: operator.lt,
    CompareOperators.LTE: operator.le,
    CompareOperators.GT: operator.gt,
    CompareOperators.GTE: operator.ge,
    CompareOperators.NEQ: operator.ne,
}


def condition_fields(tree: Any) -> list[str]:
    """Every field name a parsed condition tree tests (including field references)."""
    if isinstance(tree, ConditionFieldEqualsValueExpression):
        values = tree.value.values if isinstance(tree.value, SigmaExpansion) else [tree.value]
        refs = [v.field for v in values if isinstance(v, SigmaFieldReference)]
        return [tree.field, *refs]
    if isinstance(tree, ConditionAND | ConditionOR | ConditionNOT):
        return [name for arg in tree.args for name in condition_fields(arg)]
    return []


def compile_condition(tree: Any) -> Predicate:
    """A predicate returning the bool mask of rows for which the condition tree holds.

    Raises ``ValueError`` naming what is unsupported (keyword searches, exotic modifiers).
    """
    if isinstance(tree, ConditionAND | ConditionOR):
        parts = [compile_condition(arg) for arg in tree.args]
        combine = np.logical_and if isinstance(tree, ConditionAND) else np.logical_or

        def both(fields: Fields) -> np.ndarray:
            mask = parts[0](fields)
            for part in parts[1:]:
                mask = combine(mask, part(fields))
            return mask

        return both
    if isinstance(tree, ConditionNOT):
        inner = compile_condition(tree.args[0])
        return lambda fields: ~inner(fields)
    if isinstance(tree, ConditionFieldEqualsValueExpression):
        name = tree.field
        if isinstance(tree.value, SigmaFieldReference):
            return _field_reference(name, tree.value)
        test = _leaf(tree.value)
        return lambda fields: test(fields.column(name), fields.n)
    if isinstance(tree, ConditionValueExpression):
        raise ValueError(f"keyword search {tree.value!s} is not supported; name a field")
    raise ValueError(f"unsupported condition element {type(tree).__name__}")


def _leaf(value: Any) -> _Test:
    if isinstance(value, SigmaTimestampPart):
        raise ValueError("timestamp part modifiers (minute, hour …) are not supported")
    if isinstance(value, SigmaString | SigmaRegularExpression) and value.contains_placeholder():
        raise ValueError(f"placeholder in {value!s} is not resolved; map it in a processing pipeline")
    if isinstance(value, SigmaExpansion):
        tests = [_leaf(v) for v in value.values]
        return lambda col, n: np.logical_or.reduce([t(col, n) for t in tests])
    if isinstance(value, SigmaNull):
        return lambda col, n: ~_present(col, n)
    if isinstance(value, SigmaExists):
        want = value.exists
        return lambda col, n: _present(col, n) if want else ~_present(col, n)
    if isinstance(value, SigmaCompareExpression):
        return _numeric(_COMPARE[value.op], value.number.number)
    if isinstance(value, SigmaNumber):
        return _numeric(operator.eq, value.number)
    if isinstance(value, SigmaBool):
        return _boolean(value.boolean)
    if isinstance(value, SigmaCIDRExpression):
        return _strings(_in_network(value.network))
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= SigmaRegularExpression.sigma_to_python_flags[flag]
        pattern = re.compile(value.regexp.to_plain(), flags)
        return _strings(lambda v: pattern.search(v) is not None)
    if isinstance(value, SigmaString):
        return _string(value)
    raise ValueError(f"unsupported value type {type(value).__name__}")


def _present(col: Column, n: int) -> np.ndarray:
    if col.present is not None:
        return col.present
    if col.kind == "str" and col.codes is None:
        return np.array([v is not None for v in col.values.tolist()], dtype=bool)
    return np.ones(n, dtype=bool)


def _string(value: SigmaString) -> _Test:
    """Sigma string equality, with ``*``/``?`` wildcards, case-insensitive unless cased."""
    cased = isinstance(value, SigmaCasedString)
    if not value.contains_special():
        plain = value.to_plain()
        if cased:
            return _strings(lambda v: v == plain, number=_number_text(plain))
        low = plain.lower()
        return _strings(lambda v: v.lower() == low, number=_number_text(plain))
    pieces = []
    for part in value.s:
        if part is SpecialChars.WILDCARD_MULTI:
            pieces.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            pieces.append(".")
        else:
            pieces.append(re.escape(str(part)))
    pattern = re.compile("".join(pieces), re.DOTALL | (0 if cased else re.IGNORECASE))
    return _strings(lambda v: pattern.fullmatch(v) is not None)


def _number_text(text: str) -> float | None:
    """A quoted number ("53") also matches the number on a numeric field."""
    try:
        return float(text)
    except ValueError:
        return None


def _strings(test: Callable[[str], bool], number: float | None = None) -> _Test:
    """Run ``test`` once per distinct string of a column (memoized across batches)."""
    memo: dict[Any, bool] = {}

    def hit(v: Any) -> bool:
        found = memo.get(v)
        if found is None:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            found = memo[v] = test(v if isinstance(v, str) else str(v))  # an object feature may hold numbers
        return found

    as_number = None if number is None else _numeric(operator.eq, number)

    def run(col: Column, n: int) -> np.ndarray:
        if col.kind == "num":
            return np.zeros(n, dtype=bool) if as_number is None else as_number(col, n)
        if col.kind == "bool":
            return np.where(col.values, hit("true"), hit("false"))
        if col.codes is not None:
            assert col.names is not None
            codes = [c for c in np.unique(col.codes).tolist() if hit(col.names[c])]
            return np.isin(col.codes, codes)
        distinct = set(col.values.tolist())
        distinct.discard(None)
        hits = [v for v in distinct if hit(v)]
        if not hits:
            return np.zeros(n, dtype=bool)
        if len(hits) == len(distinct):
            return _present(col, n)
        if len(hits) <= 4:
            return np.logical_or.reduce([col.values == h for h in hits])
        chosen = frozenset(hits)
        return np.fromiter(map(chosen.__contains__, col.values.tolist()), dtype=bool, count=n)

    return run


def _in_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Callable[[str], bool]:
    """Membership by integer masks (inet_pton is ~20x faster than ``ipaddress`` parsing)."""
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    mask, net = int(network.netmask), int(network.network_address)

    def test(text: str) -> bool:
        try:
            return int.from_bytes(socket.inet_pton(family, text)) & mask == net
        except OSError:
            return False

    return test


def _numeric(op: Callable[[Any, Any], Any], number: float) -> _Test:
    text = _canonical(number)

    def run(col: Column, n: int) -> np.ndarray:
        if col.kind == "num":
            mask = np.asarray(op(col.values, number), dtype=bool)
            return mask if col.present is None else mask & col.present
        if col.kind == "str" and op is operator.eq:
            return string_equal(col, n)
        if col.kind == "str":
            return strings_as_numbers(col, n)
        return np.zeros(n, dtype=bool)

    def as_number(v: str) -> bool:
        try:
            return bool(op(float(v), number))
        except ValueError:
            return False

    string_equal = _strings(lambda v: v == text)
    strings_as_numbers = _strings(as_number)
    return run


def _canonical(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _boolean(want: bool) -> _Test:
    text = "true" if want else "false"
    as_text = _strings(lambda v: v.lower() == text)

    def run(col: Column, n: int) -> np.ndarray:
        if col.kind == "bool":
            return col.values if want else ~col.values
        if col.kind == "str":
            return as_text(col, n)
        return np.zeros(n, dtype=bool)

    return run


def _field_reference(name: str, ref: SigmaFieldReference) -> Predicate:
    """``field|fieldref: other``: rows where both fields exist and hold the same value."""
    if ref.starts_with or ref.ends_with:
        raise ValueError("fieldref with startswith/endswith is not supported")

    def run(fields: Fields) -> np.ndarray:
        a, b = fields.column(name), fields.column(ref.field)
        both = _present(a, fields.n) & _present(b, fields.n)
        left = _values(a)
        right = _values(b)
        if left.dtype.kind in "iufb" and right.dtype.kind in "iufb":
            return both & (left == right)
        equal = [x == y for x, y in zip(left.tolist(), right.tolist(), strict=True)]
        return both & np.array(equal, dtype=bool)

    return run


def _values(col: Column) -> np.ndarray:
    if col.codes is not None:
        assert col.names is not None
        names = col.names
        return np.array([names[c] for c in col.codes.tolist()], dtype=object)
    return col.values
