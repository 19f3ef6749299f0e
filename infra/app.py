"""CDK app: one environment per synth, chosen with ``-c env=dev|staging|prod``,
or the release pipeline that deploys all three, with ``-c release_pipeline=true``."""

from __future__ import annotations

import sys

from aws_cdk import App

from infra.config import ConfigurationError, load_config, load_pipeline_config
from infra.environment import Sources, build_environment
from infra.nag import add_nag_checks
from infra.stacks.pipeline import RELEASE_ORDER, PipelineStack


def build_pipeline(app: App, sources: Sources) -> PipelineStack:
    """The release pipeline stack, with every environment as one of its stages."""
    return PipelineStack(
        app,
        config=load_pipeline_config(app.node),
        environments={name: load_config(app.node, name) for name in RELEASE_ORDER},
        sources=sources,
    )


def _truthy(value: object) -> bool:
    # `-c release_pipeline=true` arrives as the string "true"; cdk.json could hold a
    # bool. (Not `-c pipeline=...`: that would replace the `pipeline` settings.)
    return str(value).lower() in {"true", "1", "yes"}


def main() -> int:
    app = App()
    environment = app.node.try_get_context("env") or "dev"
    try:
        if _truthy(app.node.try_get_context("release_pipeline")):
            build_pipeline(app, Sources.of_repository())
        else:
            build_environment(app, load_config(app.node, environment), Sources.of_repository())
    except (ConfigurationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    add_nag_checks(app)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
