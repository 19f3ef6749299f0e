"""The feature job end to end: raw loans in, five outputs out.

``run_feature_job`` is what both the ``credit-risk features`` command and the Glue
entrypoint call, with the session each of them owns. Outputs under ``output_uri``:

- ``training/``   Parquet, ``schemas.TRAINING_COLUMNS``, one row per valid loan: the
  features, the audit columns (the loan's gender code, never a feature) and the label
- ``snapshot/``   Parquet, ``schemas.SNAPSHOT_COLUMNS``, one row per customer as of A
- ``audit/``      Parquet, ``schemas.AUDIT_SNAPSHOT_COLUMNS``, one row per customer of
  the snapshot: the gender code of the customer's latest loan before A, same A. Kept
  out of the snapshot so that the feature store never loads it; the monitor joins
  it to served decisions to compare outcomes across groups
- ``quarantine/`` Parquet, the raw columns plus ``reason``
- ``dq_report.json``, written last: its presence means the run completed
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from credit_risk import io, names
from credit_risk.errors import InvalidInputError
from credit_risk.features import quality, transform, validate
from credit_risk.features.spark import list_raw_files, read_raw_files

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RUN_ID = re.compile(names.RUN_ID_PATTERN)


@dataclass(frozen=True)
class FeatureOutputs:
    """Where a run writes, all under one folder (a local path or an S3 prefix)."""

    root: str

    @property
    def training(self) -> str:
        return io.join(self.root, "training")

    @property
    def snapshot(self) -> str:
        return io.join(self.root, "snapshot")

    @property
    def audit(self) -> str:
        return io.join(self.root, names.CURATED_AUDIT_FOLDER)

    @property
    def quarantine(self) -> str:
        return io.join(self.root, "quarantine")

    @property
    def report(self) -> str:
        return io.join(self.root, quality.REPORT_FILE)


def parse_as_of(value: str | date) -> date:
    """The run date: a ``date`` or strict ``YYYY-MM-DD`` text."""
    if isinstance(value, datetime):
        raise InvalidInputError(f"as-of must be a date, not a timestamp: {value!r}")
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"as-of must be a calendar date written YYYY-MM-DD, got {value!r}"
        ) from None


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidInputError(
            f"run id must be 1-63 characters of letters, digits and ._=- "
            f"(starting with a letter or digit), got {run_id!r}"
        )
    return run_id


def new_run_id(as_of: date) -> str:
    """A unique, sortable run id: ``features-<as_of>-<UTC time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"features-{as_of.isoformat()}-{stamp}-{uuid.uuid4().hex[:8]}"


def run_feature_job(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    as_of: str | date,
    run_id: str | None = None,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validates the raw loans under ``input_uri``, writes the five outputs under
    ``output_uri`` and returns the data-quality report (also written there).

    Raises ``InvalidInputError`` for an input that breaks its contract as a whole
    (missing, wrong columns, empty) or a bad ``as_of``/``run_id``; bad *rows* are
    quarantined, not raised.
    """
    say = on_progress or (lambda _message: None)
    as_of = parse_as_of(as_of)
    run_id = check_run_id(run_id or new_run_id(as_of))
    outputs = FeatureOutputs(output_uri.rstrip("/"))
    files = list_raw_files(input_uri)
    say(f"reading {len(files)} raw file(s) from {input_uri}")
    raw = read_raw_files(spark, files)
    # A stale report would tell the quality gate that a half-written run is complete.
    _remove(outputs.report)

    # One shuffle by customer, of the columns the features need, kept for every
    # output; the conflicts are a few rows.
    with _cache_settings(spark):
        prepared = _persist(validate.prepare(raw))
        conflicts = _persist(validate.conflicting_loan_ids(prepared))
    cached = [prepared, conflicts]
    try:
        validated = validate.apply_rules(prepared, conflicts)
        summary = quality.summarize_input(validated)
        if summary["input_rows"] == 0:
            raise InvalidInputError(f"no loan rows in {input_uri}: the input is empty")
        say(
            f"validated {summary['input_rows']:,} rows: {summary['valid_rows']:,} valid, "
            f"{summary['quarantined_rows']:,} quarantined "
            f"({summary['quarantined_fraction']:.2%})"
        )
        few_rejected = summary["quarantined_rows"] <= validate.BROADCAST_REJECTED_ROWS
        # Cached plans serve the identical plans built inside ``quarantine`` and the
        # two snapshots: the input is read once more, the valid rows aggregated once.
        cached.append(_persist(validate.suspects(raw, validated, broadcast=few_rejected)))
        rejected = validate.quarantine(raw, validated, broadcast=few_rejected)
        rejected.write.mode("overwrite").parquet(outputs.quarantine)
        valid = validated.where(validate.is_valid())
        transform.training_features(valid).write.mode("overwrite").parquet(outputs.training)
        say(f"wrote training features to {outputs.training}")
        cached.append(_persist(transform.latest_before(valid, as_of)))
        snapshot = transform.serving_snapshot(valid, as_of)
        snapshot.write.mode("overwrite").parquet(outputs.snapshot)
        say(f"wrote the snapshot as of {as_of} to {outputs.snapshot}")
        transform.audit_snapshot(valid, as_of).write.mode("overwrite").parquet(outputs.audit)
        say(f"wrote the audit columns of the snapshot's customers to {outputs.audit}")
    finally:
        for frame in reversed(cached):
            frame.unpersist()

    # Statistics of what was written, read back: what downstream readers will see.
    training = spark.read.parquet(outputs.training)
    report = quality.build_report(
        run_id=run_id,
        as_of=as_of,
        input_uri=input_uri,
        input_files=files,
        summary=summary,
        training_rows=training.count(),
        snapshot_rows=spark.read.parquet(outputs.snapshot).count(),
        features=quality.feature_stats(training),
        outputs={
            "training": outputs.training,
            "snapshot": outputs.snapshot,
            "audit": outputs.audit,
            "quarantine": outputs.quarantine,
        },
    )
    quality.write_report(outputs.root, report)
    say(f"wrote the data-quality report to {outputs.report}")
    return report


# Caches made inside keep their partitioning by customer visible to the plans that
# read them, so the features and the snapshot reuse it instead of shuffling again
# (since Spark 3.5 adaptive execution may re-partition a cached plan, and readers
# of the cache then plan a fresh shuffle). They are stored uncompressed: the cache
# is read three times within minutes of being built, and compressing its string
# columns cost about a quarter of the job's time at ten times the real extract.
_CACHE_SETTINGS = {
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "false",
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


@contextmanager
def _cache_settings(spark: SparkSession) -> Iterator[None]:
    """``_CACHE_SETTINGS`` for the caches made inside, the session's own after."""
    before = {key: spark.conf.get(key, None) for key in _CACHE_SETTINGS}
    for key, value in _CACHE_SETTINGS.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _persist(frame: DataFrame) -> DataFrame:
    return frame.persist(StorageLevel.MEMORY_AND_DISK)


def _remove(uri: str) -> None:
    if io.is_s3(uri):
        import boto3  # imported here: a local run never pays for it

        bucket, key = io.split_s3(uri)
        boto3.client("s3").delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)
