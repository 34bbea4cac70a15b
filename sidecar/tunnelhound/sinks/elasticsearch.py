"""Elasticsearch bulk sink that loses nothing (DESIGN §7).

Flow of a row::

    write_frame -> buffer (<= batch_docs rows or flush_interval s) -> Spool (fsync)
                -> sender thread(s) -> POST _bulk (op_type create, deterministic _id)
                -> every item resolved -> Spool.ack (file deleted)

Item outcomes: 200/201 created and 409 conflict (a retried create that had landed) are
success; 429, 5xx and connection errors are retried forever with capped exponential backoff
and jitter, re-sending only the failed items; other 4xx (mapping errors such as
``document_parsing_exception``) go to the dead-letter NDJSON file with the server's reason and
are never retried.  A request refused as a whole with 413 (too large) or 400 (malformed bulk)
is split in halves down to single documents; a single document still refused is a dead letter.  Two 4xx are retried instead because they are operator errors that a fix
outside the sidecar resolves without losing data: 401/403 (credentials, privileges) and 404
``index_not_found_exception`` (no data stream template yet: run ``tunnelhound setup``).

Durability contract: rows are on disk once :meth:`ElasticsearchSink.flush` returns (the sink
also flushes by itself every ``batch_docs`` rows and ``flush_interval`` seconds).  After a
crash, a new sink on the same ``spool_dir`` sends what the old one left; ``_id`` makes that
replay idempotent.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from elastic_transport import TlsError, TransportError
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from tunnelhound.errors import TunnelhoundError
from tunnelhound.normalize.frame import FlowFrame, encode_bulk_block, encode_ndjson
from tunnelhound.sinks.spool import Spool, SpoolBatch

__all__ = [
    "Capabilities",
    "ElasticsearchSink",
    "ElasticsearchSinkError",
    "alert_index",
    "bulk_pairs",
    "flow_index",
]

log = logging.getLogger(__name__)

# Only what the sender reads; a 5,000-item response shrinks to a list of statuses.
_FILTER_PATH = "errors,items.*.status,items.*.error"
# Item statuses that a later attempt can turn into success.
_RETRY_STATUSES = frozenset({401, 403, 408, 429})
# Whole-request answers that re-sending the same body cannot fix: 413 (body larger than the
# node's http.max_content_length) and 400 (a malformed line): split the request instead.
_REFUSED_STATUSES = frozenset({400, 413})
_LOG_EVERY_S = 10.0
# Spooled payloads kept in memory for the senders (Spool cache_bytes): ~10 batches of 2,000.
_SPOOL_CACHE_BYTES = 32 * 1024 * 1024


class ElasticsearchSinkError(TunnelhoundError):
    """Elasticsearch cannot be used as configured (bad CA, bad credentials, too old)."""


def flow_index(namespace: str) -> str:
    """The data stream flows of a namespace go to."""
    return f"logs-tunnelhound.flow-{namespace}"


def alert_index(namespace: str) -> str:
    """The data stream alerts of a namespace go to (DESIGN §6)."""
    return f"logs-tunnelhound.alert-{namespace}"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the cluster can do, from the lowest node version in ``GET _nodes``."""

    version: tuple[int, int, int]
    require_data_stream: bool
    include_source_on_error: bool

    @staticmethod
    def from_version(version: tuple[int, int, int]) -> Capabilities:
        """Gate ``_bulk`` extras by the release that introduced them."""
        return Capabilities(
            version=version,
            # 8.13: refuse to auto-create a plain index where a data stream is expected.
            require_data_stream=version >= (8, 13, 0),
            # 8.18: errors without a copy of the document (we keep it in the dead letter).
            include_source_on_error=version >= (8, 18, 0),
        )


_UNKNOWN = Capabilities((0, 0, 0), False, False)


@dataclass(frozen=True, slots=True)
class _Refused:
    """A ``_bulk`` refused as a whole (413 or 400): its status and the error for dead letters."""

    status: int
    error: dict[str, Any]


class _Orjson(JsonSerializer):
    """orjson for JSON bodies and responses (the client's own needs orjson's numpy option)."""

    def json_dumps(self, data: Any) -> bytes:
        return orjson.dumps(data, default=self.default, option=orjson.OPT_SERIALIZE_NUMPY)

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class _OrjsonNdjson(NdjsonSerializer, _Orjson):
    """NDJSON with orjson; a bytes body (our spooled batch) is passed through untouched."""


class ElasticsearchSink:
    """Write flows to ``logs-tunnelhound.flow-<namespace>`` through a disk spool; other
    documents (alerts) take the same path with :meth:`write_documents`.

    ``url_or_client`` is a URL (``https://host:9200``) or a ready ``Elasticsearch`` client.
    ``senders`` threads each keep one ``_bulk`` in flight.  ``full_policy`` is the spool's
    (``block`` waits ``block_timeout`` s, then raises; ``drop_oldest`` drops, counted).
    Backoff after a failure: ``min(backoff_max, backoff_initial * 2**n)`` with equal jitter.

    A wrong CA or bad credentials raise :class:`ElasticsearchSinkError` (one line) from the
    constructor; an unreachable node does not: data waits in the spool until it answers.
    """

    def __init__(
        self,
        url_or_client: str | Elasticsearch,
        *,
        spool_dir: str | os.PathLike[str],
        spool_max_bytes: int = 1024**3,
        full_policy: str = "block",
        block_timeout: float = 60.0,
        batch_docs: int = 2000,
        flush_interval: float = 1.0,
        senders: int = 2,
        ca_certs: str | os.PathLike[str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        api_key: str | tuple[str, str] | None = None,
        verify_certs: bool = True,
        request_timeout: float = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        dead_letter_path: str | os.PathLike[str] | None = None,
        probe_timeout: float = 10.0,
    ) -> None:
        if batch_docs < 1:
            raise ValueError(f"batch_docs must be >= 1, got {batch_docs}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0, got {flush_interval}")
        if senders < 1:
            raise ValueError(f"senders must be >= 1, got {senders}")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self.spool = Spool(
            spool_dir,
            max_bytes=spool_max_bytes,
            full_policy=full_policy,
            block_timeout=block_timeout,
            cache_bytes=min(_SPOOL_CACHE_BYTES, spool_max_bytes),
        )
        self.batch_docs = batch_docs
        self.flush_interval = flush_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.dead_letter_path = (
            Path(dead_letter_path) if dead_letter_path else Path(spool_dir) / "dead-letter.ndjson"
        )
        self.capabilities: Capabilities | None = None
        self.client, self._url = _make_client(
            url_or_client, ca_certs, basic_auth, api_key, verify_certs, request_timeout
        )
        # counters (read them with metrics())
        self.docs_written = 0
        self.docs_sent = 0
        self.docs_acked = 0
        self.docs_conflict = 0
        self.retries = 0
        self.item_retries = 0
        self.dead_letters = 0
        self.bulk_requests = 0
        self.bulk_failures = 0
        self.bulk_refused = 0
        self.last_bulk_latency_s = 0.0
        self._mlock = threading.Lock()
        # Pieces of bulk body (a frame's rows, or one pair) and their row counts.  A frame is
        # cut where a batch ends, so a batch is always whole pieces.
        self._buf: list[tuple[bytes, int]] = []
        self._buf_rows = 0
        self._buf_since = 0.0
        self._buf_lock = threading.Lock()
        self._dl_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._stop_now = threading.Event()
        self._last_log: dict[str, float] = {}
        self._closed = False
        try:
            self._probe(probe_timeout, fatal=True)
        except ElasticsearchSinkError:
            self.client.close()  # no sender threads yet: nothing else to stop
            raise
        self._threads = [
            threading.Thread(target=self._sender, name=f"es-sender-{i}", daemon=True) for i in range(senders)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ FlowSink

    def write_frame(self, frame: FlowFrame) -> None:
        """Queue a frame's rows; full batches go to the spool before this returns."""
        if self._closed:
            raise ValueError("write to a closed ElasticsearchSink")
        if frame.n == 0:
            return
        index = flow_index(frame.namespace)
        with self._buf_lock:
            # The rows are encoded in runs that end where a batch ends: one column join per run
            # (encode_bulk_block), and a batch is the concatenation of whole runs.
            pieces = []
            start, filled = 0, self._buf_rows % self.batch_docs
            while start < frame.n:
                stop = min(frame.n, start + self.batch_docs - filled)
                part = frame if stop - start == frame.n else frame.rows(start, stop)
                pieces.append((encode_bulk_block(part, index), stop - start))
                start, filled = stop, 0
            self._queue(pieces, frame.n)

    def write_pairs(self, pairs: list[bytes]) -> None:
        """Queue ready ``action\\ndocument\\n`` pairs (what :func:`bulk_pairs` builds)."""
        with self._buf_lock:
            self._queue([(pair, 1) for pair in pairs], len(pairs))

    def write_documents(self, docs: Sequence[Mapping[str, Any]], index: str) -> None:
        """Queue JSON-ready documents for ``index`` (a data stream), ``_id`` = their ``event.id``.

        The documents take the same spool, retry and dead-letter path as flows.  Raises
        ``ValueError`` for a document without ``event.id``: it could not be deduplicated.
        """
        if self._closed:
            raise ValueError("write to a closed ElasticsearchSink")
        ids = []
        for doc in docs:
            event = doc.get("event")
            eid = event.get("id") if isinstance(event, Mapping) else None
            if not isinstance(eid, str) or not eid:
                raise ValueError("a document without event.id cannot be indexed idempotently")
            ids.append(eid)
        encoded = [orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) for doc in docs]
        self.write_pairs(_create_pairs(index, ids, encoded))

    def _queue(self, pieces: list[tuple[bytes, int]], rows: int) -> None:
        """Buffer pieces, spooling every full batch (caller holds _buf_lock)."""
        if not self._buf:
            self._buf_since = time.monotonic()
        self._buf.extend(pieces)
        self._buf_rows += rows
        while self._buf_rows >= self.batch_docs:
            self._spool_buffer(self.batch_docs, timeout=None)
        with self._mlock:
            self.docs_written += rows

    def flush(self) -> None:
        """Put every buffered row in the spool (durable once this returns)."""
        with self._buf_lock:
            while self._buf_rows:
                self._spool_buffer(self.batch_docs, timeout=None)

    def close(self, timeout: float = 30.0) -> None:
        """Spool the buffer, send for up to ``timeout`` s, then stop; the rest waits in the spool."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._closing.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self.spool.batches and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop_now.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        if self.spool.batches:
            log.warning(
                "elasticsearch sink closed with %d batches (%d bytes) in %s; they are sent on the next start",
                self.spool.batches,
                self.spool.bytes,
                self.spool.directory,
            )
        self.client.close()

    def metrics(self) -> dict[str, float]:
        """Counters and gauges, for the metrics endpoint and summaries."""
        with self._mlock:
            values: dict[str, float] = {
                "docs_written": self.docs_written,
                "docs_sent": self.docs_sent,
                "docs_acked": self.docs_acked,
                "docs_conflict": self.docs_conflict,
                "retries": self.retries,
                "item_retries": self.item_retries,
                "dead_letters": self.dead_letters,
                "bulk_requests": self.bulk_requests,
                "bulk_failures": self.bulk_failures,
                "bulk_refused": self.bulk_refused,
                "last_bulk_latency_s": self.last_bulk_latency_s,
            }
        values.update(
            spool_bytes=self.spool.bytes,
            spool_batches=self.spool.batches,
            spool_dropped=self.spool.dropped,
            spool_dropped_docs=self.spool.dropped_items,
            spool_torn=self.spool.torn,
            buffered_docs=self._buf_rows,
        )
        return values

    # ------------------------------------------------------------------ buffer -> spool

    def _spool_buffer(self, rows: int, timeout: float | None) -> None:
        """Move up to ``rows`` buffered rows (whole pieces, at least one) into one spool batch
        (caller holds _buf_lock).  The joined body is the one written and, from the spool's
        cache, the one sent: no other copy of it is made."""
        count, taken = 0, 0
        for _, piece_rows in self._buf:
            if taken and count + piece_rows > rows:
                break
            count += piece_rows
            taken += 1
        payload = b"".join([piece for piece, _ in self._buf[:taken]])
        self.spool.append(payload, items=count, timeout=timeout)
        # Only after a successful append: a SpoolFullError leaves the rows buffered.
        del self._buf[:taken]
        self._buf_rows -= count
        self._buf_since = time.monotonic()
        self._wake.set()

    def _timed_flush(self) -> None:
        """Spool a buffer older than flush_interval, without ever waiting on a full spool.

        Called from sender threads: blocking here on a full spool would wait for acks that only
        senders produce, so a writer already holding the lock, or a full spool, means skip.
        """
        if not self._buf_rows or time.monotonic() - self._buf_since < self.flush_interval:
            return
        if not self._buf_lock.acquire(blocking=False):
            return
        try:
            if self._buf_rows and time.monotonic() - self._buf_since >= self.flush_interval:
                self._spool_buffer(self.batch_docs, timeout=0)
        except TunnelhoundError:
            pass  # full: the writer's next call applies the policy
        finally:
            self._buf_lock.release()

    # ------------------------------------------------------------------ senders

    def _sender(self) -> None:
        failures = 0
        while not self._stop_now.is_set():
            batch = self.spool.claim()  # in flight: drop_oldest leaves it alone
            if batch is None:
                if self._closing.is_set() and not self.spool.batches:
                    return
                self._timed_flush()
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            try:
                failures = self._deliver(batch, failures)
            except Exception:  # a bug must not kill the only path out of the spool
                log.exception("elasticsearch sender: unexpected error on batch %d", batch.batch_id)
                failures += 1
                self._sleep(failures)
            finally:
                self.spool.release(batch.batch_id)  # a no-op once acked

    def _deliver(self, batch: SpoolBatch, failures: int) -> int:
        """Send a batch until every item is resolved, then ack it; returns the failure streak.

        The batch goes out as a queue of requests (lists of item positions), first all of it.
        A request refused as a whole with 413 (too large for ``http.max_content_length``) or
        400 (malformed bulk) is split in halves and both are sent at once, down to single
        documents: one still refused goes to the dead letter with the server's answer, so a bad
        line never blocks the batch and the good ones around it are indexed.  Items answered
        with a retryable status are collected and re-sent after a backoff.

        The spooled payload goes out as it is for as long as the whole batch is the request;
        it is split into items (action and document lines) only once some item needs a retry
        or a dead letter, or the request is refused as a whole.
        """
        payload = self.spool.read(batch.batch_id)
        if payload is None:
            return failures  # dropped by drop_oldest or torn: counted by the spool
        whole = batch.items > 0  # a batch spooled without its count is split from the start
        actions: list[bytes] = []
        docs: list[bytes] = []
        if not whole:
            actions, docs = _split(payload)
        queue: deque[list[int]] = deque([list(range(batch.items if whole else len(actions)))])
        retry: list[int] = []
        example: Any = None  # one retryable item's answer, for the log
        while queue or retry:
            if self._stop_now.is_set():
                return failures  # not acked: the next start sends it again
            if not queue:
                # Every request of this round is answered: back off, re-send the retryable items.
                self._log_limited("item", "elasticsearch: %d items to retry, e.g. %s", len(retry), example)
                failures += 1
                self._sleep(failures)
                queue.append(retry)
                retry = []
                continue
            if self.capabilities is None and not self._probe(10.0, fatal=False):
                failures += 1
                self._sleep(failures)
                continue
            todo = queue[0]
            # The whole batch: the spooled bytes as they are; a subset: its items joined.
            body = payload if whole else b"".join([actions[i] + b"\n" + docs[i] + b"\n" for i in todo])
            outcome = self._bulk(body, len(todo))
            if outcome is None:
                failures += 1
                with self._mlock:
                    self.retries += len(todo)
                self._sleep(failures)
                continue
            queue.popleft()
            if isinstance(outcome, _Refused):
                if whole:
                    # From here on requests are halves: split the payload into its items.
                    whole = False
                    actions, docs = _split(payload)
                    todo = list(range(len(actions)))  # the lines, should the spooled count be off
                if len(todo) > 1:
                    half = len(todo) // 2
                    queue.extendleft([todo[half:], todo[:half]])
                    with self._mlock:
                        self.retries += len(todo)
                else:
                    self._dead_letter([(actions[todo[0]], docs[todo[0]], outcome.status, outcome.error)])
                    with self._mlock:
                        self.dead_letters += 1
                continue
            dead, acked, conflicts, again = [], 0, 0, 0
            for pos, item in zip(todo, outcome, strict=True):
                result = next(iter(item.values()))
                status = result.get("status", 0)
                if status in (200, 201):
                    acked += 1
                elif status == 409:
                    conflicts += 1
                elif _retryable(status, result.get("error")):
                    retry.append(pos)
                    again += 1
                    example = item
                else:
                    dead.append((pos, status, result.get("error")))
            if whole and (dead or again):
                # Some items go on alone (retry) or to the dead letter: split into items.
                whole = False
                actions, docs = _split(payload)
            if dead:
                self._dead_letter([(actions[p], docs[p], s, e) for p, s, e in dead])
            with self._mlock:
                self.docs_acked += acked + conflicts
                self.docs_conflict += conflicts
                self.dead_letters += len(dead)
                self.retries += again
                self.item_retries += again
            if not again:
                failures = 0
        self.spool.ack(batch.batch_id)
        return failures

    def _bulk(self, body: bytes, count: int) -> list[dict[str, Any]] | _Refused | None:
        """One ``_bulk``: its items; :class:`_Refused` for a 413 or 400 answer to the whole
        request (split it, never re-send it as it is); None when it must be retried as it is."""
        caps = self.capabilities or _UNKNOWN
        params: dict[str, Any] = {"filter_path": _FILTER_PATH}
        if caps.require_data_stream:
            params["require_data_stream"] = True
        if caps.include_source_on_error:
            params["include_source_on_error"] = False
        with self._mlock:
            self.docs_sent += count
            self.bulk_requests += 1
        start = time.monotonic()
        try:
            # The spooled bytes go out as they are: the NDJSON serializer passes bytes through.
            resp = self.client.bulk(operations=cast(Any, body), **params)
        except ApiError as err:
            status = err.meta.status
            if status in _REFUSED_STATUSES:
                with self._mlock:
                    self.bulk_refused += 1
                error = _error_of(err.body, status, count, len(body))
                self._log_limited(
                    f"refused{status}",
                    "elasticsearch %s: bulk of %d documents (%d bytes) refused, %s: %s; splitting it",
                    self._url,
                    count,
                    len(body),
                    error.get("type"),
                    error.get("reason"),
                )
                return _Refused(status, error)
            self._request_failed(f"HTTP {status}: {_reason(err.body)}")
            return None
        except (TransportError, OSError) as err:
            self._request_failed(_one_line(err))
            return None
        latency = time.monotonic() - start
        items = resp.body.get("items", [])
        with self._mlock:
            self.last_bulk_latency_s = latency
        if len(items) != count:
            self._request_failed(f"answer has {len(items)} items for {count} sent")
            return None
        return cast(list[dict[str, Any]], items)

    def _request_failed(self, why: str) -> None:
        with self._mlock:
            self.bulk_failures += 1
        self._log_limited("request", "elasticsearch %s: bulk failed, retrying: %s", self._url, why)

    def _sleep(self, failures: int) -> None:
        """Capped exponential backoff with equal jitter (never zero, never in lockstep)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 30))
        self._stop_now.wait(ceiling / 2 + random.uniform(0, ceiling / 2))

    def _dead_letter(self, rows: list[tuple[bytes, bytes, int, Any]]) -> None:
        """Append rejected documents with the server's reason, synced before the batch is acked."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out = []
        for action, doc, status, error in rows:
            meta = _action_meta(action)
            fields: dict[str, Any] = {
                "@timestamp": now,
                "_index": meta.get("_index"),
                "_id": meta.get("_id"),
                "status": status,
                "error": error,
            }
            if not meta:
                fields["action"] = action.decode("utf-8", "replace")  # the malformed line itself
            try:
                orjson.loads(doc)
            except orjson.JSONDecodeError:
                doc = orjson.dumps(doc.decode("utf-8", "replace"))  # kept as a string
            out.append(orjson.dumps(fields)[:-1] + b',"document":' + doc + b"}\n")
        with self._dl_lock:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.dead_letter_path, "ab") as fh:
                fh.write(b"".join(out))
                fh.flush()
                os.fsync(fh.fileno())
        first = rows[0][3] if isinstance(rows[0][3], dict) else {}
        log.warning(
            "elasticsearch: %d documents rejected to %s (%s: %s)",
            len(rows),
            self.dead_letter_path,
            first.get("type"),
            first.get("reason"),
        )

    def _log_limited(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._last_log[key] = now
            log.warning(msg, *args)

    # ------------------------------------------------------------------ probing

    def _probe(self, timeout: float, *, fatal: bool) -> bool:
        """Read node versions from ``GET _nodes``; True once capabilities are known.

        ``fatal``: TLS and authentication failures raise a one-line error (start-up); an
        unreachable node never does, the sender probes again before its first bulk.
        """
        try:
            resp = self.client.options(request_timeout=timeout).nodes.info(filter_path="nodes.*.version")
        except TlsError as err:
            return self._probe_failed(
                f"TLS to {self._url} failed: {_tls_reason(err)} (check ca_certs / verify_certs)", fatal
            )
        except ApiError as err:
            status = err.meta.status
            if status == 401:
                return self._probe_failed(
                    f"Elasticsearch {self._url} refused the credentials (401 {_reason(err.body)}); "
                    "check basic_auth / api_key",
                    fatal,
                )
            if status == 403:
                # No `monitor` privilege: index without the version-gated extras.
                log.warning("elasticsearch %s: GET _nodes forbidden (403), assuming no extras", self._url)
                self.capabilities = _UNKNOWN
                return True
            self._log_limited("probe", "elasticsearch %s: GET _nodes: HTTP %s", self._url, status)
            return False
        except (TransportError, OSError) as err:
            self._log_limited(
                "probe", "elasticsearch %s unreachable (%s); spooling", self._url, _one_line(err)
            )
            return False
        versions = [
            _parse_version(str(node.get("version", "")))
            for node in cast(Mapping[str, Any], resp.body.get("nodes", {})).values()
        ]
        lowest = min(versions, default=(0, 0, 0))
        if lowest < (8, 0, 0):
            raise ElasticsearchSinkError(
                f"Elasticsearch {self._url} runs {'.'.join(map(str, lowest))}; Tunnelhound needs 8.0 or later"
            )
        self.capabilities = Capabilities.from_version(lowest)
        return True

    def _probe_failed(self, message: str, fatal: bool) -> bool:
        if fatal:
            raise ElasticsearchSinkError(message)
        self._log_limited("probe", "%s", message)
        return False


def _split(payload: bytes) -> tuple[list[bytes], list[bytes]]:
    """The action lines and the document lines of a bulk body (without newlines)."""
    lines = payload.split(b"\n")
    return lines[0:-1:2], lines[1:-1:2]


def bulk_pairs(frame: FlowFrame) -> list[bytes]:
    """``create`` action and document lines for each row, ``_id`` = the row's ``event.id``."""
    return _create_pairs(flow_index(frame.namespace), frame.cols["event_id"].tolist(), encode_ndjson(frame))


def _create_pairs(index: str, ids: Sequence[Any], docs: Sequence[bytes]) -> list[bytes]:
    """``create`` action and document line pairs for serialized documents and their ``_id``."""
    prefix = b'{"create":{"_index":"' + index.encode() + b'","_id":'
    return [prefix + orjson.dumps(eid) + b"}}\n" + doc + b"\n" for eid, doc in zip(ids, docs, strict=True)]


def _make_client(
    url_or_client: str | Elasticsearch,
    ca_certs: str | os.PathLike[str] | None,
    basic_auth: tuple[str, str] | None,
    api_key: str | tuple[str, str] | None,
    verify_certs: bool,
    request_timeout: float,
) -> tuple[Elasticsearch, str]:
    if isinstance(url_or_client, Elasticsearch):
        nodes = url_or_client.transport.node_pool.all()
        return url_or_client, str(nodes[0].config) if nodes else "elasticsearch"
    kwargs: dict[str, Any] = {
        "request_timeout": request_timeout,
        # The sink retries forever itself; transport-level retries would hide failures from it.
        "max_retries": 0,
        "retry_on_timeout": False,
        "serializers": {
            "application/json": _Orjson(),
            "application/x-ndjson": _OrjsonNdjson(),
            "application/vnd.elasticsearch+json": _Orjson(),
            "application/vnd.elasticsearch+x-ndjson": _OrjsonNdjson(),
        },
        # bulk bodies of a few MB compress ~10x; the node's CPU is the bottleneck, not the wire
        "http_compress": False,
    }
    if url_or_client.startswith("https:"):
        kwargs["verify_certs"] = verify_certs
        if ca_certs is not None:
            kwargs["ca_certs"] = str(ca_certs)
        if not verify_certs:
            kwargs["ssl_show_warn"] = False
    if basic_auth is not None:
        kwargs["basic_auth"] = basic_auth
    if api_key is not None:
        kwargs["api_key"] = api_key
    try:
        return Elasticsearch(url_or_client, **kwargs), url_or_client
    except (ValueError, OSError, ssl.SSLError) as err:
        raise ElasticsearchSinkError(f"Elasticsearch {url_or_client}: {_one_line(err)}") from None


def _retryable(status: int, error: Any) -> bool:
    if status in _RETRY_STATUSES or status >= 500:
        return True
    # require_data_stream without a template: retry until `tunnelhound setup` has run.
    return status == 404 and isinstance(error, dict) and error.get("type") == "index_not_found_exception"


def _action_meta(action: bytes) -> dict[str, Any]:
    """``_index`` and ``_id`` of an action line; empty when the line is not a valid action."""
    try:
        parsed = orjson.loads(action)
    except orjson.JSONDecodeError:
        return {}
    meta = next(iter(parsed.values()), None) if isinstance(parsed, dict) and len(parsed) == 1 else None
    return meta if isinstance(meta, dict) else {}


def _error_of(body: Any, status: int, count: int, size: int) -> dict[str, Any]:
    """The server's error of a refused request (type, reason, caused_by), or one made up for
    a 413, which comes without a body."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return {k: v for k, v in error.items() if k in ("type", "reason", "caused_by")}
    if status == 413:
        return {
            "type": "request_entity_too_large",
            "reason": f"HTTP 413: a bulk of {count} documents ({size} bytes) is larger than the node "
            "accepts (http.max_content_length)",
        }
    return {"type": f"http_{status}", "reason": _reason(body) if body else f"HTTP {status}"}


def _parse_version(text: str) -> tuple[int, int, int]:
    parts = [*text.split("-")[0].split("."), "0", "0", "0"][:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('type')}: {error.get('reason')}"
        if error is not None:
            return str(error)
    return _one_line(body)


def _tls_reason(err: BaseException) -> str:
    """The innermost SSL reason (e.g. 'certificate verify failed: self-signed certificate')."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return seen.reason or str(seen)
        nested = getattr(seen, "errors", ())
        seen = nested[0] if nested else (seen.__cause__ or seen.__context__)
    return _one_line(err)


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text[:300]
