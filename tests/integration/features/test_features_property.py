"""Property: on any small set of raw loans, Spark agrees with the plain-Python
reference of the contract (tests/features_reference.py) on every quarantine reason,
every training row, every snapshot row and every audit row."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credit_risk import schemas
from credit_risk.features import (
    apply_rules,
    audit_snapshot,
    prepare,
    serving_snapshot,
    training_features,
)
from credit_risk.features.spark import CORRUPT_RECORD_COLUMN, READ_SCHEMA
from credit_risk.features.validate import conflicting_loan_ids, parse_date, quarantine
from tests import features_reference as reference
from tests.integration.features.conftest import raw_loan

pytestmark = pytest.mark.spark

# Few values each, so that ties, repeats and edge dates happen often.
LOAN_DATES = ["2020-02-28", "2020-02-29", "2020-03-01", "2021-02-28", "2021-03-01", "2021-02-30"]
BIRTHDAYS = ["2000-02-29", "1980-03-01", "1990-12-31", "2021-01-01", "31/12/1980", "0000-03-01"]
JOB_STARTS = [
    None,
    "3024-01-01",
    "2019-03-01",
    "2020-02-29",
    "2021-03-01",
    "not a date",
    "2019-03-01\n",
]
# Texts near a date that the contract's YYYY-MM-DD does not read as one (Spark's cast
# to a date reads most of them).
NEAR_DATES = [
    "2020-01-01\n",
    "2020-01-01\r",
    "2020-01-01\r\n",
    " 2020-01-01",
    "2020-01-01 ",
    "2020-1-01",
    "2020-01-1T",
    "2020-01-01T00:00:00",
    "2020",
    "2020-01",
    "+2020-01-01",
    "-2020-01-01",
    "0000-01-01",
    "10000-01-01",
    "\u0662\u0660\u0662\u0660-01-01",  # Arabic-Indic digits
    "2020-02-30",
]
# A missing gender is valid (the audit column is null); another code is quarantined.
GENDERS = ["F", "M", None, "X"]

loans = st.builds(
    lambda loan_id, customer, loan_date, birthday, job_start, amount, car, gender: raw_loan(
        loan_id,
        customer,
        loan_date,
        birthday=birthday,
        job_start_date=job_start,
        loan_amount=amount,
        flag_own_car=car,
        code_gender=gender,
    ),
    loan_id=st.integers(1, 25),
    customer=st.sampled_from(["0001", "0002", "0100", " "]),
    loan_date=st.sampled_from(LOAN_DATES),
    birthday=st.sampled_from(BIRTHDAYS),
    job_start=st.sampled_from(JOB_STARTS),
    amount=st.sampled_from([-5.0, 0.0, 120.5, 1000.0, 33_333.33]),
    car=st.sampled_from(["Y", "N", "y"]),
    gender=st.sampled_from(GENDERS),
)


@st.composite
def raw_batches(draw) -> list[dict]:
    rows = draw(st.lists(loans, min_size=1, max_size=18))
    # Re-delivered records: exact copies of some rows.
    copies = draw(st.lists(st.sampled_from(rows), max_size=3))
    return rows + [dict(row) for row in copies]


as_of_dates = st.dates(date(2020, 2, 27), date(2021, 3, 3))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=raw_batches(), as_of=as_of_dates, broadcast=st.booleans())
def test_spark_agrees_with_the_reference(spark, rows, as_of, broadcast):
    # given raw rows as a DataFrame typed like a CSV read
    raw = spark.createDataFrame([{**row, CORRUPT_RECORD_COLUMN: None} for row in rows], READ_SCHEMA)
    # when the library validates and computes the features
    prepared = prepare(raw).persist()
    try:
        validated = apply_rules(prepared, conflicting_loan_ids(prepared))
        rejected = [r.asDict() for r in quarantine(raw, validated, broadcast=broadcast).collect()]
        valid = validated.where("_violations = 0")
        trained = {r.loan_id: r.asDict() for r in training_features(valid).collect()}
        served = {r.customer_id: r.asDict() for r in serving_snapshot(valid, as_of).collect()}
        audited = {r.customer_id: r.asDict() for r in audit_snapshot(valid, as_of).collect()}
    finally:
        prepared.unpersist()

    # then quarantine reasons match row for row
    expected_reasons = reference.reasons(rows)
    assert Counter(_key(r, r["reason"]) for r in rejected) == Counter(
        _key(row, why) for row, why in zip(rows, expected_reasons, strict=True) if why
    )
    # and features match loan for loan, and customer for customer
    kept, seen = [], set()
    for row, why in zip(rows, expected_reasons, strict=True):
        if why is None and row["loan_id"] not in seen:
            kept.append(row)
            seen.add(row["loan_id"])
    expected_training = reference.training(kept)
    assert set(trained) == set(expected_training)
    for loan_id, want in expected_training.items():
        got = trained[loan_id]
        assert got["customer_id"] == want["customer_id"]
        assert got["code_gender"] == want["code_gender"], (loan_id, got, want)
        _assert_features(got, want, f"loan {loan_id}")
    expected_snapshot = reference.snapshot(kept, as_of)
    assert set(served) == set(expected_snapshot)
    for customer, want in expected_snapshot.items():
        _assert_features(served[customer], want, f"customer {customer}")
        assert served[customer]["as_of"] == as_of
    # and the audit snapshot has exactly the snapshot's customers
    expected_audit = reference.audit(kept, as_of)
    assert set(audited) == set(expected_audit) == set(expected_snapshot)
    for customer, want in expected_audit.items():
        assert audited[customer] == {**want, "customer_id": customer, "as_of": as_of}


def _key(row: dict, reason: str) -> tuple:
    return (*(row[name] for name in schemas.RAW_LOAN_COLUMN_NAMES), reason)


def _assert_features(got: dict, want: dict, what: str) -> None:
    for name in schemas.FEATURE_NAMES:
        if name == "avg_amount_loans_previous" and want[name] is not None:
            assert got[name] is not None, (what, name)
            assert math.isclose(got[name], want[name], rel_tol=1e-12), (what, got[name], want)
        else:
            assert got[name] == want[name], (what, name, got[name], want[name])


def test_only_calendar_dates_written_yyyy_mm_dd_are_read_as_dates(spark):
    # given texts near a date, and dates the contract reads
    texts = [*NEAR_DATES, "0001-01-01", "2020-01-01", "2020-02-29", "9999-12-31"]
    frame = spark.createDataFrame([(text,) for text in texts], "text string")
    # when the validation parses them; dates as text, since Python has no year 0
    parsed = frame.select("text", parse_date("text").cast("string").alias("parsed")).collect()
    # then it reads exactly the reference's dates, and none of the near ones
    assert {r.text: r.parsed for r in parsed} == {
        text: None if (day := reference.parse(text)) is None else day.isoformat() for text in texts
    }
    assert all(reference.parse(text) is None for text in NEAR_DATES)


def test_the_reference_counts_leap_day_anniversaries_like_the_contract():
    # the oracle itself, on the cases the contract spells out
    born = date(2000, 2, 29)
    assert reference.whole_years(born, date(2021, 2, 28)) == 20
    assert reference.whole_years(born, date(2021, 3, 1)) == 21
    assert reference.whole_years(born, date(2024, 2, 29)) == 24
    assert reference.whole_years(date(1990, 3, 1), date(2020, 3, 1)) == 30
    assert reference.whole_years(date(1990, 3, 2), date(2020, 3, 1)) == 29
    assert reference.whole_years(date(2020, 1, 1), date(2020, 1, 1) + timedelta(days=364)) == 0


@pytest.mark.parametrize(
    ("broadcast", "join"), [(True, "BroadcastHashJoin"), (False, "SortMergeJoin")]
)
def test_the_quarantine_joins_the_input_the_way_it_is_told(spark, broadcast, join):
    # given a small input, which adaptive execution would broadcast on its own
    rows = [raw_loan(1, "0001", "2020-01-01"), raw_loan(2, "0001", "2020-01-02", loan_amount=-1.0)]
    raw = spark.createDataFrame([{**row, CORRUPT_RECORD_COLUMN: None} for row in rows], READ_SCHEMA)
    prepared = prepare(raw).persist()
    try:
        # when the quarantine is computed with or without the broadcast
        rejected = quarantine(
            raw, apply_rules(prepared, conflicting_loan_ids(prepared)), broadcast=broadcast
        )
        assert [r.reason for r in rejected.collect()] == ["negative_loan_amount"]
        plan = rejected._jdf.queryExecution().executedPlan().toString()
    finally:
        prepared.unpersist()
    # then the rejected loan_ids are joined back as asked, so both paths are exercised
    semi_joins = [line for line in plan.splitlines() if "LeftSemi" in line]
    assert semi_joins, plan
    assert all(join in line for line in semi_joins), plan
