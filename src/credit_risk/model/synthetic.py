"""Training-feature tables drawn straight from the generator's default-probability
function, without raw data or Spark.

They exercise the model on its own (tests, quick experiments): every loan gets
features in the contract's shape (nulls where DESIGN.md says so), a gender code (the
audit column, independent of risk as in the generator), a true default probability
from ``credit_risk.datagen.default_probability`` and a label drawn from it. The
end-to-end path (raw loans → feature job → training) is in ``bench/train.py``.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from credit_risk import io, schemas
from credit_risk.datagen import default_probability

_FIRST_DAY = np.datetime64(date(2018, 1, 1), "D")
_DAYS = 6 * 365


def training_features(
    loans: int, seed: int = 7, *, risk_shift: float = 0.0
) -> tuple[pa.Table, pa.Table]:
    """``loans`` rows of training features and their truth sidecar (loan_id, true_pd).

    ``risk_shift`` moves every loan's log-odds, to make a population riskier than
    another one with the same feature distribution.
    """
    rng = np.random.default_rng(seed)
    age = np.floor(np.clip(rng.normal(40, 11, loans), 21, 70))
    employed = rng.random(loans) >= 0.17
    tenure = np.minimum(np.floor(rng.exponential(6.0, loans)), age - 18)
    years_on_the_job = np.where(employed, tenure, np.nan)
    nb_previous = rng.negative_binomial(2, 2.0 / 21.0, loans).astype(float)
    avg_previous = np.where(
        nb_previous > 0, np.round(np.exp(rng.normal(np.log(25_000), 0.7, loans)), 2), np.nan
    )
    car = (rng.random(loans) < 0.38).astype(float)
    income = np.exp(rng.normal(np.log(160_000), 0.5, loans))
    true_pd = default_probability(age, years_on_the_job, nb_previous, avg_previous, car, income)
    if risk_shift:
        logit = np.log(true_pd / (1 - true_pd)) + risk_shift
        true_pd = 1 / (1 + np.exp(-logit))
    status = (rng.random(loans) < true_pd).astype(np.int64)
    loan_ids = np.arange(1, loans + 1, dtype=np.int64)
    loan_dates = np.sort(_FIRST_DAY + rng.integers(0, _DAYS, loans))
    # Drawn last, so that every other column is what it was before gender existed.
    gender = np.where(rng.random(loans) < 0.67, "F", "M")

    def nullable_int(values: np.ndarray) -> pa.Array:
        return pa.array(np.nan_to_num(values).astype(np.int64), mask=np.isnan(values))

    table = pa.table(
        {
            "loan_id": loan_ids,
            "customer_id": pa.array([f"{i:07d}" for i in rng.integers(0, 10**7, loans)]),
            "loan_date": pa.array(loan_dates),
            "age": age.astype(np.int64),
            "years_on_the_job": nullable_int(years_on_the_job),
            "nb_previous_loans": nb_previous.astype(np.int64),
            "avg_amount_loans_previous": pa.array(avg_previous, from_pandas=True),
            "flag_own_car": car.astype(np.int64),
            "code_gender": gender,
            "status": status,
        },
        schema=io.arrow_schema(schemas.TRAINING_COLUMNS),
    )
    truth = pa.table(
        {"loan_id": loan_ids, "true_pd": true_pd}, schema=io.arrow_schema(schemas.TRUTH_COLUMNS)
    )
    return table, truth
