from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.components.feature_database import FeatureDatabase
from infra.config import EnvironmentConfig
from infra.nag import (
    BASIC_EXECUTION_POLICY,
    LOG_RETENTION_FUNCTION,
    acknowledge,
    acknowledge_singleton,
)
from infra.stacks.base import EnvironmentStack


class FeatureStoreStack(EnvironmentStack):
    unit = "FeatureStore"
    summary = "PostgreSQL feature store behind RDS Proxy"

    def __init__(self, scope: Construct, *, config: EnvironmentConfig, vpc: ec2.IVpc) -> None:
        super().__init__(scope, config=config)
        self.database = FeatureDatabase(
            self,
            "FeatureDatabase",
            vpc=vpc,
            settings=config.database,
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        instance = self.database.instance
        acknowledge_singleton(
            self,
            LOG_RETENTION_FUNCTION,
            {
                BASIC_EXECUTION_POLICY: "CDK's log-retention function, run at deployment "
                "to set the retention of the log groups RDS creates itself.",
                "AwsSolutions-IAM5[Resource::*]": "The log-retention function sets the "
                "retention of log groups named by RDS at creation time.",
            },
        )
        acknowledge(
            instance,
            "AwsSolutions-RDS11",
            "Clients reach the database only through RDS Proxy inside isolated subnets; "
            "a non-standard port would hide nothing there.",
        )
        if not config.database.multi_az:
            acknowledge(
                instance,
                "AwsSolutions-RDS3",
                f"{config.name} is not production: a single-AZ instance is enough and the "
                "feature store can be reloaded from the lake.",
            )
        if not config.database.deletion_protection:
            acknowledge(
                instance,
                "AwsSolutions-RDS10",
                f"{config.name} is torn down and recreated freely; a final snapshot is "
                "still taken on deletion.",
            )
