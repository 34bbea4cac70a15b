"""Tests for tunnelhound.config: defaults, the example file, and every kind of rejection."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

import tunnelhound.config as config_module
from tunnelhound.config import (
    DEFAULT_INTERNAL_NETWORKS,
    BiflowConfig,
    Config,
    DecodeConfig,
    InputsConfig,
    NdjsonOutputConfig,
    NormalizeConfig,
    OutputConfig,
    UdpInputConfig,
    from_dict,
    load_config,
    parse_host_port,
)
from tunnelhound.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"


def error_of(data: Any) -> ConfigError:
    """The ConfigError that building a Config from ``data`` raises."""
    with pytest.raises(ConfigError) as info:
        from_dict(Config, data)
    return info.value


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def dotted_keys(cls: type, prefix: str = "") -> set[str]:
    """Every leaf key of a config dataclass, dotted."""
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        tp = config_module._fields(cls)[f.name][0]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            keys |= dotted_keys(tp, name + ".")  # type: ignore[arg-type]
        else:
            keys.add(name)
    return keys


def yaml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= yaml_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    cfg = Config()
    assert cfg.state_dir == "./state"
    assert cfg.namespace == "default"
    assert cfg.inputs.udp.listen == ("0.0.0.0:2055", "0.0.0.0:4739")
    assert cfg.inputs.udp.receive_buffer == 33554432
    assert cfg.inputs.allowed_exporters == ()
    assert cfg.decode == DecodeConfig(
        share_templates=False,
        max_templates_per_exporter=4096,
        max_held_sets=1024,
        held_set_timeout=60.0,
        fast_path=True,
    )
    assert cfg.normalize.internal_networks == DEFAULT_INTERNAL_NETWORKS
    assert DEFAULT_INTERNAL_NETWORKS == (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/10",
    )
    assert cfg.normalize.community_id_seed == 0
    assert cfg.normalize.biflow == BiflowConfig(enabled=True, timeout=30.0, max_pending=100000)
    assert cfg.output.ndjson == NdjsonOutputConfig(
        path="./data", rotate_bytes=104857600, rotate_seconds=3600, max_files=0
    )


def test_defaults_pass_their_own_checks() -> None:
    # asdict gives tuples for the list fields; from_dict accepts those like YAML lists.
    assert from_dict(Config, dataclasses.asdict(Config())) == Config()


def test_none_and_empty_mean_defaults(tmp_path: Path) -> None:
    assert load_config(None) == Config()
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# only a comment\n")) == Config()
    # A section whose keys are all commented out parses as null.
    assert load_config(write(tmp_path, "decode:\n  # fast_path: false\n")) == Config()


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "namespace: prod\ndecode:\n  max_held_sets: 0\n  held_set_timeout: 5\n"
            "inputs:\n  udp:\n    listen: ['[::]:2055']\n",
        )
    )
    assert cfg.namespace == "prod"
    assert cfg.decode.max_held_sets == 0
    # An integer is accepted where a float is declared, and stored as float.
    assert cfg.decode.held_set_timeout == 5.0
    assert isinstance(cfg.decode.held_set_timeout, float)
    assert cfg.decode.fast_path is True
    assert cfg.inputs.udp == UdpInputConfig(listen=("[::]:2055",), receive_buffer=33554432)
    assert cfg.output == OutputConfig()


def test_config_is_frozen_keyword_only_and_hashable() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.namespace = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DecodeConfig(True)  # type: ignore[call-arg]
    assert hash(cfg) == hash(Config())
    assert repr(NormalizeConfig()).startswith("NormalizeConfig(internal_networks=('10.0.0.0/8',")
    assert InputsConfig(allowed_exporters=("10.0.0.0/8",)) != InputsConfig()


def test_exports() -> None:
    assert sorted(config_module.__all__) == sorted(
        [
            "DEFAULT_INTERNAL_NETWORKS",
            "BiflowConfig",
            "Config",
            "DecodeConfig",
            "DetectionsConfig",
            "InputsConfig",
            "ElasticsearchOutputConfig",
            "NdjsonOutputConfig",
            "NormalizeConfig",
            "OutputConfig",
            "ServiceConfig",
            "RulesConfig",
            "ThreatIndexConfig",
            "UdpInputConfig",
            "AlertDeliveryConfig",
            "AlertElasticsearchConfig",
            "AlertsConfig",
            "SmtpAlertConfig",
            "SmtpRouteConfig",
            "SmtpSeverityConfig",
            "SyslogAlertConfig",
            "WebhookAlertConfig",
            "ZeekConfig",
            "from_dict",
            "load_config",
            "parse_host_port",
        ]
    )
    for name in config_module.__all__:
        assert getattr(config_module, name).__doc__ or name == "DEFAULT_INTERNAL_NETWORKS"


# --------------------------------------------------------------------------- example file


def test_example_file_equals_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_example_file_lists_every_key() -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert yaml_keys(data) == dotted_keys(Config)


def test_example_file_comments_every_key() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    leaves = {key.rsplit(".", 1)[-1] for key in dotted_keys(Config)}
    for i, line in enumerate(lines):
        key = line.strip().split(":", 1)[0]
        if key in leaves and not line.strip().startswith("#"):
            assert lines[i - 1].strip().startswith("#"), f"{key} has no comment above it"


# --------------------------------------------------------------------------- unknown keys


def test_nested_unknown_key_suggests() -> None:
    err = error_of({"decode": {"shar_templates": True}})
    assert err.key == "decode.shar_templates"
    assert str(err) == (
        "config error: decode.shar_templates: unknown key; allowed keys: share_templates, "
        "max_templates_per_exporter, max_held_sets, held_set_timeout, fast_path "
        "(did you mean share_templates?)"
    )


def test_deeply_nested_unknown_key() -> None:
    err = error_of({"output": {"ndjson": {"rotate_byte": 2048}}})
    assert str(err) == (
        "config error: output.ndjson.rotate_byte: unknown key; allowed keys: path, rotate_bytes, "
        "rotate_seconds, max_files (did you mean rotate_bytes?)"
    )


def test_unknown_key_without_suggestion() -> None:
    err = error_of({"elasticsearch": {}})
    assert str(err) == (
        "config error: elasticsearch: unknown key; allowed keys: state_dir, namespace, inputs, decode, "
        "normalize, output, alerts, service, zeek, detections, rules"
    )


def test_non_string_key() -> None:
    err = error_of({"decode": {1: 2}})
    assert err.key == "decode.1"
    assert "unknown key; allowed keys: share_templates," in str(err)


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"decode": {"fast_path": 1}},
            "decode.fast_path: 1 (an integer) is not allowed; expected true or false",
        ),
        (
            {"decode": {"share_templates": "yes"}},
            'decode.share_templates: "yes" (a string) is not allowed; expected true or false',
        ),
        (
            {"decode": {"max_held_sets": True}},
            "decode.max_held_sets: true (a boolean) is not allowed; expected an integer >= 0",
        ),
        (
            {"decode": {"max_held_sets": 1.5}},
            "decode.max_held_sets: 1.5 (a number) is not allowed; expected an integer >= 0",
        ),
        (
            {"decode": {"held_set_timeout": False}},
            "decode.held_set_timeout: false (a boolean) is not allowed; expected a number > 0",
        ),
        (
            {"decode": {"held_set_timeout": "60"}},
            'decode.held_set_timeout: "60" (a string) is not allowed; expected a number > 0',
        ),
        (
            {"inputs": {"udp": {"listen": "0.0.0.0:2055"}}},
            'inputs.udp.listen: "0.0.0.0:2055" (a string) is not allowed; '
            "expected a list, each item host:port or [v6]:port with port 1..65535",
        ),
        (
            {"normalize": {"internal_networks": [10]}},
            "normalize.internal_networks[0]: 10 (an integer) is not allowed; "
            "expected a CIDR such as 10.0.0.0/8 or fc00::/7",
        ),
        (
            {"namespace": None},
            'namespace: null is not allowed; expected a lowercase name of 1-100 bytes without - \\ / * ? " < > | '
            "space , #",
        ),
        (
            {"decode": ["fast_path"]},
            "(a list) is not allowed; expected a mapping with keys: share_templates, max_templates_per_exporter, "
            "max_held_sets, held_set_timeout, fast_path",
        ),
    ],
)
def test_wrong_types(data: dict[str, Any], message: str) -> None:
    assert str(error_of(data)).endswith(message)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "- a\n- b\n"))
    assert str(info.value) == (
        'config error: (top level): ["a", "b"] (a list) is not allowed; expected a mapping with keys: '
        "state_dir, namespace, inputs, decode, normalize, output, alerts, service, zeek, detections, rules"
    )


def test_long_values_are_cut() -> None:
    err = error_of({"namespace": "x" * 500})
    assert str(err) == (
        f'config error: namespace: "{"x" * 76}... is not allowed; expected a lowercase name of 1-100 bytes '
        'without - \\ / * ? " < > | space , #'
    )


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("section", "key", "good", "bad", "allowed"),
    [
        ("inputs.udp", "receive_buffer", [65536], [65535, 0], "an integer >= 65536"),
        ("decode", "max_templates_per_exporter", [1, 100000], [0, -1], "an integer >= 1"),
        ("decode", "max_held_sets", [0, 1], [-3], "an integer >= 0"),
        ("decode", "held_set_timeout", [0.001, 3600], [0, -1.0, float("inf")], "a number > 0"),
        ("normalize", "community_id_seed", [0, 65535], [-1, 65536], "an integer from 0 to 65535"),
        ("normalize.biflow", "timeout", [0, 0.5], [-0.1, float("nan")], "a number >= 0"),
        ("normalize.biflow", "max_pending", [0], [-1], "an integer >= 0"),
        ("output.ndjson", "rotate_bytes", [1024], [1023], "an integer >= 1024"),
        ("output.ndjson", "rotate_seconds", [1], [0], "an integer >= 1"),
        ("output.ndjson", "max_files", [0, 5], [-1], "an integer >= 0"),
    ],
)
def test_ranges(section: str, key: str, good: list[Any], bad: list[Any], allowed: str) -> None:
    def nest(value: Any) -> dict[str, Any]:
        data: dict[str, Any] = {key: value}
        for part in reversed(section.split(".")):
            data = {part: data}
        return data

    def get(cfg: Any) -> Any:
        for part in [*section.split("."), key]:
            cfg = getattr(cfg, part)
        return cfg

    for value in good:
        assert get(from_dict(Config, nest(value))) == value
    for value in bad:
        err = error_of(nest(value))
        assert err.key == f"{section}.{key}"
        shown = {float("inf"): "Infinity"}.get(value, "NaN" if value != value else str(value))
        assert str(err) == f"config error: {section}.{key}: {shown} is not allowed; expected {allowed}"


def test_max_held_sets_message_exactly() -> None:
    assert str(error_of({"decode": {"max_held_sets": -3}})) == (
        "config error: decode.max_held_sets: -3 is not allowed; expected an integer >= 0"
    )


# --------------------------------------------------------------------------- CIDRs


def test_good_cidrs() -> None:
    cfg = from_dict(
        Config,
        {
            "inputs": {"allowed_exporters": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]},
            # Host bits set: accepted as the containing network (strict=False).
            "normalize": {"internal_networks": ["10.1.2.3/8"]},
        },
    )
    assert cfg.inputs.allowed_exporters == ("192.0.2.0/24", "2001:db8::/32", "198.51.100.7")
    assert cfg.normalize.internal_networks == ("10.1.2.3/8",)


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "300.0.0.0/8", "fc00::/129", "intranet", "", "10.0.0.0/8 "])
def test_bad_cidr(cidr: str) -> None:
    err = error_of({"inputs": {"allowed_exporters": ["10.0.0.0/8", cidr]}})
    assert err.key == "inputs.allowed_exporters[1]"
    assert str(err) == (
        f'config error: inputs.allowed_exporters[1]: "{cidr}" is not allowed; '
        "expected a CIDR such as 10.0.0.0/8 or fc00::/7"
    )


# --------------------------------------------------------------------------- host:port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:2055", ("0.0.0.0", 2055)),
        ("[::]:4739", ("::", 4739)),
        ("[fe80::1]:65535", ("fe80::1", 65535)),
        ("localhost:1", ("localhost", 1)),
        ("collector-1.example.org:9995", ("collector-1.example.org", 9995)),
    ],
)
def test_good_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected
    assert from_dict(Config, {"inputs": {"udp": {"listen": [text]}}}).inputs.udp.listen == (text,)


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0",
        ":2055",
        "0.0.0.0:0",
        "0.0.0.0:65536",
        "0.0.0.0:port",
        "0.0.0.0:+80",
        "0.0.0.0: 80",
        "999.1.1.1:2055",
        "::1:2055",
        "[::1]2055",
        "[nothost]:2055",
        "bad_host:2055",
        "-bad.example:2055",
    ],
)
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)
    err = error_of({"inputs": {"udp": {"listen": ["0.0.0.0:2055", text]}}})
    assert err.key == "inputs.udp.listen[1]"
    assert str(err) == (
        f'config error: inputs.udp.listen[1]: "{text}" is not allowed; '
        "expected host:port or [v6]:port with port 1..65535"
    )


# --------------------------------------------------------------------------- namespace


@pytest.mark.parametrize("namespace", ["default", "prod_eu", "site.1", "x" * 100, "zürich"])
def test_good_namespace(namespace: str) -> None:
    assert from_dict(Config, {"namespace": namespace}).namespace == namespace


@pytest.mark.parametrize(
    "namespace",
    ["", "Prod", "eu-west", "a b", "a,b", "a#b", "a/b", "a\\b", "a*", "a?", 'a"', "a<", "a>", "a|b", "x" * 101,
     "ü" * 51],
)  # fmt: skip
def test_bad_namespace(namespace: str) -> None:
    err = error_of({"namespace": namespace})
    assert err.key == "namespace"
    assert " is not allowed; expected a lowercase name of 1-100 bytes" in str(err)


def test_empty_paths_rejected() -> None:
    assert str(error_of({"state_dir": ""})) == (
        'config error: state_dir: "" is not allowed; expected a non-empty string'
    )
    assert error_of({"output": {"ndjson": {"path": ""}}}).key == "output.ndjson.path"


# --------------------------------------------------------------------------- files


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "decode:\n  fast_path: true\n  max_held_sets: [1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == str(path)
    assert str(info.value) == (
        f"config error: {path}: invalid YAML at line 4, column 1: expected ',' or ']', but got '<stream end>'"
    )


def test_yaml_bad_indentation(tmp_path: Path) -> None:
    path = write(tmp_path, "decode:\n  fast_path: true\n max_held_sets: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"config error: {path}: invalid YAML at line 3, column 2: expected <block end>, but found '<block mapping start>'"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config error: {path}: cannot read file: No such file or directory"


def test_error_from_file_names_dotted_key(tmp_path: Path) -> None:
    path = write(tmp_path, "normalize:\n  biflow:\n    enabled: 'no'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        'config error: normalize.biflow.enabled: "no" (a string) is not allowed; expected true or false'
    )


# --------------------------------------------------------------------------- every message


ALL_BAD: list[tuple[dict[str, Any], str]] = [
    ({"state_dir": 7}, "state_dir"),
    ({"namespace": "A"}, "namespace"),
    ({"inputs": {"udp": {"listen": ["x"]}}}, "inputs.udp.listen[0]"),
    ({"inputs": {"udp": {"receive_buffer": "big"}}}, "inputs.udp.receive_buffer"),
    ({"inputs": {"udp": {"lisen": []}}}, "inputs.udp.lisen"),
    ({"inputs": {"udp": "0.0.0.0:2055"}}, "inputs.udp"),
    ({"inputs": {"allowed_exporters": "10.0.0.0/8"}}, "inputs.allowed_exporters"),
    ({"decode": {"share_templates": "false\nfast_path: true"}}, "decode.share_templates"),
    ({"decode": {"max_templates_per_exporter": 0}}, "decode.max_templates_per_exporter"),
    ({"decode": {"max_held_sets": -3}}, "decode.max_held_sets"),
    ({"decode": {"held_set_timeout": 0}}, "decode.held_set_timeout"),
    ({"decode": {"fast_path": None}}, "decode.fast_path"),
    ({"normalize": {"internal_networks": ["10.0.0.0/8", {"a": 1}]}}, "normalize.internal_networks[1]"),
    ({"normalize": {"community_id_seed": 70000}}, "normalize.community_id_seed"),
    ({"normalize": {"biflow": {"enabled": 0}}}, "normalize.biflow.enabled"),
    ({"normalize": {"biflow": {"timeout": -1}}}, "normalize.biflow.timeout"),
    ({"normalize": {"biflow": {"max_pending": -1}}}, "normalize.biflow.max_pending"),
    ({"output": {"ndjson": {"path": ["-"]}}}, "output.ndjson.path"),
    ({"output": {"ndjson": {"rotate_bytes": 10}}}, "output.ndjson.rotate_bytes"),
    ({"output": {"ndjson": {"rotate_seconds": 0}}}, "output.ndjson.rotate_seconds"),
    ({"output": {"ndjson": {"max_files": -1}}}, "output.ndjson.max_files"),
    ({"output": {"kafka": {}}}, "output.kafka"),
]


@pytest.mark.parametrize(("data", "key"), ALL_BAD)
def test_every_message_is_one_line_and_names_the_key(data: dict[str, Any], key: str) -> None:
    err = error_of(data)
    assert err.key == key
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"config error: {key}: ")
    assert "is not allowed; expected " in text or "unknown key; allowed keys: " in text


# --------------------------------------------------------------------------- generic from_dict


@dataclass(frozen=True, kw_only=True)
class _Inner:
    mode: Literal["fast", "safe", 1] = "fast"
    limit: int | None = None


@dataclass(frozen=True, kw_only=True)
class _Outer:
    name: str
    ports: list[int] = field(default_factory=list, metadata={"check": lambda v: v > 0, "allowed": "a port"})
    inner: _Inner = field(default_factory=_Inner)
    maybe: _Inner | None = None


def test_from_dict_generic_types() -> None:
    built = from_dict(
        _Outer, {"name": "x", "ports": [1, 2], "inner": {"mode": "safe", "limit": 3}, "maybe": {}}
    )
    assert built == _Outer(name="x", ports=[1, 2], inner=_Inner(mode="safe", limit=3), maybe=_Inner())
    assert from_dict(_Outer, {"name": "y", "maybe": None, "inner": {"limit": None}}) == _Outer(name="y")
    assert from_dict(_Outer, {"name": "z", "inner": {"mode": 1}}).inner.mode == 1


def test_from_dict_generic_errors() -> None:
    def message(data: Any, path: str = "") -> str:
        with pytest.raises(ConfigError) as info:
            from_dict(_Outer, data, path)
        return str(info.value)

    assert message({}) == "config error: name: missing; expected a string"
    assert message({"name": "x", "inner": {"mode": "quick"}}, "plugin") == (
        'config error: plugin.inner.mode: "quick" is not allowed; expected one of "fast", "safe", 1'
    )
    # True == 1 in Python; a Literal must still refuse a bool.
    assert message({"name": "x", "inner": {"mode": True}}).endswith(
        'true is not allowed; expected one of "fast", "safe", 1'
    )
    assert message({"name": "x", "inner": {"limit": "3"}}) == (
        'config error: inner.limit: "3" (a string) is not allowed; expected an integer or null'
    )
    assert (
        message({"name": "x", "ports": [1, 0]}) == "config error: ports[1]: 0 is not allowed; expected a port"
    )
    assert message({"name": "x", "maybe": 5}) == (
        "config error: maybe: 5 (an integer) is not allowed; expected a mapping with keys: mode, limit or null"
    )


def test_from_dict_rejects_non_dataclass() -> None:
    with pytest.raises(TypeError):
        from_dict(dict, {})
