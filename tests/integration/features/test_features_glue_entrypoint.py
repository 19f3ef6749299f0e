"""The Glue entrypoint runs the library job with its arguments (off Glue: argparse)."""

from __future__ import annotations

import json

import pytest

from tests.integration.features.conftest import raw_loan, write_raw
from tests.script_modules import load_glue_script

pytestmark = pytest.mark.spark


def test_the_entrypoint_runs_the_job_and_prints_a_summary(spark, tmp_path, capsys):
    raw = write_raw(
        tmp_path / "raw" / "loans.parquet",
        [raw_loan(1, "1", "2021-01-01"), raw_loan(2, "1", "2021-02-01", loan_amount=-1.0)],
        fmt="parquet",
    )
    code = load_glue_script("feature_extraction.py").main(
        [
            "feature_extraction.py",
            "--JOB_NAME",
            "features",
            "--input",
            str(raw.parent),
            "--output",
            str(tmp_path / "out"),
            "--as_of",
            "2021-06-01",
            "--run_id",
            "glue-1",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {
        "run_id": "glue-1",
        "as_of": "2021-06-01",
        "input_rows": 2,
        "valid_rows": 1,
        "quarantined_rows": 1,
        "quarantined_fraction": 0.5,
    }
    assert (tmp_path / "out" / "dq_report.json").exists()


def test_bad_input_ends_the_run_with_one_line(spark, tmp_path, capsys):
    code = load_glue_script("feature_extraction.py").main(
        [
            "feature_extraction.py",
            "--input",
            str(tmp_path / "missing"),
            "--output",
            str(tmp_path / "out"),
            "--as_of",
            "2021-06-01",
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"feature_extraction: error: no such file or folder: {tmp_path / 'missing'}"
    )
