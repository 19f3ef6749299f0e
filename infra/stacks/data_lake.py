from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_backup as backup
from constructs import Construct

from credit_risk import names
from infra.components.data_lake import DataLake
from infra.config import EnvironmentConfig
from infra.nag import BASIC_EXECUTION_POLICY, BUCKET_NOTIFICATIONS_HANDLER, acknowledge_singleton
from infra.stacks.base import EnvironmentStack


class DataLakeStack(EnvironmentStack):
    unit = "DataLake"
    summary = "raw, curated and model buckets"

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, config=config)
        self.backup_vault: backup.BackupVault | None = None
        self.lake = DataLake(
            self,
            "DataLake",
            environment=config.deployment,
            removal_policy=self.removal_policy,
            noncurrent_version_days=365 if config.retain_data else 30,
            # The primary's data flows to its standby; a standby only receives.
            replicate_to=None if config.is_standby else config.peer_region,
        )
        acknowledge_singleton(
            self,
            BUCKET_NOTIFICATIONS_HANDLER,
            {
                BASIC_EXECUTION_POLICY: "CDK's handler that turns on EventBridge delivery "
                "for the raw bucket once, at deployment; it only writes its own logs."
            },
        )
        # Where a delivery of raw loans goes (read by `credit-risk env bootstrap`).
        self.raw_bucket_output = CfnOutput(
            self, names.OUTPUT_RAW_BUCKET, value=self.lake.raw.bucket_name
        )
        # What a failover reads (credit_risk.dr).
        CfnOutput(self, names.OUTPUT_CURATED_BUCKET, value=self.lake.curated.bucket_name)
        CfnOutput(self, names.OUTPUT_MODELS_BUCKET, value=self.lake.models.bucket_name)
        if config.peer_region is not None:
            CfnOutput(self, names.OUTPUT_DR_ROLE, value=config.role)
            CfnOutput(self, names.OUTPUT_DR_PEER_REGION, value=config.peer_region)
            # The store's backups are copied into the peer's vault (FeatureStoreStack).
            self.backup_vault = backup.BackupVault(
                self,
                "BackupVault",
                backup_vault_name=config.resource_name(names.BACKUP_VAULT_PART),
                removal_policy=self.removal_policy,
            )
