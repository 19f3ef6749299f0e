"""The store under test: every contract test runs once per backend, each on a fresh database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from credit_risk.store.base import FeatureStore
from credit_risk.store.credentials import PostgresConfig
from credit_risk.store.postgres import PostgresFeatureStore
from credit_risk.store.sqlite import SqliteFeatureStore


@dataclass
class StoreTarget:
    """One empty database and a way to open stores on it (one per simulated process)."""

    kind: str
    new_store: Callable[..., FeatureStore]
    snapshot_tables: Callable[[], list[str]]


def fresh_postgres_database(postgres_url: str) -> tuple[str, Callable[[], None]]:
    """A new database on the test server: its URL and a function dropping it."""
    name = f"store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(postgres_url)
    params["dbname"] = name

    def drop() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return make_conninfo(**params), drop


def _postgres_target(postgres_url: str) -> Iterator[StoreTarget]:
    url, drop = fresh_postgres_database(postgres_url)

    def new_store(retained_snapshots: int = 2) -> FeatureStore:
        config = PostgresConfig(url=url, connect_timeout=2, retained_snapshots=retained_snapshots)
        return PostgresFeatureStore(config)

    def snapshot_tables() -> list[str]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'customer\\_features\\_%'"
            ).fetchall()
        return sorted(row[0] for row in rows)

    try:
        yield StoreTarget("postgresql", new_store, snapshot_tables)
    finally:
        drop()


def _sqlite_target(path: Path) -> Iterator[StoreTarget]:
    import sqlite3

    def new_store(retained_snapshots: int = 2) -> FeatureStore:
        return SqliteFeatureStore(path, retained_snapshots=retained_snapshots)

    def snapshot_tables() -> list[str]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name LIKE 'customer\\_features\\_%' ESCAPE '\\'"
            ).fetchall()
        return sorted(row[0] for row in rows)

    yield StoreTarget("sqlite", new_store, snapshot_tables)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """An empty, unmigrated database of each backend."""
    if request.param == "postgresql":
        yield from _postgres_target(request.getfixturevalue("postgres_url"))
    else:
        yield from _sqlite_target(tmp_path / "features.sqlite3")


@pytest.fixture
def store(target: StoreTarget) -> Iterator[FeatureStore]:
    """A migrated, empty store."""
    store = target.new_store()
    store.migrate()
    yield store
    store.close()
