"""What every stack of an environment shares."""

from __future__ import annotations

import os

from aws_cdk import Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import Construct

from credit_risk.names import PROJECT
from infra.config import EnvironmentConfig


class EnvironmentStack(Stack):
    """A stack of one environment: named ``CreditRisk-<env>-<unit>``, tagged,
    with its zones taken from the configuration instead of an AWS lookup."""

    unit: str = ""
    summary: str = ""

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        self.config = config
        construct_id = f"CreditRisk-{config.name}-{self.unit}"
        super().__init__(
            scope,
            construct_id,
            stack_name=construct_id,
            description=f"Credit-risk scoring ({config.name}): {self.summary}",
            env=Environment(
                account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
                region=config.region,
            ),
            termination_protection=config.retain_data,
        )
        for key, value in (("project", PROJECT), ("environment", config.name)):
            # CDK believes proxy target groups take tags; CloudFormation does not.
            Tags.of(self).add(key, value, exclude_resource_types=_UNTAGGABLE)

    @property
    def availability_zones(self) -> list[str]:
        # Overridden so that synth never queries EC2 for the region's zones.
        return list(self.config.availability_zones)

    @property
    def removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.RETAIN if self.config.retain_data else RemovalPolicy.DESTROY

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.config.log_retention_days]


_UNTAGGABLE = ["AWS::RDS::DBProxyTargetGroup"]

_RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
