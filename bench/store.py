"""Feature store benchmark: bulk load, switch and lookups on PostgreSQL and SQLite.

    uv run --frozen --no-sync python bench/store.py [--customers 1000000] [--database-url URL]

Without ``--database-url`` it starts a throwaway PostgreSQL server from the binaries on
the machine (the test suite's ``tests/postgres_server.py``; note that server runs with
fsync off). Each backend gets a fresh database; two snapshots are loaded so that the
second switch replaces an active snapshot, as in production. Prints one table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from credit_risk import schemas
from credit_risk.io import arrow_schema
from credit_risk.store.base import FeatureStore
from credit_risk.store.credentials import PostgresConfig
from credit_risk.store.postgres import PostgresFeatureStore
from credit_risk.store.sqlite import SqliteFeatureStore

AS_OF = date(2024, 6, 1)
TARGETS = {"load_s": 15.0, "point_p99_ms": 1.0, "swap_ms": 100.0}  # PostgreSQL, this machine


def snapshot(n: int, version: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed + version)
    nulls = rng.random(n) < 0.15
    return pa.table(
        {
            "customer_id": pa.array([f"{i:09d}" for i in range(n)]),
            "age": pa.array(rng.integers(18, 90, n), mask=nulls),
            "years_on_the_job": pa.array(rng.integers(0, 40, n), mask=nulls),
            "nb_previous_loans": pa.array(np.full(n, version, dtype=np.int64)),
            "avg_amount_loans_previous": pa.array(rng.uniform(500, 50_000, n), mask=nulls),
            "flag_own_car": pa.array(rng.integers(0, 2, n)),
            "as_of": pa.array([AS_OF] * n, pa.date32()),
        },
        schema=arrow_schema(schemas.SNAPSHOT_COLUMNS),
    )


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def timed(fn: Callable[[], object], repeat: int) -> list[int]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return samples


def run(store: FeatureStore, tables: list[pa.Table], lookups: int) -> dict[str, float]:
    n = tables[0].num_rows
    store.migrate()
    loads = [store.load_snapshot(t, f"bench-{i}", AS_OF) for i, t in enumerate(tables, 1)]
    rng = np.random.default_rng(1)
    ids = [f"{i:09d}" for i in rng.integers(0, n, lookups)]
    batches = [[f"{i:09d}" for i in rng.integers(0, n, 100)] for _ in range(lookups)]
    for customer in ids[:500]:  # warm-up: connection, prepared statements, cache
        store.get(customer)
    point_iter, batch_iter = iter(ids), iter(batches)
    point = timed(lambda: store.get(next(point_iter)), lookups)
    batch = timed(lambda: store.get_many(next(batch_iter)), lookups)
    assert store.get(ids[0]).snapshot_id == loads[-1].snapshot_id
    rollback = timed(lambda: store.rollback(loads[0].snapshot_id), 1)[0]
    p50, p99 = percentiles(point)
    b50, b99 = percentiles(batch)
    return {
        "rows": n,
        "load_s": loads[-1].load_seconds,
        "swap_ms": loads[-1].swap_seconds * 1000,
        "first_load_s": loads[0].load_seconds,
        "rollback_ms": rollback / 1e6,
        "point_p50_ms": p50,
        "point_p99_ms": p99,
        "batch_p50_ms": b50,
        "batch_p99_ms": b99,
    }


def postgres_database(base_url: str) -> tuple[str, Callable[[], None]]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    return make_conninfo(**{**conninfo_to_dict(base_url), "dbname": name}), drop


def print_table(results: dict[str, dict[str, float]]) -> None:
    rows = [
        ("customers", "rows", "{:,.0f}"),
        ("load (COPY + key + stats), s", "load_s", "{:.2f}"),
        ("  first load into empty store, s", "first_load_s", "{:.2f}"),
        ("switch (swap), ms", "swap_ms", "{:.1f}"),
        ("rollback (incl. connect), ms", "rollback_ms", "{:.1f}"),
        ("point lookup p50, ms", "point_p50_ms", "{:.3f}"),
        ("point lookup p99, ms", "point_p99_ms", "{:.3f}"),
        ("100-id batch p50, ms", "batch_p50_ms", "{:.3f}"),
        ("100-id batch p99, ms", "batch_p99_ms", "{:.3f}"),
    ]
    backends = list(results)
    print(f"\n{'metric':<34}" + "".join(f"{b:>14}" for b in backends) + f"{'PG target':>12}")
    print("-" * (34 + 14 * len(backends) + 12))
    for label, key, fmt in rows:
        cells = "".join(f"{fmt.format(results[b][key]):>14}" for b in backends)
        target = TARGETS.get(key)
        verdict = ""
        if target is not None and "postgresql" in results:
            ok = results["postgresql"][key] <= target
            verdict = f"<= {target:g} {'ok' if ok else 'MISSED'}"
        print(f"{label:<34}{cells}{verdict:>12}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="an existing PostgreSQL server")
    parser.add_argument(
        "--backends", nargs="+", choices=("postgresql", "sqlite"), default=["postgresql", "sqlite"]
    )
    args = parser.parse_args()

    print(f"building two snapshots of {args.customers:,} customers ...", file=sys.stderr)
    tables = [snapshot(args.customers, version) for version in (1, 2)]
    results: dict[str, dict[str, float]] = {}
    server = None
    try:
        if "postgresql" in args.backends:
            base_url = args.database_url
            if base_url is None:
                # The test suite's throwaway server lives beside bench/ in the repo.
                sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
                from tests.postgres_server import PostgresServer

                server = PostgresServer()
                server.init()
                server.start()
                base_url = server.url
            url, drop = postgres_database(base_url)
            print("postgresql ...", file=sys.stderr)
            store = PostgresFeatureStore(PostgresConfig(url=url))
            try:
                results["postgresql"] = run(store, tables, args.lookups)
            finally:
                store.close()
                drop()
        if "sqlite" in args.backends:
            print("sqlite ...", file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                store = SqliteFeatureStore(Path(tmp) / "bench.sqlite3")
                try:
                    results["sqlite"] = run(store, tables, args.lookups)
                finally:
                    store.close()
    finally:
        if server is not None:
            server.destroy()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
