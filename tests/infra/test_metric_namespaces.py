"""Each deployment publishes and reads its custom metrics under a namespace of its own
(``names.metric_namespace``): dev, staging and prod, and the markets beside them, share
an account and region by default, and no alarm or release gate may judge metrics
another deployment published.

The templates are those of tests/infra/conftest.py, synthesized with cdk-nag on.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest

from credit_risk import names
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

DEPLOYMENTS = ("dev", "staging", "prod", "mx_prod")
AWS_NAMESPACES = "AWS/"


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest) -> Synthesized:
    return request.getfixturevalue(request.param)


def custom_metric_namespaces(synth: Synthesized) -> dict[str, str]:
    """The namespace of every metric, other than an AWS service's own, that an alarm of
    the deployment reads (its own metric, or those of its metric queries), by alarm and
    metric (``unit/logical id/index``)."""
    found = {}
    for unit in synth.templates:
        for logical_id, alarm in synth.resources(unit, "AWS::CloudWatch::Alarm").items():
            props = alarm["Properties"]
            metrics = (
                [props]
                if "Namespace" in props
                else [
                    query["MetricStat"]["Metric"]
                    for query in props.get("Metrics", [])
                    if "MetricStat" in query
                ]
            )
            for index, metric in enumerate(metrics):
                namespace = str(metric["Namespace"])  # a token would show as its dict
                if not namespace.startswith(AWS_NAMESPACES):
                    found[f"{unit}/{logical_id}/{index}"] = namespace
    return found


def function_variables(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Every function of the deployment (``unit/logical id``) and its variables."""
    return {
        f"{unit}/{logical_id}": function["Properties"].get("Environment", {}).get("Variables", {})
        for unit in synth.templates
        for logical_id, function in synth.resources(unit, "AWS::Lambda::Function").items()
    }


def test_every_alarm_on_a_custom_metric_reads_its_own_deployment_s_namespace(
    deployment: Synthesized,
):
    own = names.metric_namespace(deployment.environment)

    read = custom_metric_namespaces(deployment)

    assert read  # the release, candidate, probe and monitor alarms, at least
    assert {alarm: namespace for alarm, namespace in read.items() if namespace != own} == {}


def test_every_function_publishes_in_the_namespace_its_code_uses(deployment: Synthesized):
    own = names.metric_namespace(deployment.environment)
    publishing = {
        function: variables
        for function, variables in function_variables(deployment).items()
        if names.ENV_POWERTOOLS_METRICS_NAMESPACE in variables
    }

    # Powertools' namespace is the one the handlers set from CREDIT_RISK_ENVIRONMENT.
    assert publishing
    for function, variables in publishing.items():
        assert variables[names.ENV_POWERTOOLS_METRICS_NAMESPACE] == own, function
        assert variables[names.ENV_ENVIRONMENT] == deployment.environment, function


def test_no_two_deployments_alarm_on_the_same_namespace(request: pytest.FixtureRequest):
    read = {
        name: set(custom_metric_namespaces(request.getfixturevalue(name)).values())
        for name in DEPLOYMENTS
    }

    for first, second in combinations(DEPLOYMENTS, 2):
        assert not read[first] & read[second], (first, second)
