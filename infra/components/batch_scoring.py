"""Whole-portfolio batch scoring: the function each step of the batch-scoring state
machine invokes, and the optional schedule that starts the machine."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from credit_risk import names
from infra.components.container_function import container_function
from infra.config import BatchScoringConfig


def batch_scoring_function(
    scope: Construct,
    *,
    settings: BatchScoringConfig,
    environment: Mapping[str, str],
    vpc: ec2.IVpc,
    database_security_group: ec2.ISecurityGroup,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
) -> lambda_.DockerImageFunction:
    """The training image (it writes Parquet, which the inference image cannot), in
    the VPC: each range reads the feature store through RDS Proxy."""
    return container_function(
        scope,
        "BatchScoring",
        image="training",
        handler=names.HANDLER_BATCH_SCORING,
        settings=settings.function,
        environment=environment,
        log_retention=log_retention,
        removal_policy=removal_policy,
        description="Batch scoring: plans a run, scores one range of customers, sums up",
        vpc=vpc,
        security_groups=[database_security_group],
    )


class BatchScoringSchedule(Construct):
    """Starts the batch-scoring machine on ``schedule`` with an empty input: the
    active snapshot, the champion and the configured partitions."""

    def __init__(
        self, scope: Construct, construct_id: str, *, machine: sfn.IStateMachine, schedule: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Scores the whole portfolio on schedule",
            schedule=events.Schedule.expression(schedule),
            targets=[
                targets.SfnStateMachine(machine, input=events.RuleTargetInput.from_object({}))
            ],
        )
