"""Buckets of the data lake and the model registry."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from credit_risk.names import DECISION_EXPORT_DAYS, DECISION_EXPORTS_PREFIX, lake_bucket_name
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

    With ``replicate_to`` (a standby region), S3 copies every new object version of
    those three buckets, and their deletions, to the buckets of the same name in that
    region within 15 minutes (Replication Time Control), which the standby's
    DataLake stack creates: deploy it first.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: str,
        removal_policy: RemovalPolicy,
        noncurrent_version_days: int,
        replicate_to: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._environment = environment
        self._removal_policy = removal_policy
        self._replicate_to = replicate_to
        # One role S3 replicates the three buckets with (CDK would otherwise create
        # one per bucket, all with the same fixed name).
        self.replication_role = (
            None
            if replicate_to is None
            else iam.Role(
                self,
                "ReplicationRole",
                assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
                description=f"S3 replication of the lake to {replicate_to}",
            )
        )
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
                # A failback's decision exports are imported within it (credit_risk.dr),
                # and hold personal data: gone days later, old versions included.
                s3.LifecycleRule(
                    prefix=DECISION_EXPORTS_PREFIX,
                    expiration=Duration.days(DECISION_EXPORT_DAYS),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
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
        self.acknowledge_replication()

    def _replica(self, kind: LakeBucket) -> s3.IBucket | None:
        """The bucket of ``kind`` in the standby region, if there is one."""
        if self._replicate_to is None or kind == "access-logs":
            return None
        rendered = lake_bucket_name(self._environment, kind, "<AWS::AccountId>", self._replicate_to)
        acknowledge(
            self.replication_role,
            f"AwsSolutions-IAM5[Resource::arn:aws:s3:::{rendered}/*]",
            f"S3 replication writes every object of {kind} to its replica bucket in the "
            "standby region, under the same keys: the keys are the lake's own.",
        )
        return s3.Bucket.from_bucket_attributes(
            self,
            f"{kind.capitalize()}Replica",
            bucket_name=lake_bucket_name(
                self._environment, kind, Aws.ACCOUNT_ID, self._replicate_to
            ),
            region=self._replicate_to,
        )

    def _bucket(self, kind: LakeBucket, **props: object) -> s3.Bucket:
        replica = self._replica(kind)
        if replica is not None:
            rule = s3.ReplicationRule(
                destination=replica,
                priority=0,
                delete_marker_replication=True,
                replication_time_control=s3.ReplicationTimeValue.FIFTEEN_MINUTES,
                metrics=s3.ReplicationTimeValue.FIFTEEN_MINUTES,
            )
            props = {
                **props,
                "replication_rules": [rule],
                "replication_role": self.replication_role,
            }
        logging = (
            {}
            if kind == "access-logs"
            else {
                "server_access_logs_bucket": self.access_logs,
                "server_access_logs_prefix": f"{kind}/",
            }
        )
        bucket = s3.Bucket(
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
        if replica is not None and self.replication_role is not None:
            # CDK grants these only to a replication role it creates itself.
            bucket.grant_replication_permission(
                self.replication_role,
                destinations=[s3.GrantReplicationPermissionDestinationProps(bucket=replica)],
            )
        return bucket

    def acknowledge_replication(self) -> None:
        """The replication role reads every object version of the three buckets."""
        if self.replication_role is None:
            return
        for bucket in (self.raw, self.curated, self.models):
            logical = bucket.stack.resolve(bucket.stack.get_logical_id(bucket.node.default_child))
            acknowledge(
                self.replication_role,
                f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/*]",
                "S3 replication reads every object version of the bucket it replicates, "
                "whatever its key; the role is assumable by S3 only.",
            )
