"""Drift: the population stability index of each feature and of the score.

PSI compares two distributions over the same bins:
``sum((actual - expected) * ln(actual / expected))``. The bins are those of the
training reference (``credit_risk.monitoring.reference``), and served values are
binned by the very same ``bin_proportions``, so a bin means the same on both sides.
Nulls are outside PSI: a change in the null rate is an invariant (``checks``).

Rule of thumb the thresholds come from: below 0.1 the population is stable, 0.1 to
0.25 it moved, above 0.25 the model is scoring a population it was not trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from credit_risk.monitoring.reference import bin_proportions
from credit_risk.monitoring.report import ALERT, OK, SKIPPED, WARN, worst

# Stands in for an empty bin on either side: ln(0) is undefined, and one empty bin
# should weigh heavily (ln(0.1 / 1e-4) ≈ 6.9) without making PSI infinite.
EPSILON = 1e-4
SCORE = "score"


def population_stability_index(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    epsilon: float = EPSILON,
) -> float:
    """PSI of ``actual`` against ``expected``, two proportion vectors over the same bins."""
    expected_p = np.asarray(expected, dtype=np.float64)
    actual_p = np.asarray(actual, dtype=np.float64)
    if expected_p.shape != actual_p.shape or expected_p.ndim != 1 or expected_p.size == 0:
        raise ValueError(
            f"PSI needs two proportion vectors of one length, got {expected_p.shape} "
            f"and {actual_p.shape}"
        )
    expected_p = np.maximum(expected_p, epsilon)
    actual_p = np.maximum(actual_p, epsilon)
    return float(np.sum((actual_p - expected_p) * np.log(actual_p / expected_p)))


def classify(value: float, warn: float, alert: float) -> str:
    """``ok`` below ``warn``, ``warn`` from it, ``alert`` from ``alert`` on."""
    if value >= alert:
        return ALERT
    if value >= warn:
        return WARN
    return OK


@dataclass(frozen=True)
class DistributionDrift:
    """One feature's (or the score's) served distribution against the reference."""

    name: str
    edges: tuple[float, ...]
    expected: tuple[float, ...]
    actual: tuple[float, ...] | None
    served: int  # non-null served values binned
    psi: float | None
    status: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "psi": None if self.psi is None else round(self.psi, 6),
            "status": self.status,
            "served": self.served,
            "edges": list(self.edges),
            "expected": list(self.expected),
            "actual": None if self.actual is None else [round(p, 6) for p in self.actual],
            **({"reason": self.reason} if self.reason else {}),
        }


def distribution_drift(
    name: str,
    reference: Mapping[str, Any],
    values: np.ndarray,
    *,
    warn: float,
    alert: float,
    min_count: int,
) -> DistributionDrift:
    """PSI of ``values`` (NaN = null) over the bins of one reference entry."""
    edges = tuple(float(e) for e in reference["edges"])
    expected = tuple(float(p) for p in reference["proportions"])
    served = int(np.count_nonzero(~np.isnan(values)))
    if served < min_count:
        return DistributionDrift(
            name,
            edges,
            expected,
            None,
            served,
            None,
            SKIPPED,
            f"{served} non-null values, fewer than the {min_count} needed to judge drift",
        )
    actual = tuple(float(p) for p in bin_proportions(values, edges))
    value = population_stability_index(expected, actual)
    return DistributionDrift(
        name, edges, expected, actual, served, value, classify(value, warn, alert)
    )


@dataclass(frozen=True)
class DriftResult:
    features: dict[str, DistributionDrift]
    score: DistributionDrift | None
    warn: float
    alert: float

    @property
    def all(self) -> list[DistributionDrift]:
        return [*self.features.values(), *([self.score] if self.score else [])]

    @property
    def alerts(self) -> int:
        return sum(1 for d in self.all if d.status == ALERT)

    @property
    def status(self) -> str:
        return worst(*(d.status for d in self.all))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "thresholds": {"psi_warn": self.warn, "psi_alert": self.alert},
            "alerts": self.alerts,
            "features": {name: d.to_dict() for name, d in self.features.items()},
            SCORE: None if self.score is None else self.score.to_dict(),
        }


def measure_drift(
    reference: Mapping[str, Any],
    features: Mapping[str, np.ndarray],
    scores: np.ndarray | None,
    *,
    warn: float,
    alert: float,
    min_count: int,
) -> DriftResult:
    """PSI of every feature the reference describes, and of the score when given.

    ``reference`` is the model's ``monitoring_reference``; ``features`` maps each
    feature name to its served values (NaN = null).
    """
    measured = {
        name: distribution_drift(
            name, entry, features[name], warn=warn, alert=alert, min_count=min_count
        )
        for name, entry in reference["features"].items()
        if name in features
    }
    score = (
        distribution_drift(
            SCORE, reference[SCORE], scores, warn=warn, alert=alert, min_count=min_count
        )
        if scores is not None
        else None
    )
    return DriftResult(measured, score, warn, alert)
