"""Garbage-collector settings for every tunnelhound process."""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLD", "tune_gc"]

GC_THRESHOLD = (50_000, 20, 100)
"""CPython's cyclic collector thresholds for every tunnelhound process.

The pipeline allocates and frees millions of short-lived objects a second while the rule state
holds millions of long-lived ones; with the default gen-0 threshold (700) the collector runs
every few hundred allocations and its older generations keep walking that state. 50,000 cut
the full pipeline's time by a fifth (bench/pipeline.py, 1M records: 137k → 175k records/s);
larger values gained nothing more. Our objects rarely form cycles, so garbage waits no longer
in practice."""


def tune_gc() -> None:
    """Apply :data:`GC_THRESHOLD` (the CLI, every worker process and the benches call this)."""
    gc.set_threshold(*GC_THRESHOLD)
