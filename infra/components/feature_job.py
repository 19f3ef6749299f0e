"""The Glue job that turns raw loans into features."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Aws, Duration
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import GlueConfig
from infra.nag import acknowledge, rendered_account


class FeatureJob(Construct):
    """A Glue 5.1 PySpark job running ``script`` with the library wheel on its path
    (the feature job, and the distributed training job with the same setup).

    Bookmarks are off because every run reads the whole raw history: features
    are point-in-time computations over all of a customer's loans, not
    increments. Logs and bookmarks are encrypted with the job's own key.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        job_name: str,
        script: Path,
        library_wheel: Path,
        settings: GlueConfig,
        region: str,
        arguments: Mapping[str, str],
        description: str = "Raw loans -> validated features, serving snapshot, quality report",
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self, "Key", enable_key_rotation=True, description=f"Encrypts the logs of {job_name}"
        )
        log_groups = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws-glue/*"
        log_groups_rendered = (
            "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws-glue/*"
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            )
        )
        self.security_configuration = glue.SecurityConfiguration(
            self,
            "SecurityConfiguration",
            security_configuration_name=job_name,
            cloud_watch_encryption=glue.CloudWatchEncryption.kms(self.key),
            job_bookmarks_encryption=glue.JobBookmarksEncryption.client_side_kms(self.key),
            s3_encryption=glue.S3Encryption.s3_managed(),
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Runs {job_name}",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:AssociateKmsKey",
                ],
                resources=[log_groups, f"{log_groups}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            )
        )
        stage_bucket = f"cdk-hnb659fds-assets-{rendered_account(self)}-{region}"
        reasons = {
            "AwsSolutions-IAM5[Resource::*]": "cloudwatch:PutMetricData has no resource-level "
            "permissions; the statement is limited to the Glue namespace.",
            f"AwsSolutions-IAM5[Resource::{log_groups_rendered}]": "Glue names its log "
            "groups per job and security configuration under /aws-glue/.",
            f"AwsSolutions-IAM5[Resource::{log_groups_rendered}:*]": "Log streams of the "
            "/aws-glue/ groups, named per run.",
            f"AwsSolutions-IAM5[Resource::arn:aws:s3:::{stage_bucket}/*]": "Read access to "
            "the CDK asset bucket that holds the script and the library wheel (added by "
            "the Glue construct when it binds the code assets).",
            **{
                f"AwsSolutions-IAM5[Action::{action}]": "Added by the Glue construct for "
                "reading its code assets from the CDK asset bucket; no data bucket."
                for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*")
            },
        }
        for rule, reason in reasons.items():
            acknowledge(self.role, rule, reason)
        self.job = glue.PySparkEtlJob(
            self,
            "Job",
            job_name=job_name,
            description=description,
            role=self.role,
            script=glue.Code.from_asset(str(script)),
            extra_python_files=[glue.Code.from_asset(str(library_wheel))],
            glue_version=glue.GlueVersion.V5_1,
            worker_configuration=glue.WorkerConfiguration(
                worker_type=glue.WorkerType[settings.worker_type.replace(".", "_")],
                number_of_workers=settings.number_of_workers,
            ),
            timeout=Duration.minutes(settings.timeout_minutes),
            max_concurrent_runs=1,
            max_retries=0,  # the state machine owns retries
            enable_metrics=True,
            enable_observability_metrics=True,
            continuous_logging=glue.ContinuousLoggingProps(enabled=True),
            security_configuration=self.security_configuration,
            default_arguments={"--job-bookmark-option": "job-bookmark-disable", **arguments},
        )
