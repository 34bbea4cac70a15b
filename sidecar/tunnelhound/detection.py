"""The detection stage: Sigma rules over the flows features were computed on, to alert documents.

It is an analysis stage (:mod:`tunnelhound.service.analysis`): ``tunnelhound run`` runs one
in its analysis process, whatever number of workers feed it, so per-host windows see every
exporter; ``replay`` and ``demo`` run it in their one process. The features themselves are
computed earlier, in :class:`~tunnelhound.pipeline.FlowPipeline`, so the flow documents carry
them (and the same rules can run later on stored flows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunnelhound.alerts import build_alerts
from tunnelhound.config import Config
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.rules import RuleEngine

__all__ = ["DetectionStage", "detection_stage"]


class DetectionStage:
    """:class:`RuleEngine` + :func:`build_alerts` behind the analysis-stage interface.

    ``finish_on_close``: judge every open window when the input ends (``replay``: nothing more
    will come) instead of keeping them for the next start (``run``: a scan split across a
    restart still alerts once).
    """

    name = "rules"

    def __init__(
        self, config: Config, *, state_dir: Path | None = None, finish_on_close: bool = False
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.finish_on_close = finish_on_close
        self.engine = RuleEngine.from_config(config, state_dir)

    def process(self, frame: FlowFrame) -> list[dict[str, Any]]:
        """The alerts the rules raise on ``frame``."""
        return build_alerts(self.engine.process(frame), self.config.namespace)

    def finish(self) -> list[dict[str, Any]]:
        """End of input: judge every open window; the alerts that raises (``finish_on_close``
        only; a service keeps its windows for the next start)."""
        if not self.finish_on_close:
            return []
        return build_alerts(self.engine.flush(), self.config.namespace)

    def reload(self, config: Config) -> None:
        """Load the rules again (users' directories, disabled rules, thresholds); windows of rules
        that did not change carry over through the saved state."""
        self.engine.save()
        self.config = config
        self.engine = RuleEngine.from_config(config, self.state_dir)

    def state_size(self) -> int:
        """Correlation groups held."""
        return int(self.engine.metrics()["rules_groups"])

    def metrics(self) -> dict[str, float]:
        """The engine's counters (late events, suppressed alerts, evictions)."""
        return self.engine.metrics()

    def close(self) -> None:
        """Persist windows, suppression and the threat index."""
        self.engine.save()


def detection_stage(config: Config) -> DetectionStage | None:
    """The stage ``tunnelhound run`` registers; None when no rule is loaded."""
    stage = DetectionStage(config)
    rules = stage.engine.rules
    return stage if rules.base or rules.correlations else None
