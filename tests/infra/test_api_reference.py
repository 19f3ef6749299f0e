"""The API reference as API Gateway deploys it: which methods need the API key,
read from the synthesized template, against what the committed OpenAPI document
tells client developers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from credit_risk import names

pytestmark = pytest.mark.infra

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.json"
REFERENCE = {
    ("GET", names.ROUTE_DOCS),
    ("GET", f"{names.ROUTE_DOCS}/{{{names.ROUTE_DOCS_ASSET_PARAMETER}}}"),
    ("GET", names.ROUTE_OPENAPI),
}


def deployed_methods(synth) -> dict[tuple[str, str], dict[str, Any]]:
    """``(HTTP method, resource path)`` → the method's properties, as the template
    builds the paths from each resource's PathPart and parent."""
    resources = synth.resources("Api", "AWS::ApiGateway::Resource")

    def path_of(reference: dict[str, Any]) -> str:
        if "Fn::GetAtt" in reference:  # the API's root resource
            return ""
        resource = resources[reference["Ref"]]["Properties"]
        return f"{path_of(resource['ParentId'])}/{resource['PathPart']}"

    return {
        (props["HttpMethod"], path_of(props["ResourceId"]) or "/"): props
        for props in (
            method["Properties"]
            for method in synth.resources("Api", "AWS::ApiGateway::Method").values()
        )
    }


def test_the_reference_is_read_without_a_key_and_everything_else_needs_one(every_environment):
    methods = deployed_methods(every_environment)

    public = {route for route, props in methods.items() if props["ApiKeyRequired"] is False}
    keyed = {route for route, props in methods.items() if props["ApiKeyRequired"] is True}

    assert public == REFERENCE
    assert keyed == set(methods) - REFERENCE
    assert {("POST", names.ROUTE_SCORE), ("POST", names.ROUTE_SCORE_BATCH)} <= keyed
    assert ("GET", names.ROUTE_HEALTH) in keyed


def test_every_documented_operation_is_deployed_as_the_document_says_it_is_called(dev):
    # Given the document client developers read, and the methods API Gateway deploys
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    methods = deployed_methods(dev)

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            deployed = methods.get((method.upper(), path))
            # Then each operation exists, and needs the key exactly when the document says
            assert deployed is not None, f"{method.upper()} {path} is not deployed"
            needs_key = operation.get("security", document["security"]) != []
            assert deployed["ApiKeyRequired"] is needs_key, f"{method.upper()} {path}"
            # through the same function as the rest of the API
            assert deployed["Integration"]["Type"] == "AWS_PROXY"
