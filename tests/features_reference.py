"""The feature contract of DESIGN.md stated again in plain Python, row by row.

It is the oracle of the property-based test of ``credit_risk.features``: written
independently and as directly as the prose (whole years are counted anniversary by
anniversary, previous loans are filtered by list comprehension), so that the two
implementations share no logic, only rule names. It covers the rules the test's
strategies can break; slow on purpose, for a few dozen rows.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from datetime import date
from statistics import fmean

from credit_risk.features.validate import RULE_NAMES


def parse(text: str | None) -> date | None:
    if text is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def anniversary(start: date, years: int) -> date:
    """``start`` plus whole years; 29 February falls on 1 March in common years."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return date(start.year + years, 3, 1)


def whole_years(start: date, end: date) -> int:
    years = 0
    while anniversary(start, years + 1) <= end:
        years += 1
    return years


def reasons(rows: list[dict]) -> list[str | None]:
    """For each row, the ``;``-joined rules it breaks, or None when it is valid."""
    versions = defaultdict(set)
    for row in rows:
        if row["loan_id"] is not None:
            versions[row["loan_id"]].add(_content(row))
    seen = Counter()
    result = []
    for row in rows:
        broken = set()
        content = _content(row)
        if row["loan_id"] is None:
            broken.add("missing_loan_id")
        else:
            if len(versions[row["loan_id"]]) > 1:
                broken.add("duplicate_loan_id")
            if seen[content]:
                broken.add("duplicate_record")
            seen[content] += 1
        if row["id"] is None or not row["id"].strip():
            broken.add("missing_customer_id")
        loan_date, birthday = parse(row["loan_date"]), parse(row["birthday"])
        for column, value in (("loan_date", loan_date), ("birthday", birthday)):
            if row[column] is None:
                broken.add(f"missing_{column}")
            elif value is None:
                broken.add(f"invalid_{column}")
        if row["job_start_date"] is not None and parse(row["job_start_date"]) is None:
            broken.add("invalid_job_start_date")
        if loan_date and birthday and loan_date < birthday:
            broken.add("loan_before_birthday")
        if row["loan_amount"] is None:
            broken.add("missing_loan_amount")
        else:
            if row["loan_amount"] < 0:
                broken.add("negative_loan_amount")
            if not math.isfinite(row["loan_amount"]):
                broken.add("non_finite_loan_amount")
        if row["flag_own_car"] is None:
            broken.add("missing_flag_own_car")
        elif row["flag_own_car"] not in ("Y", "N"):
            broken.add("invalid_flag_own_car")
        if row["code_gender"] is not None and row["code_gender"] not in ("F", "M"):
            broken.add("invalid_code_gender")
        unknown = broken - set(RULE_NAMES)
        assert not unknown, f"the reference speaks of rules the library lacks: {unknown}"
        result.append(";".join(n for n in RULE_NAMES if n in broken) or None)
    return result


def _content(row: dict) -> tuple:
    return tuple(sorted(row.items(), key=lambda item: item[0]))


def _features(loan: dict, previous: list[dict], at: date) -> dict:
    birthday, job_start = parse(loan["birthday"]), parse(loan["job_start_date"])
    return {
        "age": whole_years(birthday, at),
        "years_on_the_job": whole_years(job_start, at) if job_start and job_start <= at else None,
        "nb_previous_loans": len(previous),
        "avg_amount_loans_previous": (
            fmean(p["loan_amount"] for p in previous) if previous else None
        ),
        "flag_own_car": 1 if loan["flag_own_car"] == "Y" else 0,
    }


def _order(loan: dict) -> tuple:
    return (parse(loan["loan_date"]), loan["loan_id"])


def _gender(loan: dict) -> str | None:
    """The audit column: the loan's own gender code, null when it has none."""
    return loan["code_gender"] if loan["code_gender"] in ("F", "M") else None


def training(valid: list[dict]) -> dict[int, dict]:
    """loan_id → features of that loan, from the customer's loans ordered before it,
    and the loan's gender code (an audit column, not a feature)."""
    result = {}
    for loan in valid:
        previous = [
            other for other in valid if other["id"] == loan["id"] and _order(other) < _order(loan)
        ]
        result[loan["loan_id"]] = {
            "customer_id": loan["id"],
            **_features(loan, previous, parse(loan["loan_date"])),
            "code_gender": _gender(loan),
        }
    return result


def snapshot(valid: list[dict], as_of: date) -> dict[str, dict]:
    """customer_id → the features of a new loan on ``as_of``."""
    result = {}
    for customer in {loan["id"] for loan in valid}:
        previous = [
            loan for loan in valid if loan["id"] == customer and parse(loan["loan_date"]) < as_of
        ]
        if previous:
            latest = max(previous, key=_order)
            result[customer] = _features(latest, previous, as_of)
    return result


def audit(valid: list[dict], as_of: date) -> dict[str, dict]:
    """customer_id → the audit columns of a new loan on ``as_of``: the gender code of
    the customer's latest loan before it. The customers are the snapshot's."""
    result = {}
    for customer in {loan["id"] for loan in valid}:
        previous = [
            loan for loan in valid if loan["id"] == customer and parse(loan["loan_date"]) < as_of
        ]
        if previous:
            result[customer] = {"code_gender": _gender(max(previous, key=_order))}
    return result
