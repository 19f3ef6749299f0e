"""The one way this project builds a container Lambda."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import FunctionConfig
from infra.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]
# The images are built from the repository root; only what an image installs is
# staged, so that synth stays fast and the asset hash changes only when the
# image would. Docker-ignore syntax: exclude all, then re-include.
IMAGE_CONTEXT_FILES = (
    "*",
    "!pyproject.toml",
    "!uv.lock",
    "!README.md",
    "!src",
    "!lambdas",
    "!containers",
    "**/__pycache__",
    "**/*.pyc",
    "**/.DS_Store",
)


def dockerfile(image: str) -> str:
    """Path of ``containers/<image>/Dockerfile`` relative to the build context."""
    relative = f"containers/{image}/Dockerfile"
    if not (REPO_ROOT / relative).is_file():
        raise FileNotFoundError(f"no Dockerfile for image {image!r} at {relative}")
    return relative


def container_function(
    scope: Construct,
    construct_id: str,
    *,
    image: str,
    handler: str,
    settings: FunctionConfig,
    environment: Mapping[str, str],
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    description: str,
    vpc: ec2.IVpc | None = None,
    security_groups: Sequence[ec2.ISecurityGroup] = (),
) -> lambda_.DockerImageFunction:
    """A traced, x86_64 container Lambda running ``handler`` from image ``image``.

    The image is only staged at synth (no Docker engine needed); ``cdk deploy``
    builds and pushes it. Functions that share an image differ only by ``cmd``.
    """
    log_group = logs.LogGroup(
        scope, f"{construct_id}Logs", retention=log_retention, removal_policy=removal_policy
    )
    # An own role instead of the AWS-managed execution policies: logs go to this
    # function's group only. ENI management (VPC) and X-Ray have no
    # resource-level permissions, hence their "*".
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    if vpc:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                resources=["*"],
            )
        )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "Only X-Ray tracing and Lambda's VPC network interfaces, which have no "
        "resource-level permissions.",
    )
    code = lambda_.DockerImageCode.from_image_asset(
        str(REPO_ROOT),
        file=dockerfile(image),
        cmd=[handler],
        # xgboost-cpu ships manylinux x86_64 wheels only.
        platform=ecr_assets.Platform.LINUX_AMD64,
        ignore_mode=IgnoreMode.DOCKER,
        exclude=list(IMAGE_CONTEXT_FILES),
    )
    return lambda_.DockerImageFunction(
        scope,
        construct_id,
        code=code,
        role=role,
        description=description,
        architecture=lambda_.Architecture.X86_64,
        memory_size=settings.memory_mb,
        timeout=Duration.seconds(settings.timeout_seconds),
        reserved_concurrent_executions=settings.reserved_concurrency,
        environment=dict(environment),
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        vpc=vpc,
        vpc_subnets=(
            ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if vpc else None
        ),
        security_groups=list(security_groups) if vpc else None,
    )
