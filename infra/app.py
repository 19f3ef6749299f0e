"""CDK app: one deployment per synth, chosen with ``-c env=dev|staging|prod``, of
the default market or of ``-c market=<name>`` (``cdk.json`` ``markets``), in its
primary region or, with ``-c region=standby``, its disaster-recovery standby; or the
release pipeline that deploys them all, with ``-c release_pipeline=true``."""

from __future__ import annotations

import sys

from aws_cdk import App

from credit_risk.names import DR_PRIMARY, DR_STANDBY
from infra.config import (
    ConfigurationError,
    EnvironmentConfig,
    load_config,
    load_pipeline_config,
)
from infra.environment import Sources, build_environment
from infra.nag import add_nag_checks
from infra.stacks.pipeline import RELEASE_ORDER, PipelineStack


def build_pipeline(app: App, sources: Sources) -> PipelineStack:
    """The release pipeline stack, with every deployment as one of its stages."""
    config = load_pipeline_config(app.node)
    environments = [
        load_config(app.node, name, market)
        for name in RELEASE_ORDER
        for market in (None, *config.markets)
    ]
    regions = {c.region for c in environments} | {
        c.disaster_recovery.standby_region for c in environments if c.disaster_recovery
    }
    if config.account is None and regions - {config.region}:
        # CodePipeline keeps an artifact bucket in every region it deploys to, in a
        # support stack of the pipeline's account, which must therefore be known.
        raise ConfigurationError(
            f"the pipeline deploys to {', '.join(sorted(regions - {config.region}))} besides "
            f"{config.region}: set pipeline.account in cdk.json"
        )
    return PipelineStack(app, config=config, environments=environments, sources=sources)


def selected_config(app: App) -> EnvironmentConfig:
    """The deployment the context names (``env``, ``market``, ``region``)."""
    environment = app.node.try_get_context("env") or "dev"
    config = load_config(app.node, environment, app.node.try_get_context("market") or None)
    region = app.node.try_get_context("region") or DR_PRIMARY
    if region not in (DR_PRIMARY, DR_STANDBY):
        raise ConfigurationError(
            f"unknown region {region!r}: use -c region={DR_PRIMARY}|{DR_STANDBY}"
        )
    return config.standby() if region == DR_STANDBY else config


def _truthy(value: object) -> bool:
    # `-c release_pipeline=true` arrives as the string "true"; cdk.json could hold a
    # bool. (Not `-c pipeline=...`: that would replace the `pipeline` settings.)
    return str(value).lower() in {"true", "1", "yes"}


def main() -> int:
    app = App()
    try:
        if _truthy(app.node.try_get_context("release_pipeline")):
            build_pipeline(app, Sources.of_repository())
        else:
            build_environment(app, selected_config(app), Sources.of_repository())
    except (ConfigurationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    add_nag_checks(app)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
