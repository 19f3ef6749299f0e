"""Declared validation rules for raw loans, and the quarantine they decide.

Every rule is a name, a sentence for people and a Spark condition that is true when
a row breaks it. A row that breaks any rule goes to quarantine with ``reason``
naming every rule it broke (``;``-separated, in declaration order) and never
reaches the features.

Duplicated ``loan_id`` — the rule: a loan delivered twice with identical content
(a re-delivered record) is kept once; the other copies are quarantined as
``duplicate_record``. A ``loan_id`` carried by rows that differ in any column is
ambiguous (which version is true cannot be known), so *every* row of it is
quarantined as ``duplicate_loan_id``.

Cost: most rules read one row and are decided while the file is read. Only the
columns the features need, the parsed dates, a content hash and the violations
bitmask then cross the one full shuffle, by customer, that the features need
anyway. Exact copies share their customer id, so they are found in that shuffle
(``lag`` over customer, loan date, loan_id, row hash). Conflicting versions may
carry different customer ids; they are found by an aggregate of (loan_id, row hash)
only, whose few results are broadcast back. The quarantine wants every raw column
of the few rejected rows: it reads the input again, keeps the rows of rejected
loan_ids and validates those again with all their columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

from credit_risk import schemas
from credit_risk.features.spark import CORRUPT_RECORD_COLUMN

REASON_COLUMN = "reason"
REASON_SEPARATOR = ";"

# Helper columns added by ``prepare``; dropped from every output.
LOAN_DATE = "_loan_date"
BIRTHDAY = "_birthday"
JOB_START = "_job_start"
ROW_HASH = "_row_hash"
REPEAT = "_repeat"
CONFLICTING = "_conflicting"
VIOLATIONS = "_violations"

# The whole text (``$`` would also match before a final line break, which the cast
# then trims away) and no year 0000: Spark casts that to a date outside the years
# 0001-9999 that the contract, Python and pyarrow's dates know.
_ISO_DATE = r"\A(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}\z"
_PARSED_DATES = {"loan_date": LOAN_DATE, "birthday": BIRTHDAY, "job_start_date": JOB_START}
# The raw columns the features, the snapshot and the audit columns read: all that
# crosses the shuffle.
FEATURE_INPUT_COLUMNS = (
    "id",
    "loan_id",
    "loan_amount",
    "flag_own_car",
    "status",
    *schemas.AUDIT_COLUMN_NAMES,
)
# Above this many rejected rows the quarantine joins the input by shuffling it
# rather than broadcasting the rejected loan_ids to every task.
BROADCAST_REJECTED_ROWS = 1_000_000


class Scope(Enum):
    """What a rule has to see to decide: the row, the row's copies, or every row of
    its loan_id."""

    ROW = "row"
    COPIES = "copies"
    LOAN_ID = "loan_id"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    broken: Callable[[], Column]  # built on demand: a Column needs an active session
    scope: Scope = Scope.ROW

    def condition(self) -> Column:
        """True when the row breaks the rule, never null."""
        return F.coalesce(self.broken(), F.lit(False))


def _missing(column: str, name: str | None = None) -> Rule:
    def broken() -> Column:
        value = F.col(column)
        if dict(schemas.RAW_LOAN_COLUMNS)[column] == schemas.STRING:
            return value.isNull() | (F.trim(value) == "")
        return value.isNull()

    return Rule(name or f"missing_{column}", f"{column} is required", broken)


def _unparseable(column: str) -> Rule:
    return Rule(
        f"invalid_{column}",
        f"{column} is present but not a YYYY-MM-DD calendar date",
        lambda: F.col(column).isNotNull() & F.col(_PARSED_DATES[column]).isNull(),
    )


def _outside(column: str, values: tuple) -> Rule:
    return Rule(
        f"invalid_{column}",
        f"{column} is present but not one of {', '.join(map(str, values))}",
        lambda: F.col(column).isNotNull() & ~F.col(column).isin(list(values)),
    )


def _negative(column: str) -> Rule:
    return Rule(f"negative_{column}", f"{column} is below zero", lambda: F.col(column) < 0)


def _not_finite(column: str) -> Rule:
    # Spark's CSV reader turns "NaN", "Inf" and "Infinity" into numbers of a double
    # column; no amount or count is one, and NaN compares false to everything (it
    # would pass every other rule).
    return Rule(
        f"non_finite_{column}",
        f"{column} is NaN or infinite",
        lambda: F.isnan(F.col(column)) | (F.abs(F.col(column)) == float("inf")),
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "malformed_record",
        "the CSV line does not fit the schema (field count, a non-number in a number column)",
        lambda: F.col(CORRUPT_RECORD_COLUMN).isNotNull(),
    ),
    _missing("loan_id"),
    _missing("id", "missing_customer_id"),  # ``id`` is the customer id
    Rule(
        "duplicate_loan_id",
        "the loan_id is carried by rows that differ: every version is quarantined",
        lambda: F.col(CONFLICTING),
        Scope.LOAN_ID,
    ),
    Rule(
        "duplicate_record",
        "an exact copy of another row (re-delivered): one copy is kept",
        lambda: F.col(REPEAT),
        Scope.COPIES,
    ),
    _missing("loan_date"),
    _unparseable("loan_date"),
    _missing("birthday"),
    _unparseable("birthday"),
    _unparseable("job_start_date"),
    Rule(
        "loan_before_birthday",
        "the loan is dated before the borrower's birthday",
        lambda: F.col(LOAN_DATE) < F.col(BIRTHDAY),
    ),
    _missing("loan_amount"),
    _negative("loan_amount"),
    _not_finite("loan_amount"),
    _missing("flag_own_car"),
    _outside("flag_own_car", schemas.YES_NO),
    _missing("status"),
    _outside("status", schemas.BINARY_FLAGS),
    _outside("flag_own_realty", schemas.YES_NO),
    _outside("code_gender", schemas.CODE_GENDER),
    _outside("name_income_type", schemas.INCOME_TYPES),
    _outside("name_education_type", schemas.EDUCATION_TYPES),
    _outside("name_family_status", schemas.FAMILY_STATUSES),
    _outside("name_housing_type", schemas.HOUSING_TYPES),
    _outside("occupation_type", schemas.OCCUPATION_TYPES),
    _outside("flag_mobil", schemas.BINARY_FLAGS),
    _outside("flag_work_phone", schemas.BINARY_FLAGS),
    _outside("flag_phone", schemas.BINARY_FLAGS),
    _outside("flag_email", schemas.BINARY_FLAGS),
    _negative("cnt_children"),
    _negative("amt_income_total"),
    _not_finite("amt_income_total"),
    _negative("cnt_fam_members"),
    _not_finite("cnt_fam_members"),
)
RULE_NAMES: tuple[str, ...] = tuple(rule.name for rule in RULES)
# Rule i sets bit i of ``_violations``: every rule is evaluated once per row, and the
# outputs, the counts and the reasons read one long column.
RULE_BITS: dict[str, int] = {rule.name: 1 << i for i, rule in enumerate(RULES)}
assert len(RULES) < 63, "the violations bitmask is a signed 64-bit long"


def parse_date(column: str) -> Column:
    """``YYYY-MM-DD`` text → date; anything else (``2021-02-30``, ``31/12/2020``,
    ``20191105``, ``0000-01-01``, a date with spaces or a line break around it) →
    null. Independent of the session's ANSI and parser settings."""
    text = F.col(column)
    return F.when(text.rlike(_ISO_DATE), F.expr(f"try_cast(`{column}` AS DATE)"))


def row_hash() -> Column:
    """A 64-bit hash of a raw row's content. Null flags go in too, so that rows that
    differ only in which column is null do not hash alike."""
    names = schemas.RAW_LOAN_COLUMN_NAMES
    return F.xxhash64(*[F.col(n) for n in names], *[F.isnull(n) for n in names])


def prepare(raw: DataFrame, keep: tuple[str, ...] = FEATURE_INPUT_COLUMNS) -> DataFrame:
    """The ``keep`` columns of the raw rows plus parsed dates, a content hash and the
    violations bitmask of every rule but the ``LOAN_ID`` ones.

    The result is partitioned by customer id (the one full shuffle of the job),
    which the features and the snapshot reuse; only ``keep`` and the helper columns
    cross it.
    """
    parsed = raw.select(
        "*",
        *[parse_date(column).alias(alias) for column, alias in _PARSED_DATES.items()],
        row_hash().alias(ROW_HASH),
    )
    # Row rules are decided before the shuffle, while every raw column is at hand.
    narrowed = parsed.select(
        *dict.fromkeys((*keep, "id", "loan_id")),
        LOAN_DATE,
        BIRTHDAY,
        JOB_START,
        ROW_HASH,
        _bitmask(Scope.ROW).alias(VIOLATIONS),
    )
    # Exact copies agree on every key, so they are neighbours in any order that ends
    # with the hash; leading with the features' own order (loan date, loan_id) lets
    # the training window reuse this sort instead of sorting every row again.
    by_copy = Window.partitionBy("id").orderBy(LOAN_DATE, "loan_id", ROW_HASH)
    previous_same = (F.lag("loan_id").over(by_copy) == F.col("loan_id")) & (
        F.lag(ROW_HASH).over(by_copy) == F.col(ROW_HASH)
    )
    with_repeat = narrowed.withColumn(
        REPEAT, F.coalesce(previous_same & F.col("loan_id").isNotNull(), F.lit(False))
    )
    mask = F.col(VIOLATIONS).bitwiseOR(_bitmask(Scope.COPIES))
    return with_repeat.withColumn(VIOLATIONS, mask).drop(REPEAT)


def _bitmask(scope: Scope) -> Column:
    mask = F.lit(0).cast("long")
    for rule in RULES:
        if rule.scope is scope:
            bit = F.when(rule.condition(), F.lit(RULE_BITS[rule.name])).otherwise(0)
            mask = mask.bitwiseOR(bit)
    return mask


def conflicting_loan_ids(prepared: DataFrame) -> DataFrame:
    """The loan_ids carried by rows of different content, as one column."""
    return (
        prepared.where(F.col("loan_id").isNotNull())
        .groupBy("loan_id")
        .agg(F.min(ROW_HASH).alias("low"), F.max(ROW_HASH).alias("high"))
        .where(F.col("low") != F.col("high"))
        .select("loan_id", F.lit(True).alias(CONFLICTING))
    )


def apply_rules(prepared: DataFrame, conflicts: DataFrame) -> DataFrame:
    """``prepared`` with the rules that look beyond the row added to ``_violations``.

    A broadcast join: it keeps ``prepared``'s partitioning by customer.
    """
    flagged = prepared.join(F.broadcast(conflicts), on="loan_id", how="left").withColumn(
        CONFLICTING, F.coalesce(F.col(CONFLICTING), F.lit(False))
    )
    mask = F.col(VIOLATIONS).bitwiseOR(_bitmask(Scope.LOAN_ID))
    return flagged.withColumn(VIOLATIONS, mask).drop(CONFLICTING)


def broke(rule_name: str) -> Column:
    """True when the validated row broke the named rule."""
    return F.col(VIOLATIONS).bitwiseAND(F.lit(RULE_BITS[rule_name])) != 0


def is_valid() -> Column:
    return F.col(VIOLATIONS) == 0


def reason() -> Column:
    """The broken rules' names, ``;``-separated in declaration order; null if none."""
    names = F.concat_ws(
        REASON_SEPARATOR, *[F.when(broke(name), F.lit(name)) for name in RULE_NAMES]
    )
    return F.when(~is_valid(), names)


def validate_all_columns(raw: DataFrame) -> DataFrame:
    """Every raw column plus the helper columns, with every rule applied."""
    prepared = prepare(raw, keep=(*schemas.RAW_LOAN_COLUMN_NAMES, CORRUPT_RECORD_COLUMN))
    return apply_rules(prepared, conflicting_loan_ids(prepared))


def suspects(raw: DataFrame, validated: DataFrame, *, broadcast: bool = True) -> DataFrame:
    """Every raw row of a loan_id with a rejected row (and every row without one).

    ``broadcast`` ships the rejected loan_ids to the readers; without it both sides
    are shuffled and merged, which many rejected loan_ids need.
    """
    rejected = validated.where(~is_valid()).select(F.col("loan_id").alias("_rejected_id"))
    # Hinted both ways: left to itself, adaptive execution broadcasts whatever it
    # finds small, and a large rejected set is what the merge is for.
    rejected = rejected.distinct().hint("broadcast" if broadcast else "merge")
    # Null-safe: rows without a loan_id are rejected, and must be found again.
    return raw.join(rejected, raw["loan_id"].eqNullSafe(rejected["_rejected_id"]), "left_semi")


def quarantine(raw: DataFrame, validated: DataFrame, *, broadcast: bool = True) -> DataFrame:
    """The rejected rows: raw columns as read, plus ``reason``.

    ``validated`` (from ``prepare`` and ``apply_rules``) says which loan_ids have a
    rejected row; ``raw`` is read again for those loan_ids only (``suspects``: every
    row of them, so that copies and conflicting versions are judged as before) and
    validated with all its columns. The validation reads the suspects twice (the rows
    and the conflicts among them); the job caches ``suspects`` so that the input is
    read once.
    """
    return (
        validate_all_columns(suspects(raw, validated, broadcast=broadcast))
        .where(~is_valid())
        .select(*schemas.RAW_LOAN_COLUMN_NAMES, reason().alias(REASON_COLUMN))
    )


def violation_counts() -> list[Column]:
    """Aggregate expressions counting the rows that break each rule, one per rule."""
    return [F.count(F.when(broke(name), True)).alias(name) for name in RULE_NAMES]
