"""The real Elasticsearch node of scripts/start-elasticsearch.sh, reached through tests/es_server.py.

The node is started if nothing answers on 127.0.0.1:9200 and is left running for later tests.
These tests also pin what the Maven Central integ-test-zip build has and lacks (docs/elasticsearch.md).
"""

from __future__ import annotations

import json
import urllib.error
import uuid

import pytest

from es_server import (
    ELASTIC_PASSWORD,
    ca_cert,
    cluster_health,
    ensure_elasticsearch,
    es_request,
    security_kwargs,
)

pytestmark = pytest.mark.elasticsearch


@pytest.fixture(scope="module")
def es_url() -> str:
    return ensure_elasticsearch()


def test_cluster_health_is_green_or_yellow(es_url: str) -> None:
    assert es_url == "http://127.0.0.1:9200"
    health = cluster_health()
    assert health is not None
    assert health["status"] in ("green", "yellow")
    assert health["number_of_nodes"] == 1
    status, body = es_request(es_url, path="/_cluster/health?wait_for_status=yellow&timeout=30s")
    assert status == 200, body
    assert body["timed_out"] is False


def test_nodes_shows_version_8_and_node_name(es_url: str) -> None:
    status, body = es_request(es_url, path="/_nodes/_local?filter_path=nodes.*.version,nodes.*.name")
    assert status == 200, body
    (node,) = body["nodes"].values()
    major = int(node["version"].split(".")[0])
    assert major == 8, node
    assert node["name"] == "tunnelhound-es-9200"


def test_ensure_is_idempotent(es_url: str) -> None:
    status, before = es_request(es_url, path="/_nodes/_local?filter_path=nodes.*.name")
    assert status == 200
    assert ensure_elasticsearch() == es_url
    status, after = es_request(es_url, path="/_nodes/_local?filter_path=nodes.*.name")
    assert after == before  # same node id: nothing was restarted


def test_index_a_document_and_read_it_back(es_url: str) -> None:
    index = f"tunnelhound-test-{uuid.uuid4().hex[:12]}"
    doc = {"@timestamp": "2026-01-02T03:04:05.678Z", "source": {"ip": "10.1.2.3", "port": 5353}}
    try:
        status, body = es_request(es_url, "PUT", f"/{index}/_create/flow-1?refresh=true", doc)
        assert status == 201, body
        assert body["result"] == "created"
        status, body = es_request(es_url, path=f"/{index}/_doc/flow-1")
        assert status == 200, body
        assert body["found"] is True
        assert body["_source"] == doc
        # op_type create with the same _id again: 409, the document is not written twice
        status, body = es_request(es_url, "PUT", f"/{index}/_create/flow-1", doc)
        assert status == 409, body
        status, body = es_request(es_url, path=f"/{index}/_count")
        assert body["count"] == 1
    finally:
        es_request(es_url, "DELETE", f"/{index}")


def test_integ_test_build_has_security_but_no_ilm_ingest_or_data_stream_api(es_url: str) -> None:
    """The facts docs/elasticsearch.md states about this build, so a newer build that changes
    them fails here first."""
    status, body = es_request(es_url, path="/_nodes/_local?filter_path=nodes.*.modules.name,nodes.*.ingest")
    assert status == 200, body
    (node,) = body["nodes"].values()
    modules = {m["name"] for m in node["modules"]}
    assert {"x-pack-core", "x-pack-security"} <= modules
    assert not modules & {"x-pack-ilm", "data-streams", "ingest-common", "analysis-common", "mapper-extras"}
    assert [p["type"] for p in node["ingest"]["processors"]] == ["set_security_user"]
    # ILM and the _data_stream API are not registered: the paths fall to other routes
    assert es_request(es_url, path="/_ilm/policy")[0] == 405
    assert es_request(es_url, path="/_data_stream")[0] == 400  # taken as an index name
    assert es_request(es_url, "DELETE", "/_data_stream/logs-x-y")[0] == 405


def test_bulk_create_auto_creates_a_data_stream(es_url: str) -> None:
    """Data streams themselves work (server code): an index template with `data_stream: {}`
    and `_bulk` with `create` make one; `_resolve/index` lists it. This build can delete
    neither the stream nor a template in use, so both have fixed names (outside the
    product's `logs-tunnelhound.*-*` patterns) and each run writes a new `_id`."""
    template = "tunnelhound-test-es-server"
    stream = "logs-tunnelhoundtest.flow-esserver"
    doc_id = uuid.uuid4().hex
    status, body = es_request(
        es_url,
        "PUT",
        f"/_index_template/{template}",
        {
            "index_patterns": [stream],
            "priority": 500,
            "data_stream": {},
            "composed_of": ["logs@mappings", "ecs@mappings"],
            "ignore_missing_component_templates": ["logs@mappings", "ecs@mappings"],
            "template": {
                "settings": {"number_of_replicas": 0},
                "mappings": {"properties": {"source": {"properties": {"ip": {"type": "ip"}}}}},
            },
        },
    )
    assert status == 200, body
    action = {"create": {"_index": stream, "_id": doc_id}}
    doc = {"@timestamp": "2026-01-02T03:04:05Z", "source": {"ip": "10.0.0.1"}}
    status, body = es_request(es_url, "POST", "/_bulk?refresh=true", [action, doc, action, doc])
    assert status == 200, body
    statuses = [item["create"]["status"] for item in body["items"]]
    assert statuses == [201, 409]
    assert body["items"][0]["create"]["_index"].startswith(f".ds-{stream}-")
    status, body = es_request(es_url, path=f"/_resolve/index/{stream}")
    assert [d["name"] for d in body["data_streams"]] == [stream]
    status, body = es_request(es_url, "POST", f"/{stream}/_count", {"query": {"ids": {"values": [doc_id]}}})
    assert body["count"] == 1
    status, body = es_request(es_url, "DELETE", f"/_index_template/{template}")
    assert status == 400, body  # in use by the stream


SECURE_PORT = 9201


def test_security_node_needs_the_ca_and_credentials() -> None:
    """`--security`: HTTPS with a CA made by the script and basic auth for `elastic`; a wrong CA
    or no credentials fail. API keys cannot be made on this build (no analysis-common)."""
    url = ensure_elasticsearch(SECURE_PORT, security=True)
    assert url == f"https://127.0.0.1:{SECURE_PORT}"
    status, body = es_request(url, path="/_cluster/health", **security_kwargs(SECURE_PORT))
    assert status == 200, body
    assert body["status"] in ("green", "yellow")
    status, body = es_request(url, path="/_security/_authenticate", **security_kwargs(SECURE_PORT))
    assert status == 200, body
    assert body["username"] == "elastic"
    status, body = es_request(url, path="/_cluster/health", cafile=ca_cert(SECURE_PORT))
    assert status == 401
    status, body = es_request(
        url, path="/_cluster/health", auth=("elastic", "wrong"), cafile=ca_cert(SECURE_PORT)
    )
    assert status == 401
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        es_request(url, path="/_cluster/health", auth=("elastic", ELASTIC_PASSWORD))  # system CAs
    status, body = es_request(
        url, "POST", "/_security/api_key", {"name": "t"}, **security_kwargs(SECURE_PORT)
    )
    assert status == 400, body
    assert "pattern_capture" in json.dumps(body)
