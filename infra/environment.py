"""All the stacks of one environment, wired together.

``build_environment`` takes any scope, so the same function fills the app
(``cdk deploy -c env=dev --all``) and a pipeline stage.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from constructs import Construct

import credit_risk
from infra.config import ConfigurationError, EnvironmentConfig
from infra.stacks.api import ApiStack
from infra.stacks.base import EnvironmentStack
from infra.stacks.data_lake import DataLakeStack
from infra.stacks.feature_store import FeatureStoreStack
from infra.stacks.features import FeaturesStack
from infra.stacks.ml import MlStack
from infra.stacks.monitoring import MonitoringStack
from infra.stacks.network import NetworkStack
from infra.stacks.orchestration import OrchestrationStack

REPO_ROOT = Path(__file__).resolve().parents[1]
# Set by CodeBuild (the release pipeline's synth) to the commit it builds.
COMMIT_VARIABLE = "CODEBUILD_RESOLVED_SOURCE_VERSION"


@dataclass(frozen=True)
class Sources:
    """Files of the repository the stacks deploy."""

    glue_script: Path
    library_wheel: Path
    step_functions: Path

    @classmethod
    def of_repository(cls, root: Path = REPO_ROOT, wheel: Path | None = None) -> Sources:
        return cls(
            glue_script=root / "glue_jobs" / "feature_extraction.py",
            library_wheel=wheel or library_wheel(root),
            step_functions=root / "step_functions",
        )

    def check(self) -> None:
        for path, how in (
            (self.glue_script, "the Glue entrypoint"),
            (self.library_wheel, "the library wheel: build it with `uv build --wheel`"),
        ):
            if not path.is_file():
                raise ConfigurationError(f"missing {path}: {how}")


def library_wheel(root: Path) -> Path:
    """``dist/credit_risk-<version>-py3-none-any.whl`` of the current pyproject version."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = project["name"].replace("-", "_")
    return root / "dist" / f"{name}-{project['version']}-py3-none-any.whl"


def code_version(root: Path = REPO_ROOT) -> str:
    """The commit the functions are built from: CodeBuild's, else the checkout's
    short HEAD, else the library's version (a source tree outside git)."""
    commit = os.environ.get(COMMIT_VARIABLE, "").strip()
    if commit:
        return commit
    try:
        # A fixed git command on our own checkout; git is looked up on PATH.
        head = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return head or credit_risk.__version__


@dataclass(frozen=True)
class EnvironmentStacks:
    network: NetworkStack
    data_lake: DataLakeStack
    feature_store: FeatureStoreStack
    features: FeaturesStack
    ml: MlStack
    api: ApiStack
    orchestration: OrchestrationStack
    monitoring: MonitoringStack

    @property
    def all(self) -> tuple[EnvironmentStack, ...]:
        return tuple(getattr(self, field) for field in self.__dataclass_fields__)


def build_environment(
    scope: Construct,
    config: EnvironmentConfig,
    sources: Sources,
    *,
    reader_account: str | None = None,
) -> EnvironmentStacks:
    """``reader_account``: the account that reads the client-key secret from outside
    the environment (the release pipeline's, for its smoke test), if any."""
    sources.check()
    network = NetworkStack(scope, config=config)
    data_lake = DataLakeStack(scope, config=config)
    lake = data_lake.lake
    feature_store = FeatureStoreStack(
        scope,
        config=config,
        vpc=network.vpc,
        backup_vault=data_lake.backup_vault,
    )
    database = feature_store.database
    commit = code_version()
    features = FeaturesStack(
        scope,
        config=config,
        lake=lake,
        script=sources.glue_script,
        library_wheel=sources.library_wheel,
        code_version=commit,
    )
    ml = MlStack(
        scope,
        config=config,
        vpc=network.vpc,
        lake=lake,
        database=database,
        code_version=commit,
    )
    api = ApiStack(scope, config=config, functions=ml.functions, reader_account=reader_account)
    orchestration = OrchestrationStack(
        scope,
        config=config,
        step_functions=sources.step_functions,
        lake=lake,
        feature_job=features.job,
        functions=ml.functions,
        batch_scoring=ml.batch_scoring,
    )
    monitoring = MonitoringStack(
        scope,
        config=config,
        topic=orchestration.topic,
        api=api.scoring,
        functions=ml.functions,
        database=database,
        feature_job=features.job,
        state_machines=dict(orchestration.state_machines),
        client_key=api.api_key.secret,
        domain=None if api.domain is None else api.domain.domain_name,
    )
    return EnvironmentStacks(
        network, data_lake, feature_store, features, ml, api, orchestration, monitoring
    )
