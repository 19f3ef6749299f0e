"""Buckets of the data lake and the model registry."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.grants import LakeBucket, bucket_name
from infra.nag import acknowledge


class DataLake(Construct):
    """Raw, curated and model buckets, private and TLS-only, with access logs.

    Raw objects announce themselves on EventBridge (the "new raw data" trigger).
    Every bucket holding what cannot be rebuilt keeps the versions of its objects
    for ``noncurrent_version_days`` after they are overwritten or deleted: the raw
    extracts (the only copy of the lender's data), the model registry (a registered
    model version must never change under the API) and the curated outputs (a
    batch-scoring run, the probe's reference answer and the monitoring reports are
    evidence; feature runs could be recomputed, the rest could not).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: str,
        removal_policy: RemovalPolicy,
        noncurrent_version_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self._environment = environment
        self._removal_policy = removal_policy
        self.access_logs = self._bucket(
            "access-logs",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This bucket receives the server access logs of the others; logging it "
            "into itself would loop.",
        )
        old_versions = Duration.days(noncurrent_version_days)
        self.raw = self._bucket(
            "raw",
            event_bridge_enabled=True,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(90),
                        )
                    ],
                    noncurrent_version_expiration=old_versions,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
        self.curated = self._bucket(
            "curated",
            versioned=True,
            lifecycle_rules=[
                # Feature runs are reproducible from raw data; old ones are kept
                # long enough to audit a model trained on them, then dropped.
                s3.LifecycleRule(
                    expiration=Duration.days(400),
                    noncurrent_version_expiration=old_versions,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                # What the expiration leaves: delete markers with no versions behind.
                s3.LifecycleRule(expired_object_delete_marker=True),
            ],
        )
        self.models = self._bucket(
            "models",
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=old_versions,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )

    def _bucket(self, kind: LakeBucket, **props: object) -> s3.Bucket:
        logging = (
            {}
            if kind == "access-logs"
            else {
                "server_access_logs_bucket": self.access_logs,
                "server_access_logs_prefix": f"{kind}/",
            }
        )
        return s3.Bucket(
            self,
            "".join(part.capitalize() for part in kind.split("-")),
            bucket_name=bucket_name(self._environment, kind),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=self._removal_policy,
            **logging,
            **props,
        )
