"""Soak: v9 and IPFIX over loopback at a fixed rate into ``tunnelhound run`` (issue 7, DESIGN §11).

Run from the repository root::

    PYTHONPATH=sidecar python bench/soak.py                          # 100,000 records/s, 60 s, 1 worker
    PYTHONPATH=sidecar python bench/soak.py --rate 50000 --duration 10 --workers 2
    PYTHONPATH=sidecar python bench/soak.py --search --duration 10   # highest lossless rate, 1 and 2 workers

The sender plays ``--exporters`` exporters (8; even ones NetFlow v9, odd ones IPFIX), each
from its own socket with its own source id or domain, each paced by the clock at its share
of the rate.  By default they export conversations: every response mirrors a request
(``streams`` ``paired=True``) and the collector stitches them (biflow on), as a router
exporting both directions does; ``--unpaired`` sends independent records with biflow off
(documents then equal records).  Flow times follow the wall clock: each exporter cycles a
short stream (:class:`streams.Cycle`) whose laps move on in time and sequence, so windows,
timeouts and the stitcher see time pass as in production.  The collector runs as its own
process with the default configuration (built-in rules loaded) and the NDJSON sink
(rotating files under ``/dev/shm`` keeping two, so a long run needs no gigabytes of disk).

Printed per run: records sent, received (decoded by the collector), kernel-dropped
datagrams, documents written, pairs stitched (each stands for two records in one document),
rows the analysis dropped, how long the collector took after the last send, and per
collector process (main, worker-N) CPU microseconds per record sent, peak RSS, RSS after
warm-up (first quarter) and at the end.  A run is lossless when every record sent was
decoded and is in a document (``written + stitched = sent``), nothing was dropped by the
kernel or on the way to the analysis.  ``--search`` raises the rate by half while runs stay
lossless, then bisects, within ``--steps`` runs and ``--budget`` seconds per worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streams import T0, Cycle, Stream, build_ipfix, build_v9

ROOT = Path(__file__).resolve().parent.parent
LAP_RECORDS = 50_000
"""Most records in one exporter's lap (its stream is built once, then cycled in time)."""
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class ProcessFigures:
    """One collector process over a run."""

    name: str
    cpu_us_per_record: float
    """User + system CPU between the first send and the end of the drain, per record sent."""
    peak_rss_mb: float
    rss_warm_mb: float
    rss_end_mb: float

    def line(self) -> str:
        """One human fragment."""
        return (
            f"{self.name}: {self.cpu_us_per_record:.1f} us CPU/record, peak RSS {self.peak_rss_mb:.0f} MB, "
            f"RSS {self.rss_warm_mb:.0f} MB after warm-up -> {self.rss_end_mb:.0f} MB at the end"
        )


@dataclass(slots=True)
class SoakResult:
    """Figures of one run."""

    workers: int
    rate: int
    duration: float
    paired: bool
    sent: int
    sent_rate: float
    received: int
    kernel_dropped_datagrams: int
    written: int
    stitched: int | None
    """Pairs stitched into one document; None when the collector does not report it."""
    analysis_dropped: int | None
    drain_s: float
    """Seconds after the last send until the collector had handled everything it would."""
    processed_rate: float
    """Records decoded over send time plus drain time: what the collector sustained."""
    processes: list[ProcessFigures] = field(default_factory=list)
    load: str = "?"

    @property
    def lossless(self) -> bool:
        """Every record sent was decoded and written (two to a stitched document), nothing dropped."""
        return (
            self.received == self.sent
            and self.kernel_dropped_datagrams == 0
            and (self.stitched is None or self.written + self.stitched == self.sent)
            and not self.analysis_dropped
        )

    def line(self) -> str:
        """One human line, then one per process."""
        stitched = "?" if self.stitched is None else self.stitched
        dropped = "?" if self.analysis_dropped is None else self.analysis_dropped
        head = (
            f"workers={self.workers} rate={self.rate}/s for {self.duration:.0f} s "
            f"({'paired, biflow on' if self.paired else 'unpaired, biflow off'}): sent {self.sent} "
            f"({self.sent_rate:,.0f}/s), received {self.received}, kernel-dropped {self.kernel_dropped_datagrams} "
            f"datagrams, written {self.written} + stitched {stitched}, analysis dropped {dropped} rows "
            f"(done {self.drain_s:.1f} s after the last send: {self.processed_rate:,.0f}/s processed); "
            f"{'lossless' if self.lossless else 'LOSS'} (load {self.load})"
        )
        return "\n".join([head, *("    " + p.line() for p in self.processes)])


class _Exporter:
    """One sending socket cycling its stream, paced at ``rate`` records/s from ``start``."""

    def __init__(self, index: int, rate: float, paired: bool) -> None:
        self.rate = rate
        lap_seconds = max(1, int(LAP_RECORDS / rate))
        records = max(1, int(rate * lap_seconds))
        if index % 2 == 0:
            stream = build_v9(records, seed=1000 + index, span_seconds=lap_seconds, paired=paired,
                              source_id=index + 1)  # fmt: skip
        else:
            stream = build_ipfix(records, seed=1000 + index, span_seconds=lap_seconds, paired=paired,
                                 domain=index + 1)  # fmt: skip
        self.stream = stream
        self.counts = [_records(d, stream) for d in stream.datagrams]
        self.lap_seconds = lap_seconds
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.cycle: Cycle | None = None
        self.datagrams: list[bytes] = []
        self.lap = self.cursor = self.sent = 0

    def begin(self, now_s: int) -> None:
        """Start the first lap with flows ending from ``now_s`` on."""
        self.cycle = Cycle(self.stream, self.lap_seconds, later=now_s - T0)  # built from T0 on
        self.datagrams = self.cycle.lap(0)

    def send_due(self, elapsed: float, port: int) -> None:
        """Send the datagrams due by ``elapsed`` seconds after the start."""
        assert self.cycle is not None
        due = self.rate * elapsed
        while self.sent < due:
            self.sock.sendto(self.datagrams[self.cursor], ("127.0.0.1", port))
            self.sent += self.counts[self.cursor]
            self.cursor += 1
            if self.cursor == len(self.datagrams):
                self.lap += 1
                self.cursor = 0
                self.datagrams = self.cycle.lap(self.lap)


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes(pid: int) -> dict[str, int]:
    """The collector's processes by name: main and its spawned workers, in start order."""
    found = {"main": pid}
    try:
        children = sorted(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return found
    workers = 0
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found[f"worker-{workers}"] = child
            workers += 1
    return found


def _status(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` in bytes (0 once the process is gone)."""
    try:
        m = re.search(rf"{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0
    return int(m.group(1)) * 1024 if m else 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def soak(
    rate: int, duration: float, workers: int, exporters: int, receive_buffer: int, paired: bool = True
) -> SoakResult:
    """One run: start the collector, send at ``rate`` records/s for ``duration`` s, stop it, count."""
    senders = [_Exporter(i, rate / exporters, paired) for i in range(exporters)]
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="tunnelhound-soak-", dir=base))
    port, mport = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    config = work / "config.yaml"
    config.write_text(
        f"state_dir: {work / 'state'}\n"
        f"inputs:\n  udp:\n    listen: ['127.0.0.1:{port}']\n    receive_buffer: {receive_buffer}\n"
        f"normalize:\n  biflow:\n    enabled: {'true' if paired else 'false'}\n"
        f"output:\n  ndjson:\n    path: {work / 'out'}\n    rotate_bytes: 268435456\n    max_files: 1\n"
        f"service:\n  workers: {workers}\n  metrics_listen: 127.0.0.1:{mport}\n  log_format: text\n"
        "  stats_interval: 0.1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelhound", "run", "-c", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=work,  # not bench/: its elasticsearch.py would shadow the client
    )
    assert proc.stderr is not None
    lines = [""]
    while "listening on" not in lines[-1]:
        lines.append(proc.stderr.readline())
        if not lines[-1]:
            raise SystemExit("collector did not start: " + "".join(lines) + proc.communicate()[1])
    pids = _processes(proc.pid)
    cpu0 = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    warm: dict[str, int] = {}
    for sender in senders:
        sender.begin(int(time.time()))
    start = time.monotonic()
    while (now := time.monotonic()) - start < duration:
        for sender in senders:
            sender.send_due(now - start, port)
        if not warm and now - start >= duration / 4:
            warm = {name: _status(pid, "VmRSS") for name, pid in pids.items()}
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    sent = sum(s.sent for s in senders)
    end_rss = {name: _status(pid, "VmRSS") for name, pid in pids.items()}
    drain = _drain(mport, sent, timeout=max(30.0, duration))
    figures = [
        ProcessFigures(name, (_cpu_seconds(pid) - cpu0[name]) / max(sent, 1) * 1e6, _status(pid, "VmHWM") / 2**20,
                       warm.get(name, end_rss[name]) / 2**20, end_rss[name] / 2**20)
        for name, pid in pids.items()
    ]  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    err = proc.stderr.read()  # not communicate(): it would skip what readline buffered
    for sender in senders:
        sender.sock.close()
    shutil.rmtree(work, ignore_errors=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    received = _number(err, r"(\d+) flow records")
    return SoakResult(
        workers, rate, round(elapsed, 1), paired, sent, sent / elapsed, received,
        _number(err, r"kernel dropped (\d+) datagrams"), _number(err, r"(\d+) documents written"),
        _maybe(err, r"biflow stitched (\d+) pairs"), _maybe(err, r"analysis dropped (\d+) rows"),
        drain, received / (elapsed + drain), figures, load,
    )  # fmt: skip


_DRAIN_METRICS = ("records", "documents", "biflow_stitched", "biflow_pending", "analysis_rows",
                  "analysis_dropped_rows")  # fmt: skip


def _drain(metrics_port: int, sent: int, timeout: float) -> float:
    """Seconds until the collector has decoded ``sent`` records and written, stitched or held
    every one, and the analysis has seen every document; or until nothing moved for 5 s (a
    worker reports between rounds of 1,024 datagrams, which take seconds on a loaded core)."""
    start = time.monotonic()
    last: dict[str, float] = {}
    still_since = start
    while time.monotonic() - start < timeout:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        m = {
            name: sum(
                float(x.group(1))
                for x in re.finditer(rf"^tunnelhound_{name}(?:_total)?(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
            )
            for name in _DRAIN_METRICS
        }
        now = time.monotonic()
        analysed = m["analysis_rows"] + m["analysis_dropped_rows"]
        if (
            m["records"] >= sent
            and m["documents"] + m["biflow_stitched"] + m["biflow_pending"] >= m["records"]
            and (analysed == 0 or analysed >= m["documents"])
        ):
            return now - start
        if m != last:
            last, still_since = m, now
        elif now - still_since >= 5.0:
            return still_since - start
        time.sleep(0.05)
    return timeout


def _records(datagram: bytes, stream: Stream) -> int:
    """Data records in one bench datagram: v9 counts the template record in its header."""
    if stream.version == 9:
        count = int.from_bytes(datagram[2:4], "big")
        template_set = int.from_bytes(datagram[20:22], "big") == 0
        return count - 1 if template_set else count
    pos, total = 16, 0
    while pos + 4 <= len(datagram):
        set_id = int.from_bytes(datagram[pos : pos + 2], "big")
        length = int.from_bytes(datagram[pos + 2 : pos + 4], "big")
        if set_id >= 256:
            total += (length - 4) // stream.record_length
        pos += max(length, 4)
    return total


def _number(text: str, pattern: str) -> int:
    value = _maybe(text, pattern)
    if value is None:
        raise SystemExit(f"no {pattern!r} in the collector's output:\n{text}")
    return value


def _maybe(text: str, pattern: str) -> int | None:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def search(
    start: int,
    duration: float,
    workers: int,
    exporters: int,
    receive_buffer: int,
    paired: bool,
    limits: tuple[int, float],
) -> tuple[int, list[SoakResult]]:
    """Highest lossless rate: grow by half while lossless, then bisect; ``limits`` is (most
    runs, seconds after which no run starts)."""
    runs: list[SoakResult] = []
    good, bad, rate = 0, 0, start
    began = time.monotonic()
    steps, budget = limits
    while len(runs) < steps and time.monotonic() - began < budget:
        result = soak(rate, duration, workers, exporters, receive_buffer, paired)
        runs.append(result)
        print("  " + result.line(), flush=True)
        if result.lossless:
            good = rate
        else:
            bad = rate
        if bad and bad - good <= max(1000, good // 20):
            break
        rate = int(rate * 1.5) if not bad else (good + bad) // 2 if good else bad // 2
    return good, runs


def main() -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=100_000, help="records per second (default 100000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per run (default 60)")
    p.add_argument("--workers", type=int, default=1, help="collector worker processes (default 1)")
    p.add_argument("--exporters", type=int, default=8, help="sending sockets, half v9 half IPFIX (default 8)")
    p.add_argument("--unpaired", action="store_true", help="independent records, biflow off (the old soak)")
    p.add_argument(
        "--receive-buffer",
        type=int,
        default=33554432,
        help="collector's UDP receive buffer in bytes (default 32 MiB; a smaller one shows loss in short runs)",
    )
    p.add_argument("--search", action="store_true", help="find the highest lossless rate for 1 and 2 workers")
    p.add_argument("--steps", type=int, default=6, help="most runs of --search per worker count (default 6)")
    p.add_argument(
        "--budget", type=float, default=900.0, help="seconds of --search per worker count (default 900)"
    )
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args()
    results: list[SoakResult] = []
    if args.search:
        best = {}
        for workers in (1, 2):
            print(f"search, {workers} worker(s):", flush=True)
            best[workers], runs = search(
                args.rate, args.duration, workers, args.exporters, args.receive_buffer, not args.unpaired,
                (args.steps, args.budget),
            )  # fmt: skip
            results += runs
        for workers, rate in best.items():
            print(f"highest lossless rate with {workers} worker(s): {rate:,} records/s")
    else:
        result = soak(
            args.rate, args.duration, args.workers, args.exporters, args.receive_buffer, not args.unpaired
        )
        results.append(result)
        print(result.line())
    if args.json:
        print(json.dumps([asdict(r) | {"lossless": r.lossless} for r in results]))
    return 0 if all(r.lossless for r in results) or args.search else 1


if __name__ == "__main__":
    raise SystemExit(main())
