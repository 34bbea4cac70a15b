"""A real single-node Elasticsearch for tests, started on demand by scripts/start-elasticsearch.sh.

Usage in a test module or fixture::

    from es_server import ensure_elasticsearch

    url = ensure_elasticsearch()  # "http://127.0.0.1:9200", starting the node if nothing answers
    url = ensure_elasticsearch(9201, security=True)  # "https://127.0.0.1:9201": TLS + basic auth
    status, body = es_request(url, path="/_cluster/health", **security_kwargs(9201))

Nothing here is registered with pytest and nothing is stopped at exit: the node stays up for the
next test (and the next run), and `scripts/stop-elasticsearch.sh [--port N]` stops it. The first
start fetches the distribution from Maven Central with mvn (about 107 MB, kept in ~/.m2).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO / "scripts" / "start-elasticsearch.sh"
STOP_SCRIPT = REPO / "scripts" / "stop-elasticsearch.sh"
DEFAULT_PORT = 9200
START_TIMEOUT_S = 120
# the built-in `elastic` user's password on a node started with --security
ELASTIC_PASSWORD = os.environ.get("TUNNELHOUND_ES_PASSWORD", "tunnelhound-es")


STARTED: set[int] = set()
"""Ports of nodes this test session started (conftest stops them when the session ends)."""


def run_dir(port: int = DEFAULT_PORT) -> Path:
    """Config, data, logs and (with security) certs/ca.crt of the node on that port."""
    return Path(os.environ.get("TUNNELHOUND_ES_RUN_DIR", f"/tmp/tunnelhound-es-{port}"))


def ca_cert(port: int) -> Path:
    """The CA that signed the HTTP certificate of a node started with security."""
    return run_dir(port) / "certs" / "ca.crt"


def base_url(port: int = DEFAULT_PORT, security: bool = False) -> str:
    return f"{'https' if security else 'http'}://127.0.0.1:{port}"


def security_kwargs(port: int) -> dict[str, Any]:
    """`es_request` keyword arguments for the node started with security on that port."""
    return {"auth": ("elastic", ELASTIC_PASSWORD), "cafile": ca_cert(port)}


def cluster_health(
    port: int = DEFAULT_PORT, timeout: float = 5.0, security: bool = False
) -> dict[str, Any] | None:
    """`GET _cluster/health` of the node on the port, or None when nothing answers there.

    The stripped integ-test build has no `GET /`, so health is the liveness probe.
    """
    kwargs: dict[str, Any] = security_kwargs(port) if security else {}
    if security and not ca_cert(port).exists():
        return None
    try:
        status, body = es_request(
            base_url(port, security), path="/_cluster/health", timeout=timeout, **kwargs
        )
    except (OSError, ValueError):
        return None
    return body if status == 200 and isinstance(body, dict) else None


def _setting_args(settings: Mapping[str, object] | Iterable[str] | None) -> list[str]:
    if settings is None:
        return []
    if isinstance(settings, Mapping):
        pairs = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()]
    else:
        pairs = list(settings)
    args: list[str] = []
    for pair in pairs:
        args += ["--setting", pair]
    return args


def ensure_elasticsearch(
    port: int = DEFAULT_PORT,
    *,
    settings: Mapping[str, object] | Iterable[str] | None = None,
    keep_data: bool = False,
    security: bool = False,
    timeout: int = START_TIMEOUT_S,
) -> str:
    """Base URL of a node answering `_cluster/health` on 127.0.0.1:port, started if needed.

    A node already answering is used as it is (whatever settings it was started with), so a
    test that needs special `settings` (e.g. ``{"thread_pool.write.queue_size": 1}``) should
    use a port of its own. `keep_data` restarts on the data dir of a previous start on that
    port (after `stop_elasticsearch(port, keep_data=True)`). `security` starts it with x-pack
    security: HTTPS with the CA `ca_cert(port)`, user `elastic` / `ELASTIC_PASSWORD` (see
    `security_kwargs`); API keys do not work on this build (docs/elasticsearch.md).
    Raises RuntimeError with the script's output (and the node's log tail) when it fails.
    """
    if cluster_health(port, security=security) is not None:
        return base_url(port, security)
    cmd = ["bash", str(START_SCRIPT), "--port", str(port), "--timeout", str(timeout)]
    cmd += _setting_args(settings)
    if keep_data:
        cmd.append("--keep-data")
    if security:
        cmd.append("--security")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    STARTED.add(port)
    url = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else base_url(port, security)
    if cluster_health(port, security=security) is None:
        raise RuntimeError(f"{url} does not answer _cluster/health after start:\n{proc.stderr}")
    return url


def stop_elasticsearch(port: int = DEFAULT_PORT, *, keep_data: bool = False, timeout: int = 60) -> None:
    """Stop the node of `ensure_elasticsearch(port)` (SIGTERM, then SIGKILL after `timeout`)."""
    cmd = ["bash", str(STOP_SCRIPT), "--port", str(port), "--timeout", str(timeout)]
    if keep_data:
        cmd.append("--keep-data")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr}")


def es_request(
    url: str,
    method: str = "GET",
    path: str = "/",
    body: object = None,
    timeout: float = 30.0,
    *,
    auth: tuple[str, str] | None = None,
    cafile: str | Path | None = None,
) -> tuple[int, Any]:
    """A JSON request with urllib: (status, decoded body); HTTP errors are returned, not raised
    (TLS and connection errors are: OSError).

    A list body is sent as NDJSON (one JSON document a line), as `_bulk` wants. `auth` is
    basic auth; `cafile` the CA to verify an https URL with.
    """
    data: bytes | None = None
    headers = {"Accept": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    context = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else None
    if isinstance(body, list):
        data = b"".join(json.dumps(line).encode() + b"\n" for line in body)
        headers["Content-Type"] = "application/x-ndjson"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw = err.read()
        status = err.code
    return status, (json.loads(raw) if raw else None)
