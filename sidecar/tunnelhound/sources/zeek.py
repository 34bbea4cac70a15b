"""Zeek's finished connections as flows: ``Tunnelhound::conn`` events → :class:`FlowRecord`.

The events come through a :class:`~tunnelhound.zeek.transport.Transport` (topic
``tunnelhound/conn``); each becomes a :class:`~tunnelhound.normalize.records.FlowRecord`
(``FlowPipeline.process_records`` takes them from there) and so the same ECS flow document
an exporter's record of that connection gives, with
``observer.type: zeek``, ``observer.ip`` set to the configured observer address, and Zeek's
own fields under ``zeek.*`` (``zeek.session_id`` is the conn.log ``uid``).

Counters are IP bytes and packets (``orig_ip_bytes``/``orig_pkts``), as NetFlow meters
them; one event carries both directions, so rows are biflows of kind ``exporter``.  TCP
flags come from the conn ``history``: upper-case letters are the originator's packets
(``flags``), lower-case the responder's (``rev_flags``); see :func:`flags_of_history`.
Events that do not fit the declared layout are dropped and counted by reason, never raised.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tunnelhound.normalize.records import FlowRecord
from tunnelhound.zeek.events import CONN, ZeekEvent, check_args
from tunnelhound.zeek.transport import Transport

__all__ = ["ZeekConnSource", "flags_of_history", "record_of_conn"]

OBSERVER_TYPE = "zeek"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROTOCOLS = {"tcp": 6, "udp": 17}
_ARG = {name: i for i, name in enumerate(CONN.arg_names)}
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_HISTORY_FLAGS = {
    "s": _SYN,  # a SYN without ACK
    "h": _SYN | _ACK,  # a SYN-ACK
    "a": _ACK,  # a pure ACK
    "d": _ACK,  # payload: a segment of a synchronized connection carries ACK (RFC 9293 3.10.7.4)
    "f": _FIN,
    "r": _RST,
    "q": _SYN,  # SYN+FIN or SYN+RST in one packet
}
"""TCP flags each conn.log ``history`` letter proves; the others (checksum, gap,
retransmission, window, inconsistent, ``^``) say nothing about flags."""


def flags_of_history(history: str) -> tuple[int | None, int | None]:
    """``(originator, responder)`` TCP flags (OR over packets) a conn ``history`` shows.

    None for a side with no letter (nothing known; ``0`` would claim "no ACK" and mark the
    flow as an unanswered probe).  A SYN answered by RST (``Sr``) gives ``(SYN, RST)``.
    """
    orig = resp = None
    for letter in history:
        bits = _HISTORY_FLAGS.get(letter.lower())
        if bits is None:
            continue
        if letter.isupper():
            orig = (orig or 0) | bits
        else:
            resp = (resp or 0) | bits
    return orig, resp


def _ns(value: datetime | timedelta) -> int:
    delta = value - _EPOCH if isinstance(value, datetime) else value
    return delta // timedelta(microseconds=1) * 1000


def record_of_conn(args: Sequence[Any], observer_ip: str) -> FlowRecord | None:
    """The flow record of one checked ``Tunnelhound::conn`` event's arguments.

    None for a transport Zeek could not name (``unknown_transport``): without the IP
    protocol number there is no flow key.
    """

    def arg(name: str) -> Any:
        return args[_ARG[name]]

    orig_h, transport = arg("orig_h"), arg("proto")
    if transport == "icmp":
        proto = 58 if ipaddress.ip_address(orig_h).version == 6 else 1
    elif transport in _PROTOCOLS:
        proto = _PROTOCOLS[transport]
    else:
        return None
    icmp = transport == "icmp"
    flags, rev_flags = flags_of_history(arg("history")) if transport == "tcp" else (None, None)
    start_ns = _ns(arg("ts"))
    zeek: dict[str, Any] = {"session_id": arg("uid")}
    connection = {
        key: arg(name)
        for key, name in (("state", "conn_state"), ("history", "history"), ("service", "service"))
        if arg(name)
    }
    if connection:
        zeek["connection"] = connection
    # Zeek names ICMP type and code as the two "ports".
    sport, dport = arg("orig_p").number, arg("resp_p").number
    return FlowRecord(
        start_ns=start_ns,
        end_ns=start_ns + _ns(arg("duration")),
        src_ip=orig_h,
        dst_ip=arg("resp_h"),
        src_port=None if icmp else sport,
        dst_port=None if icmp else dport,
        proto=proto,
        src_bytes=arg("orig_ip_bytes"),
        src_packets=arg("orig_pkts"),
        dst_bytes=arg("resp_ip_bytes"),
        dst_packets=arg("resp_pkts"),
        icmp_type=sport if icmp else None,
        icmp_code=dport if icmp else None,
        flags=flags,
        rev_flags=rev_flags,
        observer_ip=observer_ip,
        observer_type=OBSERVER_TYPE,
        identity=f"zeek|{arg('uid')}|{start_ns}",
        biflow=True,
        initiator_known=True,  # Zeek decided who originated (its `^` history letter says it flipped)
        extra=orjson.dumps({"zeek": zeek}).decode()[1:-1],
    )


class ZeekConnSource:
    """Flow records from a Zeek transport: call :meth:`poll` in the pipeline's loop.

    ``observer_ip`` is the Zeek host's address as documents should name it (``observer.ip``).
    ``dropped`` counts events left out, by reason (``bad_event``, ``unknown_transport``,
    ``other_event``).
    """

    def __init__(self, transport: Transport, *, observer_ip: str) -> None:
        self.transport = transport
        self.observer_ip = observer_ip
        self.dropped: Counter[str] = Counter()
        self.last_error = ""

    def poll(self, max_events: int = 4096, timeout: float = 0.5) -> list[FlowRecord]:
        """The records of the conn events that arrived, waiting up to ``timeout`` for the first."""
        return self.records([event for _, event in self.transport.receive(max_events, timeout)])

    def records(self, events: Sequence[ZeekEvent]) -> list[FlowRecord]:
        """The records of ``events`` (conn events only; the rest is counted and left out)."""
        records = []
        for event in events:
            if event.name != CONN.name:
                self.dropped["other_event"] += 1
                continue
            problem = check_args(CONN, event.args)
            if problem is not None:
                self.dropped["bad_event"] += 1
                self.last_error = problem
                continue
            record = record_of_conn(event.args, self.observer_ip)
            if record is None:
                self.dropped["unknown_transport"] += 1
                continue
            records.append(record)
        return records
