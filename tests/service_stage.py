"""A small analysis stage for the service tests: a per-host, cross-exporter "rule".

It alerts once for each source host seen through two or more exporters, which it can only
do right if every exporter's flows reach the same stage, whatever worker decoded them.  On
close it writes what it saw to ``$TH_TEST_STAGE_OUT`` (JSON), with its process id.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tunnelhound.config import Config
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.service.analysis import ANALYSIS_STAGES

RULE = "test.host_via_two_exporters"


class CrossExporterHosts:
    """Remember which exporters reported each source host."""

    name = "cross_exporter_hosts"

    def __init__(self, config: Config) -> None:
        self.exporters: dict[str, set[str]] = {}
        self.rows = 0
        self.reloads = 0

    def process(self, frame: FlowFrame) -> list[dict[str, Any]]:
        alerts = []
        self.rows += frame.n
        for host, exporter in zip(
            frame.cols["src_ip"].tolist(), frame.cols["observer"].tolist(), strict=True
        ):
            seen = self.exporters.setdefault(host, set())
            if exporter not in seen:
                seen.add(exporter)
                if len(seen) == 2:
                    alerts.append({"rule": {"name": RULE}, "source": {"ip": host}})
        return alerts

    def finish(self) -> list[dict[str, Any]]:
        return []

    def reload(self, config: Config) -> None:
        self.reloads += 1

    def state_size(self) -> int:
        return len(self.exporters)

    def close(self) -> None:
        out = {
            "pid": os.getpid(),
            "rows": self.rows,
            "reloads": self.reloads,
            "hosts": {h: sorted(e) for h, e in self.exporters.items()},
        }
        with open(os.environ["TH_TEST_STAGE_OUT"], "w", encoding="utf-8") as fh:
            json.dump(out, fh)


def install() -> None:
    """Register the stage (the launcher calls this before ``tunnelhound run``)."""
    ANALYSIS_STAGES.append(CrossExporterHosts)
