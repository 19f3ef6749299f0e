"""The generator's dirt meets the job's rules: every dirty row the generator writes is
quarantined with the rule its dirt breaks, and nothing else is."""

from __future__ import annotations

from collections import Counter

import pyarrow.csv as pa_csv
import pytest

from credit_risk import datagen, io, schemas
from credit_risk.features import run_feature_job
from credit_risk.features.validate import RULE_NAMES
from tests import features_reference as reference
from tests.integration.features.conftest import read_output

pytestmark = pytest.mark.spark

# The dirt kinds of datagen and the rules they break, column by column.
NULL_RULES = {
    "loan_id": "missing_loan_id",
    "id": "missing_customer_id",
    "loan_date": "missing_loan_date",
    "birthday": "missing_birthday",
    "loan_amount": "missing_loan_amount",
    "flag_own_car": "missing_flag_own_car",
    "status": "missing_status",
}


def expected_reasons(rows: list[dict]) -> list[str | None]:
    """The rules each generated row breaks, derived from the dirt kinds alone."""
    assert set(NULL_RULES) == set(datagen.NULL_DIRT_COLUMNS)
    seen: Counter = Counter()
    result = []
    for row in rows:
        broken = {rule for column, rule in NULL_RULES.items() if row[column] is None}
        for column in schemas.RAW_DATE_COLUMNS:
            if row[column] is not None and reference.parse(row[column]) is None:
                broken.add(f"invalid_{column}")
        if row["loan_amount"] is not None and row["loan_amount"] < 0:
            broken.add("negative_loan_amount")
        for column in ("flag_own_car", "flag_own_realty"):
            if row[column] is not None and row[column] not in schemas.YES_NO:
                broken.add(f"invalid_{column}")
        if row["loan_id"] is not None:
            content = tuple(row.values())
            if seen[content]:
                broken.add("duplicate_record")
            seen[content] += 1
        result.append(";".join(name for name in RULE_NAMES if name in broken) or None)
    return result


def test_each_dirt_kind_is_quarantined_with_its_rule(spark, tmp_path):
    # given generated loans with every kind of dirt at 3%, as the CSV a user would get
    rates = datagen.DirtRates(0.03, 0.03, 0.03, 0.03, 0.03)
    raw_path = datagen.generate(
        str(tmp_path / "loans.csv"), datagen.GeneratorConfig(loans=6_000, seed=5, dirt=rates)
    )
    rows = pa_csv.read_csv(
        raw_path,
        convert_options=pa_csv.ConvertOptions(
            column_types=io.arrow_schema(schemas.RAW_LOAN_COLUMNS),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    ).to_pylist()
    expected = expected_reasons(rows)

    # when the job runs
    report = run_feature_job(spark, raw_path, str(tmp_path / "out"), "2023-01-01", "dirt")

    # then each row is quarantined with exactly the rules its dirt breaks ...
    quarantined = read_output(str(tmp_path / "out" / "quarantine"))
    assert Counter(
        (*(r[name] for name in schemas.RAW_LOAN_COLUMN_NAMES), r["reason"]) for r in quarantined
    ) == Counter(
        (*row.values(), why) for row, why in zip(rows, expected, strict=True) if why is not None
    )
    # ... the per-rule counts say the same, every dirt kind was exercised, no other rule
    # fired on the clean part of the data, and clean rows all reach the features
    per_rule = Counter(rule for why in expected if why for rule in why.split(";"))
    assert report["violations"] == {name: per_rule[name] for name in RULE_NAMES}
    dirt_rules = {*NULL_RULES.values(), "negative_loan_amount", "duplicate_record"}
    dirt_rules |= {
        f"invalid_{c}" for c in (*schemas.RAW_DATE_COLUMNS, "flag_own_car", "flag_own_realty")
    }
    assert all(per_rule[rule] > 0 for rule in dirt_rules), per_rule
    assert report["valid_rows"] == expected.count(None) == report["training_rows"]
