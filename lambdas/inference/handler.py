"""Inference Lambda: the scoring API behind API Gateway (DESIGN.md "API").

Routes parse and answer; scoring is ``credit_risk.serving.service``. The Pydantic
models of ``credit_risk.serving.models`` validate requests and produce the OpenAPI
document (``openapi.json``). Every error is JSON ``{error, message, request_id}``;
bad input is a 4xx, never a 500, and no response carries a stack trace.

The model is loaded and verified on the first invocation (or ahead of traffic under
provisioned concurrency), outside the router: a missing or corrupt model makes the
invocation fail, which the alias's Errors alarm sees and the canary release rolls
back on, instead of a stream of 500 responses. A function serving the champion
(no pinned version) is the exception for one case: with no champion yet (an empty
environment) it starts, answers 503 ``no_model`` and picks up the first champion
once it is promoted (``credit_risk.serving.model_source``).

Every 5xx is also counted per alias (``live``/``candidate``, from the invoked ARN's
qualifier), the metric the code release's alarms watch.

While a model release is in progress the service scores every request with both
models (``ScoringService.score_request``); the request's release counts leave as
one embedded-metric document per request (``credit_risk.release_metrics``), which
the release sums, and every failure of the candidate is counted in
``CandidateErrors``, which the release's alarm watches.

Every score is also written to the scoring log the monitor reads (one JSON line on
stdout per score; ``credit_risk.monitoring.records``), once the response is ready.

Importing this module is most of a cold start: it imports what serving needs and
nothing else (no OpenAPI document models, no X-Ray SDK outside Lambda; the image
has no SciPy). ``bench/cold_start.py`` measures it in the image's dependency set.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment
from pydantic import BaseModel

from credit_risk import names, release_metrics
from credit_risk.serving import decisions, models, openapi
from credit_risk.serving.service import (
    InferenceSettings,
    NoModelError,
    ScoredRequest,
    ScoringService,
    UnscorableFeaturesError,
    build_service,
    score_bucket,
)
from credit_risk.store import StoreUnavailable


class _Untraced(BaseSegment):
    """The subsegment of an untraced call: everything done to it is a no-op."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class _NoTracing(BaseProvider):
    """Tracing off, without the X-Ray SDK: outside Lambda, where Powertools turns
    tracing off anyway, its default provider would still build X-Ray's recorder, and
    with it a botocore session and client for centralized sampling (some 200 ms of
    every local start: the local server, the CLI, each test process)."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Untraced()

    @asynccontextmanager
    async def in_subsegment_async(
        self, name: str | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseSegment]:
        yield _Untraced()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Any) -> None:
        pass

    def patch_all(self) -> None:
        pass


def _tracer() -> Tracer:
    """In Lambda (the functions run with active tracing): Powertools' Tracer on the
    X-Ray SDK, as ever: a ``## lambda_handler`` subsegment with the ColdStart and
    Service annotations, and the AWS SDK's calls patched into the trace (X-Ray's
    psycopg patch wants psycopg_pool, which is not installed: queries are not).
    There the SDK samples as Lambda decided and sets up no botocore session; its
    cost is the patching, which imports botocore, needed anyway by the S3 registry.
    Elsewhere: no tracing, and no X-Ray SDK."""
    if os.environ.get("LAMBDA_TASK_ROOT"):
        return Tracer(service=names.SERVICE_INFERENCE)
    return Tracer(service=names.SERVICE_INFERENCE, disabled=True, provider=_NoTracing())


logger = Logger(service=names.SERVICE_INFERENCE)
tracer = _tracer()
# The namespace is the deployment's, set from the settings at cold start (initialize)
# before any metric is added: the settings are read after this import. In AWS,
# POWERTOOLS_METRICS_NAMESPACE gives the same one already; locally nothing does.
metrics = Metrics(service=names.SERVICE_INFERENCE)
# A response that fails its own model is our bug: a 500, not the default 422/400.
app = APIGatewayRestResolver(
    enable_validation=True,
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
    json_body_deserializer=models.parse_json,
    serializer=models.dump_json,
)

RETRY_AFTER_SECONDS = 5
# An empty environment gets its first model from a training run: minutes, not seconds.
NO_MODEL_RETRY_AFTER_SECONDS = 60
# The alias dimension of a call through neither alias ($LATEST, a bare version).
UNQUALIFIED = "unqualified"
# Field paths quoted back in 400 messages are cut here: they may be client input.
MAX_QUOTED_FIELD = 64
SYNTHETIC_NAME = re.compile(r"[a-z0-9-]{1,32}")
_service: ScoringService | None = None


class ApiError(Exception):
    """An expected refusal, answered with ``status`` and a stable ``error`` code."""

    def __init__(self, status: HTTPStatus, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def initialize() -> ScoringService:
    """The cold start: validate the environment, load and verify the pinned model (or
    the champion, if there is one yet)."""
    global _service
    if _service is None:
        try:
            settings = InferenceSettings()
            metrics.namespace = names.metric_namespace(settings.environment)
            service = build_service(
                settings,
                on_model_refresh_error=_model_refresh_failed,
                on_candidate_error=_candidate_failed,
            )
        except Exception:
            logger.exception("initialisation failed: this function version will not serve")
            raise
        if service.model is None:
            logger.warning("no model is in service yet: answering 503 until one is promoted")
        else:
            logger.info("model loaded", extra={"model_version": service.model_version})
        _publish_age(names.METRIC_MODEL_AGE_DAYS, service.model_age_days())
        _service = service
    return _service


def _model_refresh_failed(exc: Exception) -> None:
    """A new champion could not be loaded; the previous model keeps serving."""
    logger.error("the new champion could not be loaded", extra={"reason": str(exc)[:500]})
    _publish_count(names.METRIC_MODEL_REFRESH_ERRORS, {"service": names.SERVICE_INFERENCE})


def _candidate_failed(exc: Exception) -> None:
    """The release's candidate could not be loaded; the champion answers alone."""
    logger.error("the release's candidate could not be loaded", extra={"reason": str(exc)[:500]})
    _publish_count(names.METRIC_CANDIDATE_ERRORS, {"service": names.SERVICE_INFERENCE})


def _publish_release_counts(release_id: str, counts: release_metrics.ReleaseCounts) -> None:
    """A request's release counts, as one EMF document on stdout (what CloudWatch
    reads from the function's log), and its candidate failures for the alarm."""
    document = release_metrics.emf_document(
        counts, release_id, int(time.time() * 1000), namespace=metrics.namespace
    )
    if document is not None:
        print(document, file=sys.stdout, flush=True)
    if counts.candidate_errors:
        _publish_count(names.METRIC_CANDIDATE_ERRORS, {"service": names.SERVICE_INFERENCE})


def _publish_age(name: str, days: float | None) -> None:
    """Staleness gauges, with the ``service`` dimension alone: the alarms select on it."""
    if days is None:
        return
    with single_metric(
        name=name,
        unit=MetricUnit.NoUnit,
        value=round(days, 3),
        namespace=metrics.namespace,
        default_dimensions={"service": names.SERVICE_INFERENCE},
    ):
        pass


def _publish_count(name: str, dimensions: dict[str, str], count: int = 1) -> None:
    """A count in its own EMF document, with exactly these dimensions (the request's
    metrics carry model_version, which an alarm across versions must not)."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=count,
        namespace=metrics.namespace,
        default_dimensions=dimensions,
    ):
        pass


def invoked_alias(context: Any) -> str:
    """``live`` or ``candidate`` when the call came through that alias, else unqualified."""
    arn = getattr(context, "invoked_function_arn", "") or ""
    # arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    parts = arn.split(":")
    qualifier = parts[7] if len(parts) > 7 else ""
    return qualifier if qualifier in (names.LIVE_ALIAS, names.CANDIDATE_ALIAS) else UNQUALIFIED


def _error(status: HTTPStatus, error: str, message: str, **headers: str) -> Response:
    body = models.ErrorResponse(
        error=error, message=message, request_id=app.current_event.request_context.request_id
    )
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(),
        headers=headers or None,
    )


def _synthetic_caller() -> str | None:
    """The name our own synthetic callers give in ``names.SYNTHETIC_HEADER`` (the
    probe, the smoke test); their decisions are recorded all the same, marked."""
    value = app.current_event.headers.get(names.SYNTHETIC_HEADER)
    if value is None:
        return None
    if not SYNTHETIC_NAME.fullmatch(value):
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            "invalid_request",
            f"{names.SYNTHETIC_HEADER}: 1-32 lower-case letters, digits or '-'",
        )
    return value


def _answer(service: ScoringService, scored: ScoredRequest, synthetic: str | None) -> None:
    """What every answer needs before it leaves: its decisions recorded (committed,
    or the request fails with no answer given; ``credit_risk.serving.decisions``),
    then its metrics, log line and scoring-log records."""
    event = app.current_event
    decided_at = datetime.now(UTC)
    service.record_decisions(
        scored,
        event.request_context.request_id,
        decided_at,
        caller=event.request_context.identity.api_key_id,
        synthetic=synthetic,
    )
    _record_scores(service, scored, decided_at)


def _record_scores(service: ScoringService, scored: ScoredRequest, scored_at: datetime) -> None:
    served, unknown = scored.served, scored.unknown
    release_id = scored.release.release_id if scored.release is not None else None
    if release_id is not None and scored.counts is not None:
        _publish_release_counts(release_id, scored.counts)
    # The request's counts, scores and score histogram (one count per bucket), with
    # the dimensions of the request metrics, in a document of their own written whole
    # (``ScoringService.score_metrics``); the log line below flushes it.
    probabilities = [item.score.default_probability for item in served]
    for document in service.score_metrics(
        len(served),
        len(unknown),
        probabilities,
        Counter(map(score_bucket, probabilities)),
        {"service": names.SERVICE_INFERENCE, "model_version": service.model_version or "none"},
        int(time.time() * 1000),
        metrics.namespace,
    ):
        print(document, file=sys.stdout)
    # Customer ids only ever appear under the keyed hash (computed once per customer
    # for this log line and the scoring log).
    hashes = [service.hash_id(item.score.customer_id) for item in served]
    # The message as an argument: Powertools tries to parse a bare message as JSON
    # first, which for this one fails, at the cost of an exception, on every request.
    logger.info(
        "%s",
        "scored",
        extra={
            "customers": hashes,
            "unknown_customers": [service.hash_id(cid) for cid in unknown],
        },
    )
    # A score the client already has must not turn into an error because it could
    # not be logged (a full disk under a local scoring log): it is counted instead.
    try:
        service.log_scores(
            served,
            app.current_event.request_context.request_id,
            scored_at=scored_at,
            release_id=release_id,
            customer_hashes=hashes,
        )
    except OSError:
        logger.exception("scores could not be written to the scoring log")
        metrics.add_metric(name="ScoringLogErrors", unit=MetricUnit.Count, value=len(served))


def _success(description: str, model: type[BaseModel]) -> dict[str, Any]:
    """A scoring route's 200 in the OpenAPI document. The scoring routes return
    ``_ok``'s ready response and have no return annotation (which would have
    Powertools validate and convert the body again): their body model is here."""
    return {
        "description": description,
        "content": {content_types.APPLICATION_JSON: {"model": model}},
    }


def _ok(body: BaseModel) -> Response:
    """A 200 with ``body`` as JSON, serialized once. The scoring routes build their
    bodies validated (``ScoringService`` validates every score as it is made), so
    Powertools' validation and conversion of a returned model would do the work
    twice: a tenth of a batch request's time."""
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=models.dump_json(body),
    )


_GATEWAY = (HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS)
_SCORING = (
    HTTPStatus.BAD_REQUEST,
    *_GATEWAY,
    HTTPStatus.UNPROCESSABLE_ENTITY,
    HTTPStatus.SERVICE_UNAVAILABLE,
)


@app.post(
    names.ROUTE_SCORE,
    summary="Score one customer",
    description="Probability of default, decision against the model's threshold and "
    "the reasons that raised the risk, from the customer's latest features.",
    responses={
        200: _success("The customer's score", models.Score),
        **openapi.error_responses(*_SCORING, HTTPStatus.NOT_FOUND),
    },
)
def score(request: models.ScoreRequest):
    synthetic = _synthetic_caller()  # refused before any work
    service = initialize()
    scored = service.score_request([request.customer_id])
    _answer(service, scored, synthetic)
    if not scored.served:
        raise ApiError(HTTPStatus.NOT_FOUND, "unknown_customer", "no features for this customer id")
    return _ok(scored.served[0].score)


@app.post(
    names.ROUTE_SCORE_BATCH,
    summary=f"Score up to {names.MAX_BATCH_SIZE} customers",
    description="One feature-store round trip for the whole batch. Results follow the "
    "request order (a repeated id is scored each time); ids without "
    "features are listed apart, in request order.",
    responses={
        200: _success("Scores in request order; unknown ids apart", models.BatchScoreResponse),
        **openapi.error_responses(*_SCORING, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    },
)
def score_batch(request: models.BatchScoreRequest):
    if len(request.customer_ids) > names.MAX_BATCH_SIZE:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "batch_too_large",
            f"at most {names.MAX_BATCH_SIZE} customer ids per request, "
            f"got {len(request.customer_ids)}",
        )
    synthetic = _synthetic_caller()
    service = initialize()
    scored = service.score_request(request.customer_ids)
    response = models.BatchScoreResponse(
        results=[item.score for item in scored.served],
        unknown_customer_ids=scored.unknown,
        model_version=service.model_version,
    )
    _answer(service, scored, synthetic)
    return _ok(response)


@app.get(
    f"{names.ROUTE_DECISION}/<{names.ROUTE_DECISION_PARAMETER}>",
    summary="A recorded decision",
    description="What was decided, as it was answered: probability, decision, threshold, "
    "reasons, model version, the features as served, the snapshot and the time. Read "
    "from the decision record written before the answer left, never recomputed; kept "
    "for the environment's retention period. 404 for an id never issued here or "
    "past its retention.",
    responses={
        200: _success("The decision as recorded", models.DecisionRecord),
        **openapi.error_responses(
            HTTPStatus.BAD_REQUEST,
            *_GATEWAY,
            HTTPStatus.NOT_FOUND,
            HTTPStatus.SERVICE_UNAVAILABLE,
            descriptions={
                HTTPStatus.BAD_REQUEST: "decision_id is not a decision id (a UUID version 7)",
                HTTPStatus.NOT_FOUND: "No decision with this id is on record",
            },
        ),
    },
)
def decision(
    decision_id: Annotated[
        str,
        Path(
            pattern=models.DECISION_ID_PATTERN,
            description="The decision_id of a score.",
            examples=["019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a55"],
        ),
    ],
):
    service = initialize()
    found = decisions.lookup(service.store, decision_id)
    if found is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "unknown_decision", "no decision with this id")
    record, document = found
    # Who read which customer's decision, for the access trail (the id hashed).
    logger.info(
        "%s",
        "decision read",
        extra={
            "decision_id": record.decision_id,
            "customer": service.hash_id(record.customer_id),
            "caller": app.current_event.request_context.identity.api_key_id,
        },
    )
    # The document as it was written, not re-encoded.
    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=document
    )


@app.get(
    names.ROUTE_HEALTH,
    summary="Model version and feature store reachability",
    description="200 while a model is in service; status is degraded when the "
    "feature store cannot be reached or holds no snapshot. 503 no_model before the "
    "environment's first model is promoted.",
    responses={
        200: {"description": "Health of this function version"},
        **openapi.error_responses(
            *_GATEWAY,
            HTTPStatus.SERVICE_UNAVAILABLE,
            descriptions={HTTPStatus.SERVICE_UNAVAILABLE: openapi.NO_MODEL},
        ),
    },
)
def health() -> models.HealthResponse:
    service = initialize()
    result = service.health()
    if result.features_as_of is not None:
        today = datetime.now(UTC).date()
        _publish_age(names.METRIC_FEATURES_AGE_DAYS, (today - result.features_as_of).days)
    _publish_age(names.METRIC_MODEL_AGE_DAYS, service.model_age_days())
    return result


# The API reference, read without an API key (names.PUBLIC_ROUTES). Its files and the
# document are built on first use, by a module only these routes import.
def _text(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


# Outside the usage plan (no key): only the stage's rate limit applies.
_PUBLIC_ERRORS = openapi.error_responses(
    HTTPStatus.TOO_MANY_REQUESTS,
    descriptions={HTTPStatus.TOO_MANY_REQUESTS: "Throttled by the API's request rate"},
)


@app.get(
    names.ROUTE_DOCS,
    summary="API reference (this page)",
    description="The interactive reference of this API (Swagger UI, served by the API "
    "itself: no other host is called). No API key is needed to read it; Authorize "
    "takes the key that Try it out sends.",
    responses={
        200: _text("text/html", "The reference page"),
        **_PUBLIC_ERRORS,
    },
)
def docs_page():
    from credit_risk.serving import docs

    return docs.page(app.current_event.path)


@app.get(f"{names.ROUTE_DOCS}/<{names.ROUTE_DOCS_ASSET_PARAMETER}>", include_in_schema=False)
def docs_asset(asset: str):
    from credit_risk.serving import docs

    response = docs.asset(asset, app.current_event.get_query_string_value("v"))
    if response is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "not_found", "no such file in the API reference")
    return response


@functools.cache
def _reference_document() -> str:
    return openapi_json()


@app.get(
    names.ROUTE_OPENAPI,
    summary="This API's OpenAPI document",
    description="The document the reference page shows, with this API as its server. "
    "No API key is needed to read it.",
    responses={
        200: {
            "description": "OpenAPI 3.1 document",
            "content": {content_types.APPLICATION_JSON: {"schema": {"type": "object"}}},
        },
        **_PUBLIC_ERRORS,
    },
)
def openapi_document():
    from credit_risk.serving import docs

    event = app.current_event
    mount = docs.mount_path(event.request_context.path, event.path)
    return docs.document(_reference_document(), mount)


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error(exc.status, exc.error, exc.message)


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON")
            continue
        # loc is ("body", field, ...): name the field path, not the transport.
        where = ".".join(str(part) for part in err.get("loc", ())[1:]) or "body"
        if len(where) > MAX_QUOTED_FIELD:
            where = where[:MAX_QUOTED_FIELD] + "…"
        problems.append(f"{where}: {err.get('msg')}")
    return _error(
        HTTPStatus.BAD_REQUEST,
        "invalid_request",
        "; ".join(dict.fromkeys(problems)) or "invalid request",
    )


@app.exception_handler(RequestUnsupportedContentType)
def _not_json(exc: RequestUnsupportedContentType) -> Response:
    return _error(
        HTTPStatus.BAD_REQUEST,
        "invalid_request",
        f"the request body must be JSON, sent as content-type {content_types.APPLICATION_JSON}",
    )


@app.exception_handler(ResponseValidationError)
def _invalid_response(exc: ResponseValidationError) -> Response:
    logger.error("response failed its schema", extra={"errors": str(exc.errors())[:1000]})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")


@app.exception_handler(NoModelError)
def _no_model(exc: NoModelError) -> Response:
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "no_model",
        str(exc),
        **{"Retry-After": str(NO_MODEL_RETRY_AFTER_SECONDS)},
    )


@app.exception_handler(UnscorableFeaturesError)
def _unscorable(exc: UnscorableFeaturesError) -> Response:
    # Not a 5xx: the code is sound and retrying will not help until the snapshot
    # is repaired, which the metric's alarm asks for (and a code release's 5xx
    # alarms must not roll back a deployment for a bad row of data).
    service = initialize()
    logger.error(
        "stored features cannot be scored",
        extra={
            "customers": [service.hash_id(cid) for cid in exc.customer_ids],
            "features": exc.features,
        },
    )
    _publish_count(
        names.METRIC_UNSCORABLE_FEATURES,
        {"service": names.SERVICE_INFERENCE},
        len(exc.customer_ids),
    )
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "unscorable_features", str(exc))


@app.exception_handler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable) -> Response:
    logger.warning("feature store unavailable", extra={"reason": str(exc)})
    metrics.add_metric(name="StoreUnavailable", unit=MetricUnit.Count, value=1)
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the feature store is unavailable; retry later",
        **{"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")


@app.not_found
def _no_route(exc: Exception) -> Response:
    return _error(HTTPStatus.NOT_FOUND, "not_found", "no such route")


def is_warm_up(event: dict[str, Any]) -> bool:
    """An EventBridge scheduled event (or an explicit ``{"warmup": true}`` ping)."""
    return (
        event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"
    ) or event.get("warmup") is True


def _release_status(service: ScoringService) -> dict[str, Any] | None:
    """The release this instance takes part in, as the release's probe reads it."""
    serving = service.serving
    if serving is None or serving.release is None:
        return None
    release = serving.release
    return {
        "release_id": release.release_id,
        "stage": release.stage,
        "percent": release.percent,
        "candidate_version": release.model_version,
        "candidate_loaded": serving.candidate is not None,
        "candidate_error": serving.candidate_error,
    }


def _observe(handler):
    """Initialise first (and pick up a new champion when due); answer warm-ups at
    once; count and time every request, and count its 5xx per alias."""

    @functools.wraps(handler)
    def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
        service = initialize()
        # A warm-up with "refresh" (the release's probe) re-reads the registry now.
        model = service.refresh_model(force=is_warm_up(event) and event.get("refresh") is True)
        version = model.version if model is not None else None
        # Per invocation, not as defaults: Powertools shares metric and log state between
        # module copies, and the local canary runs two model versions in one process.
        metrics.add_dimension(name="model_version", value=version or "none")
        logger.append_keys(model_version=version)
        if is_warm_up(event):
            metrics.add_metric(name="WarmUps", unit=MetricUnit.Count, value=1)
            return {"warm": True, "model_version": version, "release": _release_status(service)}
        started = time.perf_counter()
        response = handler(event, context)
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="Latency",
            unit=MetricUnit.Milliseconds,
            value=(time.perf_counter() - started) * 1000,
        )
        if response.get("statusCode", 500) >= 500:
            metrics.add_metric(name=names.METRIC_SERVER_ERRORS, unit=MetricUnit.Count, value=1)
        # Per alias, what the release alarms read: not the 503 no_model of an
        # environment before its first model (warm-ups of a fresh staging would
        # otherwise roll back every code deploy made before the bootstrap).
        if response.get("statusCode", 500) >= 500 and version is not None:
            _publish_count(
                names.METRIC_SERVER_ERRORS,
                {
                    "service": names.SERVICE_INFERENCE,
                    names.METRIC_DIMENSION_ALIAS: invoked_alias(context),
                },
            )
        return response

    return wrapper


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says, and no response in the
# traces: the event and the response hold customer ids.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@_observe
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(_media_type_lowered(event), context)


def _media_type_lowered(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its Content-Type's media type in lower case (``Application/JSON;
    charset=UTF-8`` -> ``application/json; charset=UTF-8``). Media types are
    case-insensitive (RFC 9110, 8.3.1), but Powertools compares the body's with
    ``application/json`` as written: a valid request would be refused as not JSON."""
    fixed = dict(event)
    if headers := event.get("headers"):
        fixed["headers"] = {
            name: _lowered_media_type(value) if name.lower() == "content-type" else value
            for name, value in headers.items()
        }
    if headers := event.get("multiValueHeaders"):
        fixed["multiValueHeaders"] = {
            name: [_lowered_media_type(v) for v in values]
            if name.lower() == "content-type"
            else values
            for name, values in headers.items()
        }
    return fixed


def _lowered_media_type(value: str) -> str:
    media_type, separator, parameters = value.partition(";")
    return media_type.lower() + separator + parameters


def openapi_json() -> str:
    """The API's OpenAPI document, as committed in ``openapi.json``."""
    return openapi.document(app)


# Provisioned concurrency initialises ahead of traffic: load the model then (a
# missing champion does not raise; a missing or corrupt pinned model does).
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
    initialize()
