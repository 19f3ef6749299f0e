"""One monitor run: the champion against what it served in a window of days.

``run_monitor`` loads the champion and its training reference from the registry,
reads the scoring log of the window ``[end - days + 1, end]`` and runs every check
(``report.CHECKS``), fairness on served decisions included (gender read from the
audit output of the feature run each record names, ``fairness.audit_uri``). A
window without scores still reports staleness, and says "no scores" for the checks
that need them; a champion trained before monitoring existed (no reference) still
gets staleness, skew, live quality and fairness. What cannot
be judged is ``skipped`` with a reason, never a failure: the run fails only when
it cannot read what it must (registry, store, lake), which a scheduler should
tell apart from an alert.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from credit_risk import io, names, schemas
from credit_risk.monitoring import checks, fairness, quality, skew
from credit_risk.monitoring.psi import measure_drift
from credit_risk.monitoring.records import (
    ScoreRecord,
    read_scoring_log,
    scan_scoring_log,
    scoring_log_root,
    served_only,
)
from credit_risk.monitoring.report import MonitorReport, build_report, skipped
from credit_risk.registry import ModelNotFoundError, Registry
from credit_risk.settings import Settings
from credit_risk.store import FeatureStore, create_store

logger = logging.getLogger(__name__)

REFERENCE_KEY = "monitoring_reference"
NO_SCORES = "no scores in the window"
REPORT_FILE = "report.json"
HTML_FILE = "report.html"


class NoChampionError(ModelNotFoundError):
    """The registry has no champion yet: no model is in service, so there is nothing to
    monitor. Apart from other ``ModelNotFoundError``s (a champion pointing at a missing
    version), which are faults."""


def labels_uri(settings: Settings) -> str:
    return io.join(settings.lake, names.LABELS_PREFIX)


def report_uri(settings: Settings, end: date, file: str = REPORT_FILE) -> str:
    """``<lake>/monitoring/date=<end>/report.json``: one report per window end."""
    return io.join(settings.lake, names.MONITORING_PREFIX, f"date={end.isoformat()}", file)


def configured_hasher() -> Callable[[str], str] | None:
    """The service's keyed hash of customer ids, with the key the inference function
    uses (``serving.service.hash_key``). None when there is none (in Lambda with no
    key configured): a random key could join nothing, so skew and live quality are
    skipped instead."""
    from credit_risk.serving.service import IdHasher, InferenceSettings, hash_key

    key = hash_key(InferenceSettings())
    return None if key is None else IdHasher(key)


def served_features(records: Sequence[ScoreRecord]) -> dict[str, np.ndarray]:
    """Each feature's served values as floats, NaN where null."""
    return {
        name: np.array(
            [np.nan if (v := r.features.get(name)) is None else float(v) for r in records],
            dtype=np.float64,
        )
        for name in schemas.FEATURE_NAMES
    }


def _drift_and_invariants(
    settings: Settings,
    reference: dict[str, Any] | None,
    records: Sequence[ScoreRecord],
    champion: Sequence[ScoreRecord],
) -> tuple[dict[str, Any], dict[str, Any]]:
    if reference is None:
        why = f"the champion has no {REFERENCE_KEY} (trained before monitoring): retrain it"
        return skipped(why, alerts=0), skipped(why, violations=0)
    if not records:
        return skipped(NO_SCORES, alerts=0), skipped(NO_SCORES, violations=0)
    features = served_features(records)
    # Feature distributions do not depend on the model (all records count); the
    # score distribution does, so only the champion's scores are compared.
    scores = np.array([r.default_probability for r in champion], dtype=np.float64)
    drift = measure_drift(
        reference,
        features,
        scores,
        warn=settings.psi_warn,
        alert=settings.psi_alert,
        min_count=settings.monitor_min_scores,
    ).to_dict()
    if len(records) < settings.monitor_min_scores:
        invariants = skipped(
            f"{len(records)} scores, fewer than the {settings.monitor_min_scores} needed",
            violations=0,
        )
    else:
        invariants = checks.check_invariants(reference["features"], features)
    return drift, invariants


def _quality(
    settings: Settings,
    end: date,
    metadata: dict[str, Any],
    hash_id: Callable[[str], str] | None,
) -> tuple[dict[str, Any], quality.Joined | None]:
    """The live-quality section, and the labelled scores it joined (fairness
    measures them per group too)."""
    if hash_id is None:
        return skipped("no id hash key configured: labels cannot be joined to scores"), None
    labels = quality.read_labels(labels_uri(settings))
    start = end - timedelta(days=settings.label_window_days - 1)
    recent = quality.labels_between(labels, start, end)
    if not len(recent):
        why = f"no labels with a decision date from {start} to {end}"
        return skipped(why, label_files=len(labels.files)), None
    first = min(recent.decision_dates)
    records = served_only(
        read_scoring_log(scoring_log_root(settings), first, max(recent.decision_dates))
    )
    joined = quality.join_labels(recent, records, hash_id, metadata["version"])
    section = quality.assess_quality(
        joined,
        metadata.get("metrics") or {},
        auc_drop_tolerance=settings.auc_drop_tolerance,
        calibration_tolerance=settings.calibration_tolerance,
        min_labelled=settings.min_labelled,
    )
    section["decision_dates"] = {"start": first.isoformat(), "end": end.isoformat()}
    section["label_files"] = len(labels.files)
    return section, joined


def run_monitor(
    settings: Settings,
    *,
    end: date,
    days: int | None = None,
    now: datetime | None = None,
    store: FeatureStore | None = None,
    hash_id: Callable[[str], str] | None = None,
    seed: int | None = None,
) -> MonitorReport:
    """Runs every check on the window of ``days`` (default: the configured window)
    ending on ``end``; ``now`` (default: the clock) dates the staleness checks.

    ``hash_id`` defaults to the configured key (``configured_hasher``); ``seed`` of
    the skew sample defaults to one derived from ``end``, so a re-run of a window
    compares the same customers.
    """
    days = days or settings.monitor_window_days
    if days < 1:
        raise ValueError("the window has at least one day")
    now = now or datetime.now(UTC)
    start = end - timedelta(days=days - 1)
    registry = Registry(settings.registry, settings.model_name)
    version = registry.champion_version()
    if version is None:
        raise NoChampionError(
            f"{settings.model_name} has no champion in {settings.registry}: nothing to monitor"
        )
    metadata = registry.metadata(version)
    reference = metadata.get(REFERENCE_KEY)
    if hash_id is None:
        hash_id = configured_hasher()

    owned = store is None
    store = store if store is not None else create_store(settings)
    try:
        snapshot = store.active_snapshot()
    finally:
        if owned:
            store.close()

    scan = scan_scoring_log(scoring_log_root(settings), start, end)
    records = served_only(scan.records)
    champion = [r for r in records if r.model_version == version]
    notes = [] if records else [f"{NO_SCORES} {start} to {end}"]
    if scan.malformed or scan.unreadable_files:
        notes.append(
            f"skipped {scan.malformed} malformed score records and "
            f"{len(scan.unreadable_files)} unreadable files of the scoring log"
        )
    if records and len(champion) < len(records):
        notes.append(
            f"{len(records) - len(champion)} scores came from other model versions: "
            "they count for features, skew and invariants, not for the score distribution"
        )
    drift, invariants = _drift_and_invariants(settings, reference, records, champion)
    if hash_id is None:
        skew_section = skipped(
            "no id hash key configured: served customers cannot be found offline", mismatches=0
        )
    elif not records:
        skew_section = skipped(NO_SCORES, mismatches=0)
    else:
        skew_section = skew.detect_skew(
            records,
            settings.lake,
            hash_id,
            sample_size=settings.skew_sample_size,
            seed=seed if seed is not None else int(end.strftime("%Y%m%d")),
        )
    quality_section, labelled = _quality(settings, end, metadata, hash_id)
    if records:
        fairness_section = fairness.assess_fairness(
            records,
            settings.lake,
            hash_id,
            floor=settings.adverse_impact_floor,
            min_decisions=settings.fairness_min_decisions,
            labelled=labelled,
        )
    else:
        fairness_section = skipped(NO_SCORES, alerts=0)
    section_checks = {
        "staleness": checks.check_staleness(
            metadata,
            snapshot,
            now=now,
            max_model_age_days=settings.max_model_age_days,
            max_features_age_days=settings.max_features_age_days,
        ),
        "invariants": invariants,
        "drift": drift,
        "skew": skew_section,
        "quality": quality_section,
        "fairness": fairness_section,
    }
    versions = Counter(r.model_version for r in records)
    return build_report(
        generated_at=now.isoformat(timespec="seconds"),
        environment=records[-1].environment if records else None,
        model={
            "name": settings.model_name,
            "version": version,
            "created_at": metadata.get("created_at"),
            "has_reference": reference is not None,
            "offline_metrics": {
                k: (metadata.get("metrics") or {}).get(k)
                for k in ("auc", "calibration_error", "mean_predicted", "observed_rate")
            },
        },
        window={"start": start.isoformat(), "end": end.isoformat(), "days": days},
        counts={
            "scores": len(records),
            "champion_scores": len(champion),
            "malformed_records": scan.malformed,
            "scoring_log_files": scan.files,
            "customers": len({r.customer_hash for r in records}),
            "by_model_version": dict(versions.most_common()),
            "decisions": dict(Counter(r.decision for r in champion)),
        },
        checks=section_checks,
        notes=notes,
    )
