"""The OpenAPI document of the scoring API, from the inference handler's resolver.

Powertools documents its own defaults for invalid requests (422) and invalid
responses; this API answers those with 400 and 500 in the ``ErrorResponse`` shape,
and the document says so. Routes declare their error responses with
``error_responses`` so that every status carries the same body model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import content_types

from credit_risk import __version__, names
from credit_risk.serving import models

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

_ERROR_CONTENT = {content_types.APPLICATION_JSON: {"model": models.ErrorResponse}}
_ERROR_CONTENT_REF = {
    content_types.APPLICATION_JSON: {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


# A 503 that only the missing model explains (a route that answers a store outage
# with 200 "degraded").
NO_MODEL = (
    "No model in service yet (no_model: the environment's first model is not promoted); "
    "retry after Retry-After"
)
_DESCRIPTIONS = {
    HTTPStatus.BAD_REQUEST: "Invalid request: not JSON, wrong types, unknown fields, bad ids",
    HTTPStatus.FORBIDDEN: "Missing or invalid API key (x-api-key)",
    HTTPStatus.NOT_FOUND: "Unknown customer",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: f"More than {names.MAX_BATCH_SIZE} customer ids",
    HTTPStatus.UNPROCESSABLE_ENTITY: (
        "The stored features of a requested customer cannot be scored "
        "(unscorable_features): the feature snapshot needs repairing"
    ),
    HTTPStatus.TOO_MANY_REQUESTS: "Throttled by the usage plan",
    HTTPStatus.SERVICE_UNAVAILABLE: (
        "Feature store unavailable (store_unavailable), or no model in service yet "
        "(no_model); retry after Retry-After"
    ),
}


def error_responses(
    *statuses: HTTPStatus, descriptions: Mapping[HTTPStatus, str] | None = None
) -> dict[int, dict[str, Any]]:
    """The ``responses`` entries of a route for these error statuses; ``descriptions``
    replaces the usual wording of a status where the route has its own."""
    wording = {**_DESCRIPTIONS, **(descriptions or {})}
    responses: dict[int, dict[str, Any]] = {}
    for status in statuses:
        response = {"description": wording[status], "content": _ERROR_CONTENT}
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            response["headers"] = _RETRY_AFTER
        responses[int(status)] = response
    return responses


def document(app: APIGatewayRestResolver) -> str:
    """The resolver's OpenAPI document with this API's error conventions, as JSON."""
    # Imported here: Powertools' OpenAPI models are some 50 ms of Pydantic classes
    # that no request needs, only this document (``credit-risk openapi``), and the
    # inference handler imports this module on its cold start.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    spec = json.loads(
        app.get_openapi_json_schema(
            title="Credit-risk scoring API",
            version=__version__,
            description=(
                "Real-time probability of default, decision and reasons for a lender's "
                "customers, from the latest features in the feature store. Every request "
                f"carries an API key in `{names.API_KEY_HEADER}`, but for the reference "
                f"(`{names.ROUTE_DOCS}`) and this document (`{names.ROUTE_OPENAPI}`); "
                "errors are JSON `{error, message, request_id}`."
            ),
            security_schemes={"apiKey": APIKey(name=names.API_KEY_HEADER, in_=APIKeyIn.header)},
            security=[{"apiKey": []}],
        )
    )
    for route, path in spec["paths"].items():
        for operation in path.values():
            if route in names.PUBLIC_ROUTES:
                # Read without a key (Powertools leaves an empty list out).
                operation["security"] = []
            responses = operation["responses"]
            # Powertools' own 422 (its validation errors are 400 here); a route's own
            # 422 (unscorable_features) stays.
            if responses.get("422", {}).get("description") == "Validation Error":
                responses.pop("422")
            responses["500"] = {"description": "Internal error", "content": _ERROR_CONTENT_REF}
            operation["responses"] = dict(sorted(responses.items()))
    schemas = spec["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
