"""What the job accepts as input, and the clear errors for what it does not."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from credit_risk import datagen, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.features import run_feature_job
from tests.integration.features.conftest import RAW_ARROW, raw_loan, read_output, write_raw

pytestmark = pytest.mark.spark

AS_OF = "2022-06-01"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The same 3,000 generated loans as CSV and as Parquet, each with its truth file."""
    root = tmp_path_factory.mktemp("generated")
    config = datagen.GeneratorConfig(loans=3_000, seed=7)
    csv = datagen.generate(str(root / "csv" / "ingest_date=2024-01-01" / "loans.csv"), config)
    parquet = datagen.generate(str(root / "parquet" / "loans.parquet"), config)
    return root, csv, parquet


def test_csv_and_parquet_of_the_same_loans_give_the_same_outputs(spark, generated, tmp_path):
    root, _, parquet = generated
    # given a raw folder (partitioned, with the truth sidecar) and the same loans as Parquet
    from_csv = run_feature_job(spark, str(root / "csv"), str(tmp_path / "a"), AS_OF, "a")
    from_parquet = run_feature_job(spark, parquet, str(tmp_path / "b"), AS_OF, "b")
    # then the truth sidecars were not read as loans, and both runs agree
    assert from_csv["input_rows"] == from_parquet["input_rows"] == 3_000
    assert from_csv["input_files"] == 1
    assert from_csv["input_fingerprint"] == from_parquet["input_fingerprint"]
    for key in ("valid_rows", "violations", "snapshot_rows", "features"):
        assert from_csv[key] == from_parquet[key], key
    for output, key in (("training", "loan_id"), ("audit", "customer_id")):
        rows = [
            sorted(read_output(str(tmp_path / run / output)), key=lambda r: r[key]) for run in "ab"
        ]
        assert rows[0] == rows[1], output


def test_the_fingerprint_changes_with_the_content(spark, tmp_path):
    first = write_raw(tmp_path / "one.csv", [raw_loan(1, "1", "2021-01-01")])
    second = write_raw(tmp_path / "two.csv", [raw_loan(1, "1", "2021-01-02")])
    a = run_feature_job(spark, str(first), str(tmp_path / "a"), AS_OF, "a")
    b = run_feature_job(spark, str(second), str(tmp_path / "b"), AS_OF, "b")
    assert a["input_fingerprint"] != b["input_fingerprint"]


def test_a_csv_line_that_does_not_fit_the_schema_is_quarantined(spark, tmp_path):
    # given a CSV whose second row has text in the integer column cnt_children
    path = write_raw(tmp_path / "raw.csv", [raw_loan(1, "1", "2021-01-01")])
    good = path.read_text().splitlines()[1]
    fields = good.split(",")
    fields[0], fields[5] = "2", '"many"'
    path.write_text(path.read_text() + ",".join(fields) + "\n")
    # when the job runs
    report = run_feature_job(spark, str(path), str(tmp_path / "out"), AS_OF, "malformed")
    # then the row is quarantined as malformed, the other one is a feature row
    assert report["violations"]["malformed_record"] == 1
    assert [r["loan_id"] for r in read_output(str(tmp_path / "out" / "training"))] == [1]
    (row,) = read_output(str(tmp_path / "out" / "quarantine"))
    assert (row["loan_id"], row["reason"]) == (2, "malformed_record")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Inf"])
def test_an_amount_that_is_no_finite_number_is_quarantined(spark, tmp_path, text):
    # given a CSV whose second row's loan amount is a word Spark reads as a number
    path = write_raw(tmp_path / "raw.csv", [raw_loan(1, "1", "2021-01-01")])
    header, good = path.read_text().splitlines()[:2]
    fields = good.split(",")
    fields[0] = "2"
    fields[[name.strip('"') for name in header.split(",")].index("loan_amount")] = text
    path.write_text(path.read_text() + ",".join(fields) + "\n")
    # when the job runs
    report = run_feature_job(spark, str(path), str(tmp_path / "out"), AS_OF, "non-finite")
    # then the row is quarantined for it, and no feature is computed from it
    assert report["violations"]["non_finite_loan_amount"] == 1
    assert [r["loan_id"] for r in read_output(str(tmp_path / "out" / "training"))] == [1]
    (row,) = read_output(str(tmp_path / "out" / "quarantine"))
    assert row["loan_id"] == 2
    assert "non_finite_loan_amount" in row["reason"]


def test_a_rerun_replaces_the_previous_outputs(spark, tmp_path):
    path = write_raw(tmp_path / "raw.csv", [raw_loan(1, "1", "2021-01-01")])
    run_feature_job(spark, str(path), str(tmp_path / "out"), AS_OF, "first")
    write_raw(path, [raw_loan(5, "1", "2021-01-01"), raw_loan(6, "1", "2021-01-02")])
    report = run_feature_job(spark, str(path), str(tmp_path / "out"), AS_OF, "second")
    assert report["run_id"] == "second"
    rows = read_output(str(tmp_path / "out" / "training"))
    assert sorted(r["loan_id"] for r in rows) == [5, 6]


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "missing.csv", "no such file or folder"),
        (lambda d: _touch(d / "empty.csv", b""), "is empty"),
        (lambda d: _touch(d / "header.csv", b"loan_id,id\n1,2\n"), "missing code_gender"),
        (
            lambda d: _touch(d / "extra.csv", _header(extra="score").encode()),
            "unexpected score",
        ),
        (lambda d: _touch(d / "only_header.csv", _header().encode()), "the input is empty"),
        (lambda d: _touch(d / "loans.json", b"{}"), "must be .csv, .csv.gz or .parquet"),
        (lambda d: _touch(d / "bad.parquet", b"not parquet"), "not a readable Parquet file"),
        (lambda d: _wrong_type_parquet(d / "typed.parquet"), "loan_id is string, expected bigint"),
        (lambda d: _touch(d / "sub" / "loans.csv.truth.parquet", b""), "no raw loan files"),
    ],
    ids=[
        "missing",
        "empty-file",
        "missing-columns",
        "extra-column",
        "no-rows",
        "unknown-format",
        "corrupt-parquet",
        "wrong-parquet-type",
        "only-truth-files",
    ],
)
def test_bad_input_is_a_clear_error(spark, tmp_path, make_input, message):
    path = make_input(tmp_path)
    target = tmp_path / "sub" if "truth" in str(path) else path
    with pytest.raises(InvalidInputError, match=message):
        run_feature_job(spark, str(target), str(tmp_path / "out"), AS_OF, "bad")
    assert not (tmp_path / "out" / "dq_report.json").exists()


@pytest.mark.parametrize("as_of", ["2022-02-30", "01/06/2022", "20220601", "", "today"])
def test_an_as_of_that_is_not_a_date_is_a_clear_error(spark, tmp_path, as_of):
    path = write_raw(tmp_path / "raw.csv", [raw_loan(1, "1", "2021-01-01")])
    with pytest.raises(InvalidInputError, match="as-of must be a calendar date"):
        run_feature_job(spark, str(path), str(tmp_path / "out"), as_of, "bad")


def test_as_of_may_be_a_date(spark, tmp_path):
    path = write_raw(tmp_path / "raw.csv", [raw_loan(1, "1", "2021-01-01")])
    report = run_feature_job(spark, str(path), str(tmp_path / "out"), date(2022, 6, 1), "ok")
    assert report["as_of"] == "2022-06-01"


def _touch(path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _header(extra: str | None = None) -> str:
    names = [*schemas.RAW_LOAN_COLUMN_NAMES, *([extra] if extra else [])]
    return ",".join(f'"{name}"' for name in names) + "\n"


def _wrong_type_parquet(path):
    table = pa.Table.from_pylist([raw_loan(1, "1", "2021-01-01")], schema=RAW_ARROW)
    table = table.set_column(0, "loan_id", pa.array(["1"]))
    pq.write_table(table, path)
    return path
