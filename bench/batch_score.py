"""Batch-scoring benchmark: a whole snapshot scored from PostgreSQL into Parquet.

    .tools/bin/uv run --frozen --no-sync python bench/batch_score.py
        [--customers 100000,1000000] [--partitions 1] [--chunk-rows 10000]
        [--database-url URL]

Without ``--database-url`` it starts a throwaway PostgreSQL server from the binaries on
the machine (the test suite's, as ``bench/store.py`` does; fsync off) and loads
``bench/store.py``'s synthetic snapshot of each size into a fresh database. A model is
trained once on the generator's synthetic training features (the API tests' size).
Each size is scored by ``credit_risk.batch_scoring.run_batch`` (what ``credit-risk
batch-score`` runs) in a child process of its own, so that its peak RSS (``os.wait4``)
is the scoring's alone: constant memory shows as the same peak at every size.
Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # bench.store and the suite's server live here

from bench.store import AS_OF, postgres_database, snapshot  # noqa: E402

MODEL = "credit-risk"
TRAINING_LOANS = 25_000


def train(registry: str) -> str:
    """A champion trained on synthetic features (its gate may not pass at this size)."""
    import pyarrow.parquet as pq

    from credit_risk.model.pipeline import run_training
    from credit_risk.model.synthetic import training_features
    from credit_risk.registry import Registry

    features = Path(registry).parent / "features"
    features.mkdir(parents=True)
    training, _ = training_features(TRAINING_LOANS, seed=11)
    pq.write_table(training, features / "part-0.parquet")
    result = run_training(str(features), registry, MODEL)
    Registry(registry, MODEL).promote(result.version, force=True)
    return result.version


def child(arguments: dict) -> None:
    """Scores one snapshot in this process and prints the summary."""
    from credit_risk.batch_scoring import run_batch
    from credit_risk.registry import Registry
    from credit_risk.store.credentials import PostgresConfig
    from credit_risk.store.postgres import PostgresFeatureStore

    with PostgresFeatureStore(PostgresConfig(url=arguments["url"])) as store:
        summary = run_batch(
            store,
            Registry(arguments["registry"], MODEL),
            output=arguments["output"],
            run_id="bench",
            partitions=arguments["partitions"],
            chunk_rows=arguments["chunk_rows"],
        )
    print(json.dumps(summary))


def score_in_child(arguments: dict) -> tuple[dict, float, float]:
    """(summary, wall seconds, peak RSS in MB) of one scoring in a fresh process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(arguments)], stdout=out
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"scoring failed with exit code {process.returncode}")
        out.seek(0)
        summary = json.loads(out.read().strip().splitlines()[-1])
    return summary, wall, usage.ru_maxrss / 1024


def parquet_mb(folder: str) -> float:
    return sum(p.stat().st_size for p in Path(folder).glob("part-*.parquet")) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="100000,1000000", help="sizes, comma-separated")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="an existing PostgreSQL server")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0

    from credit_risk.store.credentials import PostgresConfig
    from credit_risk.store.postgres import PostgresFeatureStore

    sizes = [int(size.replace("_", "")) for size in args.customers.split(",")]
    server = None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            base_url = args.database_url
            if base_url is None:
                from tests.postgres_server import PostgresServer

                server = PostgresServer()
                server.init()
                server.start()
                base_url = server.url
            print("training a model ...", file=sys.stderr)
            registry = str(Path(tmp) / "registry")
            version = train(registry)
            for n in sizes:
                url, drop = postgres_database(base_url)
                try:
                    print(f"loading {n:,} customers ...", file=sys.stderr)
                    with PostgresFeatureStore(PostgresConfig(url=url)) as store:
                        store.migrate()
                        store.load_snapshot(snapshot(n, 1), f"bench-{n}", AS_OF)
                    print(f"scoring {n:,} customers ...", file=sys.stderr)
                    output = str(Path(tmp) / f"scores-{n}")
                    summary, wall, peak_mb = score_in_child(
                        {
                            "url": url,
                            "registry": registry,
                            "output": output,
                            "partitions": args.partitions,
                            "chunk_rows": args.chunk_rows,
                        }
                    )
                    rows.append((n, summary, wall, peak_mb, parquet_mb(output)))
                finally:
                    drop()
        finally:
            if server is not None:
                server.destroy()

    print(
        f"\nmodel {version}, {args.partitions} partition(s), pages of {args.chunk_rows:,} "
        "customers, PostgreSQL on loopback"
    )
    header = ("customers", "process s", "scoring s", "rows/s", "peak RSS MB", "Parquet MB")
    print("".join(f"{h:>14}" for h in header))
    for n, summary, wall, peak_mb, size_mb in rows:
        cells = (
            f"{n:,}",
            f"{wall:.1f}",
            f"{summary['scoring_seconds']:.1f}",
            f"{summary['customers_per_second']:,.0f}",
            f"{peak_mb:.0f}",
            f"{size_mb:.1f}",
        )
        print("".join(f"{c:>14}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
