"""The AWS side of a model release (step_functions/canary_release.asl.json) and of
the training pipeline's admission.

A model release changes no function, alias or stage: it writes the registry's
release record (``credit_risk.registry``), which every instance of the ``live``
inference function re-reads within ``names.MODEL_REFRESH_SECONDS`` and follows,
scoring each request with the champion and the candidate in-process
(``credit_risk.serving``). Each function here is one action of the state machine,
run by the release Lambda: admit a release, open the record and probe that
``live`` loaded the candidate, move the record between stages, read what the
stage showed (the candidate alarms and the release's counts, summed from the
metrics the inference function publishes), judge it, promote, close, confirm
what ``live`` serves, write the report, and roll back on request. They gather
facts and act; what to do next is ``credit_risk.release_decision``, which the
Choice states follow. Every action is idempotent, so that the state machine may
retry any of them.

Clients are passed in (``Clients``), built lazily by the handler; nothing here
creates one at import.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from credit_risk import names, release_decision, release_report, rollback
from credit_risk.errors import CreditRiskError, InvalidInputError
from credit_risk.registry import (
    CANARY,
    PROMOTED,
    ROLLED_BACK,
    SHADOW,
    ConcurrentUpdateError,
    Registry,
    ReleaseState,
)
from credit_risk.release_metrics import DIMENSION_RELEASE, ReleaseCounts

if TYPE_CHECKING:
    from credit_risk.monitoring.records import ScoreRecord

logger = logging.getLogger(__name__)

# The inference function's EMF metrics have one-minute resolution: CloudWatch
# rounds a query's start down to the minute, and a period is a whole number of them.
METRIC_PERIOD_SECONDS = 60
# GetMetricData takes at most 500 queries per call; a release has about 50 metrics.
MAX_QUERIES = 500
# The evidence of a stage: customers scored by both models in shadow, customers
# the candidate answered in a canary step (release_decision.StepCheck.requests).
EVIDENCE = {
    release_decision.SHADOW: "ReleasePairs",
    release_decision.CANARY: "ReleaseCandidateServed",
}
# What writing the report takes once the scoring log has been read (the registry's
# reads and two writes), kept free at the end of the release function's invocation.
REPORT_RESERVE_SECONDS = 20.0
_RELEASE_ID = re.compile(r"[^A-Za-z0-9._-]")


class ReleaseEndedError(CreditRiskError):
    """The release record was closed by someone else (a rollback on request) while
    the release was running: it must not go on."""


@dataclass(frozen=True)
class ReleaseTarget:
    """What a release acts on; the release Lambda reads it from its environment."""

    function_name: str
    alarm_prefix: str
    registry_uri: str
    model_name: str
    # The deployment released to: its inference function's metrics are read under
    # names.metric_namespace(deployment), where no other deployment's are.
    deployment: str
    # The scoring log the report reads the release's served and shadow scores from.
    scoring_log_uri: str | None = None
    # The stack a code deploy updates: a release waits while it is in progress.
    deploy_stack_name: str | None = None

    def registry(self) -> Registry:
        return Registry(self.registry_uri, self.model_name)


@dataclass(frozen=True)
class Clients:
    lambda_: Any
    cloudwatch: Any
    stepfunctions: Any = None
    cloudformation: Any = None


def release_id_of(execution_name: str) -> str:
    """The release id of a state-machine execution: its name, with the characters a
    registry name may not hold replaced (the same name always gives the same id)."""
    cleaned = _RELEASE_ID.sub("-", execution_name)[:128]
    if not cleaned or not cleaned[0].isalnum():
        cleaned = f"r{cleaned}"[:128]
    return cleaned


# --- admission ------------------------------------------------------------------
def _running(clients: Clients, execution_arn: str) -> tuple[str, list]:
    """This execution's name and the RUNNING executions of its state machine."""
    # arn:<partition>:states:<region>:<account>:execution:<machine>:<name>
    parts = execution_arn.split(":")
    if len(parts) != 8 or parts[5] != "execution":
        raise InvalidInputError(f"not a Step Functions execution ARN: {execution_arn!r}")
    machine = ":".join([*parts[:5], "stateMachine", parts[6]])
    running = []
    paginator = clients.stepfunctions.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=machine, statusFilter="RUNNING"):
        running += [
            release_decision.Execution(e["name"], e["startDate"]) for e in page["executions"]
        ]
    return parts[7], running


def admit_run(clients: Clients, execution_arn: str, attempt: int = 0) -> dict:
    """Whether a training-pipeline execution may go on (one run at a time)."""
    own, running = _running(clients, execution_arn)
    return release_decision.admit_run(own, running, attempt).as_dict()


def admit_release(
    clients: Clients, target: ReleaseTarget, execution_arn: str, attempt: int = 0
) -> dict:
    """Whether a release may begin: no other release, no code deploy in progress."""
    own, running = _running(clients, execution_arn)
    status = None
    if target.deploy_stack_name:
        try:
            stacks = clients.cloudformation.describe_stacks(StackName=target.deploy_stack_name)
            status = stacks["Stacks"][0]["StackStatus"]
        except clients.cloudformation.exceptions.ClientError as exc:
            # A stack that does not exist is not being deployed.
            if "does not exist" not in str(exc):
                raise
    return release_decision.admit_release(own, running, status, attempt).as_dict()


# --- the live function --------------------------------------------------------------
def _warm_up(clients: Clients, target: ReleaseTarget) -> tuple[dict | None, str | None]:
    """The ``live`` alias's answer to the release's warm-up, which makes the instance
    re-read the registry first, and the error when the invocation failed."""
    # The alias in the name ("function:alias"), which every implementation of the
    # API reads; the permission is the alias's ARN either way.
    response = clients.lambda_.invoke(
        FunctionName=f"{target.function_name}:{names.LIVE_ALIAS}",
        Payload=json.dumps({"warmup": True, "refresh": True}).encode(),
    )
    body = response["Payload"].read()
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if response.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else None
        return (
            None,
            f"{response['FunctionError']}: {message or body[:500].decode(errors='replace')}",
        )
    return (payload if isinstance(payload, dict) else {}), None


def probe_start(clients: Clients, target: ReleaseTarget, state: ReleaseState) -> str | None:
    """Why ``live`` does not score the release's candidate, or None when it does.

    The probe reaches one instance; the others load the candidate at their next
    refresh, and one that cannot counts a candidate error, which the candidate
    alarm sees. A model that fails to load or verify is caught here, before any
    stage, which is how the first model of an environment is checked at all.
    """
    answer, error = _warm_up(clients, target)
    if error is not None:
        return f"the {names.LIVE_ALIAS} function failed: {error}"
    release = (answer or {}).get("release") or {}
    if release.get("release_id") != state.release_id:
        return (
            f"the {names.LIVE_ALIAS} function does not follow release {state.release_id} "
            f"(it reports {release.get('release_id') or 'none'})"
        )
    if not release.get("candidate_loaded") or release.get("candidate_version") != (
        state.model_version
    ):
        return release.get("candidate_error") or (
            f"the candidate {state.model_version} is not loaded "
            f"(the function has {release.get('candidate_version') or 'none'})"
        )
    return None


def confirm_live(
    clients: Clients,
    target: ReleaseTarget,
    model_version: str | None,
    release_id: str | None = None,
) -> dict:
    """Whether ``live`` serves ``model_version`` as its champion (None: no model, an
    environment whose first release was rolled back), and no longer takes part in
    release ``release_id`` (ended by a promotion or a rollback)."""
    answer, error = _warm_up(clients, target)
    served = (answer or {}).get("model_version")
    in_release = ((answer or {}).get("release") or {}).get("release_id")
    return {
        # Always a string: the state machine quotes it in a message.
        "model_version": served or (f"none ({error})" if error else "none"),
        "release_id": in_release,
        "confirmed": error is None
        and served == model_version
        and (release_id is None or in_release != release_id),
    }


# --- the release record -------------------------------------------------------------
def _state(registry: Registry, release_id: str) -> ReleaseState:
    """Release ``release_id`` as recorded; ``ReleaseEndedError`` once it has ended."""
    state = registry.release_state()
    if state is None or state.release_id != release_id:
        raise ConcurrentUpdateError(
            f"release {release_id} is not the release on record "
            f"({state.release_id if state else 'none'})"
        )
    if not state.active:
        raise ReleaseEndedError(
            f"release {release_id} was ended meanwhile ({state.outcome}): {state.reason}"
        )
    return state


def open_release(
    clients: Clients, target: ReleaseTarget, release_id: str, model_version: str
) -> dict:
    """Opens the release record in shadow (a retry finds it open) and probes ``live``."""
    state = target.registry().open_release(release_id, model_version)
    start_error = probe_start(clients, target, state)
    return {
        "release_id": state.release_id,
        "model_version": state.model_version,
        "champion": state.champion,
        "started_at": state.started_at,
        "started": start_error is None,
        "start_error": start_error,
    }


def decide(
    *,
    model_version: str,
    champion: str | None,
    policy: release_decision.CanaryPolicy,
    started: bool,
    start_error: str | None,
) -> dict:
    """The release's first move (``release_decision.decide`` before any stage)."""
    return release_decision.decide(
        model_version=model_version,
        champion=champion,
        policy=policy,
        started=started,
        start_error=start_error,
    ).as_dict()


def move_release(target: ReleaseTarget, release_id: str, stage: str, percent: float) -> dict:
    """Moves the record to ``stage`` at ``percent``; when the stage began."""
    registry = target.registry()
    _state(registry, release_id)
    state = registry.move_release(release_id, stage, percent)
    return {"stage": state.stage, "percent": state.percent, "since": state.updated_at}


def _alarms(clients: Clients, target: ReleaseTarget) -> list[str]:
    alarms: list[str] = []
    paginator = clients.cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(
        AlarmNamePrefix=target.alarm_prefix,
        StateValue="ALARM",
        AlarmTypes=["MetricAlarm", "CompositeAlarm"],
    ):
        # The state is checked again here: a name prefix and a state filter together
        # are not honoured by every implementation of the API (moto ignores one).
        for alarm in (*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])):
            if alarm.get("StateValue") == "ALARM":
                alarms.append(alarm["AlarmName"])
    return sorted(alarms)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def metric_sums(
    clients: Clients,
    target: ReleaseTarget,
    release_id: str,
    metrics: Sequence[str],
    since: datetime,
    until: datetime,
) -> dict[str, float]:
    """Metric name -> sum of the release's ``metrics`` from ``since`` to ``until``,
    as the target's inference function published them (its deployment's namespace,
    dimensions ``service`` and ``release``). One period spans the whole window,
    widened to whole minutes, so each metric comes back as one number."""
    start = _minute(since)
    sums = dict.fromkeys(metrics, 0.0)
    if start > until:  # a window that begins after it ends holds nothing
        return sums
    end = max(_minute(until), start) + timedelta(seconds=METRIC_PERIOD_SECONDS)
    period = int((end - start).total_seconds())
    dimensions = [
        {"Name": "service", "Value": names.SERVICE_INFERENCE},
        {"Name": DIMENSION_RELEASE, "Value": release_id},
    ]
    queries = [
        {
            "Id": f"m{index}",
            "Label": name,
            "MetricStat": {
                "Metric": {
                    "Namespace": names.metric_namespace(target.deployment),
                    "MetricName": name,
                    "Dimensions": dimensions,
                },
                "Period": period,
                "Stat": "Sum",
            },
        }
        for index, name in enumerate(metrics)
    ]
    by_id = {query["Id"]: query["Label"] for query in queries}
    for first in range(0, len(queries), MAX_QUERIES):
        token: str | None = None
        while True:
            response = clients.cloudwatch.get_metric_data(
                MetricDataQueries=queries[first : first + MAX_QUERIES],
                StartTime=start,
                EndTime=end,
                **({"NextToken": token} if token else {}),
            )
            for result in response.get("MetricDataResults", []):
                sums[by_id[result["Id"]]] += sum(result.get("Values", []))
            token = response.get("NextToken")
            if not token:
                break
    return sums


def evidence_start(stage: str, step_index: int | None, since: datetime) -> datetime:
    """Where the evidence window of a stage that began at ``since`` starts.

    CloudWatch sums whole minutes, and the minute a stage began in also holds the
    end of the stage before it. That minute is counted only when the stage before
    could not have added to the evidence: shadow is the release's first stage
    (none of the release's metrics precede it), and the first canary step follows
    shadow, where the candidate answers no one. A later step's window starts at the
    first whole minute after it began: its first partial minute is left out rather
    than credited with the previous step's customers, so the evidence never claims
    more than the step showed (a step lasts at least infra/config.py's
    MIN_STEP_MINUTES, which counts that minute). A step recorded as beginning on
    the minute is no exception: the record keeps whole seconds, and the step began
    within the second after.
    """
    start = _minute(since)
    if stage == SHADOW or step_index == 0:
        return start
    return start + timedelta(seconds=METRIC_PERIOD_SECONDS)


def check_release(
    clients: Clients,
    target: ReleaseTarget,
    release_id: str,
    stage: str,
    step_index: int | None = None,
    now: datetime | None = None,
) -> dict:
    """What the stage in progress showed: the candidate alarms in ALARM, the stage's
    evidence (``EVIDENCE``, from ``evidence_start``) and the release's counts since
    it began, as metric sums (``ReleaseCounts.from_metrics`` reads them back).
    ``step_index``: the canary step in progress (None in shadow). The state machine
    checks once the metrics of the stage's last minutes have arrived
    (``names.METRIC_LAG_SECONDS`` after the stage's wait), the stage going on
    meanwhile: the windows end now."""
    state = _state(target.registry(), release_id)
    if state.stage != stage:
        raise ConcurrentUpdateError(
            f"release {release_id} is in {state.stage}, not in {stage} as the check expected"
        )
    end = now or datetime.now(UTC)
    totals = metric_sums(
        clients,
        target,
        release_id,
        ReleaseCounts.metric_names(),
        datetime.fromisoformat(state.started_at),
        end,
    )
    evidence = EVIDENCE[stage]
    since = evidence_start(stage, step_index, datetime.fromisoformat(state.updated_at))
    window = metric_sums(clients, target, release_id, [evidence], since, end)
    return {
        "alarms": _alarms(clients, target),
        "requests": round(window[evidence]),
        # Zeros left out: a missing count sums as zero, and the payload stays small.
        "counts": {name: value for name, value in totals.items() if value},
        "stage": state.stage,
        "percent": state.percent,
        "since": state.updated_at,
        "evidence_since": since.isoformat(),
    }


def judge(
    target: ReleaseTarget,
    release_id: str,
    policy: release_decision.CanaryPolicy,
    *,
    stage: str,
    step_index: int | None,
    check: Mapping[str, Any],
) -> dict:
    """The verdict on the stage just observed (``release_decision.decide``),
    recorded in the release's report."""
    registry = target.registry()
    state = _state(registry, release_id)
    observed = release_decision.StepCheck(
        alarms=tuple(check.get("alarms", ())),
        requests=int(check.get("requests", 0)),
        counts=ReleaseCounts.from_metrics(check.get("counts") or {}),
    )
    verdict = release_decision.decide(
        model_version=state.model_version,
        champion=state.champion,
        policy=policy,
        started=True,
        stage=stage,
        step_index=step_index,
        check=observed,
    )
    release_report.record_stage(
        registry, state, stage=stage, percent=state.percent, check=observed, verdict=verdict
    )
    return verdict.as_dict()


def promote(target: ReleaseTarget, release_id: str, reason: str) -> dict:
    """``promote_release`` in the target's registry."""
    return promote_release(target.registry(), release_id, reason)


def promote_release(registry: Registry, release_id: str, reason: str) -> dict:
    """Makes the release's candidate the champion, then closes the release as
    promoted; the champion pointer changes only once every customer already is on
    the candidate (canary at 100%). ``expected_champion`` is the champion when the
    release began: a promotion that happened meanwhile makes this one fail instead
    of silently replacing it. The local release promotes through this too."""
    recorded = registry.release_state()
    if recorded is not None and recorded.release_id == release_id and recorded.outcome == PROMOTED:
        return {"champion": recorded.model_version, "previous": recorded.champion, "already": True}
    state = _state(registry, release_id)
    if (state.stage, state.percent) != (CANARY, 100.0):
        raise InvalidInputError(
            f"release {release_id} is at {state.stage} {state.percent:g}%: the champion "
            "changes only once every customer is on the candidate"
        )
    champion = registry.champion_version()
    already = champion == state.model_version
    if not already:
        if state.champion is None and champion is not None:
            raise ConcurrentUpdateError(
                f"{champion} was promoted while release {release_id} ran on an empty registry"
            )
        registry.promote(state.model_version, expected_champion=state.champion)
    closed = registry.close_release(release_id, PROMOTED, reason)
    if closed.outcome != PROMOTED:
        # A rollback on request closed the release between the check above and the
        # promotion: it wins, and the champion it kept is put back, unless its close
        # already did (``rollback.close_rolled_back``).
        if not already and registry.champion_version() == state.model_version:
            if state.champion is None:
                raise ConcurrentUpdateError(
                    f"release {release_id} was rolled back while {state.model_version} became "
                    f"the first champion of {registry.model_name}: there is no earlier one to "
                    "put back, and it serves every customer"
                )
            rollback.step_back_from(registry, state.model_version, closed.reason or ROLLED_BACK)
        raise ReleaseEndedError(
            f"release {release_id} was ended meanwhile ({closed.outcome}): {closed.reason}"
        )
    return {"champion": state.model_version, "previous": champion, "already": already}


# A release's reason is quoted in its record, its report and the notification.
MAX_REASON = 1000


def failure_reason(error: str, cause: str | None) -> str:
    """Why a failed task ends the release, in a sentence: a Lambda task's cause is
    the function's whole error document (message, type, stack trace), of which the
    message is what a reader needs."""
    message = cause or "no cause given"
    try:
        document = json.loads(message)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("errorMessage"):
        message = str(document["errorMessage"])
    return f"{error}: {message}"[:MAX_REASON]


def close_release(target: ReleaseTarget, release_id: str, reason: str) -> dict:
    """Closes the release as rolled back: the serving functions drop the candidate
    at their next refresh. A promotion that moved the champion and then failed is
    undone (``rollback.close_rolled_back``): a release reported rolled back never
    leaves its candidate serving. A release already ended keeps its outcome and
    reason (a rollback on request closed it, or a retry); one never opened is
    reported so."""
    registry = target.registry()
    state = registry.release_state()
    if state is None or state.release_id != release_id:
        return {"closed": False, "outcome": ROLLED_BACK, "reason": reason}
    closed = rollback.close_rolled_back(registry, release_id, reason)
    return {"closed": True, "outcome": closed.outcome, "reason": closed.reason}


def close_abandoned(
    clients: Clients,
    target: ReleaseTarget,
    execution_name: str,
    status: str,
    ends_at: float | None = None,
) -> dict:
    """Closes the release of a canary-release execution that ended (``status``:
    stopped, timed out, failed) without closing it, and writes its report; sent by
    an EventBridge rule on the execution's status change.

    Only that execution's release is touched, and only while it is open: an
    execution that never opened a release, a rollback's, or one whose release was
    closed (by its own close, its promotion or a rollback on request) changes
    nothing. A promotion it left half done is undone, one step and no further
    (``rollback.close_rolled_back``). A release that ended without its report (a
    retry of this action after the close) gets the report only."""
    release_id = release_id_of(execution_name)
    registry = target.registry()
    state = registry.release_state()
    answer: dict[str, Any] = {"release_id": release_id, "closed": False}
    if state is None or state.release_id != release_id:
        return {**answer, "reason": f"execution {execution_name} has no release on record"}
    if state.active:
        reason = f"execution {execution_name} of the release ended {status} with the release open"
        state = rollback.close_rolled_back(registry, release_id, reason)
        answer["closed"] = state.reason == reason
    elif registry.read_report(state.model_version, release_id, release_report.JSON_FILE):
        return {**answer, "outcome": state.outcome, "reason": state.reason}
    links = report(clients, target, release_id, ends_at)
    return {**answer, "outcome": state.outcome, "reason": state.reason, **links}


def report(
    clients: Clients, target: ReleaseTarget, release_id: str, ends_at: float | None = None
) -> dict:
    """Writes the ended release's report (``release_report.finish``): its stages as
    judged, its counts from start to end, and a sample of the customers whose
    decision the candidate changed, from the scoring log's served and shadow
    records (what has reached it: Firehose delivers within minutes). The report's
    URIs, or ``none`` for a release that was never opened.

    ``ends_at``: when the invocation will be stopped (``time.monotonic()``). The log
    is streamed, this release's records only, until the sample is full or
    ``REPORT_RESERVE_SECONDS`` before then; the report is written either way, and
    says when its sample is partial or could not be read."""
    registry = target.registry()
    state = registry.release_state()
    if state is None or state.release_id != release_id:
        return {"report_json": "none", "report_html": f"none (release {release_id} never opened)"}
    if state.active:
        raise InvalidInputError(f"release {release_id} is still in {state.stage}")
    started = datetime.fromisoformat(state.started_at)
    ended = datetime.fromisoformat(state.updated_at)
    sums = metric_sums(clients, target, release_id, ReleaseCounts.metric_names(), started, ended)
    deadline = None if ends_at is None else ends_at - REPORT_RESERVE_SECONDS
    records, read = _swap_records(target, state, started, ended, deadline)
    return release_report.finish(
        registry,
        state,
        outcome=state.outcome or ROLLED_BACK,
        reason=state.reason or "",
        records=records,
        counts=ReleaseCounts.from_metrics(sums),
        sample_read=read,
    )


def _swap_records(
    target: ReleaseTarget,
    state: ReleaseState,
    started: datetime,
    ended: datetime,
    deadline: float | None,
) -> tuple[list[ScoreRecord], release_report.SampleRead]:
    """The records of the report's sample of flipped customers, and how they were
    read. At prod traffic a release's days of the scoring log do not fit in the
    function's memory or time: they are streamed, and the pass ends at the first
    of a full sample, the end of the log, or the deadline."""
    if not target.scoring_log_uri:
        return [], release_report.SampleRead(partial=True, detail="no scoring log is configured")
    from credit_risk.monitoring.records import ScoringLogScan, iter_scoring_log

    scan = ScoringLogScan()
    try:
        with closing(
            iter_scoring_log(
                target.scoring_log_uri,
                started.date(),
                ended.date(),
                scan=scan,
                release_id=state.release_id,
                deadline=deadline,
            )
        ) as records:
            found = release_report.flipped_records(records, state)
    except Exception as exc:
        # The report is worth writing without its sample of flipped customers.
        logger.exception("the scoring log could not be read for release %s", state.release_id)
        return [], release_report.SampleRead(
            partial=True,
            detail=f"the scoring log could not be read ({type(exc).__name__}: {exc})"[:500],
            files=scan.files,
        )
    files = f"{scan.files} file{'' if scan.files == 1 else 's'} of the scoring log"
    unreadable = len(scan.unreadable_files)
    if release_report.customers_in(found) >= release_report.SAMPLE_SIZE:
        return found, release_report.SampleRead(
            partial=False,
            detail=f"the first {release_report.SAMPLE_SIZE} flipped customers found, in {files}",
            files=scan.files,
        )
    if scan.out_of_time:
        return found, release_report.SampleRead(
            partial=True,
            detail=f"time ran out after {files}; the rest was not read",
            files=scan.files,
        )
    detail = f"every file of the release's days read ({files}), as far as Firehose had delivered"
    if unreadable:
        detail += f"; {unreadable} could not be read to their end"
    return found, release_report.SampleRead(
        partial=bool(unreadable), detail=detail, files=scan.files
    )


# --- rollback on request ------------------------------------------------------------
def roll_back(target: ReleaseTarget, reason: str, rollback_id: str) -> dict:
    """The rollback input of the state machine: ``credit_risk.rollback.roll_back``,
    the rule ``credit-risk release rollback`` follows too, with the execution name
    making a retry find its own work done. The model ``live`` serves once its
    instances have refreshed is in ``model_version``."""
    return rollback.roll_back(target.registry(), reason, rollback_id)
