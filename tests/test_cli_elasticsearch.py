"""`tunnelhound replay --es-url` writes through setup's templates into a real node, once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from es_server import ensure_elasticsearch, es_request
from replay import DATA

pytestmark = pytest.mark.elasticsearch
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "sidecar")}


def tunnelhound(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunnelhound", *args], capture_output=True, text=True, timeout=300, env=ENV
    )


def stream_count(url: str, stream: str) -> int:
    es_request(url, method="POST", path=f"/{stream}/_refresh")
    status, body = es_request(url, path=f"/{stream}/_count")
    assert status == 200, body
    return int(body["count"])


def test_replay_to_elasticsearch_lands_every_flow_once(tmp_path: Path) -> None:
    url = ensure_elasticsearch()
    setup = tunnelhound("setup", "--es-url", url)
    assert setup.returncode == 0, setup.stderr
    namespace = f"cli{uuid.uuid4().hex[:12]}"
    config = tmp_path / "tunnelhound.yaml"
    config.write_text(f"namespace: {namespace}\nstate_dir: {tmp_path / 'state'}\n")
    stream = f"logs-tunnelhound.flow-{namespace}"
    for attempt in range(2):  # a second replay of the same capture must add nothing
        result = tunnelhound("replay", str(DATA / "lab" / "ipfix.pcap"), "-c", str(config), "--es-url", url)
        assert result.returncode == 0, result.stderr
        assert "1919 documents written" in result.stderr
        assert stream_count(url, stream) == 1919, f"after replay {attempt + 1}"
    assert not (tmp_path / "data").exists()  # --es-url without -o writes no NDJSON files
    assert not list((tmp_path / "state" / "spool").glob("*.batch"))  # every batch acknowledged


def test_unreachable_cluster_is_one_clear_line(tmp_path: Path) -> None:
    result = tunnelhound("setup", "--es-url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "127.0.0.1:9" in result.stderr
