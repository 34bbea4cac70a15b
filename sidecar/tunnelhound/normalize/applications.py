"""``network.application``: one lower-case name for what the exporter's DPI said a flow was.

Exporters say it four ways, and every way ends in the same field:

* a name string: IPFIX ``applicationName`` (IE 96), Palo Alto's App-ID element, SonicWALL's
  application name (PEN 8741 element 41), Sophos UTM's ``afcProtocolName`` (PEN 9789 element 2);
* an RFC 6759 ``applicationId`` (IE 95), which the decoder renders ``engine:selector``
  (``20:pen:selector`` for classification engine 20, PANA-L7-PEN).  Its name comes from the
  exporter's own options data when it sends them (NBAR2 and FortiOS do), else from the
  user's tables (``normalize.application_tables``), else from the tables under
  ``tunnelhound/data/applications/`` (IANA-L3/L4 names as NBAR2 uses them, nDPI as pmacct
  exports it with engine 22, FortiGuard ids, Sophos UTM AFC ids);
* a vendor's own numeric application element: SonicWALL's application id (PEN 8741 element
  40), Sophos UTM's ``afcProtocol`` (PEN 9789 element 1).  It is keyed as if the vendor had
  sent it as an RFC 6759 PANA-L7-PEN id, ``20:<PEN>:<id>``, and named like one, so one table
  format covers every vendor;
* nothing: no field at all.

An id no table names stays visible as its ``engine:selector`` text; selector 0 is
"unclassified" for every engine (NBAR2 unknown, FortiGuard 0, Sophos AFC 0) and gives no
name.  Nothing here looks at ports: a name only ever comes from the exporter (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["SHIPPED_TABLES", "ApplicationNames", "application_names", "load_table", "resolver"]

SHIPPED_TABLES = ("iana-l3.tsv", "iana-l4.tsv", "ndpi.tsv", "fortinet.tsv", "sophos-utm.tsv")
"""Files under ``tunnelhound/data/applications/``, loaded in this order (see its README)."""

# Columns (decoded element names) that carry the exporter's own name for the application:
# IPFIX applicationName (IE 96), Palo Alto's App-ID (PEN 25461, element 56701), SonicWALL's
# application name (PEN 8741, element 41) and Sophos UTM's afcProtocolName (PEN 9789, element 2).
_NAME_COLUMNS = ("application_name", "app_id", "sonicwall_app_name", "afc_protocol_name")
_ID_COLUMN = "application_id"
# Vendor elements holding a numeric application id, and the PEN their ids are keyed under:
# SonicWALL's application id (PEN 8741, element 40), Sophos UTM's afcProtocol (PEN 9789, element 1).
_VENDOR_ID_COLUMNS = {"sonicwall_app_id": 8741, "afc_protocol": 9789}


class ApplicationNames:
    """Names for ``applicationId`` values, from the shipped tables plus ``extra_tables``."""

    def __init__(self, extra_tables: Sequence[str | Path] = ()) -> None:
        folder = resources.files("tunnelhound") / "data" / "applications"
        table: dict[str, str] = {}
        for name in SHIPPED_TABLES:
            table.update(_parse(name, (folder / name).read_text(encoding="utf-8")))
        for path in extra_tables:
            table.update(load_table(path))
        self.table = table

    def name_of(self, app_id: str, exporter_names: Mapping[str, str]) -> str | None:
        """The name of one rendered ``applicationId`` (``"13:453"``, ``"20:12356:40568"``)."""
        if not app_id:
            return None
        name = exporter_names.get(app_id) or self.table.get(app_id)
        if name:
            return name.strip().lower() or None
        if app_id.rpartition(":")[2] == "0":
            return None
        return app_id

    def column(
        self, columns: Mapping[str, np.ndarray], exporter_names: Mapping[str, str] | None = None
    ) -> list[str | None] | None:
        """``network.application`` per record of decoded ``columns``; None when the records
        carry no application element at all.

        Per record the first that gives a name wins: a name element, then the RFC 6759 id,
        then a vendor's id element.
        """
        sources = [
            col.tolist()
            for key in _NAME_COLUMNS
            if (col := columns.get(key)) is not None and col.dtype == object
        ]
        known = exporter_names or {}
        ids = columns.get(_ID_COLUMN)
        if ids is not None and ids.dtype == object:
            resolved: dict[str, str | None] = {}  # flows repeat ids: resolve each once
            sources.append(
                [
                    resolved[v] if v in resolved else resolved.setdefault(v, self.name_of(v, known))
                    for v in ids.tolist()
                ]
            )
        for key, pen in _VENDOR_ID_COLUMNS.items():
            col = columns.get(key)
            if col is not None and col.dtype.kind in "iu":
                values, index = np.unique(col, return_inverse=True)
                names = [self.name_of(f"20:{pen}:{v}", known) for v in values.tolist()]
                sources.append([names[i] for i in index.ravel().tolist()])
        if not sources:
            return None
        return [next((name for v in row if (name := _clean(v))), None) for row in zip(*sources, strict=True)]


def _clean(value: object) -> str | None:
    """A usable lower-case name, or None (missing, empty, or not text)."""
    if not isinstance(value, str):
        return None
    return value.strip().lower() or None


def load_table(path: str | Path) -> dict[str, str]:
    """One table file: ``engine:selector<TAB>name`` lines; ``#`` starts a comment.

    Raises ``ValueError`` naming the file (and line) when it cannot be read or a line is not
    an id and a name.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"application table {path}: cannot read it: {exc}") from exc
    return _parse(str(path), text)


def _parse(source: str, text: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, name = line.partition("\t")
        parts = key.split(":")
        if not name.strip() or len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise ValueError(f"{source}:{number}: expected 'engine:selector<TAB>name', got {raw!r}")
        # Keys as the decoder renders them: numbers without leading zeros.
        table[":".join(str(int(p)) for p in parts)] = name.strip().lower()
    return table


@lru_cache(maxsize=8)
def resolver(extra_tables: tuple[str, ...] = ()) -> ApplicationNames:
    """The shared :class:`ApplicationNames` for a set of user tables (loaded once)."""
    return ApplicationNames(extra_tables)


def application_names(
    columns: Mapping[str, np.ndarray],
    exporter_names: Mapping[str, str] | None,
    extra_tables: Sequence[str] = (),
) -> list[str | None] | None:
    """``network.application`` per record (see :meth:`ApplicationNames.column`)."""
    return resolver(tuple(extra_tables)).column(columns, exporter_names)
