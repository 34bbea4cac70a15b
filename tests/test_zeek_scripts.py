"""The Zeek package in zeek-scripts/: every script parses and is formatted as zeek-format
would; its event declarations equal the sidecar's (tunnelhound.zeek.events); the btest
behaviour tests run where a ``zeek`` binary exists.

Parsing uses zeekscript (PyPI), the tree-sitter Zeek grammar behind ``zeek-script`` and
``zeek-format``; it needs no Zeek install.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import zeekscript
from zeekscript.node import Node

from tunnelhound.zeek.events import EVENTS, EventSchema

PACKAGE = Path(__file__).resolve().parent.parent / "zeek-scripts"
SCRIPTS = sorted(PACKAGE.glob("scripts/*.zeek"))
TESTS = sorted(PACKAGE.glob("testing/tests/*.zeek"))
BIN = Path(sysconfig.get_path("scripts"))
"""Where pip put zeekscript's zeek-script and zeek-format (and btest)."""


def parsed(path: Path) -> zeekscript.Script:
    script = zeekscript.Script(path)
    assert script.parse(), f"{path.name}: {script.get_error()}"
    return script


def test_the_package_has_its_scripts_and_tests() -> None:
    assert [p.name for p in SCRIPTS] == ["__load__.zeek", "intel.zeek", "main.zeek", "websocket.zeek"]
    assert [p.name for p in TESTS] == ["intel.zeek", "notice.zeek"]
    meta = (PACKAGE / "zkg.meta").read_text()
    assert "script_dir = scripts" in meta
    assert "zeek >=6.0.0" in meta
    assert "test_command = cd testing && btest -c btest.cfg" in meta


@pytest.mark.parametrize("path", SCRIPTS + TESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_parses_without_errors(path: Path) -> None:
    script = parsed(path)
    assert not script.has_error(), script.get_error()


@pytest.mark.parametrize("path", SCRIPTS + TESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_zeek_format_leaves_the_script_unchanged(path: Path) -> None:
    out = io.BytesIO()
    parsed(path).format(out)
    assert out.getvalue().decode() == path.read_text()


def test_the_command_line_tools_agree(tmp_path: Path) -> None:
    """What CI runs: `zeek-script parse` exits 0; `zeek-format` rewrites nothing."""
    parse = subprocess.run(
        [str(BIN / "zeek-script"), "parse", str(PACKAGE / "scripts" / "main.zeek")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert parse.returncode == 0, parse.stderr
    assert "ERROR" not in parse.stdout
    copies = []
    for path in SCRIPTS:
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        copies.append(copy)
    fmt = subprocess.run(
        [str(BIN / "zeek-format"), "-i", *map(str, copies)], capture_output=True, text=True, check=False
    )
    assert fmt.returncode == 0, fmt.stderr
    assert [c.read_text() for c in copies] == [p.read_text() for p in SCRIPTS]


def test_a_broken_script_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zeek"
    # main.zeek without the closing brace of its last event handler
    broken.write_text((PACKAGE / "scripts" / "main.zeek").read_text().rstrip().removesuffix("}"))
    script = zeekscript.Script(broken)
    assert not script.parse() or script.has_error()
    run = subprocess.run([str(BIN / "zeek-script"), "parse", str(broken)], capture_output=True, check=False)
    assert run.returncode != 0


# ------------------------------------------------------------------------ contract


def _text(script: zeekscript.Script, node: Node) -> str:
    return script.source[node.start_byte : node.end_byte].decode()


def _formal_args(script: zeekscript.Script, node: Node) -> tuple[tuple[str, str], ...]:
    """(name, type) of every formal_arg under ``node``, whitespace in types collapsed."""
    args = []
    for arg in _find(node, "formal_arg"):
        name, _, zeek_type = (c for c in arg.children if c.is_named or c.type == ":")
        args.append((_text(script, name), " ".join(_text(script, zeek_type).split())))
    return tuple(args)


def _find(node: Node, kind: str) -> list[Node]:
    found = [node] if node.type == kind else []
    for child in node.children or []:
        found.extend(_find(child, kind))
    return found


def declared_events(path: Path, module: str = "Tunnelhound") -> dict[str, EventSchema]:
    """``global NAME: event(...)`` declarations of a script, as the sidecar writes them."""
    script = parsed(path)
    events = {}
    for decl in _find(script.root, "global_decl"):
        name_node, type_node = decl.children[1], decl.children[3]
        if type_node.children[0].type != "event":
            continue
        name = f"{module}::{_text(script, name_node)}"
        events[name] = EventSchema(name, _formal_args(script, type_node))
    return events


def handled_events(path: Path, module: str = "Tunnelhound") -> dict[str, tuple[tuple[str, str], ...]]:
    """``event NAME(...)`` handler headers of a script (names qualified like the declarations)."""
    script = parsed(path)
    handlers = {}
    for header in _find(script.root, "func_hdr"):
        text = _text(script, header)
        if not text.startswith("event "):
            continue
        name = text.removeprefix("event ").split("(")[0].strip()
        handlers[name if "::" in name else f"{module}::{name}"] = _formal_args(script, header)
    return handlers


def test_the_scripts_declare_exactly_the_sidecars_events() -> None:
    declared = declared_events(PACKAGE / "scripts" / "main.zeek")
    assert declared == EVENTS
    for schema in declared.values():
        assert schema.args[0] == ("version", "count")  # versioned, flat


def test_every_handler_of_our_events_matches_the_declaration() -> None:
    checked = 0
    for path in SCRIPTS + TESTS:
        for name, args in handled_events(path).items():
            if name in EVENTS:
                assert args == EVENTS[name].args, f"{path.name}: {name}"
                checked += 1
    assert checked == 2  # main.zeek and intel.zeek handle Tunnelhound::detection


def test_the_contract_check_notices_a_changed_argument(tmp_path: Path) -> None:
    changed = tmp_path / "main.zeek"
    changed.write_text(
        (PACKAGE / "scripts" / "main.zeek").read_text().replace("severity: count", "severity: int")
    )
    declared = declared_events(changed)
    assert declared != EVENTS
    assert ("severity", "int") in declared["Tunnelhound::detection"].args


# ------------------------------------------------------------------------ btest

ZEEK = shutil.which("zeek")
BTEST = shutil.which("btest") or str(BIN / "btest")


@pytest.mark.skipif(ZEEK is None, reason="NOT RUN: btest notice.log tests need a zeek binary (none on PATH)")
def test_btest_behaviour_tests_pass_with_zeek() -> None:
    run = subprocess.run(
        [BTEST, "-c", "btest.cfg", "-d"],
        cwd=PACKAGE / "testing",
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},  # btest-diff
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all 2 tests successful" in run.stdout + run.stderr
