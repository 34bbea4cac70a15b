"""``tunnelhound setup --kibana`` against a small HTTP server on 127.0.0.1 (issue 6, acceptance 5).

There is no Kibana here and none can be installed, so :class:`ImportApi` is NOT Kibana: it is a
stand-in that accepts a request only the way Kibana's import APIs are documented to
(``POST /api/saved_objects/_import`` and ``/api/detection_engine/rules/_import`` with
``overwrite=true``, a ``kbn-xsrf`` header, multipart/form-data with one part ``file`` whose file
name ends in ``.ndjson``, credentials), parses the multipart body with Python's email parser
(a MIME parser independent of the client's encoder), records every object, and answers with
Kibana's documented response shapes, or with the error a test asks for. It also runs over TLS
with a certificate from a test CA made with openssl.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kibana_lens import load_ndjson
from tunnelhound.cli import main
from tunnelhound.setup.kibana import multipart
from tunnelhound.setup.kibana_bundle import RULES_FILE, SAVED_OBJECTS_FILE, bundle

SAVED_OBJECTS = "/api/saved_objects/_import"
RULES = "/api/detection_engine/rules/_import"
API_KEY = base64.b64encode(b"key-id:key-secret").decode()


class ImportApi(ThreadingHTTPServer):
    """The stand-in for Kibana's two import APIs (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.authorization = f"ApiKey {API_KEY}"
        self.received: dict[str, list[dict[str, Any]]] = {SAVED_OBJECTS: [], RULES: []}
        self.requests: list[str] = []
        self.fail: dict[str, tuple[int, dict[str, Any]]] = {}
        """path -> (status, body) to answer instead of importing."""
        self.missing_reference_for: str | None = None
        """Saved-object type to refuse with Kibana's missing_references error."""

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


def kibana_error(status: int, error: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"statusCode": status, "error": error, "message": message}


class Handler(BaseHTTPRequestHandler):
    server: ImportApi

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = urlsplit(self.path)
        self.server.requests.append(url.path)
        if url.path not in self.server.received:
            return self.answer(*kibana_error(404, "Not Found", "Not Found"))
        if self.headers.get("Authorization") != self.server.authorization:
            return self.answer(
                *kibana_error(401, "Unauthorized", "[security_exception]: unable to authenticate user")
            )
        if "kbn-xsrf" not in self.headers:
            return self.answer(*kibana_error(400, "Bad Request", "Request must contain a kbn-xsrf header."))
        query = parse_qs(url.query)
        if query.get("overwrite") != ["true"]:
            return self.answer(*kibana_error(400, "Bad Request", "this test expects overwrite=true"))
        if url.path in self.server.fail:
            return self.answer(*self.server.fail[url.path])
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            return self.answer(*kibana_error(415, "Unsupported Media Type", "Unsupported Media Type"))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        parts = list(message.iter_parts())  # type: ignore[attr-defined]
        files = [p for p in parts if p.get_param("name", header="content-disposition") == "file"]
        if len(parts) != 1 or len(files) != 1:
            return self.answer(
                *kibana_error(400, "Bad Request", "[request body.file]: expected value of type [Stream]")
            )
        filename = files[0].get_filename() or ""
        if not filename.endswith(".ndjson"):
            extension = "." + filename.rsplit(".", 1)[-1] if "." in filename else ""
            return self.answer(*kibana_error(400, "Bad Request", f"Invalid file extension {extension}"))
        lines = [json.loads(line) for line in files[0].get_payload(decode=True).splitlines() if line.strip()]
        self.server.received[url.path].extend(lines)
        if url.path == RULES:
            return self.answer(
                200,
                {
                    "success": True,
                    "success_count": len(lines),
                    "rules_count": len(lines),
                    "errors": [],
                    "exceptions_success": True,
                    "exceptions_success_count": 0,
                    "exceptions_errors": [],
                },
            )
        errors = [
            {
                "id": o["id"],
                "type": o["type"],
                "meta": {"title": o["attributes"].get("title")},
                "error": {
                    "type": "missing_references",
                    "references": [{"type": "index-pattern", "id": "gone"}],
                },
            }
            for o in lines
            if o["type"] == self.server.missing_reference_for
        ]
        ok = [o for o in lines if o["type"] != self.server.missing_reference_for]
        return self.answer(
            200,
            {
                "success": not errors,
                "successCount": len(ok),
                "errors": errors,
                "successResults": [{"type": o["type"], "id": o["id"], "meta": {}} for o in ok],
            },
        )


def serve(server: ImportApi) -> Iterator[ImportApi]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[ImportApi]:
    yield from serve(ImportApi())


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, made with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=Tunnelhound test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[ImportApi, Path]]:
    ca, cert, key = make_certificates(tmp_path)
    server = ImportApi()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in serve(server):
        yield running, ca


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("TEST_KIBANA_API_KEY", API_KEY)
    return ["--kibana-api-key-env", "TEST_KIBANA_API_KEY"]


def test_setup_kibana_sends_every_object_once(
    api: ImportApi, api_key: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["setup", "--kibana", api.url, *api_key]) == 0
    files = bundle().files
    want = load_ndjson(files[SAVED_OBJECTS_FILE].decode())
    got = api.received[SAVED_OBJECTS]
    assert Counter((o["type"], o["id"]) for o in got) == Counter((o["type"], o["id"]) for o in want)
    assert max(Counter((o["type"], o["id"]) for o in got).values()) == 1
    assert got == want  # byte for byte what --emit-kibana writes, in the same order
    assert api.received[RULES] == load_ndjson(files[RULES_FILE].decode())
    assert api.requests == [SAVED_OBJECTS, RULES]
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"kibana saved objects: {len(want)} of {len(want)} imported (overwrite)",
        "kibana detection rules: 1 of 1 imported (overwrite)",
    ]


def test_basic_auth(api: ImportApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.authorization = "Basic " + base64.b64encode(b"analyst:s3cret").decode()
    monkeypatch.setenv("TEST_KIBANA_PASSWORD", "s3cret")
    assert (
        main(
            [
                "setup",
                "--kibana",
                api.url,
                "--kibana-user",
                "analyst",
                "--kibana-password-env",
                "TEST_KIBANA_PASSWORD",
            ]
        )
        == 0
    )
    assert len(api.received[RULES]) == 1


def test_object_errors_are_reported_per_object(
    api: ImportApi, api_key: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    api.missing_reference_for = "dashboard"
    assert main(["setup", "--kibana", api.url, *api_key]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "kibana saved objects: 4 of 8 imported (overwrite)"
    assert (
        "kibana saved objects: dashboard tunnelhound-detections: failed (missing_references: index-pattern gone)"
        in out
    )
    assert sum("failed" in line for line in out) == 4


def test_rule_errors_are_reported(
    api: ImportApi, api_key: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    api.fail[RULES] = (
        200,
        {
            "success": False,
            "success_count": 0,
            "rules_count": 1,
            "errors": [
                {"rule_id": "r1", "error": {"status_code": 400, "message": "invalid severity_mapping"}}
            ],
        },
    )
    assert main(["setup", "--kibana", api.url, *api_key]) == 1
    assert "kibana detection rules: rule r1: failed (400 invalid severity_mapping)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "error", "message", "expected"),
    [
        (400, "Bad Request", "Invalid file extension .json", "answered 400: Invalid file extension .json"),
        (
            403,
            "Forbidden",
            "Unable to bulk_create dashboard",
            "denied the import (403): Unable to bulk_create dashboard",
        ),
        (
            500,
            "Internal Server Error",
            "An internal server error occurred.",
            "answered 500: An internal server error",
        ),
    ],
)
def test_kibana_error_response_is_one_clear_line(
    api: ImportApi,
    api_key: list[str],
    capsys: pytest.CaptureFixture[str],
    status: int,
    error: str,
    message: str,
    expected: str,
) -> None:
    api.fail[SAVED_OBJECTS] = kibana_error(status, error, message)
    assert main(["setup", "--kibana", api.url, *api_key]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and api.url in err[0], err


def test_wrong_credentials_are_one_clear_line(
    api: ImportApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_KIBANA_API_KEY", "d3Jvbmc6a2V5")
    assert main(["setup", "--kibana", api.url, "--kibana-api-key-env", "TEST_KIBANA_API_KEY"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"tunnelhound: Kibana at {api.url} rejected the credentials (401): [security_exception]: unable to authenticate user"
    )
    assert api.received[SAVED_OBJECTS] == []


def test_unreachable_kibana_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--kibana", "http://127.0.0.1:9"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "tunnelhound: cannot connect to http://127.0.0.1:9: connection refused"
    )


def test_missing_secret_and_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["setup", "--kibana", "http://127.0.0.1:9", "--kibana-api-key-env", "TEST_NOT_SET_ANYWHERE"])
        == 1
    )
    assert "environment variable TEST_NOT_SET_ANYWHERE is not set" in capsys.readouterr().err
    assert main(["setup"]) == 2
    assert "setup needs --es-url, --emit-kibana or --kibana" in capsys.readouterr().err


def test_the_stand_in_refuses_what_kibana_refuses(api: ImportApi) -> None:
    """The checks are real: a request without kbn-xsrf, or with a .json file, is refused."""
    body, content_type = multipart(
        "objects.ndjson", b'{"type":"tag","id":"t","attributes":{},"references":[]}\n'
    )

    def post(headers: dict[str, str], data: bytes) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            api.url + SAVED_OBJECTS + "?overwrite=true",
            data=data,
            method="POST",
            headers={"Authorization": api.authorization, "Content-Type": content_type, **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert post({}, body) == kibana_error(400, "Bad Request", "Request must contain a kbn-xsrf header.")
    status, answer = post({"kbn-xsrf": "x"}, body.replace(b"objects.ndjson", b"objects.json"))
    assert (status, answer["message"]) == (400, "Invalid file extension .json")
    assert post({"kbn-xsrf": "x"}, body)[0] == 200
    assert [o["id"] for o in api.received[SAVED_OBJECTS]] == ["t"]


def test_tls_with_the_ca_imports_and_without_it_is_one_clear_line(
    tls_api: tuple[ImportApi, Path], api_key: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, ca = tls_api
    assert main(["setup", "--kibana", api.url, *api_key]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tunnelhound: TLS verification of {api.url} failed:") and err.endswith(
        "(check --kibana-ca)"
    )
    assert api.received[SAVED_OBJECTS] == []
    assert main(["setup", "--kibana", api.url, "--kibana-ca", str(ca), *api_key]) == 0
    assert len(api.received[SAVED_OBJECTS]) == 8 and len(api.received[RULES]) == 1
