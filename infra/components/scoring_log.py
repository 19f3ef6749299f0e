"""The scoring log: every score the API returns, kept in the lake by day.

The inference function prints one JSON line per score (``record_type: score``);
a CloudWatch Logs subscription picks those lines out of its log group and hands
them to Firehose, which decompresses the batches, keeps only the messages and
writes them gzipped under ``scoring-log/date=YYYY-MM-DD/``, where the monitor
reads them. Nothing of this runs on the request path, and at volume it costs
Firehose's per-GB price instead of a write per request.
"""

from __future__ import annotations

from aws_cdk import Duration, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as destinations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from credit_risk import names
from infra.grants import allow_objects, bucket_name


class ScoringLog(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group: logs.ILogGroup,
        environment: str,
        stream_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = names.SCORING_LOG_PREFIX
        # By its predictable name, as every grant on the lake is (infra/grants.py).
        bucket = s3.Bucket.from_bucket_name(self, "Curated", bucket_name(environment, "curated"))
        # Firehose's own role, with named actions on the scoring-log prefixes only.
        # The destination is handed an immutable reference to it, because given a
        # role it would still add CDK's wildcard read/write set on the bucket.
        role = iam.Role(
            self, "DeliveryRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com")
        )
        allow_objects(
            role, scope=role, environment=environment, bucket="curated", prefix=prefix, write=True
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            )
        )
        destination = firehose.S3Bucket(
            bucket,
            role=iam.Role.from_role_arn(self, "Delivery", role.role_arn, mutable=False),
            data_output_prefix=f"{prefix}date=!{{timestamp:yyyy-MM-dd}}/",
            error_output_prefix=f"{prefix}errors/!{{firehose:error-output-type}}/"
            "date=!{timestamp:yyyy-MM-dd}/",
            # A file every 5 minutes at most: a day of light traffic stays a few
            # hundred small objects, a busy day a few large ones.
            buffering_interval=Duration.minutes(5),
            buffering_size=Size.mebibytes(64),
            compression=firehose.Compression.GZIP,
            file_extension=".jsonl.gz",
            # Records that fail go to the errors/ prefix above; CloudWatch error
            # logging would need a grant on a log group the destination names.
            logging_config=firehose.DisableLogging(),
            processors=[
                firehose.DecompressionProcessor(),
                firehose.CloudWatchLogProcessor(data_message_extraction=True),
                firehose.AppendDelimiterToRecordProcessor(),
            ],
        )
        self.stream = firehose.DeliveryStream(
            self,
            "Stream",
            delivery_stream_name=stream_name,
            destination=destination,
            encryption=firehose.StreamEncryption.aws_owned_key(),
        )
        # The policy must exist before Firehose first delivers.
        self.stream.node.add_dependency(role)
        self.subscription = logs.SubscriptionFilter(
            self,
            "Subscription",
            log_group=log_group,
            destination=destinations.FirehoseDestination(self.stream),
            filter_pattern=logs.FilterPattern.literal(names.SCORE_RECORD_FILTER),
        )
