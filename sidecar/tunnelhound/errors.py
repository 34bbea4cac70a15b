"""Exceptions raised by Tunnelhound.

The tree::

    TunnelhoundError
    ├── ConfigError          bad configuration: names the key, the value and what is allowed
    ├── SourceError          an input cannot be read (unknown capture format, unreadable file)
    ├── DecodeError          one datagram or set cannot be decoded; carries exporter and reason
    └── RuleError            a Sigma rule or pipeline file cannot be loaded; names file, rule and field
"""

from __future__ import annotations


class TunnelhoundError(Exception):
    """Root of every error Tunnelhound raises on purpose."""


class ConfigError(TunnelhoundError):
    """A configuration key is unknown or has a bad value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error: {key}: {message}")
        self.key = key


class SourceError(TunnelhoundError):
    """An input file or socket cannot be used."""


class DecodeError(TunnelhoundError):
    """A datagram (or a part of it) is malformed.

    ``reason`` is a short stable slug used as the metrics label
    (``truncated_header``, ``bad_version``, ``bad_set_length`` ...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RuleError(TunnelhoundError):
    """A Sigma rule (or processing pipeline) cannot be loaded: one line naming the file, the
    rule and what is wrong (``rules error: x.yml: rule 'scan': unknown field 'dst.port'``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"rules error: {path}: {message}")
        self.path = path
