from __future__ import annotations

from pathlib import Path

from constructs import Construct

from credit_risk import names
from infra.components.data_lake import DataLake
from infra.components.feature_job import FeatureJob
from infra.config import EnvironmentConfig
from infra.grants import allow_objects
from infra.stacks.base import EnvironmentStack


class FeaturesStack(EnvironmentStack):
    unit = "Features"
    summary = "Glue feature-extraction job"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        lake: DataLake,
        script: Path,
        library_wheel: Path,
    ) -> None:
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
            role, scope=role, environment=config.name, bucket="raw", prefix=names.RAW_LOANS_PREFIX
        )
        allow_objects(
            role,
            scope=role,
            environment=config.name,
            bucket="curated",
            prefix="",
            write=True,
            delete=True,
        )
