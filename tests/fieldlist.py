"""Check documents against the field list in elastic/fields/*.yml (test helper)."""

from __future__ import annotations

import fnmatch
import ipaddress
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FIELDS_DIR = Path(__file__).resolve().parent.parent / "elastic" / "fields"


@cache
def declared(*files: str) -> tuple[dict[str, dict[str, Any]], tuple[tuple[str, str], ...]]:
    """(exact name → entry, (pattern, type) pairs) from the given field files."""
    exact: dict[str, dict[str, Any]] = {}
    patterns: list[tuple[str, str]] = []
    for name in files:
        for entry in yaml.safe_load((FIELDS_DIR / name).read_text()):
            if "*" in entry["name"]:
                patterns.append((entry["name"], entry["type"]))
            else:
                assert entry["name"] not in exact, f"{entry['name']} declared twice"
                exact[entry["name"]] = entry
    return exact, tuple(patterns)


def leaves(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted leaf names and values; lists stay one value."""
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(leaves(value, name + "."))
        else:
            out.append((name, value))
    return out


def _ok(es_type: str, value: Any) -> bool:
    if es_type in ("keyword", "constant_keyword", "match_only_text"):
        return isinstance(value, str)
    if es_type == "long":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if es_type == "unsigned_long":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
    if es_type in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if es_type == "boolean":
        return isinstance(value, bool)
    if es_type == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if es_type == "date":
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return False
        return True
    raise AssertionError(f"unknown field type {es_type}")


def problems(doc: dict[str, Any], files: tuple[str, ...] = ("flow.yml", "netflow.yml")) -> list[str]:
    """Every undeclared field and every value whose JSON type does not fit its declared type."""
    exact, patterns = declared(*files)
    out = []
    for name, value in leaves(doc):
        entry = exact.get(name)
        es_type = entry["type"] if entry else None
        if es_type is None:
            es_type = next((t for p, t in patterns if fnmatch.fnmatchcase(name, p)), None)
        if es_type is None:
            out.append(f"{name}: not declared")
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not (entry or {}).get("array", False):
            out.append(f"{name}: list for a field not declared as array")
        out.extend(
            f"{name}: {v!r} is not a {es_type}" for v in values if v is not None and not _ok(es_type, v)
        )
    return out
