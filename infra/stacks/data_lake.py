from __future__ import annotations

from aws_cdk import CfnOutput
from constructs import Construct

from credit_risk import names
from infra.components.data_lake import DataLake
from infra.config import EnvironmentConfig
from infra.nag import BASIC_EXECUTION_POLICY, BUCKET_NOTIFICATIONS_HANDLER, acknowledge_singleton
from infra.stacks.base import EnvironmentStack


class DataLakeStack(EnvironmentStack):
    unit = "DataLake"
    summary = "raw, curated and model buckets"

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, config=config)
        self.lake = DataLake(
            self,
            "DataLake",
            environment=config.name,
            removal_policy=self.removal_policy,
            noncurrent_version_days=365 if config.retain_data else 30,
        )
        acknowledge_singleton(
            self,
            BUCKET_NOTIFICATIONS_HANDLER,
            {
                BASIC_EXECUTION_POLICY: "CDK's handler that turns on EventBridge delivery "
                "for the raw bucket once, at deployment; it only writes its own logs."
            },
        )
        # Where a delivery of raw loans goes (read by `credit-risk env bootstrap`).
        self.raw_bucket_output = CfnOutput(
            self, names.OUTPUT_RAW_BUCKET, value=self.lake.raw.bucket_name
        )
