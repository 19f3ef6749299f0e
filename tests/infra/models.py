"""Small real models for the infra scenarios that need a registry but no training, and
the stand-in for a feature job that must not run."""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost as xgb

from credit_risk import schemas
from credit_risk.registry import Registry

CHAMPION, CANDIDATE = "20231201T030000Z-aaaa1111", "20240101T030000Z-0123abcd"


def no_spark() -> Any:
    raise AssertionError("no feature job runs in these scenarios")


def publish(models: Registry, version: str, seed: int) -> str:
    """A small real model over the store's features, past its gate."""
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(0, 60, size=(300, len(schemas.FEATURE_NAMES)))
    labels = (inputs[:, 0] + rng.normal(0, 10, size=300) < 30).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(inputs, label=labels, feature_names=list(schemas.FEATURE_NAMES)),
        num_boost_round=5,
    )
    metadata = {
        "feature_names": list(schemas.FEATURE_NAMES),
        "threshold": {"value": 0.5},
        "gate": {"passed": True},
    }
    models.publish(version, bytes(booster.save_raw("ubj")), metadata)
    return version
