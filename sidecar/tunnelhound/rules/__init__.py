"""Sigma rules (DESIGN §5): the streaming engine (rules compiled to vectorized predicates over
flow frames, correlations on sliding flow-time windows, the per-host threat index), and the
``rules check|convert|list`` and ``hunt`` commands.

Entry point: :meth:`RuleEngine.from_config` → :meth:`RuleEngine.process` per frame →
:class:`Detection` s (``alerts.build_alerts`` turns them into alert documents).
"""

from tunnelhound.errors import RuleError

from .engine import RuleEngine
from .loader import BUILTIN_RULES, RuleSet, load_pipeline, load_rules
from .model import Detection, RuleInfo

__all__ = [
    "BUILTIN_RULES",
    "Detection",
    "RuleEngine",
    "RuleError",
    "RuleInfo",
    "RuleSet",
    "load_pipeline",
    "load_rules",
]
