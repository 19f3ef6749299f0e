from __future__ import annotations

import json
from pathlib import Path

from constructs import Construct

from credit_risk import names
from infra.components.data_lake import DataLake
from infra.components.feature_job import FeatureJob
from infra.config import EnvironmentConfig
from infra.grants import allow_objects
from infra.stacks.base import EnvironmentStack

# What the distributed training imports that Glue 5.1 does not provide (or not at
# these versions): pip-installed from the package index at each job start, pinned
# to uv.lock. The library itself comes as the wheel, as for the feature job.
TRAINING_PYTHON_MODULES = (
    "xgboost-cpu==3.2.0",
    "scikit-learn==1.9.1",
    "matplotlib==3.11.2",
    "joblib==1.6.0",
    "pydantic==2.14.3",
    "pydantic-settings==2.16.3",
)


class FeaturesStack(EnvironmentStack):
    unit = "Features"
    summary = "Glue jobs: feature extraction, distributed training"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        lake: DataLake,
        script: Path,
        library_wheel: Path,
        code_version: str,
    ) -> None:
        """``code_version``: the commit being deployed, which the training job
        records in the metadata of the versions it trains, as the Lambda does."""
        super().__init__(scope, config=config)
        self.feature_job = FeatureJob(
            self,
            "FeatureJob",
            job_name=config.resource_name("features"),
            script=script,
            library_wheel=library_wheel,
            settings=config.glue,
            region=config.region,
            # Defaults for a run started by hand; the state machine passes all four
            # arguments (input, output, as_of, run_id) for each run.
            arguments={
                f"--{names.GLUE_ARG_INPUT}": lake.raw.s3_url_for_object(names.RAW_LOANS_PREFIX),
                "--TempDir": lake.curated.s3_url_for_object("glue-temp/"),
            },
        )
        self.job = self.feature_job.job
        role = self.feature_job.role
        # Grants: the job reads raw loans and writes curated outputs, nothing else.
        allow_objects(
            role,
            scope=role,
            environment=config.deployment,
            bucket="raw",
            prefix=names.RAW_LOANS_PREFIX,
        )
        allow_objects(
            role,
            scope=role,
            environment=config.deployment,
            bucket="curated",
            prefix="",
            write=True,
            delete=True,
        )

        # The distributed training (glue_jobs/model_training.py beside the feature
        # script): the training state machine starts it instead of the training
        # Lambda from cdk.json's training.distributed_from_rows rows on.
        self.training_job = FeatureJob(
            self,
            "TrainingJob",
            job_name=config.resource_name(names.TRAINING_JOB),
            script=script.parent / names.GLUE_TRAINING_SCRIPT,
            library_wheel=library_wheel,
            settings=config.training.glue,
            region=config.region,
            arguments={
                "--additional-python-modules": ",".join(TRAINING_PYTHON_MODULES),
                # One XGBoost worker per executor core (one executor per Glue worker
                # but the driver's): the estimator's barrier stage runs them together.
                f"--{names.GLUE_ARG_WORKERS}": str(training_workers(config)),
                # The training Lambda's environment, as the job sets it for itself.
                f"--{names.GLUE_ARG_SETTINGS}": json.dumps(
                    training_settings(config, lake, code_version)
                ),
                "--TempDir": lake.curated.s3_url_for_object("glue-temp/"),
            },
            description="Training features -> XGBoost on Spark -> gate -> registered version",
        )
        trainer = self.training_job.role
        # Reads the run's features and writes its result beside them; registers
        # the version in the models bucket.
        allow_objects(
            trainer,
            scope=trainer,
            environment=config.deployment,
            bucket="curated",
            prefix=names.CURATED_PREFIX,
            write=True,
        )
        allow_objects(
            trainer,
            scope=trainer,
            environment=config.deployment,
            bucket="models",
            prefix=names.REGISTRY_PREFIX,
            write=True,
        )


# vCPUs of a Glue worker, by type.
GLUE_WORKER_VCPUS = {"G.1X": 4, "G.2X": 8, "G.4X": 16, "G.8X": 32}


def training_workers(config: EnvironmentConfig) -> int:
    glue = config.training.glue
    return (glue.number_of_workers - 1) * GLUE_WORKER_VCPUS[glue.worker_type]


def training_settings(
    config: EnvironmentConfig, lake: DataLake, code_version: str
) -> dict[str, str]:
    """The settings the training Lambda has in its environment that training reads:
    model name, registry, lake, the commit, and the monitoring settings its card
    judges."""
    from infra.stacks.ml import TRAINING_MONITORING_SETTINGS

    return {
        names.ENV_ENVIRONMENT: config.deployment,
        names.ENV_MODEL_NAME: names.PROJECT,
        names.ENV_REGISTRY_URI: lake.models.s3_url_for_object(names.REGISTRY_PREFIX.rstrip("/")),
        names.ENV_LAKE_URI: lake.curated.s3_url_for_object().rstrip("/"),
        names.ENV_CODE_VERSION: code_version,
        **config.monitoring.environment(only=TRAINING_MONITORING_SETTINGS),
    }
