"""Where a benchmark's figures were taken: shared by the benchmarks in bench/."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import tunnelhound


def machine(**extra: Any) -> dict[str, Any]:
    """CPU, memory, interpreter, library versions, code revision and load, plus ``extra``."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) / 2**20
    package = Path(tunnelhound.__file__).parent
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_gib": mem_total,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "orjson": orjson.__version__,
        "platform": platform.platform(),
        "tunnelhound": str(package),
        "git_commit": git_commit(package),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **extra,
    }


def dist_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(where: Path) -> str | None:
    """HEAD of the checkout the measured package comes from, ``+dirty`` when it has changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")
