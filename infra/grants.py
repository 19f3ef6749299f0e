"""Least-privilege S3 access to the lake, granted the same way everywhere.

CDK's ``grant_read``/``grant_read_write`` use wildcard actions (``s3:GetObject*``,
``s3:List*``...). Here every grant names its actions and is limited to one key
prefix of one bucket. The buckets have predictable names, so a grant does not
import the bucket from its stack, and the one remaining wildcard (the object
keys under the prefix) is acknowledged with a reason right where it is made.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from credit_risk.names import lake_bucket_name
from infra.nag import acknowledge

LakeBucket = Literal["raw", "curated", "models", "access-logs"]

READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")
# Spark commits by writing temporary objects and deleting them afterwards.
DELETE_ACTIONS = ("s3:DeleteObject",)


def bucket_name(deployment: str, bucket: LakeBucket) -> str:
    """``credit-risk-<deployment>-<bucket>-<account>-<region>`` of the stack's own
    account and region: known in advance, so that grants and the runtime need no
    lookup."""
    return lake_bucket_name(deployment, bucket, Aws.ACCOUNT_ID, Aws.REGION)


def _rendered_bucket(deployment: str, bucket: LakeBucket) -> str:
    # How cdk-nag prints bucket_name() in a finding id.
    return lake_bucket_name(deployment, bucket, "<AWS::AccountId>", "<AWS::Region>")


def allow_objects(
    grantee: iam.IGrantable,
    *,
    scope: IConstruct,
    environment: str,
    bucket: LakeBucket,
    prefix: str,
    write: bool = False,
    delete: bool = False,
) -> None:
    """Let ``grantee`` list and read (optionally write, delete) ``bucket/prefix*``.

    ``scope`` is the construct that holds the grantee's policy (the function or
    role), where the acknowledgement of the key wildcard is recorded.
    """
    name = bucket_name(environment, bucket)
    objects = f"arn:{Aws.PARTITION}:s3:::{name}/{prefix}*"
    actions = [
        *READ_ACTIONS,
        *(WRITE_ACTIONS if write else ()),
        *(DELETE_ACTIONS if delete else ()),
    ]
    principal = grantee.grant_principal
    principal.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[objects]))
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{name}"],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        )
    )
    acknowledge(
        scope,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::"
        f"{_rendered_bucket(environment, bucket)}/{prefix}*]",
        f"Object keys under {bucket}/{prefix} are created at run time (run ids, model "
        "versions); the grant is limited to that prefix and to named actions.",
    )
