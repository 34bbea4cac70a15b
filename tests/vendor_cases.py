"""Test helper: replay the Logstash NetFlow codec's vendor cases and compare with its expectations.

``tests/data/vendors/expectations.json`` lists, per case of the codec's spec, the capture
files it fed, how many events it produced and what some fields held, in the codec's own
names and value forms.  This module

* replays a case's files through our :class:`Decoder` as one exporter (``192.0.2.1:4444``;
  one ``.dat`` file is one datagram, ``received`` is its position in the list),
* lines our output up as the codec's *event list*: per datagram, its options records, then
  its flow records in wire order (the codec emits one event per record of either kind, in
  set order; in every capture holding both, the options set comes first),
* maps each codec field name to our column (:func:`codec_names.codec_candidates`; v5 record
  names through :data:`codec_names.V5_FIELDS`; header fields to :class:`FlowBatch`
  attributes) and turns our value into the codec's form in one place (:func:`codec_form`),
* reports, for every assertion of the spec and every field of its full JSON events, whether
  it matched (:class:`Outcome`), and why a field could not be compared.

Known differences are data here, not buried in the comparison: :data:`MULTI_MESSAGE_FILES`
(files holding several packets, of which the codec reads the first), :data:`CODEC_QUIRKS`
(fields where the codec's expectation is wrong, with what we decode instead, asserted) and
:data:`DECODER_BUGS` (where our decoder is wrong; the tests mark those ``xfail(strict=True)``).
``scripts/conformance_table.py`` renders the lot to ``docs/conformance.md``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from codec_names import DEFINITIONS, V5_FIELDS, codec_candidates
from tunnelhound.decode.decoder import Decoded, Decoder
from tunnelhound.model import Datagram, FlowBatch, OptionsRecord

__all__ = [
    "CODEC_QUIRKS",
    "DECODER_BUGS",
    "EXPORTER_IP",
    "EXPORTER_PORT",
    "MULTI_MESSAGE_FILES",
    "VENDORS",
    "CaseReport",
    "Check",
    "CodecQuirk",
    "DecoderBug",
    "Event",
    "MultiMessage",
    "Outcome",
    "Replay",
    "VendorCase",
    "check_field",
    "check_json",
    "codec_form",
    "codec_switched_ns",
    "column_equal",
    "compare",
    "dat_bytes",
    "decoder_bugs",
    "first_message",
    "load_cases",
    "replay",
    "replay_datagrams",
    "report",
    "same_events",
    "same_instant",
    "split_steps",
]

VENDORS = Path(__file__).resolve().parent / "data" / "vendors"
EXPORTER_IP = "192.0.2.1"
EXPORTER_PORT = 4444


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True, slots=True)
class Check:
    """One ``expect(decode[index].get("[netflow][field]")).to eq(expected)`` of the codec's spec."""

    index: int
    field: str
    """The codec's field name, without the ``[netflow]`` prefix."""
    expected: Any


@dataclass(frozen=True, slots=True)
class VendorCase:
    """One test case of the codec's spec."""

    context: int
    """Position of the case in the spec; unique (two cases share a name)."""
    name: str
    files: tuple[str, ...]
    expected_count: tuple[int, ...]
    """Events per decode step of the spec (options records included); empty: not asserted."""
    checks: tuple[Check, ...]
    json_events: tuple[tuple[int, Mapping[str, Any]], ...]
    """(decode index, full expected event) pairs."""
    micros_placeholder: bool
    """The spec's JSON events used ``#{micros}`` in v5 times (filled in with milliseconds here)."""

    @property
    def case_id(self) -> str:
        """Stable pytest id such as ``c01-netflow-5-valid-01``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        return f"c{self.context:02d}-{slug}"

    @property
    def version(self) -> int:
        """The codec's naming scheme: 10 for cases named "IPFIX ...", else the first datagram's version."""
        if self.name.startswith("IPFIX"):
            return 10
        return int.from_bytes(dat_bytes(self.files[0])[:2], "big")


@cache
def dat_bytes(name: str) -> bytes:
    """The content of one capture file (one UDP payload)."""
    return (VENDORS / "dat" / name).read_bytes()


def _field(path: str) -> str:
    parts: list[str] = re.findall(r"\[([^\]]+)\]", path)
    if len(parts) != 2 or parts[0] != "netflow":
        raise ValueError(f"unexpected codec field path {path!r}")
    return parts[1]


@lru_cache(maxsize=1)
def load_cases() -> tuple[VendorCase, ...]:
    """Every case of ``expectations.json``, in file order."""
    raw = json.loads((VENDORS / "expectations.json").read_text(encoding="utf-8"))
    cases = []
    for entry in raw:
        events = entry.get("json_events") or []
        pairs = tuple(
            (m["decode_index"], events[m["json_event_index"]]) for m in entry.get("json_event_map") or []
        )
        cases.append(
            VendorCase(
                context=entry["context"],
                name=entry["name"],
                files=tuple(entry["files"]),
                expected_count=tuple(entry["expected_count"]),
                checks=tuple(
                    Check(a["index"], _field(a["field"]), a["expected"]) for a in entry["assertions"]
                ),
                json_events=pairs,
                micros_placeholder=bool(entry.get("uses_micros_placeholder")),
            )
        )
    return tuple(cases)


# --------------------------------------------------------------------------- known differences


@dataclass(frozen=True, slots=True)
class MultiMessage:
    """A capture file holding several export packets back to back; the codec decodes the first."""

    flows: int
    """Flow records in the whole file (our decoder walks every packet)."""
    options: int
    first_flows: int
    """Flow records in the first packet; with ``first_options``, the codec's events."""
    first_options: int
    note: str


MULTI_MESSAGE_FILES: dict[str, MultiMessage] = {
    "netflow5.dat": MultiMessage(
        flows=30,
        options=0,
        first_flows=2,
        first_options=0,
        note=(
            "12 concatenated v5 packets: sequence 0, 2, 6, 10, 14, 16 ... 28 is continuous, record counts "
            "2+4+4+4+2x8 = 30, and the last packet ends exactly at byte 1728, the file length (none is "
            "truncated, whatever the corpus README says). The codec and tshark 4.0 decode only the first "
            "packet (2 events); we decode all 30 flows and check the codec's 2 events against a replay of "
            "the first packet alone, whose events equal the first 2 of the full replay."
        ),
    ),
    "ipfix.dat": MultiMessage(
        flows=12,
        options=1,
        first_flows=6,
        first_options=1,
        note=(
            "3 IPFIX messages (lengths 484, 64, 240 = 788 bytes; sequence 6, 7, 12). The codec and "
            "tshark decode only the first (1 options record + 6 flows = 7 events); we decode 12 flows + "
            "1 options record and check the codec's 7 events against a replay of the first message alone, "
            "whose events equal the first 7 of the full replay."
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class CodecQuirk:
    """A field whose codec expectation is not what the capture holds; we assert our value instead."""

    context: int
    index: int
    field: str
    ours: Any
    """What we decode, in the codec's value form; asserted exactly (times: at its precision)."""
    reason: str


_RUBY_DECREMENT = (
    "codec bug: decode_netflow5 borrows a second with `seconds--`, which Ruby has no operator for; "
    "`seconds--` + newline + `micros += 1000000` parses as `seconds - -(micros += 1000000)`, so the "
    "borrow adds 1 s to micros and never takes it from seconds. Header 18:38:08.280328 minus "
    "(uptime 3381 - last 2577 = 804 ms) is 18:38:07.476, one second before the codec's value"
)
_NPROBE_STRAY = (
    "the capture is odd (corpus README): the 32-byte application name (id 96) and the 16-byte "
    "nprobe proto name (57591) hold binary, not text ({raw}); the codec keeps the bytes up to the "
    "trailing NULs, we cut a string at its first NUL, which here is byte 0, so we decode ''"
)

CODEC_QUIRKS: tuple[CodecQuirk, ...] = (
    CodecQuirk(1, 0, "last_switched", "2015-05-02T18:38:07.476Z", _RUBY_DECREMENT),
    CodecQuirk(1, 1, "last_switched", "2015-05-02T18:38:07.476Z", _RUBY_DECREMENT),
    CodecQuirk(
        28,
        0,
        "application_name",
        "",
        _NPROBE_STRAY.format(raw="00 00 00 00 00 22 00 00 00 00 04 then 21 NULs, at datagram offset 0x75"),
    ),
    CodecQuirk(
        28,
        0,
        "nprobe_proto_name",
        "",
        _NPROBE_STRAY.format(raw="00 c1 00 00 01 ac 10 00 64 e4 4f ef ff ff fa 07 at offset 0x97"),
    ),
)


@dataclass(frozen=True, slots=True)
class DecoderBug:
    """Where our decoder is wrong; every test it breaks is ``xfail(strict=True)`` until it is fixed."""

    context: int
    fast_path: bool | None
    """The path that is wrong (None: both)."""
    summary: str
    evidence: str


DECODER_BUGS: tuple[DecoderBug, ...] = ()
"""None open. This comparison found one (so did the fuzz differential), fixed in 7d327ed:
the reference path dropped a data set whose tail, shorter than a record, was not all zero
(nProbe ``0d 00 01`` after a 49-byte record; Mikrotik set 259 ``6b ab`` after 18 records of
79 bytes; the nProbe DPI set's 17 bytes after one 83-byte record), giving 7 of 8, 0 of 1 and
28 of 46 flows where the fast path and the codec decode them all."""


def decoder_bugs(case: VendorCase, fast_path: bool | None) -> list[DecoderBug]:
    """The known decoder bugs a case shows on a path (``None``: the bugs of either path)."""
    return [
        b
        for b in DECODER_BUGS
        if b.context == case.context and (fast_path is None or b.fast_path in (None, fast_path))
    ]


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class Event:
    """One codec event: row ``row`` of a flow batch, or an options record."""

    datagram: int
    """Index of the datagram whose ``decode`` returned the record."""
    batch: FlowBatch | None = None
    row: int = 0
    record: OptionsRecord | None = None

    @property
    def is_options(self) -> bool:
        """An options record (the codec emits those as events too)."""
        return self.record is not None

    @property
    def version(self) -> int:
        """Export version of the message the record came in."""
        if self.record is not None:
            return self.record.version
        assert self.batch is not None
        return self.batch.version

    @property
    def template_id(self) -> int:
        """The data set id (the codec's ``flowset_id``; 0 for v5)."""
        if self.record is not None:
            return self.record.template_id
        assert self.batch is not None
        return self.batch.template_id

    def values(self) -> dict[str, Any]:
        """Column name → plain Python value (options records: scope and values merged)."""
        if self.record is not None:
            return {**self.record.scope, **self.record.values}
        assert self.batch is not None
        return {name: col[self.row : self.row + 1].tolist()[0] for name, col in self.batch.columns.items()}

    def types(self) -> dict[str, str]:
        """Column name → IANA abstract type (flow records; options records carry none)."""
        return dict(self.batch.types) if self.batch is not None else {}


@dataclass(slots=True)
class Replay:
    """What our decoder made of a sequence of datagrams, lined up as codec events."""

    decoded: list[Decoded]
    """One entry per datagram, as ``Decoder.decode`` returned it."""
    events: list[Event]
    decoder: Decoder

    @property
    def flows(self) -> int:
        """Flow records in all datagrams."""
        return sum(d.record_count for d in self.decoded)

    @property
    def options(self) -> int:
        """Options records in all datagrams."""
        return sum(len(d.options) for d in self.decoded)

    def events_of(self, datagram: int) -> list[Event]:
        """The events one datagram's ``decode`` returned."""
        return [e for e in self.events if e.datagram == datagram]


def _events(decoded: Decoded, datagram: int) -> list[Event]:
    out = [Event(datagram, record=r) for r in decoded.options]
    # Held sets are released as each template is learned, so a template set 257, 258
    # releases a held 257 set before a 258 set that came first on the wire; every batch
    # carries (sequence, set offset), which puts them back in arrival order.
    for batch in sorted(decoded.flows, key=lambda b: (b.sequence, b.set_offset)):
        out.extend(Event(datagram, batch=batch, row=i) for i in range(batch.count))
    return out


def replay_datagrams(payloads: Sequence[bytes], *, fast_path: bool) -> Replay:
    """Decode ``payloads`` in order as datagrams from one exporter, one second apart."""
    decoder = Decoder(fast_path=fast_path)
    decoded: list[Decoded] = []
    events: list[Event] = []
    for i, data in enumerate(payloads):
        out = decoder.decode(Datagram(data, EXPORTER_IP, EXPORTER_PORT, received=float(i)))
        decoded.append(out)
        events.extend(_events(out, i))
    return Replay(decoded, events, decoder)


def replay(case: VendorCase, *, fast_path: bool) -> Replay:
    """Replay a case's files in order, each file one datagram."""
    return replay_datagrams([dat_bytes(f) for f in case.files], fast_path=fast_path)


def first_message(data: bytes) -> bytes:
    """The first export packet of a payload holding several (v5: header count; IPFIX: length)."""
    version = int.from_bytes(data[:2], "big")
    if version == 5:
        return data[: 24 + 48 * int.from_bytes(data[2:4], "big")]
    if version == 10:
        return data[: int.from_bytes(data[2:4], "big")]
    raise ValueError(f"no message length in a v{version} header")


def split_steps(case: VendorCase, run: Replay) -> list[list[Event]] | None:
    """The events per decode step of the spec, cut at datagram boundaries; None if they do not add up.

    Only the last case has two steps: a template-caching run (data, then templates) and an
    ``include_flowset_id`` run (templates, then data), replayed here as one exporter.
    """
    if len(case.expected_count) <= 1:
        return [run.events]
    out: list[list[Event]] = []
    want = list(case.expected_count)
    current: list[Event] = []
    for i in range(len(run.decoded)):
        current.extend(run.events_of(i))
        if want and len(current) == want[0] and current:
            out.append(current)
            current, want = [], want[1:]
    return None if current or want else out


def same_events(a: Sequence[Event], b: Sequence[Event]) -> bool:
    """Whether two event lists hold the same records (kind, version, set id, every value)."""
    return len(a) == len(b) and all(
        x.is_options == y.is_options
        and x.version == y.version
        and x.template_id == y.template_id
        and x.values() == y.values()
        for x, y in zip(a, b, strict=True)
    )


# --------------------------------------------------------------------------- values


@lru_cache(maxsize=1)
def _codec_v9_types() -> dict[str, str]:
    """Codec v9 field name → codec data type (``acl_id_asa``, ``forwarding_status`` ...)."""
    with (DEFINITIONS / "netflow.yaml").open(encoding="utf-8") as fh:
        table: dict[int, Any] = yaml.safe_load(fh)
    out = {}
    for entry in table.values():
        if isinstance(entry, list) and len(entry) >= 2:
            out[str(entry[1]).lstrip(":")] = str(entry[0]).lstrip(":")
    return out


def codec_form(value: Any, element_type: str | None, codec_type: str | None = None) -> Any:
    """Our value in the codec's representation (times excepted: see :func:`compare`).

    IPv4 uint32 → dotted quad; IPv6 16 bytes → compressed text; MAC 6 bytes →
    ``aa:bb:cc:dd:ee:ff``; applicationId ``engine:selector`` (``20:pen:selector``) →
    ``engine..selector`` (``20..pen..selector``); the codec's ``acl_id_asa`` (12 bytes) →
    three dash-joined 32-bit hex words; ``forwarding_status`` → ``{status, reason}`` (top 2
    bits, low 6 bits); other bytes → lowercase hex (the codec's OctetArray); the rest as is.
    """
    if codec_type == "acl_id_asa" and isinstance(value, bytes) and len(value) == 12:
        return "-".join(value[i : i + 4].hex() for i in range(0, 12, 4))
    if codec_type == "forwarding_status" and isinstance(value, int):
        return {"status": value >> 6, "reason": value & 0x3F}
    if element_type == "ipv4Address" and isinstance(value, int):
        return str(ipaddress.IPv4Address(value))
    if isinstance(value, bytes):
        if element_type == "ipv6Address" and len(value) == 16:
            return ipaddress.IPv6Address(value).compressed
        if element_type == "macAddress" and len(value) == 6:
            return ":".join(f"{b:02x}" for b in value)
        return value.hex()
    if element_type == "applicationId" and isinstance(value, str):
        return value.replace(":", "..")
    return value


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one expected field compared.

    ``status``: ``pass``; ``fail``; ``quirk`` (the codec's value is wrong and ours, recorded
    in :data:`CODEC_QUIRKS`, matched); ``skip`` (nothing of ours to compare, ``detail`` says why).
    """

    status: str
    field: str
    index: int
    expected: Any
    ours: Any = None
    column: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Not a failure."""
        return self.status != "fail"


_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


def _iso_ns(text: str) -> tuple[int, int]:
    m = _ISO.match(text)
    if m is None:
        raise ValueError(f"not an ISO UTC time: {text!r}")
    base = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    frac = m.group(2) or ""
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "0" * 9)[:9]), len(frac)


def same_instant(expected: str, ours_ns: int) -> bool:
    """Whether ``ours_ns`` is the instant ``expected`` names, at the precision ``expected`` states."""
    want, digits = _iso_ns(expected)
    unit: int = 10 ** (9 - min(digits, 9))
    return bool(ours_ns // unit == want // unit)


def _ns_iso(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def codec_switched_ns(batch: FlowBatch, uptime_value: int) -> int:
    """The instant the codec means by a sysUpTime-relative ``*_switched`` value, in ns.

    ``millis = uptime - value`` as the codec computes it (a value above the header uptime,
    as in ``netflow5.dat``, goes negative and gives the codec's far-future date). v5 subtracts
    it from the header's export time (seconds + nanoseconds truncated to µs). v9 has no
    sub-second export time; the codec takes ``seconds - millis // 1000`` plus
    ``1_000_000 - millis % 1000 * 1000`` µs, i.e. anchors at the *end* of the export second:
    ``(unix_secs + 1) s - millis``.  The v5 second-borrow bug is not copied (see CODEC_QUIRKS).
    """
    assert batch.sys_uptime_ms is not None
    millis = batch.sys_uptime_ms - uptime_value
    if batch.version == 5:
        micros = batch.export_time * 1_000_000 + batch.export_nanos // 1000
    else:
        micros = (batch.export_time + 1) * 1_000_000
    return (micros - millis * 1000) * 1000


_DATE_SCALE = {
    "dateTimeSeconds": 1_000_000_000,
    "dateTimeMilliseconds": 1_000_000,
    "dateTimeMicroseconds": 1,  # our µs/ns columns are already ns since the epoch
    "dateTimeNanoseconds": 1,
}

_V9_SCOPE_COLUMNS = {
    "scope_system": "scope_system",
    "scope_interface": "scope_interface",
    "scope_line_card": "scope_line_card",
    "scope_netflow_cache": "scope_cache",
    "scope_template": "scope_template",
}

_V5_HEADER = {"engine_type", "engine_id", "sampling_algorithm", "sampling_interval", "flow_records"}


def _header(event: Event, name: str, expected: Any, index: int) -> Outcome | None:
    """Header fields the codec copies into events; None if ``name`` is not one of them."""
    batch = event.batch

    def verdict(ours: Any, column: str) -> Outcome:
        return Outcome("pass" if ours == expected else "fail", name, index, expected, ours, column)

    if name == "version":
        return verdict(event.version, "version")
    if name == "flowset_id":
        return verdict(event.template_id, "template_id")
    if name == "flow_seq_num" and event.version in (5, 9):
        if batch is None:
            return Outcome("skip", name, index, expected, detail="OptionsRecord carries no header sequence")
        return verdict(batch.sequence, "sequence")
    if event.version != 5 or name not in _V5_HEADER:
        return None
    assert batch is not None
    if name == "engine_type":
        return verdict(batch.domain >> 8, "domain >> 8")
    if name == "engine_id":
        return verdict(batch.domain & 0xFF, "domain & 0xff")
    if name == "flow_records":
        return verdict(batch.count, "count")  # a v5 batch is one packet
    if name == "sampling_interval":
        # The header interval lands in the session options, and only when it samples (> 1).
        default = batch.options.sampling_default if batch.options is not None else None
        if default is None:
            ok = expected in (0, 1)
            return Outcome("pass" if ok else "fail", name, index, expected, None, "options.sampling_default")
        return verdict(int(default), "options.sampling_default")
    return Outcome("skip", name, index, expected, detail="v5 header sampling mode bits are not kept")


def compare(event: Event, name: str, expected: Any, index: int = -1) -> Outcome:
    """Compare one codec field of one event with our record."""
    head = _header(event, name, expected, index)
    if head is not None:
        return head
    values = event.values()
    if event.is_options and event.version == 9 and name in _V9_SCOPE_COLUMNS:
        column = _V9_SCOPE_COLUMNS[name]
        ours = values.get(column)
        return Outcome("pass" if ours == expected else "fail", name, index, expected, ours, column)
    if event.version == 5:
        elements = tuple(el for codec_name, el in V5_FIELDS if codec_name == name)
    else:
        elements = codec_candidates(event.version, name)
    element = next((el for el in elements if el.name in values), None)
    if element is None:
        why = "no such column in our record" if elements else "name unknown to the codec definitions"
        return Outcome("fail", name, index, expected, detail=why)
    column = element.name
    ours = values[column]
    element_type = event.types().get(column, element.type)
    if isinstance(expected, str) and _ISO.match(expected):
        return _compare_time(event, name, index, expected, ours, column, element_type)
    codec_type = _codec_v9_types().get(name) if event.version == 9 else None
    shown = codec_form(ours, element_type, codec_type)
    return Outcome("pass" if shown == expected else "fail", name, index, expected, shown, column)


def _compare_time(
    event: Event, name: str, index: int, expected: str, ours: Any, column: str, element_type: str
) -> Outcome:
    if not isinstance(ours, int):
        return Outcome("fail", name, index, expected, ours, column, "not an integer time")
    if element_type in _DATE_SCALE:
        ns = ours * _DATE_SCALE[element_type]
        how = f"{element_type} as an instant"
    elif name.endswith("_switched") and event.batch is not None and event.batch.sys_uptime_ms is not None:
        ns = codec_switched_ns(event.batch, ours)
        how = "sysUpTime ms through the codec's arithmetic"
    else:
        return Outcome("fail", name, index, expected, ours, column, f"no time conversion for {element_type}")
    status = "pass" if same_instant(expected, ns) else "fail"
    return Outcome(status, name, index, expected, _ns_iso(ns), column, how)


def _timestamp(event: Event, expected: str, index: int) -> Outcome:
    name = "@timestamp"
    if event.batch is None:
        return Outcome("skip", name, index, expected, detail="OptionsRecord carries no export time")
    # v5: seconds + nanoseconds (the codec keeps µs); v9/IPFIX: whole seconds.
    ns = event.batch.export_time * 1_000_000_000 + event.batch.export_nanos
    status = "pass" if same_instant(expected, ns) else "fail"
    return Outcome(status, name, index, expected, _ns_iso(ns), "export_time", "header export time")


# --------------------------------------------------------------------------- checks


def _quirk(case: VendorCase, index: int, name: str) -> CodecQuirk | None:
    return next(
        (q for q in CODEC_QUIRKS if (q.context, q.index, q.field) == (case.context, index, name)), None
    )


def check_field(case: VendorCase, events: Sequence[Event], index: int, name: str, expected: Any) -> Outcome:
    """Outcome of one expected field of one event (an assertion or a JSON event field)."""
    if index >= len(events):
        return Outcome("fail", name, index, expected, detail=f"only {len(events)} events")
    event = events[index]
    if isinstance(expected, str) and "#{nanos}" in expected:
        # The spec fills in "" where Logstash keeps milliseconds and the ns digits where it
        # keeps nanoseconds; "" leaves ".000", a millisecond-precision instant we can check.
        # (Case 32 asserts both forms spelled out.)
        expected = expected.replace("#{nanos}", "")
    quirk = _quirk(case, index, name)
    if quirk is None:
        return compare(event, name, expected, index)
    got = compare(event, name, quirk.ours, index)
    status = "quirk" if got.status == "pass" else "fail"
    return Outcome(status, name, index, expected, got.ours, got.column, quirk.reason)


_JSON_TOP_SKIP = {
    "@version": "Logstash event metadata",
    "host": "Logstash input metadata (the spec's sender address)",
}


def check_json(case: VendorCase, events: Sequence[Event]) -> list[Outcome]:
    """Outcome of every field of the spec's full JSON events."""
    out: list[Outcome] = []
    for index, doc in case.json_events:
        if index >= len(events):
            out.append(Outcome("fail", "*", index, None, detail=f"only {len(events)} events"))
            continue
        for key, value in doc.items():
            if key == "netflow":
                out.extend(check_field(case, events, index, k, v) for k, v in value.items())
            elif key in _JSON_TOP_SKIP:
                out.append(Outcome("skip", key, index, value, detail=_JSON_TOP_SKIP[key]))
            elif key == "@timestamp":
                out.append(_timestamp(events[index], value, index))
            else:
                out.append(Outcome("fail", key, index, value, detail="unexpected top-level key"))
    return out


# --------------------------------------------------------------------------- report


@dataclass(slots=True)
class CaseReport:
    """Everything the tests assert and the table shows about one case on one decoder path."""

    case: VendorCase
    fast_path: bool
    run: Replay
    codec_events: list[list[Event]]
    """Our events as the codec saw them, one list per decode step."""
    count_problems: list[str]
    assertions: list[Outcome]
    json: list[Outcome]

    @property
    def flows(self) -> int:
        """Flow records we decoded from the whole case."""
        return self.run.flows

    @property
    def options(self) -> int:
        """Options records we decoded from the whole case."""
        return self.run.options

    @property
    def failures(self) -> list[Outcome]:
        """Assertions and JSON fields that did not match."""
        return [o for o in (*self.assertions, *self.json) if not o.ok]


def _counts(case: VendorCase, run: Replay, fast_path: bool) -> tuple[list[list[Event]], list[str]]:
    problems: list[str] = []
    multi = MULTI_MESSAGE_FILES.get(case.files[0]) if len(case.files) == 1 else None
    if multi is not None:
        if (run.flows, run.options) != (multi.flows, multi.options):
            problems.append(
                f"whole file: {run.flows} flows + {run.options} options, want {multi.flows} + {multi.options}"
            )
        first = replay_datagrams([first_message(dat_bytes(case.files[0]))], fast_path=fast_path)
        if (first.flows, first.options) != (multi.first_flows, multi.first_options):
            problems.append(
                f"first packet: {first.flows} flows + {first.options} options, "
                f"want {multi.first_flows} + {multi.first_options}"
            )
        if len(first.events) != sum(case.expected_count):
            problems.append(f"first packet: {len(first.events)} events, codec {sum(case.expected_count)}")
        if not same_events(first.events, run.events[: len(first.events)]):
            problems.append("first packet's events differ from the first events of the whole file")
        return [first.events], problems
    parts = split_steps(case, run)
    if parts is None:
        problems.append(
            f"per-datagram events {[len(run.events_of(i)) for i in range(len(run.decoded))]} "
            f"do not add up to the steps {list(case.expected_count)}"
        )
        return [run.events], problems
    if case.expected_count:
        got = [len(p) for p in parts]
        if got != list(case.expected_count):
            problems.append(f"events per step {got} (flows + options), codec {list(case.expected_count)}")
        if run.flows + run.options != sum(case.expected_count):
            problems.append(f"{run.flows} flows + {run.options} options != {sum(case.expected_count)}")
    return parts, problems


def report(case: VendorCase, *, fast_path: bool) -> CaseReport:
    """Replay a case on one decoder path and compare everything the spec states."""
    run = replay(case, fast_path=fast_path)
    parts, problems = _counts(case, run, fast_path)
    internal = run.decoder.stats.error_count("internal_error")
    if internal:
        problems.append(f"{internal} internal errors")
    # Multi-step cases decode the same data in every step: each assertion must hold in each.
    assertions = [
        check_field(case, part, c.index, c.field, c.expected) for part in parts for c in case.checks
    ]
    json_out = check_json(case, parts[0])
    return CaseReport(case, fast_path, run, parts, problems, assertions, json_out)


def column_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality of two columns, dtype included (object and void columns too)."""
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
