"""Template and options-data state per exporter session (RFC 7011 §8.4), persistable.

A session is (exporter IP, exporter port, version, observation domain); with
``share_templates`` the port is dropped (stored as 0) for exporters that rotate it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from tunnelhound.decode.template import Template
from tunnelhound.model import OptionsRecord, SessionOptions

SessionKey = tuple[str, int, int, int]
"""(exporter IP, exporter port or 0 when shared, version, observation domain / source id)."""

STATE_VERSION = 1


class TemplateLimitExceeded(Exception):
    """The exporter already has as many templates as it may keep."""


def absorb_options(opts: SessionOptions, record: OptionsRecord) -> bool:
    """Take what is useful from one options record into ``opts``; True when something changed."""
    values = {**record.scope, **record.values}
    changed = False
    app_id, app_name = values.get("application_id"), values.get("application_name")
    if (
        isinstance(app_id, str)
        and isinstance(app_name, str)
        and app_name
        and opts.application_names.get(app_id) != app_name
    ):
        opts.application_names[app_id] = app_name
        changed = True
    ifindex = values.get("ingress_interface", values.get("egress_interface"))
    ifname = values.get("interface_name") or values.get("interface_description")
    if (
        isinstance(ifindex, int)
        and isinstance(ifname, str)
        and ifname
        and opts.interface_names.get(ifindex) != ifname
    ):
        opts.interface_names[ifindex] = ifname
        changed = True
    rate = sampling_rate(values)
    if rate is not None:
        sampler = values.get("sampler_id", values.get("selector_id"))
        if isinstance(sampler, int) and sampler > 0:
            if opts.sampling_by_id.get(sampler) != rate:
                opts.sampling_by_id[sampler] = rate
                changed = True
        elif opts.sampling_default != rate:
            opts.sampling_default = rate
            changed = True
    return changed


def options_to_json(opts: SessionOptions) -> dict[str, Any]:
    """Plain form for persistence."""
    return {
        "sampling_default": opts.sampling_default,
        "sampling_by_id": {str(k): v for k, v in opts.sampling_by_id.items()},
        "application_names": opts.application_names,
        "interface_names": {str(k): v for k, v in opts.interface_names.items()},
    }


def options_from_json(data: dict[str, Any]) -> SessionOptions:
    """Inverse of :func:`options_to_json`."""
    return SessionOptions(
        data.get("sampling_default"),
        {int(k): float(v) for k, v in data.get("sampling_by_id", {}).items()},
        dict(data.get("application_names", {})),
        {int(k): v for k, v in data.get("interface_names", {}).items()},
    )


def sampling_rate(values: dict[str, Any]) -> float | None:
    """Packets represented by one sampled packet, from sampling IEs (34/35, 49/50, 305/306)."""
    interval = values.get("sampling_packet_interval")
    space = values.get("sampling_packet_space")
    if isinstance(interval, int) and isinstance(space, int) and interval > 0:
        return (interval + space) / interval
    for name in ("sampling_interval", "sampler_random_interval"):
        value = values.get(name)
        if isinstance(value, int) and value > 0:
            return float(value)
    probability = values.get("sampling_probability")
    if isinstance(probability, float) and 0 < probability <= 1:
        return 1 / probability
    return None


class SessionStore:
    """Templates and options state for every exporter session."""

    def __init__(self, *, share_templates: bool = False, max_templates_per_exporter: int = 4096) -> None:
        self.share_templates = share_templates
        self.max_templates_per_exporter = max_templates_per_exporter
        self._templates: dict[SessionKey, dict[int, Template]] = {}
        self._options: dict[SessionKey, SessionOptions] = {}
        self._per_exporter: Counter[str] = Counter()
        self.dirty = False

    def key(self, ip: str, port: int, version: int, domain: int) -> SessionKey:
        """The session key for a message's header."""
        return (ip, 0 if self.share_templates else port, version, domain)

    def template(self, key: SessionKey, template_id: int) -> Template | None:
        """The template in force, or None."""
        session = self._templates.get(key)
        return session.get(template_id) if session else None

    def put_template(self, key: SessionKey, template: Template) -> bool:
        """Learn or refresh a template; True when it is new or different."""
        session = self._templates.setdefault(key, {})
        old = session.get(template.template_id)
        if old == template:
            return False
        if old is None:
            if self._per_exporter[key[0]] >= self.max_templates_per_exporter:
                raise TemplateLimitExceeded(key[0])
            self._per_exporter[key[0]] += 1
        session[template.template_id] = template
        self.dirty = True
        return True

    def withdraw(self, key: SessionKey, template_id: int | None = None) -> None:
        """Forget one template, or all of a session's when ``template_id`` is None."""
        session = self._templates.get(key, {})
        ids = list(session) if template_id is None else [template_id]
        for tid in ids:
            if session.pop(tid, None) is not None:
                self._per_exporter[key[0]] -= 1
                self.dirty = True

    def options(self, key: SessionKey) -> SessionOptions:
        """The options state of a session (created empty)."""
        opts = self._options.get(key)
        if opts is None:
            opts = self._options[key] = SessionOptions()
        return opts

    def absorb_options(self, key: SessionKey, record: OptionsRecord) -> None:
        """Join an options record into the session's state."""
        if absorb_options(self.options(key), record):
            self.dirty = True

    def template_count(self, exporter_ip: str | None = None) -> int:
        """Templates held, for one exporter or in all."""
        if exporter_ip is None:
            return sum(self._per_exporter.values())
        return self._per_exporter[exporter_ip]

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        """Everything needed to decode at once after a restart."""
        sessions = []
        for key in sorted(set(self._templates) | set(self._options)):
            sessions.append(
                {
                    "key": list(key),
                    "templates": [t.to_json() for t in self._templates.get(key, {}).values()],
                    "options": options_to_json(self._options[key]) if key in self._options else None,
                }
            )
        return {"version": STATE_VERSION, "share_templates": self.share_templates, "sessions": sessions}

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore state written by :meth:`to_json` (a different ``share_templates`` re-keys)."""
        if data.get("version") != STATE_VERSION:
            return
        for entry in data.get("sessions", []):
            ip, port, version, domain = entry["key"]
            key = self.key(ip, port, version, domain)
            for t in entry.get("templates", []):
                try:
                    self.put_template(key, Template.from_json(t, version))
                except TemplateLimitExceeded:
                    break
            if entry.get("options"):
                self._options[key] = options_from_json(entry["options"])
        self.dirty = False

    def save(self, path: Path) -> None:
        """Write state atomically (temp file + rename) so a crash never leaves half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.dirty = False

    def load(self, path: Path) -> bool:
        """Restore from ``path`` if it exists; a corrupt file is ignored (returns False)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            return False
        self.load_json(data)
        return True
