"""The feature contract of DESIGN.md, "Features" and "Serving snapshot", in Spark.

Inputs are validated rows (``validate.prepare`` + ``apply_rules``, valid only),
partitioned by customer id. Training features come from one window per customer
ordered by (loan_date, loan_id); the snapshot and the audit snapshot from one
aggregate per customer (``latest_before``). None needs another shuffle: all reuse the
partitioning by customer.

The audit columns (``schemas.AUDIT_COLUMNS``: the applicant's gender) ride beside
the training rows and, per customer, beside the snapshot, so that outcomes can be
compared across groups; they are never a feature.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

from credit_risk import schemas
from credit_risk.features.spark import spark_schema
from credit_risk.features.validate import BIRTHDAY, JOB_START, LOAN_DATE


def whole_years(start: Column, end: Column) -> Column:
    """Whole calendar years from ``start`` to ``end``: the difference of the years,
    one less when the anniversary (month, day) is not reached yet in ``end``'s year.

    A 29 February anniversary is reached on 1 March in common years (28 February is
    still "before"), the usual reading of "whole years".
    """
    not_reached = (F.month(end) < F.month(start)) | (
        (F.month(end) == F.month(start)) & (F.dayofmonth(end) < F.dayofmonth(start))
    )
    return F.year(end) - F.year(start) - F.when(not_reached, 1).otherwise(0)


def years_on_the_job(job_start: Column, at: Column) -> Column:
    """Whole years in the job at ``at``; null when the start is missing or after
    ``at`` (the far-future not-employed sentinel included), so never negative."""
    return F.when(job_start <= at, whole_years(job_start, at))


def flag_own_car(flag: Column) -> Column:
    # Validation has quarantined anything but Y/N, so this is total on valid rows.
    return F.when(flag == "Y", 1).when(flag == "N", 0)


def code_gender(value: Column) -> Column:
    """The raw gender code where it is one of the contract's codes, else null.

    Validation quarantines other codes today; the guard keeps the audit column to
    codes the fairness groupings know should that rule ever be relaxed.
    """
    return F.when(value.isin(list(schemas.CODE_GENDER)), value)


def conform(frame: DataFrame, columns: Iterable[tuple[str, str]]) -> DataFrame:
    """``frame`` with exactly the contract's columns, in order, cast to their types,
    all nullable as in the contract.

    Spark marks counts, row numbers and literals as required, and Parquet keeps that;
    readers that compare schemas (pyarrow's ``==``, ``concat_tables``) would then see
    a different type. Guarding them with the (nullable) customer id — never null on a
    valid row — makes them nullable without changing a value; the optimizer cannot
    fold the guard away, as it would fold ``x IS NOT NULL`` on a required ``x``.
    """
    schema = spark_schema(columns)
    selected = []
    for field in schema.fields:
        value = F.col(field.name).cast(field.dataType)
        if not frame.schema[field.name].nullable:
            value = F.when(F.col("customer_id").isNotNull(), value)
        selected.append(value.alias(field.name))
    return frame.select(*selected)


def training_features(valid: DataFrame) -> DataFrame:
    """One row per valid loan: ids, loan date, the five features, the audit columns
    (the loan's own gender code) and the label.

    Loans of a customer are ordered by (loan_date, loan_id): of two loans on the same
    day, the one with the smaller loan_id counts as previous for the other.
    """
    ordered = Window.partitionBy("id").orderBy(LOAN_DATE, "loan_id")
    earlier = ordered.rowsBetween(Window.unboundedPreceding, -1)
    loan_date = F.col(LOAN_DATE)
    features = valid.select(
        "loan_id",
        F.col("id").alias("customer_id"),
        loan_date.alias("loan_date"),
        whole_years(F.col(BIRTHDAY), loan_date).alias("age"),
        years_on_the_job(F.col(JOB_START), loan_date).alias("years_on_the_job"),
        (F.row_number().over(ordered) - 1).alias("nb_previous_loans"),
        F.avg("loan_amount").over(earlier).alias("avg_amount_loans_previous"),
        flag_own_car(F.col("flag_own_car")).alias("flag_own_car"),
        code_gender(F.col("code_gender")).alias("code_gender"),
        "status",
    )
    return conform(features, schemas.TRAINING_COLUMNS)


def latest_before(valid: DataFrame, as_of: date) -> DataFrame:
    """One row per customer with a loan before ``as_of``: the count and mean amount of
    those loans, and ``latest``, the struct of the latest of them (by loan_date, then
    loan_id) with the attributes the snapshot and the audit snapshot take from it.

    Both are built on this aggregate; the job caches it, so that the rows of every
    valid loan are aggregated once for the two (Spark's cache serves any plan that
    computes the same result).
    """
    attributes = (BIRTHDAY, JOB_START, "flag_own_car", *schemas.AUDIT_COLUMN_NAMES)
    return (
        valid.where(F.col(LOAN_DATE) < F.lit(as_of))
        .groupBy("id")
        .agg(
            F.count(F.lit(1)).alias("nb_previous_loans"),
            F.avg("loan_amount").alias("avg_amount_loans_previous"),
            F.max(F.struct(LOAN_DATE, "loan_id", *attributes)).alias("latest"),
        )
    )


def serving_snapshot(valid: DataFrame, as_of: date) -> DataFrame:
    """One row per customer with a loan before ``as_of``: the features a new loan
    requested on ``as_of`` would get.

    Loans dated before ``as_of`` are the previous ones; ages are taken at ``as_of``;
    birthday, job start and car come from the latest of those loans (by loan_date,
    then loan_id). Customers whose loans all fall on or after ``as_of`` are unknown
    as of that date and have no row.
    """
    at = F.lit(as_of)
    snapshot = latest_before(valid, as_of).select(
        F.col("id").alias("customer_id"),
        whole_years(F.col(f"latest.{BIRTHDAY}"), at).alias("age"),
        years_on_the_job(F.col(f"latest.{JOB_START}"), at).alias("years_on_the_job"),
        "nb_previous_loans",
        "avg_amount_loans_previous",
        flag_own_car(F.col("latest.flag_own_car")).alias("flag_own_car"),
        at.alias("as_of"),
    )
    return conform(snapshot, schemas.SNAPSHOT_COLUMNS)


def audit_snapshot(valid: DataFrame, as_of: date) -> DataFrame:
    """One row per customer of ``serving_snapshot(valid, as_of)``: the audit columns
    of the customer's latest loan before ``as_of`` (the loan the snapshot takes its
    attributes from), and the same ``as_of``.

    Written apart from the snapshot so that the feature store, which loads the
    snapshot, never holds a protected attribute.
    """
    at = F.lit(as_of)
    audit = latest_before(valid, as_of).select(
        F.col("id").alias("customer_id"),
        code_gender(F.col("latest.code_gender")).alias("code_gender"),
        at.alias("as_of"),
    )
    return conform(audit, schemas.AUDIT_SNAPSHOT_COLUMNS)
