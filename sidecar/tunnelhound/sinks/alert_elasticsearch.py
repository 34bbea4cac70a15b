"""Elasticsearch alert sink: alerts into ``logs-tunnelhound.alert-<namespace>``.

It is an :class:`~tunnelhound.sinks.elasticsearch.ElasticsearchSink` of its own (own spool,
own sender threads), so alerts never queue behind a backlog of flows, and they get the same
guarantees: spooled to disk, retried until acknowledged, ``_id`` = ``event.id`` with op_type
``create`` (a re-sent alert is a 409, not a duplicate), refusals to the dead-letter file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tunnelhound.errors import TunnelhoundError
from tunnelhound.sinks.alertsink import SinkStats
from tunnelhound.sinks.elasticsearch import ElasticsearchSink, alert_index

__all__ = ["ElasticsearchAlertSink"]

log = logging.getLogger(__name__)


class ElasticsearchAlertSink:
    """Index alerts through ``sink``, each into the alert stream of its ``data_stream.namespace``
    (``namespace`` when the alert has none)."""

    name = "elasticsearch"

    def __init__(self, sink: ElasticsearchSink, *, namespace: str, close_timeout: float = 5.0) -> None:
        self.sink = sink
        self.namespace = namespace
        self.close_timeout = close_timeout
        self._stats = SinkStats()

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Queue the alerts for the spool (written to disk within ``flush_interval``)."""
        by_index: dict[str, list[Mapping[str, Any]]] = {}
        for alert in alerts:
            stream = alert.get("data_stream")
            namespace = stream.get("namespace") if isinstance(stream, Mapping) else None
            by_index.setdefault(alert_index(namespace or self.namespace), []).append(alert)
        for index, docs in by_index.items():
            try:
                self.sink.write_documents(docs, index)
            except (TunnelhoundError, ValueError, OSError) as err:
                # No event.id, a full spool, a disk error: count, never stop the pipeline.
                self._stats.add("failed", len(docs))
                log.warning("elasticsearch alerts: %d alerts not queued: %s", len(docs), err)

    def close(self) -> None:
        """Spool what is buffered and send for up to ``close_timeout`` s; the rest stays spooled."""
        self.sink.close(timeout=self.close_timeout)

    def stats(self) -> dict[str, int]:
        """sent (acknowledged), failed (dead letters and refusals here), dropped (spool full)."""
        m = self.sink.metrics()
        own = self._stats.snapshot()
        return {
            "sent": int(m["docs_acked"]),
            "failed": int(m["dead_letters"]) + own["failed"],
            "dropped": int(m["spool_dropped_docs"]),
            "retried": int(m["retries"]),
            "queued": max(
                0, int(m["docs_written"] - m["docs_acked"] - m["dead_letters"] - m["spool_dropped_docs"])
            ),
        }
