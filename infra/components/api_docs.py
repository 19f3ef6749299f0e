"""Where the release pipeline publishes each released version's OpenAPI document."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, pipelines
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge

PUBLISH_SCRIPT = "infra/publish_openapi.py"
# Keys the publishing step may write (infra/publish_openapi.py's PREFIX).
DOCUMENTS_PREFIX = "openapi/"


class ApiDocs(Construct):
    """A private, versioned, TLS-only bucket of OpenAPI documents, one folder per
    released API version, with its own access-log bucket. Retained: the documents
    are what client developers diff versions against."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        common = {
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "removal_policy": RemovalPolicy.RETAIN,
        }
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            **common,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This bucket receives the server access logs of the documents bucket; "
            "logging it into itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Documents",
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="documents/",
            **common,
        )

    def publish_step(
        self, step_id: str, *, source: pipelines.CodePipelineSource
    ) -> pipelines.CodeBuildStep:
        """Publishes the released commit's ``openapi.json``; it may write documents
        and nothing else."""
        return pipelines.CodeBuildStep(
            step_id,
            input=source,
            install_commands=["python3 -m pip install --quiet boto3"],
            commands=[f"python3 {PUBLISH_SCRIPT}"],
            env={
                "DOCS_BUCKET": self.bucket.bucket_name,
                "COMMIT_ID": source.source_attribute("CommitId"),
            },
            role_policy_statements=[
                iam.PolicyStatement(
                    actions=["s3:PutObject"],
                    resources=[self.bucket.arn_for_objects(f"{DOCUMENTS_PREFIX}*")],
                )
            ],
            timeout=Duration.minutes(5),
        )
