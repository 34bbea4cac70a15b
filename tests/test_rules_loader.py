"""Loading rule files: pipelines, references, and one-line errors naming file, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelhound.errors import RuleError
from tunnelhound.rules import load_pipeline, load_rules

RULES = Path(__file__).resolve().parent / "data" / "rules"

BASE = """title: t
name: {name}
id: 3f6c2a10-0000-4000-8000-00000000000{n}
logsource: {{product: tunnelhound, category: network, service: flow}}
detection:
  sel:
    {field}: 53
  condition: sel
level: low
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def error(directories: list[Path], pipeline: Path | None = None) -> str:
    with pytest.raises(RuleError) as info:
        load_rules(directories, load_pipeline(pipeline) if pipeline else None)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_field_names_file_rule_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yml", BASE.format(name="mine", n=1, field="dst.port"))
    assert error([tmp_path]) == f"rules error: {path}: rule 'mine': unknown field 'dst.port'"


def test_taxonomy_names_need_the_pipeline(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yml", BASE.format(name="mine", n=1, field="DestinationPort"))
    assert error([tmp_path]) == f"rules error: {path}: rule 'mine': unknown field 'DestinationPort'"
    (rule,) = load_rules([tmp_path], load_pipeline(RULES / "pipelines" / "tunnelhound.yml")).base
    assert rule.query == "destination.port:53"


def test_bad_modifier_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yml", BASE.format(name="mine", n=1, field="destination.port|bogus"))
    message = error([tmp_path])
    assert message.startswith(f"rules error: {path}: ") and "bogus" in message


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yml", "title: [unclosed\n")
    assert error([tmp_path]).startswith(f"rules error: {path}: ")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", BASE.format(name="same", n=1, field="destination.port"))
    path = write(tmp_path, "b.yml", BASE.format(name="same", n=2, field="destination.port"))
    assert error([tmp_path]) == f"rules error: {path}: rule name 'same' is also used in {tmp_path / 'a.yml'}"


def test_correlation_on_unknown_field_and_unknown_rule(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", BASE.format(name="base", n=1, field="destination.port"))
    corr = """title: c
name: corr
correlation: {{type: value_count, rules: [{rule}], group-by: [source.ip], timespan: 5m, condition: {{gte: 2, field: {field}}}}}
"""
    path = write(tmp_path, "b.yml", corr.format(rule="base", field="dst_port"))
    assert error([tmp_path]) == f"rules error: {path}: rule 'corr': unknown field 'dst_port'"
    write(tmp_path, "b.yml", corr.format(rule="nothere", field="destination.port"))
    message = error([tmp_path])
    assert message.startswith(f"rules error: {path}: rule 'corr': ") and "nothere" in message


def test_unsupported_correlation_type(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", BASE.format(name="base", n=1, field="destination.port"))
    path = write(
        tmp_path,
        "b.yml",
        "title: c\nname: corr\ncorrelation: {type: temporal, rules: [base], group-by: [source.ip], timespan: 5m}\n",
    )
    assert (
        error([tmp_path]) == f"rules error: {path}: rule 'corr': correlation type temporal is not supported"
    )


def test_missing_directory(tmp_path: Path) -> None:
    assert error([tmp_path / "nope"]) == f"rules error: {tmp_path / 'nope'}: not a directory"


def test_referenced_rules_do_not_alert_unless_generate() -> None:
    rules = load_rules([RULES], load_pipeline(RULES / "pipelines" / "tunnelhound.yml"))
    output = {r.info.name: r.output for r in rules.base} | {c.info.name: c.output for c in rules.correlations}
    assert output == {
        "test_unanswered": False,
        "test_outbound": False,
        "test_ssh_on_53": True,
        "test_threat_index": True,
        "test_scan_vertical": True,
        "test_exfil_volume": True,  # the repeat rule chains on it with generate: true
        "test_exfil_repeat": True,
    }


def test_a_rule_without_name_goes_by_its_id(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", BASE.format(name="x", n=1, field="destination.port").replace("name: x\n", ""))
    (rule,) = load_rules([tmp_path]).base
    assert rule.info.name == rule.info.id == "3f6c2a10-0000-4000-8000-000000000001"
    path = write(
        tmp_path,
        "a.yml",
        "title: t\nlogsource: {product: tunnelhound}\ndetection: {s: {a: 1}, condition: s}\n",
    )
    assert error([tmp_path]) == f"rules error: {path}: rule 't' has neither a name nor an id"


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {"source.ip|expand": "%admin_hosts%"},
            "placeholder in %admin_hosts% is not resolved; map it in a processing pipeline",
        ),
        ({"event.end|minute": 3}, "timestamp part modifiers (minute, hour …) are not supported"),
    ],
)
def test_unsupported_values_are_refused(tmp_path: Path, selection: dict[str, object], message: str) -> None:
    text = BASE.format(name="mine", n=1, field="x").replace(
        "    x: 53\n", "".join(f"    {k}: {v!r}\n" for k, v in selection.items())
    )
    path = write(tmp_path, "mine.yml", text)
    assert error([tmp_path]) == f"rules error: {path}: rule 'mine': {message}"


def test_keyword_searches_are_refused(tmp_path: Path) -> None:
    text = BASE.format(name="mine", n=1, field="x").replace("  sel:\n    x: 53\n", "  sel: [ssh, vpn]\n")
    path = write(tmp_path, "mine.yml", text)
    assert (
        error([tmp_path])
        == f"rules error: {path}: rule 'mine': keyword search ssh is not supported; name a field"
    )
