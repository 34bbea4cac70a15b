"""Render a parsed Sigma condition tree (the one :mod:`.compile` compiles) as a Lucene query on
flow documents, so an alert's evidence query selects by the same condition the engine tested.

Strings are matched as Elasticsearch keyword fields match them: exactly, with case (the
fields rules use are lower-case or addresses, where Sigma's case-insensitivity changes
nothing).
"""

from __future__ import annotations

import re
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
)
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

__all__ = ["lucene_condition", "quote", "term"]

_RESERVED = re.compile(r'([+\-=&|><!(){}\[\]^"~*?:\\/ ])')
_RANGE = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
}


def quote(text: str) -> str:
    """``text`` as a quoted Lucene phrase."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def term(name: str, value: Any) -> str:
    """``name:value`` with the value quoted (strings) or bare (numbers)."""
    if isinstance(value, bool):
        return f"{_field(name)}:{str(value).lower()}"
    if isinstance(value, int | float):
        return f"{_field(name)}:{value}"
    return f"{_field(name)}:{quote(str(value))}"


def lucene_condition(tree: Any) -> str | None:
    """The Lucene form of a condition tree, or None if some part has no Lucene form."""
    if isinstance(tree, ConditionAND | ConditionOR):
        parts = [lucene_condition(arg) for arg in tree.args]
        if any(p is None for p in parts):
            return None
        joiner = " AND " if isinstance(tree, ConditionAND) else " OR "
        return "(" + joiner.join(p for p in parts if p is not None) + ")"
    if isinstance(tree, ConditionNOT):
        inner = lucene_condition(tree.args[0])
        return None if inner is None else f"(NOT {inner})"
    if isinstance(tree, ConditionFieldEqualsValueExpression):
        return _leaf(tree.field, tree.value)
    return None


def _field(name: str) -> str:
    return _RESERVED.sub(r"\\\1", name)


def _leaf(name: str, value: Any) -> str | None:
    field = _field(name)
    if isinstance(value, SigmaExpansion):
        parts = [_leaf(name, v) for v in value.values]
        return None if None in parts else "(" + " OR ".join(p for p in parts if p) + ")"
    if isinstance(value, SigmaNull):
        return f"(NOT _exists_:{field})"
    if isinstance(value, SigmaExists):
        return f"_exists_:{field}" if value.exists else f"(NOT _exists_:{field})"
    if isinstance(value, SigmaCompareExpression):
        number = value.number.number
        if value.op is CompareOperators.NEQ:
            return f"(_exists_:{field} AND NOT {field}:{number})"
        return f"{field}:{_RANGE[value.op]}{number}"
    if isinstance(value, SigmaNumber):
        return f"{field}:{value.number}"
    if isinstance(value, SigmaBool):
        return f"{field}:{str(value.boolean).lower()}"
    if isinstance(value, SigmaCIDRExpression):
        return f"{field}:{quote(value.cidr)}"
    if isinstance(value, SigmaRegularExpression):
        if value.flags:
            return None
        pattern = value.regexp.to_plain().replace("/", r"\/")
        return f"{field}:/{pattern}/"
    if isinstance(value, SigmaString):
        if not value.contains_special():
            return f"{field}:{quote(value.to_plain())}"
        pieces = []
        for part in value.s:
            if part is SpecialChars.WILDCARD_MULTI:
                pieces.append("*")
            elif part is SpecialChars.WILDCARD_SINGLE:
                pieces.append("?")
            else:
                pieces.append(_RESERVED.sub(r"\\\1", str(part)))
        return f"{field}:{''.join(pieces)}"
    return None
