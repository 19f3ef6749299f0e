"""The API reference (``GET /v1/docs``, its files, ``GET /v1/openapi.json``): served by
the inference handler through API Gateway's stage path, and over HTTP by the local
server without an API key while the scoring routes keep theirs. The page in a real
browser: tests/integration/api/test_api_reference_browser.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from credit_risk import names
from tests.integration.api.conftest import Configure, Serve, invoke, lambda_context, load_event

REPO_ROOT = Path(__file__).resolve().parents[3]
COMMITTED = REPO_ROOT / "openapi.json"
API_KEY = "reference-test-key"


def read(handler: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """Status, headers and body text of the function's response (pages are not JSON)."""
    response = handler.lambda_handler(event, lambda_context())
    headers = {k.lower(): ", ".join(v) for k, v in response["multiValueHeaders"].items()}
    return response["statusCode"], headers, response["body"]


def test_the_page_loads_everything_relative_to_where_the_api_is_mounted(configure: Configure):
    # Given the function behind the stage, called without a key (as a browser does)
    handler = configure()
    # When the page is read at https://…/api/v1/docs
    status, headers, body = read(handler, load_event("inference_docs"))
    # Then it is HTML whose every script and stylesheet is a relative URL under docs/,
    # and whose policy lets the browser load nothing from another host
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    links = re.findall(r'(?:src|href)="([^"]+)"', body)
    assert {link.split("?")[0] for link in links if link != "data:,"} == {
        "docs/swagger-ui.css",
        "docs/swagger-ui-bundle.js",
        "docs/initializer.js",
    }


def test_files_are_cached_for_good_only_under_their_content_version(configure: Configure):
    handler = configure()
    _, _, page = read(handler, load_event("inference_docs"))
    (versioned,) = re.findall(r'src="docs/swagger-ui-bundle\.js\?v=([0-9a-f]+)"', page)
    event = load_event("inference_docs_asset")

    status, current, body = read(handler, {**event, "queryStringParameters": {"v": versioned}})
    _, stale, _ = read(handler, {**event, "queryStringParameters": {"v": "0000"}})

    assert status == 200
    assert current["content-type"] == "text/javascript; charset=utf-8"
    assert current["x-content-type-options"] == "nosniff"
    assert "SwaggerUIBundle" in body
    assert current["cache-control"] == "public, max-age=31536000, immutable"
    assert stale["cache-control"] == "no-cache"


def test_an_unknown_file_is_a_json_404_like_every_other_error(configure: Configure):
    handler = configure()
    event = load_event("inference_docs_asset")
    for name in ("swagger-ui.js.map", "index.html", "..%2F..%2Fhandler.py", "passwd"):
        answer = invoke(
            handler,
            {**event, "path": f"{names.ROUTE_DOCS}/{name}", "pathParameters": {"asset": name}},
        )
        assert answer.status == 404, name
        assert answer.body["error"] == "not_found"
        assert set(answer.body) == {"error", "message", "request_id"}


def test_the_page_at_a_trailing_slash_redirects_to_the_url_its_links_resolve_from(
    configure: Configure,
):
    handler = configure()
    event = load_event("inference_docs")
    answer = invoke(handler, {**event, "path": f"{names.ROUTE_DOCS}/"})
    assert answer.status == 308
    assert answer.headers["location"] == "../docs"


def test_the_document_is_the_committed_one_with_the_stage_as_its_server(configure: Configure):
    # Given the function behind the stage named "api"
    handler = configure()
    # When the document is read at https://…/api/v1/openapi.json
    answer = invoke(handler, load_event("inference_openapi"))
    # Then "try it out" calls https://…/api/v1/…, and the rest is openapi.json as committed
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.body.pop("servers") == [
        {"url": "/api", "description": "The API this document came from"}
    ]
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    committed.pop("servers")
    assert answer.body == committed


def test_a_mount_path_that_is_not_a_plain_path_is_not_echoed_into_the_document(
    configure: Configure,
):
    handler = configure()
    event = load_event("inference_openapi")
    for request_path in ("//evil.example/v1/openapi.json", "/a b/v1/openapi.json"):
        context = {**event["requestContext"], "path": request_path}
        answer = invoke(handler, {**event, "requestContext": context})
        assert answer.body["servers"][0]["url"] == "/"


def test_the_handler_imports_nothing_of_the_reference_until_it_is_asked_for():
    # The cold start of a scoring function: importing the handler.
    probe = (
        "import sys; import lambdas.inference.handler; "
        "print([m for m in sys.modules if m.startswith(('swagger_ui_bundle', "
        "'credit_risk.serving.docs'))])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_local_server_serves_the_reference_without_a_key_and_scores_only_with_one(
    serve: Serve,
):
    # Given the local server with an API key, as the stage has
    base_url = serve(api_key=API_KEY)
    # Then the reference is public, over GET only
    page = requests.get(f"{base_url}{names.ROUTE_DOCS}", timeout=10)
    document = requests.get(f"{base_url}{names.ROUTE_OPENAPI}", timeout=10)
    css = requests.get(f"{base_url}{names.ROUTE_DOCS}/swagger-ui.css", timeout=10)
    assert (page.status_code, document.status_code, css.status_code) == (200, 200, 200)
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    # served at the root here: "try it out" calls this very server
    assert document.json()["servers"][0]["url"] == "/"
    # And everything else still needs the key
    for method, route in (
        ("GET", names.ROUTE_HEALTH),
        ("POST", names.ROUTE_SCORE),
        ("POST", names.ROUTE_DOCS),
        ("POST", names.ROUTE_OPENAPI),
        # the stage has {asset} one level under the page, nothing deeper
        ("GET", f"{names.ROUTE_DOCS}/a/swagger-ui.css"),
        ("GET", f"{names.ROUTE_DECISION}/019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a55"),
    ):
        refused = requests.request(method, f"{base_url}{route}", json={}, timeout=10)
        assert refused.status_code == 403, (method, route)
        assert set(refused.json()) == {"error", "message", "request_id"}
    scored = requests.post(
        f"{base_url}{names.ROUTE_SCORE}",
        json={"customer_id": "5008804"},
        headers={names.API_KEY_HEADER: API_KEY},
        timeout=10,
    )
    assert scored.status_code == 200
