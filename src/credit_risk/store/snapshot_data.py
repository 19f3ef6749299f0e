"""Checks snapshot rows against the contract before any backend writes them.

Both backends stream record batches through :func:`conform_batches`, so a bad
batch fails the load wherever it sits in the stream, before the switch.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.io import arrow_schema, refuse_non_finite
from credit_risk.store.base import MAX_CUSTOMER_ID_LENGTH, SnapshotData

SNAPSHOT_SCHEMA = arrow_schema(schemas.SNAPSHOT_COLUMNS)
BATCH_ROWS = 65_536


def check_columns(names: list[str]) -> None:
    """The columns must be exactly ``schemas.SNAPSHOT_COLUMNS``, in any order."""
    expected = set(SNAPSHOT_SCHEMA.names)
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in names]
    extra = [name for name in names if name not in expected]
    if missing or extra:
        raise InvalidInputError(
            "snapshot columns do not match the contract: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )


def conform_batch(batch: pa.RecordBatch, as_of: date) -> pa.RecordBatch:
    """``batch`` with the contract's column order and types, or InvalidInputError."""
    check_columns(batch.schema.names)
    columns = []
    for target in SNAPSHOT_SCHEMA:
        column = batch.column(target.name)
        try:
            columns.append(column.cast(target.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInputError(
                f"snapshot column {target.name} ({column.type}) is not {target.type}: {exc}"
            ) from None
    conformed = pa.RecordBatch.from_arrays(columns, schema=SNAPSHOT_SCHEMA)
    # Refused, not stored: scored as is, a NaN would read as a missing value the
    # data never had, and an infinity as a number no model was trained on.
    refuse_non_finite(conformed, "the snapshot (nothing was loaded)")
    _check_customer_ids(conformed.column("customer_id"))
    _check_as_of(conformed.column("as_of"), as_of)
    return conformed


def conform_batches(data: SnapshotData, as_of: date) -> Iterator[pa.RecordBatch]:
    batches = data.to_batches(max_chunksize=BATCH_ROWS) if isinstance(data, pa.Table) else data
    for batch in batches:
        if batch.num_rows:
            yield conform_batch(batch, as_of)


def _check_customer_ids(ids: pa.Array) -> None:
    if ids.null_count:
        raise InvalidInputError(f"{ids.null_count} snapshot rows have no customer_id")
    lengths = pc.utf8_length(ids)
    if pc.any(pc.equal(lengths, 0)).as_py():
        raise InvalidInputError("snapshot has an empty customer_id")
    if pc.max(lengths).as_py() > MAX_CUSTOMER_ID_LENGTH:
        raise InvalidInputError(
            f"snapshot has a customer_id longer than {MAX_CUSTOMER_ID_LENGTH} characters"
        )
    if pc.any(pc.match_substring(ids, "\x00")).as_py():
        raise InvalidInputError("snapshot has a customer_id containing a NUL character")


def _check_as_of(values: pa.Array, as_of: date) -> None:
    if values.null_count:
        raise InvalidInputError(f"{values.null_count} snapshot rows have no as_of")
    wrong = pc.sum(pc.not_equal(values, pa.scalar(as_of, pa.date32()))).as_py()
    if wrong:
        raise InvalidInputError(f"{wrong} snapshot rows are not as of {as_of.isoformat()}")
