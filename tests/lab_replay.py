"""`tunnelhound replay` of a lab capture with a YAML config, for the end-to-end alert tests:
the alerts come back as the NDJSON alert sink wrote them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from replay import DATA
from tunnelhound.cli import main

V9 = DATA / "lab" / "netflow_v9.pcap"


def replay_args(
    tmp_path: Path,
    capture: str | Path = V9,
    run: str = "out",
    config: dict[str, Any] | None = None,
    state: str = "state",
) -> list[str]:
    """The command line: flows and alerts as NDJSON in ``tmp_path/run``, state in ``tmp_path/state``
    (shared by runs unless ``state`` names another), ``config`` written as ``tmp_path/run.yaml``."""
    path = capture if isinstance(capture, Path) else DATA / "lab" / capture
    out = tmp_path / run
    args = ["replay", str(path), "--no-progress", "--state-dir", str(tmp_path / state)]
    if config is not None:
        config_file = tmp_path / f"{run}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        args += ["-c", str(config_file)]
    return [*args, "-o", str(out), "--alerts", str(out)]


def ndjson_alerts(directory: Path) -> list[dict[str, Any]]:
    """The alert documents of the alerts-*.ndjson files in ``directory``, in order."""
    files = sorted(directory.glob("alerts-*.ndjson"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def replay_alerts(
    tmp_path: Path,
    capture: str | Path = V9,
    run: str = "out",
    config: dict[str, Any] | None = None,
    state: str = "state",
) -> list[dict[str, Any]]:
    """Replay ``capture`` (see :func:`replay_args`); the alerts it wrote."""
    assert main(replay_args(tmp_path, capture, run, config, state)) == 0
    return ndjson_alerts(tmp_path / run)
