"""The monitor's report: one JSON document per run, and the metrics derived from it.

Every check is a section of ``checks`` with a ``status``: ``ok``, ``warn``,
``alert``, or ``skipped`` when it could not be judged (no scores, too few labels,
no reference), with a ``reason``. The report's status is the worst of them, a
skipped check counting as nothing. The metrics are computed from the JSON alone,
so a stored report can be re-published or re-rendered without re-running checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from credit_risk import names

OK = "ok"
WARN = "warn"
ALERT = "alert"
SKIPPED = "skipped"
_RANK = {SKIPPED: 0, OK: 1, WARN: 2, ALERT: 3}
REPORT_FORMAT = 1
# The order of the checks in the report, the summary and the HTML page.
CHECKS = ("staleness", "invariants", "drift", "skew", "quality", "fairness")
FEATURE_DIMENSION = "feature"


def worst(*statuses: str) -> str:
    """The most severe status; ``skipped`` when nothing was judged."""
    return max(statuses, key=_RANK.__getitem__, default=SKIPPED)


def skipped(reason: str, **details: Any) -> dict[str, Any]:
    """The section of a check that could not be judged, and why."""
    return {"status": SKIPPED, "reason": reason, **details}


@dataclass(frozen=True)
class MetricPoint:
    """One CloudWatch metric value; ``unit`` is a CloudWatch unit name."""

    name: str
    value: float
    unit: str
    dimensions: dict[str, str]


@dataclass(frozen=True)
class MonitorReport:
    """A monitor run's findings as a JSON-ready dict (see ``build_report``)."""

    data: dict[str, Any]

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def checks(self) -> dict[str, dict[str, Any]]:
        return self.data["checks"]

    @property
    def model_version(self) -> str:
        return self.data["model"]["version"]

    @property
    def end(self) -> str:
        return self.data["window"]["end"]

    def check_status(self, name: str) -> str:
        return self.checks[name]["status"]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=False, allow_nan=False)

    def summary(self) -> dict[str, Any]:
        """What the CLI prints and the Lambda returns: statuses and headline figures."""
        checks = self.checks
        return {
            "status": self.status,
            "model_version": self.model_version,
            "window": self.data["window"],
            "scores": self.data["counts"]["scores"],
            "checks": {
                name: {
                    "status": section["status"],
                    **{k: section[k] for k in _HEADLINES[name] if section.get(k) is not None},
                    **({"reason": section["reason"]} if "reason" in section else {}),
                }
                for name, section in checks.items()
            },
            "notes": self.data["notes"],
        }

    def metric_points(self) -> list[MetricPoint]:
        """The monitor's metrics (names in ``credit_risk.names``), dimension
        ``service=monitor``; PSI per ``feature`` (``score`` for the score).

        The alert counts are published on every run, zero included, so that an
        alarm sees a healthy day as data rather than as a gap.
        """
        checks, base = self.checks, {"service": names.SERVICE_MONITOR}
        points = [
            MetricPoint(names.METRIC_SCORES_MONITORED, self.data["counts"]["scores"], "Count", base)
        ]

        def count(name: str, value: int) -> None:
            points.append(MetricPoint(name, value, "Count", base))

        def gauge(name: str, value: float | None, **dimensions: str) -> None:
            if value is not None:
                points.append(MetricPoint(name, value, "None", {**base, **dimensions}))

        drift = checks["drift"]
        for name, section in (drift.get("features") or {}).items():
            gauge(names.METRIC_PSI, section["psi"], **{FEATURE_DIMENSION: name})
        if drift.get("score"):
            gauge(names.METRIC_PSI, drift["score"]["psi"], **{FEATURE_DIMENSION: "score"})
        count(names.METRIC_DRIFT_ALERTS, drift.get("alerts", 0))
        count(names.METRIC_INVARIANT_VIOLATIONS, checks["invariants"].get("violations", 0))
        count(names.METRIC_SKEW_MISMATCHES, checks["skew"].get("mismatches", 0))
        staleness = checks["staleness"]
        count(names.METRIC_STALENESS_ALERTS, staleness.get("alerts", 0))
        gauge(names.METRIC_MODEL_AGE_DAYS, staleness["model"].get("age_days"))
        gauge(names.METRIC_FEATURES_AGE_DAYS, staleness["features"].get("age_days"))
        quality = checks["quality"]
        gauge(names.METRIC_LIVE_AUC, quality.get("live_auc"))
        count(names.METRIC_LIVE_QUALITY_ALERTS, int(quality["status"] == ALERT))
        # Reports stored before the fairness check have no section: nothing alerted.
        count(names.METRIC_FAIRNESS_ALERTS, checks.get("fairness", {}).get("alerts", 0))
        return points


# Per check, the figures worth a line in the summary.
_HEADLINES: dict[str, tuple[str, ...]] = {
    "staleness": ("model_age_days", "features_age_days"),
    "invariants": ("violations",),
    "drift": ("alerts", "max_psi", "max_psi_of"),
    "skew": ("compared", "mismatches"),
    "quality": ("labelled", "live_auc", "offline_auc", "auc_drop"),
    "fairness": ("decisions", "flags", "alerts"),
}


def build_report(
    *,
    generated_at: str,
    environment: str | None,
    model: dict[str, Any],
    window: dict[str, Any],
    counts: dict[str, Any],
    checks: dict[str, dict[str, Any]],
    notes: list[str],
) -> MonitorReport:
    """Assembles the report; every check of ``CHECKS`` must have a section."""
    missing = [name for name in CHECKS if name not in checks]
    if missing:
        raise ValueError(f"report sections missing: {missing}")
    ordered = {name: checks[name] for name in CHECKS}
    drift = ordered["drift"]
    psis = {
        name: section["psi"]
        for name, section in [
            *(drift.get("features") or {}).items(),
            *([("score", drift["score"])] if drift.get("score") else []),
        ]
        if section["psi"] is not None
    }
    if psis:
        top = max(psis, key=psis.__getitem__)
        drift["max_psi"], drift["max_psi_of"] = psis[top], top
    staleness = ordered["staleness"]
    staleness["model_age_days"] = staleness["model"].get("age_days")
    staleness["features_age_days"] = staleness["features"].get("age_days")
    return MonitorReport(
        {
            "format": REPORT_FORMAT,
            "status": worst(*(section["status"] for section in ordered.values())),
            "generated_at": generated_at,
            "environment": environment,
            "model": model,
            "window": window,
            "counts": counts,
            "checks": ordered,
            "notes": notes,
        }
    )
