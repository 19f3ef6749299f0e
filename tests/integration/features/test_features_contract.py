"""The feature contract of DESIGN.md on hand-written loans with known answers.

One job run for the module: every test reads one aspect of its outputs.
"""

from __future__ import annotations

import json
from datetime import date

import pyarrow.parquet as pq
import pytest

from credit_risk import io, schemas
from credit_risk.features import run_feature_job
from credit_risk.features.validate import RULE_NAMES
from tests.integration.features.conftest import raw_loan, read_output, write_raw

pytestmark = pytest.mark.spark

AS_OF = date(2022, 1, 1)
SENTINEL = "3024-01-01"  # job start of people who are not employed
LEAP_DAY_MAN = {"birthday": "2000-02-29", "job_start_date": SENTINEL, "code_gender": "M"}

LOANS = [
    # Leading-zero customer: three loans on one day (ties broken by loan_id, whatever
    # the file order), the first on the borrower's birthday.
    raw_loan(11, "0012345", "2020-03-01", birthday="1990-03-01", loan_amount=3000.0),
    raw_loan(12, "0012345", "2020-03-01", birthday="1990-03-01", loan_amount=5000.0),
    raw_loan(
        10,
        "0012345",
        "2020-03-01",
        birthday="1990-03-01",
        loan_amount=1000.0,
        job_start_date="2015-06-15",
    ),
    raw_loan(
        13,
        "0012345",
        "2021-01-01",
        birthday="1990-03-01",
        loan_amount=500.0,
        job_start_date="2015-06-15",
    ),
    # Leap-day birthday, not employed (far-future job start); a man.
    raw_loan(20, "7000001", "2021-02-28", **LEAP_DAY_MAN),
    raw_loan(21, "7000001", "2021-03-01", **LEAP_DAY_MAN),
    raw_loan(22, "7000001", "2024-02-28", **LEAP_DAY_MAN),
    raw_loan(23, "7000001", "2024-02-29", **LEAP_DAY_MAN),
    # Job start: missing (and no gender recorded), after the loan, on the loan date.
    raw_loan(30, "7000002", "2021-06-01", job_start_date=None, code_gender=None),
    raw_loan(31, "7000003", "2021-06-01", job_start_date="2021-06-02"),
    raw_loan(32, "7000004", "2021-06-01", job_start_date="2021-06-01"),
    # Bought a car between two loans: the snapshot takes the latest loan's flag. The
    # gender, recorded on the first loan only, is the latest loan's too: none.
    raw_loan(40, "7000005", "2020-01-01", flag_own_car="N", loan_amount=100.0),
    raw_loan(41, "7000005", "2021-05-01", flag_own_car="Y", loan_amount=300.0, code_gender=None),
    # Only loans on or after A: in training, not in the snapshot.
    raw_loan(50, "7000006", "2022-01-01"),
    raw_loan(51, "7000006", "2023-05-01"),
    # Dirt, one kind per row (customer 7000009 also has a valid loan).
    raw_loan(60, None, "2021-01-01"),
    raw_loan(None, "7000009", "2021-01-01"),
    raw_loan(62, "7000009", "2021-02-30"),
    raw_loan(63, "7000009", "2021-01-01", birthday="31/12/1980"),
    raw_loan(64, "7000009", "2021-01-01", loan_amount=-50.0),
    raw_loan(65, "7000009", "2021-01-01", flag_own_car="y"),
    raw_loan(66, "7000009", "2021-01-01", status=2),
    raw_loan(67, "7000009", "2021-01-01", job_start_date="not a date"),
    raw_loan(68, "7000009", "2021-01-01", flag_own_car=None, loan_amount=-1.0),
    raw_loan(69, "7000009", "2021-01-01", birthday="2021-06-01"),
    raw_loan(70, "   ", "2021-01-01"),
    raw_loan(71, "7000009", "2021-01-01", code_gender="X"),
    # Year 0000: Spark would cast it to a date; no calendar the contract knows has it.
    raw_loan(72, "7000009", "2021-01-01", birthday="0000-03-01"),
    # A re-delivered exact copy (one copy kept) ...
    raw_loan(80, "7000009", "2021-03-01", loan_amount=800.0),
    raw_loan(80, "7000009", "2021-03-01", loan_amount=800.0),
    # ... and a loan_id carried by two different rows (both quarantined).
    raw_loan(90, "7000009", "2021-04-01", loan_amount=900.0),
    raw_loan(90, "7000010", "2021-04-01", loan_amount=901.0),
]
EXPECTED_REASONS = {
    60: "missing_customer_id",
    None: "missing_loan_id",
    62: "invalid_loan_date",
    63: "invalid_birthday",
    64: "negative_loan_amount",
    65: "invalid_flag_own_car",
    66: "invalid_status",
    67: "invalid_job_start_date",
    68: "negative_loan_amount;missing_flag_own_car",
    69: "loan_before_birthday",
    70: "missing_customer_id",
    71: "invalid_code_gender",
    72: "invalid_birthday",
    80: "duplicate_record",
    90: "duplicate_loan_id",
}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    raw = write_raw(root / "raw" / "ingest_date=2022-01-01" / "loans.csv", LOANS)
    out = root / "out"
    report = run_feature_job(spark, str(raw.parent.parent), str(out), AS_OF, "contract-run")
    return {
        "report": report,
        "out": out,
        "training": {r["loan_id"]: r for r in read_output(str(out / "training"))},
        "snapshot": {r["customer_id"]: r for r in read_output(str(out / "snapshot"))},
        "audit": {r["customer_id"]: r for r in read_output(str(out / "audit"))},
        "quarantine": read_output(str(out / "quarantine")),
    }


def features(row: dict) -> tuple:
    return tuple(row[name] for name in schemas.FEATURE_NAMES)


def test_same_day_loans_are_ordered_by_loan_id(run):
    # given three loans of one customer on 2020-03-01, listed out of order in the file
    training = run["training"]
    # then the smaller loan_id counts as previous for the larger ones
    assert [training[i]["nb_previous_loans"] for i in (10, 11, 12, 13)] == [0, 1, 2, 3]
    assert training[10]["avg_amount_loans_previous"] is None
    assert training[11]["avg_amount_loans_previous"] == 1000.0
    assert training[12]["avg_amount_loans_previous"] == 2000.0
    assert training[13]["avg_amount_loans_previous"] == 3000.0


def test_a_loan_on_the_birthday_counts_the_year(run):
    # given a borrower born 1990-03-01 and a loan on 2020-03-01
    assert run["training"][10]["age"] == 30


def test_leap_day_birthdays_turn_a_year_older_on_the_first_of_march(run):
    training = run["training"]
    # given a borrower born 2000-02-29
    assert training[20]["age"] == 20  # 2021-02-28: anniversary not reached
    assert training[21]["age"] == 21  # 2021-03-01
    assert training[22]["age"] == 23  # 2024-02-28
    assert training[23]["age"] == 24  # 2024-02-29


def test_years_on_the_job_are_null_for_the_sentinel_a_missing_or_a_later_start(run):
    training = run["training"]
    assert {training[i]["years_on_the_job"] for i in (20, 21, 22, 23)} == {None}
    assert training[30]["years_on_the_job"] is None  # missing job start
    assert training[31]["years_on_the_job"] is None  # starts the day after the loan
    assert training[32]["years_on_the_job"] == 0  # starts on the loan date
    assert training[10]["years_on_the_job"] == 4  # 2015-06-15 → 2020-03-01


def test_customer_ids_keep_their_leading_zeros(run):
    assert run["training"][10]["customer_id"] == "0012345"
    assert "0012345" in run["snapshot"]


def test_the_snapshot_is_the_features_of_a_new_loan_on_the_as_of_date(run):
    snapshot = run["snapshot"]
    # given loans 10-13 before A = 2022-01-01 (amounts 1000, 3000, 5000, 500)
    assert features(snapshot["0012345"]) == (31, 6, 4, 2375.0, 0)
    # given loans on 2021-02-28 and 2021-03-01 only before A, not employed
    assert features(snapshot["7000001"]) == (21, None, 2, 1000.0, 0)
    # given a car bought at the latest loan: attributes come from that loan
    assert features(snapshot["7000005"]) == (31, 7, 2, 200.0, 1)
    assert {row["as_of"] for row in snapshot.values()} == {AS_OF}


def test_loans_on_or_after_the_as_of_date_are_trained_on_but_not_in_the_snapshot(run):
    assert run["training"][50]["nb_previous_loans"] == 0
    assert run["training"][51]["nb_previous_loans"] == 1
    assert "7000006" not in run["snapshot"]


def test_training_rows_carry_the_loans_own_gender_code_beside_the_features(run):
    training = run["training"]
    assert {training[i]["code_gender"] for i in (10, 11, 12, 13, 40)} == {"F"}
    assert {training[i]["code_gender"] for i in (20, 21, 22, 23)} == {"M"}
    assert training[30]["code_gender"] is None  # none recorded: null, the loan is kept
    assert training[41]["code_gender"] is None
    # an audit column, never a feature
    assert "code_gender" not in schemas.FEATURE_NAMES


def test_the_audit_snapshot_holds_the_latest_loans_gender_of_each_snapshot_customer(run):
    audit = run["audit"]
    # one row per customer of the snapshot, as of the same date
    assert set(audit) == set(run["snapshot"])
    assert {row["as_of"] for row in audit.values()} == {AS_OF}
    assert audit["0012345"]["code_gender"] == "F"
    assert audit["7000001"]["code_gender"] == "M"  # from loan 21, the last before A
    assert audit["7000002"]["code_gender"] is None
    # the latest loan's value, even when an earlier loan had one
    assert audit["7000005"]["code_gender"] is None
    # loans on or after A only: unknown as of A, like in the snapshot
    assert "7000006" not in audit


def test_every_dirt_kind_is_quarantined_with_the_rules_it_broke(run):
    reasons = {row["loan_id"]: row["reason"] for row in run["quarantine"]}
    assert reasons == EXPECTED_REASONS
    # and no quarantined loan reaches the features (loan 80 once, as its kept copy)
    quarantined = {row["loan_id"] for row in run["quarantine"]} - {80}
    assert not quarantined & set(run["training"])
    assert run["training"][80]["nb_previous_loans"] == 0


def test_quarantine_keeps_the_raw_columns_as_read(run):
    row = next(r for r in run["quarantine"] if r["loan_id"] == 62)
    assert row["loan_date"] == "2021-02-30"
    assert row["id"] == "7000009"
    assert [f for f in pq.read_schema(next(_parquet(run["out"] / "quarantine"))).names] == [
        *schemas.RAW_LOAN_COLUMN_NAMES,
        "reason",
    ]


def test_outputs_have_exactly_the_contract_types(run):
    for name, columns in (
        ("training", schemas.TRAINING_COLUMNS),
        ("snapshot", schemas.SNAPSHOT_COLUMNS),
        ("audit", schemas.AUDIT_SNAPSHOT_COLUMNS),
    ):
        table = io.read_parquet(str(run["out"] / name))
        assert table.schema.remove_metadata() == io.arrow_schema(columns), name


def test_the_report_counts_add_up(run):
    report = json.loads((run["out"] / "dq_report.json").read_text())
    assert report == json.loads(json.dumps(run["report"]))
    assert report["input_rows"] == len(LOANS)
    assert report["valid_rows"] + report["quarantined_rows"] == report["input_rows"]
    assert report["valid_rows"] == report["training_rows"] == len(run["training"])
    assert report["quarantined_rows"] == len(run["quarantine"])
    assert report["quarantined_fraction"] == pytest.approx(len(run["quarantine"]) / len(LOANS))
    assert report["snapshot_rows"] == len(run["snapshot"])
    assert list(report["violations"]) == list(RULE_NAMES)
    assert report["violations"]["duplicate_loan_id"] == 2
    assert report["violations"]["negative_loan_amount"] == 2
    assert report["violations"]["missing_customer_id"] == 2
    assert (report["run_id"], report["as_of"]) == ("contract-run", "2022-01-01")
    assert report["input_fingerprint"].startswith("sha256:")
    assert report["outputs"]["audit"] == str(run["out"] / "audit")


def test_the_report_describes_every_feature(run):
    stats = run["report"]["features"]
    assert list(stats) == list(schemas.FEATURE_NAMES)
    ages = [row["age"] for row in run["training"].values()]
    assert (stats["age"]["min"], stats["age"]["max"]) == (min(ages), max(ages))
    assert stats["age"]["mean"] == pytest.approx(sum(ages) / len(ages))
    nulls = sum(row["years_on_the_job"] is None for row in run["training"].values())
    assert stats["years_on_the_job"]["null_rate"] == pytest.approx(nulls / len(ages))


def _parquet(folder):
    return iter(sorted(folder.glob("*.parquet")))
