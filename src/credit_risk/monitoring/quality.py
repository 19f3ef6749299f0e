"""Live quality on delayed labels: how well the served model ranks and calibrates.

Outcomes arrive weeks after the score, as files under ``<lake>/labels/`` (CSV or
Parquet: ``customer_id``, ``decision_date``, ``status``). Each is joined to the last
score of that customer on that day (customer ids hashed with the service's key,
``scored_at`` taken in UTC), and the champion's scores among them are measured with
the same ``evaluate.metrics`` that produced its offline test figures, so the two
are comparable. Below ``min_labelled`` joined outcomes nothing is judged: an AUC on
a few dozen loans says more about chance than about the model.
"""

from __future__ import annotations

import io as _io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from credit_risk import io
from credit_risk.errors import InvalidInputError
from credit_risk.model.evaluate import metrics
from credit_risk.monitoring.report import ALERT, OK, skipped

if TYPE_CHECKING:
    from credit_risk.monitoring.records import ScoreRecord

LABEL_COLUMNS = {"customer_id": pa.string(), "decision_date": pa.date32(), "status": pa.int64()}
# A calibration gap must also be this many standard deviations of the expected
# default count before it alerts: small windows drift by chance.
CALIBRATION_SIGMAS = 3.0


@dataclass(frozen=True)
class Labels:
    customer_ids: list[str]
    decision_dates: list[date]
    status: np.ndarray
    files: list[str]

    def __len__(self) -> int:
        return len(self.customer_ids)


def _read_file(uri: str) -> pa.Table:
    data = io.read_bytes(uri)
    try:
        if uri.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(_io.BytesIO(data), columns=list(LABEL_COLUMNS))
            return table.cast(pa.schema(LABEL_COLUMNS.items()))
        options = pa_csv.ConvertOptions(
            column_types=LABEL_COLUMNS, include_columns=list(LABEL_COLUMNS)
        )
        return pa_csv.read_csv(_io.BytesIO(data), convert_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
        raise InvalidInputError(
            f"labels file {uri} does not have columns customer_id (text), decision_date "
            f"(YYYY-MM-DD) and status (0/1): {exc}"
        ) from None


def read_labels(uri: str) -> Labels:
    """Every ``.csv`` and ``.parquet`` file under ``uri``; an absent folder is no labels."""
    try:
        files = [f for f in io.list_files(uri) if f.endswith((".csv", ".parquet"))]
    except InvalidInputError:  # a local folder that does not exist yet
        files = []
    if not files:
        return Labels([], [], np.zeros(0, dtype=np.int64), [])
    table = pa.concat_tables([_read_file(f) for f in files])
    if any(column.null_count for column in table.columns):
        raise InvalidInputError(f"labels under {uri} have empty values")
    status = table.column("status").to_numpy()
    if not np.isin(status, (0, 1)).all():
        raise InvalidInputError(f"labels under {uri}: status must be 0 or 1")
    return Labels(
        customer_ids=table.column("customer_id").to_pylist(),
        decision_dates=table.column("decision_date").to_pylist(),
        status=status.astype(np.int64),
        files=files,
    )


def labels_between(labels: Labels, start: date, end: date) -> Labels:
    """The labels whose decision date is in [start, end]."""
    mask = np.array([start <= day <= end for day in labels.decision_dates], dtype=bool)
    return Labels(
        customer_ids=[c for c, k in zip(labels.customer_ids, mask, strict=True) if k],
        decision_dates=[d for d, k in zip(labels.decision_dates, mask, strict=True) if k],
        status=labels.status[mask],
        files=labels.files,
    )


@dataclass(frozen=True)
class Joined:
    probabilities: np.ndarray
    outcomes: np.ndarray
    other_versions: int  # labelled scores served by another model version
    unmatched: int  # labels without a score that day
    # The labelled records, in the order of ``outcomes``: fairness groups them.
    records: tuple[ScoreRecord, ...] = ()


def join_labels(
    labels: Labels,
    records: Sequence[ScoreRecord],
    hash_id: Callable[[str], str],
    model_version: str,
) -> Joined:
    """Outcomes next to the last score of (customer, day); the champion's scores only."""
    last: dict[tuple[str, date], ScoreRecord] = {}
    for record in records:
        key = (record.customer_hash, record.scored_at.date())
        if key not in last or record.scored_at >= last[key].scored_at:
            last[key] = record
    probabilities, outcomes, matched, others, unmatched = [], [], [], 0, 0
    for customer_id, day, status in zip(
        labels.customer_ids, labels.decision_dates, labels.status, strict=True
    ):
        record = last.get((hash_id(customer_id), day))
        if record is None:
            unmatched += 1
        elif record.model_version != model_version:
            others += 1
        else:
            probabilities.append(record.default_probability)
            outcomes.append(int(status))
            matched.append(record)
    return Joined(
        np.asarray(probabilities, dtype=np.float64),
        np.asarray(outcomes, dtype=np.int64),
        others,
        unmatched,
        tuple(matched),
    )


def calibration_z(outcomes: np.ndarray, probabilities: np.ndarray) -> float:
    """Observed minus expected defaults, in standard deviations of the expected count."""
    variance = float(np.sum(probabilities * (1 - probabilities)))
    gap = float(outcomes.sum() - probabilities.sum())
    return gap / math.sqrt(variance) if variance > 0 else 0.0


def assess_quality(
    joined: Joined,
    offline_metrics: dict[str, Any],
    *,
    auc_drop_tolerance: float,
    calibration_tolerance: float,
    min_labelled: int,
) -> dict[str, Any]:
    """The quality section: live AUC and calibration against the offline test figures."""
    thresholds = {
        "auc_drop_tolerance": auc_drop_tolerance,
        "calibration_tolerance": calibration_tolerance,
        "calibration_sigmas": CALIBRATION_SIGMAS,
        "min_labelled": min_labelled,
    }
    counts = {
        "labelled": int(joined.outcomes.size),
        "labelled_other_versions": joined.other_versions,
        "unmatched_labels": joined.unmatched,
    }
    offline_auc = offline_metrics.get("auc")
    if joined.outcomes.size < min_labelled:
        return skipped(
            f"{joined.outcomes.size} labelled scores of this model, fewer than the "
            f"{min_labelled} needed",
            thresholds=thresholds,
            offline_auc=offline_auc,
            **counts,
        )
    live = metrics(joined.outcomes, joined.probabilities)
    if live["auc"] is None:
        return skipped(
            "the labelled scores have a single outcome: AUC is undefined",
            thresholds=thresholds,
            offline_auc=offline_auc,
            **counts,
        )
    auc_drop = None if offline_auc is None else offline_auc - live["auc"]
    z = calibration_z(joined.outcomes, joined.probabilities)
    relative = live["calibration_error"]
    miscalibrated = (
        relative is not None
        and abs(relative) > calibration_tolerance
        and abs(z) > CALIBRATION_SIGMAS
    )
    auc_dropped = auc_drop is not None and auc_drop > auc_drop_tolerance
    return {
        "status": ALERT if auc_dropped or miscalibrated else OK,
        "thresholds": thresholds,
        **counts,
        "defaults": live["defaults"],
        "live_auc": round(live["auc"], 6),
        "offline_auc": offline_auc,
        "auc_drop": None if auc_drop is None else round(auc_drop, 6),
        "auc_status": ALERT if auc_dropped else OK,
        "calibration": {
            "status": ALERT if miscalibrated else OK,
            "mean_predicted": round(live["mean_predicted"], 6),
            "observed_rate": round(live["observed_rate"], 6),
            "relative_error": None if relative is None else round(relative, 6),
            "z": round(z, 3),
            "offline_relative_error": offline_metrics.get("calibration_error"),
        },
        "live": {k: live[k] for k in ("log_loss", "brier", "ks")},
    }
