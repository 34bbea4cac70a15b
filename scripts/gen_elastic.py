"""Generate the Elasticsearch assets (templates, ILM policy) from elastic/fields/*.yml.

Usage: python scripts/gen_elastic.py [--check]

Writes the same JSON files to elastic/elasticsearch/ (for users who install by hand, see
elastic/README.md) and to sidecar/tunnelhound/data/elasticsearch/ (package data that
`tunnelhound setup` reads). `--check` exits 1 when either copy is stale. Output is
deterministic: sorted keys, fixed indentation, nothing taken from the clock.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ROOT / "elastic" / "fields"
OUT_DIRS = (ROOT / "elastic" / "elasticsearch", ROOT / "sidecar" / "tunnelhound" / "data" / "elasticsearch")

sys.path.insert(0, str(ROOT / "sidecar"))
from tunnelhound import __version__  # noqa: E402 - needs the sys.path entry above

ASSET_VERSION = 3
"""The `version` of every template and policy. Bump it whenever the generated assets change:
`tunnelhound setup` never replaces an installed asset whose version is higher than its own, so
an older sidecar cannot downgrade templates a newer one installed."""

ILM_POLICY = "tunnelhound"
FLEET_COMPONENTS = ("logs@mappings", "logs@settings", "ecs@mappings")
"""Elastic's stack templates: present on a full cluster, absent on the integ-test build, so they
are listed in ignore_missing_component_templates; ours come after them and win."""

SETTINGS_COMPONENT = "tunnelhound@settings"
ILM_COMPONENT = "tunnelhound@ilm"
"""Only `index.lifecycle.name`: a cluster without ILM rejects that setting, so setup installs this
component only where ILM exists and the index templates tolerate its absence."""

DATA_STREAMS = {
    # data set -> (field files, index template name)
    "flow": (("flow.yml", "netflow.yml"), "logs-tunnelhound.flow"),
    "alert": (("alert.yml",), "logs-tunnelhound.alert"),
}

KEYWORD_IGNORE_ABOVE = 1024
"""As ECS: longer keyword values stay in _source but are not indexed (a huge hex blob in an
unknown element must not fail the document or bloat the terms dictionary)."""

FIELDS_HEADROOM = 1000
"""Room above the declared field count for the wildcard elements (netflow.ie_* and friends)
that dynamic templates map as they appear."""


def load_fields(files: tuple[str, ...]) -> list[dict[str, Any]]:
    """Entries of the field files, in file order; a name declared twice is an error."""
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in files:
        for entry in yaml.safe_load((FIELDS / name).read_text()):
            if entry["name"] in seen:
                raise SystemExit(f"{name}: {entry['name']} declared twice")
            seen.add(entry["name"])
            entries.append(entry)
    return entries


def field_mapping(entry: dict[str, Any]) -> dict[str, Any]:
    """The Elasticsearch mapping of one field-list entry (`array` is documentation only)."""
    mapping: dict[str, Any] = {"type": entry["type"]}
    if entry["type"] == "keyword":
        mapping["ignore_above"] = KEYWORD_IGNORE_ABOVE
    if entry.get("index") is False:
        mapping["index"] = False
    return mapping


def _template_name(pattern: str) -> str:
    return "tunnelhound_" + re.sub(r"[^a-z0-9]+", "_", pattern.lower()).strip("_")


def build_mappings(entries: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """(`mappings` body, number of mapped fields incl. objects) for a field list.

    Dotted names become nested `properties`. Unknown fields never create mappings: the root
    is `dynamic: false` (they stay in _source, searchable only after a template update), not
    `strict`, which would reject the whole flow and lose it. Only an object that owns a
    wildcard entry (`netflow` for `netflow.ie_*`) is `dynamic: true`, so its dynamic templates
    can map the wildcard fields; every object below it is `dynamic: false` again.
    """
    root: dict[str, Any] = {}
    count = 0
    dynamic_templates: list[dict[str, Any]] = []
    dynamic_objects: set[tuple[str, ...]] = set()
    for entry in entries:
        name = entry["name"]
        if "*" in name:
            parent = tuple(name.split("*", 1)[0].split(".")[:-1])
            dynamic_objects.add(parent)
            dynamic_templates.append(
                {_template_name(name): {"path_match": name, "mapping": field_mapping(entry)}}
            )
            continue
        *parents, leaf = name.split(".")
        node = root
        for part in parents:
            child = node.setdefault(part, {"properties": {}})
            if "properties" not in child:
                raise SystemExit(f"{name}: {part} is both a field and an object")
            if not child["properties"]:
                count += 1
            node = child["properties"]
        if leaf in node:
            raise SystemExit(f"{name}: declared as a field and as an object")
        node[leaf] = field_mapping(entry)
        count += 1

    def mark(props: dict[str, Any], path: tuple[str, ...], inherited: bool) -> None:
        for key, child in props.items():
            if "properties" not in child:
                continue
            here = (*path, key)
            dynamic = here in dynamic_objects
            # Say it only where it differs from the parent: the mapping stays readable.
            if dynamic != inherited:
                child["dynamic"] = dynamic
            mark(child["properties"], here, dynamic)

    mark(root, (), False)
    mappings: dict[str, Any] = {"dynamic": False, "date_detection": False, "properties": root}
    if dynamic_templates:
        mappings["dynamic_templates"] = dynamic_templates
    return mappings, count


def _meta(description: str) -> dict[str, Any]:
    return {"managed_by": "tunnelhound", "tunnelhound_version": __version__, "description": description}


def default_fields(entries: list[dict[str, Any]]) -> list[str]:
    """Fields a query without field names searches: our top-level keyword/text fields.

    Without this a free-text KQL query expands to every field, and more than 1,024 fields
    (netflow.* alone has ~1,400) fails the query with "field expansion matches too many fields".
    """
    return [
        e["name"]
        for e in entries
        if "*" not in e["name"]
        and not e["name"].startswith(("netflow.", "data_stream."))
        and e["type"] in ("keyword", "text", "match_only_text")
        and e.get("index") is not False
    ]


def assets() -> dict[str, dict[str, Any]]:
    """File name -> JSON body of every asset. The prefix before the first '.' is the kind."""
    out: dict[str, dict[str, Any]] = {}
    for dataset, (files, index_template) in DATA_STREAMS.items():
        entries = load_fields(files)
        mappings, count = build_mappings(entries)
        component = f"tunnelhound-{dataset}@mappings"
        limit = math.ceil((count + FIELDS_HEADROOM) / 1000) * 1000
        out[f"component_template.{component}.json"] = {
            "template": {
                # The limit lives with the mappings: Elasticsearch validates a component template
                # on its own, and the default (1,000) is below the netflow.* fields alone.
                # Beyond it, new wildcard fields are left unmapped instead of failing the flow.
                "settings": {
                    "index": {
                        "mapping": {"total_fields": {"limit": limit, "ignore_dynamic_beyond_limit": True}}
                    }
                },
                "mappings": mappings,
            },
            "version": ASSET_VERSION,
            "_meta": _meta(
                f"Mappings of logs-tunnelhound.{dataset}-*, from elastic/fields/{', '.join(files)}"
            ),
        }
        optional = [*FLEET_COMPONENTS, ILM_COMPONENT]
        out[f"index_template.{index_template}.json"] = {
            "index_patterns": [f"{index_template}-*"],
            "data_stream": {},
            "priority": 200,
            "composed_of": [*FLEET_COMPONENTS, SETTINGS_COMPONENT, component, ILM_COMPONENT],
            "ignore_missing_component_templates": optional,
            "template": {"settings": {"index": {"query": {"default_field": default_fields(entries)}}}},
            "version": ASSET_VERSION,
            "_meta": _meta(f"Tunnelhound {dataset} data streams"),
        }
    out[f"component_template.{SETTINGS_COMPONENT}.json"] = {
        "template": {
            "settings": {
                "index": {
                    "mapping": {
                        # One bad value (a counter beyond long where unsigned_long is missing, a
                        # malformed address) drops that value, not the whole flow; logs@settings
                        # sets the same on a full cluster, so the test node behaves alike.
                        "ignore_malformed": True,
                    }
                }
            }
        },
        "version": ASSET_VERSION,
        "_meta": _meta(
            "Index settings of the Tunnelhound data streams. Replicas are left to the cluster: "
            "number_of_replicas 0 would lose data when a node fails."
        ),
    }
    out[f"component_template.{ILM_COMPONENT}.json"] = {
        "template": {"settings": {"index": {"lifecycle": {"name": ILM_POLICY}}}},
        "version": ASSET_VERSION,
        "_meta": _meta("ILM policy of the Tunnelhound data streams; install only where the cluster has ILM"),
    }
    out[f"ilm_policy.{ILM_POLICY}.json"] = {
        "policy": {
            "phases": {
                "hot": {
                    "min_age": "0ms",
                    "actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "50gb"}},
                },
                "delete": {"min_age": "30d", "actions": {"delete": {}}},
            },
            "_meta": {
                **_meta("Roll over daily or at 50 GB a shard; delete 30 days after rollover"),
                "version": ASSET_VERSION,
            },
        }
    }
    return out


def render() -> dict[str, str]:
    """File name -> text, deterministic."""
    return {
        name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in sorted(assets().items())
    }


def main(argv: list[str]) -> int:
    """Write both copies, or with --check report whether they are current."""
    files = render()
    if "--check" in argv:
        stale = []
        for out in OUT_DIRS:
            present = {p.name for p in out.glob("*.json")} if out.exists() else set()
            if present != set(files) or any((out / n).read_text() != t for n, t in files.items()):
                stale.append(str(out))
        if stale:
            print(f"{', '.join(stale)} stale; run python scripts/gen_elastic.py", file=sys.stderr)
            return 1
        return 0
    for out in OUT_DIRS:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.json"):
            if old.name not in files:
                old.unlink()
        for name, text in files.items():
            (out / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
