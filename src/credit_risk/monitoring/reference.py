"""The training reference: how the model's inputs and scores were distributed.

Built at training time and stored in the model's ``metadata.json`` under
``monitoring_reference``; the monitor compares the scoring log with it. For each
feature it keeps bins and their shares (for PSI), the null rate, the range, and for
categorical features the domain (for the invariants); for the score, bins and
shares. Bins are fixed here, once: the monitor bins served values with the same
``bin_proportions`` over the same edges, so a bin means the same on both sides.

Binning: numeric features get the distinct training deciles as interior edges (up
to 10 bins of about a tenth of the loans each). Integer features with few values
(a flag, a small count) are categorical: one bin per value, the edges being the
midpoints between consecutive values, so that the same ``bin_proportions`` applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from credit_risk import schemas
from credit_risk.errors import InvalidInputError

DECILES = tuple(q / 10 for q in range(1, 10))
# An integer feature with at most this many distinct values is categorical.
MAX_CATEGORICAL_VALUES = 12
_INTEGER_FEATURES = frozenset(
    name for name, kind in schemas.FEATURE_COLUMNS if kind == schemas.INT64
)


def bin_proportions(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Shares of the non-null values in the bins ``(-inf, e0), [e0, e1), ...,
    [e_last, +inf)`` (``len(edges) + 1`` of them). NaN is null and left out;
    with no values at all every share is 0."""
    bounds = np.asarray(edges, dtype=np.float64)
    if bounds.ndim != 1 or not np.isfinite(bounds).all() or np.any(np.diff(bounds) <= 0):
        raise InvalidInputError(f"bin edges must be finite and increasing, got {list(edges)}")
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    # side="right": a value equal to an edge belongs to the bin that edge opens.
    counts = np.bincount(np.searchsorted(bounds, data, side="right"), minlength=bounds.size + 1)
    if data.size == 0:
        return np.zeros(bounds.size + 1)
    return counts / data.size


def decile_edges(values: np.ndarray) -> list[float]:
    """The distinct deciles of the (non-null) values above their minimum: a bin
    below the smallest training value would hold nothing."""
    if values.size == 0:
        return []
    deciles = np.unique(np.quantile(values, DECILES))
    return [float(edge) for edge in deciles if edge > values.min()]


def _domain(name: str, values: np.ndarray) -> list[int] | None:
    """The values of a categorical feature, or None when it is numeric."""
    integral = bool(np.all(values == np.round(values)))
    is_integer = name in _INTEGER_FEATURES if name in schemas.FEATURE_NAMES else integral
    if not is_integer or not integral or values.size == 0:
        return None
    distinct = np.unique(values)
    if distinct.size > MAX_CATEGORICAL_VALUES:
        return None
    return [int(value) for value in distinct]


def feature_reference(name: str, column: np.ndarray) -> dict[str, Any]:
    """One feature's entry of the reference (NaN = null)."""
    column = np.asarray(column, dtype=np.float64)
    present = column[~np.isnan(column)]
    domain = _domain(name, present)
    if domain is not None:
        edges = [(low + high) / 2 for low, high in pairwise(domain)]
    else:
        edges = decile_edges(present)
    return {
        "edges": edges,
        "proportions": bin_proportions(present, edges).tolist(),
        "null_rate": float(1.0 - present.size / column.size) if column.size else 0.0,
        "min": float(present.min()) if present.size else None,
        "max": float(present.max()) if present.size else None,
        "domain": domain,
    }


def build_reference(features: Mapping[str, np.ndarray], probabilities: np.ndarray) -> dict:
    """The reference of a model from the loans it was measured on: each feature's
    column (NaN = null) and the model's probabilities for the same loans."""
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise InvalidInputError("the reference needs a non-empty 1-D array of probabilities")
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise InvalidInputError("probabilities must lie within [0, 1]")
    columns = {}
    for name, column in features.items():
        array = np.asarray(column, dtype=np.float64)
        if array.shape != scores.shape:
            raise InvalidInputError(
                f"feature {name!r} has {array.shape} values for {scores.shape} probabilities"
            )
        columns[name] = array
    score_edges = decile_edges(scores)
    return {
        "rows": int(scores.size),
        "features": {name: feature_reference(name, column) for name, column in columns.items()},
        "score": {
            "edges": score_edges,
            "proportions": bin_proportions(scores, score_edges).tolist(),
        },
    }
