"""Documents/s from the sidecar's Elasticsearch sink beside a raw ``_bulk`` of the same documents.

Run from the repository root::

    PYTHONPATH=sidecar python bench/elasticsearch.py               # 500,000 flows, a table
    PYTHONPATH=sidecar python bench/elasticsearch.py --json        # the same as one JSON object
    PYTHONPATH=sidecar python bench/elasticsearch.py --profile     # + where the sink spends its time

Issue 3, acceptance point 7: the sink's rate into the node must reach **≥ 90 %** of the rate a
plain client reaches posting the same documents, pre-serialized, to the same node in the same run.

* The node: ``scripts/start-elasticsearch.sh --port 9230 --heap 1g`` unless something already
  answers there (then it is used as it is, and left running); templates from ``install_assets``.
* The documents: ``--records`` flows from ``streams.py`` (half NetFlow v9, half IPFIX by
  default), decoded and normalized once, untimed, into :class:`FlowFrame` chunks of ``--chunk``
  datagrams, as ``tunnelhound replay`` does.
* **raw**: the frames' ``bulk_pairs`` (create, ``_id`` = ``event.id``) joined into bodies of
  ``--batch-docs`` documents *before* the clock starts, then posted by ``--senders`` threads,
  each with its own keep-alive ``http.client`` connection (``--raw-client es``: the official
  client's ``bulk(operations=bytes)``), until every body is acknowledged.
* **sidecar**: a fresh :class:`ElasticsearchSink` (same ``batch_docs`` and ``senders``, spool in
  a fresh directory under ``--spool-dir``, on disk by default) gets ``write_frame`` for every
  frame; the clock runs from the first write until ``close()`` returns with every document
  acknowledged (``metrics()``).  Encoding, the spool's fsyncs and the requests are all inside.

Both clocks stop after a ``_refresh`` of the stream.  Each measurement writes into a data stream
of its own (this node cannot delete data streams), ``_count`` must equal ``--records`` for every
one of them, and the order alternates (raw first on odd rounds, sidecar first on even ones).  The
best of ``--repeat`` rounds is kept for each side.
"""

from __future__ import annotations

import os
import sys

# This file is named like the client package it measures: when run as a script its directory
# comes first on sys.path and `import elasticsearch` (in the sink) would find this file.  Move
# the directory to the end (stable sort), where `streams` is still found.
sys.path.sort(key=lambda p: os.path.realpath(p or ".") == os.path.dirname(os.path.realpath(__file__)))

import argparse
import contextlib
import gc
import http.client
import importlib.util
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
import orjson

import tunnelhound.sinks.elasticsearch as es_sink
from machine import dist_version
from machine import machine as common_machine
from streams import Stream, build_ipfix, build_v9, describe
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.setup.elasticsearch import install_assets
from tunnelhound.sinks.elasticsearch import ElasticsearchSink, bulk_pairs, flow_index

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.90
"""Issue 3, acceptance 7: the sink reaches at least 90 % of the raw ``_bulk`` rate."""
DEFAULT_PORT = 9230
RAW_FILTER_PATH = "errors,items.*.error"
"""A raw response keeps only the items that failed (none, when all is well)."""


def _load_es_server() -> ModuleType:
    """``tests/es_server.py`` (start/stop script paths, health, urllib requests), by path."""
    spec = importlib.util.spec_from_file_location(
        "tunnelhound_bench_es_server", ROOT / "tests" / "es_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


es_server = _load_es_server()


# --------------------------------------------------------------------------- the node


@dataclass(slots=True)
class Node:
    url: str
    port: int
    started: bool
    start_seconds: float | None


def ensure_node(port: int, heap: str, timeout: int) -> Node:
    """The node on ``port``: reused when it answers, else started with the script (``--heap``)."""
    if es_server.cluster_health(port) is not None:
        return Node(es_server.base_url(port), port, False, None)
    cmd = [
        "bash",
        str(es_server.START_SCRIPT),
        "--port",
        str(port),
        "--heap",
        heap,
        "--timeout",
        str(timeout),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    seconds = time.perf_counter() - start
    if es_server.cluster_health(port) is None:
        raise SystemExit(f"node on port {port} does not answer after start:\n{proc.stderr}")
    return Node(es_server.base_url(port), port, True, seconds)


def request(url: str, method: str, path: str, body: object = None, timeout: float = 120.0) -> Any:
    """A JSON request that must succeed (2xx)."""
    status, answer = es_server.es_request(url, method, path, body, timeout)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {path}: HTTP {status}: {answer}")
    return answer


def node_info(url: str) -> dict[str, Any]:
    """Version, heap, CPUs and write pool of the (single) node."""
    nodes = request(
        url,
        "GET",
        "/_nodes?filter_path=nodes.*.version,nodes.*.jvm.mem.heap_max_in_bytes,nodes.*.jvm.version,"
        "nodes.*.os.available_processors,nodes.*.thread_pool.write",
    )["nodes"]
    info = next(iter(nodes.values()))
    write = info.get("thread_pool", {}).get("write", {})
    return {
        "version": info.get("version"),
        "heap_max_mb": info["jvm"]["mem"]["heap_max_in_bytes"] / 2**20,
        "jvm": info["jvm"].get("version"),
        "processors": info.get("os", {}).get("available_processors"),
        "write_threads": write.get("size"),
        "write_queue": write.get("queue_size"),
        "nodes": len(nodes),
    }


def node_cpu_seconds(url: str) -> float | None:
    """CPU time the node's process has used so far (user + system, all threads)."""
    try:
        nodes = request(url, "GET", "/_nodes/stats/process?filter_path=nodes.*.process.cpu.total_in_millis")
        return sum(n["process"]["cpu"]["total_in_millis"] for n in nodes["nodes"].values()) / 1000
    except (OSError, RuntimeError, KeyError, ValueError):
        return None


def heap_used_mb(url: str) -> float | None:
    try:
        nodes = request(url, "GET", "/_nodes/stats/jvm?filter_path=nodes.*.jvm.mem.heap_used_in_bytes")
        return max(n["jvm"]["mem"]["heap_used_in_bytes"] for n in nodes["nodes"].values()) / 2**20
    except (OSError, RuntimeError, KeyError, ValueError):
        return None


def refresh(url: str, namespace: str) -> None:
    request(url, "POST", f"/{flow_index(namespace)}/_refresh")


def count(url: str, namespace: str) -> int:
    return int(request(url, "GET", f"/{flow_index(namespace)}/_count")["count"])


# --------------------------------------------------------------------------- the documents


def datagrams_of(stream: Stream) -> list[Datagram]:
    """The stream as a source hands it over: arrival time = header export time."""
    at = 8 if stream.version == 9 else 4
    return [
        Datagram(data, stream.exporter_ip, stream.exporter_port, float(int.from_bytes(data[at : at + 4])))
        for data in stream.datagrams
    ]


def build_frames(streams: Sequence[Stream], chunk: int) -> list[FlowFrame]:
    """Decode and normalize each stream a chunk of datagrams at a time, as the pipeline does."""
    frames: list[FlowFrame] = []
    for stream in streams:
        decode = Decoder().decode
        normalize = Normalizer(NormalizeOptions(namespace="default")).frames
        datagrams = datagrams_of(stream)
        for i in range(0, len(datagrams), chunk):
            frame = normalize([batch for dg in datagrams[i : i + chunk] for batch in decode(dg).flows])
            if frame.n:
                frames.append(frame)
    return frames


def in_namespace(frames: Sequence[FlowFrame], namespace: str) -> list[FlowFrame]:
    """The same rows bound for another data stream (``data_stream.namespace`` follows)."""
    return [FlowFrame(f.n, f.cols, namespace) for f in frames]


def raw_bodies(frames: Sequence[FlowFrame], namespace: str, batch_docs: int) -> list[bytes]:
    """Pre-serialized ``_bulk`` bodies of ``batch_docs`` documents, the sink's own lines."""
    pairs = [pair for f in in_namespace(frames, namespace) for pair in bulk_pairs(f)]
    return [b"".join(pairs[i : i + batch_docs]) for i in range(0, len(pairs), batch_docs)]


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Measurement:
    side: str
    round: int
    namespace: str
    docs: int
    seconds: float
    """From the first byte sent / first write until every document is acknowledged and refreshed."""
    ack_seconds: float
    """The same without the final ``_refresh``."""
    count: int
    client_cpu_s: float
    node_cpu_s: float | None
    requests: int
    request_mean_s: float | None
    """Mean ``_bulk`` round trip (raw only; the sink's is in ``--profile``)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.docs / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "round": self.round,
            "namespace": self.namespace,
            "docs": self.docs,
            "seconds": self.seconds,
            "ack_seconds": self.ack_seconds,
            "docs_per_s": self.rate,
            "count": self.count,
            "count_exact": self.count == self.docs,
            "client_cpu_s": self.client_cpu_s,
            "node_cpu_s": self.node_cpu_s,
            "requests": self.requests,
            "request_mean_s": self.request_mean_s,
            **self.extra,
        }


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system


class RawPoster:
    """``senders`` threads, one keep-alive connection each, posting ready bodies in order."""

    def __init__(self, url: str, senders: int, client: str) -> None:
        self.url = url
        self.senders = senders
        self.client = client

    def post_all(self, bodies: Sequence[bytes]) -> tuple[int, list[float]]:
        """Post every body; item failures (there should be none) and each request's latency."""
        todo = iter(range(len(bodies)))
        lock = threading.Lock()
        failed: list[int] = []
        latencies: list[float] = []
        errors: list[BaseException] = []

        def next_body() -> int | None:
            with lock:
                return next(todo, None)

        def work() -> None:
            try:
                post = self._poster()
                while (i := next_body()) is not None:
                    start = time.perf_counter()
                    answer = post(bodies[i])
                    took = time.perf_counter() - start
                    bad = len(answer.get("items", ())) if answer.get("errors") else 0
                    with lock:
                        latencies.append(took)
                        failed.append(bad)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, name=f"raw-{n}") for n in range(self.senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"raw _bulk failed: {errors[0]!r}") from errors[0]
        return sum(failed), latencies

    def _poster(self) -> Callable[[bytes], dict[str, Any]]:
        if self.client == "es":
            es = es_sink.Elasticsearch(self.url, request_timeout=120, max_retries=0, http_compress=False)

            def post_es(body: bytes) -> dict[str, Any]:
                resp = es.bulk(operations=cast(Any, body), filter_path=RAW_FILTER_PATH)
                return dict(resp.body)

            return post_es
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 9200, timeout=120)
        path = f"/_bulk?filter_path={RAW_FILTER_PATH}"
        headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}

        def post_http(body: bytes) -> dict[str, Any]:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
            answer: dict[str, Any] = orjson.loads(data) if data else {}
            return answer

        return post_http


def measure_raw(
    url: str, frames: Sequence[FlowFrame], namespace: str, args: argparse.Namespace, round_: int
) -> Measurement:
    bodies = raw_bodies(frames, namespace, args.batch_docs)
    docs = sum(f.n for f in frames)
    poster = RawPoster(url, args.senders, args.raw_client)
    gc.collect()
    node0, cpu0 = node_cpu_seconds(url), cpu_now()
    start = time.perf_counter()
    failed, latencies = poster.post_all(bodies)
    acked = time.perf_counter()
    refresh(url, namespace)
    end = time.perf_counter()
    cpu1, node1 = cpu_now(), node_cpu_seconds(url)
    if failed:
        print(f"raw: {failed} items failed (counted below)", file=sys.stderr)
    return Measurement(
        "raw",
        round_,
        namespace,
        docs,
        end - start,
        acked - start,
        count(url, namespace),
        cpu1 - cpu0,
        None if node0 is None or node1 is None else node1 - node0,
        len(latencies),
        sum(latencies) / max(1, len(latencies)),
        {"item_failures": failed, "body_bytes": sum(len(b) for b in bodies)},
    )


class Profile:
    """Seconds the sink spends in its pieces, wrapped from outside (the sink is not edited)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                took = time.perf_counter() - start
                with self._lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + took
                    self.calls[name] = self.calls.get(name, 0) + 1

        return timed

    @contextlib.contextmanager
    def patched_encoder(self) -> Iterator[None]:
        original = es_sink.encode_bulk_block
        es_sink.encode_bulk_block = self.wrap("writer.encode_bulk_block (actions + documents)", original)
        try:
            yield
        finally:
            es_sink.encode_bulk_block = original

    def instrument(self, sink: ElasticsearchSink) -> None:
        """Wrap the instance's pieces; sender threads look them up at each call.

        Tied to the sink's private helpers: a piece whose helper is gone is skipped, not fatal.
        """
        pieces: list[tuple[Any, str, str]] = [
            (sink, "_deliver", "sender._deliver (a batch, end to end)"),
            (sink, "_bulk", "sender._bulk (request incl. client)"),
            (sink.client, "bulk", "sender.client.bulk (HTTP round trip)"),
            (sink.spool, "read", "sender.spool.read (read + CRC)"),
            (sink.spool, "ack", "sender.spool.ack (unlink)"),
            (sink, "_spool_buffer", "writer._spool_buffer (join + append)"),
            (sink.spool, "append", "writer.spool.append (write + fsync + rename + dir fsync)"),
        ]
        for owner, attr, name in pieces:
            fn = getattr(owner, attr, None)
            if callable(fn):
                setattr(owner, attr, self.wrap(name, fn))

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {k: {"seconds": v, "calls": self.calls[k]} for k, v in sorted(self.seconds.items())}


def measure_sidecar(
    url: str,
    frames: Sequence[FlowFrame],
    namespace: str,
    args: argparse.Namespace,
    round_: int,
    profile: Profile | None = None,
) -> Measurement:
    mine = in_namespace(frames, namespace)
    docs = sum(f.n for f in mine)
    spool_dir = Path(tempfile.mkdtemp(prefix="es-bench-spool-", dir=args.spool_dir))
    try:
        sink = ElasticsearchSink(
            url,
            spool_dir=spool_dir,
            batch_docs=args.batch_docs,
            senders=args.senders,
            request_timeout=120,
        )
        if profile is not None:
            profile.instrument(sink)
        gc.collect()
        node0, cpu0 = node_cpu_seconds(url), cpu_now()
        with profile.patched_encoder() if profile is not None else contextlib.nullcontext():
            start = time.perf_counter()
            for frame in mine:
                sink.write_frame(frame)
            written = time.perf_counter()
            sink.close(timeout=3600)
            acked = time.perf_counter()
        metrics = sink.metrics()
        refresh(url, namespace)
        end = time.perf_counter()
        cpu1, node1 = cpu_now(), node_cpu_seconds(url)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    complete = (
        metrics["docs_acked"] == docs
        and metrics["spool_batches"] == 0
        and metrics["dead_letters"] == 0
        and metrics["buffered_docs"] == 0
    )
    if not complete:
        print(f"sidecar: not every document acknowledged: {metrics}", file=sys.stderr)
    requests = int(metrics["bulk_requests"])
    return Measurement(
        "sidecar",
        round_,
        namespace,
        docs,
        end - start,
        acked - start,
        count(url, namespace),
        cpu1 - cpu0,
        None if node0 is None or node1 is None else node1 - node0,
        requests,
        None,
        {
            "write_seconds": written - start,
            "all_acked": complete,
            "metrics": metrics,
        },
    )


def settle(url: str, seconds: float) -> None:
    """Let the node finish the previous stream's refresh and merges before the next clock."""
    if seconds > 0:
        time.sleep(seconds)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    return common_machine(elasticsearch_client=dist_version("elasticsearch"))


def _fs_type(path: Path) -> str | None:
    """The filesystem type holding ``path`` (from /proc/mounts), e.g. ext4 or tmpfs."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    real = str(path.resolve())
    best, kind = -1, None
    for parts in mounts:
        inside = real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")
        if len(parts) >= 3 and inside and len(parts[1]) > best:
            best, kind = len(parts[1]), parts[2]
    return kind


def _load(values: Sequence[float] | None) -> str:
    return "n/a" if not values else "/".join(f"{v:.2f}" for v in values)


def print_table(report: dict[str, Any]) -> None:
    m, node = report["machine"], report["node"]
    print(
        f"machine: {m['cpu_model']}, nproc {m['nproc']} (usable {m['cpus_usable']}), "
        f"{m['mem_gib']:.1f} GiB, Python {m['python']}, orjson {m['orjson']}, "
        f"elasticsearch-py {m['elasticsearch_client']}, code at {m['git_commit'] or 'unknown commit'}"
    )
    print(
        f"load:    1/5/15-min load average {_load(m['loadavg'])} before, {_load(report['loadavg_after'])} after"
    )
    print(
        f"node:    {report['url']} Elasticsearch {node['version']}, heap {node['heap_max_mb']:.0f} MiB, "
        f"{node['processors']} processors, write pool {node['write_threads']} x queue {node['write_queue']}, "
        f"{'started by this run' if report['node_started'] else 'already running (reused)'}"
    )
    for line in report["stream_descriptions"]:
        print(f"stream:  {line}")
    print(
        f"docs:    {report['records']:,} flows, {report['frames']} frames, "
        f"{report['doc_bytes_mean']:.0f} bytes a document + action line; "
        f"batch {report['batch_docs']} docs, {report['senders']} senders; raw client: {report['raw_client']}"
    )
    print(f"spool:   {report['spool_dir']} ({report['spool_fs']})")
    print(
        f"timing:  first byte/write -> all acknowledged + _refresh, best of {report['repeat']}, "
        "order alternating\n"
    )
    print(
        f"{'round':>5}  {'side':<8} {'docs/s':>10} {'s':>7} {'ack s':>7} {'_count':>9} "
        f"{'client CPU s':>12} {'node CPU s':>10} {'req':>5} {'req mean ms':>11}"
    )
    for run in report["runs"]:
        node_cpu = "n/a" if run["node_cpu_s"] is None else f"{run['node_cpu_s']:.1f}"
        mean = "" if run["request_mean_s"] is None else f"{run['request_mean_s'] * 1000:.0f}"
        print(
            f"{run['round']:>5}  {run['side']:<8} {run['docs_per_s']:>10,.0f} {run['seconds']:>7.2f} "
            f"{run['ack_seconds']:>7.2f} {run['count']:>9,} {run['client_cpu_s']:>12.1f} {node_cpu:>10} "
            f"{run['requests']:>5} {mean:>11}"
        )
    print()
    print(f"raw _bulk (best):  {report['raw_docs_per_s']:>10,.0f} docs/s")
    print(f"sidecar (best):    {report['sidecar_docs_per_s']:>10,.0f} docs/s")
    verdict = "PASS" if report["meets_target"] else "NOT MET"
    print(
        f"ratio:             {report['ratio'] * 100:>9.1f} %   target >= {TARGET_RATIO * 100:.0f} %: {verdict}"
    )
    print(f"counts exact:      {report['counts_exact']}")
    if report.get("profile"):
        prof = report["profile"]
        print(
            f"\nprofile (one extra instrumented sidecar run, {prof['docs_per_s']:,.0f} docs/s, "
            f"{prof['seconds']:.2f} s; thread-seconds, senders overlap):"
        )
        for name, v in prof["pieces"].items():
            print(f"  {name:<62} {v['seconds']:>8.2f} s  {v['calls']:>6} calls")
        print(f"  {'fsync of one batch-sized file (median of 20)':<62} {prof['fsync_ms']:>8.2f} ms")
        print(
            f"  {'raw request mean / sink client.bulk mean':<62} "
            f"{prof['raw_request_mean_ms']:>8.1f} / {prof['sink_request_mean_ms']:.1f} ms"
        )


def fsync_cost_ms(directory: Path, size: int, times: int = 20) -> float:
    """Median time to write, fsync, rename and fsync the directory for a file of ``size`` bytes."""
    data = os.urandom(min(size, 1 << 16)) * max(1, size // (1 << 16))
    target = Path(tempfile.mkdtemp(prefix="es-bench-fsync-", dir=directory))
    samples = []
    try:
        for i in range(times):
            start = time.perf_counter()
            tmp = target / f"{i}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target / f"{i}.batch")
            dfd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            samples.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return float(np.median(samples)) * 1000


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=500_000, help="flows per measurement (default 500,000)")
    p.add_argument("--repeat", type=int, default=2, help="rounds, best kept for each side (default 2)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"node port (default {DEFAULT_PORT})")
    p.add_argument("--heap", default="1g", help="heap of a node this run starts (default 1g)")
    p.add_argument("--start-timeout", type=int, default=180, help="seconds to wait for a node to start")
    p.add_argument("--keep-node", action="store_true", help="leave a node this run started running")
    p.add_argument(
        "--batch-docs", type=int, default=2000, help="documents a _bulk, both sides (sink default)"
    )
    p.add_argument("--senders", type=int, default=2, help="concurrent requests, both sides (sink default)")
    p.add_argument("--chunk", type=int, default=256, help="datagrams normalized into one frame (default 256)")
    p.add_argument(
        "--stream", choices=("mixed", "v9", "ipfix"), default="mixed", help="flows from which builder"
    )
    p.add_argument(
        "--raw-client", choices=("http", "es"), default="http", help="http.client or the official client"
    )
    p.add_argument(
        "--spool-dir", default=tempfile.gettempdir(), help="where the sink's spool goes (default: TMPDIR)"
    )
    p.add_argument("--warm-up", type=int, default=100_000, help="flows posted by each side before timing")
    p.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before each measurement")
    p.add_argument("--profile", action="store_true", help="one more, instrumented sidecar run")
    p.add_argument("--seed", type=int, default=None, help="stream seed (default: the builders')")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--json-out", type=Path, help="also write the JSON object to this file")
    args = p.parse_args(argv)
    if args.records < 2 or args.repeat < 1 or args.batch_docs < 1 or args.senders < 1:
        p.error("need --records >= 2, --repeat >= 1, --batch-docs >= 1, --senders >= 1")
    return args


def build_streams(args: argparse.Namespace) -> list[Stream]:
    seed: dict[str, int] = {} if args.seed is None else {"seed": args.seed}
    if args.stream == "v9":
        return [build_v9(args.records, **seed)]
    if args.stream == "ipfix":
        return [build_ipfix(args.records, **seed)]
    half = args.records // 2
    ipfix_seed: dict[str, int] = {} if args.seed is None else {"seed": args.seed + 1}
    return [build_v9(args.records - half, **seed), build_ipfix(half, **ipfix_seed)]


def take(frames: Sequence[FlowFrame], rows: int) -> list[FlowFrame]:
    """The leading frames holding ``rows`` rows (the last one cut)."""
    out: list[FlowFrame] = []
    left = rows
    for f in frames:
        if left <= 0:
            break
        out.append(f if f.n <= left else f.take(np.arange(left)))
        left -= f.n
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say: Callable[[str], None] = (lambda s: print(s, file=sys.stderr)) if args.json else print
    report: dict[str, Any] = {"machine": machine()}

    say(f"building {args.records:,} flows ...")
    streams = build_streams(args)
    frames = build_frames(streams, args.chunk)
    docs = sum(f.n for f in frames)
    ids = np.concatenate([f.cols["event_id"] for f in frames])
    unique_ids = len(np.unique(ids))
    del ids
    if docs != args.records or unique_ids != docs:
        raise SystemExit(
            f"built {docs} flows with {unique_ids} distinct event ids for {args.records} records"
        )
    doc_bytes = sum(len(p) for f in frames[:5] for p in bulk_pairs(f)) / sum(f.n for f in frames[:5])

    node = ensure_node(args.port, args.heap, args.start_timeout)
    say(f"node {node.url} {'started' if node.started else 'reused'}")
    try:
        setup = install_assets(node.url)
        if not setup.ok:
            raise SystemExit("install_assets failed:\n" + "\n".join(setup.lines()))
        token = f"{int(time.time()):x}{os.getpid() % 4096:03x}"
        spool_dir = Path(args.spool_dir)
        spool_dir.mkdir(parents=True, exist_ok=True)

        # Warm-up: JIT, the template's mappings, connections; each side into a stream of its own.
        warm = take(frames, min(args.warm_up, docs))
        if warm:
            say("warm-up ...")
            measure_raw(node.url, warm, f"bench{token}warmraw", args, 0)
            measure_sidecar(node.url, warm, f"bench{token}warmsink", args, 0)

        runs: list[Measurement] = []
        for r in range(1, args.repeat + 1):
            order = ("raw", "sidecar") if r % 2 else ("sidecar", "raw")
            for side in order:
                settle(node.url, args.settle)
                namespace = f"bench{token}{side}{r}"
                say(f"round {r}: {side} -> {flow_index(namespace)} ...")
                if side == "raw":
                    run = measure_raw(node.url, frames, namespace, args, r)
                else:
                    run = measure_sidecar(node.url, frames, namespace, args, r)
                say(f"  {run.rate:,.0f} docs/s, _count {run.count:,}")
                runs.append(run)

        profile_out: dict[str, Any] | None = None
        if args.profile:
            settle(node.url, args.settle)
            prof = Profile()
            namespace = f"bench{token}profile"
            say(f"profile: sidecar -> {flow_index(namespace)} ...")
            prun = measure_sidecar(node.url, frames, namespace, args, 0, prof)
            raw_best = max((m for m in runs if m.side == "raw"), key=lambda m: m.rate)
            bulk_key = "sender.client.bulk (HTTP round trip)"
            profile_out = {
                "docs_per_s": prun.rate,
                "seconds": prun.seconds,
                "write_seconds": prun.extra["write_seconds"],
                "count": prun.count,
                "pieces": prof.as_dict(),
                "fsync_ms": fsync_cost_ms(spool_dir, int(doc_bytes * args.batch_docs)),
                "raw_request_mean_ms": (raw_best.request_mean_s or 0.0) * 1000,
                "sink_request_mean_ms": prof.seconds.get(bulk_key, 0.0)
                / max(1, prof.calls.get(bulk_key, 1))
                * 1000,
                "client_cpu_s": prun.client_cpu_s,
                "node_cpu_s": prun.node_cpu_s,
            }

        node_meta = node_info(node.url)
        node_meta["heap_used_mb_after"] = heap_used_mb(node.url)
    finally:
        if node.started and not args.keep_node:
            say(f"stopping the node on port {node.port} (started by this run)")
            es_server.stop_elasticsearch(node.port)

    raw_best = max((m for m in runs if m.side == "raw"), key=lambda m: m.rate)
    side_best = max((m for m in runs if m.side == "sidecar"), key=lambda m: m.rate)
    ratio = side_best.rate / raw_best.rate
    counts_exact = all(m.count == docs for m in runs) and all(
        m.extra.get("all_acked", True) and not m.extra.get("item_failures") for m in runs
    )
    report.update(
        {
            "url": node.url,
            "node": node_meta,
            "node_started": node.started,
            "node_start_seconds": node.start_seconds,
            "records": docs,
            "frames": len(frames),
            "stream_descriptions": [describe(s) for s in streams],
            "doc_bytes_mean": doc_bytes,
            "batch_docs": args.batch_docs,
            "senders": args.senders,
            "raw_client": "http.client keep-alive"
            if args.raw_client == "http"
            else "elasticsearch-py bulk(bytes)",
            "spool_dir": str(spool_dir),
            "spool_fs": _fs_type(spool_dir),
            "repeat": args.repeat,
            "runs": [m.as_dict() for m in runs],
            "raw_docs_per_s": raw_best.rate,
            "sidecar_docs_per_s": side_best.rate,
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
            "counts_exact": counts_exact,
            "profile": profile_out,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loadavg_after": list(os.getloadavg()),
        }
    )
    text = orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    if args.json_out:
        args.json_out.write_bytes(text + b"\n")
    if args.json:
        sys.stdout.buffer.write(text + b"\n")
    else:
        print_table(report)
    return 0 if counts_exact else 1


if __name__ == "__main__":
    sys.exit(main())
