"""Shared fixtures: paths to the bundled test data."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_exporter: runs Debian's softflowd and tshark (installed by scripts/test.sh)"
    )


@pytest.fixture
def data_dir() -> Path:
    """The project's own copy of the corpus (tests/data)."""
    return DATA
