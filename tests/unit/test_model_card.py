"""The model card: the original sections from any version's metadata, and the
governance sections (importance, search, model age, fair lending, reasons, gate
outcomes, overrides) with their plots when the metadata holds them."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from credit_risk import schemas
from credit_risk.model import card, synthetic
from credit_risk.model.data import split_out_of_time, to_dataset
from credit_risk.model.governance import (
    permutation_importance,
    staleness_curve,
    supported_model_age,
)
from credit_risk.model.train import Hyperparameters, search_hyperparameters

PNG = b"\x89PNG\r\n\x1a\n"


def _interval(estimate: float, half: float = 0.02) -> dict:
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half}


def _metrics(auc: float) -> dict:
    return {
        "auc": auc,
        "log_loss": 0.1,
        "brier": 0.02,
        "ks": 0.4,
        "mean_predicted": 0.021,
        "observed_rate": 0.02,
        "calibration_error": 0.05,
        "loans": 3000,
        "defaults": 60,
    }


def _old_metadata() -> dict:
    """Metadata as training wrote it before the governance sections existed."""
    return {
        "model_name": "credit-risk",
        "version": "20240101-abc",
        "created_at": "2024-01-01T00:00:00+00:00",
        "feature_names": list(schemas.FEATURE_NAMES),
        "training_data": {
            "uri": "s3://bucket/features",
            "fingerprint": "f" * 64,
            "periods": {
                name: {"loans": 1000, "default_rate": 0.02}
                for name in ("train", "validation", "test")
            },
        },
        "split": {
            "first_loan_date": "2018-01-01",
            "validation_start": "2022-01-01",
            "test_start": "2023-01-01",
            "last_loan_date": "2023-12-31",
        },
        "metrics": _metrics(0.75),
        "baseline": {"metrics": _metrics(0.70)},
        "champion_comparison": None,
        "oracle": None,
        "calibration_table": [
            {"bin": 1, "loans": 300, "mean_predicted": 0.01, "observed_rate": 0.011}
        ],
        "slices": {"flag_own_car=1": {**_metrics(0.74), "loans": 1100, "defaults": 20}},
        "threshold": {
            "value": 0.0909,
            "method": "expected cost",
            "rule": "decline when p >= 0.0909",
            "cost_of_default": 1.0,
            "cost_of_declined_good": 0.1,
            "test_decline_rate": 0.12,
        },
        "gate": {
            "passed": True,
            "reasons": [
                {"check": "baseline", "passed": True, "message": "AUC 0.75 vs 0.70"},
                {"check": "calibration", "passed": True, "message": "within 5%"},
            ],
            "config": {"baseline_auc_margin": 0.01},
        },
        "hyperparameters": Hyperparameters().to_dict(),
        "best_iteration": 40,
        "rounds_trained": 90,
        "code_version": "abc1234",
        "framework": {"xgboost": "3.0"},
    }


def _fairness() -> dict:
    def group(loans: int, rate: float, ratio: float | None, judged: bool = True) -> dict:
        return {
            "decisions": loans,
            "defaults": loans // 40,
            "approval_rate": _interval(rate),
            "adverse_impact_ratio": None if ratio is None else _interval(ratio, 0.05),
            "calibration_error": _interval(0.03, 0.1),
            "auc": _interval(0.74, 0.04) if judged else None,
            "judged": judged,
        }

    return {
        "threshold": 0.0909,
        "adverse_impact_floor": 0.8,
        "min_group_loans": 100,
        "groupings": {
            "gender": {
                "most_favoured": "M",
                "groups": {
                    "F": group(1200, 0.86, 0.97),
                    "M": group(1300, 0.89, 1.0),
                    "unknown": group(40, 0.8, None, judged=False),
                },
            },
            "age_band": {
                "most_favoured": "50-61",
                "groups": {
                    "under 25": group(300, 0.70, 0.77),
                    "50-61": group(700, 0.91, 1.0),
                    "62+": group(90, 0.90, 0.99, judged=False),
                },
            },
        },
    }


AGE_TREATMENT = {
    "method": "monotone constraint: non-increasing in age",
    "elderly_age": 62,
    "applicants_checked": 1234,
    "ages_tried": [18, 61],
    "violations": 0,
    "largest_increase": 0.0,
    "passed": True,
}


@pytest.fixture(scope="module")
def governed() -> dict:
    """Governance figures from a real small model: search, importance, model age."""
    table, _ = synthetic.training_features(30_000, seed=17)
    split = split_out_of_time(to_dataset(table))
    base = replace(Hyperparameters(), num_boost_round=40, early_stopping_rounds=8)
    search = search_hyperparameters(split.train, split.validation, base, trials=2, seed=3)

    def predict(matrix: np.ndarray) -> np.ndarray:
        return search.model.booster.inplace_predict(matrix, missing=np.nan)

    curve = staleness_curve(
        split.test,
        predict(split.test.features),
        split.boundaries.test_start,
        window_days=90,
        min_defaults=15,
    )
    return {
        "importance": permutation_importance(predict, split.test, repeats=2),
        "hyperparameter_search": search.to_dict(),
        "staleness": {
            "curve": curve,
            "supported_age": supported_model_age(curve, tolerance=0.05),
            "max_model_age_days": 40,
        },
    }


def _new_metadata(governed: dict) -> dict:
    metadata = _old_metadata()
    metadata["gate"] = {
        "passed": False,
        "outcome": "insufficient_evidence",
        "reasons": [
            {
                "check": "baseline",
                "passed": True,
                "outcome": "pass",
                "message": "AUC gain over the logistic baseline",
                "estimate": 0.031,
                "low": 0.012,
                "high": 0.05,
            },
            {
                "check": "calibration",
                "passed": False,
                "outcome": "insufficient_evidence",
                "message": "at least 100 test defaults needed to judge",
            },
        ],
        "config": {"confidence": 0.95, "min_test_defaults": 100},
        "overrides": {"min_test_defaults": {"value": 100, "default": 200}},
    }
    return {
        **metadata,
        **copy.deepcopy(governed),
        "fairness": _fairness(),
        "age_treatment": AGE_TREATMENT,
        "reason_table": {
            "version": "2024-01",
            "method": "TreeSHAP contributions, largest positive first",
            "codes": [
                {
                    "code": "SHORT_JOB_TENURE",
                    "statement": "Length of employment",
                    "features": ["years_on_the_job"],
                    "direction": "shorter raises risk",
                },
                {
                    "code": "NO_CREDIT_HISTORY",
                    "statement": "Insufficient credit history",
                    "features": ["nb_previous_loans", "avg_amount_loans_previous"],
                    "direction": "none raises risk",
                },
            ],
        },
        "reason_frequencies": [
            {"code": "SHORT_JOB_TENURE", "declines": 210, "share": 0.6},
            {"code": "NO_CREDIT_HISTORY", "declines": 140, "share": 0.4},
        ],
    }


def test_older_metadata_still_renders_without_the_new_sections():
    text = card.model_card(_old_metadata())

    assert text.startswith("# Model card: credit-risk 20240101-abc")
    assert "## Gate: PASSED" in text
    assert "- PASS baseline: AUC 0.75 vs 0.70" in text
    assert "## Limitations" in text
    for section in (
        "## Feature importance",
        "## Hyperparameter search",
        "## Model age and performance",
        "## Fair lending",
        "## Adverse-action reasons",
    ):
        assert section not in text
    for plot in (card.IMPORTANCE_FILE, card.STALENESS_FILE, card.FAIRNESS_FILE):
        assert plot not in text
    # and the governance section says what an old version did not record
    assert "code version (commit): `abc1234`" in text
    assert "gate settings overridden for this run: not recorded" in text


def test_new_metadata_renders_every_governance_section(governed):
    metadata = _new_metadata(governed)

    text = card.model_card(metadata)

    # then the card references each plot the caller stores beside it
    for plot in (
        card.ROC_FILE,
        card.CALIBRATION_FILE,
        card.IMPORTANCE_FILE,
        card.STALENESS_FILE,
        card.FAIRNESS_FILE,
    ):
        assert f"]({plot})" in text
    # and the importance table lists every feature, most important first
    assert "## Feature importance" in text
    first = metadata["importance"][0]
    assert f"| 1 | {first['feature']} | {first['auc_drop']:.4f} ±" in text
    for name in schemas.FEATURE_NAMES:
        assert f"| {name} |" in text
    # and the search shows every trial, the chosen one marked, the test period unused
    search = metadata["hyperparameter_search"]
    assert "## Hyperparameter search" in text
    assert f"seed {search['seed']}" in text
    assert f"Chosen: trial {search['chosen']}" in text
    assert "The test period played no part in the choice." in text
    assert text.count("| chosen |") == 1
    # and the model-age windows with the supported age and the setting judged against it
    staleness = metadata["staleness"]
    assert "## Model age and performance" in text
    assert staleness["supported_age"]["statement"] in text
    assert "`max_model_age_days` = 40" in text
    for window in staleness["curve"]:
        assert f"| {window['days_from']}-{window['days_to'] - 1} | {window['loans']:,} |" in text
    # and the fair-lending tables, per grouping, with intervals and judged flags
    assert "## Fair lending" in text
    assert "### gender (most favoured: M)" in text
    assert "| F | 1,200 | 30 | 86.0% [84.0%, 88.0%] | 0.9700 [0.9200, 1.0200] |" in text
    assert "| unknown | 40 | 1 | 80.0% [78.0%, 82.0%] | n/a |" in text
    assert "### Age (Regulation B, elderly from 62)" in text
    assert "PASS: 1,234 elderly test applicants re-scored at every age 18-61; 0 given" in text
    # and the reason table with its frequencies on declined loans
    assert "## Adverse-action reasons" in text
    assert "| NO_CREDIT_HISTORY | Insufficient credit history | nb_previous_loans, " in text
    assert "| SHORT_JOB_TENURE | 210 | 60.0% |" in text
    # and the gate's outcomes, with the interval where the check has one
    assert "- PASS baseline: AUC gain over the logistic baseline (estimate 0.031, " in text
    assert "interval [0.012, 0.05])" in text
    assert "- INSUFFICIENT EVIDENCE calibration: at least 100 test defaults" in text
    assert "## Gate: NOT PASSED (insufficient evidence)" in text
    # and the governance record: commit, overrides, the gate's configuration
    assert "code version (commit): `abc1234`" in text
    assert "overridden for this run: `min_test_defaults` = 100 (default 200)" in text
    assert "confidence=0.95" in text


def test_no_overrides_read_none():
    metadata = _old_metadata()
    metadata["gate"]["overrides"] = {}
    assert "gate settings overridden for this run: none" in card.model_card(metadata)


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        ({"supported_age_days": 90, "at_least": True}, "within the supported age (at least 90"),
        ({"supported_age_days": 30, "at_least": True}, "beyond what this test period can show"),
        ({"supported_age_days": 30, "at_least": False}, "EXCEEDS the supported age of 30 days"),
        ({"supported_age_days": None, "at_least": False}, "gives no evidence for it"),
    ],
)
def test_the_age_setting_is_judged_against_the_evidence(supported, expected):
    metadata = _old_metadata()
    metadata["staleness"] = {
        "curve": [],
        "supported_age": {**supported, "tolerance": 0.02, "statement": "s"},
        "max_model_age_days": 40,
    }
    assert expected in card.model_card(metadata)


def test_the_plots_are_real_deterministic_pngs(governed):
    # given the figures of a real model and the fair-lending shapes
    staleness = governed["staleness"]["curve"]
    fairness = _fairness()

    # then each plot is a PNG, the same bytes for the same figures
    for build, figures in (
        (card.importance_png, governed["importance"]),
        (card.staleness_png, staleness),
        (card.fairness_png, fairness),
    ):
        picture = build(figures)
        assert picture.startswith(PNG)
        assert len(picture) > 1000
        assert build(figures) == picture
    # and the model-age plot can mark the floor and the supported age
    supported = governed["staleness"]["supported_age"]
    marked = card.staleness_png(staleness, supported)
    assert marked.startswith(PNG)
    assert marked != card.staleness_png(staleness)


def test_the_plots_draw_degenerate_figures():
    # a curve with no window judged, groupings with no judged group, none at all
    curve = [{"days_from": 0, "days_to": 30, "loans": 10, "defaults": 1, "auc": None}]
    fairness = _fairness()
    fairness["groupings"]["gender"]["most_favoured"] = None
    fairness["groupings"]["gender"]["groups"]["F"]["approval_rate"] = None
    for picture in (
        card.staleness_png(curve),
        card.staleness_png([]),
        card.fairness_png(fairness),
        card.fairness_png({"groupings": {}}),
        card.importance_png([]),
    ):
        assert picture.startswith(PNG)
