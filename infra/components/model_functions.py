"""Training, feature-loader, monitor and inference functions, and the inference aliases."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from credit_risk import names
from infra.components.container_function import container_function
from infra.config import FunctionsConfig


class ModelFunctions(Construct):
    """The container Lambdas of the ML lifecycle.

    Inference runs the small image (core dependencies without pyarrow: it reads
    one row per customer, never a file); the feature loader and the monitor read
    Parquet and share the training image. Those three run in the VPC (they talk
    to the feature store); training needs only S3.
    Clients call inference through an alias: ``live`` serves, ``candidate``
    takes the canary's share. Both start on the deployed version; the canary
    release moves them afterwards.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FunctionsConfig,
        vpc: ec2.IVpc,
        database_security_group: ec2.ISecurityGroup,
        environment: Mapping[str, Mapping[str, str]],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        common = {"log_retention": log_retention, "removal_policy": removal_policy}
        in_vpc = {"vpc": vpc, "security_groups": [database_security_group]}
        self.inference = container_function(
            self,
            "Inference",
            image="inference",
            handler=names.HANDLER_INFERENCE,
            settings=settings.inference,
            environment=environment["inference"],
            description="Scores a customer: feature store lookup, model, reasons",
            **common,
            **in_vpc,
        )
        self.feature_loader = container_function(
            self,
            "FeatureLoader",
            image="training",
            handler=names.HANDLER_FEATURE_LOADER,
            settings=settings.feature_loader,
            environment=environment["feature_loader"],
            description="Loads a serving snapshot into the feature store and swaps it in",
            **common,
            **in_vpc,
        )
        self.training = container_function(
            self,
            "Training",
            image="training",
            handler=names.HANDLER_TRAINING,
            settings=settings.training,
            environment=environment["training"],
            description="Trains, evaluates and registers a model version",
            **common,
        )
        self.monitor = container_function(
            self,
            "Monitor",
            image="training",
            handler=names.HANDLER_MONITOR,
            settings=settings.monitor,
            environment=environment["monitor"],
            description="Drift, skew, staleness and live quality of the served model",
            **common,
            **in_vpc,
        )
        version = self.inference.current_version
        self.live = lambda_.Alias(
            self,
            "Live",
            alias_name=names.LIVE_ALIAS,
            version=version,
            provisioned_concurrent_executions=settings.inference.provisioned_concurrency,
        )
        self.candidate = lambda_.Alias(
            self, "Candidate", alias_name=names.CANDIDATE_ALIAS, version=version
        )
        self.aliases = (self.live, self.candidate)
