"""Elastic Security's view of our alerts, for the Elasticsearch alert tests: the query of the
prebuilt "External Alerts" rule, the ATT&CK id formats, and the node made ready by
`tunnelhound setup`."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from es_server import ensure_elasticsearch, es_request

# The query of Elastic's prebuilt rule "External Alerts" (KQL), as the Lucene query_string
# Elasticsearch itself can run; the rule searches the logs-* pattern among others.
EXTERNAL_ALERTS = "event.kind:alert AND NOT event.module:(endgame OR endpoint OR cloud_defend)"
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
TACTIC = re.compile(r"^TA\d{4}$")


def set_up_elasticsearch() -> str:
    """The test node's URL, after `tunnelhound setup` installed the templates."""
    url = ensure_elasticsearch()
    done = subprocess.run(
        [sys.executable, "-m", "tunnelhound", "setup", "--es-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return url


def search(url: str, index: str, query: dict[str, Any], size: int = 100) -> list[dict[str, Any]]:
    """Refresh ``index`` and return the hits of ``query``."""
    es_request(url, "POST", f"/{index}/_refresh")
    status, body = es_request(url, "POST", f"/{index}/_search", {"size": size, "query": query})
    assert status == 200, body
    return list(body["hits"]["hits"])
