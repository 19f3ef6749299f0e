"""AWS Glue entrypoint of the distributed training: the training Lambda's event as
job arguments, ``credit_risk.model.pipeline.run_training`` with the Spark engine.

The training state machine starts this job instead of the training Lambda when the
feature run's ``training_rows`` reach the environment's ``distributed_from_rows``
(credit_risk.model.engine.choose_engine). XGBoost's Spark estimator fits on the
executors; evaluation, gate, card and registration run on the driver, exactly as in
the Lambda. A Glue run has no return value for Step Functions, so the summary the
Lambda would return is written to ``--result_uri`` (``<curated>/<run_id>/
training_result.json``), which the state machine reads next.

Arguments (``--name value``): ``--features_uri``, ``--registry_uri``, ``--run_id``,
``--result_uri``; optional ``--snapshot_uri``, ``--truth_uri``, ``--gate`` (a JSON
object of GateConfig overrides, as the Lambda's ``gate``), ``--workers`` (XGBoost
workers; default Spark's parallelism) and ``--settings`` (a JSON object of
``CREDIT_RISK_*`` variables, the training Lambda's environment, set before the
settings are read). Off Glue they are read with argparse and Spark runs locally:

    python glue_jobs/model_training.py --features_uri out/training --registry_uri reg \
        --run_id run-1 --result_uri out/training_result.json

The library arrives as a wheel in ``--extra-py-files`` and its dependencies that
Glue 5.1 lacks (xgboost, scikit-learn, matplotlib) in ``--additional-python-modules``
(see glue_jobs/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

REQUIRED = ("features_uri", "registry_uri", "run_id", "result_uri")
OPTIONAL = ("snapshot_uri", "truth_uri", "gate", "workers", "settings")


def parse_arguments(argv: Sequence[str]) -> dict[str, str | None]:
    """The job arguments from ``argv`` (``sys.argv``: program name first)."""
    from credit_risk.glue import job_arguments

    parser = argparse.ArgumentParser(
        prog="model_training", description="The distributed training, as Glue runs it."
    )
    for name in REQUIRED:
        parser.add_argument(f"--{name}", required=True)
    for name in OPTIONAL:
        parser.add_argument(f"--{name}", default=None)
    return job_arguments(argv, REQUIRED, OPTIONAL, parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(sys.argv if argv is None else argv)
    # The training Lambda's environment (model name, monitoring tolerances) before
    # anything reads the settings.
    for name, value in json.loads(args["settings"] or "{}").items():
        os.environ[name] = str(value)

    from dataclasses import fields, replace

    from credit_risk import io, names
    from credit_risk.errors import CreditRiskError, InvalidInputError
    from credit_risk.glue import spark_session
    from credit_risk.model.gate import GateConfig
    from credit_risk.model.pipeline import TrainingConfig, run_training
    from credit_risk.settings import Settings

    spark_session("credit-risk-model-training")  # the session the Spark engine finds active
    try:
        overrides = json.loads(args["gate"] or "{}")
        known = {spec.name for spec in fields(GateConfig)}
        if not isinstance(overrides, dict) or set(overrides) - known:
            raise InvalidInputError(f"gate must be an object of {sorted(known)}")
        settings = Settings()
        result = run_training(
            args["features_uri"],
            args["registry_uri"],
            settings.model_name,
            config=TrainingConfig.for_settings(
                settings,
                gate=replace(GateConfig(), **overrides),
                engine=names.TRAINING_ENGINE_SPARK,
                engine_workers=int(args["workers"]) if args["workers"] else None,
            ),
            truth_uri=args["truth_uri"],
            run_id=args["run_id"],
            code_version=settings.code_version,
            serving_snapshot_uri=args["snapshot_uri"],
        )
    except CreditRiskError as exc:
        print(f"model_training: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    summary = result.summary()
    io.write_bytes(args["result_uri"], json.dumps(summary).encode())
    print(json.dumps({"model_version": result.version, "seconds": result.seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
