"""``credit-risk features`` refuses bad arguments before it starts Spark."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from credit_risk.cli import EXIT_USER_ERROR, main
from credit_risk.errors import InvalidInputError
from credit_risk.features.job import check_run_id, new_run_id


def test_a_missing_input_is_a_one_line_error(tmp_path, capsys):
    code = main(["features", "--input", str(tmp_path / "nope"), "--as-of", "2024-01-01"])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert (
        err.strip() == f"credit-risk features: error: no such file or folder: {tmp_path / 'nope'}"
    )


@pytest.mark.parametrize("as_of", ["2024-02-30", "1/2/2024", "yesterday"])
def test_an_as_of_that_is_not_a_date_is_refused(tmp_path, capsys, as_of):
    code = main(["features", "--input", str(tmp_path), "--as-of", as_of])
    assert code == EXIT_USER_ERROR
    assert "as-of must be a calendar date written YYYY-MM-DD" in capsys.readouterr().err


def test_a_run_id_with_odd_characters_is_refused(tmp_path, capsys):
    code = main(
        ["features", "--input", str(tmp_path), "--as-of", "2024-01-01", "--run-id", "../../etc"]
    )
    assert code == EXIT_USER_ERROR
    assert "run id must be" in capsys.readouterr().err


def test_s3_locations_are_for_the_glue_job(capsys):
    code = main(
        [
            "features",
            "--input",
            "s3://lake/raw/loans",
            "--output",
            "/tmp/x",
            "--as-of",
            "2024-01-01",
        ]
    )
    assert code == EXIT_USER_ERROR
    assert "glue_jobs/feature_extraction.py" in capsys.readouterr().err


def test_as_of_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "--input", "x"])
    assert exit_info.value.code == 2
    assert "--as-of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("wrong.csv", b"a,b,c\n1,2,3\n", "missing loan_id"),
        ("empty.parquet", b"", "not a readable Parquet file"),
        ("corrupt.parquet", b"PAR1 not really", "not a readable Parquet file"),
    ],
    ids=["empty-csv", "wrong-columns-csv", "empty-parquet", "corrupt-parquet"],
)
def test_a_malformed_input_file_is_refused_before_spark_starts(
    tmp_path, capsys, name, content, message
):
    # given a file that cannot be raw loans
    path = tmp_path / name
    path.write_bytes(content)
    # when the command runs on it (no Spark session exists in this test process)
    code = main(["features", "--input", str(path), "--as-of", "2024-01-01"])
    # then one line says what is wrong with which file, and Spark never started
    assert code == EXIT_USER_ERROR
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"credit-risk features: error: {path}")
    assert message in line


def test_a_parquet_file_without_the_raw_columns_is_refused_before_spark_starts(tmp_path, capsys):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"customer": ["0001"], "amount": [1.0]}), path)
    code = main(["features", "--input", str(path), "--as-of", "2024-01-01"])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "does not have the raw loan columns: missing loan_id" in err
    assert "unexpected customer, amount" in err
    assert "starting Spark" not in err


@pytest.mark.parametrize(
    "run_id",
    ["run:1", "r" * 64, "-leading-dash", "with space"],
)
def test_a_run_id_that_cannot_name_a_snapshot_or_an_execution_is_refused(run_id):
    with pytest.raises(InvalidInputError, match="run id must be"):
        check_run_id(run_id)


def test_the_ids_the_runners_make_are_accepted():
    scheduled = "training-2024-01-01-0f8fad5b-d9cb-469f-a165-70867728950e"
    assert check_run_id(scheduled) == scheduled
    local = new_run_id(date(2024, 1, 1))
    assert check_run_id(local) == local
