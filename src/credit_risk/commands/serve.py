"""``credit-risk serve`` and ``credit-risk score``: the scoring API on this machine."""

from __future__ import annotations

import argparse
import sys

from credit_risk import names
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.local_api import LIVE, LocalFunction, LocalGateway, champion_function, make_server
from credit_risk.monitoring.records import scoring_log_root
from credit_risk.registry import ModelNotFoundError, Registry
from credit_risk.settings import Settings

# How often the local server re-reads the champion pointer and the release record.
# In AWS every instance reads them once a minute (names.MODEL_REFRESH_SECONDS); a
# local release (`credit-risk release run`, `release rollback` in another terminal)
# moves between stages within seconds of traffic, and a server a minute behind
# would score a stage that has already ended. Locally the read is one small file.
LOCAL_REFRESH_SECONDS = 2.0


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds, 0 or more, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the scoring API locally (HTTP → API Gateway event → inference handler)",
        description=(
            "Serve the scoring API on localhost. Each request becomes an API Gateway REST "
            "proxy event for the same handler that runs in AWS, reading the local feature "
            "store and registry (or those CREDIT_RISK_* variables point at). It serves the "
            "registry's champion and follows it: a promotion, a rollback and a model release "
            "in progress (`credit-risk release`) are picked up within --refresh-seconds; "
            "during a release each customer is answered by the model the release assigns "
            "them, and the response's model_version says which. When CREDIT_RISK_API_KEY is "
            "set, requests must carry it in x-api-key. Every score is appended to the "
            "scoring log (<lake>/scoring-log/date=YYYY-MM-DD/), which `credit-risk monitor` "
            "reads."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    serve.add_argument(
        "--model-version",
        default=None,
        help="serve this registry version only, pinned like a Lambda version (it takes "
        "no part in model releases); default: the champion, followed",
    )
    serve.add_argument(
        "--refresh-seconds",
        type=_non_negative,
        default=LOCAL_REFRESH_SECONDS,
        metavar="S",
        help="seconds between reads of the champion pointer and the release record "
        "(0: on every request)",
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
    scoring_log = scoring_log_uri(settings, getattr(args, "scoring_log", True))
    common = {names.ENV_SCORING_LOG_URI: scoring_log}
    if args.model_version is not None:
        version = pinned_version(settings, args.model_version)
        function = LocalFunction(LIVE, {**common, names.ENV_MODEL_VERSION: version})
        serving = f"model {version} (pinned)"
    else:
        pinned_version(settings, None)  # no champion yet: say how to get one
        function = champion_function(common, refresh_seconds=args.refresh_seconds)
        serving = (
            f"the champion, now {function.module.initialize().model_version} "
            f"(registry re-read every {args.refresh_seconds:g} s)"
        )
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    server = make_server(LocalGateway(function, api_key=api_key), args.host, args.port)
    host, port = server.server_address[:2]
    key_header = f" -H '{names.API_KEY_HEADER}: {api_key}'" if api_key else ""
    print(f"serving {serving} on http://{host}:{port}", file=sys.stderr)
    release = Registry(settings.registry, settings.model_name).active_release()
    if release is not None and args.model_version is None:
        print(
            f"model release {release.release_id} in progress: candidate "
            f"{release.model_version}, {release.stage} at {release.percent:g}%",
            file=sys.stderr,
        )
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
        function.close()
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
        # A look from the shell, not a decision given to anyone: nothing is recorded,
        # so no decision_id is shown that GET /v1/decisions would not know.
        print(result.model_dump_json(exclude={"decision_id"}))
    if unknown:
        print(f"unknown customer ids: {', '.join(unknown)}", file=sys.stderr)
        return 1
    return 0
