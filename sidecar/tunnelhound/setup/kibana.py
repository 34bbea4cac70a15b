"""``tunnelhound setup --emit-kibana`` / ``--kibana URL``: write the Kibana bundle, or import it.

Importing uses Kibana's own import APIs, as a user would with curl:

* saved objects: ``POST /api/saved_objects/_import?overwrite=true``, multipart/form-data with the
  NDJSON in a part named ``file`` whose file name ends in ``.ndjson``, and a ``kbn-xsrf`` header;
* the promotion rule: ``POST /api/detection_engine/rules/_import?overwrite=true``, the same way.

Both answer 200 with a per-object result list even when some objects fail; every failure is
reported on a line of its own and makes the command exit 1. Authentication is an API key
(``Authorization: ApiKey …``) or basic auth; a space is chosen by the URL
(``https://kibana:5601/s/<space>``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunnelhound.setup.kibana_bundle import RULES_FILE, SAVED_OBJECTS_FILE, bundle, write_bundle

SAVED_OBJECTS_IMPORT = "/api/saved_objects/_import?overwrite=true"
RULES_IMPORT = "/api/detection_engine/rules/_import?overwrite=true"
TIMEOUT_S = 60.0


class KibanaError(Exception):
    """Kibana cannot be used at all (unreachable, TLS, credentials, not Kibana); one line."""


@dataclass(frozen=True, slots=True)
class Kibana:
    """Where Kibana is and how to authenticate to it."""

    url: str
    ca_certs: str | None = None
    basic_auth: tuple[str, str] | None = None
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        """Headers every request carries: JSON answers, the XSRF header, credentials."""
        headers = {"Accept": "application/json", "kbn-xsrf": "tunnelhound"}
        if self.api_key is not None:
            headers["Authorization"] = f"ApiKey {self.api_key}"
        elif self.basic_auth is not None:
            token = base64.b64encode(f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers


@dataclass(slots=True)
class ImportReport:
    """The outcome of one import: how many objects were sent and imported, and the failures."""

    what: str
    sent: int
    imported: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every object sent was imported."""
        return not self.failures and self.imported == self.sent

    def lines(self) -> list[str]:
        """A summary line, then one line per failure."""
        head = f"kibana {self.what}: {self.imported} of {self.sent} imported (overwrite)"
        return [head, *(f"kibana {self.what}: {f}" for f in self.failures)]


def multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one part ``file``; returns (body, Content-Type)."""
    boundary = f"tunnelhound-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_file(kibana: Kibana, path: str, filename: str, content: bytes) -> dict[str, Any]:
    """POST one NDJSON file to an import API; the decoded JSON answer of a 2xx response.

    Raises :class:`KibanaError` with one line for every other outcome.
    """
    body, content_type = multipart(filename, content)
    url = kibana.url.rstrip("/") + path
    request = urllib.request.Request(
        url, data=body, method="POST", headers={**kibana.headers(), "Content-Type": content_type}
    )
    context = ssl.create_default_context(cafile=kibana.ca_certs) if kibana.ca_certs else None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise KibanaError(_http_error(kibana.url, exc.code, exc.read())) from None
    except urllib.error.URLError as exc:
        raise KibanaError(_connection_error(kibana.url, exc.reason)) from None
    except (TimeoutError, ConnectionError) as exc:
        raise KibanaError(_connection_error(kibana.url, exc)) from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise KibanaError(
            f"{kibana.url} answered {path} with something that is not JSON (is it Kibana?)"
        ) from None
    if not isinstance(answer, dict):
        raise KibanaError(
            f"{kibana.url} answered {path} with unexpected JSON: {_short(raw.decode(errors='replace'))}"
        )
    return answer


def import_saved_objects(kibana: Kibana, content: bytes) -> ImportReport:
    """Import saved objects (NDJSON) with overwrite; the objects that failed and why."""
    sent = len(content.splitlines())
    answer = post_file(kibana, SAVED_OBJECTS_IMPORT, SAVED_OBJECTS_FILE, content)
    report = ImportReport("saved objects", sent, int(answer.get("successCount", 0)))
    for error in answer.get("errors") or []:
        detail = error.get("error") or {}
        reason = str(detail.get("type", "error"))
        if detail.get("references"):
            refs = ", ".join(f"{r.get('type')} {r.get('id')}" for r in detail["references"])
            reason += f": {refs}"
        elif detail.get("message"):
            reason += f": {detail['message']}"
        report.failures.append(f"{error.get('type')} {error.get('id')}: failed ({reason})")
    if not report.failures and not answer.get("success", False):
        report.failures.append("failed (Kibana reported no success and no error)")
    return report


def import_rules(kibana: Kibana, content: bytes) -> ImportReport:
    """Import detection rules (NDJSON) with overwrite; the rules that failed and why."""
    sent = len(content.splitlines())
    answer = post_file(kibana, RULES_IMPORT, RULES_FILE, content)
    report = ImportReport("detection rules", sent, int(answer.get("success_count", 0)))
    for error in answer.get("errors") or []:
        detail = error.get("error") or {}
        report.failures.append(
            f"rule {error.get('rule_id', error.get('id', '?'))}: failed "
            f"({detail.get('status_code', '?')} {detail.get('message', '')})".rstrip()
        )
    if not report.failures and not answer.get("success", False):
        report.failures.append("failed (Kibana reported no success and no error)")
    return report


def import_bundle(kibana: Kibana) -> list[ImportReport]:
    """Import the generated saved objects, then the promotion rule."""
    files = bundle().files
    return [import_saved_objects(kibana, files[SAVED_OBJECTS_FILE]), import_rules(kibana, files[RULES_FILE])]


def run(args: argparse.Namespace) -> int:
    """The Kibana part of ``tunnelhound setup``: lines on stdout, errors on stderr; exit code."""
    code = 0
    if args.emit_kibana:
        for path in write_bundle(args.emit_kibana):
            print(f"kibana bundle: wrote {path}")
    if args.kibana:
        try:
            reports = import_bundle(_kibana(args))
        except KibanaError as exc:
            print(f"tunnelhound: {exc}", file=sys.stderr)
            return 1
        for report in reports:
            print("\n".join(report.lines()))
            code = code or (0 if report.ok else 1)
    return code


def _kibana(args: argparse.Namespace) -> Kibana:
    def env(name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise KibanaError(f"environment variable {name} is not set")
        return value

    if args.kibana_user and not args.kibana_password_env:
        raise KibanaError("--kibana-user needs --kibana-password-env")
    if args.kibana_ca and not Path(args.kibana_ca).is_file():
        raise KibanaError(f"CA file {args.kibana_ca} not found")
    return Kibana(
        args.kibana,
        ca_certs=args.kibana_ca,
        basic_auth=(args.kibana_user, env(args.kibana_password_env)) if args.kibana_user else None,
        api_key=env(args.kibana_api_key_env) if args.kibana_api_key_env else None,
    )


def _http_error(url: str, status: int, raw: bytes) -> str:
    message = _message(raw)
    if status == 401:
        return f"Kibana at {url} rejected the credentials (401): {message}"
    if status == 403:
        return f"Kibana at {url} denied the import (403): {message}"
    if status == 404:
        return f"Kibana at {url} has no such API (404; is it Kibana, with Elastic Security for the rule?): {message}"
    return f"Kibana at {url} answered {status}: {message}"


def _message(raw: bytes) -> str:
    """Kibana's error body is {"statusCode", "error", "message"}; anything else is shortened."""
    try:
        body = json.loads(raw)
    except ValueError:
        return _short(raw.decode(errors="replace")) or "(empty body)"
    if isinstance(body, dict):
        return _short(str(body.get("message") or body.get("error") or body))
    return _short(str(body))


def _connection_error(url: str, reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS verification of {url} failed: {reason.verify_message} (check --kibana-ca)"
    if isinstance(reason, ssl.SSLError):
        return f"TLS with {url} failed: {reason.reason or reason}"
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused"
    if isinstance(reason, TimeoutError):
        return f"cannot connect to {url}: timed out"
    return f"cannot connect to {url}: {_short(str(reason))}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = [
    "ImportReport",
    "Kibana",
    "KibanaError",
    "import_bundle",
    "import_rules",
    "import_saved_objects",
    "multipart",
    "post_file",
    "run",
]
