"""Flow records from nfcapd files (nfdump archives), read through ``nfdump -r FILE -o json``.

nfcapd has already decoded the exports, so these files give flow records, not datagrams:
each becomes a :class:`~tunnelhound.normalize.records.FlowRecord` and goes into the
pipeline after decode (``FlowPipeline.process_records``).  nfdump's output is read as it is
written, a record at a time, so a month of archives never sits in memory.

Field names are nfdump 1.7's JSON output (``src/output/output_json.c``): ``first``/``last``
(local time of the nfdump process, with milliseconds: we run it with ``TZ=UTC0``),
``in_bytes``/``in_packets`` (source → destination), ``out_bytes``/``out_packets`` (the reply,
only for biflow/NSEL records), ``src4_addr``/``src6_addr``, ``src_port`` (absent for ICMP,
which has ``icmp_type``/``icmp_code``), ``tcp_flags`` as ``"...AP.SF"``, ``ip4_router``/
``ip6_router`` (the exporter).  nfcapd already multiplied sampled counters by the sampling
rate, so they arrive renormalized.
"""

from __future__ import annotations

import calendar
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import orjson

from tunnelhound.errors import SourceError
from tunnelhound.normalize.records import FlowRecord

__all__ = [
    "NfdumpStats",
    "is_nfcapd",
    "iter_nfdump_chunks",
    "iter_nfdump_records",
    "record_from_json",
]

log = logging.getLogger(__name__)

NFCAPD_MAGIC: Final = b"\x0c\xa5"
"""First two bytes of every nfcapd file: the uint16 0xA50C, little-endian."""
_LAYOUT_VERSIONS: Final = (1, 2)
"""File layout versions nfdump 1.6 (1) and 1.7 (2) write, in the next two bytes."""

_READ_BYTES: Final = 1 << 20
"""Bytes of nfdump output read at a time (about 2,000 records)."""
CHUNK: Final = 4096
"""Records per chunk handed to the pipeline: large enough for columnar work, small in memory."""

_FLAG_BITS: Final = (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)
"""``tcp_flags`` text is "CEUAPRSF", one character per bit from CWR down to FIN, "." if unset."""
_ICMP: Final = (1, 58)
_MISSING_HINT: Final = "install the 'nfdump' package (Debian/Ubuntu: apt install nfdump) to read nfcapd files"
_BAD_RECORD_LOG_LIMIT: Final = 5

# nfdump's JSON members kept under netflow.*, by the Elastic integration's names.
_NETFLOW_FIELD_NAMES: Final = (
    ("input_snmp", "ingress_interface"),
    ("output_snmp", "egress_interface"),
    ("src_tos", "ip_class_of_service"),
    ("fwd_status", "forwarding_status"),
    ("direction", "flow_direction"),
    ("src_mask", "source_{family}_prefix_length"),
    ("dst_mask", "destination_{family}_prefix_length"),
    ("src_vlan", "vlan_id"),
    ("src_as", "bgp_source_as_number"),
    ("dst_as", "bgp_destination_as_number"),
)
_NETFLOW_FIELDS: Final = {
    family: tuple((key, f'"{name.format(family=family)}":') for key, name in _NETFLOW_FIELD_NAMES)
    for family in ("ipv4", "ipv6")
}
"""Per address family: (nfdump member, JSON key text) pairs."""


@dataclass(slots=True)
class NfdumpStats:
    """What reading one or more nfcapd files gave."""

    records: int = 0
    bad_records: dict[str, int] = field(default_factory=dict)
    """Records skipped, by reason (first words of the error)."""


def is_nfcapd(head: bytes) -> bool:
    """Whether a file starting with ``head`` (at least 4 bytes) is an nfcapd file."""
    return head[:2] == NFCAPD_MAGIC and int.from_bytes(head[2:4], "little") in _LAYOUT_VERSIONS


def iter_nfdump_records(
    path: str | os.PathLike[str], stats: NfdumpStats | None = None
) -> Iterator[FlowRecord]:
    """Yield the flow records of one nfcapd file, in file order.

    Records nfdump prints but that cannot be used (no addresses, bad numbers) are counted in
    ``stats`` and logged, never fatal.  Raises :class:`SourceError` when nfdump is missing or
    fails on the file.
    """
    stats = stats if stats is not None else NfdumpStats()
    name = os.fspath(path)
    for index, obj in enumerate(_nfdump_objects(name)):
        try:
            if obj is None:
                raise ValueError("not JSON")
            record = record_from_json(obj, index)
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"missing {exc.args[0]}" if isinstance(exc, KeyError) else str(exc).split(":")[0]
            stats.bad_records[reason] = stats.bad_records.get(reason, 0) + 1
            if sum(stats.bad_records.values()) <= _BAD_RECORD_LOG_LIMIT:
                log.warning("%s: nfdump record %d skipped: %s", name, index, reason)
            continue
        stats.records += 1
        yield record


def iter_nfdump_chunks(
    path: str | os.PathLike[str], stats: NfdumpStats | None = None, size: int = CHUNK
) -> Iterator[list[FlowRecord]]:
    """The records of :func:`iter_nfdump_records` in lists of up to ``size``."""
    chunk: list[FlowRecord] = []
    for record in iter_nfdump_records(path, stats):
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def record_from_json(obj: dict[str, Any], index: int) -> FlowRecord:
    """One nfdump JSON record as a :class:`FlowRecord`; ``index`` is its position in the file.

    Raises ``KeyError``/``ValueError``/``TypeError`` for records without what a flow needs.
    """
    v6 = "src6_addr" in obj
    src, dst = (obj["src6_addr"], obj["dst6_addr"]) if v6 else (obj["src4_addr"], obj["dst4_addr"])
    proto = int(obj["proto"])
    icmp = proto in _ICMP
    router = obj.get("ip4_router") or obj.get("ip6_router") or "0.0.0.0"
    start_ns, end_ns = _time_ns(obj["first"]), _time_ns(obj["last"])
    in_bytes, in_packets = int(obj["in_bytes"]), int(obj["in_packets"])
    out_bytes, out_packets = int(obj.get("out_bytes", 0)), int(obj.get("out_packets", 0))
    src_port = None if icmp else int(obj.get("src_port", 0))
    dst_port = None if icmp else int(obj.get("dst_port", 0))
    flags = _flags(obj["tcp_flags"]) if "tcp_flags" in obj else None
    # What the record is and says: file order plus content, so one archive replayed twice
    # gives the same ids, and two records never share one even if they print alike.
    identity = (
        f"nfdump|{router}|{obj.get('export_sysid', '')}|{index}|{start_ns}|{end_ns}|"
        f"{src}|{src_port}|{dst}|{dst_port}|{proto}|{in_bytes}|{in_packets}|{out_bytes}|{out_packets}"
    )
    return FlowRecord(
        start_ns=start_ns,
        end_ns=end_ns,
        src_ip=src,
        dst_ip=dst,
        src_port=src_port,
        dst_port=dst_port,
        proto=proto,
        src_bytes=in_bytes,
        src_packets=in_packets,
        dst_bytes=out_bytes,
        dst_packets=out_packets,
        icmp_type=int(obj["icmp_type"]) if icmp else None,
        icmp_code=int(obj["icmp_code"]) if icmp else None,
        flags=flags,
        observer_ip=router,
        identity=identity,
        biflow=bool(out_bytes or out_packets),
        netflow=_netflow_members(obj, router, flags, "ipv6" if v6 else "ipv4"),
    )


# ----------------------------------------------------------------------------- pieces


def _nfdump_objects(path: str) -> Iterator[dict[str, Any] | None]:
    """The JSON objects ``nfdump -o json`` prints for ``path``, parsed a block at a time.

    nfdump prints one JSON array, objects separated by ``},\\n{``, each object's "{" and
    "}" on lines of their own; text outside objects ("No matching flows") is skipped.  Whole
    blocks of objects are parsed in one ``orjson`` call (a line-by-line reader spends more
    time splitting than parsing); None stands for an object that is not valid JSON.
    """
    exe = shutil.which("nfdump")
    if exe is None:
        raise SourceError(f"{path}: nfdump not found on PATH; {_MISSING_HINT}")
    env = {**os.environ, "TZ": "UTC0"}  # nfdump prints times in local time
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [exe, "-r", path, "-o", "json"], stdout=subprocess.PIPE, stderr=errors, env=env
        )
        assert proc.stdout is not None
        try:
            pending = b""
            while block := proc.stdout.read(_READ_BYTES):
                pending += block
                end = pending.rfind(b"\n}")  # the end of the last complete object
                start = pending.find(b"{")
                if end < 0 or start < 0:
                    continue
                yield from _parse_objects(pending[start : end + 2])
                pending = pending[end + 2 :]
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the consumer stopped early
                proc.kill()
                proc.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
    # nfdump 1.7.1 exits 0 even when it cannot open a file ("Open file X: appendix offset
    # error"), so its messages decide too.
    if code != 0 or "error" in message.lower():
        first = message.splitlines()[0] if message else f"exit status {code}"
        raise SourceError(f"{path}: nfdump cannot read it: {first}")
    if message:
        log.warning("%s: nfdump: %s", path, " / ".join(message.splitlines()))


def _parse_objects(block: bytes) -> list[dict[str, Any] | None]:
    """Objects ``{...},\\n{...}`` as a list; if the block is not valid JSON as a whole (a
    member nfdump did not escape, e.g. a user name with a quote), object by object, so one
    bad record costs only itself."""
    try:
        values = orjson.loads(b"[" + block + b"]")
    except orjson.JSONDecodeError:
        values = []
        for body in block[1:-2].split(b"\n},\n{"):
            try:
                values.append(orjson.loads(b"{" + body + b"\n}"))
            except orjson.JSONDecodeError:
                values.append(None)
    return [v if isinstance(v, dict) else None for v in values]


_SECONDS: dict[str, int] = {}


def _time_ns(text: str) -> int:
    """``2026-11-23T13:34:46.513`` (UTC) → ns since the epoch."""
    head, _, millis = text.partition(".")
    seconds = _SECONDS.get(head)
    if seconds is None:
        seconds = calendar.timegm(_parse_seconds(head))
        if len(_SECONDS) > 100_000:  # flows of one file share seconds; keep the cache bounded
            _SECONDS.clear()
        _SECONDS[head] = seconds
    return (seconds * 1000 + int(millis or 0)) * 1_000_000


def _parse_seconds(head: str) -> tuple[int, int, int, int, int, int]:
    date, _, clock = head.partition("T")
    year, month, day = (int(x) for x in date.split("-"))
    hour, minute, second = (int(x) for x in clock.split(":"))
    return year, month, day, hour, minute, second


@lru_cache(maxsize=512)
def _flags(text: str) -> int:
    """TCP flags from nfdump's "...AP.SF" form (or a number, as older versions print)."""
    if len(text) == 8 and not text.startswith("0x"):
        return sum(bit for bit, char in zip(_FLAG_BITS, text, strict=True) if char != ".")
    return int(text, 0)


def _netflow_members(obj: dict[str, Any], router: str, flags: int | None, family: str) -> str:
    """The ``netflow`` object body: the exporter, and nfdump's fields by their IE names."""
    parts = [f'"exporter":{{"address":{orjson.dumps(router).decode()}}}']
    if flags is not None:
        parts.append(f'"tcp_control_bits":{flags}')
    for key, name in _NETFLOW_FIELDS[family]:
        value = obj.get(key)
        if isinstance(value, int):
            parts.append(f"{name}{value}")
    return ",".join(parts)
