"""The command end to end, in its own process as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from credit_risk import datagen, io, schemas

pytestmark = pytest.mark.spark


def test_the_command_writes_the_five_outputs_and_a_summary(tmp_path):
    # given generated raw loans in a lake-like folder
    raw = tmp_path / "raw" / "loans" / "ingest_date=2024-01-01" / "loans.csv"
    datagen.generate(str(raw), datagen.GeneratorConfig(loans=2_000, seed=3))
    out = tmp_path / "features"
    # when the command runs
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "credit_risk.cli",
            "features",
            "--input",
            str(tmp_path / "raw"),
            "--output",
            str(out),
            "--as-of",
            "2023-07-01",
            "--run-id",
            "cli-test",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "CREDIT_RISK_SPARK_MASTER": "local[2]"},
    )
    # then it succeeds with a summary on stdout, progress on stderr, and no Spark chatter
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("features cli-test: 2,000 rows in")
    assert f"outputs: {out}" in result.stdout
    assert "features: wrote the data-quality report" in result.stderr
    assert " WARN " not in result.stderr
    assert " INFO " not in result.stderr
    report = json.loads((out / "dq_report.json").read_text())
    assert report["valid_rows"] + report["quarantined_rows"] == report["input_rows"] == 2_000
    assert io.read_parquet(str(out / "training")).num_rows == report["training_rows"]
    assert io.read_parquet(str(out / "snapshot")).schema.names == [
        name for name, _ in schemas.SNAPSHOT_COLUMNS
    ]
    assert io.read_parquet(str(out / "quarantine")).num_rows == report["quarantined_rows"]
    audit = io.read_parquet(str(out / "audit"))
    assert audit.schema.names == [name for name, _ in schemas.AUDIT_SNAPSHOT_COLUMNS]
    assert audit.num_rows == report["snapshot_rows"]
