"""The Elasticsearch sink against a real node: exactly once through outages, crashes and 429s.

Ports: 9200 is shared with other tests and left running; 9210 (outage), 9211 (tiny write
queue), 9212 (x-pack security) and 9213 (small http.max_content_length) are this module's own
and are stopped at the end.  Each test
writes to a namespace of its own (data streams cannot be deleted on the integ-test build) under
a priority-500 template of its own, so nothing here depends on `tunnelhound setup`.

Acceptance 6: the main correctness tests (lab corpus exactly once, crash replay, mapping conflict
to the dead letter) run against the plain node and against the x-pack security node (HTTPS with
the CA the start script generates, basic auth as `elastic`).  Basic auth, not an API key: API
keys do not work on the integ-test build (creating the `.security` index needs analysis-common,
which it lacks; docs/elasticsearch.md), so the sink's `api_key` is only checked to fail cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import numpy as np
import orjson
import pytest

from es_server import ensure_elasticsearch, es_request, security_kwargs, stop_elasticsearch
from tunnelhound.decode.decoder import Decoder
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.sinks.elasticsearch import (
    Capabilities,
    ElasticsearchSink,
    ElasticsearchSinkError,
    bulk_pairs,
    flow_index,
)
from tunnelhound.sources.files import iter_replay

pytestmark = pytest.mark.elasticsearch

LAB = Path(__file__).resolve().parent / "data" / "lab"
OUTAGE_PORT = 9210
PRESSURE_PORT = 9211
SECURITY_PORT = 9212
SMALL_BODY_PORT = 9213
MAX_CONTENT = 256 * 1024  # that node's http.max_content_length: ~180 lab documents a request
# Enough mapping for the checks: the rest is dynamic.
MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"id": {"type": "keyword"}}},
        "source": {"properties": {"port": {"type": "long"}}},
    }
}


def lab_frames(namespace: str) -> list[FlowFrame]:
    """The lab captures decoded and normalized, one frame per datagram (empty ones left out)."""
    decoder = Decoder()
    normalizer = Normalizer(NormalizeOptions(namespace=namespace))
    paths = [str(p) for p in sorted(LAB.glob("*.pcap"))]
    frames = [normalizer.frames(decoder.decode(dg).flows) for dg in iter_replay(paths)]
    return [f for f in frames if f.n]


def relabel(frame: FlowFrame, namespace: str, prefix: str, start: int) -> FlowFrame:
    """The frame in another namespace with ids ``prefix + zero-padded counter``: unique flows."""
    cols = dict(frame.cols)
    cols["event_id"] = np.array([f"{prefix}{start + i:09d}" for i in range(frame.n)], dtype=object)
    return FlowFrame(frame.n, cols, namespace)


def install_template(url: str, tag: str, **kw: Any) -> str:
    """A data stream template for ``logs-tunnelhound.flow-<tag>*``; returns a fresh namespace."""
    status, body = es_request(
        url,
        "PUT",
        f"/_index_template/tunnelhound-sink-test-{tag}",
        {
            "index_patterns": [f"{flow_index(tag)}*"],
            "data_stream": {},
            "priority": 500,
            "template": {"settings": {"number_of_replicas": 0}, "mappings": MAPPINGS},
        },
        **kw,
    )
    assert status == 200, body
    return f"{tag}{time.time_ns()}"


def stream_count(url: str, namespace: str, query: dict[str, Any] | None = None, **kw: Any) -> int:
    es_request(url, "POST", f"/{flow_index(namespace)}/_refresh", **kw)
    status, body = es_request(
        url, "POST", f"/{flow_index(namespace)}/_count", {"query": query or {"match_all": {}}}, **kw
    )
    assert status == 200, body
    return int(body["count"])


def duplicate_ids(url: str, namespace: str, **kw: Any) -> list[Any]:
    """event.id values held by more than one document (exact: one shard, min_doc_count 2)."""
    status, body = es_request(
        url,
        "POST",
        f"/{flow_index(namespace)}/_search",
        {"size": 0, "aggs": {"dup": {"terms": {"field": "event.id", "min_doc_count": 2, "size": 10}}}},
        **kw,
    )
    assert status == 200, body
    return list(body["aggregations"]["dup"]["buckets"])


# This module's nodes: fixture -> (port, ensure_elasticsearch arguments).
NODES: dict[str, tuple[int, dict[str, Any]]] = {
    "url": (9200, {}),
    "outage_url": (OUTAGE_PORT, {}),
    "pressure_url": (
        PRESSURE_PORT,
        {"settings": {"thread_pool.write.queue_size": 1, "thread_pool.write.size": 1}},
    ),
    "secure_url": (SECURITY_PORT, {"security": True}),
    "small_body_url": (SMALL_BODY_PORT, {"settings": {"http.max_content_length": f"{MAX_CONTENT}b"}}),
}
NODES_OF = {"node": ("url", "secure_url")}  # fixtures that ask for nodes at run time


def _start(name: str) -> str:
    port, kwargs = NODES[name]
    return ensure_elasticsearch(port, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def _start_nodes_side_by_side(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start the nodes the selected tests of this module need at once, in the background.

    A start is 15-25 s, mostly the JVM waiting on itself; five in a row were 90 s of the
    module's time.  Each fixture still calls ensure_elasticsearch, which waits for the start
    in progress (the script locks per port) or starts the node itself if this one failed.
    """
    wanted: set[str] = set()
    for item in request.session.items:
        if getattr(item, "module", None) is request.module:
            for fixture in getattr(item, "fixturenames", ()):
                wanted.update(NODES_OF.get(fixture, (fixture,)))
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            _start(name)
        except BaseException as err:  # the fixture's own call reports it
            errors.append(err)

    threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in NODES if n in wanted]
    for thread in threads:
        thread.start()
    yield
    for thread in threads:
        thread.join(timeout=300)


@pytest.fixture(scope="module")
def url() -> str:
    return _start("url")


@dataclass(frozen=True)
class Node:
    """A node to test against: its URL, the sink's TLS/auth arguments and es_request's."""

    url: str
    sink_kw: dict[str, Any]
    req_kw: dict[str, Any]


@pytest.fixture(scope="module", params=["plain", "security"])
def node(request: pytest.FixtureRequest) -> Node:
    """The plain node (9200), then the x-pack security node (TLS + basic auth, 9212)."""
    if request.param == "plain":
        return Node(request.getfixturevalue("url"), {}, {})
    secure = request.getfixturevalue("secure_url")
    kw = security_kwargs(SECURITY_PORT)
    return Node(secure, {"ca_certs": str(kw["cafile"]), "basic_auth": kw["auth"]}, kw)


@pytest.fixture(scope="module")
def outage_url() -> Iterator[str]:
    yield _start("outage_url")
    stop_elasticsearch(OUTAGE_PORT)


@pytest.fixture(scope="module")
def pressure_url() -> Iterator[str]:
    yield _start("pressure_url")
    stop_elasticsearch(PRESSURE_PORT)


@pytest.fixture(scope="module")
def small_body_url() -> Iterator[str]:
    yield _start("small_body_url")
    stop_elasticsearch(SMALL_BODY_PORT)


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_lab_frames_land_exactly_once_and_a_resend_adds_nothing(node: Node, tmp_path: Path) -> None:
    url = node.url
    ns = install_template(url, "sinklab", **node.req_kw)
    frames = lab_frames(ns)
    rows = sum(f.n for f in frames)
    sink = ElasticsearchSink(
        url, spool_dir=tmp_path / "spool", batch_docs=2000, flush_interval=0.5, **node.sink_kw
    )
    assert sink.capabilities is not None and sink.capabilities.version >= (8, 19, 0)
    start = time.monotonic()
    for frame in frames:
        sink.write_frame(frame)
    sink.close(timeout=120)
    elapsed = time.monotonic() - start
    print(f"\nlab corpus: {rows} flows in {elapsed:.2f} s = {rows / elapsed:.0f} docs/s")
    m = sink.metrics()
    assert (m["docs_acked"], m["docs_conflict"], m["dead_letters"], m["spool_batches"]) == (rows, 0, 0, 0)
    assert stream_count(url, ns, **node.req_kw) == rows
    assert duplicate_ids(url, ns, **node.req_kw) == []
    assert sorted(os.listdir(tmp_path / "spool")) == []

    # The same flows again (a replay after a crash): every create is a 409, nothing is added.
    again = ElasticsearchSink(url, spool_dir=tmp_path / "spool", batch_docs=5000, **node.sink_kw)
    for frame in frames:
        again.write_frame(frame)
    again.close(timeout=120)
    m = again.metrics()
    assert (m["docs_acked"], m["docs_conflict"], m["dead_letters"]) == (rows, rows, 0)
    assert stream_count(url, ns, **node.req_kw) == rows


def test_mapping_conflict_goes_to_the_dead_letter_file_and_the_rest_is_indexed(
    node: Node, tmp_path: Path
) -> None:
    url = node.url
    ns = install_template(url, "sinkdead", **node.req_kw)
    frame = FlowFrame.concat(lab_frames(ns)[:40])
    pairs = bulk_pairs(frame)
    action, doc = pairs[7].rstrip(b"\n").split(b"\n")
    bad = orjson.loads(doc)
    bad["source"]["port"] = "not-a-port"  # the template maps source.port as long
    pairs[7] = action + b"\n" + orjson.dumps(bad) + b"\n"
    bad_id = frame.cols["event_id"][7]

    sink = ElasticsearchSink(url, spool_dir=tmp_path / "spool", batch_docs=len(pairs), **node.sink_kw)
    sink.write_pairs(pairs)
    sink.close(timeout=60)

    assert (sink.dead_letters, sink.docs_acked, sink.retries, sink.spool.batches) == (1, frame.n - 1, 0, 0)
    lines = (tmp_path / "spool" / "dead-letter.ndjson").read_bytes().splitlines()
    assert len(lines) == 1
    letter = orjson.loads(lines[0])
    assert (letter["_index"], letter["_id"], letter["status"]) == (flow_index(ns), bad_id, 400)
    assert letter["error"]["type"] == "document_parsing_exception"
    assert "failed to parse field [source.port] of type [long]" in letter["error"]["reason"]
    assert letter["document"]["source"]["port"] == "not-a-port"
    assert letter["document"]["event"]["id"] == bad_id
    assert stream_count(url, ns, **node.req_kw) == frame.n - 1
    assert stream_count(url, ns, {"term": {"event.id": bad_id}}, **node.req_kw) == 0


CRASH_WRITER = r"""
import json, sys, numpy as np
from pathlib import Path
from tunnelhound.decode.decoder import Decoder
from tunnelhound.normalize.ecs import NormalizeOptions, Normalizer
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.sinks.elasticsearch import ElasticsearchSink
from tunnelhound.sources.files import iter_replay

url, spool, ns, lab, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
kw = json.loads(sys.argv[6])  # ca_certs, basic_auth for the security node
if "basic_auth" in kw:
    kw["basic_auth"] = tuple(kw["basic_auth"])
dec, norm = Decoder(), Normalizer(NormalizeOptions(namespace=ns))
paths = [str(p) for p in sorted(Path(lab).glob("*.pcap"))]
frames = [f for f in (norm.frames(dec.decode(d).flows) for d in iter_replay(paths)) if f.n]
sink = ElasticsearchSink(url, spool_dir=spool, batch_docs=1000, senders=1, **kw)
done = 0
while done < limit:
    for f in frames:
        cols = dict(f.cols)
        cols["event_id"] = np.array([f"crash-{done + i:09d}" for i in range(f.n)], dtype=object)
        sink.write_frame(FlowFrame(f.n, cols, ns))
        sink.flush()  # durable from here on: the parent may count these rows as sent
        done += f.n
        print(done, flush=True)
"""


def test_kill_9_mid_stream_then_a_new_sink_replays_the_spool(node: Node, tmp_path: Path) -> None:
    url = node.url
    ns = install_template(url, "sinkcrash", **node.req_kw)
    spool = tmp_path / "spool"
    sink_kw = orjson.dumps(node.sink_kw).decode()
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, url, str(spool), ns, str(LAB), "200000", sink_kw],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    durable = 0
    deadline = time.monotonic() + 60
    try:
        # Kill once a backlog exists: the writer outruns the node, so batches wait in the spool.
        while durable < 25_000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            durable = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # The writer runs ahead of this reader: counts it reported before the kill may still sit
    # unread in the pipe, and the last one is what was durable.
    for rest in proc.stdout:
        if rest.strip().isdigit():
            durable = max(durable, int(rest))
    assert durable >= 25_000, f"writer stopped early at {durable} rows (exit {proc.returncode})"
    # The killed writer may have spooled part of the frame after its last report, no more.
    most = durable + max(f.n for f in lab_frames(ns))

    sink = ElasticsearchSink(url, spool_dir=spool, batch_docs=1000, **node.sink_kw)
    left = sink.spool.pending()
    assert left, "nothing left in the spool: the kill came too late to test a replay"
    sink.close(timeout=120)
    assert (sink.spool.batches, sink.dead_letters) == (0, 0)
    total = stream_count(url, ns, **node.req_kw)
    print(f"\ncrash: {durable} rows reported durable, {sum(b.items for b in left)} replayed, {total} indexed")
    assert durable <= total <= most
    done = {"range": {"event.id": {"lte": f"crash-{durable - 1:09d}"}}}
    assert stream_count(url, ns, done, **node.req_kw) == durable
    assert duplicate_ids(url, ns, **node.req_kw) == []


def test_outage_mid_stream_every_flow_lands_exactly_once(outage_url: str, tmp_path: Path) -> None:
    """Acceptance 3 as written: a steady stream of 5,000 flows/s for 60 s (measured, asserted),
    the node stopped for 20 s in the middle (plus its restart, also without a node), started
    again; then every flow is in Elasticsearch once: count by event.id == flows sent, no
    duplicate id, no dead letter, nothing dropped."""
    ns = install_template(outage_url, "sinkoutage")
    base = FlowFrame.concat(lab_frames(ns))
    rate, seconds, tick = 5000, 60.0, 0.1
    per_tick = int(rate * tick)
    ticks = int(seconds / tick) + 1  # ticks at 0, 0.1 ... 60.0 s: the stream lasts 60 s
    chunks = [base.take(np.arange(i, i + per_tick)) for i in range(0, base.n - per_tick + 1, per_tick)]
    # Built before the clock starts: the writer only hands frames to the sink while timed.
    frames = [relabel(chunks[k % len(chunks)], ns, "outage-", k * per_tick) for k in range(ticks)]
    sink = ElasticsearchSink(
        outage_url,
        spool_dir=tmp_path / "spool",
        batch_docs=2500,
        flush_interval=0.5,
        backoff_initial=0.25,
        backoff_max=2.0,
    )
    sent = 0
    lags: list[float] = []
    span: list[float] = []
    errors: list[BaseException] = []

    def writer() -> None:
        nonlocal sent
        start = time.monotonic()
        try:
            for k, frame in enumerate(frames):
                # Paced by the clock: a late tick is sent at once, never skipped.
                due = start + k * tick
                time.sleep(max(0.0, due - time.monotonic()))
                lags.append(time.monotonic() - due)
                sink.write_frame(frame)
                sent += frame.n
            span.extend([start, time.monotonic()])
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    thread = threading.Thread(target=writer, name="outage-writer")
    thread.start()
    time.sleep(12)
    acked_before = sink.docs_acked
    stop_elasticsearch(OUTAGE_PORT, keep_data=True)
    down_at = time.monotonic()
    time.sleep(20)
    failures_while_down = sink.bulk_failures
    ensure_elasticsearch(OUTAGE_PORT, keep_data=True)
    outage = time.monotonic() - down_at
    thread.join(seconds + 60)
    assert not thread.is_alive() and errors == []
    duration = span[1] - span[0]
    achieved = sent / duration
    drain_start = time.monotonic()
    sink.close(timeout=180)
    drain = time.monotonic() - drain_start
    total = stream_count(outage_url, ns)
    dups = duplicate_ids(outage_url, ns)
    m = sink.metrics()
    print(
        f"\noutage: {sent} flows in {duration:.2f} s = {achieved:.0f} flows/s (max lag {max(lags):.3f} s), "
        f"node down {outage:.1f} s from t={down_at - span[0]:.1f} s, {acked_before} acked before; "
        f"drained in {drain:.1f} s after the stream; {total} indexed, {len(dups)} duplicate ids; metrics {m}"
    )
    assert sent == rate * seconds + per_tick == 300_500
    assert duration >= seconds and achieved >= rate
    # Steady: never more than a second behind the schedule (a late tick is sent at once).
    assert max(lags) < 1.0
    assert outage >= 20 and acked_before > 0 and failures_while_down > 0
    assert m["spool_batches"] == 0
    assert (m["docs_acked"], m["dead_letters"], m["spool_dropped"]) == (sent, 0, 0)
    assert total == sent
    assert dups == []


def test_per_item_429s_are_retried_and_nothing_is_dropped(pressure_url: str, tmp_path: Path) -> None:
    ns = install_template(pressure_url, "sinkpressure")
    base = FlowFrame.concat(lab_frames(ns))
    # Six senders with small batches against one write thread and a queue of one: 429s.
    sink = ElasticsearchSink(
        pressure_url,
        spool_dir=tmp_path / "spool",
        batch_docs=250,
        senders=6,
        backoff_initial=0.05,
        backoff_max=0.5,
    )
    rows = 0
    for _ in range(2):
        sink.write_frame(relabel(base, ns, "pressure-", rows))
        rows += base.n
    sink.close(timeout=180)
    m = sink.metrics()
    print(f"\nback-pressure: {rows} flows, metrics {m}")
    # Items answered 429 inside a 200 response, and re-sent on their own.
    assert m["item_retries"] > 0
    assert m["retries"] >= m["item_retries"]
    assert (m["docs_acked"], m["dead_letters"], m["spool_batches"], m["spool_dropped"]) == (rows, 0, 0, 0)
    assert stream_count(pressure_url, ns) == rows
    assert duplicate_ids(pressure_url, ns) == []


@pytest.fixture(scope="module")
def secure_url() -> Iterator[str]:
    yield _start("secure_url")
    stop_elasticsearch(SECURITY_PORT)


def test_tls_and_basic_auth_work_and_a_wrong_ca_or_bad_credentials_fail_in_one_line(
    secure_url: str, tmp_path: Path
) -> None:
    kw = security_kwargs(SECURITY_PORT)
    ns = install_template(secure_url, "sinktls", **kw)
    frame = FlowFrame.concat(lab_frames(ns)[:30])
    sink = ElasticsearchSink(
        secure_url, spool_dir=tmp_path / "ok", ca_certs=kw["cafile"], basic_auth=kw["auth"]
    )
    sink.write_frame(frame)
    sink.close(timeout=60)
    assert (sink.docs_acked, sink.spool.batches) == (frame.n, 0)
    assert stream_count(secure_url, ns, **kw) == frame.n

    # certifi's public roots did not sign the node's certificate.
    with pytest.raises(ElasticsearchSinkError) as wrong_ca:
        ElasticsearchSink(
            secure_url, spool_dir=tmp_path / "ca", ca_certs=certifi.where(), basic_auth=kw["auth"]
        )
    assert str(wrong_ca.value).startswith(f"TLS to {secure_url} failed: certificate verify failed")
    assert str(wrong_ca.value).endswith("(check ca_certs / verify_certs)")

    with pytest.raises(ElasticsearchSinkError) as bad_password:
        ElasticsearchSink(
            secure_url, spool_dir=tmp_path / "pw", ca_certs=kw["cafile"], basic_auth=("elastic", "wrong")
        )
    assert str(bad_password.value).startswith(f"Elasticsearch {secure_url} refused the credentials (401 ")
    with pytest.raises(
        ElasticsearchSinkError, match=r"refused the credentials \(401 .*check basic_auth / api_key"
    ):
        ElasticsearchSink(
            secure_url, spool_dir=tmp_path / "key", ca_certs=kw["cafile"], api_key="bm9wZTpub3Bl"
        )
    for err in (wrong_ca.value, bad_password.value):
        assert "\n" not in str(err) and len(str(err)) < 400


def test_413_splits_the_request_down_to_what_fits_and_a_lone_oversized_document_is_a_dead_letter(
    small_body_url: str, tmp_path: Path
) -> None:
    """A real node whose http.max_content_length (256 KiB) is smaller than a 2,000-document bulk
    (about 2.8 MB) answers 413: the sink halves the request until the parts fit.  One document
    of 300 KB cannot fit alone and is dead-lettered with status 413; the rest is indexed once."""
    ns = install_template(small_body_url, "sink413")
    frame = relabel(FlowFrame.concat(lab_frames(ns)).take(np.arange(2000)), ns, "big-", 0)
    pairs = bulk_pairs(frame)
    action, doc = pairs[1234].rstrip(b"\n").split(b"\n")
    huge = orjson.loads(doc)
    huge["message"] = "x" * 300_000
    pairs[1234] = action + b"\n" + orjson.dumps(huge) + b"\n"
    assert sum(map(len, pairs)) > 8 * MAX_CONTENT

    sink = ElasticsearchSink(small_body_url, spool_dir=tmp_path / "spool", batch_docs=len(pairs))
    sink.write_pairs(pairs)
    sink.close(timeout=120)
    m = sink.metrics()
    print(f"\n413: {frame.n} documents, metrics {m}")

    # 2000 -> 1000 -> 500 -> 250 -> 125 (fits): 1 + 2 + 4 + 8 refusals, then the 125 holding
    # the big document and its halvings down to it (62/63, 31/32, 16, 8, 4, 2, 1): 8 more.
    assert m["bulk_refused"] == 15 + 8
    assert (m["docs_acked"], m["dead_letters"], m["bulk_failures"], m["spool_batches"]) == (
        frame.n - 1,
        1,
        0,
        0,
    )
    (letter,) = read_dead_letters(tmp_path / "spool" / "dead-letter.ndjson")
    assert (letter["_index"], letter["_id"], letter["status"]) == (flow_index(ns), "big-000001234", 413)
    assert letter["error"]["type"] == "request_entity_too_large"
    assert letter["error"]["reason"].startswith("HTTP 413: a bulk of 1 documents (")
    assert letter["document"]["message"] == "x" * 300_000
    assert stream_count(small_body_url, ns) == frame.n - 1
    assert stream_count(small_body_url, ns, {"term": {"event.id": "big-000001234"}}) == 0
    assert duplicate_ids(small_body_url, ns) == []


def test_malformed_bulk_400_is_split_and_only_the_bad_lines_are_dead_letters(
    url: str, tmp_path: Path
) -> None:
    """Two action lines the node cannot parse (an unknown parameter; truncated JSON) make it
    refuse the whole _bulk with 400.  The sink does not retry that forever: it halves the
    request, indexes every good document and dead-letters the two bad lines with the reason."""
    ns = install_template(url, "sink400")
    frame = relabel(FlowFrame.concat(lab_frames(ns)).take(np.arange(300)), ns, "mal-", 0)
    pairs = bulk_pairs(frame)
    action, doc = pairs[17].rstrip(b"\n").split(b"\n")
    pairs[17] = action[:-2] + b',"bogus":1}}\n' + doc + b"\n"
    action, doc = pairs[250].rstrip(b"\n").split(b"\n")
    pairs[250] = action[:-2] + b"\n" + doc + b"\n"  # {"create":{... without its closing braces

    sink = ElasticsearchSink(url, spool_dir=tmp_path / "spool", batch_docs=len(pairs))
    sink.write_pairs(pairs)
    sink.close(timeout=60)
    m = sink.metrics()
    assert (m["docs_acked"], m["dead_letters"], m["bulk_failures"], m["spool_batches"]) == (
        frame.n - 2,
        2,
        0,
        0,
    )
    # Each bad line is refused on its way down: 300 -> 150 -> 75 -> ... -> 1, ~9 levels each.
    assert 2 * 8 <= m["bulk_refused"] <= 2 * 10
    first, second = read_dead_letters(tmp_path / "spool" / "dead-letter.ndjson")
    assert (first["_index"], first["_id"], first["status"]) == (flow_index(ns), "mal-000000017", 400)
    assert first["error"]["type"] == "illegal_argument_exception"
    assert first["error"]["reason"] == "Action/metadata line [1] contains an unknown parameter [bogus]"
    assert first["document"]["event"]["id"] == "mal-000000017"
    # Not JSON: no _index or _id to read, the line itself is kept.
    assert (second["_index"], second["_id"], second["status"]) == (None, None, 400)
    assert second["action"].endswith('"_id":"mal-000000250"')
    assert second["error"]["type"] in ("x_content_e_o_f_exception", "x_content_parse_exception")
    assert second["document"]["event"]["id"] == "mal-000000250"
    assert stream_count(url, ns) == frame.n - 2
    assert duplicate_ids(url, ns) == []


# --------------------------------------------------------------------------- no node: a fake client


class _ProbedSink(ElasticsearchSink):
    """A sink whose node is a stand-in: capabilities of 8.19, requests answered by ``answer``."""

    def _probe(self, timeout: float, *, fatal: bool) -> bool:
        self.capabilities = Capabilities.from_version((8, 19, 0))
        return True


@dataclass
class _Answer:
    body: dict[str, Any]


def _fake_sink(tmp_path: Path, answer: Any, **kw: Any) -> tuple[ElasticsearchSink, list[bytes]]:
    sent: list[bytes] = []

    def bulk(operations: bytes, **params: Any) -> _Answer:
        sent.append(operations)
        return _Answer(answer(len(sent), operations))

    sink = _ProbedSink(
        "http://127.0.0.1:1", spool_dir=tmp_path / "spool", backoff_initial=0.01, backoff_max=0.02, **kw
    )
    sink.client.bulk = bulk  # type: ignore[method-assign]
    return sink, sent


def _created(_: int, body: bytes) -> dict[str, Any]:
    return {"errors": False, "items": [{"create": {"status": 201}}] * (body.count(b"\n") // 2)}


def test_frames_are_spooled_and_sent_as_the_per_row_pairs_in_batches(tmp_path: Path) -> None:
    frames = lab_frames("fake")[:60]
    rows = sum(f.n for f in frames)
    sink, sent = _fake_sink(tmp_path, _created, batch_docs=97)
    spooled: list[bytes] = []
    append = sink.spool.append

    def recording_append(payload: bytes, items: int = 0, *, timeout: float | None = None) -> int:
        assert payload.count(b"\n") == 2 * items
        spooled.append(payload)
        return append(payload, items, timeout=timeout)

    sink.spool.append = recording_append  # type: ignore[method-assign]
    for frame in frames:
        sink.write_frame(frame)
    sink.close(timeout=30)

    assert b"".join(sent) == b"".join(pair for f in frames for pair in bulk_pairs(f))
    assert [b.count(b"\n") // 2 for b in sent] == [97] * (rows // 97) + ([rows % 97] if rows % 97 else [])
    # Every request is a spooled payload as it is, in order: nothing re-split, nothing re-joined.
    assert len(sent) == len(spooled) and all(s is p for s, p in zip(sent, spooled, strict=True))
    m = sink.metrics()
    assert (m["docs_written"], m["docs_acked"], m["bulk_requests"], m["spool_batches"]) == (
        rows,
        rows,
        len(sent),
        0,
    )


def test_only_the_items_that_need_it_are_split_out_resent_or_dead_lettered(tmp_path: Path) -> None:
    frame = FlowFrame.concat(lab_frames("fake")[:40])
    pairs = bulk_pairs(frame)

    def answer(attempt: int, body: bytes) -> dict[str, Any]:
        if attempt > 1:
            return _created(attempt, body)
        items: list[dict[str, Any]] = [{"create": {"status": 201}} for _ in pairs]
        items[3] = {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}
        items[5] = {"create": {"status": 400, "error": {"type": "document_parsing_exception"}}}
        items[8] = {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}
        return {"errors": True, "items": items}

    sink, sent = _fake_sink(tmp_path, answer, batch_docs=len(pairs))
    sink.write_pairs(pairs)
    sink.close(timeout=30)

    assert sent == [b"".join(pairs), pairs[3]]
    assert (sink.docs_acked, sink.docs_conflict, sink.dead_letters, sink.item_retries) == (
        len(pairs) - 1,
        1,
        1,
        1,
    )
    (letter,) = read_dead_letters(tmp_path / "spool" / "dead-letter.ndjson")
    assert (letter["_id"], letter["status"]) == (frame.cols["event_id"][5], 400)
    assert letter["document"] == orjson.loads(pairs[5].split(b"\n")[1])
    assert sink.spool.batches == 0
