"""Fixtures shared by the whole suite. Costly ones start on first use only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer

EVENTS_DIR = Path(__file__).parent / "events"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the run; fails loudly when it cannot start."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
    except RuntimeError as exc:
        server.destroy()
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url
