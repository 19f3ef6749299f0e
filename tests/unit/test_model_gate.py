"""The evaluation gate: each branch, and every reason in the verdict."""

from __future__ import annotations

from credit_risk.model.gate import GateConfig, evaluate_gate

CONFIG = GateConfig(
    baseline_auc_margin=0.01,
    max_calibration_error=0.05,
    champion_auc_tolerance=0.005,
    champion_calibration_tolerance=0.02,
    slice_auc_floor=0.6,
    slice_min_defaults=30,
)


def _figures(auc: float, calibration_error: float = 0.01, **extra) -> dict:
    return {
        "auc": auc,
        "calibration_error": calibration_error,
        "mean_predicted": 0.02 * (1 + calibration_error),
        "observed_rate": 0.02,
        **extra,
    }


def _slice(auc: float | None, defaults: int = 100) -> dict:
    return {"auc": auc, "defaults": defaults, "loans": 5_000}


def _failed(verdict) -> list[str]:
    return [check.check for check in verdict.checks if not check.passed]


def test_a_good_candidate_passes_and_every_check_is_reported():
    candidate = _figures(0.78, slices={"flag_own_car=1": _slice(0.74)})
    verdict = evaluate_gate(candidate, _figures(0.75), CONFIG, _figures(0.779), "v1")
    assert verdict.passed
    assert [c.check for c in verdict.checks] == [
        "baseline",
        "calibration",
        "champion_auc",
        "champion_calibration",
        "slice flag_own_car=1",
    ]
    assert all(reason.startswith("PASS ") for reason in verdict.reasons)
    assert verdict.to_dict()["passed"] is True


def test_no_champion_is_a_passing_check():
    verdict = evaluate_gate(_figures(0.78), _figures(0.75), CONFIG)
    assert verdict.passed
    assert "no champion yet" in verdict.checks[2].message


def test_a_candidate_not_beating_the_baseline_by_the_margin_fails():
    # given a candidate only 0.005 above the baseline, the margin being 0.01
    verdict = evaluate_gate(_figures(0.755), _figures(0.75), CONFIG)
    assert not verdict.passed
    assert _failed(verdict) == ["baseline"]
    assert "gain +0.0050" in verdict.checks[0].message


def test_an_auc_regression_against_the_champion_fails():
    # given a champion 0.01 better on the same test loans, the tolerance being 0.005
    verdict = evaluate_gate(_figures(0.77), _figures(0.75), CONFIG, _figures(0.78), "v7")
    assert not verdict.passed
    assert _failed(verdict) == ["champion_auc"]
    assert "champion v7" in verdict.reasons[2]


def test_a_calibration_regression_against_the_champion_fails():
    # given a candidate 4.5% off where the champion is 1% off (tolerance 2 points)
    candidate = _figures(0.78, calibration_error=-0.045)
    verdict = evaluate_gate(candidate, _figures(0.75), CONFIG, _figures(0.78, 0.01), "v7")
    assert _failed(verdict) == ["champion_calibration"]


def test_a_miscalibrated_candidate_fails_whatever_its_auc():
    # given the reweighting failure: mean prediction 0.41 for a rate of 0.012
    candidate = {
        "auc": 0.80,
        "calibration_error": 0.41 / 0.012 - 1,
        "mean_predicted": 0.41,
        "observed_rate": 0.012,
    }
    verdict = evaluate_gate(candidate, _figures(0.75), CONFIG)
    assert _failed(verdict) == ["calibration"]


def test_a_slice_below_the_floor_fails_and_small_slices_are_not_judged():
    candidate = _figures(
        0.78,
        slices={
            "age under 25": _slice(0.55),
            "age 65+": _slice(0.40, defaults=12),
            "no previous loans": _slice(None, defaults=0),
        },
    )
    verdict = evaluate_gate(candidate, _figures(0.75), CONFIG)
    assert not verdict.passed
    assert _failed(verdict) == ["slice age under 25"]
    small = [c for c in verdict.checks if c.check in ("slice age 65+", "slice no previous loans")]
    assert all(c.passed and c.message.startswith("not assessed") for c in small)
