"""The evaluation gate: may this candidate replace the champion?

A candidate passes only when every check passes: it beats the simple baseline by a
margin, it is calibrated, it does not regress against the champion (measured on
the same test rows), and no slice falls below the floor. The verdict carries every
check with its figures, passed or not, so a rejected model says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GateConfig:
    baseline_auc_margin: float = 0.01
    max_calibration_error: float = 0.05  # |mean predicted / observed - 1| on test
    champion_auc_tolerance: float = 0.005
    champion_calibration_tolerance: float = 0.02
    slice_auc_floor: float = 0.60
    # A slice with fewer defaults has too noisy an AUC to judge the model by.
    slice_min_defaults: int = 30

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    check: str
    passed: bool
    message: str


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        return [f"{'PASS' if c.passed else 'FAIL'} {c.check}: {c.message}" for c in self.checks]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": [asdict(check) for check in self.checks]}


def evaluate_gate(
    candidate: dict,
    baseline: dict,
    config: GateConfig,
    champion: dict | None = None,
    champion_version: str | None = None,
) -> GateVerdict:
    """``candidate``, ``baseline`` and ``champion`` are ``evaluate.metrics`` results
    on the same test rows; ``candidate`` may carry ``slices`` (name → metrics)."""
    checks = [
        _beats_baseline(candidate, baseline, config),
        _calibrated(candidate, config),
        *_no_regression(candidate, champion, champion_version, config),
        *_slices(candidate.get("slices", {}), config),
    ]
    return GateVerdict(passed=all(c.passed for c in checks), checks=tuple(checks))


def _beats_baseline(candidate: dict, baseline: dict, config: GateConfig) -> Check:
    gain = candidate["auc"] - baseline["auc"]
    return Check(
        "baseline",
        gain >= config.baseline_auc_margin,
        f"AUC {candidate['auc']:.4f} vs logistic baseline {baseline['auc']:.4f} "
        f"(gain {gain:+.4f}, margin required {config.baseline_auc_margin:.4f})",
    )


def _calibrated(candidate: dict, config: GateConfig) -> Check:
    error = candidate["calibration_error"]
    return Check(
        "calibration",
        error is not None and abs(error) <= config.max_calibration_error,
        f"mean predicted {candidate['mean_predicted']:.5f} vs observed "
        f"{candidate['observed_rate']:.5f} ({_pct(error)}, allowed "
        f"±{config.max_calibration_error:.1%})",
    )


def _no_regression(
    candidate: dict, champion: dict | None, version: str | None, config: GateConfig
) -> list[Check]:
    if champion is None:
        return [Check("champion", True, "no champion yet: nothing to regress against")]
    drop = champion["auc"] - candidate["auc"]
    cand_err, champ_err = abs(candidate["calibration_error"]), abs(champion["calibration_error"])
    return [
        Check(
            "champion_auc",
            drop <= config.champion_auc_tolerance,
            f"AUC {candidate['auc']:.4f} vs champion {version} {champion['auc']:.4f} on the same "
            f"test loans (change {-drop:+.4f}, tolerance {config.champion_auc_tolerance:.4f})",
        ),
        Check(
            "champion_calibration",
            cand_err <= champ_err + config.champion_calibration_tolerance,
            f"calibration error {cand_err:.1%} vs champion {version} {champ_err:.1%} "
            f"(tolerance {config.champion_calibration_tolerance:.1%})",
        ),
    ]


def _slices(slices: dict[str, dict], config: GateConfig) -> list[Check]:
    checks = []
    for name, figures in slices.items():
        auc = figures.get("auc")
        if auc is None or figures["defaults"] < config.slice_min_defaults:
            checks.append(
                Check(
                    f"slice {name}",
                    True,
                    f"not assessed: {figures['defaults']} defaults in {figures['loans']} loans "
                    f"(at least {config.slice_min_defaults} needed)",
                )
            )
            continue
        checks.append(
            Check(
                f"slice {name}",
                auc >= config.slice_auc_floor,
                f"AUC {auc:.4f} on {figures['loans']} loans (floor {config.slice_auc_floor:.2f})",
            )
        )
    return checks


def _pct(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.1%}"
