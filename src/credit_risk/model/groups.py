"""The groups outcomes are compared across: gender and age band.

Numpy only, so that the monitor can group served decisions the same way training
groups its test loans. Neither grouping is ever a model input: gender travels
beside the rows as an audit column (``schemas.AUDIT_COLUMNS``), the age band is
read off the ``age`` feature.
"""

from __future__ import annotations

import numpy as np

from credit_risk import schemas

GENDER = "gender"
AGE_BAND = "age_band"
UNKNOWN = "unknown"


def band_name(low: int, high: int) -> str:
    if low == 0:
        return f"under {high}"
    return f"{low}+" if high >= 200 else f"{low}-{high - 1}"


AGE_BAND_NAMES = tuple(band_name(low, high) for low, high in schemas.AGE_BANDS)
ELDERLY_BAND = band_name(schemas.ELDERLY_AGE, 200)


def age_bands(ages: np.ndarray) -> np.ndarray:
    """The band of each age (``unknown`` for NaN), as an object array of names."""
    ages = np.asarray(ages, dtype=np.float64)
    bands = np.full(len(ages), UNKNOWN, dtype=object)
    for (low, high), name in zip(schemas.AGE_BANDS, AGE_BAND_NAMES, strict=True):
        bands[(ages >= low) & (ages < high)] = name
    return bands


def genders(values: np.ndarray) -> np.ndarray:
    """Gender codes as group names, ``unknown`` where the extract has none."""
    known = set(schemas.CODE_GENDER)
    return np.array([v if v in known else UNKNOWN for v in values], dtype=object)


def grouping(ages: np.ndarray, gender_codes: np.ndarray | None) -> dict[str, np.ndarray]:
    """Each grouping (name → group name per row) that the rows allow."""
    result = {AGE_BAND: age_bands(ages)}
    if gender_codes is not None:
        result[GENDER] = genders(gender_codes)
    return result
