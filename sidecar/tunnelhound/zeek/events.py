"""The events exchanged with Zeek: names, argument order and Zeek types (DESIGN §8).

``zeek-scripts/scripts/main.zeek`` declares the same events; ``tests/test_zeek_scripts.py``
parses the script and holds both declarations equal.  Values on the Python side are plain:

=================  ==========================================================
Zeek type          Python value
=================  ==========================================================
``count``          ``int`` >= 0
``string``         ``str``
``bool``           ``bool``
``time``           ``datetime`` (UTC, aware)
``interval``       ``timedelta``
``addr``           ``str`` (IP address text)
``port``           :class:`Port`
``transport_proto``  ``str`` (``tcp``, ``udp``, ``icmp``, ``unknown_transport``)
``vector of addr``  ``list[str]``
=================  ==========================================================

Both transports turn what they receive into these values (:class:`ZeekEvent`) and check
them with :func:`check_args` before anything else looks at them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

__all__ = [
    "CONN",
    "DETECTION",
    "EVENTS",
    "EVENT_VERSION",
    "EventSchema",
    "Port",
    "ZeekEvent",
    "check_args",
]

EVENT_VERSION = 1
"""The ``version`` argument every event starts with (``Tunnelhound::event_version``)."""

PORT_PROTOCOLS = ("tcp", "udp", "icmp", "?")
"""Protocols of a port, as Broker writes them."""


class Port(NamedTuple):
    """A Zeek ``port``: number and protocol (``tcp``, ``udp``, ``icmp`` or ``?``)."""

    number: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class EventSchema:
    """One event: its Zeek name and ``(argument, Zeek type)`` pairs in order."""

    name: str
    args: tuple[tuple[str, str], ...]

    @property
    def arg_names(self) -> tuple[str, ...]:
        """The argument names, in order."""
        return tuple(name for name, _ in self.args)


@dataclass(frozen=True, slots=True)
class ZeekEvent:
    """An event as it travels: name, argument values, and Zeek 8's metadata.

    ``metadata`` holds the optional third element of an event (Zeek >= 8.0) as
    ``(key, value)`` pairs, e.g. ``(1, datetime)`` for the network time; empty when the
    sender gave none.
    """

    name: str
    args: tuple[Any, ...]
    metadata: tuple[tuple[int, Any], ...] = field(default=())


CONN = EventSchema(
    "Tunnelhound::conn",
    (
        ("version", "count"),
        ("uid", "string"),
        ("ts", "time"),
        ("orig_h", "addr"),
        ("orig_p", "port"),
        ("resp_h", "addr"),
        ("resp_p", "port"),
        ("proto", "transport_proto"),
        ("service", "string"),
        ("duration", "interval"),
        ("orig_bytes", "count"),
        ("resp_bytes", "count"),
        ("orig_ip_bytes", "count"),
        ("resp_ip_bytes", "count"),
        ("orig_pkts", "count"),
        ("resp_pkts", "count"),
        ("conn_state", "string"),
        ("history", "string"),
        ("local_orig", "bool"),
        ("local_resp", "bool"),
        ("community_id", "string"),
    ),
)
"""One finished connection (Zeek → sidecar, topic ``tunnelhound/conn``)."""

DETECTION = EventSchema(
    "Tunnelhound::detection",
    (
        ("version", "count"),
        ("alert_id", "string"),
        ("ts", "time"),
        ("action", "string"),
        ("rule_name", "string"),
        ("rule_id", "string"),
        ("severity", "count"),
        ("message", "string"),
        ("reason", "string"),
        ("src", "addr"),
        ("dst", "vector of addr"),
        ("community_id", "string"),
    ),
)
"""One detection (sidecar → Zeek, topic ``tunnelhound/detections``)."""

EVENTS = {schema.name: schema for schema in (CONN, DETECTION)}
"""Every declared event by name."""

TRANSPORT_PROTOS = ("tcp", "udp", "icmp", "unknown_transport")


def _is_addr(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_CHECKS = {
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64,
    "string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "time": lambda v: isinstance(v, datetime) and v.tzinfo is not None,
    "interval": lambda v: isinstance(v, timedelta),
    "addr": _is_addr,
    "port": lambda v: isinstance(v, Port) and 0 <= v.number <= 0xFFFF and v.protocol in PORT_PROTOCOLS,
    "transport_proto": lambda v: v in TRANSPORT_PROTOS,
    "vector of addr": lambda v: isinstance(v, list) and all(_is_addr(a) for a in v),
}
"""Per Zeek type: does a Python value fit it (see the module table)."""

ZEEK_TYPES = frozenset(_CHECKS)
"""The Zeek types the events use; the transports encode each of them."""


def check_args(schema: EventSchema, args: tuple[Any, ...]) -> str | None:
    """Why ``args`` do not fit ``schema`` (one line), or None when they do."""
    if len(args) != len(schema.args):
        return f"{schema.name}: {len(args)} arguments, expected {len(schema.args)}"
    for (name, zeek_type), value in zip(schema.args, args, strict=True):
        if not _CHECKS[zeek_type](value):
            return f"{schema.name}: argument {name} is not a {zeek_type}: {value!r}"
    if args[0] != EVENT_VERSION:
        return f"{schema.name}: version {args[0]}, expected {EVENT_VERSION}"
    return None
