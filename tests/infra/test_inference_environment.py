"""The inference function serves with the environment the dev template gives it.

The function's ``Environment.Variables`` are read from the synthesized template and
kept as they are, except the values CloudFormation resolves at deploy time (bucket
names, the proxy endpoint, the secret ARN), which become their local equivalents:
a registry directory, the test PostgreSQL store, the id-hash key itself. The handler
is then loaded as a new execution environment would load it and called with the
sample events, first in an empty environment, then once a model is promoted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from credit_risk import names
from credit_risk.local_api import LambdaContext, load_handler_module
from credit_risk.registry import Registry
from tests.integration.api.conftest import (  # noqa: F401 - fixtures used by name
    HASH_KEY,
    Serving,
    decision_event,
    features_url,
    load_event,
    serving,
)
from tests.integration.api.registries import FIRST, promote, publish

pytestmark = [pytest.mark.infra, pytest.mark.postgres]

ENV_ID_HASH_KEY = f"{names.ENV_PREFIX}ID_HASH_KEY"


def inference_variables(template: dict[str, Any]) -> dict[str, Any]:
    """``Environment.Variables`` of the inference function in the Ml template."""
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        variables = props.get("Environment", {}).get("Variables", {})
        command = props.get("ImageConfig", {}).get("Command", [])
        if (
            command == [names.HANDLER_INFERENCE]
            or props.get("Handler") == names.HANDLER_INFERENCE
            or variables.get(names.ENV_POWERTOOLS_SERVICE_NAME) == names.SERVICE_INFERENCE
        ):
            found.append(variables)
    assert len(found) == 1, f"expected one inference function, found {len(found)}"
    return found[0]


def local_environment(
    variables: dict[str, Any], *, registry: str, database_url: str
) -> dict[str, str]:
    """The template's variables with every CloudFormation reference replaced by its
    local equivalent; literals are kept, except IAM authentication to the store,
    which a local PostgreSQL does not offer."""
    references: dict[str, str | None] = {
        names.ENV_REGISTRY_URI: registry,
        names.ENV_DATABASE_URL: database_url,
        names.ENV_ID_HASH_SECRET_ID: None,  # the key itself is given below
    }
    environment = {}
    for name, value in variables.items():
        if isinstance(value, dict):  # Ref, Fn::GetAtt, Fn::Join, ...: known at deploy only
            assert name in references, f"{name} is a CloudFormation reference with no local twin"
            local = references[name]
            if local is not None:
                environment[name] = local
        else:
            assert isinstance(value, str), f"{name}: {value!r}"
            environment[name] = value
    environment[names.ENV_DATABASE_IAM_AUTH] = "false"
    environment[ENV_ID_HASH_KEY] = HASH_KEY
    return environment


@pytest.fixture
def variables(dev) -> dict[str, Any]:
    return inference_variables(dev.template("Ml"))


@pytest.fixture
def registry_root(tmp_path: Path) -> str:
    """An empty registry: the environment before its first model."""
    return str(tmp_path / "registry")


@pytest.fixture
def start_function(
    variables: dict[str, Any],
    registry_root: str,
    features_url: str,  # noqa: F811 - the fixture of the same name
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Callable[[str], ModuleType]]:
    """Starts new execution environments of the function, under the template's
    environment and nothing else of ours."""
    for name in list(os.environ):
        if name.startswith((names.ENV_PREFIX, "POWERTOOLS_")):
            monkeypatch.delenv(name)
    environment = local_environment(variables, registry=registry_root, database_url=features_url)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # anything written to a relative path stays here
    started: list[ModuleType] = []

    def start(name: str) -> ModuleType:
        module = load_handler_module(f"credit_risk_inference_template_{name}")
        started.append(module)
        return module

    yield start
    for module in started:
        if module._service is not None:
            module._service.store.close()


def live() -> LambdaContext:
    return LambdaContext(function_name="credit-risk-inference", qualifier=names.LIVE_ALIAS)


def call(module: ModuleType, event_name: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = module.lambda_handler(load_event(event_name), live())
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), ", ".join(values))
    return response["statusCode"], json.loads(response["body"]), headers


def test_the_template_pins_no_model_version(variables: dict[str, Any]):
    assert names.ENV_MODEL_VERSION not in variables


def test_the_function_serves_an_empty_environment_then_its_first_model(
    start_function: Callable[[str], ModuleType],
    variables: dict[str, Any],
    registry_root: str,
    serving: Serving,  # noqa: F811 - the fixture of the same name
):
    environment = variables[names.ENV_ENVIRONMENT]
    # Given the function deployed into an environment with no model yet
    empty = start_function("empty")
    # When its health is asked
    status, body, headers = call(empty, "inference_health")
    # Then it answers 503 no_model, naming the way out, instead of failing
    assert status == 503
    assert body["error"] == "no_model"
    assert body["message"] == (
        f"no model is in service yet; run `credit-risk env bootstrap --env {environment}`"
    )
    assert body["request_id"] == load_event("inference_health")["requestContext"]["requestId"]
    assert int(headers["retry-after"]) > 0
    warm = empty.lambda_handler(load_event("inference_warm_up"), live())
    # (no model, and no release to take part in)
    assert warm == {"warm": True, "model_version": None, "release": None}

    # Given a model registered and promoted in that environment
    registry = Registry(registry_root, variables[names.ENV_MODEL_NAME])
    promote(registry, publish(registry, serving, FIRST))
    # When a new execution environment starts and is called
    serving_function = start_function("first-model")
    status, health, _ = call(serving_function, "inference_health")
    score_status, score, _ = call(serving_function, "inference_score")
    # Then it serves the champion, with the customer's features from the store
    assert status == 200
    assert health["model_version"] == FIRST
    assert health["store_reachable"] is True
    assert score_status == 200
    assert score["customer_id"] == "5008804"
    assert score["model_version"] == FIRST
    # And its decision is recorded and looked up under the template's environment
    response = serving_function.lambda_handler(decision_event(score["decision_id"]), live())
    decision = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert decision["environment"] == environment
    assert decision["default_probability"] == score["default_probability"]
