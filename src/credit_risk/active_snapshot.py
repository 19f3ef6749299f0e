"""The active-snapshot pointer: which serving snapshot the feature store serves.

Each load by the pipeline (the feature-loader function, ``credit-risk pipeline run``)
writes it to ``<lake>/serving/active-snapshot.json``, beside the curated data: S3
replicates it with the snapshot it names, and a failover (``credit_risk.dr``) loads
that same snapshot, once every file the pointer lists has arrived. Each load also
keeps its pointer under ``serving/snapshots/<snapshot id>.json``, from which
``credit-risk store rollback`` points the lake back at the snapshot it re-activates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from credit_risk import io, names
from credit_risk.errors import (
    ConfigurationError,
    CreditRiskError,
    InvalidInputError,
    validation_problems,
)
from credit_risk.store.base import SNAPSHOT_ID_PATTERN, LoadResult


class ActiveSnapshot(BaseModel):
    """The snapshot the store serves, as its last load recorded it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    snapshot_uri: str = Field(min_length=1)
    snapshot_id: str = Field(pattern=SNAPSHOT_ID_PATTERN.pattern)
    as_of: date
    row_count: int = Field(ge=0)
    loaded_at: AwareDatetime
    # The snapshot's Parquet files, relative to it: S3 replicates objects one by one
    # and in no order, so a failover loads it only once every one is there.
    files: tuple[str, ...] = Field(min_length=1)

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


class PointerNotRecorded(CreditRiskError):  # noqa: N818 - the name the state machine retries
    """The store serves a snapshot whose pointer could not be written: a retry of the
    load (a no-op for the store) writes it."""


def active_snapshot_uri(lake: str) -> str:
    return io.join(lake, names.ACTIVE_SNAPSHOT_KEY)


def snapshot_pointer_uri(lake: str, snapshot_id: str) -> str:
    return io.join(lake, names.SNAPSHOT_POINTERS_PREFIX, f"{snapshot_id}.json")


def record_active_snapshot(
    lake: str, snapshot_uri: str, result: LoadResult, *, now: datetime | None = None
) -> ActiveSnapshot:
    """Records that the store serves ``result``'s snapshot, read from ``snapshot_uri``.

    Written after every successful load, a retried one (already active) too: a load
    whose store switch committed but whose pointer write failed (PointerNotRecorded)
    is completed by its retry."""
    folder = snapshot_uri.rstrip("/")
    pointer = ActiveSnapshot(
        snapshot_uri=snapshot_uri,
        snapshot_id=result.snapshot_id,
        as_of=result.as_of,
        row_count=result.row_count,
        loaded_at=(now or datetime.now(UTC)).replace(microsecond=0),
        files=tuple(
            uri[len(folder) :].lstrip("/") or uri.rsplit("/", 1)[-1]
            for uri in io.list_files(snapshot_uri, suffix=".parquet")
        ),
    )
    data = pointer.to_json()
    with _pointing(lake, result.snapshot_id):
        # The snapshot's own record first: the active pointer is what a failover reads.
        io.write_bytes(snapshot_pointer_uri(lake, result.snapshot_id), data)
        io.write_bytes(active_snapshot_uri(lake), data)
    return pointer


def repoint_active_snapshot(lake: str, snapshot_id: str) -> ActiveSnapshot | None:
    """Points the lake back at ``snapshot_id``, re-activated in the store (a rollback),
    from the record its load kept; None when there is none (a load from a shell, or
    one made before the records were kept)."""
    with _pointing(lake, snapshot_id):
        record = snapshot_pointer_uri(lake, snapshot_id)
        data = io.read_bytes_if_exists(record)
        if data is None:
            return None
        pointer = parse_active_snapshot(data, record)
        io.write_bytes(active_snapshot_uri(lake), data)
    return pointer


@contextmanager
def _pointing(lake: str, snapshot_id: str) -> Iterator[None]:
    try:
        yield
    except (OSError, BotoCoreError, ClientError) as exc:
        raise PointerNotRecorded(
            f"snapshot {snapshot_id} is active in the store, but the pointer to it could "
            f"not be written to {lake}: {exc}"
        ) from None


def parse_active_snapshot(data: bytes, where: str) -> ActiveSnapshot:
    """The pointer in ``data``; InvalidInputError when it is not one."""
    try:
        return ActiveSnapshot.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{where} is not an active-snapshot pointer ({validation_problems(exc)})"
        ) from None


def read_active_snapshot(lake: str) -> ActiveSnapshot:
    """The pointer of ``lake``; ConfigurationError when there is none."""
    uri = active_snapshot_uri(lake)
    data = io.read_bytes_if_exists(uri)
    if data is None:
        raise no_pointer(uri)
    return parse_active_snapshot(data, uri)


def no_pointer(uri: str) -> ConfigurationError:
    return ConfigurationError(
        f"no active-snapshot pointer at {uri}: no pipeline run has loaded this "
        "deployment's store yet, or S3 replication has not copied it here"
    )


def relocate_snapshot_uri(uri: str, bucket: str) -> str:
    """``uri`` in ``bucket``: where the replica of a snapshot is in the other region
    (replication keeps keys, only the bucket differs)."""
    if not io.is_s3(uri):
        raise InvalidInputError(
            f"the active snapshot {uri} is not in S3: only a snapshot in the lake's "
            "curated bucket is replicated to another region"
        )
    _, key = io.split_s3(uri)
    if not key.strip("/"):
        raise InvalidInputError(f"the active snapshot {uri} names a bucket, not a folder")
    return f"s3://{bucket}/{key}"
