"""PostgreSQL feature store behind an RDS Proxy."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from credit_risk.names import DATABASE_NAME, DATABASE_PORT, DATABASE_USER
from infra.config import DatabaseConfig


class FeatureDatabase(Construct):
    """An encrypted PostgreSQL instance in isolated subnets.

    Clients never see a password: they join ``client_security_group`` and connect
    to the proxy with an IAM token (``proxy.grant_connect``). Only the proxy and
    the rotation function read the generated secret, which rotates on schedule.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        settings: DatabaseConfig,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        version = settings.engine_version
        engine = rds.DatabaseInstanceEngine.postgres(
            version=rds.PostgresEngineVersion.of(version, version.split(".")[0])
        )
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.client_security_group = ec2.SecurityGroup(
            self, "Clients", vpc=vpc, description="Functions that use the feature store"
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=engine,
            instance_type=ec2.InstanceType(settings.instance_type),
            vpc=vpc,
            vpc_subnets=isolated,
            credentials=rds.Credentials.from_generated_secret(DATABASE_USER),
            database_name=DATABASE_NAME,
            port=DATABASE_PORT,
            storage_encrypted=True,
            allocated_storage=settings.allocated_storage_gib,
            max_allocated_storage=settings.max_allocated_storage_gib,
            multi_az=settings.multi_az,
            deletion_protection=settings.deletion_protection,
            backup_retention=Duration.days(settings.backup_retention_days),
            iam_authentication=True,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
            cloudwatch_logs_retention=log_retention,
            parameter_group=rds.ParameterGroup(
                self,
                "Parameters",
                engine=engine,
                parameters={"rds.force_ssl": "1", "log_min_duration_statement": "1000"},
            ),
            # RETAIN keeps prod data; otherwise a final snapshot is the safety net.
            removal_policy=(
                removal_policy if removal_policy == RemovalPolicy.RETAIN else RemovalPolicy.SNAPSHOT
            ),
        )
        self.secret = self.instance.secret
        # The rotation function calls the Secrets Manager API, which the isolated
        # subnets cannot reach (no NAT, no interface endpoint); it runs in the
        # private subnets and reaches the database through its security group.
        self.rotation = self.instance.add_rotation_single_user(
            automatically_after=Duration.days(settings.secret_rotation_days),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
        self.proxy = self.instance.add_proxy(
            "Proxy",
            secrets=[self.instance.secret],
            vpc=vpc,
            vpc_subnets=isolated,
            iam_auth=True,
            require_tls=True,
        )
        self.proxy.connections.allow_from(
            self.client_security_group,
            ec2.Port.tcp(DATABASE_PORT),
            "Feature store clients",
        )
