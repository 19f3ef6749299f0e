"""Input invariants against the training reference, and staleness against limits."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from credit_risk.monitoring import checks
from credit_risk.monitoring.report import ALERT, OK, WARN
from credit_risk.store import SnapshotInfo

NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
AGE = {"edges": [30.0, 40.0, 50.0], "proportions": [0.25] * 4, "null_rate": 0.0,
       "min": 21.0, "max": 70.0, "domain": None}  # fmt: skip
TENURE = {"edges": [2.0, 5.0], "proportions": [0.3, 0.3, 0.4], "null_rate": 0.17,
          "min": 0.0, "max": 40.0, "domain": None}  # fmt: skip
CAR = {"edges": [0.5], "proportions": [0.62, 0.38], "null_rate": 0.0,
       "min": 0.0, "max": 1.0, "domain": [0, 1]}  # fmt: skip
AMOUNT = {"edges": [20_000.0], "proportions": [0.5, 0.5], "null_rate": 0.0,
          "min": 1_000.0, "max": 101_000.0, "domain": None}  # fmt: skip


def _snapshot(as_of: date) -> SnapshotInfo:
    return SnapshotInfo("run-1", as_of, 10, NOW, NOW, active=True)


# --- staleness -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trained", "expected"),
    [
        (datetime(2024, 6, 1, 12, tzinfo=UTC), OK),  # 29 days, limit 40
        (datetime(2024, 5, 25, 12, tzinfo=UTC), WARN),  # 36 days: past 80% of 40
        (datetime(2024, 5, 21, 12, tzinfo=UTC), WARN),  # exactly 40 days is not beyond it
        (datetime(2024, 5, 21, 11, tzinfo=UTC), ALERT),  # an hour past the limit
    ],
)
def test_model_staleness_against_its_limit(trained, expected):
    section = checks.model_staleness({"created_at": trained.isoformat()}, NOW, limit_days=40)
    assert section["status"] == expected
    assert section["age_days"] == pytest.approx((NOW - trained).total_seconds() / 86_400, abs=1e-3)


def test_a_model_without_a_training_time_is_stale():
    section = checks.model_staleness({}, NOW, limit_days=40)
    assert section["status"] == ALERT
    assert "created_at" in section["reason"]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (date(2024, 6, 29), OK),
        (date(2024, 6, 24), WARN),
        (date(2024, 6, 23), WARN),
        (date(2024, 6, 22), ALERT),
    ],
)
def test_features_staleness_counts_days_since_the_snapshot_as_of_date(as_of, expected):
    # given a limit of 7 days: 6 is past 80% of it (5.6), 8 is past the limit
    section = checks.features_staleness(_snapshot(as_of), NOW.date(), limit_days=7)
    assert section["status"] == expected
    assert section["age_days"] == (NOW.date() - as_of).days


def test_no_active_snapshot_is_stale_features():
    assert checks.features_staleness(None, NOW.date(), limit_days=7)["status"] == ALERT


def test_staleness_counts_each_stale_part_once():
    section = checks.check_staleness(
        {"created_at": "2023-01-01T00:00:00+00:00"},
        _snapshot(date(2024, 1, 1)),
        now=NOW,
        max_model_age_days=40,
        max_features_age_days=7,
    )
    assert section["status"] == ALERT
    assert section["alerts"] == 2


# --- invariants -------------------------------------------------------------------


def test_the_allowed_range_widens_training_and_keeps_non_negative_features_so():
    assert checks.allowed_range(AGE) == pytest.approx((8.75, 82.25))  # 70 - 21 = 49, +-12.25
    assert checks.allowed_range(TENURE) == (0.0, 50.0)
    assert checks.allowed_range({"min": None, "max": None}) is None


def test_values_like_training_break_no_invariant():
    served = np.array([25, 33, 47, 61, 70, 21], dtype=float)
    result = checks.check_feature("age", AGE, served)
    assert result.violations == 0


def test_each_value_outside_the_range_is_a_violation():
    served = np.array([30, 40, -1, 150, 82], dtype=float)
    result = checks.check_feature("age", AGE, served)
    assert result.out_of_range == 2
    assert result.violations == 2


def test_a_fractional_value_of_an_integer_feature_is_a_violation():
    result = checks.check_feature("age", AGE, np.array([30.5, 31.0]))
    assert result.not_integer == 1
    floats = checks.check_feature("avg_amount_loans_previous", AMOUNT, np.array([1234.56]))
    assert floats.not_integer == 0


def test_a_value_outside_a_categorical_domain_is_a_violation():
    result = checks.check_feature("flag_own_car", CAR, np.array([0, 1, 1, 2, 0], dtype=float))
    assert result.out_of_domain == 1
    assert result.allowed is None  # a domain replaces the range


def test_a_null_rate_unlike_training_is_one_violation_either_way():
    # given 17% nulls in training and 1,000 served values
    low, high = checks.null_rate_bounds(0.17, 1_000)
    assert (low, high) == pytest.approx((0.12, 0.22))  # 0.05 beats 4 sigma (0.048)
    nulls_to_zero = np.zeros(1_000)  # a pipeline that fills nulls with 0
    all_null = np.full(1_000, np.nan)
    assert checks.check_feature("years_on_the_job", TENURE, nulls_to_zero).violations == 1
    assert checks.check_feature("years_on_the_job", TENURE, all_null).violations == 1
    typical = np.where(np.arange(1_000) < 170, np.nan, 3.0)
    assert checks.check_feature("years_on_the_job", TENURE, typical).violations == 0


def test_small_windows_get_wider_null_rate_bounds():
    low, high = checks.null_rate_bounds(0.17, 20)
    # 4 sigma of a proportion of 20 values is about 0.34; a rate stays within [0, 1]
    assert (low, high) == pytest.approx((0.0, 0.17 + 4 * (0.17 * 0.83 / 20) ** 0.5))


def test_the_invariants_section_sums_violations_over_features():
    served = {
        "age": np.array([30, 200, 40], dtype=float),
        "flag_own_car": np.array([0, 1, 7], dtype=float),
    }
    section = checks.check_invariants({"age": AGE, "flag_own_car": CAR}, served)
    assert section["violations"] == 2
    assert section["status"] == ALERT
    assert section["features"]["age"]["out_of_range"] == 1
    assert section["features"]["flag_own_car"]["out_of_domain"] == 1
