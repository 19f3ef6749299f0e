from __future__ import annotations

from constructs import Construct

from infra.components.network import Network
from infra.config import EnvironmentConfig
from infra.nag import acknowledge
from infra.stacks.base import EnvironmentStack


class NetworkStack(EnvironmentStack):
    unit = "Network"
    summary = "VPC, subnets, flow logs, S3 endpoint"

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, config=config)
        self.network = Network(
            self,
            "Network",
            cidr=config.vpc_cidr,
            availability_zones=config.availability_zones,
            nat_gateways=config.nat_gateways,
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        self.vpc = self.network.vpc
        acknowledge(
            self.vpc,
            "CloudFormation-Validate::W3010",
            "Zones are pinned in cdk.json on purpose: synth must not query AWS, and the "
            "same zones must come back on every synth.",
        )
