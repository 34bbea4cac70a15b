"""The analysis stage: where state that spans exporters lives (detections), in ONE process.

Workers decode, normalize, stitch and write flows for the exporters the kernel hands them;
that state is per exporter, and SO_REUSEPORT keeps an exporter on one worker.  Detections
keep state per *host*, and one host's flows can arrive through two exporters that landed on
two workers, so every stitched frame also goes to the single :class:`Analysis` of the
service, which runs the registered stages in order.

The detections (:mod:`tunnelhound.detection`) are the built-in stage; plugging another in::

    from tunnelhound.service.analysis import ANALYSIS_STAGES

    ANALYSIS_STAGES.append(MyStage)  # a factory: Config -> Stage (or None: nothing to do)

Each stage gets every stitched frame and returns alert documents (dicts); the analysis
counts them per ``rule.name`` for ``/metrics`` and hands them to ``alert_sink``.  On a
SIGHUP the stage's ``reload(config)`` runs between two frames; on shutdown ``close()``
persists its state after the last frame.  ``state_size()`` is exported as the rule-state
gauge, and a stage's ``metrics()`` (optional: name -> value) as ``tunnelhound_<name>{stage}``
(the rule engine's evictions, late events, suppressions).  When no stage is registered,
workers send no frames at all.

``Analysis`` is also a flow sink (``write_frame``/``close``), so a one-process pipeline such
as ``replay`` runs the same stages with ``FanOut([open_sinks(config), Analysis(config)])``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunnelhound.config import Config
from tunnelhound.detection import detection_stage
from tunnelhound.normalize.frame import FlowFrame

__all__ = ["ANALYSIS_STAGES", "Analysis", "AnalysisStats", "Stage", "StageFactory", "rule_name"]


class Stage(Protocol):
    """One stateful step of the analysis (a detection engine, say)."""

    name: str

    def process(self, frame: FlowFrame) -> list[dict[str, Any]]:
        """Look at stitched flows; return the alerts they raise."""

    def finish(self) -> list[dict[str, Any]]:
        """End of input (a replay): the alerts of whatever is still pending; no frame follows."""

    def reload(self, config: Config) -> None:
        """Apply what is safe to change at run time (rules, exclusions) from a new config."""

    def state_size(self) -> int:
        """Entries of state held (hosts, windows), for the rule-state gauge."""

    def close(self) -> None:
        """Persist state; no frame follows."""


StageFactory = Callable[[Config], Stage | None]
"""Builds a stage from the config, or None when the config leaves it nothing to do."""
ANALYSIS_STAGES: list[StageFactory] = [detection_stage]
"""Stages every ``tunnelhound run`` builds in its analysis process, in order."""

AlertSink = Callable[[list[dict[str, Any]]], None]


def rule_name(alert: dict[str, Any]) -> str:
    """The ``rule.name`` of an alert document (``"unknown"`` when it has none)."""
    rule = alert.get("rule")
    name = rule.get("name") if isinstance(rule, dict) else None
    return name if isinstance(name, str) and name else "unknown"


@dataclass(slots=True)
class AnalysisStats:
    """What the analysis saw: frames and rows by worker, alerts by rule, state by stage."""

    frames: Counter[int] = field(default_factory=Counter)
    rows: Counter[int] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    state_size: dict[str, int] = field(default_factory=dict)
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each stage's own counters (``metrics()``, when it has one), e.g. the rule engine's evictions."""


class Analysis:
    """Run the stages over every frame, count and deliver their alerts."""

    def __init__(
        self,
        config: Config,
        factories: list[StageFactory] | None = None,
        alert_sink: AlertSink | None = None,
    ) -> None:
        made = [make(config) for make in (ANALYSIS_STAGES if factories is None else factories)]
        self.stages: list[Stage] = [stage for stage in made if stage is not None]
        self.alert_sink = alert_sink
        self.stats = AnalysisStats()

    @property
    def active(self) -> bool:
        """True when some stage wants frames (otherwise workers need not send them)."""
        return bool(self.stages)

    def process(self, frame: FlowFrame, worker: int = 0) -> None:
        """Run every stage over ``frame`` (from ``worker``)."""
        self.stats.frames[worker] += 1
        self.stats.rows[worker] += frame.n
        for stage in self.stages:
            self._deliver(stage.process(frame))

    def finish(self) -> None:
        """End of input: deliver what every stage still has pending (see :meth:`Stage.finish`)."""
        for stage in self.stages:
            self._deliver(stage.finish())

    def _deliver(self, alerts: list[dict[str, Any]]) -> None:
        if alerts:
            self.stats.alerts.update(rule_name(a) for a in alerts)
            if self.alert_sink is not None:
                self.alert_sink(alerts)

    def write_frame(self, frame: FlowFrame) -> None:
        """The flow-sink face: ``FanOut([open_sinks(config), analysis])`` runs the stages on a
        :class:`~tunnelhound.pipeline.FlowPipeline`'s output, e.g. for ``replay``."""
        self.process(frame)

    def reload(self, config: Config) -> None:
        """Hand a reloaded config to every stage."""
        for stage in self.stages:
            stage.reload(config)

    def snapshot(self) -> AnalysisStats:
        """A copy of the counters, with each stage's current state size."""
        return AnalysisStats(
            Counter(self.stats.frames),
            Counter(self.stats.rows),
            Counter(self.stats.alerts),
            {stage.name: stage.state_size() for stage in self.stages},
            {
                stage.name: dict(metrics())
                for stage in self.stages
                if callable(metrics := getattr(stage, "metrics", None))
            },
        )

    def close(self) -> None:
        """Close (persist) every stage, even when one fails; the first failure is raised after."""
        errors: list[Exception] = []
        for stage in self.stages:
            try:
                stage.close()
            except Exception as exc:  # the other stages must still persist
                errors.append(exc)
        if errors:
            raise errors[0]
