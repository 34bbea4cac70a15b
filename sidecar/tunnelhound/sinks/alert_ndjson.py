"""NDJSON alert sink: alert documents as JSON lines, through the rotating writer of flows.

Files are ``alerts-<UTC time>-<seq>.ndjson`` (``.part`` while written), so alerts can share
the flows' directory; ``-`` writes to stdout.  Writing is local and synchronous; a write error
(disk full) is counted ``failed`` and logged, never raised into the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tunnelhound.sinks.alertsink import SinkStats
from tunnelhound.sinks.ndjson import NdjsonSink

__all__ = ["NdjsonAlertSink"]

log = logging.getLogger(__name__)


class NdjsonAlertSink:
    """Write each alert as one JSON line to ``writer`` (an :class:`NdjsonSink`)."""

    name = "ndjson"

    def __init__(self, writer: NdjsonSink) -> None:
        self.writer = writer
        self._stats = SinkStats()

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Append the alerts; the file is flushed per batch (alerts are few and precious)."""
        if not alerts:
            return
        try:
            self.writer.write_docs([dict(alert) for alert in alerts])
            self.writer.flush()
        except (OSError, TypeError, ValueError) as err:
            # TypeError/ValueError: a value orjson cannot serialize; OSError: the disk.
            self._stats.add("failed", len(alerts))
            log.warning("ndjson alerts %s: %d alerts not written: %s", self.writer.path, len(alerts), err)
            return
        self._stats.add("sent", len(alerts))

    def close(self) -> None:
        """Finish the current file."""
        try:
            self.writer.close()
        except OSError as err:
            log.warning("ndjson alerts %s: close failed: %s", self.writer.path, err)

    def stats(self) -> dict[str, int]:
        """sent (lines written) and failed."""
        return self._stats.snapshot()
