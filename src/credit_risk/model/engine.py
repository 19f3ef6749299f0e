"""Training engines: which one fits the booster, and the distributed one itself.

Two engines fit the same model, with the same hyperparameters, the same seeded
search and the same early stopping on the validation period:

- ``xgboost`` (``names.TRAINING_ENGINE_SINGLE``): ``xgboost.train`` on this machine
  (``credit_risk.model.train``), what the training Lambda runs;
- ``xgboost-spark`` (``names.TRAINING_ENGINE_SPARK``): XGBoost's Spark estimator
  (``xgboost.spark.SparkXGBClassifier``) fitting on a Spark DataFrame of the
  training features, across the executors of a Glue job (or local Spark). Its
  booster (``model.get_booster()``) is cut at the best round exactly as the single
  engine's is, so that everything after the fit (evaluation, gate, card, registry)
  is the same code on the driver, with numpy.

``choose_engine`` is the one place that decides between them from the number of
training rows: the local runner (``credit_risk.pipeline``) calls it, and the
training state machine's Choice state compares the same field of the data-quality
report with the same configured threshold (cdk.json ``training.distributed_from_rows``).

What stays on the driver with the Spark engine: ``run_training`` reads and splits
the training features into numpy before the fit (the split boundaries, the
baseline, the evaluation, the governance evidence and the reference all need
them). bench/scale.py measured the driver process at about 0.28 MB more per
thousand loans (0.57 GB at 778k loans, 2.8 GB at 7.8M, 6.9 GB at 23.3M), so a Glue
G.1X driver (16 GB) holds about 57 million loans and a G.2X one (32 GB) about 116
million; the test period alone (15 % of them) would go much further. The fit, the part
that grows with rows times rounds times trials, is what the executors take. Past
the driver's memory the evaluation would have to move to Spark too (or read only
the test period); nothing here does that yet.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import xgboost as xgb

from credit_risk import names, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model.data import Split
from credit_risk.model.train import (
    Hyperparameters,
    SearchResult,
    TrainedModel,
    search_hyperparameters,
    search_with,
)

SINGLE = names.TRAINING_ENGINE_SINGLE
SPARK = names.TRAINING_ENGINE_SPARK

# Spark columns the estimator reads besides the features.
_FEATURES = "features"
_LABEL = "label"
_IS_VALIDATION = "is_validation"


def check_engine(engine: str) -> str:
    if engine not in names.TRAINING_ENGINES:
        raise InvalidInputError(
            f"unknown training engine {engine!r}; known: {', '.join(names.TRAINING_ENGINES)}"
        )
    return engine


def choose_engine(training_rows: int, distributed_from_rows: int | None) -> str:
    """The engine for a training set of ``training_rows`` loans: the Spark engine
    from ``distributed_from_rows`` rows on (inclusive), else the single machine.
    ``None`` never distributes. The state machine's Choice is the same comparison
    (``NumericGreaterThanEqualsPath``)."""
    if training_rows < 0:
        raise InvalidInputError(f"training_rows={training_rows} cannot be negative")
    if distributed_from_rows is not None and distributed_from_rows < 1:
        raise InvalidInputError(f"distributed_from_rows={distributed_from_rows} must be >= 1")
    if distributed_from_rows is not None and training_rows >= distributed_from_rows:
        return SPARK
    return SINGLE


def framework(engine: str) -> dict[str, str]:
    """The ``framework`` entry of a version's metadata: the libraries that fit it."""
    versions = {"xgboost": xgb.__version__}
    if check_engine(engine) == SPARK:
        import pyspark

        versions["pyspark"] = pyspark.__version__
    return versions


def search(
    engine: str,
    split: Split,
    base: Hyperparameters,
    *,
    trials: int,
    seed: int,
    training_uri: str,
    workers: int | None = None,
    spark: Any = None,
) -> SearchResult:
    """The seeded hyperparameter search of ``credit_risk.model.train`` with the
    fits of ``engine``. ``training_uri`` (the Parquet files ``split`` was read from)
    is what the Spark engine reads on the executors; ``workers`` is its number of
    XGBoost workers (Spark tasks; default: the session's task slots, ``task_slots``)."""
    if check_engine(engine) == SINGLE:
        return search_hyperparameters(split.train, split.validation, base, trials=trials, seed=seed)
    session = spark or spark_session()
    frame = training_frame(
        session, training_uri, split.boundaries.validation_start, split.boundaries.test_start
    )
    count = workers or task_slots(session)
    return search_with(
        lambda params: fit_spark(frame, params, workers=count),
        base,
        trials=trials,
        seed=seed,
    )


# --- the Spark engine -----------------------------------------------------------


def spark_session() -> Any:
    """The active session (Glue's, in the Glue job), else a local one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from credit_risk.features import build_local_session

    return build_local_session("credit-risk-training")


def task_slots(spark: Any) -> int:
    """How many tasks the session runs at once: the most XGBoost workers it can
    take, since the estimator's barrier stage needs every worker running together
    (``spark.default.parallelism`` may be larger and would never be scheduled)."""
    import os

    conf = spark.sparkContext.getConf()
    master = spark.sparkContext.master
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    if master.startswith("local"):
        inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
        inside = inside.split(",")[0]
        cores = (os.cpu_count() or 1) if inside == "*" else int(inside)
    else:
        executors = int(conf.get("spark.executor.instances", "0"))
        per_executor = int(conf.get("spark.executor.cores", "1"))
        cores = executors * per_executor or int(spark.sparkContext.defaultParallelism)
    return max(1, cores // task_cpus)


def training_frame(spark: Any, training_uri: str, validation_start: date, test_start: date) -> Any:
    """The train and validation periods of the training features as the estimator
    reads them: the features as doubles (nulls stay null: XGBoost's missing), the
    label, and whether the loan is in the validation period. The periods are the
    half-open date ranges of ``data.split_out_of_time``; the test period is left
    out (it is evaluated on the driver)."""
    from pyspark.sql import functions as F  # noqa: N812

    # s3:// on Glue (EMRFS); a local path in local mode.
    source = spark.read.parquet(training_uri)
    return source.where(F.col("loan_date") < F.lit(test_start)).select(
        # One array column rather than a column list: the estimator's column-list
        # path fails on an Arrow batch with no loan of a period (xgboost 3.2,
        # spark/data.py append_m), which sorted loans make likely. A null is NaN
        # in the array, XGBoost's missing value, as in the single engine's matrix.
        F.array(
            *[
                F.coalesce(F.col(name).cast("double"), F.lit(float("nan")))
                for name in schemas.FEATURE_NAMES
            ]
        ).alias(_FEATURES),
        F.col(schemas.LABEL_COLUMN).cast("double").alias(_LABEL),
        (F.col("loan_date") >= F.lit(validation_start)).alias(_IS_VALIDATION),
    )


def estimator(params: Hyperparameters, workers: int) -> Any:
    """``SparkXGBClassifier`` with the single engine's booster parameters
    (``Hyperparameters.xgb_params``): same objective (binary:logistic, which the
    classifier sets), metric, tree method, depth, learning rate, child weight,
    subsample, L2, bins, monotone constraints in feature order, seed; rounds and
    early stopping on the validation indicator column. ``nthread`` is Spark's
    (``spark.task.cpus`` per worker), which the estimator does not let us set."""
    from xgboost.spark import SparkXGBClassifier

    booster = params.xgb_params()
    return SparkXGBClassifier(
        features_col=_FEATURES,
        label_col=_LABEL,
        validation_indicator_col=_IS_VALIDATION,
        num_workers=workers,
        # Loans arrive sorted by date, so a file (a partition) may hold no
        # validation loan, or no training loan: a seeded random shuffle (rand(1))
        # gives every worker its share of both periods.
        force_repartition=True,
        repartition_random_shuffle=True,
        missing=float("nan"),
        n_estimators=params.num_boost_round,
        early_stopping_rounds=params.early_stopping_rounds,
        eval_metric=booster["eval_metric"],
        tree_method=booster["tree_method"],
        max_depth=booster["max_depth"],
        learning_rate=booster["eta"],
        min_child_weight=booster["min_child_weight"],
        subsample=booster["subsample"],
        reg_lambda=booster["lambda"],
        max_bin=booster["max_bin"],
        monotone_constraints=booster["monotone_constraints"],
        random_state=booster["seed"],
        verbosity=0,
        # Else every round's losses are printed: a thousand lines in the job's log.
        verbose=False,
    )


def fit_spark(frame: Any, params: Hyperparameters, *, workers: int) -> TrainedModel:
    """Fits the Spark estimator on ``frame`` (``training_frame``) and keeps the
    trees up to the best validation round, as ``train.train_model`` does."""
    model = estimator(params, workers).fit(frame)
    booster = model.get_booster()
    rounds = booster.num_boosted_rounds()
    best = int(booster.attr("best_iteration") or rounds - 1)
    kept = booster[: best + 1]
    kept.feature_names = list(schemas.FEATURE_NAMES)
    history = (model.training_summary.validation_objective_history or {}).get("logloss")
    if not history:
        raise InvalidInputError("the Spark estimator reported no validation log loss")
    return TrainedModel(
        booster=kept,
        best_iteration=best,
        rounds_trained=rounds,
        validation_logloss=float(history[best]),
    )
