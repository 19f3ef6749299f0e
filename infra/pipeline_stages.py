"""One environment as a deployable unit of the release pipeline."""

from __future__ import annotations

from aws_cdk import Environment, Stage, Tags
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.environment import EnvironmentStacks, Sources, build_environment
from infra.stacks.data_lake import DataLakeStack

# Tag that marks the client-key secret (and its key, when shared with another
# account), so that the smoke test may read that secret (and no other, such as
# the database's) in the environment it checks.
SMOKE_TEST_SECRET_TAG = ("credit-risk:purpose", "client-api-key")


class EnvironmentStage(Stage):
    """Every stack of one environment, built exactly as ``cdk deploy -c env=...`` does.

    ``reader_account`` is the pipeline's account when its smoke test reads the
    environment's client key: an environment in another account shares the secret
    with it (``ApiKey``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        sources: Sources,
        reader_account: str | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
        )
        self.config = config
        self.stacks: EnvironmentStacks = build_environment(
            self, config, sources, reader_account=reader_account
        )
        api_key = self.stacks.api.api_key
        Tags.of(api_key.secret).add(*SMOKE_TEST_SECRET_TAG)
        if api_key.encryption_key is not None:
            # The smoke test's kms:Decrypt selects the key by the same tag.
            Tags.of(api_key.encryption_key).add(*SMOKE_TEST_SECRET_TAG)


class StandbyStage(Stage):
    """A deployment's standby region, in two parts around its primary.

    Its lake and backup vault (``whole=False``) are released before the primary,
    which replicates and copies backups into them. A ``warm`` standby's other stacks
    (``whole=True``: every stack, its rules that start work disabled until a
    failover) follow the primary, whose client key they may take (a failover
    domain's, replicated). A ``pilot_light`` standby has only the first part; the
    rest is deployed at failover with ``cdk deploy -c region=standby``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        sources: Sources,
        whole: bool,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
        )
        if whole:
            build_environment(self, config, sources)
        else:
            DataLakeStack(self, config=config)
