"""A monitored deployment on this machine, for the monitor's tests.

The model is the API tests' (``tests.integration.api.conftest.serving``: trained once
per session, the champion of its registry). Its customers' snapshot goes to the lake
where the feature job would have written it, and into a feature store; scoring
traffic goes through the real ``ScoringService`` (store lookup, model, scoring-log
records) and lands in the scoring log as Firehose delivers it (gzipped JSON lines
under ``date=YYYY-MM-DD/``). Delayed labels are CSV files under ``<lake>/labels/``;
the customers' gender, when a test gives it, is the feature run's audit output.
"""

from __future__ import annotations

import gzip
import io as _io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from credit_risk import io, names, schemas
from credit_risk.monitoring.records import ScoreRecord, partition
from credit_risk.registry import Registry
from credit_risk.serving.service import IdHasher, ScoringService
from credit_risk.settings import Settings
from credit_risk.store import FeatureStore
from tests.integration.api.conftest import MODEL_NAME, Serving

HASH_KEY = "monitor-test-id-hash-key"
SNAPSHOT_ID = "monitor-run-1"
TODAY = datetime.now(UTC).date()
# The snapshot was computed two days ago; the window is the three days up to yesterday.
AS_OF = TODAY - timedelta(days=2)
END = TODAY - timedelta(days=1)
WINDOW_DAYS = 3
DAYS = tuple(END - timedelta(days=n) for n in range(WINDOW_DAYS))


@dataclass
class Served:
    """One score: the customer id (the lender knows it) and the logged record."""

    customer_id: str
    record: ScoreRecord


@dataclass
class World:
    local_dir: Path
    lake: str
    serving: Serving
    snapshot: pa.Table
    hash_id: IdHasher

    def settings(self, **overrides) -> Settings:
        values = {
            "local_dir": self.local_dir,
            "lake_uri": self.lake,
            "registry_uri": self.serving.registry_uri,
            "model_name": MODEL_NAME,
            "monitor_window_days": WINDOW_DAYS,
            "monitor_min_scores": 200,
            "min_labelled": 300,
            "skew_sample_size": 200,
            **overrides,
        }
        return Settings(**values)

    def publish_snapshot(self, table: pa.Table | None = None) -> None:
        """The feature job's serving snapshot of run ``SNAPSHOT_ID``, in the lake."""
        buffer = _io.BytesIO()
        pq.write_table(table if table is not None else self.snapshot, buffer)
        uri = io.join(self.lake, names.CURATED_PREFIX, SNAPSHOT_ID, "snapshot", "part-0.parquet")
        io.write_bytes(uri, buffer.getvalue())

    def publish_audit(self, genders: dict[str, str | None]) -> None:
        """The feature job's audit output of run ``SNAPSHOT_ID``: each customer's gender."""
        table = pa.table(
            {
                "customer_id": list(genders),
                "code_gender": list(genders.values()),
                "as_of": [AS_OF] * len(genders),
            },
            schema=io.arrow_schema(schemas.AUDIT_SNAPSHOT_COLUMNS),
        )
        buffer = _io.BytesIO()
        pq.write_table(table, buffer)
        folder = io.join(self.lake, names.CURATED_PREFIX, SNAPSHOT_ID, names.CURATED_AUDIT_FOLDER)
        io.write_bytes(io.join(folder, "part-0.parquet"), buffer.getvalue())

    def customers(self, where: Callable[[pa.Table], pa.Array] | None = None) -> list[str]:
        table = self.snapshot if where is None else self.snapshot.filter(where(self.snapshot))
        return table.column("customer_id").to_pylist()

    def traffic(
        self, store: FeatureStore, customer_ids: Sequence[str], per_day: int, seed: int = 1
    ) -> list[Served]:
        """``per_day`` scores on each day of the window, customers drawn from
        ``customer_ids``, recorded by the service exactly as the API records them."""
        registry = Registry(self.serving.registry_uri, MODEL_NAME)
        service = ScoringService(model=registry.load(), store=store, hash_id=self.hash_id)
        rng = np.random.default_rng(seed)
        served: list[Served] = []
        for day in DAYS:
            chosen = [customer_ids[i] for i in rng.choice(len(customer_ids), per_day)]
            scored, unknown = service.score_customers(chosen)
            assert not unknown
            for n, item in enumerate(scored):
                at = datetime.combine(day, time(9), UTC) + timedelta(seconds=30 * n)
                (record,) = service.score_records([item], f"req-{day}-{n}", scored_at=at)
                served.append(Served(item.score.customer_id, record))
        return served

    def write_log(self, served: Sequence[Served]) -> None:
        """The records as Firehose delivers them: one gzip file per day."""
        by_day: dict[date, list[str]] = {}
        for item in served:
            by_day.setdefault(item.record.scored_at.date(), []).append(item.record.to_json())
        for day, lines in by_day.items():
            uri = io.join(
                self.lake, names.SCORING_LOG_PREFIX, partition(day), "scoring-log-1-0001.gz"
            )
            io.write_bytes(uri, gzip.compress(("\n".join(lines) + "\n").encode()))

    def write_labels(self, served: Sequence[Served], outcome: Callable[[float], int]) -> None:
        """Outcomes of the scored loans, one per customer and day."""
        rows = {
            (item.customer_id, item.record.scored_at.date()): outcome(
                item.record.default_probability
            )
            for item in served
        }
        lines = ["customer_id,decision_date,status"]
        lines += [f"{cid},{day.isoformat()},{status}" for (cid, day), status in rows.items()]
        uri = io.join(self.lake, names.LABELS_PREFIX, "outcomes-1.csv")
        io.write_bytes(uri, ("\n".join(lines) + "\n").encode())


def dated_snapshot(serving: Serving) -> pa.Table:
    """The API tests' snapshot, as of ``AS_OF``."""
    table = serving.snapshot
    index = table.schema.get_field_index("as_of")
    return table.set_column(index, "as_of", pa.array([AS_OF] * table.num_rows, pa.date32()))


def rounded_amounts(table: pa.Table) -> pa.Table:
    """A changed feature computation: the online load rounds the average amount."""
    index = table.schema.get_field_index("avg_amount_loans_previous")
    rounded = pc.round(table.column("avg_amount_loans_previous"), 0)
    return table.set_column(index, "avg_amount_loans_previous", rounded)


def make_world(local_dir: Path, lake: str, serving: Serving) -> World:
    return World(local_dir, lake, serving, dated_snapshot(serving), IdHasher(HASH_KEY.encode()))
