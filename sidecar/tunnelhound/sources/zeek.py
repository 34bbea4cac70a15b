"""Zeek's finished connections as flows: ``Tunnelhound::conn`` events → :class:`FlowFrame`.

The events come through a :class:`~tunnelhound.zeek.transport.Transport` (topic
``tunnelhound/conn``); each becomes a :class:`~tunnelhound.normalize.records.FlowRecord`
and so the same ECS flow document an exporter's record of that connection gives, with
``observer.type: zeek``, ``observer.ip`` set to the configured observer address, and Zeek's
own fields under ``zeek.*`` (``zeek.session_id`` is the conn.log ``uid``).

Counters are IP bytes and packets (``orig_ip_bytes``/``orig_pkts``), as NetFlow meters
them; one event carries both directions, so rows are biflows of kind ``exporter``.  Events
that do not fit the declared layout are dropped and counted by reason, never raised.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.normalize.locality import DEFAULT_INTERNAL_NETWORKS, Networks
from tunnelhound.normalize.records import FlowRecord, frame_from_records
from tunnelhound.zeek.events import CONN, ZeekEvent, check_args
from tunnelhound.zeek.transport import Transport

__all__ = ["ZeekConnSource", "record_of_conn"]

OBSERVER_TYPE = "zeek"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROTOCOLS = {"tcp": 6, "udp": 17}
_ARG = {name: i for i, name in enumerate(CONN.arg_names)}


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
        observer_ip=observer_ip,
        observer_type=OBSERVER_TYPE,
        identity=f"zeek|{arg('uid')}|{start_ns}",
        biflow=True,
        extra=orjson.dumps({"zeek": zeek}).decode()[1:-1],
    )


class ZeekConnSource:
    """Flows from a Zeek transport: call :meth:`poll` in the pipeline's loop.

    ``observer_ip`` is the Zeek host's address as documents should name it (``observer.ip``).
    ``dropped`` counts events left out, by reason (``bad_event``, ``unknown_transport``,
    ``other_event``).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        observer_ip: str,
        internal_networks: Sequence[str] = DEFAULT_INTERNAL_NETWORKS,
        community_id_seed: int = 0,
        namespace: str = "default",
    ) -> None:
        self.transport = transport
        self.observer_ip = observer_ip
        self.networks = Networks(internal_networks)
        self.community_id_seed = community_id_seed
        self.namespace = namespace
        self.dropped: Counter[str] = Counter()
        self.last_error = ""

    def poll(self, max_events: int = 4096, timeout: float = 0.5) -> FlowFrame:
        """The flows of the conn events that arrived, waiting up to ``timeout`` for the first."""
        return self.frame([event for _, event in self.transport.receive(max_events, timeout)])

    def frame(self, events: Sequence[ZeekEvent]) -> FlowFrame:
        """The flows of ``events`` (conn events only; the rest is counted and left out)."""
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
        return frame_from_records(
            records,
            internal_networks=self.networks,
            community_id_seed=self.community_id_seed,
            namespace=self.namespace,
        )
