"""The feature stage: every detector's columns on a frame, plus the state it keeps.

Stateless parts (sizes, unanswered probes, exfiltration bytes, application tunneling) look at
one flow at a time. Stateful parts are bounded and saved under ``state_dir``: the online
baseline (a few numbers per metric; not saved when a fixed baseline file is in use) and the
beacon history (``beacon.history`` connections for at most ``beacon.max_pairs`` pairs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tunnelhound.config import Config, DetectionsConfig
from tunnelhound.features import dns, icmp, sizes
from tunnelhound.features.app_tunnel import AppTunnelFeatures
from tunnelhound.features.baseline import Baseline, BaselineError
from tunnelhound.features.beacon import BeaconFeatures
from tunnelhound.features.exfil import ExfilFeatures
from tunnelhound.features.overrides import Overrides
from tunnelhound.features.scan import ScanFeatures
from tunnelhound.normalize.frame import FlowFrame

log = logging.getLogger(__name__)

BASELINE_STATE = "baseline-online.json"
BEACON_STATE = "beacon-history.npz"


class FeatureStage:
    """Fills ``frame.features`` for the built-in rules; see :meth:`from_config`."""

    def __init__(
        self, config: DetectionsConfig, *, state_dir: Path | None = None, baseline: Baseline | None = None
    ) -> None:
        """``baseline``: a fixed baseline (from a file); None learns online after the warm-up.
        ``state_dir``: where :meth:`save`/:meth:`load` keep state (None: nothing is kept)."""
        self.config = config
        self.state_dir = state_dir
        self.baseline = baseline if baseline is not None else Baseline(warmup=config.warmup_flows)
        self.overrides = Overrides(config)
        self.scan = ScanFeatures(config.scan)
        self.exfil = ExfilFeatures(config.exfil)
        self.beacon = BeaconFeatures(config.beacon)
        self.app_tunnel = AppTunnelFeatures(config.app_tunnel)

    @staticmethod
    def from_config(
        config: Config, *, baseline_path: str | None = None, state_dir: Path | None = None
    ) -> FeatureStage:
        """The stage ``config.detections`` describes, with state under ``state_dir`` (default
        ``config.state_dir``; a worker of ``tunnelhound run`` passes its own); ``baseline_path``
        (e.g. ``--baseline``) wins over ``detections.baseline``. Restores saved state. Raises
        :class:`~tunnelhound.features.baseline.BaselineError` for a bad file."""
        dc = config.detections
        path = baseline_path or dc.baseline
        baseline = Baseline.load(Path(path), warmup=dc.warmup_flows) if path else None
        stage = FeatureStage(
            dc, state_dir=state_dir if state_dir is not None else Path(config.state_dir), baseline=baseline
        )
        stage.load()
        return stage

    def apply(self, frame: FlowFrame) -> FlowFrame:
        """Compute every feature column of ``frame`` (in place) and return it."""
        if not self.config.enabled or not frame.n:
            return frame
        rows = self.overrides.resolve(frame)
        sizes.apply(frame)
        dns.apply(frame, self.config.dns, self.baseline, rows)
        icmp.apply(frame, self.config.icmp, self.baseline, rows)
        self.scan.apply(frame, rows)
        self.exfil.apply(frame, rows)
        self.beacon.apply(frame, rows)
        self.app_tunnel.apply(frame, rows)
        return frame

    def save(self) -> None:
        """Write the online baseline and the beacon history under ``state_dir``."""
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.baseline.fixed:
            self.baseline.save(self.state_dir / BASELINE_STATE)
        self.beacon.save(self.state_dir / BEACON_STATE)

    def load(self) -> bool:
        """Restore what :meth:`save` wrote; True when anything was restored. A damaged state
        file is logged and ignored (the stage starts fresh rather than not at all)."""
        if self.state_dir is None:
            return False
        restored = False
        online = self.state_dir / BASELINE_STATE
        if not self.baseline.fixed and online.is_file():
            try:
                self.baseline = Baseline.load(online, fixed=False, warmup=self.config.warmup_flows)
                restored = True
            except BaselineError as exc:
                log.warning("online baseline not restored: %s", exc)
        history = self.state_dir / BEACON_STATE
        if history.is_file():
            try:
                restored |= self.beacon.load(history) > 0
            except (OSError, ValueError, KeyError) as exc:
                log.warning("beacon history %s not restored: %s", history, exc)
        return restored
