"""The built wheel carries every data file the installed commands read, and the C extension."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = ROOT / "sidecar" / "tunnelhound" / "data"


def test_wheel_contains_all_package_data(tmp_path: Path) -> None:
    # Build isolation on purpose: the wheel is built the way users' pip builds it.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("tunnelhound-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"tunnelhound/data/{p.relative_to(PACKAGE_DATA).as_posix()}"
        for p in PACKAGE_DATA.rglob("*")
        if p.is_file()
    }
    assert expected and expected <= names
    assert "tunnelhound/py.typed" in names
    # The C extension (built by setup.py) and its type stub.
    assert any(n.startswith("tunnelhound/normalize/_kernels.") and n.endswith(".so") for n in names)
    assert "tunnelhound/normalize/_kernels.pyi" in names
