"""The online feature store: latest features per customer, swapped in atomically.

``get_store()`` returns the store the configuration asks for (PostgreSQL when
``CREDIT_RISK_DATABASE_URL`` or ``CREDIT_RISK_DATABASE_SECRET_ID`` is set, else the
embedded SQLite file under ``.local/``), built once per process so that a warm
Lambda keeps its connection.
"""

from __future__ import annotations

from functools import lru_cache

from credit_risk.settings import Settings
from credit_risk.store.base import (
    CustomerFeatures,
    DecisionRow,
    FeatureStore,
    LoadResult,
    SnapshotExistsError,
    SnapshotInfo,
    SnapshotNotFoundError,
    StoreError,
    StoreHealth,
    StoreNotInitialized,
    StoreUnavailable,
)

__all__ = [
    "CustomerFeatures",
    "DecisionRow",
    "FeatureStore",
    "LoadResult",
    "SnapshotExistsError",
    "SnapshotInfo",
    "SnapshotNotFoundError",
    "StoreError",
    "StoreHealth",
    "StoreNotInitialized",
    "StoreUnavailable",
    "create_store",
    "get_store",
]


def create_store(settings: Settings) -> FeatureStore:
    """A new store for ``settings``; connections open on first use."""
    # Backends are imported here: a local SQLite run never loads psycopg.
    if settings.database_url is not None or settings.database_secret_id:
        from credit_risk.store.credentials import PostgresConfig
        from credit_risk.store.postgres import PostgresFeatureStore

        return PostgresFeatureStore(PostgresConfig.from_settings(settings))
    from credit_risk.store.sqlite import SqliteFeatureStore

    return SqliteFeatureStore(
        settings.sqlite_path, retained_snapshots=settings.store_retained_snapshots
    )


@lru_cache(maxsize=8)
def get_store(settings: Settings | None = None) -> FeatureStore:
    """The process-wide store for ``settings`` (default: read from the environment)."""
    return create_store(settings if settings is not None else Settings())
