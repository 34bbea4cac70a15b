"""Soak: v9 and IPFIX over loopback at a fixed rate into ``tunnelhound run`` (issue 7, DESIGN §11).

Run from the repository root::

    PYTHONPATH=sidecar python bench/soak.py                          # 100,000 records/s, 60 s, 1 worker
    PYTHONPATH=sidecar python bench/soak.py --rate 50000 --duration 10 --workers 2
    PYTHONPATH=sidecar python bench/soak.py --search --duration 10   # highest lossless rate, 1 and 2 workers

The sender replays pre-built bench streams (:mod:`streams`) from ``--exporters`` source
sockets, half NetFlow v9, half IPFIX, paced by the clock in 1 ms steps; the collector runs
as its own process with the NDJSON sink (biflow stitching off, so documents equal records;
rotating files under ``/dev/shm`` keeping two, so a long run needs no gigabytes of disk).

Printed per run: records sent, received (decoded by the collector), kernel-dropped
datagrams (SO_RXQ_OVFL, read by the collector), records written (NDJSON lines), peak RSS
of the collector's processes, and RSS after warm-up (first quarter) against RSS at the end.
A run is lossless when written = sent.  ``--search`` raises the rate by half while runs stay
lossless, then bisects between the last lossless and the first lossy rate.
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
from dataclasses import asdict, dataclass
from pathlib import Path

from streams import build_ipfix, build_v9

ROOT = Path(__file__).resolve().parent.parent
STREAM_RECORDS = 200_000
"""Records per pre-built stream; the sender cycles through it (sequence numbers wrap then)."""


@dataclass(slots=True)
class SoakResult:
    """Figures of one run."""

    workers: int
    rate: int
    duration: float
    sent: int
    sent_rate: float
    received: int
    kernel_dropped_datagrams: int
    written: int
    drain_s: float
    """Seconds after the last send until the collector had written everything it would."""
    processed_rate: float
    """Written records over send time plus drain time: what the collector sustained."""
    peak_rss_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    load: str

    @property
    def lossless(self) -> bool:
        """Every record sent was written."""
        return self.written == self.sent and self.kernel_dropped_datagrams == 0

    def line(self) -> str:
        """One human line."""
        return (
            f"workers={self.workers} rate={self.rate}/s for {self.duration:.0f} s: sent {self.sent} "
            f"({self.sent_rate:,.0f}/s), received {self.received}, kernel-dropped {self.kernel_dropped_datagrams} "
            f"datagrams, written {self.written} (drained {self.drain_s:.1f} s after the last send: "
            f"{self.processed_rate:,.0f}/s processed); peak RSS {self.peak_rss_mb:.0f} MB, "
            f"RSS {self.rss_warm_mb:.0f} MB after warm-up -> {self.rss_end_mb:.0f} MB at the end; "
            f"{'lossless' if self.lossless else 'LOSS'} (load {self.load})"
        )


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its children."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(m.group(1)) * 1024 if m else 0
    return total


def soak(
    rate: int, duration: float, workers: int, exporters: int, receive_buffer: int = 33554432
) -> SoakResult:
    """One run: start the collector, send at ``rate`` records/s for ``duration`` s, stop it, count."""
    streams = [
        (build_v9 if i % 2 == 0 else build_ipfix)(STREAM_RECORDS // exporters, seed=1000 + i)
        for i in range(exporters)
    ]
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="tunnelhound-soak-", dir=base))
    port, mport = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    config = work / "config.yaml"
    config.write_text(
        f"state_dir: {work / 'state'}\n"
        f"inputs:\n  udp:\n    listen: ['127.0.0.1:{port}']\n    receive_buffer: {receive_buffer}\n"
        "normalize:\n  biflow:\n    enabled: false\n"
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
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in streams]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    # Round-robin over exporters, one datagram each; records per datagram vary a little
    # (template datagrams carry fewer), so pace on records actually sent.
    cursors = [0] * len(streams)
    sent = 0
    peak = warm = 0
    start = time.monotonic()
    next_sample = start
    turn = 0
    while (now := time.monotonic()) - start < duration:
        due = int(rate * (now - start))
        while sent < due:
            i = turn % len(streams)
            turn += 1
            stream = streams[i]
            data = stream.datagrams[cursors[i]]
            cursors[i] = (cursors[i] + 1) % len(stream.datagrams)
            socks[i].sendto(data, ("127.0.0.1", port))
            sent += _records(data, stream.version)
        if now >= next_sample:
            rss = _tree_rss(proc.pid)
            peak = max(peak, rss)
            if not warm and now - start >= duration / 4:
                warm = rss
            next_sample = now + 0.5
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    end_rss = _tree_rss(proc.pid)
    peak = max(peak, end_rss)
    drain = _drain(mport, sent, timeout=max(30.0, duration))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    err = proc.stderr.read()  # not communicate(): it would skip what readline buffered
    for s in socks:
        s.close()
    received = _number(err, r"(\d+) flow records")
    written = _number(err, r"(\d+) documents written")
    dropped = _number(err, r"kernel dropped (\d+) datagrams")
    shutil.rmtree(work, ignore_errors=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    return SoakResult(workers, rate, round(elapsed, 1), sent, sent / elapsed, received, dropped, written,
                      drain, written / (elapsed + drain), peak / 2**20, (warm or end_rss) / 2**20,
                      end_rss / 2**20, load)  # fmt: skip


def _drain(metrics_port: int, sent: int, timeout: float) -> float:
    """Seconds until the collector's written count reaches ``sent`` or stops moving for 1 s."""
    start = time.monotonic()
    last, still_since = -1.0, start
    while time.monotonic() - start < timeout:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        written = sum(
            float(m.group(1))
            for m in re.finditer(r"^tunnelhound_documents_total\{[^}]*\} (\S+)$", text, re.M)
        )
        now = time.monotonic()
        if written >= sent:
            return now - start
        if written != last:
            last, still_since = written, now
        elif now - still_since >= 1.0:
            return still_since - start
        time.sleep(0.05)
    return timeout


def _records(datagram: bytes, version: int) -> int:
    """Data records in one bench datagram: v9 counts the template record in its header."""
    if version == 9:
        count = int.from_bytes(datagram[2:4], "big")
        template_set = int.from_bytes(datagram[20:22], "big") == 0
        return count - 1 if template_set else count
    # IPFIX: walk the sets; the bench's data records are 56 bytes.
    pos, total = 16, 0
    while pos + 4 <= len(datagram):
        set_id = int.from_bytes(datagram[pos : pos + 2], "big")
        length = int.from_bytes(datagram[pos + 2 : pos + 4], "big")
        if set_id >= 256:
            total += (length - 4) // 56
        pos += max(length, 4)
    return total


def _number(text: str, pattern: str) -> int:
    m = re.search(pattern, text)
    if m is None:
        raise SystemExit(f"no {pattern!r} in the collector's output:\n{text}")
    return int(m.group(1))


def search(
    start: int, duration: float, workers: int, exporters: int, steps: int, receive_buffer: int
) -> tuple[int, list[SoakResult]]:
    """Highest lossless rate: grow by half while lossless, then bisect ``steps`` times."""
    runs: list[SoakResult] = []
    good, bad, rate = 0, 0, start
    for _ in range(steps * 3):
        result = soak(rate, duration, workers, exporters, receive_buffer)
        runs.append(result)
        print("  " + result.line(), flush=True)
        if result.lossless:
            good = rate
        else:
            bad = rate
        if (bad and bad - good <= max(1000, good // 20)) or len(runs) >= steps * 2:
            break
        rate = int(rate * 1.5) if not bad else (good + bad) // 2 if good else bad // 2
    return good, runs


def main() -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=100_000, help="records per second (default 100000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per run (default 60)")
    p.add_argument("--workers", type=int, default=1, help="collector worker processes (default 1)")
    p.add_argument("--exporters", type=int, default=4, help="sending sockets, half v9 half IPFIX (default 4)")
    p.add_argument(
        "--receive-buffer",
        type=int,
        default=33554432,
        help="collector's UDP receive buffer in bytes (default 32 MiB; a smaller one shows loss in short runs)",
    )
    p.add_argument("--search", action="store_true", help="find the highest lossless rate for 1 and 2 workers")
    p.add_argument("--steps", type=int, default=4, help="bisection steps of --search (default 4)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args()
    results: list[SoakResult] = []
    if args.search:
        best = {}
        for workers in (1, 2):
            print(f"search, {workers} worker(s):", flush=True)
            best[workers], runs = search(
                args.rate, args.duration, workers, args.exporters, args.steps, args.receive_buffer
            )
            results += runs
        for workers, rate in best.items():
            print(f"highest lossless rate with {workers} worker(s): {rate:,} records/s")
    else:
        result = soak(args.rate, args.duration, args.workers, args.exporters, args.receive_buffer)
        results.append(result)
        print(result.line())
    if args.json:
        print(json.dumps([asdict(r) | {"lossless": r.lossless} for r in results]))
    return 0 if all(r.lossless for r in results) or args.search else 1


if __name__ == "__main__":
    raise SystemExit(main())
