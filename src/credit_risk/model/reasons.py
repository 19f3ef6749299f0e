"""Reason codes: the specific reasons an adverse-action notice gives, from the model.

A declined US applicant is owed the specific reasons for the decline (Regulation B,
12 CFR 1002.9(a)(2) and (b)(2)); the official commentary finds more than four
unlikely to help. This module turns one prediction into at most ``MAX_REASONS`` of
them, each a code of the reviewed ``REASON_TABLE`` and its printable statement.

Method. The contributions are XGBoost's TreeSHAP values (``pred_contribs``) on the
log-odds scale: one per feature, plus the base value in the last column, the
model's expected margin over its training data (XGBoost weighs each tree's leaves
by their training cover, a sum of hessians, so it is that weighted mean). A row's
contributions add up to its margin minus the base value: a positive contribution is
how much that feature's value raised this applicant's risk above the average
applicant's. The reasons are the features with the largest positive contributions,
one reason per code (two features telling the same story count once, with the
larger contribution), in order of contribution, at most ``MAX_REASONS``. A
feature's code depends on its value: no job at all reads differently from a short
time in the job.

Two rules come from Regulation B:

* age is never a reason for an elderly applicant (``schemas.ELDERLY_AGE``, 62, or
  older; 12 CFR 1002.6(b)(2)(ii) forbids a negative factor for their age). Models
  are now trained non-increasing in age, which in practice keeps an elderly
  applicant's age contribution below zero; the rule does not rest on that, since
  TreeSHAP does not guarantee it and models trained before may still be served;
* a decline always has at least one reason (see ``top_reasons``).

Each model version stores ``reason_table_document()`` in its metadata, so that a
decision can be explained with the wording in force when it was made. Bump
``REASON_TABLE_VERSION`` on any change of a code, a statement or what it covers.

Serving imports this module: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from credit_risk.schemas import ELDERLY_AGE

MAX_REASONS = 4
YOUNG_BELOW = 30

# The first table was the unversioned code -> text mapping of earlier model versions.
REASON_TABLE_VERSION = "2"


@dataclass(frozen=True)
class ReasonCode:
    code: str
    statement: str  # what an adverse-action notice prints
    features: tuple[str, ...]  # the model features it can stand for
    direction: str  # what about the feature raised the risk


REASON_TABLE: tuple[ReasonCode, ...] = (
    ReasonCode(
        "YOUNG_AGE",
        f"Applicant's age (under {YOUNG_BELOW})",
        ("age",),
        f"a younger age raises the risk; only for applicants under {YOUNG_BELOW}",
    ),
    ReasonCode(
        "AGE",
        "Applicant's age",
        ("age",),
        f"a younger age raises the risk; only for applicants aged {YOUNG_BELOW} "
        f"to {ELDERLY_AGE - 1}",
    ),
    ReasonCode(
        "NOT_EMPLOYED",
        "No current employment",
        ("years_on_the_job",),
        "having no current job raises the risk",
    ),
    ReasonCode(
        "SHORT_JOB_TENURE",
        "Insufficient length of current employment",
        ("years_on_the_job",),
        "a shorter time in the current job raises the risk",
    ),
    ReasonCode(
        "NO_CREDIT_HISTORY",
        "No record of previous loans",
        ("nb_previous_loans", "avg_amount_loans_previous"),
        "having no previous loan raises the risk",
    ),
    ReasonCode(
        "MANY_PREVIOUS_LOANS",
        "Excessive number of previous loans",
        ("nb_previous_loans",),
        "a large number of previous loans raises the risk",
    ),
    ReasonCode(
        "HIGH_PREVIOUS_AMOUNTS",
        "Average amount of previous loans too high",
        ("avg_amount_loans_previous",),
        "a larger average amount of previous loans raises the risk",
    ),
    ReasonCode(
        "NO_CAR",
        "No vehicle owned",
        ("flag_own_car",),
        "not owning a car raises the risk",
    ),
    ReasonCode(
        # Models are trained so that a car never raises the risk; the code stays so
        # that every value of every feature has wording (older models, interactions).
        "CAR",
        "Vehicle ownership",
        ("flag_own_car",),
        "owning a car raised the risk",
    ),
    ReasonCode(
        "MISSING_VALUE",
        "Incomplete application information",
        ("age", "flag_own_car"),
        "a missing value raises the risk",
    ),
)
REASONS_BY_CODE: dict[str, ReasonCode] = {reason.code: reason for reason in REASON_TABLE}
# Code -> statement, as model metadata recorded it before the table had a version.
REASON_TEXTS: dict[str, str] = {reason.code: reason.statement for reason in REASON_TABLE}

METHOD = {
    "contributions": "TreeSHAP log-odds contributions (XGBoost pred_contribs) relative to "
    "the base value, the model's expected margin over its training data",
    "selection": "the features with the largest positive contributions, one reason per "
    "code, in order of contribution",
    "max_reasons": MAX_REASONS,
    "no_age_reason_from_age": ELDERLY_AGE,
    "decline_without_positive_contribution": "the eligible feature with the largest contribution",
}


def reason_table_document() -> dict:
    """The reason table and method as JSON, for the metadata of a model version."""
    return {
        "version": REASON_TABLE_VERSION,
        "method": dict(METHOD),
        "codes": [
            {
                "code": reason.code,
                "statement": reason.statement,
                "features": list(reason.features),
                "direction": reason.direction,
            }
            for reason in REASON_TABLE
        ],
    }


@dataclass(frozen=True)
class Reason:
    code: str
    text: str  # the code's statement
    feature: str
    value: float | None
    contribution: float  # log-odds added by this feature

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "text": self.text,
            "feature": self.feature,
            "value": self.value,
            "contribution": round(self.contribution, 6),
        }


def reason_code(feature: str, value: float) -> str | None:
    """The code for a feature that raised the risk, given its value (NaN = null);
    None where the feature may not be a reason: age, for an elderly applicant."""
    missing = math.isnan(value)
    if feature == "years_on_the_job":
        return "NOT_EMPLOYED" if missing else "SHORT_JOB_TENURE"
    if feature in ("nb_previous_loans", "avg_amount_loans_previous"):
        # A null average means no previous loan: the same story as a zero count.
        if missing or (feature == "nb_previous_loans" and value == 0):
            return "NO_CREDIT_HISTORY"
        return "MANY_PREVIOUS_LOANS" if feature == "nb_previous_loans" else "HIGH_PREVIOUS_AMOUNTS"
    if feature not in ("age", "flag_own_car"):
        # A notice cannot print a reason nobody reviewed: a new feature needs a code.
        raise ValueError(f"no reason code covers the feature {feature!r}: add it to REASON_TABLE")
    if missing:
        return "MISSING_VALUE"
    if feature == "age":
        if value >= ELDERLY_AGE:
            return None
        return "YOUNG_AGE" if value < YOUNG_BELOW else "AGE"
    return "NO_CAR" if value == 0 else "CAR"


# Feature lists whose every feature has a reason code (``row_reasons``).
_COVERED: set[tuple[str, ...]] = set()


def top_reasons(
    contributions: np.ndarray | Sequence[float],
    values: np.ndarray | Sequence[float],
    feature_names: tuple[str, ...],
    top_k: int = MAX_REASONS,
    *,
    decline: bool,
) -> list[Reason]:
    """The reasons of one row: its eligible features with the largest positive
    contributions (without the base value), one per code, at most ``top_k``.

    A decline always gets at least one reason, an approval may get none."""
    if isinstance(contributions, np.ndarray):
        contributions = contributions.tolist()
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return row_reasons(contributions, values, feature_names, top_k, decline=decline)


def row_reasons(
    contributions: Sequence[float],
    values: Sequence[float],
    feature_names: Sequence[str],
    top_k: int = MAX_REASONS,
    *,
    decline: bool,
) -> list[Reason]:
    """``top_reasons`` on plain floats (NaN for a missing value), as the scoring
    path calls it once per row: a handful of features sort faster in Python than
    through numpy."""
    return [
        Reason(
            code=code,
            text=REASONS_BY_CODE[code].statement,
            feature=feature_names[i],
            value=None if math.isnan(values[i]) else float(values[i]),
            contribution=float(contributions[i]),
        )
        for i, code in _chosen(contributions, values, feature_names, top_k, decline)
    ]


def reason_dicts(
    contributions: Sequence[float],
    values: Sequence[float],
    feature_names: Sequence[str],
    top_k: int = MAX_REASONS,
    *,
    decline: bool,
) -> list[dict]:
    """``row_reasons`` as the API serves them (``Reason.to_dict``), without the
    objects in between."""
    return [
        {
            "code": code,
            "text": REASONS_BY_CODE[code].statement,
            "feature": feature_names[i],
            "value": None if math.isnan(values[i]) else float(values[i]),
            "contribution": round(float(contributions[i]), 6),
        }
        for i, code in _chosen(contributions, values, feature_names, top_k, decline)
    ]


def _chosen(
    contributions: Sequence[float],
    values: Sequence[float],
    feature_names: Sequence[str],
    top_k: int,
    decline: bool,
) -> list[tuple[int, str]]:
    """The (feature index, code) pairs of one row's reasons (see ``top_reasons``)."""
    if not 1 <= top_k <= MAX_REASONS:
        raise ValueError(f"top_k must be between 1 and {MAX_REASONS}, not {top_k}")
    names = feature_names if isinstance(feature_names, tuple) else tuple(feature_names)
    if names not in _COVERED:
        # Every feature needs a code, whether or not this row reaches it below.
        for name in names:
            reason_code(name, math.nan)
        _COVERED.add(names)
    # Eligible features, largest contribution first (ties in feature order, as a
    # stable sort gives them), the first of each code; the reasons are the eligible
    # features that raised the risk, so the walk stops at the first that did not.
    chosen: list[tuple[int, str]] = []
    first: tuple[int, str] | None = None
    seen: set[str] = set()
    for index in sorted(range(len(contributions)), key=contributions.__getitem__, reverse=True):
        code = reason_code(feature_names[index], values[index])
        if code is None or code in seen:
            continue
        seen.add(code)
        if first is None:
            first = (index, code)
        if contributions[index] <= 0:
            break
        chosen.append((index, code))
        if len(chosen) == top_k:
            break
    if decline and not chosen and first is not None:
        # No eligible feature raised the risk: only age did, for an elderly applicant,
        # or the decline is at or below the base value (a threshold under the average
        # risk). The notice still owes a reason: the eligible feature that did the
        # least to lower the risk, even though its contribution is not positive.
        chosen = [first]
    return chosen
