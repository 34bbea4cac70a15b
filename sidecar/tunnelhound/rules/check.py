"""`tunnelhound rules check`: sigma-cli's ``sigma check`` on rule directories, offline.

pySigma validates ATT&CK tags against MITRE's data, which it downloads from GitHub on first
use. Offline (CI, air-gapped SOCs) that fails, so by default the check loads the subset of
Enterprise ATT&CK shipped in the package (every tactic and the techniques Tunnelhound's rules
and common network rules use) from a private cache; ``attack_data`` names a full
``enterprise-attack.json`` (file or URL) instead. Tags outside the subset are reported as
invalid, which is why users with their own rules should pass the full file. D3FEND (the other
tag vocabulary pySigma downloads) is given an empty ontology offline: Tunnelhound's rules use
no D3FEND tags, and a user's D3FEND tag is then reported rather than the check crashing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import click
from sigma.cli.check import check as sigma_check
from sigma.data import mitre_attack, mitre_d3fend

ATTACK_SUBSET = "attack-enterprise-subset.json"


_EMPTY_D3FEND = '{"@graph": [{"@type": "owl:Ontology"}]}'


def use_offline_data(attack_source: str | None, cache_dir: Path) -> None:
    """Point pySigma's ATT&CK loader at ``attack_source`` (default: the bundled subset) and its
    D3FEND loader at an empty ontology, cached in ``cache_dir`` (never the user's shared pySigma
    cache, which ``set_url`` clears)."""
    for module, name in ((mitre_attack, "attack"), (mitre_d3fend, "d3fend")):
        module.set_cache_dir(str(cache_dir / name))
    if attack_source is None:
        attack_source = str(resources.files("tunnelhound") / "data" / ATTACK_SUBSET)
    mitre_attack.set_url(attack_source)
    d3fend = cache_dir / "d3fend-empty.json"
    d3fend.write_text(_EMPTY_D3FEND, encoding="utf-8")
    mitre_d3fend.set_url(str(d3fend))


def check_rules(paths: Sequence[str], *, attack_data: str | None = None) -> int:
    """Run ``sigma check --fail-on-issues`` on ``paths``; returns its exit code (0: no issues).

    The pipelines directory holds processing pipelines, not rules: only ``*.yml`` files that
    are rules are passed (directories are walked without ``pipelines/``)."""
    files = [str(p) for p in rule_files(paths)]
    with tempfile.TemporaryDirectory(prefix="tunnelhound-attack-") as cache:
        use_offline_data(attack_data, Path(cache))
        try:
            # standalone_mode=False: click returns the command's exit code instead of exiting
            code = sigma_check.main(["--fail-on-issues", *files], standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
    return int(code or 0)


def rule_files(paths: Sequence[str]) -> list[Path]:
    """The rule files under ``paths`` (files as given; directories walked, pipelines/ skipped)."""
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in (".yml", ".yaml") and "pipelines" not in p.relative_to(path).parts
                )
            )
        else:
            out.append(path)
    return out
