"""What every stack of an environment shares."""

from __future__ import annotations

import os

from aws_cdk import Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_events as events
from aws_cdk import aws_logs as logs
from constructs import Construct

from credit_risk.names import PROJECT, WORK_RULES, schedule_rule_prefix, stack_name
from infra.config import EnvironmentConfig


class EnvironmentStack(Stack):
    """A stack of one deployment: named ``CreditRisk-<deployment>-<unit>`` (the same
    name in its standby region), tagged, with its zones taken from the configuration
    instead of an AWS lookup."""

    unit: str = ""
    summary: str = ""

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        self.config = config
        construct_id = stack_name(config.deployment, self.unit)
        where = config.deployment + (f", standby of {config.primary_region}" * config.is_standby)
        super().__init__(
            scope,
            construct_id,
            stack_name=construct_id,
            description=f"Credit-risk scoring ({where}): {self.summary}",
            env=Environment(
                account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
                region=config.region,
            ),
            termination_protection=config.retain_data,
        )
        tags = {"project": PROJECT, "environment": config.name, "deployment": config.deployment}
        if config.market is not None:
            tags["market"] = config.market
        if config.disaster_recovery is not None:
            tags["dr-role"] = config.role
        for key, value in tags.items():
            # CDK believes proxy target groups take tags; CloudFormation does not.
            Tags.of(self).add(key, value, exclude_resource_types=_UNTAGGABLE)

    def starts_work(self, rule: events.Rule, what: str) -> None:
        """Marks ``rule`` as one that starts work (a schedule, a trigger): it is named
        ``<schedule_rule_prefix><what>``, by which a failover finds it, and a standby
        deploys it disabled, so that its replicas of the primary's data start nothing
        until a failover enables it (``credit_risk.dr``)."""
        if what not in WORK_RULES:
            raise ValueError(f"{what!r} is not one of names.WORK_RULES")
        cfn = rule.node.default_child
        assert isinstance(cfn, events.CfnRule)
        cfn.name = schedule_rule_prefix(self.config.deployment) + what
        if self.config.is_standby:
            cfn.state = "DISABLED"

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
