"""The evaluation gate: may this candidate replace the champion?

Every check is judged on the test loans with its sampling error, not on a point
estimate against a fixed band: with a few hundred test defaults the observed
default rate alone moves by ±8% (95%) from one sample to the next, so a fixed
band fails good models by chance and lets bad ones through. Each check has one of
three outcomes:

- ``pass``: the evidence supports the candidate;
- ``fail``: the evidence shows it is worse than required;
- ``insufficient_evidence``: the test loans cannot tell either way. The candidate
  does not serve (the gate does not pass) and the message says why, which is a
  different thing to act on (more data, a longer test period) than a worse model.

The checks:

- **calibration**: observed defaults against the sum of predicted probabilities,
  a z-test with the binomial variance of the predictions. Passes when the
  difference is not significant, or significant but within
  ``max_calibration_error`` (large samples detect immaterial differences); with
  fewer than ``min_test_defaults`` defaults it cannot be judged (at 100 defaults a
  30% miscalibration is detected at 95%).
- **baseline**: AUC minus the logistic baseline's on the same loans, paired
  DeLong interval; the interval must lie above ``baseline_auc_margin``.
- **champion_auc**: AUC minus the champion's on the same loans, paired DeLong;
  the interval must lie above ``-champion_auc_tolerance`` (shown not worse beyond
  the tolerance), and fails when it lies wholly below.
- **slices**: each segment's AUC interval against ``slice_auc_floor`` the same
  way; a segment with fewer than ``slice_min_defaults`` defaults is not assessed.
- **adverse impact**: per grouping (gender, age band), no judged group's approval
  rate below ``adverse_impact_floor`` times the most favoured group's.
- **age_treatment**: no elderly applicant gets a lower risk at any younger age
  (Regulation B; ``credit_risk.model.fairness``).

The verdict carries every check with its figures, passed or not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from credit_risk.errors import InvalidInputError
from credit_risk.model import fairness, stats

PASS = "pass"  # noqa: S105 (an outcome, not a password)
FAIL = "fail"
INSUFFICIENT = "insufficient_evidence"


@dataclass(frozen=True)
class GateConfig:
    confidence: float = 0.95
    baseline_auc_margin: float = 0.0
    max_calibration_error: float = 0.05  # |mean predicted / observed - 1| deemed immaterial
    min_test_defaults: int = 100
    champion_auc_tolerance: float = 0.005
    slice_auc_floor: float = 0.60
    # A slice with fewer defaults has too noisy an AUC to judge the model by.
    slice_min_defaults: int = 30
    adverse_impact_floor: float = 0.8
    fairness_min_group_loans: int = 100

    def __post_init__(self) -> None:
        # From the CLI and the execution input alike: bad settings are bad input.
        if not 0.5 <= self.confidence < 1:
            raise InvalidInputError(f"gate confidence {self.confidence} must be in [0.5, 1)")
        if self.min_test_defaults < 1 or self.fairness_min_group_loans < 1:
            raise InvalidInputError("gate minimum counts must be at least 1")
        if not 0 < self.adverse_impact_floor <= 1:
            raise InvalidInputError("the adverse impact floor must be in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    def fairness(self) -> fairness.FairnessConfig:
        return fairness.FairnessConfig(
            adverse_impact_floor=self.adverse_impact_floor,
            min_group_loans=self.fairness_min_group_loans,
            confidence=self.confidence,
        )


@dataclass(frozen=True)
class Check:
    check: str
    outcome: str
    message: str
    interval: stats.Interval | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == PASS

    def to_dict(self) -> dict:
        figures = self.interval.to_dict() if self.interval else {}
        return {
            "check": self.check,
            "passed": self.passed,
            "outcome": self.outcome,
            "message": self.message,
            **{key: figures[key] for key in ("estimate", "low", "high") if key in figures},
        }


@dataclass(frozen=True)
class GateVerdict:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def outcome(self) -> str:
        """``passed``; ``failed`` when any check shows a worse model; else
        ``insufficient_evidence``."""
        if self.passed:
            return "passed"
        return "failed" if any(c.outcome == FAIL for c in self.checks) else INSUFFICIENT

    @property
    def reasons(self) -> list[str]:
        return [f"{c.outcome.upper()} {c.check}: {c.message}" for c in self.checks]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "outcome": self.outcome,
            "reasons": [check.to_dict() for check in self.checks],
        }


@dataclass(frozen=True)
class GateEvidence:
    """Everything the gate judges, on the same test loans."""

    labels: np.ndarray
    candidate: np.ndarray  # probabilities
    baseline: np.ndarray
    champion: np.ndarray | None = None
    champion_version: str | None = None
    slices: dict[str, np.ndarray] = field(default_factory=dict)  # name -> row mask
    fairness: dict | None = None  # fairness.group_outcomes
    age_treatment: dict | None = None  # fairness.age_counterfactual


def evaluate_gate(evidence: GateEvidence, config: GateConfig) -> GateVerdict:
    checks = [
        _beats_baseline(evidence, config),
        _calibrated(evidence, config),
        _no_regression(evidence, config),
        *_slices(evidence, config),
    ]
    if evidence.fairness is not None:
        checks += [_adverse_impact(evidence.fairness, g) for g in evidence.fairness["groupings"]]
    if evidence.age_treatment is not None:
        checks.append(_age_treatment(evidence.age_treatment))
    return GateVerdict(checks=tuple(checks))


def _at_least(interval: stats.Interval, bound: float) -> str:
    """Shown above ``bound`` (pass), shown below it (fail), or neither."""
    if interval.low >= bound:
        return PASS
    return FAIL if interval.high < bound else INSUFFICIENT


def _beats_baseline(evidence: GateEvidence, config: GateConfig) -> Check:
    gain = stats.paired_auc_difference(
        evidence.labels, evidence.candidate, evidence.baseline, config.confidence
    )
    if gain is None:
        return Check("baseline", INSUFFICIENT, "the test loans hold a single outcome")
    # Strictly above: a candidate that only matches the baseline is no better.
    margin = config.baseline_auc_margin
    return Check(
        "baseline",
        PASS if gain.low > margin else FAIL if gain.high <= margin else INSUFFICIENT,
        f"AUC gain over the logistic baseline {gain.describe()}, paired DeLong on the "
        f"same test loans; must lie above {margin:+.4f}",
        gain,
    )


def _calibrated(evidence: GateEvidence, config: GateConfig) -> Check:
    test = stats.calibration_test(evidence.labels, evidence.candidate, config.confidence)
    error = test.relative_error
    figures = (
        f"{test.defaults} observed defaults vs {test.expected:.1f} expected"
        + (f", mean predicted / observed - 1 = {error.describe(3)}" if error else "")
        + f", z = {test.z:+.2f} (p = {test.p_value:.3f})"
    )
    if test.defaults < config.min_test_defaults or error is None:
        return Check(
            "calibration",
            INSUFFICIENT,
            f"{figures}: at least {config.min_test_defaults} test defaults needed to judge",
            error,
        )
    if abs(test.z) <= stats.z_value(config.confidence):
        verdict, why = PASS, "consistent with a calibrated model"
    elif abs(error.estimate) <= config.max_calibration_error:
        verdict, why = PASS, f"significant but within ±{config.max_calibration_error:.1%}"
    else:
        verdict, why = FAIL, f"significantly beyond ±{config.max_calibration_error:.1%}"
    return Check("calibration", verdict, f"{figures}: {why}", error)


def _no_regression(evidence: GateEvidence, config: GateConfig) -> Check:
    if evidence.champion is None:
        return Check("champion_auc", PASS, "no champion yet: nothing to regress against")
    change = stats.paired_auc_difference(
        evidence.labels, evidence.candidate, evidence.champion, config.confidence
    )
    if change is None:
        return Check("champion_auc", INSUFFICIENT, "the test loans hold a single outcome")
    return Check(
        "champion_auc",
        _at_least(change, -config.champion_auc_tolerance),
        f"AUC change against champion {evidence.champion_version} {change.describe()}, paired "
        f"DeLong on the same test loans; must lie above {-config.champion_auc_tolerance:+.4f}",
        change,
    )


def _slices(evidence: GateEvidence, config: GateConfig) -> list[Check]:
    checks = []
    for name, mask in evidence.slices.items():
        labels = evidence.labels[mask]
        defaults, loans = int(labels.sum()), len(labels)
        auc = stats.auc_interval(labels, evidence.candidate[mask], config.confidence)
        if auc is None or defaults < config.slice_min_defaults:
            checks.append(
                Check(
                    f"slice {name}",
                    PASS,
                    f"not assessed: {defaults} defaults in {loans} loans "
                    f"(at least {config.slice_min_defaults} needed)",
                )
            )
            continue
        checks.append(
            Check(
                f"slice {name}",
                _at_least(auc, config.slice_auc_floor),
                f"AUC {auc.describe()} on {loans} loans; must lie above the floor "
                f"{config.slice_auc_floor:.2f}",
                auc,
            )
        )
    return checks


def _adverse_impact(outcomes: dict, grouping: str) -> Check:
    groups = outcomes["groupings"][grouping]
    judged = [name for name, g in groups["groups"].items() if g["judged"]]
    name = f"adverse_impact {grouping}"
    if not fairness.compared(groups):
        why = (
            f"the judged group ({', '.join(judged)}) is the most favoured"
            if judged
            else f"no group to judge with {outcomes['min_group_loans']} loans or more"
        )
        return Check(name, PASS, f"not assessed: {why}")
    failing = fairness.below_floor(outcomes, grouping)
    ratios = ", ".join(
        f"{g} {groups['groups'][g]['adverse_impact_ratio']['estimate']:.3f}" for g in judged
    )
    return Check(
        name,
        FAIL if failing else PASS,
        f"approval rate over the most favoured group ({groups['most_favoured']}): {ratios}; "
        f"floor {outcomes['adverse_impact_floor']:.2f}",
    )


def _age_treatment(result: dict) -> Check:
    return Check(
        "age_treatment",
        PASS if result["passed"] else FAIL,
        f"{result['applicants_checked']} applicants aged {result['elderly_age']}+ re-scored at "
        f"ages {result['ages_tried'][0]} to {result['ages_tried'][1]}: {result['violations']} "
        f"had a lower risk at a younger age (largest excess {result['largest_increase']:.2e})",
    )
