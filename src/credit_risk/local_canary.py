"""The model release on this machine: the local twin of ``canary_release.asl.json``.

It takes the steps of the AWS release in the same order, against one local
inference function (the ``live`` one ``credit-risk serve`` runs, serving the
champion and following the registry's release record):

1. open the release record (the candidate scores beside the champion, in shadow);
2. probe the function with the release's warm-up, which re-reads the registry: the
   candidate started if the function loaded it;
3. ask ``credit_risk.release_decision.decide`` what to do, and for a shadow stage or
   a canary step: move the release record there, send ``requests_per_step``
   requests for random customers of the store through the local gateway, read the
   release's counts back from the embedded-metric documents the function printed
   (the same documents CloudWatch sums in AWS), record the stage in the release's
   report and ask again;
4. promote (all customers on the candidate, then the champion pointer, then the
   record closed) or roll back (the record closed: the function drops the
   candidate), and write the release's report beside the model version.

Every decision is ``decide``'s; this module only moves data. Where AWS waits
``wait_minutes`` for traffic, the local release sends a number of requests.

The requests are synthetic: they go to a scoring log that is thrown away once the
report has read this release's records from it (unless the caller names a folder
to keep it in), and the function neither logs nor publishes metrics on the
caller's console.

The one-step rollback is ``credit_risk.rollback``, shared with the AWS release.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from credit_risk import names, release_decision, release_report, rollback
from credit_risk.errors import ConfigurationError, CreditRiskError, InvalidInputError
from credit_risk.local_api import (
    LocalFunction,
    LocalGateway,
    champion_function,
    patched_environment,
)
from credit_risk.monitoring.records import ScoreRecord, read_scoring_log
from credit_risk.registry import CANARY, PROMOTED, ROLLED_BACK, Registry, ReleaseState
from credit_risk.release import promote_release
from credit_risk.release_metrics import ReleaseCounts, parse_emf, release_sums
from credit_risk.settings import Settings

# What the function is told besides following the registry: quiet, and scoring into
# a directory removed afterwards.
QUIET = {names.ENV_LOG_LEVEL: "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
# Customers of the store a local release draws its requests from.
RELEASE_CUSTOMERS = 1000
# The deployment configuration whose model_release block a local release can follow.
CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
# The model_release settings of cdk.json that only the AWS release reads: locally a
# stage lasts a number of requests, not a number of minutes.
WAIT_FIELDS = ("wait_minutes", "shadow_minutes")
# Without a named environment a local release judges as dev does.
DEFAULT_ENVIRONMENT = "dev"
REQUESTS_PER_STEP = 200


@dataclass(frozen=True)
class LocalReleasePolicy:
    """``cdk.json``'s ``model_release`` block, with requests in place of waits: the
    shadow stage and each canary step send ``requests_per_step`` single-customer
    requests."""

    release: release_decision.CanaryPolicy
    requests_per_step: int = REQUESTS_PER_STEP

    def __post_init__(self) -> None:
        if self.requests_per_step < 1:
            raise InvalidInputError("requests_per_step must be positive")

    @classmethod
    def from_model_release(
        cls, block: Mapping[str, Any], *, requests_per_step: int | None = None
    ) -> LocalReleasePolicy:
        """The policy of a ``model_release`` block as ``cdk.json`` holds it."""
        known = {*release_decision.POLICY_SETTINGS, *WAIT_FIELDS}
        unknown = sorted(set(block) - known)
        if unknown:
            raise InvalidInputError(f"unknown model_release settings: {', '.join(unknown)}")
        return cls(
            release_decision.CanaryPolicy.from_settings(block),
            REQUESTS_PER_STEP if requests_per_step is None else requests_per_step,
        )

    @classmethod
    def of_environment(
        cls,
        environment: str = DEFAULT_ENVIRONMENT,
        *,
        requests_per_step: int | None = None,
        cdk_json: Path = CDK_JSON,
    ) -> LocalReleasePolicy:
        """The policy of ``environment``'s ``model_release`` block in ``cdk.json``."""
        try:
            context = json.loads(cdk_json.read_text())["context"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"cannot read the environments of {cdk_json}: {exc}; run from a checkout "
                "of the repository"
            ) from None
        block = context.get(environment, {}).get("model_release")
        if not isinstance(block, dict):
            raise ConfigurationError(f"{cdk_json} has no model_release block for {environment}")
        return cls.from_model_release(block, requests_per_step=requests_per_step)


@dataclass
class CanaryOutcome:
    """How a local release went: each judged stage, the end, the report."""

    version: str
    release_id: str
    champion: str | None
    outcome: str = ROLLED_BACK
    reason: str = ""
    stages: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, str] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.outcome == PROMOTED

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "release_id": self.release_id,
            "champion_before": self.champion,
            "outcome": self.outcome,
            "promoted": self.promoted,
            "reason": self.reason,
            "stages": self.stages,
            **self.report,
        }


def new_release_id(now: datetime | None = None) -> str:
    """A release id that sorts by time and says the release ran on a laptop (to the
    microsecond: the registry takes a known id for a retry of that release)."""
    return f"local-{(now or datetime.now(UTC)):%Y%m%dT%H%M%S%fZ}"


def run_canary(
    settings: Settings,
    version: str,
    customer_ids: Sequence[str],
    policy: LocalReleasePolicy | None = None,
    *,
    release_id: str | None = None,
    scoring_log: str | None = None,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> CanaryOutcome:
    """Releases ``version`` of the registry against ``customer_ids`` of the store:
    promotes it or leaves the champion, as ``decide`` says, and writes the report.
    The release's score records go to ``scoring_log`` when given (a folder, kept),
    else to a temporary folder removed afterwards."""
    policy = policy or LocalReleasePolicy.of_environment()
    registry = Registry(settings.registry, settings.model_name)
    champion = registry.champion_version()
    if champion is not None and champion != version and not customer_ids:
        raise InvalidInputError("a release needs customers in the store to score")
    state = registry.open_release(release_id or new_release_id(), version)
    outcome = CanaryOutcome(version, state.release_id, state.champion)
    rng = random.Random(seed)
    cumulative = ReleaseCounts()
    started_on = datetime.now(UTC).date()
    with (
        _folder(scoring_log) as scoring_log,
        # Metrics are flushed per request, outside the function's start-up environment.
        patched_environment(QUIET),
        warnings.catch_warnings(),
    ):
        # With metrics off, nothing clears the per-request dimension the handler sets
        # (it is set again on the next request, by design): Powertools warns each time.
        warnings.filterwarnings("ignore", message="Dimension 'model_version' has already")
        # Nor the metrics themselves: they pile up until Powertools prints the 100th
        # value of one and clears them all, and a request that ends right after finds
        # nothing to publish and warns.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        function: LocalFunction | None = None
        try:
            function, start_error = _start(state, {**QUIET, names.ENV_SCORING_LOG_URI: scoring_log})
            say(f"  release {state.release_id} of {version} (champion {champion or 'none'})")

            def decide(**facts: Any) -> release_decision.Verdict:
                return release_decision.decide(
                    model_version=version,
                    champion=state.champion,
                    policy=policy.release,
                    started=start_error is None,
                    start_error=start_error,
                    **facts,
                )

            verdict = decide()
            while verdict.action in (release_decision.SHADOW, release_decision.CANARY):
                # decide() rolls back a function that did not start, and gives every
                # stage its share.
                assert function is not None
                assert verdict.percent is not None
                stage, percent = verdict.action, verdict.percent
                state = registry.move_release(state.release_id, stage, percent)
                counts = _stage(function, state.release_id, customer_ids, policy, rng)
                cumulative = cumulative + counts
                evidence = (
                    counts.pairs if stage == release_decision.SHADOW else counts.candidate_served
                )
                check = release_decision.StepCheck(alarms=(), requests=evidence, counts=cumulative)
                judged = decide(stage=stage, step_index=verdict.step_index, check=check)
                release_report.record_stage(
                    registry, state, stage=stage, percent=percent, check=check, verdict=judged
                )
                outcome.stages.append(
                    {
                        "stage": stage,
                        "percent": percent,
                        "requests": evidence,
                        "candidate_errors": counts.candidate_errors,
                        "verdict": judged.action,
                        "reason": judged.reason,
                    }
                )
                where = "shadow" if stage == release_decision.SHADOW else f"canary {percent:g}%"
                say(
                    f"  {where}: {evidence} customers as evidence; {judged.action}: {judged.reason}"
                )
                verdict = judged
            outcome.reason = verdict.reason
            if verdict.action == release_decision.PROMOTE:
                # Everyone on the candidate first, then the pointer: the champion
                # changes only when all traffic already is on the new version. The
                # promotion is the AWS release's, with its checks.
                state = registry.move_release(state.release_id, CANARY, 100.0)
                promote_release(registry, state.release_id, verdict.reason)
                outcome.outcome = PROMOTED
                state = registry.release_state() or state
            else:
                state = registry.close_release(state.release_id, ROLLED_BACK, verdict.reason)
        except BaseException as exc:
            ended = _ended_meanwhile(registry, state) if isinstance(exc, CreditRiskError) else None
            if ended is None:
                # Whatever stopped the release (an interrupt, a store gone), it must
                # not stay in progress: every serving function would keep scoring the
                # candidate. Closed as the AWS release closes one that failed: rolled
                # back, a promotion it left half done undone.
                rollback.close_rolled_back(
                    registry, state.release_id, f"the local release stopped: {exc!r}"[:500]
                )
                raise
            # A rollback on request ended it first: that is the release's end, as in
            # AWS (the report says so, and the command exits as for a rollback).
            say(f"  the release was ended meanwhile ({ended.outcome}): {exc}")
            state, outcome.outcome, outcome.reason = ended, ended.outcome, ended.reason or ""
        finally:
            if function is not None:
                function.close()
        records = _records_of(scoring_log, state.release_id, started_on)
    outcome.report = release_report.finish(
        registry,
        state,
        outcome=outcome.outcome,
        reason=outcome.reason,
        records=records,
        counts=cumulative,
    )
    say(f"  {outcome.outcome}: {outcome.reason}")
    say(f"  report: {outcome.report['report_html']}")
    return outcome


def _ended_meanwhile(registry: Registry, state: ReleaseState) -> ReleaseState | None:
    """The release's record if something else (a rollback on request) ended it while
    it ran; None while it is open, or when the record cannot be read."""
    try:
        recorded = registry.release_state()
    except Exception:  # the error being handled is the one to report
        return None
    if recorded is None or recorded.release_id != state.release_id or recorded.active:
        return None
    # Rolled back, yet its candidate became the champion (a first model, with none
    # to put back): no clean end, the error says what happened.
    if recorded.outcome == ROLLED_BACK and recorded.champion != recorded.model_version:
        with contextlib.suppress(Exception):
            if registry.champion_version() == recorded.model_version:
                return None
    return recorded


def _start(
    state: ReleaseState, environment: Mapping[str, str]
) -> tuple[LocalFunction | None, str | None]:
    """Starts the function and probes it as the release does: a warm-up that re-reads
    the registry and says whether the candidate is loaded. The function and, when the
    candidate did not start, why."""
    try:
        with _console_kept_clean():
            # Refresh 0: the function reads the release record on every request, so a
            # request after a move of the record is scored in the new stage.
            function = champion_function(environment, refresh_seconds=0)
            answer = function.invoke({"warmup": True, "refresh": True})
    except Exception as exc:  # a function that cannot start cannot take the candidate
        return None, f"the function did not start: {exc}"
    release = answer.get("release") or {}
    if release.get("release_id") != state.release_id:
        return function, f"the function does not see release {state.release_id}"
    if (
        not release.get("candidate_loaded")
        or release.get("candidate_version") != state.model_version
    ):
        return function, release.get("candidate_error") or "the candidate was not loaded"
    return function, None


def _stage(
    function: LocalFunction,
    release_id: str,
    customer_ids: Sequence[str],
    policy: LocalReleasePolicy,
    rng: random.Random,
) -> ReleaseCounts:
    """Sends one stage's requests; the release's counts of this stage, read from the
    embedded-metric documents the function printed."""
    gateway = LocalGateway(function)
    headers = {"content-type": "application/json"}
    with _console_kept_clean() as console:
        for _ in range(policy.requests_per_step):
            body = json.dumps({"customer_id": rng.choice(customer_ids)}).encode()
            gateway.handle("POST", names.ROUTE_SCORE, headers, body)
    sums = release_sums(parse_emf(console.getvalue().splitlines()), release_id)
    return ReleaseCounts.from_metrics(sums)


@contextlib.contextmanager
def _folder(given: str | None) -> Iterator[str]:
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="release-scoring-log-") as temporary:
        yield temporary


@contextlib.contextmanager
def _console_kept_clean() -> Iterator[io.StringIO]:
    """What the function prints (EMF metric lines, which Powertools' single metrics
    print even when metrics are disabled, and its logs) is kept here, off the
    console of the command, whose standard output is its JSON summary. So are the
    library's own log records (a failing candidate's error on every request), which
    with no logging configured go to standard error."""
    console = io.StringIO()
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(io.StringIO()):
        yield console


def _records_of(scoring_log: str, release_id: str, started_on: date) -> list[ScoreRecord]:
    """The release's served and shadow records, for the report's swap sample."""
    records = read_scoring_log(scoring_log, started_on, datetime.now(UTC).date())
    return [record for record in records if record.release_id == release_id]
