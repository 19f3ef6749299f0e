"""Data for the store tests: snapshot tables built directly in ``schemas.SNAPSHOT_COLUMNS``
form, and decision rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from credit_risk import decision_ids, schemas
from credit_risk.io import arrow_schema
from credit_risk.store import DecisionRow

SNAPSHOT_SCHEMA = arrow_schema(schemas.SNAPSHOT_COLUMNS)
AS_OF = date(2024, 6, 1)


def customer_id(i: int) -> str:
    """Text ids with leading zeros, as the source system writes some of them."""
    return f"{i:08d}"


def snapshot_table(n: int, *, version: int = 1, as_of: date = AS_OF, start: int = 0) -> pa.Table:
    """``n`` customers whose ``nb_previous_loans`` is ``version``, so a reader can tell
    snapshots apart; every seventh customer has null age, years and average."""
    ids = range(start, start + n)
    gaps = [i % 7 == 0 for i in ids]
    return pa.table(
        {
            "customer_id": [customer_id(i) for i in ids],
            "age": [None if gap else 20 + i % 50 for i, gap in zip(ids, gaps, strict=True)],
            "years_on_the_job": [None if gap else i % 30 for i, gap in zip(ids, gaps, strict=True)],
            "nb_previous_loans": [version] * n,
            "avg_amount_loans_previous": [
                None if gap else 1000.0 + i / 4 for i, gap in zip(ids, gaps, strict=True)
            ],
            "flag_own_car": [i % 2 for i in ids],
            "as_of": [as_of] * n,
        },
        schema=SNAPSHOT_SCHEMA,
    )


# Decisions of the store tests: a fixed time, so that retention is judged against it.
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def decision_row(decided_at: datetime = NOW, customer: str = "00000001", **document) -> DecisionRow:
    """A decision of ``customer`` at ``decided_at``, its document holding ``document``."""
    millis = (decided_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    (decision_id,) = decision_ids.new_ids(1, millis * 1_000_000)
    body = {
        "decision_id": decision_id,
        "customer_id": customer,
        "probability": 0.123456,
        **document,
    }
    return DecisionRow(decision_id, decided_at, customer, "20261201-000000", json.dumps(body))
