"""Install the Elasticsearch assets (ILM policy, component and index templates) idempotently.

The assets are the JSON files ``scripts/gen_elastic.py`` generates from ``elastic/fields/*.yml``
into ``tunnelhound/data/elasticsearch/`` (file name ``<kind>.<name>.json``). Installing adapts
them to the cluster instead of failing on it:

* capabilities are probed with ``GET _nodes/plugins`` and by trying (``GET /`` is not used: the
  stripped integ-test build lacks it), never inferred from a version number alone;
* the ILM policy and the ``tunnelhound@ilm`` component are installed only where ILM exists (the
  index templates list that component in ``ignore_missing_component_templates``);
* a field type the node lacks (``unsigned_long``, ``constant_keyword``, ``match_only_text`` on the
  integ-test build) is replaced by its nearest type (:data:`FALLBACKS`) in what gets installed,
  the substitution is recorded in the template's ``_meta.type_fallbacks`` and reported;
* an asset whose installed content already equals the desired one is left alone ("unchanged"),
  so a second run changes nothing, and an installed asset with a higher ``version`` is never
  overwritten ("newer installed, kept"): an older sidecar must not downgrade a newer one's
  templates.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    Elasticsearch,
    SSLError,
)
from elasticsearch import (
    ConnectionError as EsConnectionError,
)

KINDS = ("ilm_policy", "component_template", "index_template")
"""Install order: a policy before the settings that name it, components before the index
templates composed of them."""

PATHS = {
    "ilm_policy": "/_ilm/policy/",
    "component_template": "/_component_template/",
    "index_template": "/_index_template/",
}

ILM_COMPONENT = "tunnelhound@ilm"

FALLBACKS: dict[str, str] = {
    "unsigned_long": "long",  # values >= 2**63 are dropped by ignore_malformed, the flow is kept
    "constant_keyword": "keyword",
    "match_only_text": "text",
    "wildcard": "keyword",
    "scaled_float": "double",
    "version": "keyword",
    "flattened": "keyword",
}
"""Nearest available type for each optional (module-provided) field type."""

KEYWORD_IGNORE_ABOVE = 1024
_JSON = {"accept": "application/json", "content-type": "application/json"}


class SetupError(Exception):
    """The cluster cannot be used at all (unreachable, TLS, credentials); one line for the user."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One asset: ``kind`` (see :data:`KINDS`), its name and its request body."""

    kind: str
    name: str
    body: dict[str, Any]

    @property
    def path(self) -> str:
        """The REST path the asset is PUT to and read from."""
        return PATHS[self.kind] + self.name

    @property
    def version(self) -> int | None:
        """The asset's version (ILM policies keep it in ``policy._meta.version``)."""
        if self.kind == "ilm_policy":
            return _int_or_none(self.body.get("policy", {}).get("_meta", {}).get("version"))
        return _int_or_none(self.body.get("version"))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the cluster offers, as probed."""

    versions: tuple[str, ...]
    modules: frozenset[str]
    ilm: bool
    missing_types: Mapping[str, str]
    """Field type the node lacks -> the type installed instead."""


@dataclass(frozen=True, slots=True)
class AssetResult:
    """What happened to one asset: ``action`` is created, updated, unchanged, kept, skipped or
    failed; a dry run says would create or would update; ``detail`` says why."""

    kind: str
    name: str
    action: str
    detail: str = ""

    def line(self) -> str:
        """One line of the report."""
        text = f"{self.kind} {self.name}: {self.action}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(slots=True)
class SetupReport:
    """The outcome of :func:`install_assets`."""

    capabilities: Capabilities
    results: list[AssetResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No asset failed."""
        return not any(r.action == "failed" for r in self.results)

    @property
    def changed(self) -> bool:
        """Something was (or on a dry run would be) written."""
        return any(r.action in ("created", "updated", "would create", "would update") for r in self.results)

    def lines(self) -> list[str]:
        """The cluster line, then one line per asset."""
        caps = self.capabilities
        fallbacks = ", ".join(f"{t}->{f}" for t, f in sorted(caps.missing_types.items())) or "none"
        head = (
            f"elasticsearch {'/'.join(caps.versions) or '?'}: ILM {'yes' if caps.ilm else 'no'}, "
            f"type fallbacks {fallbacks}"
        )
        return [head, *(r.line() for r in self.results)]


def load_assets() -> list[Asset]:
    """The packaged assets, in install order."""
    root = resources.files("tunnelhound") / "data" / "elasticsearch"
    found = []
    for entry in root.iterdir():
        if not entry.name.endswith(".json"):
            continue
        kind, name = entry.name.removesuffix(".json").split(".", 1)
        if kind not in KINDS:
            raise ValueError(f"unknown asset kind in {entry.name}")
        found.append(Asset(kind, name, json.loads(entry.read_text())))
    return sorted(found, key=lambda a: (KINDS.index(a.kind), a.name))


def connect(
    url: str,
    *,
    ca_certs: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    api_key: str | None = None,
    request_timeout: float = 30.0,
) -> Elasticsearch:
    """A client for ``url`` (no retries: setup reports a dead cluster at once)."""
    options: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": 0}
    # Only what is given: the client tells "not set" apart from None.
    if ca_certs is not None:
        options["ca_certs"] = ca_certs
    if basic_auth is not None:
        options["basic_auth"] = basic_auth
    if api_key is not None:
        options["api_key"] = api_key
    return Elasticsearch(url, **options)


def install_assets(
    client_or_url: Elasticsearch | str,
    *,
    ca_certs: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    api_key: str | None = None,
    dry_run: bool = False,
    assets: list[Asset] | None = None,
) -> SetupReport:
    """Probe the cluster and install ``assets`` (default: the packaged ones) idempotently.

    Raises :class:`SetupError` (a one-line message) when the cluster cannot be reached or
    refuses the credentials; a single asset the cluster rejects is reported as failed and the
    others are still installed.
    """
    client = (
        connect(client_or_url, ca_certs=ca_certs, basic_auth=basic_auth, api_key=api_key)
        if isinstance(client_or_url, str)
        else client_or_url
    )
    assets = load_assets() if assets is None else assets
    try:
        caps = probe(client, assets)
        report = SetupReport(caps)
        for asset in assets:
            report.results.append(_install_one(client, caps, asset, dry_run))
    except (EsConnectionError, AuthenticationException, AuthorizationException) as exc:
        raise SetupError(describe_error(exc, _url_of(client_or_url))) from None
    return report


def describe_error(exc: Exception, url: str) -> str:
    """A one-line, stack-trace-free description of a client exception."""
    # Transport errors say "Connection error" in str() and the cause in .message.
    text = " ".join(str(part) for part in (exc, getattr(exc, "message", "")))
    if isinstance(exc, SSLError) or "SSL" in text:
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return f"TLS verification of {url} failed: certificate verify failed (check --es-ca)"
        if "WRONG_VERSION_NUMBER" in text:
            return f"TLS with {url} failed: the server does not speak TLS there (use http://?)"
        return f"TLS with {url} failed: {_short(getattr(exc, 'message', text))}"
    if isinstance(exc, EsConnectionError):
        if "refused" in text.lower():
            return f"cannot connect to {url}: connection refused"
        if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
            return f"cannot connect to {url}: timed out"
        return f"cannot connect to {url}: {_short(getattr(exc, 'message', text))}"
    if isinstance(exc, AuthenticationException):
        return f"{url} rejected the credentials (401): {_reason(exc)}"
    if isinstance(exc, AuthorizationException):
        return f"{url} denied the request (403): {_reason(exc)}"
    if isinstance(exc, ApiError):
        return f"{url} answered {exc.status_code}: {_reason(exc)}"
    return f"{url}: {_short(text)}"


def probe(client: Elasticsearch, assets: list[Asset]) -> Capabilities:
    """Versions and modules from ``GET _nodes/plugins``; ILM by ``GET _ilm/status``; each field
    type the assets use by simulating a template with one field of that type."""
    nodes = _get(
        client,
        "/_nodes/plugins",
        params={"filter_path": "nodes.*.version,nodes.*.modules.name,nodes.*.plugins.name"},
    )
    versions: set[str] = set()
    modules: set[str] = set()
    for node in (nodes or {}).get("nodes", {}).values():
        versions.add(str(node.get("version", "?")))
        modules.update(m["name"] for m in node.get("modules", []) + node.get("plugins", []))
    # Trying beats reading module names: serverless and future builds package features differently.
    ilm = _get(client, "/_ilm/status") is not None
    missing = {}
    types = sorted({m["type"] for a in assets for m in _field_mappings(a.body)})
    probe_pattern = f"tunnelhound-probe-{uuid.uuid4().hex}-*"
    for es_type in types:
        body = {
            "index_patterns": [probe_pattern],
            "template": {"mappings": {"properties": {"probe": {"type": es_type}}}},
        }
        try:
            client.perform_request("POST", "/_index_template/_simulate", headers=_JSON, body=body)
        except ApiError as exc:
            if exc.status_code >= 500 or exc.status_code in (401, 403):
                raise
            missing[es_type] = FALLBACKS.get(es_type, "keyword")
    return Capabilities(tuple(sorted(versions)), frozenset(modules), ilm, missing)


def desired_body(asset: Asset, caps: Capabilities) -> tuple[dict[str, Any], dict[str, str]]:
    """The body to install on this cluster, and the type substitutions made in it."""
    body = copy.deepcopy(asset.body)
    used: dict[str, str] = {}
    for mapping in _field_mappings(body):
        fallback = caps.missing_types.get(mapping["type"])
        if fallback is None:
            continue
        used[mapping["type"]] = fallback
        kept = {k: v for k, v in mapping.items() if k in ("index", "doc_values", "store")}
        mapping.clear()
        mapping.update({"type": fallback, **kept})
        if fallback == "keyword":
            mapping["ignore_above"] = KEYWORD_IGNORE_ABOVE
    if used:
        body.setdefault("_meta", {})["type_fallbacks"] = dict(sorted(used.items()))
    return body, used


def normalized(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A template body as Elasticsearch returns it: settings flattened with string values, and
    the defaults the server fills in (``data_stream.hidden`` ...) made explicit."""
    out = copy.deepcopy(dict(body))
    template = out.get("template")
    if isinstance(template, dict) and "settings" in template:
        template["settings"] = _flat_settings(template["settings"])
    if kind == "index_template":
        if "data_stream" in out:
            out["data_stream"] = {"hidden": False, "allow_custom_routing": False, **out["data_stream"]}
        out.setdefault("ignore_missing_component_templates", [])
    return out


def installed_body(client: Elasticsearch, asset: Asset) -> dict[str, Any] | None:
    """The installed asset's body, or None when there is none."""
    found = _get(client, asset.path)
    if found is None:
        return None
    if asset.kind == "component_template":
        items = found.get("component_templates", [])
        return items[0]["component_template"] if items else None
    if asset.kind == "index_template":
        items = found.get("index_templates", [])
        return items[0]["index_template"] if items else None
    policy = found.get(asset.name)
    return {"policy": policy["policy"]} if policy else None


def _install_one(client: Elasticsearch, caps: Capabilities, asset: Asset, dry_run: bool) -> AssetResult:
    if not caps.ilm and (asset.kind == "ilm_policy" or asset.name == ILM_COMPONENT):
        return AssetResult(asset.kind, asset.name, "skipped", "no ILM on this cluster")
    body, used = desired_body(asset, caps)
    notes = [f"{t}->{f}" for t, f in sorted(used.items())]
    detail = f"type fallbacks {', '.join(notes)}" if notes else ""
    try:
        current = installed_body(client, asset)
        if current is not None:
            have = _installed_version(asset.kind, current)
            want = asset.version
            if have is not None and want is not None and have > want:
                return AssetResult(
                    asset.kind, asset.name, "kept", f"newer installed, version {have} > {want}"
                )
            if _same(asset.kind, current, body):
                return AssetResult(asset.kind, asset.name, "unchanged", detail)
        if dry_run:
            action = "would create" if current is None else "would update"
        else:
            action = "created" if current is None else "updated"
            client.perform_request("PUT", asset.path, headers=_JSON, body=body)
        return AssetResult(asset.kind, asset.name, action, detail)
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise
        return AssetResult(asset.kind, asset.name, "failed", f"{exc.status_code} {_reason(exc)}")


def _same(kind: str, installed: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    if kind == "ilm_policy":
        # The server adds defaults to every action (e.g. delete_searchable_snapshot), so a
        # policy is current when everything we asked for is there.
        return _contains(installed, desired)
    return normalized(kind, installed) == normalized(kind, desired)


def _contains(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(k in have and _contains(have[k], v) for k, v in want.items())
    return bool(have == want)


def _installed_version(kind: str, body: Mapping[str, Any]) -> int | None:
    if kind == "ilm_policy":
        return _int_or_none(body.get("policy", {}).get("_meta", {}).get("version"))
    return _int_or_none(body.get("version"))


def _field_mappings(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every field mapping (a dict with ``type``) of a template body, dynamic templates included."""
    mappings = body.get("template", {}).get("mappings")
    if not mappings:
        return

    def walk(props: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for child in props.values():
            if "properties" in child:
                yield from walk(child["properties"])
            if "type" in child:
                yield child

    yield from walk(mappings.get("properties", {}))
    for entry in mappings.get("dynamic_templates", []):
        for spec in entry.values():
            if "type" in spec.get("mapping", {}):
                yield spec["mapping"]


def _flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_settings(value, name + "."))
            continue
        if not name.startswith("index."):
            name = "index." + name
        out[name] = [_setting_str(v) for v in value] if isinstance(value, list) else _setting_str(value)
    return out


def _setting_str(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _get(client: Elasticsearch, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """A GET's JSON body, or None for 404 (and the 400/405 a missing API answers)."""
    try:
        response = client.perform_request("GET", path, headers={"accept": "application/json"}, params=params)
    except ApiError as exc:
        if exc.status_code in (400, 404, 405, 410):
            return None
        raise
    body = response.body
    return body if isinstance(body, dict) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reason(exc: ApiError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error")
    if isinstance(error, dict):
        return str(error.get("reason") or error.get("type") or exc.message)
    return _short(str(error or exc.message))


def _short(text: str) -> str:
    # The transport nests the cause several times; the innermost sentence is the useful one.
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _url_of(client_or_url: Elasticsearch | str) -> str:
    if isinstance(client_or_url, str):
        return client_or_url
    nodes: list[Any] = getattr(client_or_url.transport.node_pool, "all", list)()
    return str(nodes[0].base_url) if nodes else "elasticsearch"


__all__ = [
    "FALLBACKS",
    "Asset",
    "AssetResult",
    "Capabilities",
    "SetupError",
    "SetupReport",
    "connect",
    "describe_error",
    "install_assets",
    "load_assets",
    "probe",
]
