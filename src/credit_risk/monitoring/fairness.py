"""Fair lending on served decisions: approval rates by group and adverse impact.

The answers clients got in the window (served records, whichever model version
gave them) are grouped two ways (``credit_risk.model.groups``): by gender, read
from the audit snapshot of the feature run each record names
(``<lake>/curated/<snapshot_id>/audit/``, beside the snapshot skew reads) and
joined on the customer id hashed with the service's key, as skew does; and by age
band, read off the served ``age`` feature. Gender is never served nor logged:
the audit snapshot is the only place it is read from.

Per group (``credit_risk.model.fairness.approval_outcomes``, the training gate's
rule): decisions, approvals, the approval rate with its Wilson interval, and the
adverse impact ratio, its approval rate over the most favoured group's, with
Katz's interval. A group is judged when it has at least ``min_decisions``
decisions and a known value, and of the age bands only the elderly one is;
``unknown`` (no gender recorded, no audit snapshot, no age) is reported, never
judged nor taken as the reference. A judged group
whose ratio is under the floor (the four-fifths rule: 0.8) warns; it alerts when
the whole interval is under it, a gap that chance does not explain. Where live
quality joined delayed labels, each group's calibration and AUC on them are
reported beside, not judged: labelled groups are far smaller than served ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from credit_risk import io, names
from credit_risk.errors import CreditRiskError
from credit_risk.model import fairness, groups, stats
from credit_risk.monitoring.report import ALERT, OK, SKIPPED, WARN, skipped, worst

if TYPE_CHECKING:
    from credit_risk.monitoring.quality import Joined
    from credit_risk.monitoring.records import ScoreRecord

CONFIDENCE = 0.95
APPROVE = "approve"


def audit_uri(lake: str, snapshot_id: str) -> str:
    """Where the feature job wrote the audit columns of run ``snapshot_id``'s customers."""
    return io.join(lake, names.CURATED_PREFIX, snapshot_id, names.CURATED_AUDIT_FOLDER)


def audit_genders(
    records: Sequence[ScoreRecord], lake: str, hash_id: Callable[[str], str]
) -> tuple[np.ndarray, dict[str, str]]:
    """The gender code of each record's customer (None where unknown), from the audit
    snapshot of the snapshot the record was served from; and the snapshots whose
    audit could not be read (id → why: a feature run older than the audit output,
    or one removed from the lake)."""
    import pyarrow as pa

    wanted: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.snapshot_id:
            wanted[record.snapshot_id].add(record.customer_hash)
    found: dict[tuple[str, str], str | None] = {}
    unavailable: dict[str, str] = {}
    for snapshot_id, hashes in sorted(wanted.items()):
        try:
            table = io.read_parquet(
                audit_uri(lake, snapshot_id), columns=["customer_id", "code_gender"]
            )
        except (CreditRiskError, pa.ArrowException) as exc:
            unavailable[snapshot_id] = str(exc)
            continue
        ids, codes = table.column("customer_id").to_pylist(), table.column("code_gender")
        for customer_id, code in zip(ids, codes.to_pylist(), strict=True):
            key = hash_id(customer_id)
            if key in hashes:
                found[snapshot_id, key] = code
    genders = [found.get((r.snapshot_id or "", r.customer_hash)) for r in records]
    return np.array(genders, dtype=object), unavailable


def _ages(records: Sequence[ScoreRecord]) -> np.ndarray:
    return np.array(
        [np.nan if (age := r.features.get("age")) is None else float(age) for r in records],
        dtype=np.float64,
    )


def _interval(value: stats.Interval | None) -> dict[str, Any] | None:
    return None if value is None else value.to_dict()


def _status(ratio: dict[str, Any] | None, floor: float) -> str:
    """A judged group's verdict: under the floor warns, wholly under it (or no
    approval at all, where the interval is undefined) alerts."""
    if ratio is None or ratio["estimate"] >= floor:
        return OK
    return WARN if ratio["high"] is not None and ratio["high"] >= floor else ALERT


def judge_grouping(
    approved: np.ndarray,
    group_names: np.ndarray,
    grouping: str,
    *,
    floor: float,
    min_decisions: int,
) -> dict[str, Any]:
    """Approval rates and adverse impact ratios of one grouping (a group name per
    decision, ``fairness.approval_outcomes``: the training gate's rule), each judged
    group with its status."""
    outcomes = fairness.approval_outcomes(
        approved, group_names, grouping, min_decisions=min_decisions, confidence=CONFIDENCE
    )
    figures = outcomes["groups"]
    for group in figures.values():
        judged = group["judged"]
        group["status"] = _status(group["adverse_impact_ratio"], floor) if judged else SKIPPED
    judged = [name for name, group in figures.items() if group["judged"]]
    if not fairness.compared(outcomes):
        return skipped(
            f"no group to judge with {min_decisions} decisions or more",
            most_favoured=outcomes["most_favoured"],
            groups=figures,
        )
    below = [name for name in judged if figures[name]["status"] in (WARN, ALERT)]
    return {
        "status": worst(*(figures[name]["status"] for name in judged)),
        "most_favoured": outcomes["most_favoured"],
        "below_floor": below,
        "groups": figures,
    }


def labelled_figures(joined: Joined, group_names: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each group's live calibration error (mean predicted / observed - 1) and AUC
    on the labelled scores, with their intervals; reported, not judged."""
    figures = {}
    for name in sorted(set(group_names.tolist())):
        mask = group_names == name
        outcomes, probabilities = joined.outcomes[mask], joined.probabilities[mask]
        calibration = stats.calibration_test(outcomes, probabilities, CONFIDENCE)
        figures[name] = {
            "scores": int(mask.sum()),
            "defaults": int(outcomes.sum()),
            "calibration_error": _interval(calibration.relative_error),
            "auc": _interval(stats.auc_interval(outcomes, probabilities, CONFIDENCE)),
        }
    return figures


def assess_fairness(
    records: Sequence[ScoreRecord],
    lake: str,
    hash_id: Callable[[str], str] | None,
    *,
    floor: float,
    min_decisions: int,
    labelled: Joined | None = None,
) -> dict[str, Any]:
    """The fairness section of the report for a window's served ``records``."""
    thresholds = {
        "adverse_impact_floor": floor,
        "min_decisions": min_decisions,
        "confidence": CONFIDENCE,
    }
    approved = np.array([r.decision == APPROVE for r in records], dtype=bool)
    labelled_records = labelled.records if labelled is not None else ()
    served_groups = {groups.AGE_BAND: groups.age_bands(_ages(records))}
    labelled_groups = {groups.AGE_BAND: groups.age_bands(_ages(labelled_records))}
    unavailable: dict[str, str] = {}
    gender_missing = None
    if hash_id is None:
        gender_missing = "no id hash key configured: the audit snapshot cannot be joined"
    else:
        # One read (and one hashing) of each audit snapshot for both sets of records.
        codes, unavailable = audit_genders([*records, *labelled_records], lake, hash_id)
        if any(code is not None for code in codes[: len(records)]):
            served_groups[groups.GENDER] = groups.genders(codes[: len(records)])
            labelled_groups[groups.GENDER] = groups.genders(codes[len(records) :])
        else:
            gender_missing = "no served customer has a gender in an audit snapshot"
    sections = {
        name: judge_grouping(approved, values, name, floor=floor, min_decisions=min_decisions)
        for name, values in served_groups.items()
    }
    if gender_missing:
        sections[groups.GENDER] = skipped(gender_missing)
    if labelled is not None and labelled_records:
        for name, values in labelled_groups.items():
            sections[name]["labelled"] = labelled_figures(labelled, values)
    judged = [s for s in sections.values() if s["status"] != SKIPPED]
    statuses = [g["status"] for s in judged for g in s["groups"].values() if g["judged"]]
    figures = {
        "thresholds": thresholds,
        "decisions": len(records),
        "approvals": int(approved.sum()),
        "alerts": statuses.count(ALERT),
        "flags": statuses.count(ALERT) + statuses.count(WARN),
        "groupings": sections,
        "unavailable_audits": unavailable,
    }
    if not judged:
        return skipped("no grouping has two groups to compare", **figures)
    return {"status": worst(*(s["status"] for s in judged)), **figures}
