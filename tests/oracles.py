"""Real-exporter oracles: softflowd makes NetFlow/IPFIX from a capture, tshark decodes it.

``run_softflowd`` -> ``write_export_pcap`` -> ``tshark_flows`` gives, for any packet
capture, the flow records a real exporter sent and what an independent decoder reads in
them; the decoder's tests compare their own output with that, record for record.

Both tools are Debian packages (``softflowd`` 1.1.0, ``tshark`` 4.0); a missing tool is an
:class:`OracleError`, never a skip, because CI installs them.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from traffic import Packet, udp_frame, write_pcap

__all__ = [
    "CFLOW_PORTS",
    "FLOW_KEYS",
    "OracleError",
    "require_tool",
    "run_softflowd",
    "softflowd_summary",
    "tshark_flows",
    "tshark_json",
    "write_export_pcap",
]

CFLOW_PORTS = {5: 2055, 9: 2055, 10: 4739}
"""UDP port per export version on which tshark's cflow dissector applies by default."""
EXPORT_SRC_PORT = 9995
"""Source port of the exporter in pcaps written by :func:`write_export_pcap`."""

_POKE_INTERVAL = 0.1
_QUIET_AFTER_EXIT = 0.3
_MAX_UNIX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


class OracleError(RuntimeError):
    """An oracle tool is missing, failed, or timed out; the message carries its stderr."""


def require_tool(name: str) -> str:
    """Return the path of executable ``name`` or raise :class:`OracleError` saying how to get it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        package = {"softflowctl": "softflowd", "capinfos": "tshark"}.get(name, name)
        raise OracleError(
            f"{name} not found: install it (apt-get install {package}); the oracle tests need it"
        )
    return path


# --------------------------------------------------------------------------- softflowd


def run_softflowd(
    pcap: Path,
    version: int,
    workdir: Path,
    *,
    biflow: bool = False,
    sampling: int | None = None,
    timeout: float = 60,
    adjust_time: bool = True,
    timeouts: Mapping[str, str] | None = None,
) -> list[tuple[bytes, float]]:
    """Export ``pcap`` with softflowd to a local UDP socket; return (payload, arrival time) in order.

    Runs ``softflowd -r PCAP -n 127.0.0.1:PORT -v VERSION -A milli -c CTL -p PID -d [-a] [-b]
    [-s N] [-t name=value ...]``.  ``-a`` (default on) makes softflowd take its clock from the
    capture: without it v5/v9 ``first``/``last`` (sysUpTime-relative) are computed against
    the wall clock at start-up and wrap into nonsense, and every export header carries the
    wall clock.  ``-b`` (IPFIX only) exports one biflow record per flow; ``-s N`` samples one
    packet in N.  softflowd's stdout (its final statistics, see :func:`softflowd_summary`)
    and stderr are kept as ``softflowd.stdout``/``softflowd.stderr`` in ``workdir``.

    softflowd 1.1.0 quirk in ``-r`` mode with a control socket: its main loop blocks in
    ``poll()`` on the control socket and reads the capture only after a control command
    arrives; at end of file it expires ("flushed") and exports all flows and exits by
    itself.  So we poke it with ``softflowctl -c CTL statistics`` until it exits.  Sending
    ``shutdown`` first would make it exit without reading a single packet.  (With
    ``-c none`` it would not block at all.)

    Other things softflowd 1.1.0 puts in its exports: the options record's interface name
    is the first 16 bytes of the ``-r`` path and the IPFIX meteringProcessId is its pid
    (mask both in golden files); v5 mode ignores IPv6 packets (counted as "non-IP").
    """
    softflowd = require_tool("softflowd")
    softflowctl = require_tool("softflowctl")
    if not pcap.is_file():
        raise OracleError(f"no capture at {pcap}")
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = workdir / "softflowd.stdout", workdir / "softflowd.stderr"

    with tempfile.TemporaryDirectory(prefix="sfd") as short_dir, _udp_listener() as sock:
        # A Unix socket path must fit sun_path; pytest's tmp_path may not.
        ctl = workdir / "softflowd.ctl"
        if len(str(ctl)) > _MAX_UNIX_SOCKET_PATH:
            ctl = Path(short_dir) / "ctl"
        ctl.unlink(missing_ok=True)  # a stale socket file from a killed run
        port = sock.getsockname()[1]
        cmd = [softflowd, "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", str(version), "-A", "milli"]
        cmd += ["-c", str(ctl), "-p", str(workdir / "softflowd.pid"), "-d"]
        if adjust_time:
            cmd.append("-a")
        if biflow:
            cmd.append("-b")
        if sampling is not None:
            cmd += ["-s", str(sampling)]
        for name, value in (timeouts or {}).items():
            cmd += ["-t", f"{name}={value}"]

        datagrams: list[tuple[bytes, float]] = []
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            next_poke = 0.0
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if now > deadline:
                        raise OracleError(
                            f"softflowd did not finish within {timeout} s: {_describe(cmd, stderr_path)}"
                        )
                    if now >= next_poke and ctl.exists():
                        # Errors are expected while it shuts down; it's only a wake-up call.
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            subprocess.run(
                                [softflowctl, "-c", str(ctl), "statistics"],
                                capture_output=True,
                                timeout=10,
                                check=False,
                            )
                        next_poke = time.monotonic() + _POKE_INTERVAL
                    _receive(sock, datagrams, wait=0.02)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        # Datagrams sent just before exit may still sit in the socket buffer.
        while _receive(sock, datagrams, wait=_QUIET_AFTER_EXIT):
            pass
    if proc.returncode != 0:
        raise OracleError(f"softflowd exited with {proc.returncode}: {_describe(cmd, stderr_path)}")
    if not datagrams:
        raise OracleError(f"softflowd sent no export datagrams: {_describe(cmd, stderr_path)}")
    return datagrams


def softflowd_summary(workdir: Path) -> dict[str, int]:
    """Parse the statistics softflowd printed at exit (in ``workdir/softflowd.stdout``).

    Keys: ``packets_processed``, ``ignored_packets``, ``flows_expired``,
    ``flows_exported``, ``records_exported`` (v9/IPFIX records, two per flow when both
    directions carried traffic and not ``-b``), ``export_packets``, ``export_failures``.
    """
    text = (workdir / "softflowd.stdout").read_text()
    patterns = {
        "packets_processed": r"Packets processed: (\d+)",
        "ignored_packets": r"Ignored packets: (\d+)",
        "flows_expired": r"Flows expired: (\d+)",
        "flows_exported": r"Flows exported: (\d+)",
        "records_exported": r"Flows exported: \d+ \((\d+) records\)",
        "export_packets": r"Flows exported: .* in (\d+) packets",
        "export_failures": r"Flows exported: .*\((\d+) failures\)",
    }
    summary: dict[str, int] = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        if match is None:
            raise OracleError(f"softflowd statistics lack {key!r}:\n{text}")
        summary[key] = int(match.group(1))
    return summary


@contextlib.contextmanager
def _udp_listener() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1, ephemeral port, with a large receive buffer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock


def _receive(sock: socket.socket, datagrams: list[tuple[bytes, float]], *, wait: float) -> int:
    """Append what is waiting (waiting up to ``wait`` s for the first); return how many."""
    count = 0
    ready, _, _ = select.select([sock], [], [], wait)
    while ready:
        try:
            payload = sock.recv(65535)
        except BlockingIOError:
            break
        datagrams.append((payload, time.time()))
        count += 1
    return count


def _describe(cmd: list[str], stderr_path: Path) -> str:
    stderr = stderr_path.read_text(errors="replace").strip() if stderr_path.exists() else ""
    return f"{' '.join(cmd)}\nstderr:\n{stderr or '(empty)'}"


# --------------------------------------------------------------------------- export pcap


def write_export_pcap(
    datagrams: Iterable[tuple[bytes, float]], path: Path, dst_port: int, *, src_port: int = EXPORT_SRC_PORT
) -> int:
    """Write export datagrams as Ethernet/IPv4/UDP 127.0.0.1:src_port -> 127.0.0.1:dst_port.

    Timestamps are the arrival times; UDP checksums are left 0 (valid for IPv4).  Returns
    the number of packets written.
    """
    packets = (
        Packet(
            round(arrival * 1_000_000),
            udp_frame("127.0.0.1", "127.0.0.1", src_port, dst_port, payload, checksum=False),
        )
        for payload, arrival in datagrams
    )
    return write_pcap(packets, path)


# --------------------------------------------------------------------------- tshark

FLOW_KEYS = (
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "protocol",
    "octets",
    "packets",
    "start_ms",
    "end_ms",
)
"""Keys every dict from :func:`tshark_flows` has (besides the extras documented there)."""

_ABSTIME = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}), (\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? UTC$")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


def tshark_json(pcap: Path, port: int) -> list[dict[str, Any]]:
    """Run ``tshark -r PCAP -T json --no-duplicate-keys -d udp.port==PORT,cflow``; return its packets.

    ``TZ=UTC`` and ``LC_ALL=C`` make absolute times print as ``Jun  1, 2024 10:01:54.052000000 UTC``.
    """
    tshark = require_tool("tshark")
    cmd = [tshark, "-r", str(pcap), "-T", "json", "--no-duplicate-keys", "-d", f"udp.port=={port},cflow"]
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    try:
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OracleError(f"tshark timed out: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise OracleError(
            f"tshark exited with {proc.returncode}: {' '.join(cmd)}\n{proc.stderr.decode(errors='replace')}"
        )
    packets: list[dict[str, Any]] = json.loads(proc.stdout)
    return packets


def tshark_flows(pcap: Path, port: int) -> list[dict[str, Any]]:
    """Decode an export pcap with tshark; one normalized dict per flow record.

    Records come in packet order, then set/flowset order, then record order.  Template,
    options-template and options-data records are not returned (options data only feeds
    the sampling keys).  Keys (see :data:`FLOW_KEYS`):

    * ``src_addr``/``dst_addr`` (str): ``cflow.srcaddr``/``cflow.dstaddr``, or
      ``cflow.srcaddrv6``/``cflow.dstaddrv6`` for IPv6.
    * ``src_port``/``dst_port`` (int): ``cflow.srcport``/``cflow.dstport``.  ICMP records
      have no ports in v9/IPFIX; they get the v5 convention ``src_port=0``,
      ``dst_port=type*256+code`` from ``cflow.icmp_type_code_ipv4`` (hex) or
      ``cflow.icmp_ipv6_type``/``cflow.icmp_ipv6_code``.
    * ``protocol``, ``octets``, ``packets`` (int): ``cflow.protocol``, ``cflow.octets``,
      ``cflow.packets`` (for a biflow, the first value of the list).
    * ``start_ms``/``end_ms`` (int, Unix ms): ``cflow.timedelta_tree`` ->
      ``cflow.abstimestart``/``cflow.abstimeend`` when the template has absolute times
      (flowStart/EndMilliseconds: softflowd ``-A milli`` for v9 and IPFIX); otherwise
      (v5) header time minus uptime plus the record's uptime-relative
      ``cflow.timestart``/``cflow.timeend``: header time is ``cflow.timestamp_tree`` ->
      ``cflow.unix_secs`` (+ ``cflow.unix_nsecs`` in v5), uptime ``cflow.sysuptime``
      (seconds with 9 decimals).

    Extras: ``version`` (``cflow.version``), ``frame`` (``frame.number``), ``tcp_flags``
    (int from ``cflow.tcpflags``, None without), ``sampling_interval`` (1-in-N, or None
    while unknown) and ``sampling_algorithm``, taken from the v5 header
    (``cflow.samplerate``, ``cflow.samplingmode``; rate 0 means 1) or the latest
    options-data record of the same exporter (v9: ``cflow.sampling_interval``,
    ``cflow.sampling_algorithm``; IPFIX: N = (``cflow.sampling_packet_interval`` +
    ``cflow.sampling_packet_space``) / interval, ``cflow.selector_algorithm``).  Biflow
    IPFIX records (RFC 5103, PEN 29305) also have ``rev_octets``, ``rev_packets`` and
    ``rev_tcp_flags``: tshark 4.0 shows reverse elements under the forward names, so
    with ``--no-duplicate-keys`` ``cflow.octets`` etc. become ``[forward, reverse]``.

    JSON layout (tshark 4.0): ``layers.cflow`` holds header fields (``cflow.*``) and one
    subtree per v5 record (``"pdu 3/30"``) or per set (v9 ``"FlowSet 7 [id=1024] (10
    flows)"``, IPFIX ``"Set 7 [id=1024] (10 flows)"``) with ``cflow.flowset_id`` and
    records ``"Flow 1"``, ``"Flow 2"`` ...; set ids 0/1 (v9) and 2/3 (IPFIX) are
    templates.
    """
    flows: list[dict[str, Any]] = []
    sampling: dict[tuple[str, int], tuple[int | None, int | None]] = {}
    for packet in tshark_json(pcap, port):
        layers = packet["_source"]["layers"]
        frame = int(_one(layers["frame"]["frame.number"]))
        exporter = f"{_one(layers['ip']['ip.src'])}:{_one(layers['udp']['udp.srcport'])}"
        cflows = layers.get("cflow")
        if cflows is None:
            raise OracleError(f"{pcap} frame {frame}: tshark found no cflow layer on port {port}")
        for cflow in cflows if isinstance(cflows, list) else [cflows]:
            flows.extend(_message_flows(cflow, frame, exporter, sampling))
    return flows


def _message_flows(
    cflow: dict[str, Any],
    frame: int,
    exporter: str,
    sampling: dict[tuple[str, int], tuple[int | None, int | None]],
) -> list[dict[str, Any]]:
    version = int(_one(cflow["cflow.version"]))
    stamp = cflow["cflow.timestamp_tree"]
    if version == 10:
        domain = int(_one(cflow["cflow.od_id"]))
        header_ms, uptime_ms = int(_one(stamp["cflow.exporttime"])) * 1000, None
    else:
        domain = int(_one(cflow.get("cflow.source_id", "0")))
        nsecs = int(_one(stamp.get("cflow.unix_nsecs", "0")))
        header_ms = int(_one(stamp["cflow.unix_secs"])) * 1000 + nsecs // 1_000_000
        uptime_ms = _seconds_to_ms(_one(cflow["cflow.sysuptime"]))

    records: list[dict[str, Any]] = []
    if version == 5:
        mode, rate = int(_one(cflow["cflow.samplingmode"])), int(_one(cflow["cflow.samplerate"]))
        sampling[(exporter, domain)] = (rate or 1, mode)
        records = [v for k, v in cflow.items() if k.startswith("pdu ")]
    else:
        for key, flowset in cflow.items():
            if key.startswith("cflow."):
                continue
            for fs in flowset if isinstance(flowset, list) else [flowset]:
                if not isinstance(fs, dict) or int(_one(fs["cflow.flowset_id"])) < 256:
                    continue  # template / options template sets
                for rkey, record in fs.items():
                    if not rkey.startswith("Flow "):
                        continue
                    for rec in record if isinstance(record, list) else [record]:
                        if "cflow.packets" in rec or "cflow.octets" in rec:
                            records.append(rec)
                        else:
                            _update_sampling(rec, sampling, (exporter, domain))

    interval, algorithm = sampling.get((exporter, domain), (None, None))
    flows = []
    for rec in records:
        flow = _normalize(rec, header_ms, uptime_ms)
        flow.update(version=version, frame=frame, sampling_interval=interval, sampling_algorithm=algorithm)
        flows.append(flow)
    return flows


def _update_sampling(
    rec: dict[str, Any], sampling: dict[tuple[str, int], tuple[int | None, int | None]], key: tuple[str, int]
) -> None:
    if "cflow.sampling_interval" in rec:  # v9 options (SAMPLING_INTERVAL 34, SAMPLING_ALGORITHM 35)
        algorithm = rec.get("cflow.sampling_algorithm")
        sampling[key] = (
            int(_one(rec["cflow.sampling_interval"])),
            None if algorithm is None else int(_one(algorithm)),
        )
    elif "cflow.sampling_packet_interval" in rec:  # IPFIX options (IE 305, 306, 304)
        taken = int(_one(rec["cflow.sampling_packet_interval"]))
        skipped = int(_one(rec.get("cflow.sampling_packet_space", "0")))
        algorithm = rec.get("cflow.selector_algorithm")
        sampling[key] = ((taken + skipped) // taken, None if algorithm is None else int(_one(algorithm)))


def _normalize(rec: dict[str, Any], header_ms: int, uptime_ms: int | None) -> dict[str, Any]:
    protocol = int(_one(rec["cflow.protocol"]))
    src = rec.get("cflow.srcaddr", rec.get("cflow.srcaddrv6"))
    dst = rec.get("cflow.dstaddr", rec.get("cflow.dstaddrv6"))
    if src is None or dst is None:
        raise OracleError(f"flow record without addresses: {rec}")
    if "cflow.srcport" in rec or "cflow.dstport" in rec:
        sport, dport = int(_one(rec.get("cflow.srcport", "0"))), int(_one(rec.get("cflow.dstport", "0")))
    elif "cflow.icmp_type_code_ipv4" in rec:
        sport, dport = 0, int(_one(rec["cflow.icmp_type_code_ipv4"]), 16)
    elif "cflow.icmp_ipv6_type" in rec:
        icmp_type = int(_one(rec["cflow.icmp_ipv6_type"]))
        sport, dport = 0, icmp_type << 8 | int(_one(rec.get("cflow.icmp_ipv6_code", "0")))
    else:
        sport = dport = 0

    times = rec.get("cflow.timedelta_tree", {})
    if "cflow.abstimestart" in times:
        start_ms, end_ms = (
            _abstime_to_ms(_one(times["cflow.abstimestart"])),
            _abstime_to_ms(_one(times["cflow.abstimeend"])),
        )
    elif "cflow.timestart" in times and uptime_ms is not None:
        boot_ms = header_ms - uptime_ms
        start_ms = boot_ms + _seconds_to_ms(_one(times["cflow.timestart"]))
        end_ms = boot_ms + _seconds_to_ms(_one(times["cflow.timeend"]))
    else:
        raise OracleError(f"flow record without start/end times: {rec}")

    octets, packets, flags = (
        rec.get("cflow.octets", "0"),
        rec.get("cflow.packets", "0"),
        rec.get("cflow.tcpflags"),
    )
    flow: dict[str, Any] = {
        "src_addr": _one(src),
        "dst_addr": _one(dst),
        "src_port": sport,
        "dst_port": dport,
        "protocol": protocol,
        "octets": int(_one(octets)),
        "packets": int(_one(packets)),
        "start_ms": start_ms,
        "end_ms": end_ms,
        "tcp_flags": None if flags is None else int(_one(flags), 16),
    }
    if isinstance(octets, list) or isinstance(packets, list):  # biflow: [forward, reverse]
        flow["rev_octets"] = int(octets[1]) if isinstance(octets, list) else 0
        flow["rev_packets"] = int(packets[1]) if isinstance(packets, list) else 0
        flow["rev_tcp_flags"] = int(flags[1], 16) if isinstance(flags, list) else None
    return flow


def _one(value: Any) -> str:
    """The first value of a field (``--no-duplicate-keys`` turns repeats into lists)."""
    if isinstance(value, list):
        return str(value[0])
    return str(value)


def _seconds_to_ms(text: str) -> int:
    """``"586.686000000"`` -> 586686, exactly (no float rounding)."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


def _abstime_to_ms(text: str) -> int:
    """``"Jun  1, 2024 10:01:54.052000000 UTC"`` -> Unix milliseconds (truncating below 1 ms)."""
    match = _ABSTIME.match(text)
    if match is None:
        raise OracleError(f"unexpected tshark absolute time {text!r} (is TZ=UTC honoured?)")
    mon, day, year, hh, mm, ss, frac = match.groups()
    seconds = calendar.timegm((int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), 0, 0, 0))
    return seconds * 1000 + int(((frac or "") + "000")[:3])
