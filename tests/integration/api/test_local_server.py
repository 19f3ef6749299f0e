"""The local API server over real HTTP: API key and gateway limits, in front of the
inference handler reading the local (SQLite) feature store. Model releases on the
local server: tests/integration/api/test_release_serving.py."""

from __future__ import annotations

import http.client
import json

import requests

from credit_risk import names
from credit_risk.local_api import MAX_BODY_BYTES
from tests.integration.api.conftest import Serve, Serving, load_event

API_KEY = "local-test-key"


def score(base_url: str, customer_id: str = "5008804", **headers: str) -> requests.Response:
    return requests.post(
        f"{base_url}{names.ROUTE_SCORE}",
        json={"customer_id": customer_id},
        headers=headers,
        timeout=10,
    )


def test_scores_over_http_from_the_local_store(serve: Serve, serving: Serving):
    base_url = serve()
    response = score(base_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["customer_id"] == "5008804"
    assert body["model_version"] == serving.version
    health = requests.get(f"{base_url}{names.ROUTE_HEALTH}", timeout=10).json()
    assert health["status"] == "ok"
    assert health["snapshot_id"] == "local-tests"


def test_events_over_http_get_the_same_errors_as_in_lambda(serve: Serve):
    base_url = serve()
    for name, status in [
        ("inference_invalid_json", 400),
        ("inference_unknown_field", 400),
        ("inference_unknown_customer", 404),
        ("inference_batch_101", 413),
        ("inference_unknown_route", 404),
    ]:
        event = load_event(name)
        response = requests.post(
            f"{base_url}{event['path']}",
            data=event["body"],
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.status_code == status, name
        assert set(response.json()) == {"error", "message", "request_id"}


def test_api_key_is_required_when_configured(serve: Serve):
    # Given a server with an API key
    base_url = serve(api_key=API_KEY)
    # When requests come without it, with a wrong one and with the right one
    missing = score(base_url)
    wrong = score(base_url, **{names.API_KEY_HEADER: "guess"})
    right = score(base_url, **{names.API_KEY_HEADER: API_KEY})
    # Then only the right one reaches the function
    for refused in (missing, wrong):
        assert refused.status_code == 403
        assert refused.json()["error"] == names.GATEWAY_ERROR_FORBIDDEN
    assert right.status_code == 200


def test_bodies_over_the_gateway_limit_are_413(serve: Serve):
    base_url = serve()
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    # A client announcing a body larger than API Gateway accepts is refused at once.
    connection.putrequest("POST", names.ROUTE_SCORE)
    connection.putheader("content-type", "application/json")
    connection.putheader("content-length", str(MAX_BODY_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == names.GATEWAY_ERROR_TOO_LARGE
    connection.close()


def test_a_body_length_that_is_no_number_is_400(serve: Serve):
    base_url = serve()
    host, port = base_url.removeprefix("http://").split(":")
    for declared in ("abc", "-1", "+5", "1_0", "0x10", ""):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("POST", names.ROUTE_SCORE)
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", declared)
        connection.endheaders()
        # Answered at once, without reading a body whose end is unknown.
        response = connection.getresponse()
        assert response.status == 400, declared
        assert json.loads(response.read())["error"] == names.GATEWAY_ERROR_BAD_REQUEST
        connection.close()
