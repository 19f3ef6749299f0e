"""A training run's data as the orchestration tests hand it to the state machine: its
ids, the feature job's quality report in the curated bucket, the training function's
result."""

from __future__ import annotations

import json

import boto3

from credit_risk import names
from credit_risk.model import gate
from tests.integration.orchestration.conftest import CURATED_BUCKET, REGION

RUN_ID = "training-2024-01-01-test"
# The release function's answer to a run with no other run in flight.
ADMITTED = {"decision": "go", "reason": "no other training run in flight", "ahead": []}
AS_OF = "2024-01-01"
MODEL_VERSION = "20240101T031500Z-0123abcd"


def run_folder(run_id: str) -> str:
    return f"s3://{CURATED_BUCKET}/{names.CURATED_PREFIX}{run_id}"


def write_report(run_id: str, quarantined_fraction: float) -> dict:
    """The data-quality report the feature job writes last, as the gate reads it."""
    folder = run_folder(run_id)
    report = {
        "run_id": run_id,
        "as_of": AS_OF,
        "input_rows": 1000,
        "valid_rows": round(1000 * (1 - quarantined_fraction)),
        "quarantined_fraction": quarantined_fraction,
        "outputs": {
            "training": f"{folder}/training",
            "snapshot": f"{folder}/snapshot",
            "quarantine": f"{folder}/quarantine",
        },
    }
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=CURATED_BUCKET,
        Key=f"{names.CURATED_PREFIX}{run_id}/{names.QUALITY_REPORT_FILE}",
        Body=json.dumps(report).encode(),
    )
    return report


def training_result(passed: bool) -> dict:
    """What the training function returns, its verdict built by the gate's own types."""
    outcome = gate.PASS if passed else gate.FAIL
    verdict = gate.GateVerdict(
        checks=(
            gate.Check("baseline", outcome, "AUC gain over the logistic baseline +0.0100"),
            gate.Check("calibration", gate.PASS, "consistent with a calibrated model"),
            gate.Check("champion_auc", outcome, "AUC change against champion -0.0100"),
        )
    )
    return {
        "model_version": MODEL_VERSION,
        "metrics": {"auc": 0.71, "calibration_error": 0.01},
        "gate": verdict.to_dict(),
    }
