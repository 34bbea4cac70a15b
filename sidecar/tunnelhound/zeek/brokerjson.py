"""Broker's JSON data model, as Zeek's WebSocket API speaks it.

Every value is ``{"@data-type": T, "data": D}``; a data message adds ``"type":
"data-message"`` and ``"topic"``.  An event is the vector ``[1, 1, [name, args]]``, with an
optional third element ``[name, args, metadata]`` since Zeek 8.0 (metadata: a vector of
``[key, value]`` vectors).  Reference: Broker's "Web Socket" documentation, JSON API v1.

Decoding is generic (the JSON says the type); encoding is driven by the Zeek types an
:class:`~tunnelhound.zeek.events.EventSchema` declares, because a Python ``int`` could be a
``count`` or an ``integer``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tunnelhound.zeek.events import EventSchema, Port, ZeekEvent

__all__ = ["BrokerJsonError", "decode_message", "decode_value", "encode_event", "encode_value"]

_FORMAT = 1
_EVENT = 1
_TIMESPAN = re.compile(r"^(-?\d+(?:\.\d+)?)(ns|ms|s|min|h|d)$")
_UNIT_NS = {"ns": 1, "ms": 1_000_000, "s": 10**9, "min": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


class BrokerJsonError(ValueError):
    """A message or value that does not follow Broker's JSON data model."""


def decode_value(value: Any) -> Any:
    """The Python value of one ``{"@data-type", "data"}`` object (see ``events`` for types)."""
    if not isinstance(value, dict) or "@data-type" not in value or "data" not in value:
        raise BrokerJsonError(f"not a Broker value: {_short(value)}")
    kind, data = value["@data-type"], value["data"]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise BrokerJsonError(f"unknown @data-type {kind!r}")
    try:
        return decoder(data)
    except BrokerJsonError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BrokerJsonError(f"bad {kind} value {_short(data)}: {exc}") from None


def _timespan(data: str) -> timedelta:
    m = _TIMESPAN.match(data)
    if m is None:
        raise BrokerJsonError(f"bad timespan {data!r}")
    number, unit = m.groups()
    ns = int(number) * _UNIT_NS[unit] if "." not in number else round(float(number) * _UNIT_NS[unit])
    return timedelta(microseconds=ns / 1000)


def _timestamp(data: str) -> datetime:
    # Broker writes "YYYY-MM-DDThh:mm:ss.sss" in UTC without a zone; accept a zone if given.
    parsed = datetime.fromisoformat(data)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _port(data: str) -> Port:
    number, _, protocol = data.partition("/")
    port = Port(int(number), protocol)
    if not 0 <= port.number <= 0xFFFF or protocol not in ("tcp", "udp", "icmp", "?"):
        raise BrokerJsonError(f"bad port {data!r}")
    return port


def _count(data: Any) -> int:
    if not isinstance(data, int) or isinstance(data, bool) or data < 0:
        raise BrokerJsonError(f"bad count {data!r}")
    return data


def _integer(data: Any) -> int:
    if not isinstance(data, int) or isinstance(data, bool):
        raise BrokerJsonError(f"bad integer {data!r}")
    return data


def _typed(kind: type | tuple[type, ...], name: str) -> Any:
    def check(data: Any) -> Any:
        if not isinstance(data, kind) or (kind is not bool and isinstance(data, bool)):
            raise BrokerJsonError(f"bad {name} {data!r}")
        return data

    return check


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


_DECODERS = {
    "none": lambda data: None,
    "boolean": _typed(bool, "boolean"),
    "count": _count,
    "integer": _integer,
    "real": lambda data: float(_typed((int, float), "real")(data)),
    "timespan": _timespan,
    "timestamp": _timestamp,
    "string": _typed(str, "string"),
    "enum-value": _typed(str, "enum-value"),
    "address": _typed(str, "address"),
    "subnet": _typed(str, "subnet"),
    "port": _port,
    "vector": lambda data: [decode_value(v) for v in data],
    "set": lambda data: [decode_value(v) for v in data],
    "table": lambda data: {_hashable(decode_value(e["key"])): decode_value(e["value"]) for e in data},
}


def decode_message(text: str | bytes) -> tuple[str, Any]:
    """``(type, payload)`` of one WebSocket text message.

    ``("ack", {"endpoint", "version"})``, ``("error", "code: context")`` or
    ``("data-message", (topic, ZeekEvent))``; a data message that is not an event raises
    :class:`BrokerJsonError`, like anything malformed.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BrokerJsonError(f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise BrokerJsonError(f"message is not an object: {_short(msg)}")
    kind = msg.get("type")
    if kind == "ack":
        return "ack", {"endpoint": msg.get("endpoint"), "version": msg.get("version")}
    if kind == "error":
        return "error", f"{msg.get('code')}: {msg.get('context')}"
    if kind != "data-message":
        raise BrokerJsonError(f"unknown message type {kind!r}")
    topic = msg.get("topic")
    if not isinstance(topic, str):
        raise BrokerJsonError("data message without a topic")
    return "data-message", (topic, event_from_data(decode_value(msg)))


def event_from_data(data: Any) -> ZeekEvent:
    """The event a decoded Broker value holds: ``[1, 1, [name, args(, metadata)]]``."""
    if not (isinstance(data, list) and len(data) == 3 and data[0] == _FORMAT and data[1] == _EVENT):
        raise BrokerJsonError(f"not a Zeek event: {_short(data)}")
    body = data[2]
    if not (isinstance(body, list) and len(body) in (2, 3) and isinstance(body[0], str)):
        raise BrokerJsonError(f"bad event body: {_short(body)}")
    if not isinstance(body[1], list):
        raise BrokerJsonError(f"event {body[0]}: arguments are not a vector")
    metadata: tuple[tuple[int, Any], ...] = ()
    if len(body) == 3:
        entries = body[2]
        if not isinstance(entries, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) for e in entries
        ):
            raise BrokerJsonError(f"event {body[0]}: bad metadata {_short(entries)}")
        metadata = tuple((e[0], e[1]) for e in entries)
    return ZeekEvent(body[0], tuple(body[1]), metadata)


def encode_value(value: Any, zeek_type: str) -> dict[str, Any]:
    """The Broker JSON object of ``value`` as Zeek type ``zeek_type`` (see ``events``)."""
    if zeek_type.startswith("vector of "):
        inner = zeek_type.removeprefix("vector of ")
        return {"@data-type": "vector", "data": [encode_value(v, inner) for v in value]}
    match zeek_type:
        case "count":
            return {"@data-type": "count", "data": int(value)}
        case "string":
            return {"@data-type": "string", "data": value}
        case "bool":
            return {"@data-type": "boolean", "data": bool(value)}
        case "addr":
            return {"@data-type": "address", "data": str(value)}
        case "port":
            return {"@data-type": "port", "data": str(value)}
        case "transport_proto":
            return {"@data-type": "enum-value", "data": value}
        case "interval":
            ns = value // timedelta(microseconds=1) * 1000
            return {"@data-type": "timespan", "data": f"{ns}ns"}
        case "time":
            utc = value.astimezone(UTC).replace(tzinfo=None)
            return {"@data-type": "timestamp", "data": utc.isoformat(timespec="milliseconds")}
    raise ValueError(f"no Broker encoding for Zeek type {zeek_type!r}")


def encode_event(topic: str, schema: EventSchema, args: tuple[Any, ...]) -> bytes:
    """One data message carrying event ``schema`` with ``args`` on ``topic`` (no metadata)."""
    encoded = [encode_value(v, t) for (_, t), v in zip(schema.args, args, strict=True)]
    body = [{"@data-type": "string", "data": schema.name}, {"@data-type": "vector", "data": encoded}]
    return orjson.dumps(
        {
            "type": "data-message",
            "topic": topic,
            "@data-type": "vector",
            "data": [
                {"@data-type": "count", "data": _FORMAT},
                {"@data-type": "count", "data": _EVENT},
                {"@data-type": "vector", "data": body},
            ],
        }
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
