"""Column names, types and value sets of every dataset the platform exchanges.

This module is the one source of truth for the data contracts in DESIGN.md. It
imports nothing heavy so that the CDK app, the Lambdas and the Spark job can all
read it; the pyarrow and Spark schemas are built from these tuples where they are
needed (``credit_risk.io`` and ``credit_risk.features``).
"""

from __future__ import annotations

from typing import Final

# Logical types used in the contracts below. Dates in the *raw* data are text on
# purpose: real extracts carry unparseable dates, and validation must see them.
STRING: Final = "string"
INT64: Final = "int64"
FLOAT64: Final = "float64"
DATE: Final = "date"

# --- Raw loans: 24 columns, one row per loan ---------------------------------
RAW_LOAN_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("loan_id", INT64),
    ("id", STRING),  # the customer id; text, so that leading zeros survive
    ("code_gender", STRING),
    ("flag_own_car", STRING),
    ("flag_own_realty", STRING),
    ("cnt_children", INT64),
    ("amt_income_total", FLOAT64),
    ("name_income_type", STRING),
    ("name_education_type", STRING),
    ("name_family_status", STRING),
    ("name_housing_type", STRING),
    ("days_birth", INT64),
    ("days_employed", INT64),
    ("flag_mobil", INT64),
    ("flag_work_phone", INT64),
    ("flag_phone", INT64),
    ("flag_email", INT64),
    ("occupation_type", STRING),
    ("cnt_fam_members", FLOAT64),
    ("status", INT64),  # the label: 1 = defaulted
    ("birthday", STRING),  # YYYY-MM-DD
    ("job_start_date", STRING),  # YYYY-MM-DD; far future = not employed
    ("loan_date", STRING),  # YYYY-MM-DD
    ("loan_amount", FLOAT64),
)
RAW_LOAN_COLUMN_NAMES: Final = tuple(name for name, _ in RAW_LOAN_COLUMNS)
RAW_DATE_COLUMNS: Final = ("birthday", "job_start_date", "loan_date")
RAW_DATE_FORMAT: Final = "%Y-%m-%d"

# Value sets of the categorical raw columns.
YES_NO: Final = ("Y", "N")
BINARY_FLAGS: Final = (0, 1)
CODE_GENDER: Final = ("F", "M")
INCOME_TYPES: Final = (
    "Working",
    "Commercial associate",
    "Pensioner",
    "State servant",
    "Student",
)
EDUCATION_TYPES: Final = (
    "Secondary / secondary special",
    "Higher education",
    "Incomplete higher",
    "Lower secondary",
    "Academic degree",
)
FAMILY_STATUSES: Final = (
    "Married",
    "Single / not married",
    "Civil marriage",
    "Separated",
    "Widow",
)
HOUSING_TYPES: Final = (
    "House / apartment",
    "With parents",
    "Municipal apartment",
    "Rented apartment",
    "Office apartment",
    "Co-op apartment",
)
OCCUPATION_TYPES: Final = (
    "Laborers",
    "Core staff",
    "Sales staff",
    "Managers",
    "Drivers",
    "High skill tech staff",
    "Accountants",
    "Medicine staff",
    "Cooking staff",
    "Security staff",
    "Cleaning staff",
    "Private service staff",
    "Low-skill Laborers",
    "Secretaries",
    "Waiters/barmen staff",
    "Realty agents",
    "HR staff",
    "IT staff",
)

# The source system writes DAYS_EMPLOYED = 365243 for people who are not
# employed, which turns into a job start about a thousand years ahead.
NOT_EMPLOYED_DAYS_EMPLOYED: Final = 365243

# --- Features (DESIGN.md "Features"): the model's inputs, in model order -------
FEATURE_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("age", INT64),
    ("years_on_the_job", INT64),
    ("nb_previous_loans", INT64),
    ("avg_amount_loans_previous", FLOAT64),
    ("flag_own_car", INT64),
)
FEATURE_NAMES: Final = tuple(name for name, _ in FEATURE_COLUMNS)

# Raw columns no model may use as an input, nor a feature derived from them: the
# applicant characteristics on which the Equal Credit Opportunity Act (Regulation
# B, 12 CFR 1002.2(z)) forbids discrimination that the raw data carries — sex and
# marital status. Age is a feature only as 1002.6(b)(2)(ii) allows it.
PROTECTED_RAW_COLUMNS: Final = ("code_gender", "name_family_status")

# Audit-only columns: carried beside the training rows (and per customer beside the
# serving snapshot) so that outcomes can be compared across groups; never a model
# input. The age band is derived from the ``age`` feature where it is needed.
AUDIT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (("code_gender", STRING),)
AUDIT_COLUMN_NAMES: Final = tuple(name for name, _ in AUDIT_COLUMNS)

# Regulation B's elderly applicant (12 CFR 1002.2(o)): 62 or older. Age bands of the
# fairness checks and slices, half-open [low, high) in whole years; the last band
# is exactly the elderly.
ELDERLY_AGE: Final = 62
AGE_BANDS: Final = ((0, 25), (25, 35), (35, 50), (50, ELDERLY_AGE), (ELDERLY_AGE, 200))

# Training features: one row per valid loan.
TRAINING_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("loan_id", INT64),
    ("customer_id", STRING),
    ("loan_date", DATE),
    *FEATURE_COLUMNS,
    *AUDIT_COLUMNS,
    ("status", INT64),
)
LABEL_COLUMN: Final = "status"

# Serving snapshot: one row per customer, as of a date.
SNAPSHOT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("customer_id", STRING),
    *FEATURE_COLUMNS,
    ("as_of", DATE),
)

# Audit snapshot: one row per customer of the serving snapshot, its audit columns
# as of the same date; the monitor joins it to served decisions.
AUDIT_SNAPSHOT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("customer_id", STRING),
    *AUDIT_COLUMNS,
    ("as_of", DATE),
)

# Truth sidecar written by the generator beside the raw file.
TRUTH_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("loan_id", INT64),
    ("true_pd", FLOAT64),
)
TRUTH_SUFFIX: Final = ".truth.parquet"


def truth_path_for(raw_path: str) -> str:
    """Where the generator puts the true default probabilities of ``raw_path``."""
    return f"{raw_path}{TRUTH_SUFFIX}"
