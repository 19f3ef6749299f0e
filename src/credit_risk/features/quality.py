"""The data-quality report of a feature run.

It is the run's receipt and its completion marker: written last, it says what came
in (row count and a content fingerprint), what was rejected and why, and what the
features look like. The pipeline's quality gate reads ``quarantined_fraction``.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

from credit_risk import io, schemas
from credit_risk.features.validate import ROW_HASH, RULE_NAMES, is_valid, violation_counts

REPORT_FILE = "dq_report.json"
REPORT_VERSION = 1


def summarize_input(validated: DataFrame) -> dict[str, Any]:
    """Counts and fingerprint of the validated input, in one pass.

    The fingerprint depends on the rows' content only, not on their order, the file
    format or how the input is split into files: the same loans as CSV or Parquet
    give the same fingerprint.
    """
    row = validated.agg(
        F.count(F.lit(1)).alias("input_rows"),
        F.count(F.when(is_valid(), True)).alias("valid_rows"),
        # The exact, order-independent sum of the 64-bit row hashes, as two long sums
        # that cannot overflow (high and low 32 bits; decimal arithmetic is slower).
        F.sum(F.shiftright(ROW_HASH, 32)).alias("hash_high"),
        F.sum(F.col(ROW_HASH).bitwiseAND(F.lit(0xFFFFFFFF))).alias("hash_low"),
        *violation_counts(),
    ).first()
    values = row.asDict()
    input_rows = int(values["input_rows"])
    valid_rows = int(values["valid_rows"])
    return {
        "input_rows": input_rows,
        "input_fingerprint": fingerprint(
            input_rows, ((values["hash_high"] or 0) << 32) + (values["hash_low"] or 0)
        ),
        "valid_rows": valid_rows,
        "quarantined_rows": input_rows - valid_rows,
        "quarantined_fraction": (input_rows - valid_rows) / input_rows if input_rows else 0.0,
        "violations": {name: int(values[name]) for name in RULE_NAMES},
    }


def fingerprint(rows: int, hash_sum: Any) -> str:
    digest = hashlib.sha256(f"raw-loans:v1:{rows}:{hash_sum or 0}".encode()).hexdigest()
    return f"sha256:{digest}"


def feature_stats(frame: DataFrame) -> dict[str, dict[str, float | None]]:
    """Null rate, min, mean and max of every feature of ``frame``, in one pass."""
    aggregates = [F.count(F.lit(1)).alias("rows")]
    for name in schemas.FEATURE_NAMES:
        column = F.col(name).cast("double")
        aggregates += [
            F.count(column).alias(f"{name}__present"),
            F.min(column).alias(f"{name}__min"),
            F.avg(column).alias(f"{name}__mean"),
            F.max(column).alias(f"{name}__max"),
        ]
    values = frame.agg(*aggregates).first().asDict()
    rows = values["rows"]
    return {
        name: {
            "null_rate": (rows - values[f"{name}__present"]) / rows if rows else 0.0,
            "min": _number(values[f"{name}__min"]),
            "mean": _number(values[f"{name}__mean"]),
            "max": _number(values[f"{name}__max"]),
        }
        for name in schemas.FEATURE_NAMES
    }


def _number(value: float | None) -> float | None:
    # JSON has no NaN or infinity; the report stays strict JSON.
    if value is None or not math.isfinite(value):
        return None
    return value


def build_report(
    *,
    run_id: str,
    as_of: date,
    input_uri: str,
    input_files: list[str],
    summary: dict[str, Any],
    training_rows: int,
    snapshot_rows: int,
    features: dict[str, dict[str, float | None]],
    outputs: dict[str, str],
) -> dict[str, Any]:
    return {
        "report_version": REPORT_VERSION,
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input_uri": input_uri,
        "input_files": len(input_files),
        **summary,
        "training_rows": training_rows,
        "snapshot_rows": snapshot_rows,
        "features": features,
        "outputs": outputs,
    }


def write_report(output_uri: str, report: dict[str, Any]) -> str:
    uri = io.join(output_uri, REPORT_FILE)
    io.write_bytes(uri, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    return uri


def read_report(output_uri: str) -> dict[str, Any]:
    return json.loads(io.read_bytes(io.join(output_uri, REPORT_FILE)))
