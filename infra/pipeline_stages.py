"""One environment as a deployable unit of the release pipeline."""

from __future__ import annotations

from aws_cdk import Environment, Stage, Tags
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.environment import EnvironmentStacks, Sources, build_environment

# Tag that marks the client-key secret, so that the smoke test may read that
# secret (and no other, such as the database's) in the environment it checks.
SMOKE_TEST_SECRET_TAG = ("credit-risk:purpose", "client-api-key")


class EnvironmentStage(Stage):
    """Every stack of one environment, built exactly as ``cdk deploy -c env=...`` does."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, sources: Sources
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
        )
        self.config = config
        self.stacks: EnvironmentStacks = build_environment(self, config, sources)
        Tags.of(self.stacks.api.api_key.secret).add(*SMOKE_TEST_SECRET_TAG)
