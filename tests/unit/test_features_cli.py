"""``credit-risk features`` refuses bad arguments before it starts Spark."""

from __future__ import annotations

import pytest

from credit_risk.cli import EXIT_USER_ERROR, main


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
