"""The model release on this machine: the local twin of ``canary_release.asl.json``.

The new version runs as the ``candidate`` function of the local gateway (the one
``credit-risk serve --candidate-model`` runs), the champion as ``live``. This module
only moves data: it starts the candidate (the release's warm-up probe), sends each
step's requests for customers of the store through the gateway's canary split,
turns what it saw into the facts the AWS release gathers (alarms, requests), and
asks ``credit_risk.release_decision.decide`` what to do, exactly as the state
machine does: promote at once without a champion, next step, promote, roll back.

The requests are synthetic: they go to a scoring log that is thrown away, and the
functions neither log nor publish metrics on the pipeline's console.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from credit_risk import names, release_decision
from credit_risk.errors import InvalidInputError
from credit_risk.local_api import (
    CANDIDATE,
    LIVE,
    LocalFunction,
    LocalGateway,
    patched_environment,
)
from credit_risk.registry import Registry
from credit_risk.settings import Settings

# What the functions are told, besides their model version: quiet, and scoring
# into a directory removed afterwards.
QUIET = {names.ENV_LOG_LEVEL: "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
# The local stand-in for the candidate's error alarms.
ERRORS_ALARM = "candidate-errors"


@dataclass(frozen=True)
class CanaryPolicy:
    """The canary settings of ``cdk.json`` (``canary``), with the local traffic."""

    steps_percent: tuple[float, ...] = (10.0, 50.0)
    requests_per_step: int = 200
    # Fewer candidate requests than this in a step: silence, which rolls back.
    min_requests: int = 5
    # A larger share of candidate 5xx answers is the local Errors alarm.
    max_error_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.requests_per_step < 1:
            raise InvalidInputError("requests_per_step must be positive")
        _ = self.release  # the release's own checks of the steps and min_requests

    @property
    def release(self) -> release_decision.CanaryPolicy:
        return release_decision.CanaryPolicy(tuple(self.steps_percent), self.min_requests)


@dataclass
class CanaryOutcome:
    version: str
    live_version: str | None
    promoted: bool
    reason: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "live_version": self.live_version,
            "promoted": self.promoted,
            "reason": self.reason,
            "steps": self.steps,
        }


def run_canary(
    settings: Settings,
    version: str,
    customer_ids: Sequence[str],
    policy: CanaryPolicy | None = None,
    *,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> CanaryOutcome:
    """Releases ``version``: promotes it or leaves the champion, as decided."""
    policy = policy or CanaryPolicy()
    registry = Registry(settings.registry, settings.model_name)
    champion = registry.champion_version()
    outcome = CanaryOutcome(version, champion, False, "")
    rng = random.Random(seed)
    with (
        tempfile.TemporaryDirectory(prefix="canary-scoring-log-") as scoring_log,
        # Metrics are flushed per request, outside the functions' start-up environment.
        patched_environment(QUIET),
        warnings.catch_warnings(),
    ):
        # With metrics off, nothing clears the per-request dimension the handler sets
        # (it is set again on the next request, by design): Powertools warns each time.
        warnings.filterwarnings("ignore", message="Dimension 'model_version' has already")
        common = {**QUIET, names.ENV_SCORING_LOG_URI: scoring_log}
        start_error = None
        try:
            with _console_kept_clean():
                candidate = LocalFunction(CANDIDATE, {**common, names.ENV_MODEL_VERSION: version})
        except Exception as exc:  # any start failure is the candidate's
            candidate, start_error = None, str(exc)

        def decide(**facts: Any) -> release_decision.Verdict:
            return release_decision.decide(
                model_version=version,
                champion=champion,
                policy=policy.release,
                started=candidate is not None,
                start_error=start_error,
                **facts,
            )

        verdict = decide()
        if verdict.action == release_decision.CANARY:
            if not customer_ids:
                raise InvalidInputError("the canary needs customers in the store to score")
            with _console_kept_clean():
                live = LocalFunction(LIVE, {**common, names.ENV_MODEL_VERSION: champion})
        while verdict.action == release_decision.CANARY:
            gateway = LocalGateway(
                live, candidate=candidate, canary_percent=verdict.percent, rng=rng
            )
            with _console_kept_clean():
                step = _step(gateway, customer_ids, policy.requests_per_step, rng)
            outcome.steps.append({"percent": verdict.percent, **step})
            say(
                f"  canary {verdict.percent:g}%: candidate served {step['candidate_requests']}, "
                f"{step['candidate_errors']} errors"
            )
            served = step["candidate_requests"]
            failing = served and step["candidate_errors"] / served > policy.max_error_rate
            check = release_decision.StepCheck((ERRORS_ALARM,) if failing else (), served)
            verdict = decide(step_index=verdict.step_index, check=check)
    outcome.reason = verdict.reason
    if verdict.action == release_decision.PROMOTE:
        registry.promote(version, expected_champion=champion)
        outcome.promoted = True
    return outcome


def _console_kept_clean() -> contextlib.AbstractContextManager:
    """What the functions print (EMF metric lines, which Powertools' single metrics
    print even when metrics are disabled, and their logs) stays off the console of
    the command, whose standard output is its JSON summary."""
    return contextlib.redirect_stdout(io.StringIO())


def _step(
    gateway: LocalGateway, customer_ids: Sequence[str], requests: int, rng: random.Random
) -> dict[str, int]:
    served = errors = 0
    for _ in range(requests):
        body = json.dumps({"customer_id": rng.choice(customer_ids)}).encode()
        alias, response = gateway.handle(
            "POST", names.ROUTE_SCORE, {"content-type": "application/json"}, body
        )
        if alias == CANDIDATE:
            served += 1
            errors += int(response["statusCode"]) >= HTTPStatus.INTERNAL_SERVER_ERROR
    return {"candidate_requests": served, "candidate_errors": errors}
