"""The Glue entrypoint's arguments, read with argparse off Glue."""

from __future__ import annotations

import pytest

from credit_risk.glue import on_glue
from tests.script_modules import load_glue_script

SCRIPT = "feature_extraction.py"


def test_job_arguments_are_read_like_glue_passes_them():
    entrypoint = load_glue_script(SCRIPT)
    argv = [
        "feature_extraction.py",
        "--JOB_NAME",
        "features-dev",
        "--input",
        "s3://b/raw/",
        "--output",
        "s3://b/curated/r1",
        "--as_of",
        "2024-01-01",
        "--run_id",
        "r1",
    ]
    assert not on_glue()
    assert entrypoint.parse_arguments(argv) == {
        "input": "s3://b/raw/",
        "output": "s3://b/curated/r1",
        "as_of": "2024-01-01",
        "run_id": "r1",
    }


def test_the_run_id_is_optional():
    argv = ["x", "--input", "a", "--output", "b", "--as_of", "2024-01-01"]
    assert load_glue_script(SCRIPT).parse_arguments(argv)["run_id"] is None


def test_a_missing_argument_is_refused(capsys):
    with pytest.raises(SystemExit):
        load_glue_script(SCRIPT).parse_arguments(["x", "--input", "a", "--output", "b"])
    assert "--as_of" in capsys.readouterr().err


def test_importing_the_entrypoint_starts_nothing():
    # no Spark, no library import at module level: Glue imports it before the job runs
    module = load_glue_script(SCRIPT)
    assert not hasattr(module, "spark")
