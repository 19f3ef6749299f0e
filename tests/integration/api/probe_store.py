"""A local store of its own for the probe tests, whose features a test may rewrite
in place: what a writer other than the loader would do, and what the probe must
notice (the same model and snapshot, another answer)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa

from credit_risk.settings import Settings
from credit_risk.store import create_store
from tests.integration.api.conftest import AS_OF, Serving

SNAPSHOT_ID = "probe-tests"


def private_store(local_dir: Path, serving: Serving, holding: str | None = None) -> Path:
    """``local_dir`` with a SQLite store holding the API tests' snapshot; ``holding``:
    a customer id it must hold too (the last customer's row is given that id)."""
    snapshot = serving.snapshot
    ids = snapshot.column("customer_id").to_pylist()
    if holding is not None and holding not in ids:
        ids[-1] = holding
        position = snapshot.schema.get_field_index("customer_id")
        snapshot = snapshot.set_column(
            position, snapshot.schema.field(position), pa.array(ids, pa.string())
        )
    with create_store(Settings(local_dir=local_dir)) as store:
        store.migrate()
        store.load_snapshot(snapshot, SNAPSHOT_ID, AS_OF)
    return local_dir


def rewrite_features(local_dir: Path, customer_id: str) -> None:
    """Changes ``customer_id``'s stored features in the active snapshot's table, behind
    the loader's back: same snapshot id, same as-of date."""
    path = Settings(local_dir=local_dir).sqlite_path
    with sqlite3.connect(path) as conn:
        (table,) = conn.execute(
            "SELECT table_name FROM feature_snapshots WHERE snapshot_id = ?", (SNAPSHOT_ID,)
        ).fetchone()
        changed = conn.execute(
            f'UPDATE "{table}" SET nb_previous_loans = nb_previous_loans + 25, '
            "avg_amount_loans_previous = 50000.0, age = 19, years_on_the_job = 0 "
            "WHERE customer_id = ?",
            (customer_id,),
        ).rowcount
    assert changed == 1, f"customer {customer_id} is not in {table}"
