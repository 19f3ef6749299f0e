"""Schemathesis against the local server, driven by the committed ``openapi.json``:
generated valid and invalid requests never get a server error, and every response
matches the status codes, headers and schemas the document declares."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from credit_risk import names
from tests.conftest import EVENTS_DIR

OPENAPI = EVENTS_DIR.parents[1] / "openapi.json"
API_KEY = "conformance-key"
EXAMPLES_PER_OPERATION = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Invalid input is refused with 400, or 413 for a batch over the documented maxItems;
# 403/404 are the gateway's and the router's own answers.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 403, 404, 413]}}}
)
OPERATIONS = [
    ("POST", names.ROUTE_SCORE),
    ("POST", names.ROUTE_SCORE_BATCH),
    ("GET", names.ROUTE_HEALTH),
]
# The reference takes no input and no key: no request of it is invalid.
PUBLIC_OPERATIONS = [("GET", names.ROUTE_DOCS), ("GET", names.ROUTE_OPENAPI)]
CASES = [
    *(
        (method, path, mode)
        for method, path in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ),
    *((method, path, GenerationMode.POSITIVE) for method, path in PUBLIC_OPERATIONS),
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_generated_requests_conform_to_the_document(serve, method, path, mode):
    # Given the local server (with an API key, as in AWS) and the committed document
    base_url = serve(api_key=API_KEY)
    schema = schemathesis.openapi.from_path(OPENAPI, config=CONFIG)
    operation = schema[path][method]
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])

    # When requests generated from the document are sent (a fixed, derandomised set)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exchange(case):
        # Then no response is a server error or breaks the document
        case.call_and_validate(
            base_url=base_url, headers={names.API_KEY_HEADER: API_KEY}, checks=checks
        )

    exchange()
