"""Loads a serving snapshot (Parquet, a local folder or ``s3://``) into the store.

The feature job writes one snapshot per run; loading it is idempotent per snapshot
id, so a retried Step Functions task whose first attempt did commit reports the
snapshot as already active instead of failing, and one whose first attempt wrote
the snapshot but lost the store before activating it (two transactions) activates
it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from credit_risk import io
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.store.base import (
    FeatureStore,
    LoadResult,
    SnapshotExistsError,
    SnapshotInfo,
    validate_snapshot_id,
)
from credit_risk.store.snapshot_data import check_columns

_S3_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404"}


def read_snapshot(uri: str) -> pa.Table:
    """The snapshot's rows, with its columns checked against ``schemas.SNAPSHOT_COLUMNS``."""
    try:
        table = io.read_parquet(uri)
    except pa.ArrowException as exc:  # not Parquet, or part files that disagree
        raise InvalidInputError(f"cannot read the snapshot at {uri}: {exc}") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _S3_NOT_FOUND:
            raise InvalidInputError(f"no snapshot at {uri}: {code}") from None
        raise ConfigurationError(f"cannot read the snapshot at {uri}: {exc}") from None
    except BotoCoreError as exc:  # no credentials, no route to S3
        raise ConfigurationError(f"cannot read the snapshot at {uri}: {exc}") from None
    check_columns(table.column_names)
    return table


def snapshot_as_of(table: pa.Table) -> date:
    """The one date a snapshot is as of; a snapshot mixing dates is refused."""
    try:
        values = pc.unique(table.column("as_of").cast(pa.date32())).drop_null().to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"snapshot column as_of is not a date: {exc}") from None
    if len(values) != 1:
        shown = ", ".join(sorted(v.isoformat() for v in values)[:5]) or "none"
        raise InvalidInputError(f"a snapshot is as of one date, found {len(values)}: {shown}")
    return values[0]


def default_snapshot_id(as_of: date) -> str:
    """``<as_of>-<load time>``: sorts by date, unique per load."""
    return f"{as_of:%Y%m%d}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def load_snapshot_uri(
    store: FeatureStore,
    uri: str,
    *,
    snapshot_id: str | None = None,
    as_of: date | None = None,
    decision_retention: timedelta | None = None,
) -> LoadResult:
    """Migrates the store if needed, then loads and activates the snapshot at ``uri``;
    with ``decision_retention``, then deletes the decisions recorded longer ago (a
    daily load is what keeps the decision record to its retention)."""
    if snapshot_id is not None:
        validate_snapshot_id(snapshot_id)
    store.migrate()
    earlier = _earlier_load(store, snapshot_id) if snapshot_id is not None else None
    if earlier is not None and earlier.active:
        done = LoadResult(
            snapshot_id=earlier.snapshot_id,
            as_of=earlier.as_of,
            row_count=earlier.row_count,
            previous_snapshot_id=None,
            already_active=True,
        )
        return _purged(store, done, decision_retention)
    table = read_snapshot(uri)
    data_as_of = snapshot_as_of(table)
    if as_of is not None and as_of != data_as_of:
        raise InvalidInputError(
            f"snapshot at {uri} is as of {data_as_of.isoformat()}, not {as_of.isoformat()}"
        )
    if earlier is not None:
        resumed = _switch_to_written(store, earlier, table.num_rows, data_as_of)
        return _purged(store, resumed, decision_retention)
    result = store.load_snapshot(table, snapshot_id or default_snapshot_id(data_as_of), data_as_of)
    return _purged(store, result, decision_retention)


def _purged(
    store: FeatureStore, result: LoadResult, decision_retention: timedelta | None
) -> LoadResult:
    if decision_retention is None:
        return result
    return replace(result, purged_decisions=store.purge_decisions(decision_retention))


def _earlier_load(store: FeatureStore, snapshot_id: str) -> SnapshotInfo | None:
    """What an earlier load of ``snapshot_id`` left: nothing, the active snapshot, or
    one written and never active (the store went away between the write and the
    switch). One active once and replaced since is refused: loading it again must
    not take the store back."""
    earlier = next((info for info in store.snapshots() if info.snapshot_id == snapshot_id), None)
    if earlier is not None and not earlier.active and earlier.activated_at is not None:
        raise SnapshotExistsError(
            f"snapshot {snapshot_id} was loaded before and is not active; "
            f"`credit-risk store rollback {snapshot_id}` activates it again"
        )
    return earlier


def _switch_to_written(
    store: FeatureStore, written: SnapshotInfo, rows: int, as_of: date
) -> LoadResult:
    """The retry of a load that wrote its snapshot and lost the store before the
    switch: the switch, if what was written is this data (its rows and date)."""
    if (written.row_count, written.as_of) != (rows, as_of):
        raise SnapshotExistsError(
            f"snapshot {written.snapshot_id} was written before from other data "
            f"({written.row_count:,} rows as of {written.as_of.isoformat()}, not {rows:,} as "
            f"of {as_of.isoformat()}) and never activated: load this data under another id"
        )
    previous = store.active_snapshot()
    activated = store.rollback(written.snapshot_id)
    return LoadResult(
        snapshot_id=written.snapshot_id,
        as_of=activated.as_of,
        row_count=activated.row_count,
        previous_snapshot_id=previous.snapshot_id if previous is not None else None,
    )
