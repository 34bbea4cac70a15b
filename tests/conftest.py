"""Shared fixtures: paths to the bundled test data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_exporter: runs Debian's softflowd and tshark (installed by scripts/test.sh)"
    )
    config.addinivalue_line(
        "markers", "elasticsearch: talks to a real Elasticsearch node that the test set-up starts"
    )


@pytest.fixture(scope="session", autouse=True)
def _stop_started_elasticsearch() -> Iterator[None]:
    """Nodes a test started are stopped at the end, so no daemon outlives the run."""
    yield
    from es_server import STARTED, stop_elasticsearch

    for port in sorted(STARTED):
        stop_elasticsearch(port)


@pytest.fixture
def data_dir() -> Path:
    """The project's own copy of the corpus (tests/data)."""
    return DATA
