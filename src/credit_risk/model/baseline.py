"""The simple baseline the candidate must beat: a logistic regression.

Same five features, missing values imputed by the training median with an
indicator column (so "not employed" stays visible to a linear model), standardised.
It is kept beside the candidate with joblib, for audit only: serving never loads it.
"""

from __future__ import annotations

import io

import joblib
import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from credit_risk.model.data import Dataset


def fit_baseline(train: Dataset) -> Pipeline:
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    model.fit(train.features, train.labels)
    return model


def predict_baseline(model: Pipeline, data: Dataset) -> np.ndarray:
    return model.predict_proba(data.features)[:, 1]


def baseline_bytes(model: Pipeline) -> bytes:
    """The fitted pipeline in joblib's format (a pickle: load only trusted files)."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()
