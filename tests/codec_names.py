"""Test helper: map the Logstash NetFlow codec's field names to our elements.

The codec's published test expectations name fields its own way: NetFlow v5/v9
events use ``netflow.yaml`` names (``ipv4_src_addr``, ``in_bytes``), IPFIX events
use ``ipfix.yaml`` names (``sourceIPv4Address``, ``netscalerHttpReqUrl``). This
module resolves such a name to the :class:`Element` our decoder emits, so tests
can compare our output with the codec's expected values.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from tunnelhound.decode.elements import V5_LAYOUT, Element, ipfix_element, v9_element

__all__ = ["V5_FIELDS", "codec_candidates", "codec_element"]

DEFINITIONS = Path(__file__).resolve().parent / "data" / "definitions"

REVERSE_PEN = 29305

# The codec's v5 record names in wire order; the pads are never emitted by the
# codec but keep this aligned with V5_LAYOUT.
_V5_CODEC_NAMES = (
    "ipv4_src_addr",
    "ipv4_dst_addr",
    "ipv4_next_hop",
    "input_snmp",
    "output_snmp",
    "in_pkts",
    "in_bytes",
    "first_switched",
    "last_switched",
    "l4_src_port",
    "l4_dst_port",
    "pad1",
    "tcp_flags",
    "protocol",
    "src_tos",
    "src_as",
    "dst_as",
    "src_mask",
    "dst_mask",
    "pad2",
)

V5_FIELDS: list[tuple[str, Element]] = [
    (name, element) for name, (element, _length) in zip(_V5_CODEC_NAMES, V5_LAYOUT, strict=True)
]


def _name(entry: object) -> str | None:
    # Entries are [type, name]; a bare [:skip] has none, and a few names lack the colon.
    if not isinstance(entry, list) or len(entry) < 2:
        return None
    return str(entry[1]).lstrip(":")


@lru_cache(maxsize=1)
def _v9_ids() -> dict[str, tuple[int, ...]]:
    with (DEFINITIONS / "netflow.yaml").open(encoding="utf-8") as fh:
        table: dict[int, list[object]] = yaml.safe_load(fh)
    ids: dict[str, list[int]] = {}
    for eid, entry in sorted(table.items()):
        name = _name(entry)
        if name:
            ids.setdefault(name, []).append(eid)
    return {name: tuple(found) for name, found in ids.items()}


@lru_cache(maxsize=1)
def _ipfix_ids() -> dict[str, tuple[tuple[int, int], ...]]:
    with (DEFINITIONS / "ipfix.yaml").open(encoding="utf-8") as fh:
        table: dict[int, dict[int, list[object]]] = yaml.safe_load(fh)
    ids: dict[str, list[tuple[int, int]]] = {}
    # IANA first, then reverse elements, then vendors by PEN: the same order in
    # which the element table hands out unsuffixed names.
    for pen in sorted(table, key=lambda p: (p != 0, p != REVERSE_PEN, p)):
        for eid, entry in sorted(table[pen].items()):
            name = _name(entry)
            if name:
                ids.setdefault(name, []).append((pen, eid))
    return {name: tuple(found) for name, found in ids.items()}


def codec_candidates(version: int, name: str) -> tuple[Element, ...]:
    """Every element the codec may have meant by ``name``, preferred first; empty if the name is unknown.

    The codec reuses a few names for several ids (``icmp_type`` is v9 32 and 176,
    ``xlate_src_addr_ipv4`` is 225 and 40001, Barracuda's fields exist under PEN
    10704 and 12326); which one an event came from depends on its template.
    """
    if version in (5, 9):
        return tuple(v9_element(eid) for eid in _v9_ids().get(name, ()))
    if version == 10:
        return tuple(ipfix_element(pen, eid) for pen, eid in _ipfix_ids().get(name, ()))
    raise ValueError(f"unsupported NetFlow version {version}")


def codec_element(version: int, name: str) -> Element:
    """The element the codec means by ``name`` for NetFlow ``version`` 5, 9 or 10 (IPFIX).

    Raises KeyError for names not in the codec's definitions.
    """
    found = codec_candidates(version, name)
    if not found:
        raise KeyError(name)
    return found[0]
