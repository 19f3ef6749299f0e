"""One local Spark session for every feature test of the run, and raw-data helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from credit_risk import io, schemas

RAW_ARROW = io.arrow_schema(schemas.RAW_LOAN_COLUMNS)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """local[2], two shuffle partitions, no UI, UTC: what a laptop can afford."""
    from credit_risk.features import build_local_session

    session = build_local_session(
        "credit-risk-feature-tests", master="local[2]", shuffle_partitions=2, driver_memory="1g"
    )
    yield session
    session.stop()


def raw_loan(loan_id: int | None, customer_id: str | None, loan_date: str | None, **fields):
    """A valid raw row (all 24 columns) unless ``fields`` say otherwise."""
    row = {
        "loan_id": loan_id,
        "id": customer_id,
        "code_gender": "F",
        "flag_own_car": "N",
        "flag_own_realty": "Y",
        "cnt_children": 0,
        "amt_income_total": 150_000.0,
        "name_income_type": "Working",
        "name_education_type": "Higher education",
        "name_family_status": "Married",
        "name_housing_type": "House / apartment",
        "days_birth": -12_000,
        "days_employed": -2_000,
        "flag_mobil": 1,
        "flag_work_phone": 0,
        "flag_phone": 0,
        "flag_email": 0,
        "occupation_type": "Laborers",
        "cnt_fam_members": 2.0,
        "status": 0,
        "birthday": "1990-01-15",
        "job_start_date": "2015-01-01",
        "loan_date": loan_date,
        "loan_amount": 1_000.0,
    }
    unknown = set(fields) - set(row)
    assert not unknown, f"not raw columns: {unknown}"
    row.update(fields)
    return row


def write_raw(path: Path, rows: list[dict], fmt: str = "csv") -> Path:
    """Writes rows as the generator does: CSV with a header, or typed Parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=RAW_ARROW)
    if fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def read_output(uri: str) -> list[dict]:
    return io.read_parquet(uri).to_pylist()
