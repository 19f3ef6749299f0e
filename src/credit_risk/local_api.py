"""A local stand-in for API Gateway in front of the inference Lambda.

Each HTTP request becomes an API Gateway REST proxy event (payload format 1.0) and
is handed to the very same ``lambda_handler`` that runs in AWS, through the ``live``
alias; its response is written back as HTTP. Like the real stage, it checks the
``x-api-key`` header when a key is configured, but for the API reference
(``GET /v1/docs``, its files and ``GET /v1/openapi.json``), which is public.

There is one function, as in AWS: a model release does not split traffic between
function versions; it runs inside the function, which follows the registry's
release record (``credit_risk.serving.model_source``), scores with both models and
answers each customer with the model the keyed hash assigns
(``credit_risk.serving.assignment``). Which model answered is in the body
(``model_version``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from credit_risk import names
from credit_risk.errors import ConfigurationError

HANDLER_PATH = Path(__file__).resolve().parents[2] / "lambdas" / "inference" / "handler.py"
STAGE = "local"
FUNCTION_NAME = "credit-risk-inference"
LIVE = "live"
# API Gateway refuses payloads over 10 MB before the function sees them.
MAX_BODY_BYTES = 10 * 1024 * 1024
# A body's declared length: decimal digits only (``int`` would also take a sign or
# underscores, and a negative length would have the read wait for the client to
# close the connection).
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    # The alias the call came through, the qualifier of the invoked ARN (None: unqualified).
    qualifier: str | None = None

    @property
    def invoked_function_arn(self) -> str:
        arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        return f"{arn}:{self.qualifier}" if self.qualifier else arn

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@contextmanager
def patched_environment(overrides: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``overrides`` (None: unset) for the duration of the block."""
    saved = {name: os.environ.get(name) for name in overrides}
    for name, value in overrides.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler_module(name: str, path: Path = HANDLER_PATH) -> ModuleType:
    """A fresh copy of the handler module, as a new Lambda execution environment has."""
    if not path.exists():
        raise ConfigurationError(
            f"the inference handler is not at {path}; "
            "run the local API from a checkout of the repository"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LocalFunction:
    """One "Lambda version": its own copy of the handler module, initialised with
    its own environment."""

    def __init__(
        self,
        alias: str,
        environment: Mapping[str, str | None],
        handler_path: Path = HANDLER_PATH,
    ) -> None:
        self.alias = alias
        with patched_environment(environment):
            self.module = load_handler_module(f"credit_risk_inference_{alias}", handler_path)
            # Cold start now, not on the first request: a broken model fails here.
            self.module.initialize()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LambdaContext(function_name=FUNCTION_NAME, qualifier=self.alias)
        return self.module.lambda_handler(event, context)

    def close(self) -> None:
        """Closes the function's store connection (a Lambda's ends with its instance)."""
        service = getattr(self.module, "_service", None)
        if service is not None:
            service.store.close()


def champion_function(
    environment: Mapping[str, str | None] | None = None, *, refresh_seconds: float
) -> LocalFunction:
    """The ``live`` function as a code release publishes it: pinned to no model, it
    serves the registry's champion and follows promotions and the release record,
    re-reading them every ``refresh_seconds`` (0: on every request)."""
    return LocalFunction(
        LIVE,
        {
            names.ENV_MODEL_VERSION: None,
            names.ENV_MODEL_FALLBACK_TO_CHAMPION: "true",
            names.ENV_MODEL_REFRESH_SECONDS: f"{refresh_seconds:g}",
            **(environment or {}),
        },
    )


def build_event(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    alias: str,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway REST proxy event (payload 1.0) for one HTTP request."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    request_id = str(uuid.uuid4())
    text = body.decode("utf-8", errors="replace") if body else None
    return {
        "resource": url.path,
        "path": url.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": {names.STAGE_VARIABLE_LAMBDA_ALIAS: alias},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "resourcePath": url.path,
            "httpMethod": method,
            # The path as the client called it: here the API sits at the root, as
            # on a custom domain (API Gateway's stage URL puts /<stage> first).
            "path": url.path,
            "stage": STAGE,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent"),
                "apiKey": headers.get(names.API_KEY_HEADER),
            },
        },
        "body": text,
        "isBase64Encoded": False,
    }


def is_public(method: str, path: str) -> bool:
    """A request the stage lets through without an API key: a GET of the API
    reference (names.PUBLIC_ROUTES and the page's files), as its methods say."""
    path = path.rstrip("/") or "/"
    # The page's files are one level under it ({asset}), as the stage's resource is.
    parent, _, asset = path.rpartition("/")
    return method == "GET" and (
        path in names.PUBLIC_ROUTES or (parent == names.ROUTE_DOCS and asset != "")
    )


def gateway_error(
    status: HTTPStatus, error: str, message: str, request_id: str | None = None
) -> dict[str, Any]:
    """An error the gateway itself answers, shaped like the API's own errors and
    named as the deployed API's gateway responses name it (``names.GATEWAY_ERROR_*``)."""
    body = {"error": error, "message": message, "request_id": request_id or str(uuid.uuid4())}
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


class LocalGateway:
    """API key check, size limit, event translation: what the API stage does."""

    def __init__(self, function: LocalFunction, *, api_key: str | None = None) -> None:
        self.function = function
        self.api_key = api_key
        # One invocation at a time in the whole process: a Lambda instance serves one
        # request at a time, and Powertools keeps metrics and log keys in state that
        # every copy of the handler module shares.
        self._invoke_lock = threading.Lock()

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        """The response to one request, from the gateway itself or the function."""
        headers = {name.lower(): value for name, value in headers.items()}
        if (
            self.api_key is not None
            and not is_public(method, urlsplit(target).path)
            and headers.get(names.API_KEY_HEADER) != self.api_key
        ):
            return gateway_error(
                HTTPStatus.FORBIDDEN, names.GATEWAY_ERROR_FORBIDDEN, "missing or invalid API key"
            )
        if len(body) > MAX_BODY_BYTES:
            return gateway_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                names.GATEWAY_ERROR_TOO_LARGE,
                "request body too large",
            )
        with self._invoke_lock:
            event = build_event(
                method=method, target=target, headers=headers, body=body, alias=self.function.alias
            )
            try:
                return self.function.invoke(event)
            except Exception:
                # What API Gateway answers when the function itself fails; the
                # handler has logged why.
                return gateway_error(
                    HTTPStatus.BAD_GATEWAY,
                    names.GATEWAY_ERROR_UNAVAILABLE,
                    "internal server error",
                    event["requestContext"]["requestId"],
                )


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "credit-risk-local-api"
    gateway: LocalGateway  # set on the subclass made by make_server

    def _serve(self) -> None:
        declared = self.headers.get("content-length", "0").strip()
        length = int(declared) if _CONTENT_LENGTH.fullmatch(declared) else None
        if length is None:
            # Where the body ends is unknown: answer, and read nothing more of it.
            response = gateway_error(
                HTTPStatus.BAD_REQUEST,
                names.GATEWAY_ERROR_BAD_REQUEST,
                "invalid Content-Length header",
            )
            self.close_connection = True
        elif length > MAX_BODY_BYTES:
            response = gateway_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                names.GATEWAY_ERROR_TOO_LARGE,
                "request body too large",
            )
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            response = self.gateway.handle(self.command, self.path, self.headers, body)
        payload = (response.get("body") or "").encode("utf-8")
        self.send_response(int(response["statusCode"]))
        headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers.setdefault(name, ", ".join(values))
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # The stdlib dispatches on these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the handler logs every request itself, with its correlation id


def make_server(
    gateway: LocalGateway, host: str = "127.0.0.1", port: int = 8080
) -> ThreadingHTTPServer:
    """An HTTP server bound to ``host:port`` (port 0 picks a free one)."""
    handler = type("RequestHandler", (_RequestHandler,), {"gateway": gateway})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
