"""The one-process flow path ``replay``, ``demo`` and ``tunnelhound zeek`` share.

A :class:`~tunnelhound.pipeline.FlowPipeline` computes the features and hands every frame
to the flow sinks and to an :class:`~tunnelhound.service.analysis.Analysis` running one
stage (the detections), whose alerts go to the configured alert sinks.  ``tunnelhound run``
splits the same pieces over processes (``service/``) and does not use this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tunnelhound.config import Config
from tunnelhound.pipeline import FanOut, FlowPipeline, open_sinks
from tunnelhound.service.analysis import Analysis, StageFactory
from tunnelhound.sinks.alerts import AlertFanOut, open_alert_sinks
from tunnelhound.zeek.transport import Transport

__all__ = ["FlowPath", "open_flow_path"]


@dataclass(slots=True)
class FlowPath:
    """What :func:`open_flow_path` opened: feed ``pipeline``; ``analysis`` counts the alerts."""

    pipeline: FlowPipeline
    analysis: Analysis
    alert_sinks: AlertFanOut


@contextmanager
def open_flow_path(
    config: Config,
    stage: StageFactory,
    *,
    baseline_path: str | None = None,
    zeek_transport: Transport | None = None,
    on_alerts: Callable[[list[dict[str, Any]]], None] | None = None,
) -> Iterator[FlowPath]:
    """Open the alert sinks, the analysis (``stage``) and the pipeline feeding it and the flow sinks.

    ``on_alerts`` sees every batch of alerts before the sinks do; ``zeek_transport`` is a
    transport to Zeek already open, on which detections go back (see
    :func:`~tunnelhound.sinks.alerts.open_alert_sinks`).  On exit the pipeline closes first
    (flows flushed, decoder, feature and rule state persisted: its last frames may still raise
    alerts), then the alert sinks.
    """
    alert_sinks = open_alert_sinks(config, zeek_transport=zeek_transport)

    def deliver(alerts: list[dict[str, Any]]) -> None:
        if on_alerts is not None:
            on_alerts(alerts)
        alert_sinks.write_alerts(alerts)

    try:
        analysis = Analysis(config, [stage], alert_sink=deliver)
        pipeline = FlowPipeline(config, FanOut([open_sinks(config), analysis]), baseline_path=baseline_path)
        try:
            yield FlowPath(pipeline, analysis, alert_sinks)
        finally:
            pipeline.close()
    finally:
        alert_sinks.close()
