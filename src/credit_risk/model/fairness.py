"""Fair-lending checks of a model on its test loans: outcomes by group, and age.

**Outcomes by group.** For each grouping (gender from the audit column, age band
from the ``age`` feature) and each group: the approval rate at the decision
threshold, the adverse impact ratio (a group's approval rate over that of the most
favoured group; the four-fifths rule reads a ratio under 0.8 as evidence of
disparate impact), and calibration and AUC within the group, each with its
interval. A group smaller than ``min_group_loans`` is reported and not judged: a
ratio of two small counts swings by chance. Groups of unknown gender are reported
and never judged nor taken as the reference. Of the age bands only the elderly
one is judged (``JUDGED_ONLY``). The monitor judges served decisions with the same
``approval_outcomes``.

**Age (Regulation B).** 12 CFR 1002.6(b)(2)(ii): an elderly applicant (62+) must
never get a less favourable value for age than the most favoured younger age
class. Training makes the model non-increasing in age (``train.DEFAULT_MONOTONE``);
``age_counterfactual`` checks the result rather than trusting the constraint: each
elderly test applicant is scored again at every younger age with everything else
unchanged, and any younger age with a lower risk is a violation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from credit_risk import schemas
from credit_risk.model import groups, stats
from credit_risk.model.groups import UNKNOWN

# The youngest age the counterfactual tries (the age of majority) unless the data
# holds younger applicants, who are then tried too.
YOUNGEST_AGE = 18
PROBE_CHUNK_ROWS = 10_000

AGE_TREATMENT = (
    "monotone constraint: the model is non-increasing in age with every other feature "
    "held fixed, so an applicant of 62+ always gets at least the most favourable value of "
    "any younger age; verified by re-scoring each elderly test applicant at every younger age"
)


@dataclass(frozen=True)
class FairnessConfig:
    adverse_impact_floor: float = 0.8
    # Loans a group needs for its approval rate to be judged.
    min_group_loans: int = 100
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


# Groupings of which only some groups are judged. Age is a model input, which
# Regulation B allows a statistically sound system (1002.6(b)(2)(ii)) on the one
# condition that the elderly are not disfavoured for it: a younger band approved
# less often is that permitted use of age, reported and not judged; the elderly
# band is judged against the most favoured band.
JUDGED_ONLY = {groups.AGE_BAND: frozenset({groups.ELDERLY_BAND})}


def _interval(value: stats.Interval | None) -> dict | None:
    return None if value is None else value.to_dict()


def approval_outcomes(
    approved: np.ndarray,
    names: np.ndarray,
    grouping: str,
    *,
    min_decisions: int,
    confidence: float,
) -> dict:
    """One grouping's approval rates and adverse impact ratios: the rule the
    training gate and the monitor share. Per group: decisions, approvals, the
    approval rate (Wilson interval), the ratio to the most favoured group (Katz
    interval; the bounds are None when the group approved no one) and whether it
    is judged. The reference is the group approved most often among those of known
    value with at least ``min_decisions`` decisions."""
    figures: dict[str, dict] = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        decisions, approvals = int(mask.sum()), int(approved[mask].sum())
        figures[name] = {
            "decisions": decisions,
            "approvals": approvals,
            "approval_rate": _interval(stats.proportion_interval(approvals, decisions, confidence)),
        }
    rate = {name: g["approvals"] / g["decisions"] for name, g in figures.items()}
    large = [n for n, g in figures.items() if n != UNKNOWN and g["decisions"] >= min_decisions]
    favoured = max(large, key=rate.__getitem__, default=None)
    only = JUDGED_ONLY.get(grouping)
    for name, group in figures.items():
        group["judged"] = name in large and (only is None or name in only)
        ratio = None
        if favoured is not None and name != UNKNOWN and rate[favoured] > 0:
            interval = stats.ratio_interval(
                group["approvals"],
                group["decisions"],
                figures[favoured]["approvals"],
                figures[favoured]["decisions"],
                confidence,
            )
            ratio = _interval(interval) or {
                "estimate": rate[name] / rate[favoured],
                "low": None,
                "high": None,
            }
        group["adverse_impact_ratio"] = ratio
    return {"most_favoured": favoured, "groups": figures}


def compared(outcomes: dict) -> bool:
    """Whether ``approval_outcomes`` judged a group against another: with no
    reference, or only the reference judged, there is nothing to compare."""
    favoured = outcomes["most_favoured"]
    return any(g["judged"] and n != favoured for n, g in outcomes["groups"].items())


def group_outcomes(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    groupings: dict[str, np.ndarray],
    config: FairnessConfig,
) -> dict:
    """Per grouping and group of the test loans: ``approval_outcomes`` at the
    decision threshold, with defaults, calibration and AUC within the group."""
    approved = probabilities < threshold
    result: dict = {
        "threshold": threshold,
        "adverse_impact_floor": config.adverse_impact_floor,
        "min_group_loans": config.min_group_loans,
        "groupings": {},
    }
    for grouping, names in groupings.items():
        outcomes = approval_outcomes(
            approved,
            names,
            grouping,
            min_decisions=config.min_group_loans,
            confidence=config.confidence,
        )
        for name, group in outcomes["groups"].items():
            mask = names == name
            calibration = stats.calibration_test(
                labels[mask], probabilities[mask], config.confidence
            )
            group.update(
                defaults=int(labels[mask].sum()),
                calibration_error=_interval(calibration.relative_error),
                auc=_interval(
                    stats.auc_interval(labels[mask], probabilities[mask], config.confidence)
                ),
            )
        result["groupings"][grouping] = outcomes
    return result


def below_floor(outcomes: dict, grouping: str) -> list[tuple[str, float]]:
    """The judged groups of ``grouping`` whose adverse impact ratio is under the floor."""
    floor = outcomes["adverse_impact_floor"]
    groups = outcomes["groupings"][grouping]["groups"]
    return [
        (name, g["adverse_impact_ratio"]["estimate"])
        for name, g in groups.items()
        if g["judged"]
        and g["adverse_impact_ratio"] is not None
        and g["adverse_impact_ratio"]["estimate"] < floor
    ]


def age_counterfactual(predict: Callable[[np.ndarray], np.ndarray], features: np.ndarray) -> dict:
    """Each elderly row of ``features`` (model order) scored at every younger age.

    ``predict`` maps a feature matrix to probabilities. A violation is an elderly
    applicant with a strictly lower risk at some younger age: exact comparison,
    since a monotone ensemble gives exactly equal or larger values (float addition
    of per-tree values ordered the same way keeps the order).
    """
    age = schemas.FEATURE_NAMES.index("age")
    elderly = features[features[:, age] >= schemas.ELDERLY_AGE]
    known_ages = features[:, age][~np.isnan(features[:, age])]
    youngest = int(min(YOUNGEST_AGE, known_ages.min())) if len(known_ages) else YOUNGEST_AGE
    ages = np.arange(youngest, schemas.ELDERLY_AGE, dtype=np.float64)
    result = {
        "method": AGE_TREATMENT,
        "elderly_age": schemas.ELDERLY_AGE,
        "applicants_checked": len(elderly),
        "ages_tried": [int(ages[0]), int(ages[-1])],
        "violations": 0,
        "largest_increase": 0.0,
        "passed": True,
    }
    if len(elderly) == 0:
        return result
    actual = predict(elderly)
    best_younger = np.empty(len(elderly))
    # Each chunk of elderly rows repeated at every younger age, a few hundred
    # thousand probe rows at a time whatever the size of the test period.
    for start in range(0, len(elderly), PROBE_CHUNK_ROWS):
        chunk = elderly[start : start + PROBE_CHUNK_ROWS]
        probes = np.repeat(chunk, len(ages), axis=0)
        probes[:, age] = np.tile(ages, len(chunk))
        best = predict(probes).reshape(len(chunk), len(ages)).min(axis=1)
        best_younger[start : start + len(chunk)] = best
    increase = actual - best_younger
    violations = int((increase > 0).sum())
    result.update(
        violations=violations,
        largest_increase=float(max(increase.max(), 0.0)),
        passed=violations == 0,
    )
    return result
