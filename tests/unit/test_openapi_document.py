"""The committed ``openapi.json`` is the document the inference handler produces."""

from __future__ import annotations

import json
from pathlib import Path

from credit_risk import names
from credit_risk.commands.openapi import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"


def test_committed_openapi_document_is_up_to_date():
    # Given the document generated from the handler's routes and models
    generated = openapi_document()
    # Then the committed copy is the same, byte for byte
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "openapi.json is stale: run `credit-risk openapi --output openapi.json`"
    )


def test_document_declares_the_routes_the_api_key_and_json_errors():
    document = json.loads(openapi_document())
    assert set(document["paths"]) == {
        names.ROUTE_SCORE,
        names.ROUTE_SCORE_BATCH,
        names.ROUTE_HEALTH,
        f"{names.ROUTE_DECISION}/{{{names.ROUTE_DECISION_PARAMETER}}}",
        names.ROUTE_DOCS,
        names.ROUTE_OPENAPI,
    }
    # The reference is read without a key; every other operation needs one.
    public = {
        route
        for route, path in document["paths"].items()
        for operation in path.values()
        if operation.get("security") == []
    }
    assert public == set(names.PUBLIC_ROUTES)
    assert document["security"] == [{"apiKey": []}]
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": names.API_KEY_HEADER,
    }
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if status != "200":
                    assert response["content"]["application/json"]["schema"] == error_ref
    batch = document["paths"][names.ROUTE_SCORE_BATCH]["post"]["responses"]
    assert "413" in batch
    assert "Retry-After" in batch["503"]["headers"]
