"""The canary release on this machine: the local twin of ``canary_release.asl.json``.

The new version runs as the ``candidate`` function of the local gateway (the one
``credit-risk serve --candidate-model`` runs), the champion as ``live``; each step
sends requests for customers of the store through the gateway's canary split and
then makes the state machine's decision: a candidate that fails (its Errors alarm
in AWS: a 5xx, or no start at all) rolls back, and so does silence, a step in
which it served too few requests to prove anything. Only after the last step is
the version promoted, with the compare-and-swap the release uses.

The requests are synthetic: they go to a scoring log that is thrown away, and the
functions neither log nor publish metrics on the pipeline's console.
"""

from __future__ import annotations

import json
import random
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from credit_risk import names
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
        if not self.steps_percent or list(self.steps_percent) != sorted(set(self.steps_percent)):
            raise InvalidInputError("canary steps must be strictly increasing percentages")
        if not all(0 < step < 100 for step in self.steps_percent):
            raise InvalidInputError("canary steps must lie strictly between 0 and 100")
        if self.requests_per_step < 1 or self.min_requests < 1:
            raise InvalidInputError("requests_per_step and min_requests must be positive")


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
    """Shifts traffic to ``version`` step by step; promotes it or leaves the champion."""
    policy = policy or CanaryPolicy()
    registry = Registry(settings.registry, settings.model_name)
    live_version = registry.champion_version()
    if live_version is None or live_version == version:
        registry.promote(version, expected_champion=live_version)
        return CanaryOutcome(version, live_version, True, "no champion to compare with")
    if not customer_ids:
        raise InvalidInputError("the canary needs customers in the store to score")
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
        live = LocalFunction(LIVE, {**common, names.ENV_MODEL_VERSION: live_version})
        try:
            candidate = LocalFunction(CANDIDATE, {**common, names.ENV_MODEL_VERSION: version})
        except Exception as exc:  # any start failure is the candidate's
            reason = f"the candidate did not start: {exc}"
            return CanaryOutcome(version, live_version, False, reason)
        outcome = CanaryOutcome(version, live_version, False, "")
        for percent in policy.steps_percent:
            gateway = LocalGateway(live, candidate=candidate, canary_percent=percent, rng=rng)
            step = _step(gateway, customer_ids, policy.requests_per_step, rng)
            outcome.steps.append({"percent": percent, **step})
            say(
                f"  canary {percent:g}%: candidate served {step['candidate_requests']}, "
                f"{step['candidate_errors']} errors"
            )
            if step["candidate_requests"] < policy.min_requests:
                outcome.reason = (
                    f"too little traffic at {percent:g}%: {step['candidate_requests']} "
                    f"candidate requests, {policy.min_requests} needed"
                )
                return outcome
            error_rate = step["candidate_errors"] / step["candidate_requests"]
            if error_rate > policy.max_error_rate:
                outcome.reason = f"candidate errors at {percent:g}%: {error_rate:.1%} of requests"
                return outcome
    registry.promote(version, expected_champion=live_version)
    outcome.promoted, outcome.reason = True, "every step passed"
    return outcome


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
