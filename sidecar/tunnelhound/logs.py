"""Structured logs: one JSON object per line on stderr, for journald and log shippers.

Only events go to the log (start, stop, reload, a sink falling behind, a worker dying);
per-packet problems are counted in :mod:`tunnelhound.decode.stats` and exported as metrics,
never logged one by one, so a broken exporter cannot flood the journal.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["JsonFormatter", "setup_logging"]

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as ECS-flavoured JSON: ``@timestamp``, ``log.level``, ``message``, extras."""

    def __init__(self, process_name: str = "main") -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON; ``extra=`` fields are kept, values that are not JSON become strings."""
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "process.pid": os.getpid(),
            "process.name": self.process_name,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(fmt: Literal["json", "text"], level: str = "info", *, process_name: str = "main") -> None:
    """Replace the root handlers with one on stderr in ``fmt`` at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process_name) if fmt == "json" else logging.Formatter("%(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
