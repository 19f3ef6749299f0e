"""Reading and splitting training features: contract checks, nulls, out-of-time split."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from credit_risk import io, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import synthetic
from credit_risk.model.data import (
    SplitConfig,
    join_truth,
    read_training_features,
    split_out_of_time,
    to_dataset,
)


@pytest.fixture(scope="module")
def tables() -> tuple[pa.Table, pa.Table]:
    return synthetic.training_features(20_000, seed=11)


def test_split_is_out_of_time_with_recorded_boundaries(tables):
    # given loans spread over six years
    data = to_dataset(tables[0])

    # when splitting with the default shares
    split = split_out_of_time(data, SplitConfig(validation_fraction=0.15, test_fraction=0.15))

    # then every training loan precedes every validation loan, which precede the test
    b = split.boundaries
    assert split.train.loan_dates.max() < np.datetime64(b.validation_start)
    assert split.validation.loan_dates.min() >= np.datetime64(b.validation_start)
    assert split.validation.loan_dates.max() < np.datetime64(b.test_start)
    assert split.test.loan_dates.min() >= np.datetime64(b.test_start)
    assert split.test.loan_dates.max() == np.datetime64(b.last_loan_date)
    # and no loan is lost or counted twice
    ids = np.concatenate([p.loan_ids for p in split.periods().values()])
    assert sorted(ids) == sorted(data.loan_ids)
    # and the shares are close to the requested ones (whole days move a few loans)
    assert split.test.rows / data.rows == pytest.approx(0.15, abs=0.01)
    assert split.validation.rows / data.rows == pytest.approx(0.15, abs=0.01)
    assert b.to_dict()["test_start"] == b.test_start.isoformat()


def test_loans_of_one_day_stay_in_one_period(tables):
    # given all the loans of the test-boundary day
    split = split_out_of_time(to_dataset(tables[0]))
    boundary = np.datetime64(split.boundaries.test_start)

    # then none of them is in the validation period
    assert not (split.validation.loan_dates == boundary).any()
    assert (split.test.loan_dates == boundary).any()


def test_a_period_without_defaults_is_refused(tables):
    # given training features where nobody defaults after 2023
    table = tables[0]
    late = pc.greater_equal(table.column("loan_date"), pa.scalar(date(2023, 1, 1)))
    status = pc.if_else(late, 0, table.column("status"))
    table = table.set_column(table.schema.get_field_index("status"), "status", status)

    # when splitting, then the error says which period lacks an outcome
    with pytest.raises(InvalidInputError, match="test period"):
        split_out_of_time(to_dataset(table))


def test_nulls_become_nan_not_zero(tables):
    # given a table where the not-employed have a null years_on_the_job
    table = tables[0]
    nulls = table.column("years_on_the_job").null_count
    assert nulls > 0

    # when turned into model inputs
    data = to_dataset(table)

    # then the nulls are NaN, and no zero was invented for them
    tenure = data.column("years_on_the_job")
    assert np.isnan(tenure).sum() == nulls
    assert (tenure == 0).sum() == pc.sum(pc.equal(table.column("years_on_the_job"), 0)).as_py()


def test_read_accepts_spark_int32_and_fingerprints_the_bytes(tmp_path, tables):
    # given a folder as Spark writes it, with int32 counts and a _SUCCESS marker
    table = tables[0]
    index = table.schema.get_field_index("nb_previous_loans")
    narrow = table.set_column(index, "nb_previous_loans", pc.cast(table.column(index), pa.int32()))
    pq.write_table(narrow.slice(0, 10_000), tmp_path / "part-00000.parquet")
    pq.write_table(narrow.slice(10_000), tmp_path / "part-00001.parquet")
    (tmp_path / "_SUCCESS").write_text("")

    # when read
    first = read_training_features(str(tmp_path))

    # then the types are the contract's and all the rows are there
    assert first.table.schema.field("nb_previous_loans").type == pa.int64()
    assert first.table.num_rows == table.num_rows
    assert first.files == 2
    # and the fingerprint changes when a byte of the data does
    assert read_training_features(str(tmp_path)).fingerprint == first.fingerprint
    pq.write_table(narrow.slice(1), tmp_path / "part-00000.parquet")
    assert read_training_features(str(tmp_path)).fingerprint != first.fingerprint


def test_missing_columns_and_bad_labels_are_clear_errors(tmp_path, tables):
    # given a file without the label
    pq.write_table(tables[0].drop_columns([schemas.LABEL_COLUMN]), tmp_path / "a.parquet")
    with pytest.raises(InvalidInputError, match="lacks the training-feature columns status"):
        read_training_features(str(tmp_path))

    # given a label outside {0, 1}
    table = tables[0]
    index = table.schema.get_field_index("status")
    bad = table.set_column(index, "status", pc.add(table.column("status"), 1))
    with pytest.raises(InvalidInputError, match="must be 0 or 1"):
        to_dataset(bad)

    # given a NaN or an infinity among the features (a null is a missing value, and fine)
    for poison in (float("nan"), float("inf")):
        column = "avg_amount_loans_previous"
        values = table.column(column).to_pylist()
        values[0] = poison
        poisoned = table.set_column(
            table.schema.get_field_index(column), column, pa.array(values, pa.float64())
        )
        with pytest.raises(InvalidInputError, match=rf"NaN or infinite values in {column} \(1\)"):
            to_dataset(poisoned)

    # given no Parquet at all
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no Parquet files"):
        read_training_features(str(tmp_path / "empty"))


def test_audit_columns_travel_beside_the_rows_and_never_into_the_features(tables):
    # given training features with a gender code per loan, one of them missing
    table = tables[0]
    genders = table.column("code_gender").to_pylist()
    genders[0] = None
    table = table.set_column(
        table.schema.get_field_index("code_gender"), "code_gender", pa.array(genders)
    )

    # when turned into arrays and split
    data = to_dataset(table)
    split = split_out_of_time(data)

    # then each audit column is an object array beside the rows, None where null
    assert list(data.audit) == list(schemas.AUDIT_COLUMN_NAMES)
    assert data.audit["code_gender"].dtype == object
    assert data.audit["code_gender"].tolist() == genders
    # and the features are the model's inputs only
    assert data.features.shape == (table.num_rows, len(schemas.FEATURE_NAMES))
    assert not set(schemas.AUDIT_COLUMN_NAMES) & set(schemas.FEATURE_NAMES)
    # and every period keeps each loan's own audit values
    by_loan = dict(zip(data.loan_ids.tolist(), genders, strict=True))
    for period in split.periods().values():
        assert period.audit["code_gender"].tolist() == [by_loan[i] for i in period.loan_ids]


def test_training_features_written_before_the_audit_columns_are_still_read(tmp_path, tables):
    # given a feature run written before gender was carried (no code_gender column)
    old = tables[0].drop_columns(list(schemas.AUDIT_COLUMN_NAMES))
    pq.write_table(old, tmp_path / "part-00000.parquet")

    # when read
    data = read_training_features(str(tmp_path))

    # then the rows are all there, with the audit columns null and named as filled
    assert data.filled_audit_columns == schemas.AUDIT_COLUMN_NAMES
    assert data.table.schema == io.arrow_schema(schemas.TRAINING_COLUMNS)
    assert data.table.column("code_gender").null_count == old.num_rows
    dataset = to_dataset(data.table)
    assert set(dataset.audit["code_gender"].tolist()) == {None}
    # and a model can still be trained from them: the features are unchanged
    assert np.array_equal(dataset.features, to_dataset(tables[0]).features, equal_nan=True)
    # while a current run fills nothing
    pq.write_table(tables[0], tmp_path / "part-00000.parquet")
    assert read_training_features(str(tmp_path)).filled_audit_columns == ()


def test_truth_joins_on_loan_id_with_nan_for_unknown_loans():
    truth = {"loan_id": np.array([2, 5, 9]), "true_pd": np.array([0.2, 0.5, 0.9])}
    assert np.allclose(
        join_truth(truth, np.array([9, 1, 5, 10])), [0.9, np.nan, 0.5, np.nan], equal_nan=True
    )
