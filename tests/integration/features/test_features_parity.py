"""Training/serving parity on generated data: the first loan of a customer on a date d
gets exactly the features that the snapshot as of d serves for that customer."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import pytest

from credit_risk import datagen, schemas
from credit_risk.features import (
    apply_rules,
    prepare,
    read_raw_loans,
    serving_snapshot,
    training_features,
)
from credit_risk.features.validate import conflicting_loan_ids, is_valid

pytestmark = pytest.mark.spark


def test_first_loan_on_a_date_matches_the_snapshot_as_of_that_date(spark, tmp_path):
    # given generated loans (with their dirt) and the training features
    raw_path = datagen.generate(
        str(tmp_path / "loans.parquet"), datagen.GeneratorConfig(loans=4_000, seed=11)
    )
    prepared = prepare(read_raw_loans(spark, raw_path)).persist()
    valid = apply_rules(prepared, conflicting_loan_ids(prepared)).where(is_valid())
    training = [row.asDict() for row in training_features(valid).collect()]
    by_customer = defaultdict(list)
    for row in training:
        by_customer[row["customer_id"]].append(row)
    for loans in by_customer.values():
        loans.sort(key=lambda r: (r["loan_date"], r["loan_id"]))
    # the busiest loan dates, so that many customers are compared
    dates = [d for d, _ in Counter(r["loan_date"] for r in training).most_common(3)]

    compared = 0
    for as_of in dates:
        # when the snapshot is computed as of that date
        snapshot = {r.customer_id: r.asDict() for r in serving_snapshot(valid, as_of).collect()}
        for loans in by_customer.values():
            on_day = [i for i, loan in enumerate(loans) if loan["loan_date"] == as_of]
            if not on_day or on_day[0] == 0:
                continue  # no loan that day, or a first-ever loan: no snapshot row yet
            first, before = loans[on_day[0]], loans[on_day[0] - 1]
            served = snapshot[first["customer_id"]]
            # then the history and the time-derived features are equal ...
            for name in ("nb_previous_loans", "age", "years_on_the_job"):
                assert served[name] == first[name], (first, served, name)
            assert math.isclose(
                served["avg_amount_loans_previous"],
                first["avg_amount_loans_previous"],
                rel_tol=1e-12,
            )
            # ... and the car flag is the latest known one: the loan's own flag unless the
            # customer reported a new car with this very loan
            assert served["flag_own_car"] == before["flag_own_car"]
            compared += 1
    prepared.unpersist()
    assert compared >= 20, "too few pairs compared to say anything"
    assert set(schemas.FEATURE_NAMES) <= set(training[0])
