"""``TUNNELHOUND_PROFILE=DIR``: a cProfile of each service process, to find the next cost.

Each process (the main one and every worker) profiles its own main thread from start to
stop and writes ``DIR/<name>-<pid>.prof`` when it ends; read one with
``python -m pstats DIR/worker-0-1234.prof`` (``sort cumtime``, ``stats 30``).  The outbox
thread is not profiled (cProfile follows one thread); its cost is the pipe write, which
waits outside the GIL.  Unset, nothing is imported or measured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ENV", "profiled"]

ENV = "TUNNELHOUND_PROFILE"
"""Environment variable naming the directory profiles go to."""


@contextmanager
def profiled(name: str) -> Iterator[None]:
    """Profile the body when :data:`ENV` is set, writing ``<dir>/<name>-<pid>.prof`` after it."""
    where = os.environ.get(ENV)
    if not where:
        yield
        return
    import cProfile  # only when asked: a service otherwise never loads it

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        out = Path(where)
        out.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(out / f"{name}-{os.getpid()}.prof")
