from __future__ import annotations

from aws_cdk import ArnFormat, Duration
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from constructs import Construct

from credit_risk import names
from infra.components.feature_database import FeatureDatabase
from infra.config import ConfigurationError, EnvironmentConfig
from infra.nag import (
    BASIC_EXECUTION_POLICY,
    LOG_RETENTION_FUNCTION,
    acknowledge,
    acknowledge_singleton,
)
from infra.stacks.base import EnvironmentStack


class FeatureStoreStack(EnvironmentStack):
    unit = "FeatureStore"
    summary = "PostgreSQL feature store behind RDS Proxy"

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        backup_vault: backup.IBackupVault | None = None,
    ) -> None:
        """``backup_vault``: this region's vault (``DataLakeStack``) when the deployment
        has a standby region."""
        super().__init__(scope, config=config)
        self.database = FeatureDatabase(
            self,
            "FeatureDatabase",
            vpc=vpc,
            settings=config.database,
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        instance = self.database.instance
        acknowledge_singleton(
            self,
            LOG_RETENTION_FUNCTION,
            {
                BASIC_EXECUTION_POLICY: "CDK's log-retention function, run at deployment "
                "to set the retention of the log groups RDS creates itself.",
                "AwsSolutions-IAM5[Resource::*]": "The log-retention function sets the "
                "retention of log groups named by RDS at creation time.",
            },
        )
        acknowledge(
            instance,
            "AwsSolutions-RDS11",
            "Clients reach the database only through RDS Proxy inside isolated subnets; "
            "a non-standard port would hide nothing there.",
        )
        if not config.database.multi_az:
            acknowledge(
                instance,
                "AwsSolutions-RDS3",
                f"{config.name} is not production: a single-AZ instance is enough and the "
                "feature store can be reloaded from the lake.",
            )
        if not config.database.deletion_protection:
            acknowledge(
                instance,
                "AwsSolutions-RDS10",
                f"{config.name} is torn down and recreated freely; a final snapshot is "
                "still taken on deletion.",
            )

        if backup_vault is not None:
            self._copy_backups(config, backup_vault)

    def _copy_backups(self, config: EnvironmentConfig, vault: backup.IBackupVault) -> None:
        """Back the store up every ``backup_every_hours`` into this region's vault and
        copy each backup to the peer region's. The store holds the decision record,
        which nothing else does: a failover loads features from the replicated lake,
        and the decisions made before it are restored from these copies."""
        dr, peer = config.disaster_recovery, config.peer_region
        if dr is None or peer is None:
            raise ConfigurationError(f"{config.deployment} has no standby region")
        peer_vault = backup.BackupVault.from_backup_vault_arn(
            self,
            "PeerVault",
            self.format_arn(
                service="backup",
                region=peer,
                resource="backup-vault",
                resource_name=config.resource_name(names.BACKUP_VAULT_PART),
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        )
        # The local recovery point only feeds the copy: the instance's automated
        # backups already restore it to any point of backup_retention_days. Every
        # recovery point kept counts against the region's quota of RDS snapshots (100
        # by default), the peer's copies included.
        kept = Duration.days(1)
        plan = backup.BackupPlan(
            self,
            "StoreBackups",
            backup_plan_name=config.resource_name("store"),
            backup_plan_rules=[
                backup.BackupPlanRule(
                    rule_name="CopiedToPeerRegion",
                    backup_vault=vault,
                    schedule_expression=events.Schedule.cron(
                        minute="0", hour=f"*/{dr.backup_every_hours}"
                    ),
                    start_window=Duration.hours(1),
                    completion_window=Duration.hours(2),
                    delete_after=kept,
                    copy_actions=[
                        backup.BackupPlanCopyActionProps(
                            destination_backup_vault=peer_vault,
                            delete_after=Duration.days(dr.backup_copy_retention_days),
                        )
                    ],
                )
            ],
        )
        selection = plan.add_selection(
            "Store",
            resources=[backup.BackupResource.from_rds_database_instance(self.database.instance)],
        )
        acknowledge(
            selection,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSBackupServiceRolePolicyForBackup]",
            "AWS Backup's own service-role policy, which it needs to snapshot the "
            "instance and copy the snapshot; the role is assumable by AWS Backup only.",
        )
