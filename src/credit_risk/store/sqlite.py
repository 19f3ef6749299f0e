"""SQLite feature store: the embedded local default, standard library only.

The database runs in WAL mode, so readers keep seeing the last committed state
while a load writes. A load first stages the snapshot's rows in a temporary table
of its own connection (SQLite's temporary database: in memory up to its cache, then
a file already deleted, in SQLITE_TMPDIR, TMPDIR or /var/tmp): checking and writing
them takes no lock on the store, whose one write lock every decision the API
records needs. One short transaction then copies them into a new ``WITHOUT ROWID``
table (the primary key is the table): for a million customers, 2.5-3.5 s of staging
and 0.2 s under the lock, where writing the rows in the transaction held it 2.5-3 s.
The switch re-points the ``customer_features`` view in another. Each thread reads
through a connection of its own; loads, swaps and migrations open one for
themselves.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.store.base import (
    DEFAULT_RETAINED_SNAPSHOTS,
    LOGICAL_TABLE,
    READ_COLUMNS,
    CustomerFeatures,
    DecisionRow,
    FeatureStore,
    LoadResult,
    SnapshotData,
    SnapshotExistsError,
    SnapshotInfo,
    SnapshotNotFoundError,
    StoreError,
    StoreHealth,
    StoreNotInitialized,
    StoreUnavailable,
    is_storable_id,
    range_size,
    storable_ids,
    validate_page_limit,
    validate_snapshot_id,
)
from credit_risk.store.migrations import migrations
from credit_risk.store.snapshot_data import conform_batches

log = logging.getLogger(__name__)
T = TypeVar("T")

_SQLITE_TYPES = {
    schemas.STRING: "TEXT",
    schemas.INT64: "INTEGER",
    schemas.FLOAT64: "REAL",
    schemas.DATE: "TEXT",
}
_NOT_NULL = {"customer_id", "as_of"}
_SNAPSHOT_NAMES = [name for name, _ in schemas.SNAPSHOT_COLUMNS]
_AS_OF_INDEX = _SNAPSHOT_NAMES.index("as_of")


def _ident(name: str) -> str:
    """A quoted SQLite identifier (the names are ours, but quote them all the same)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Identifiers are ours and quoted; values are always bound parameters.
_SELECT = f"SELECT {', '.join(map(_ident, READ_COLUMNS))} FROM {_ident(LOGICAL_TABLE)}"  # noqa: S608
_GET = _SELECT + " WHERE customer_id = ?"
_SAMPLE_IDS = f"SELECT customer_id FROM {_ident(LOGICAL_TABLE)} ORDER BY customer_id LIMIT ?"  # noqa: S608
_GET_MANY = _SELECT + " WHERE customer_id IN (SELECT value FROM json_each(?))"  # noqa: S608
_SNAPSHOT_TABLE = "SELECT table_name, row_count FROM feature_snapshots WHERE snapshot_id = ?"
_HEALTH = (
    "SELECT (SELECT max(version) FROM schema_migrations), "
    "(SELECT active_snapshot_id FROM feature_store_state)"
)
_INSERT_DECISION = (
    "INSERT INTO decisions (decision_id, decided_at, customer_id, model_version, "
    "synthetic, record) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO NOTHING"
)
_DECISION = "SELECT record FROM decisions WHERE decision_id = ?"
_CUSTOMER_DECISIONS = (
    "SELECT record FROM decisions WHERE customer_id = ? AND (? OR NOT synthetic) "
    "ORDER BY decided_at DESC, decision_id DESC LIMIT ?"
)
_DECISIONS_AFTER = (
    "SELECT decision_id, decided_at, customer_id, model_version, synthetic, record "
    "FROM decisions WHERE decision_id > ? ORDER BY decision_id LIMIT ?"
)
_DELETE_DECISIONS = (
    "DELETE FROM decisions WHERE decision_id IN (SELECT decision_id FROM decisions "
    "WHERE decision_id < ? ORDER BY decision_id LIMIT ?)"
)
_SNAPSHOTS = """
SELECT s.snapshot_id, s.as_of, s.row_count, s.loaded_at, s.activated_at,
       coalesce(s.snapshot_id = st.active_snapshot_id, 0)
FROM feature_snapshots AS s CROSS JOIN feature_store_state AS st
"""


def _now() -> str:
    return _utc_text(datetime.now(UTC))


def _utc_text(moment: datetime) -> str:
    """A time as ISO-8601 text in UTC to the microsecond: one width, so text order is
    time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _features(row: tuple) -> CustomerFeatures:
    return CustomerFeatures(*row[:6], date.fromisoformat(row[6]), row[7])


def _snapshot_table(conn: sqlite3.Connection, snapshot_id: str) -> tuple[str, int]:
    """The table of a retained snapshot and its row count."""
    row = conn.execute(_SNAPSHOT_TABLE, (validate_snapshot_id(snapshot_id),)).fetchone()
    if row is None:
        raise SnapshotNotFoundError(f"no retained snapshot {snapshot_id}")
    return row[0], row[1]


def _snapshot(row: tuple) -> SnapshotInfo:
    snapshot_id, as_of, row_count, loaded_at, activated_at, active = row
    return SnapshotInfo(
        snapshot_id=snapshot_id,
        as_of=date.fromisoformat(as_of),
        row_count=row_count,
        loaded_at=datetime.fromisoformat(loaded_at),
        activated_at=datetime.fromisoformat(activated_at) if activated_at else None,
        active=bool(active),
    )


def _statements(script: str) -> Iterator[str]:
    """Splits a migration script into statements (comment lines dropped)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")


def _translate(exc: sqlite3.Error, path: Path) -> Exception:
    if isinstance(exc, sqlite3.OperationalError):
        if "no such table" in str(exc):
            return StoreNotInitialized(
                f"feature store schema is missing in {path}: run `credit-risk store migrate`"
            )
        # Locked past the busy timeout, disk or I/O errors: worth retrying later.
        return StoreUnavailable(f"feature store {path} failed: {exc}")
    return StoreError(f"feature store {path} failed: {exc}")


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: two writers never deadlock upgrading.
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# The rows of the snapshot being loaded, in the loading connection's temporary
# database: no other connection sees them, and they go when it closes (or once
# copied).
_STAGED = "temp.staged_snapshot"


def _check_new(conn: sqlite3.Connection, snapshot_id: str) -> None:
    known = "SELECT 1 FROM feature_snapshots WHERE snapshot_id = ?"
    if conn.execute(known, (snapshot_id,)).fetchone():
        raise SnapshotExistsError(f"snapshot {snapshot_id} was already loaded")


def _snapshot_table_sql(table: str) -> str:
    columns = ", ".join(
        f"{_ident(name)} {_SQLITE_TYPES[kind]}{' NOT NULL' if name in _NOT_NULL else ''}"
        for name, kind in schemas.SNAPSHOT_COLUMNS
    )
    return f"CREATE TABLE {table} ({columns}, PRIMARY KEY (customer_id)) WITHOUT ROWID"


def _stage_rows(conn: sqlite3.Connection, data: SnapshotData, as_of: date) -> int:
    """Checks and writes the snapshot's rows into ``_STAGED``; how many there are.
    A deferred transaction that writes the temporary database only: the store's
    write lock stays free for the API's decisions while this runs."""
    conn.execute(f"DROP TABLE IF EXISTS {_STAGED}")
    conn.execute(_snapshot_table_sql(_STAGED))
    placeholders = ", ".join("?" for _ in _SNAPSHOT_NAMES)
    insert = f"INSERT INTO {_STAGED} VALUES ({placeholders})"  # noqa: S608
    row_count = 0
    try:
        # Deferred: it never takes the store's write lock, writing temp only.
        with _transaction(conn, "BEGIN"):
            for batch in conform_batches(data, as_of):
                columns_data = [column.to_pylist() for column in batch.columns]
                # Every row's as_of equals as_of (checked); dates are ISO text here.
                columns_data[_AS_OF_INDEX] = [as_of.isoformat()] * batch.num_rows
                conn.executemany(insert, zip(*columns_data, strict=True))
                row_count += batch.num_rows
    except sqlite3.IntegrityError:
        raise InvalidInputError("snapshot has duplicate customer_id values") from None
    except sqlite3.OperationalError as exc:  # full, or failing: not the store
        raise StoreError(
            "could not stage the snapshot in SQLite's temporary storage (memory, then "
            f"SQLITE_TMPDIR, TMPDIR or /var/tmp): {exc}"
        ) from exc
    if row_count == 0:
        raise InvalidInputError("snapshot has no rows")
    return row_count


class SqliteFeatureStore(FeatureStore):
    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        retained_snapshots: int = DEFAULT_RETAINED_SNAPSHOTS,
        busy_timeout_seconds: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.retained_snapshots = retained_snapshots
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # --- connections ---------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_seconds,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # used by one thread, closed by any
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open feature store {self.path}: {exc}") from exc
        return conn

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
            with self._readers_lock:
                self._readers.append(conn)
        try:
            return work(conn)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    @contextmanager
    def _admin(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        finally:
            conn.close()

    # --- reads ---------------------------------------------------------------
    def get(self, customer_id: str) -> CustomerFeatures | None:
        if not is_storable_id(customer_id):
            return None
        # fetchall, not fetchone: an exhausted statement is reset at once, so the
        # connection holds no read transaction (and no old snapshot) between calls.
        rows = self._read(lambda c: c.execute(_GET, (customer_id,)).fetchall())
        return _features(rows[0]) if rows else None

    def get_many(self, customer_ids: Sequence[str]) -> dict[str, CustomerFeatures]:
        ids = storable_ids(customer_ids)
        if not ids:
            return {}
        # One statement and one parameter whatever the batch size.
        rows = self._read(lambda c: c.execute(_GET_MANY, (json.dumps(ids),)).fetchall())
        return {row[0]: _features(row) for row in rows}

    def customer_ids(self, limit: int = 10) -> list[str]:
        rows = self._read(lambda c: c.execute(_SAMPLE_IDS, (limit,)).fetchall())
        return [row[0] for row in rows]

    def snapshot_page(
        self, snapshot_id: str, *, after: str | None, through: str | None, limit: int
    ) -> list[CustomerFeatures]:
        validate_page_limit(limit)
        conditions = [
            (condition, value)
            for condition, value in (("customer_id > ?", after), ("customer_id <= ?", through))
            if value is not None
        ]
        where = " WHERE " + " AND ".join(c for c, _ in conditions) if conditions else ""
        columns = ", ".join(map(_ident, _SNAPSHOT_NAMES))

        def page(conn: sqlite3.Connection) -> list[tuple]:
            table, _ = _snapshot_table(conn, snapshot_id)
            query = (
                f"SELECT {columns}, ? FROM {_ident(table)}{where} "  # noqa: S608
                "ORDER BY customer_id LIMIT ?"
            )
            return conn.execute(query, (snapshot_id, *(v for _, v in conditions), limit)).fetchall()

        return [_features(row) for row in self._read(page)]

    def snapshot_bounds(self, snapshot_id: str, parts: int) -> list[str]:
        def bounds(conn: sqlite3.Connection) -> list[tuple]:
            table, row_count = _snapshot_table(conn, snapshot_id)
            size = range_size(row_count, parts)
            if size >= row_count:
                return []
            # One pass over the primary key: the last id of every range but the last.
            query = (
                "SELECT customer_id FROM (SELECT customer_id, row_number() OVER "  # noqa: S608
                f"(ORDER BY customer_id) AS n FROM {_ident(table)}) "
                "WHERE n % ? = 0 AND n < ? ORDER BY customer_id"
            )
            return conn.execute(query, (size, row_count)).fetchall()

        return [row[0] for row in self._read(bounds)]

    def active_snapshot(self) -> SnapshotInfo | None:
        query = _SNAPSHOTS + " WHERE s.snapshot_id = st.active_snapshot_id"
        rows = self._read(lambda c: c.execute(query).fetchall())
        return _snapshot(rows[0]) if rows else None

    def snapshots(self) -> list[SnapshotInfo]:
        query = _SNAPSHOTS + " ORDER BY s.loaded_at DESC, s.snapshot_id DESC"
        return [_snapshot(row) for row in self._read(lambda c: c.execute(query).fetchall())]

    def health(self) -> StoreHealth:
        started = time.perf_counter()
        try:
            ((version, active),) = self._read(lambda c: c.execute(_HEALTH).fetchall())
        except StoreUnavailable as exc:
            return StoreHealth(ok=False, backend=self.backend, error=str(exc))
        return StoreHealth(
            ok=active is not None,
            backend=self.backend,
            schema_version=version,
            active_snapshot_id=active,
            latency_ms=(time.perf_counter() - started) * 1000,
            error=None if active else "no snapshot loaded",
        )

    # --- decisions -------------------------------------------------------------
    def _insert_decisions(self, rows: Sequence[DecisionRow]) -> int:
        values = [
            (
                row.decision_id,
                _utc_text(row.decided_at),
                row.customer_id,
                row.model_version,
                row.synthetic,
                row.document,
            )
            for row in rows
        ]

        def insert(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                # Summed over the rows, a skipped id not counted.
                return conn.executemany(_INSERT_DECISION, values).rowcount

        return self._read(insert)

    def _decision_document(self, decision_id: str) -> str | None:
        rows = self._read(lambda c: c.execute(_DECISION, (decision_id,)).fetchall())
        return rows[0][0] if rows else None

    def _customer_decisions(
        self, customer_id: str, limit: int, include_synthetic: bool
    ) -> list[str]:
        params = (customer_id, include_synthetic, limit)
        rows = self._read(lambda c: c.execute(_CUSTOMER_DECISIONS, params).fetchall())
        return [row[0] for row in rows]

    def _decisions_after(self, after_id: str, limit: int) -> list[DecisionRow]:
        rows = self._read(lambda c: c.execute(_DECISIONS_AFTER, (after_id, limit)).fetchall())
        return [
            DecisionRow(
                decision_id,
                datetime.fromisoformat(decided_at),
                customer_id,
                model_version,
                record,
                synthetic=bool(synthetic),
            )
            for decision_id, decided_at, customer_id, model_version, synthetic, record in rows
        ]

    def _delete_decisions(self, before_id: str, limit: int) -> int:
        with self._admin() as conn, _transaction(conn):
            return conn.execute(_DELETE_DECISIONS, (before_id, limit)).rowcount

    # --- writes --------------------------------------------------------------
    def migrate(self) -> list[int]:
        applied_now = []
        with self._admin() as conn, _transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations("sqlite"):
                if migration.version in done:
                    continue
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _now()),
                )
                applied_now.append(migration.version)
        return applied_now

    def load_snapshot(self, data: SnapshotData, snapshot_id: str, as_of: date) -> LoadResult:
        validate_snapshot_id(snapshot_id)
        started = time.perf_counter()
        with self._admin() as conn:
            # Refused before the rows are written (and checked again as they are kept).
            _check_new(conn, snapshot_id)
            # A big page cache keeps inserts in key order cheap on a large table.
            conn.execute("PRAGMA cache_size=-131072")
            conn.execute("PRAGMA temp.cache_size=-131072")
            row_count = _stage_rows(conn, data, as_of)
            with _transaction(conn):
                self._write_snapshot(conn, snapshot_id, as_of, row_count)
            conn.execute(f"DROP TABLE {_STAGED}")
            loaded = time.perf_counter()
            with _transaction(conn):
                previous = self._activate(conn, snapshot_id)
            swapped = time.perf_counter()
            dropped = self._apply_retention(conn, snapshot_id)
        return LoadResult(
            snapshot_id=snapshot_id,
            as_of=as_of,
            row_count=row_count,
            previous_snapshot_id=previous,
            dropped_snapshot_ids=dropped,
            load_seconds=loaded - started,
            swap_seconds=swapped - loaded,
        )

    def rollback(self, snapshot_id: str) -> SnapshotInfo:
        validate_snapshot_id(snapshot_id)
        with self._admin() as conn, _transaction(conn):
            self._activate(conn, snapshot_id)
        active = self.active_snapshot()
        assert active is not None
        return active

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._local = threading.local()

    def _write_snapshot(
        self, conn: sqlite3.Connection, snapshot_id: str, as_of: date, row_count: int
    ) -> None:
        """Creates the snapshot's table from the staged rows and records it; runs
        inside the caller's transaction."""
        _check_new(conn, snapshot_id)
        (seq,) = conn.execute("SELECT next_table_seq FROM feature_store_state").fetchone()
        conn.execute("UPDATE feature_store_state SET next_table_seq = next_table_seq + 1")
        table_name = f"{LOGICAL_TABLE}_{seq:06d}"
        conn.execute(_snapshot_table_sql(f"main.{_ident(table_name)}"))
        # Both tables are in key order: a copy page by page.
        conn.execute(
            f"INSERT INTO main.{_ident(table_name)} SELECT * FROM {_STAGED}"  # noqa: S608
        )
        conn.execute(
            "INSERT INTO feature_snapshots (snapshot_id, table_name, as_of, row_count, loaded_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (snapshot_id, table_name, as_of.isoformat(), row_count, _now()),
        )

    def _activate(self, conn: sqlite3.Connection, snapshot_id: str) -> str | None:
        (previous,) = conn.execute("SELECT active_snapshot_id FROM feature_store_state").fetchone()
        target = conn.execute(
            "SELECT table_name FROM feature_snapshots WHERE snapshot_id = ?", (snapshot_id,)
        ).fetchone()
        if target is None:
            raise SnapshotNotFoundError(f"no retained snapshot {snapshot_id}")
        # DDL cannot take parameters; the id matched SNAPSHOT_ID_PATTERN and is quoted.
        columns = ", ".join(map(_ident, _SNAPSHOT_NAMES))
        conn.execute(f"DROP VIEW IF EXISTS {_ident(LOGICAL_TABLE)}")
        conn.execute(
            f"CREATE VIEW {_ident(LOGICAL_TABLE)} AS SELECT {columns}, "  # noqa: S608
            f"{_literal(snapshot_id)} AS snapshot_id FROM {_ident(target[0])}"
        )
        now = _now()
        conn.execute(
            "UPDATE feature_store_state SET active_snapshot_id = ?, updated_at = ?",
            (snapshot_id, now),
        )
        conn.execute(
            "UPDATE feature_snapshots SET activated_at = ? WHERE snapshot_id = ?",
            (now, snapshot_id),
        )
        return previous

    def _apply_retention(self, conn: sqlite3.Connection, active_id: str) -> tuple[str, ...]:
        """Drops snapshots beyond the newest ``retained_snapshots`` besides the active one."""
        try:
            with _transaction(conn):
                stale = conn.execute(
                    "SELECT snapshot_id, table_name FROM feature_snapshots "
                    "WHERE snapshot_id <> ? "
                    "ORDER BY activated_at DESC NULLS LAST, loaded_at DESC LIMIT -1 OFFSET ?",
                    (active_id, self.retained_snapshots),
                ).fetchall()
                for snapshot_id, table_name in stale:
                    conn.execute(f"DROP TABLE IF EXISTS {_ident(table_name)}")
                    conn.execute(
                        "DELETE FROM feature_snapshots WHERE snapshot_id = ?", (snapshot_id,)
                    )
        except sqlite3.Error as exc:
            log.warning("could not drop old snapshots, next load retries: %s", exc)
            return ()
        return tuple(snapshot_id for snapshot_id, _ in stale)
