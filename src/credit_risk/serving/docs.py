"""The API reference page: Swagger UI, served by the API itself.

``GET /v1/docs`` is a small page of ours; Swagger UI's files (the official dist,
from the ``swagger-ui-bundle-v2`` package) come from the same API under
``/v1/docs/<file>``, and the page reads the document at ``/v1/openapi.json``. Every
URL in the page is relative, so it works wherever the API is mounted: at the root
locally, under the stage name (``https://…/api/v1/docs``) or a custom domain's base
path in AWS. Nothing comes from another host: the page works offline and behind a
proxy that blocks CDNs, and its Content-Security-Policy says so.

Only the docs routes import this module (never the scoring path, nor the handler's
import): files are read on first use and kept for the life of the process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

INITIALIZER = "initializer.js"
# The files of the dist the page uses (the standalone preset and layout add a
# top bar for loading other documents, which this page does not want).
_DIST_FILES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
}
_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
# Asset URLs carry their content's hash (?v=): a matching request may be cached for
# good; anything else is revalidated, as are the page and the document.
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# A mount path as API Gateway reports it: the stage, or a custom domain's base path.
_MOUNT = re.compile(r"(/[A-Za-z0-9._~-]+)*")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Credit-risk scoring API reference</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="docs/swagger-ui.css?v={css}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js?v={bundle}"></script>
  <script src="docs/{initializer}?v={init}"></script>
</body>
</html>
"""

# The document's URL is resolved against the page's, so that "try it out" calls
# the API the page came from (the document's servers entry names its mount path).
_INITIALIZER_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    persistAuthorization: false,
  });
});
"""


@dataclass(frozen=True)
class _File:
    body: str
    content_type: str

    @functools.cached_property
    def version(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()[:16]


@functools.cache
def _file(name: str) -> _File | None:
    if name == INITIALIZER:
        return _File(_INITIALIZER_JS, "text/javascript; charset=utf-8")
    if name not in _DIST_FILES:
        return None
    from swagger_ui_bundle import swagger_ui_path

    return _File((swagger_ui_path / name).read_text(encoding="utf-8"), _DIST_FILES[name])


def _response(body: str, content_type: str, cache_control: str, **headers: str) -> Response:
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_type,
        body=body,
        headers={
            "Cache-Control": cache_control,
            "X-Content-Type-Options": "nosniff",
            **headers,
        },
    )


def _version(name: str) -> str:
    file = _file(name)
    assert file is not None, name
    return file.version


@functools.cache
def _page_html() -> str:
    return _PAGE.format(
        css=_version("swagger-ui.css"),
        bundle=_version("swagger-ui-bundle.js"),
        initializer=INITIALIZER,
        init=_version(INITIALIZER),
    )


def page(request_path: str) -> Response:
    """The reference page; from ``/v1/docs/`` (which the router takes for the
    page's route) a redirect to ``/v1/docs``, against which its links resolve."""
    if request_path.endswith("/"):
        return Response(status_code=HTTPStatus.PERMANENT_REDIRECT, headers={"Location": "../docs"})
    return _response(
        _page_html(),
        _HTML,
        _REVALIDATE,
        **{"Content-Security-Policy": _PAGE_POLICY, "Referrer-Policy": "no-referrer"},
    )


def asset(name: str, requested_version: str | None) -> Response | None:
    """One of the page's files, or None for a name that is not one."""
    file = _file(name)
    if file is None:
        return None
    cache = _IMMUTABLE if requested_version == file.version else _REVALIDATE
    return _response(file.body, file.content_type, cache)


def mount_path(request_path: str, route_path: str) -> str:
    """Where the API is mounted, from the path the client called (API Gateway's
    ``requestContext.path``: ``/<stage>/v1/…``) and the route's (``/v1/…``)."""
    if not request_path.endswith(route_path):
        return ""
    mount = request_path[: len(request_path) - len(route_path)]
    return mount if _MOUNT.fullmatch(mount) else ""


@functools.lru_cache(maxsize=8)
def _served(document: str, mount: str) -> str:
    spec = json.loads(document)
    spec["servers"] = [{"url": mount or "/", "description": "The API this document came from"}]
    return json.dumps(spec, ensure_ascii=False)


def document(document: str, mount: str) -> Response:
    """The OpenAPI document, whose server is the API it is read from (what "try it
    out" calls): the committed document plus that one ``servers`` entry."""
    return _response(_served(document, mount), _JSON, _REVALIDATE)
