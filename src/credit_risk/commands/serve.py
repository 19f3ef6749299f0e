"""``credit-risk serve`` and ``credit-risk score``: the scoring API on this machine."""

from __future__ import annotations

import argparse
import sys

from credit_risk import names
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.local_api import CANDIDATE, LIVE, LocalFunction, LocalGateway, make_server
from credit_risk.monitoring.records import scoring_log_root
from credit_risk.registry import ModelNotFoundError, Registry
from credit_risk.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the scoring API locally (HTTP → API Gateway event → inference handler)",
        description=(
            "Serve the scoring API on localhost. Each request becomes an API Gateway REST "
            "proxy event for the same handler that runs in AWS, reading the local feature "
            "store and registry (or those CREDIT_RISK_* variables point at). When "
            "CREDIT_RISK_API_KEY is set, requests must carry it in x-api-key. Every score "
            "is appended to the scoring log (<lake>/scoring-log/date=YYYY-MM-DD/), which "
            "`credit-risk monitor` reads."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    serve.add_argument(
        "--model-version",
        default=None,
        help="registry version the live function serves; default: the champion",
    )
    serve.add_argument(
        "--candidate-model",
        default=None,
        metavar="VERSION",
        help="registry version of a canary candidate",
    )
    serve.add_argument(
        "--canary-percent",
        type=float,
        default=0.0,
        metavar="N",
        help="share of requests (0-100) sent to the candidate",
    )
    serve.add_argument(
        "--no-scoring-log",
        dest="scoring_log",
        action="store_false",
        default=argparse.SUPPRESS,  # no "(default: True)" on a flag that turns it off
        help="write no scoring-log files; score records are printed to stdout as in Lambda",
    )
    serve.set_defaults(handler=run_serve)

    score = subparsers.add_parser(
        "score",
        help="score customers from the shell and print the results as JSON",
        description="Score customer ids with the local store and the pinned or champion model.",
    )
    score.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID", help="ids to score")
    score.add_argument(
        "--model-version", default=None, help="registry version to use; default: the champion"
    )
    score.set_defaults(handler=run_score)


def pinned_version(settings: Settings, version: str | None) -> str:
    """The version a function serves, fixed at start-up like a Lambda version's."""
    registry = Registry(settings.registry, settings.model_name)
    if version is not None:
        registry.metadata(version)  # fails clearly when the version does not exist
        return version
    champion = registry.champion_version()
    if champion is None:
        raise ModelNotFoundError(
            f"no champion model in {settings.registry}: run `credit-risk pipeline run` "
            "(or train and promote one), or pass --model-version"
        )
    return champion


def _example_id(settings: Settings) -> str:
    """A customer id the store knows, for the ready-to-run curl line."""
    from credit_risk.store import StoreError, create_store

    try:
        with create_store(settings) as store:
            ids = store.customer_ids(1)
    except StoreError:
        ids = []
    return ids[0] if ids else "CUSTOMER_ID"


def scoring_log_uri(settings: Settings, enabled: bool = True) -> str:
    """Where the local functions append their score records: CREDIT_RISK_SCORING_LOG_URI,
    else ``<lake>/scoring-log``; empty (stdout) when disabled."""
    if not enabled:
        return ""
    uri = scoring_log_root(settings)
    if uri.startswith("s3://"):
        raise ConfigurationError(
            f"the scoring log {uri} is on S3, where a local server cannot append: set "
            f"{names.ENV_SCORING_LOG_URI} to a local folder or pass --no-scoring-log"
        )
    return uri


def run_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.canary_percent and not args.candidate_model:
        raise InvalidInputError("--canary-percent needs --candidate-model")
    scoring_log = scoring_log_uri(settings, getattr(args, "scoring_log", True))
    live_version = pinned_version(settings, args.model_version)
    common = {names.ENV_SCORING_LOG_URI: scoring_log}
    live = LocalFunction(LIVE, {**common, names.ENV_MODEL_VERSION: live_version})
    candidate = None
    if args.candidate_model:
        version = pinned_version(settings, args.candidate_model)
        candidate = LocalFunction(CANDIDATE, {**common, names.ENV_MODEL_VERSION: version})
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    gateway = LocalGateway(
        live, candidate=candidate, canary_percent=args.canary_percent, api_key=api_key
    )
    server = make_server(gateway, args.host, args.port)
    host, port = server.server_address[:2]
    key_header = f" -H '{names.API_KEY_HEADER}: {api_key}'" if api_key else ""
    print(f"serving model {live_version} on http://{host}:{port}", file=sys.stderr)
    if candidate:
        print(f"canary: {args.canary_percent:g}% to {args.candidate_model}", file=sys.stderr)
    if scoring_log:
        print(f"scoring log: {scoring_log}", file=sys.stderr)
    print(
        f"try: curl -s http://{host}:{port}{names.ROUTE_SCORE} -H 'content-type: "
        f'application/json\'{key_header} -d \'{{"customer_id": "{_example_id(settings)}"}}\'',
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run_score(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from credit_risk.serving.models import BatchScoreRequest
    from credit_risk.serving.service import InferenceSettings, build_service

    try:
        request = BatchScoreRequest(customer_ids=args.customer_ids)
    except ValidationError as exc:
        raise InvalidInputError(
            "; ".join(f"{err['input']!r}: {err['msg']}" for err in exc.errors())
        ) from None
    settings = InferenceSettings()
    version = pinned_version(settings, args.model_version or settings.model_version)
    service = build_service(settings.model_copy(update={"model_version": version}))
    results, unknown = service.score_many(request.customer_ids)
    for result in results:
        print(result.model_dump_json())
    if unknown:
        print(f"unknown customer ids: {', '.join(unknown)}", file=sys.stderr)
        return 1
    return 0
