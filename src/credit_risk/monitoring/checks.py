"""Rules served inputs must keep, and how old the model and the features may be.

Invariants are judged against the champion's training reference: a value outside
the training range (widened, see ``allowed_range``), a value outside a categorical
domain, a fractional value of an integer feature, and a null rate unlike training
are violations. Each offending value counts once; a null rate out of bounds counts
once per feature. A broken feature pipeline (nulls turned into zeros, a unit
change) shows here long before the model's quality does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from credit_risk import schemas
from credit_risk.monitoring.report import ALERT, OK, WARN, worst
from credit_risk.store import SnapshotInfo

# Training saw a sample: widen its [min, max] by this share of the range on each
# side before calling a served value impossible.
RANGE_MARGIN = 0.25
# A null rate may move this much (absolute) from training, or 4 binomial standard
# deviations on small windows, before it is a violation.
NULL_RATE_TOLERANCE = 0.05
NULL_RATE_SIGMAS = 4.0
# An age beyond this share of its limit warns before it alerts.
STALENESS_WARN_FRACTION = 0.8
_INTEGER_FEATURES = frozenset(
    name for name, kind in schemas.FEATURE_COLUMNS if kind == schemas.INT64
)


def allowed_range(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    """The training range widened by ``RANGE_MARGIN``; a feature never negative in
    training stays non-negative. None when training had no values."""
    low, high = entry.get("min"), entry.get("max")
    if low is None or high is None:
        return None
    # A constant feature in training has no range to scale by: use its magnitude.
    span = (high - low) or max(abs(high), 1.0)
    margin = RANGE_MARGIN * span
    lower = low - margin
    if low >= 0:
        lower = max(lower, 0.0)
    return lower, high + margin


def null_rate_bounds(reference_rate: float, served: int) -> tuple[float, float]:
    """Null rates of ``served`` values compatible with the training rate."""
    sigma = math.sqrt(max(reference_rate * (1 - reference_rate), 1e-6) / max(served, 1))
    slack = max(NULL_RATE_TOLERANCE, NULL_RATE_SIGMAS * sigma)
    return max(0.0, reference_rate - slack), min(1.0, reference_rate + slack)


@dataclass(frozen=True)
class FeatureInvariants:
    name: str
    values: int
    null_rate: float
    reference_null_rate: float
    null_rate_bounds: tuple[float, float]
    allowed: tuple[float, float] | None
    domain: tuple[float, ...] | None
    out_of_range: int
    out_of_domain: int
    not_integer: int

    @property
    def null_rate_ok(self) -> bool:
        low, high = self.null_rate_bounds
        return low <= self.null_rate <= high

    @property
    def violations(self) -> int:
        return self.out_of_range + self.out_of_domain + self.not_integer + (not self.null_rate_ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": ALERT if self.violations else OK,
            "violations": self.violations,
            "values": self.values,
            "null_rate": round(self.null_rate, 6),
            "reference_null_rate": round(self.reference_null_rate, 6),
            "null_rate_bounds": [round(b, 6) for b in self.null_rate_bounds],
            "allowed_range": None if self.allowed is None else list(self.allowed),
            "domain": None if self.domain is None else list(self.domain),
            "out_of_range": self.out_of_range,
            "out_of_domain": self.out_of_domain,
            "not_integer": self.not_integer,
        }


def check_feature(name: str, entry: Mapping[str, Any], values: np.ndarray) -> FeatureInvariants:
    """The invariants of one feature's served ``values`` (NaN = null)."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    null_rate = 1.0 - present.size / values.size if values.size else 0.0
    domain = tuple(float(v) for v in entry["domain"]) if entry.get("domain") else None
    allowed = None if domain else allowed_range(entry)
    out_of_domain = int(np.count_nonzero(~np.isin(present, domain))) if domain else 0
    out_of_range = (
        int(np.count_nonzero((present < allowed[0]) | (present > allowed[1]))) if allowed else 0
    )
    not_integer = (
        int(np.count_nonzero(present != np.round(present))) if name in _INTEGER_FEATURES else 0
    )
    reference_rate = float(entry["null_rate"])
    return FeatureInvariants(
        name=name,
        values=int(values.size),
        null_rate=null_rate,
        reference_null_rate=reference_rate,
        null_rate_bounds=null_rate_bounds(reference_rate, values.size),
        allowed=allowed,
        domain=domain,
        out_of_range=out_of_range,
        out_of_domain=out_of_domain,
        not_integer=not_integer,
    )


def check_invariants(
    reference_features: Mapping[str, Mapping[str, Any]], served: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """The invariants section of the report: every feature the reference describes."""
    features = {
        name: check_feature(name, entry, served[name]).to_dict()
        for name, entry in reference_features.items()
        if name in served
    }
    violations = sum(section["violations"] for section in features.values())
    return {
        "status": ALERT if violations else OK,
        "violations": violations,
        "thresholds": {
            "range_margin": RANGE_MARGIN,
            "null_rate_tolerance": NULL_RATE_TOLERANCE,
            "null_rate_sigmas": NULL_RATE_SIGMAS,
        },
        "features": features,
    }


# --- staleness ------------------------------------------------------------------


def _age_status(age_days: float, limit_days: int) -> str:
    if age_days > limit_days:
        return ALERT
    if age_days > STALENESS_WARN_FRACTION * limit_days:
        return WARN
    return OK


def model_staleness(metadata: Mapping[str, Any], now: datetime, limit_days: int) -> dict[str, Any]:
    """Age of the model since training (``created_at`` in its registry metadata)."""
    created = metadata.get("created_at")
    if not created:
        return {
            "status": ALERT,
            "age_days": None,
            "limit_days": limit_days,
            "reason": "the model's metadata has no created_at: its age is unknown",
        }
    trained = datetime.fromisoformat(created)
    if trained.tzinfo is None:
        trained = trained.replace(tzinfo=UTC)
    age = (now - trained).total_seconds() / 86_400
    return {
        "status": _age_status(age, limit_days),
        "age_days": round(age, 3),
        "limit_days": limit_days,
        "created_at": created,
    }


def features_staleness(
    snapshot: SnapshotInfo | None, today: date, limit_days: int
) -> dict[str, Any]:
    """Age of the active feature snapshot: days since its as-of date."""
    if snapshot is None:
        return {
            "status": ALERT,
            "age_days": None,
            "limit_days": limit_days,
            "reason": "the feature store has no active snapshot",
        }
    age = (today - snapshot.as_of).days
    return {
        "status": _age_status(age, limit_days),
        "age_days": age,
        "limit_days": limit_days,
        "snapshot_id": snapshot.snapshot_id,
        "as_of": snapshot.as_of.isoformat(),
    }


def check_staleness(
    metadata: Mapping[str, Any],
    snapshot: SnapshotInfo | None,
    *,
    now: datetime,
    max_model_age_days: int,
    max_features_age_days: int,
) -> dict[str, Any]:
    """The staleness section: the model's and the snapshot's age against their limits."""
    model = model_staleness(metadata, now, max_model_age_days)
    features = features_staleness(snapshot, now.date(), max_features_age_days)
    statuses = (model["status"], features["status"])
    return {
        "status": worst(*statuses),
        "alerts": sum(status == ALERT for status in statuses),
        "thresholds": {
            "max_model_age_days": max_model_age_days,
            "max_features_age_days": max_features_age_days,
            "warn_fraction": STALENESS_WARN_FRACTION,
        },
        "model": model,
        "features": features,
    }
