"""`tunnelhound run` in a subprocess for the service tests (test helper).

:class:`Collector` starts the collector on a free UDP port with its metrics on a free TCP
port, scrapes ``/metrics`` with prometheus_client's parser, stops it with a signal and reads
what it wrote.  ``stage=True`` runs it through a launcher that also registers the test
analysis stage of ``service_stage.py``; ``stage=False`` runs the plain CLI (the built-in
detections only).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sidecar"), str(ROOT / "tests")])}
LAUNCHER = (
    "import sys, service_stage; service_stage.install(); from tunnelhound.cli import main; sys.exit(main())"
)


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """`tunnelhound run -c config.yaml` (with the test stage unless ``stage=False``), its metrics on
    a free port; biflow stitching off unless ``biflow=True``."""

    def __init__(self, tmp: Path, *, workers: int, port: int | None = None, allowed: list[str] | None = None,
                 name: str = "run", extra: str = "", receive_buffer: int = 33554432,
                 prefix: tuple[str, ...] = (), stage: bool = True, biflow: bool = False) -> None:  # fmt: skip
        self.tmp, self.name = tmp, name
        self.port = port or _free_port(socket.SOCK_DGRAM)
        self.metrics_port = _free_port(socket.SOCK_STREAM)
        self.out = tmp / f"out-{name}"
        self.stage_out = tmp / f"stage-{name}.json"
        self.config = tmp / "config.yaml"
        self.extra, self.receive_buffer, self.biflow = extra, receive_buffer, biflow
        self.write_config(workers, allowed or [])
        env = {**ENV, "TH_TEST_STAGE_OUT": str(self.stage_out)}
        program = ("-c", LAUNCHER) if stage else ("-m", "tunnelhound")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, *program, "run", "-c", str(self.config), "-o", str(self.out)],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.log: list[str] = []
        for _ in range(20):  # a capped-buffer warning may come first
            line = self.proc.stderr.readline()
            self.log.append(line)
            if "listening on" in line or not line:
                break
        self.banner = self.log[-1]
        assert f"listening on 127.0.0.1:{self.port}" in self.banner, "".join(self.log)

    def write_config(self, workers: int, allowed: list[str]) -> None:
        self.config.write_text(
            f"state_dir: {self.tmp / 'state'}\n"
            f"inputs:\n  udp:\n    listen: ['127.0.0.1:{self.port}']\n    receive_buffer: {self.receive_buffer}\n"
            f"  allowed_exporters: {json.dumps(allowed)}\n"
            f"normalize:\n  biflow:\n    enabled: {json.dumps(self.biflow)}\n"
            f"service:\n  workers: {workers}\n  metrics_listen: 127.0.0.1:{self.metrics_port}\n"
            "  stats_interval: 0.1\n" + self.extra
        )

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.scrape().items() if n == name and want <= ls)

    def wait_for(self, name: str, expected: float, timeout: float = 30.0, **labels: str) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.value(name, **labels)) != expected:
            assert time.monotonic() < deadline, f"{name}{labels} = {got}, expected {expected}"
            time.sleep(0.1)

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        # Not communicate(timeout=...): it reads the raw pipe and would skip what readline buffered.
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert self.proc.returncode == 0, "".join(self.log) + err
        return "".join(self.log) + err

    def documents(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for f in sorted(self.out.glob("*.ndjson"))
            for line in f.read_bytes().splitlines()
        ]

    def stage(self) -> dict[str, Any]:
        return dict(json.loads(self.stage_out.read_text()))


def exporter(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    return sock


def send(sock: socket.socket, datagrams: list[bytes], port: int, per_ms: int = 20) -> None:
    """Send at a modest, bounded pace (``per_ms`` datagrams a millisecond at most)."""
    for i, data in enumerate(datagrams):
        sock.sendto(data, ("127.0.0.1", port))
        if i % per_ms == per_ms - 1:
            time.sleep(0.001)


def summary_number(text: str, phrase: str) -> int:
    """The number before ``phrase`` in the summary lines."""
    head = text.split(phrase)[0].rsplit(None, 1)[-1]
    return int(head)
