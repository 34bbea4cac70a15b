"""Per-flow and per-entity values the detection rules need (``tunnelhound.*`` on each flow)."""

from tunnelhound.features.baseline import Baseline, BaselineError
from tunnelhound.features.stage import FeatureStage

__all__ = ["Baseline", "BaselineError", "FeatureStage"]
