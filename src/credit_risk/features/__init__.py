"""Feature extraction in PySpark: validate raw loans, quarantine the bad rows, compute
point-in-time-correct training features, the serving snapshot and its audit
columns, report data quality. Plain PySpark, no Glue imports: the same code runs
locally and on Glue.

Importing this package needs ``pyspark`` (the ``spark`` extra); nothing on the
Lambda paths imports it.
"""

from credit_risk.features.job import FeatureOutputs, parse_as_of, run_feature_job
from credit_risk.features.quality import read_report
from credit_risk.features.spark import build_local_session, read_raw_loans, spark_schema
from credit_risk.features.transform import audit_snapshot, serving_snapshot, training_features
from credit_risk.features.validate import RULE_NAMES, RULES, apply_rules, prepare

__all__ = [
    "RULES",
    "RULE_NAMES",
    "FeatureOutputs",
    "apply_rules",
    "audit_snapshot",
    "build_local_session",
    "parse_as_of",
    "prepare",
    "read_raw_loans",
    "read_report",
    "run_feature_job",
    "serving_snapshot",
    "spark_schema",
    "training_features",
]
