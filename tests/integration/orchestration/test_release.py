"""The release function's actions against moto: Step Functions (admission), S3 (the
registry's release record, champion and reports; the scoring log) and CloudWatch
(the release's metrics as the inference function's EMF documents give them, the
candidate alarms). What the ``live`` function answers to the release's probe is
exercised with the real inference handler in tests/infra (test_model_release.py,
test_day_one.py)."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from credit_risk import names, release, release_decision, release_report, schemas
from credit_risk.errors import InvalidInputError
from credit_risk.local_api import LambdaContext
from credit_risk.monitoring.records import SERVED, SHADOW, ScoreRecord
from credit_risk.registry import CANARY, ConcurrentUpdateError, Registry
from credit_risk.registry import SHADOW as SHADOW_STAGE
from credit_risk.release_metrics import Decided, ReleaseCounts, emf_document, parse_emf
from lambdas.release import handler
from tests.conftest import EVENTS_DIR, use_fake_aws_credentials

REGION = "eu-west-1"
DEPLOYMENT = "dev"
NAMESPACE = names.metric_namespace(DEPLOYMENT)
FUNCTION = "credit-risk-dev-inference"
MODELS_BUCKET = "credit-risk-dev-models-test"
CURATED_BUCKET = "credit-risk-dev-curated-test"
REGISTRY = f"s3://{MODELS_BUCKET}/registry"
SCORING_LOG = f"s3://{CURATED_BUCKET}/{names.SCORING_LOG_PREFIX.rstrip('/')}"
OLDER, OLD_MODEL, NEW_MODEL = (
    "20231101T030000Z-9999eeee",
    "20231201T030000Z-aaaa1111",
    "20240101T030000Z-0123abcd",
)
RELEASE_ID = "training-2024-01-01-6f1c2b8e"
ALARM = names.candidate_alarm_prefix("dev") + "errors"
POLICY = release_decision.CanaryPolicy.from_settings(
    {
        "steps_percent": [10, 50],
        "min_requests": 3,
        "shadow_min_requests": 3,
        "max_candidate_errors": 0,
        "max_latency_ratio": 2.0,
        "max_approval_rate_change": 0.10,
        "max_swap_share": 0.50,
        "max_score_psi": 1.0,
    }
)


@pytest.fixture
def aws(monkeypatch):
    use_fake_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield


@pytest.fixture
def target() -> release.ReleaseTarget:
    return release.ReleaseTarget(
        function_name=FUNCTION,
        alarm_prefix=names.candidate_alarm_prefix("dev"),
        registry_uri=REGISTRY,
        model_name=names.PROJECT,
        deployment=DEPLOYMENT,
        scoring_log_uri=SCORING_LOG,
    )


@pytest.fixture
def clients(aws) -> release.Clients:
    return release.Clients(
        lambda_=boto3.client("lambda", region_name=REGION),
        cloudwatch=boto3.client("cloudwatch", region_name=REGION),
        stepfunctions=boto3.client("stepfunctions", region_name=REGION),
        cloudformation=boto3.client("cloudformation", region_name=REGION),
    )


@pytest.fixture
def registry(aws) -> Registry:
    """OLDER then OLD_MODEL promoted; NEW_MODEL registered, all past their gate."""
    for bucket in (MODELS_BUCKET, CURATED_BUCKET):
        boto3.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    models = Registry(REGISTRY, names.PROJECT)
    for version in (OLDER, OLD_MODEL, NEW_MODEL):
        models.publish(version, b"model " + version.encode(), {"gate": {"passed": True}})
    models.promote(OLDER)
    models.promote(OLD_MODEL)
    return models


def publish_emf(*lines: str | None) -> None:
    """What CloudWatch makes of the EMF documents the inference function prints."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for value in parse_emf(line for line in lines if line):
        cloudwatch.put_metric_data(
            Namespace=value.namespace,
            MetricData=[
                {
                    "MetricName": value.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in value.dimensions.items()],
                    "Values": list(value.values),
                    "Timestamp": datetime.fromtimestamp(value.timestamp_ms / 1000, UTC),
                }
            ],
        )


def request_counts(
    champion: str, candidate: str, *, served: int = 0, errors: int = 0
) -> ReleaseCounts:
    """One request's counts: one customer scored by both models with these decisions."""
    if errors:
        return ReleaseCounts.observe(candidate_errors=errors, champion_ms=1.0)
    pair = (Decided(0.02, champion), Decided(0.019, candidate))  # one score bin
    return ReleaseCounts.observe([pair], candidate_served=served, champion_ms=1.0, candidate_ms=1.5)


def requests(release_id: str, *counts: ReleaseCounts) -> None:
    now = int(datetime.now(UTC).timestamp() * 1000)
    publish_emf(*(emf_document(c, release_id, now, namespace=NAMESPACE) for c in counts))


def candidate_alarms(*firing: str) -> None:
    """The candidate alarm and a live one, those in ``firing`` in ALARM."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for name in (ALARM, "credit-risk-dev-inference-live-errors"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace=NAMESPACE,
            MetricName=names.METRIC_CANDIDATE_ERRORS,
            Dimensions=[{"Name": "service", "Value": names.SERVICE_INFERENCE}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        state = "ALARM" if name in firing else "OK"
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


# --- admission ----------------------------------------------------------------------


@pytest.fixture
def machine(clients) -> str:
    """A state machine whose executions stay RUNNING (moto does not run them here)."""
    role = boto3.client("iam").create_role(RoleName="machine", AssumeRolePolicyDocument="{}")
    definition = {
        "StartAt": "Hold",
        "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}},
    }
    return clients.stepfunctions.create_state_machine(
        name="credit-risk-dev-training-pipeline",
        definition=json.dumps(definition),
        roleArn=role["Role"]["Arn"],
    )["stateMachineArn"]


def _start(clients, machine: str, name: str) -> str:
    return clients.stepfunctions.start_execution(stateMachineArn=machine, name=name)["executionArn"]


def test_training_runs_are_admitted_one_at_a_time_oldest_first(clients, machine):
    first, second, third = (_start(clients, machine, name) for name in ("a", "b", "c"))

    assert release.admit_run(clients, first)["decision"] == "go"
    assert release.admit_run(clients, second) == {
        "decision": "wait",
        "reason": "waiting for run a to end",
        "ahead": ["a"],
    }
    assert release.admit_run(clients, third)["decision"] == "skip"
    clients.stepfunctions.stop_execution(executionArn=first)
    assert release.admit_run(clients, second)["decision"] == "go"


def test_a_release_is_refused_while_another_runs_and_goes_alone(clients, target, machine):
    target = release.ReleaseTarget(**{**target.__dict__, "deploy_stack_name": "CreditRisk-dev-Ml"})
    first = _start(clients, machine, "release-1")

    # No such stack in this account: nothing is being deployed.
    assert release.admit_release(clients, target, first)["decision"] == "go"
    second = _start(clients, machine, "release-2")
    refused = release.admit_release(clients, target, second)
    assert refused["decision"] == "refuse"
    assert "release-1" in refused["reason"]


def test_a_release_goes_once_the_inference_stack_is_at_rest(clients, target, machine):
    clients.cloudformation.create_stack(
        StackName="CreditRisk-dev-Ml",
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}),
    )
    target = release.ReleaseTarget(**{**target.__dict__, "deploy_stack_name": "CreditRisk-dev-Ml"})

    admitted = release.admit_release(clients, target, _start(clients, machine, "release-1"))

    assert admitted["decision"] == "go"


def test_an_execution_arn_of_another_kind_is_refused(clients):
    with pytest.raises(InvalidInputError, match="execution ARN"):
        release.admit_run(clients, "arn:aws:states:eu-west-1:123456789012:stateMachine:x")


# --- the stages -----------------------------------------------------------------------


def test_a_check_sums_this_releases_metrics_and_reads_the_candidate_alarms(
    clients, target, registry
):
    # given a release in shadow, another release's counts and a live alarm firing too
    registry.open_release(RELEASE_ID, NEW_MODEL)
    candidate_alarms(ALARM, "credit-risk-dev-inference-live-errors")
    requests(RELEASE_ID, *[request_counts("approve", "approve")] * 4)
    requests(RELEASE_ID, request_counts("approve", "decline"))
    requests("another-release", *[request_counts("decline", "approve")] * 7)

    # when the stage is checked
    check = release.check_release(clients, target, RELEASE_ID, SHADOW_STAGE)

    # then only the candidate alarm, and only this release's customers, count
    assert check["alarms"] == [ALARM]
    assert check["requests"] == 5  # customers scored by both models in shadow
    counts = ReleaseCounts.from_metrics(check["counts"])
    assert (counts.pairs, counts.champion_approvals, counts.candidate_approvals) == (5, 5, 4)
    assert (counts.to_decline, counts.to_approve, counts.candidate_served) == (1, 0, 0)
    assert (check["stage"], check["percent"]) == (SHADOW_STAGE, 0.0)


def test_a_check_and_the_report_read_the_metrics_of_their_own_deployment_only(
    clients, target, registry
):
    # Asked of the queries themselves: moto's GetMetricData leaves the namespace out
    # of a query that names dimensions, as every one of the release's does.
    queries = []
    clients.cloudwatch.meta.events.register(
        "provide-client-params.cloudwatch.GetMetricData",
        lambda params, **_: queries.extend(params["MetricDataQueries"]),
    )
    registry.open_release(RELEASE_ID, NEW_MODEL)

    release.check_release(clients, target, RELEASE_ID, SHADOW_STAGE)
    release.close_release(target, RELEASE_ID, "gates failed in shadow")
    release.report(clients, target, RELEASE_ID)

    assert queries
    assert {q["MetricStat"]["Metric"]["Namespace"] for q in queries} == {NAMESPACE}


def test_a_canary_steps_evidence_is_the_customers_the_candidate_answered(clients, target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    requests(RELEASE_ID, *[request_counts("approve", "approve")] * 6)  # in shadow
    release.move_release(target, RELEASE_ID, CANARY, 10)
    requests(
        RELEASE_ID,
        request_counts("approve", "approve", served=1),
        request_counts("approve", "approve", served=1),
        request_counts("approve", "approve"),
    )

    # The first step: the minute it began in counts, since shadow served no one.
    check = release.check_release(clients, target, RELEASE_ID, CANARY, step_index=0)

    assert check["requests"] == 2
    assert ReleaseCounts.from_metrics(check["counts"]).pairs == 9  # since the release began
    with pytest.raises(ConcurrentUpdateError, match="not in shadow"):
        release.check_release(clients, target, RELEASE_ID, SHADOW_STAGE)


def test_a_later_steps_evidence_leaves_out_the_minute_it_began_in(clients, target, registry):
    # given a release whose first step answered customers just before the second began
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 10)
    requests(RELEASE_ID, *[request_counts("approve", "approve", served=1)] * 3)
    began = datetime.fromisoformat(release.move_release(target, RELEASE_ID, CANARY, 50)["since"])
    # and customers of the second step in its first whole minute
    first_whole = began.replace(second=0) + timedelta(minutes=1)
    at = int((first_whole + timedelta(seconds=5)).timestamp() * 1000)
    publish_emf(
        *(
            emf_document(
                request_counts("approve", "approve", served=1), RELEASE_ID, at, namespace=NAMESPACE
            ),
        )
        * 2
    )

    # when the second step is checked, and when it is checked too early
    check = release.check_release(
        clients, target, RELEASE_ID, CANARY, step_index=1, now=first_whole + timedelta(seconds=30)
    )
    too_early = release.check_release(clients, target, RELEASE_ID, CANARY, step_index=1, now=began)

    # then the first step's customers are not counted as the second's
    assert datetime.fromisoformat(check["evidence_since"]) == first_whole
    assert check["requests"] == 2
    assert ReleaseCounts.from_metrics(check["counts"]).candidate_served == 5
    assert too_early["requests"] == 0


def test_judging_a_stage_follows_the_decision_function_and_records_it(target, registry):
    state = registry.open_release(RELEASE_ID, NEW_MODEL)
    failing = ReleaseCounts.total([request_counts("approve", "approve")] * 4).metrics()
    failing["ReleaseCandidateErrors"] = 2

    verdict = release.judge(
        target,
        RELEASE_ID,
        POLICY,
        stage=SHADOW_STAGE,
        step_index=None,
        check={"alarms": [ALARM], "requests": 4, "counts": failing},
    )

    assert verdict["action"] == "roll_back"
    assert verdict["reason"].startswith("gates failed in shadow: alarms: ")
    assert "errors: 2 candidate errors (at most 0)" in verdict["reason"]
    (recorded,) = release_report.stages(registry, state)
    assert (recorded["stage"], recorded["requests"], recorded["alarms"]) == (
        SHADOW_STAGE,
        4,
        [ALARM],
    )
    assert recorded["verdict"]["action"] == "roll_back"


def test_a_healthy_shadow_leads_to_the_first_step(target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    healthy = ReleaseCounts.total([request_counts("approve", "approve")] * 4).metrics()

    verdict = release.judge(
        target,
        RELEASE_ID,
        POLICY,
        stage=SHADOW_STAGE,
        step_index=None,
        check={"alarms": [], "requests": 4, "counts": healthy},
    )

    assert (verdict["action"], verdict["step_index"], verdict["percent"]) == ("canary", 0, 10.0)


# --- the end of a release ---------------------------------------------------------------


def test_the_champion_changes_only_once_every_customer_is_on_the_candidate(target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 50)
    with pytest.raises(InvalidInputError, match="only once every customer"):
        release.promote(target, RELEASE_ID, "every step passed")
    assert registry.champion_version() == OLD_MODEL

    release.move_release(target, RELEASE_ID, CANARY, 100)
    promoted = release.promote(target, RELEASE_ID, "every step passed")
    again = release.promote(target, RELEASE_ID, "every step passed")

    assert promoted == {"champion": NEW_MODEL, "previous": OLD_MODEL, "already": False}
    assert again["already"] is True
    assert registry.champion_version() == NEW_MODEL
    ended = registry.release_state()
    assert (ended.active, ended.outcome, ended.reason) == (False, "promoted", "every step passed")


def test_a_promotion_that_happened_meanwhile_refuses_this_one(target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 100)
    registry.promote(OLDER)  # someone else's promotion, while the release ran

    with pytest.raises(ConcurrentUpdateError, match=f"not {OLD_MODEL}"):
        release.promote(target, RELEASE_ID, "every step passed")

    assert registry.champion_version() == OLDER
    assert registry.active_release().release_id == RELEASE_ID


def test_closing_keeps_whoever_closed_first_and_a_release_never_opened_is_said_so(target, registry):
    assert release.close_release(target, RELEASE_ID, "InvalidInputError: bad id") == {
        "closed": False,
        "outcome": "rolled_back",
        "reason": "InvalidInputError: bad id",
    }
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.roll_back(target, "approvals dropped", "rollback-1")

    # the release's own close, after the rollback on request closed it
    closed = release.close_release(target, RELEASE_ID, "ReleaseEndedError: ended meanwhile")

    assert closed == {
        "closed": True,
        "outcome": "rolled_back",
        "reason": "approvals dropped (rollback rollback-1)",
    }


def test_closing_after_a_half_done_promotion_puts_the_champion_back(target, registry):
    # given a promotion that moved the champion pointer, then failed before it
    # closed the release as promoted
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 100)
    registry.promote(NEW_MODEL, expected_champion=OLD_MODEL)

    # when the state machine's close runs (its catch path)
    closed = release.close_release(target, RELEASE_ID, "ClientError: SlowDown")

    # then the release is rolled back and its candidate no longer the champion
    assert closed == {"closed": True, "outcome": "rolled_back", "reason": "ClientError: SlowDown"}
    assert registry.champion_version() == OLD_MODEL
    # and a retry of the close steps the champion back no further
    release.close_release(target, RELEASE_ID, "ClientError: SlowDown")
    assert registry.champion_version() == OLD_MODEL


def test_a_release_closed_meanwhile_takes_no_further_step(clients, target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.roll_back(target, "approvals dropped", "rollback-1")

    for step in (
        lambda: release.move_release(target, RELEASE_ID, CANARY, 10),
        lambda: release.check_release(clients, target, RELEASE_ID, SHADOW_STAGE),
        lambda: release.judge(
            target, RELEASE_ID, POLICY, stage=SHADOW_STAGE, step_index=None, check={}
        ),
        lambda: release.promote(target, RELEASE_ID, "every step passed"),
    ):
        with pytest.raises(release.ReleaseEndedError, match="approvals dropped"):
            step()
    assert registry.champion_version() == OLD_MODEL


# --- rollback on request ----------------------------------------------------------------


def test_a_rollback_that_finds_the_release_promoted_meanwhile_restores_the_champion(
    target, registry, monkeypatch
):
    # Given a release at 100% whose promotion lands just after the rollback read the
    # record (still open)
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 100)
    read, raced = Registry.release_state, []

    def read_then_promote(self: Registry):
        state = read(self)
        if state is not None and state.active and not raced:
            raced.append(True)
            release.promote(target, RELEASE_ID, "every step passed")
        return state

    monkeypatch.setattr(Registry, "release_state", read_then_promote)
    # When the rollback goes on
    rolled = release.roll_back(target, "approvals dropped", "rollback-1")
    # Then it steps the champion back from the promoted candidate, as asked, and says so
    assert raced
    assert registry.champion_version() == OLD_MODEL
    assert (rolled["did"], rolled["model_version"]) == ("restored_champion", OLD_MODEL)
    assert (rolled["rolled_back_from"], rolled["release_id"]) == (NEW_MODEL, RELEASE_ID)
    assert read(registry).outcome == "promoted"  # the release's own record is left true

    # And a second rollback that had read the release open too steps back no further
    stale = read(registry)
    stale = type(stale)(**{**stale.as_dict(), "stage": CANARY, "outcome": None})
    monkeypatch.setattr(Registry, "release_state", lambda self: stale)
    second = release.roll_back(target, "the operator's", "rollback-2")
    assert (second["did"], second["already"]) == ("closed_release", True)
    assert registry.champion_version() == OLD_MODEL


def test_a_rollback_that_lands_during_the_promotion_wins_and_the_champion_is_put_back(
    target, registry, monkeypatch
):
    # Given a release at 100% whose promotion has moved the champion, and a rollback
    # on request that closes the release before the promotion does
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 100)
    close, raced = Registry.close_release, []

    def rolled_back_first(self: Registry, release_id: str, outcome: str, reason: str):
        if outcome == "promoted" and not raced:
            raced.append(release.roll_back(target, "approvals dropped", "rollback-1"))
        return close(self, release_id, outcome, reason)

    monkeypatch.setattr(Registry, "close_release", rolled_back_first)
    # When the promotion goes on, then the rollback wins, and the champion it kept
    # is back once, with no conflict between the two undoing it
    with pytest.raises(release.ReleaseEndedError, match="approvals dropped"):
        release.promote(target, RELEASE_ID, "every step passed")
    assert raced[0]["did"] == "closed_release"
    assert registry.champion_version() == OLD_MODEL
    assert registry.champion()["rolled_back_from"] == NEW_MODEL


def test_a_rollback_that_finds_another_closed_the_release_leaves_its_work(
    target, registry, monkeypatch
):
    # Given two rollbacks that both read the release open; the first closes it
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 50)
    stale = registry.release_state()
    first = release.roll_back(target, "approvals dropped", "rollback-1")
    # When the second goes on from what it read
    monkeypatch.setattr(Registry, "release_state", lambda self: stale)
    second = release.roll_back(target, "the operator's", "rollback-2")
    # Then it finds the work done, and the first one's reason and report stand
    assert (first["already"], second["already"]) == (False, True)
    monkeypatch.undo()
    assert registry.release_state().reason == "approvals dropped (rollback rollback-1)"
    report = json.loads(
        registry.read_report(NEW_MODEL, RELEASE_ID, release_report.JSON_FILE).decode()
    )
    assert report["reason"] == "approvals dropped (rollback rollback-1)"
    assert registry.champion_version() == OLD_MODEL


def test_a_rollback_during_a_release_closes_it_and_keeps_the_champion(target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 50)

    rolled = release.roll_back(target, "approvals dropped", "rollback-1")
    again = release.roll_back(target, "approvals dropped", "rollback-1")

    assert rolled == {
        "did": "closed_release",
        "model_version": OLD_MODEL,
        "release_id": RELEASE_ID,
        "candidate": NEW_MODEL,
        "rolled_back_from": None,
        "already": False,
        # The closed release's report, written by the rollback.
        "report_html": registry.uri(NEW_MODEL, f"releases/{RELEASE_ID}/report.html"),
    }
    assert again == {**rolled, "already": True}
    assert registry.champion_version() == OLD_MODEL
    assert registry.active_release() is None


def test_a_rollback_without_a_release_restores_the_previous_champion_once(target, registry):
    rolled = release.roll_back(target, "approvals dropped", "rollback-1")
    # A retry of the same execution finds its work done...
    again = release.roll_back(target, "approvals dropped", "rollback-1")

    assert (rolled["did"], rolled["model_version"], rolled["rolled_back_from"]) == (
        "restored_champion",
        OLDER,
        OLD_MODEL,
    )
    assert again == {**rolled, "already": True}
    assert registry.champion_version() == OLDER
    # ...and a second rollback has nothing older to return to.
    with pytest.raises(InvalidInputError, match="no earlier one"):
        release.roll_back(target, "still wrong", "rollback-2")
    assert registry.champion_version() == OLDER


# --- an execution that ended without closing its release ---------------------------------


def report_of(registry: Registry, release_id: str = RELEASE_ID) -> dict | None:
    data = registry.read_report(NEW_MODEL, release_id, release_report.JSON_FILE)
    return json.loads(data) if data else None


def test_the_release_a_stopped_execution_left_open_is_closed_with_its_report(
    clients, target, registry
):
    # given a release in a canary step whose execution was stopped
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 10)

    # when the rule's action runs for it
    closed = release.close_abandoned(clients, target, RELEASE_ID, "ABORTED")

    # then the release is rolled back, naming the execution and how it ended
    ended = registry.release_state()
    assert (ended.active, ended.outcome) == (False, "rolled_back")
    assert ended.reason == (
        f"execution {RELEASE_ID} of the release ended ABORTED with the release open"
    )
    assert (closed["closed"], closed["reason"]) == (True, ended.reason)
    assert closed["report_html"].endswith(f"/releases/{RELEASE_ID}/report.html")
    assert report_of(registry)["reason"] == ended.reason
    assert registry.champion_version() == OLD_MODEL
    # and the event delivered again changes nothing
    again = release.close_abandoned(clients, target, RELEASE_ID, "ABORTED")
    assert again["closed"] is False
    assert registry.release_state() == ended


def test_a_half_done_promotion_of_a_stopped_execution_is_undone_once(clients, target, registry):
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 100)
    registry.promote(NEW_MODEL, expected_champion=OLD_MODEL)

    release.close_abandoned(clients, target, RELEASE_ID, "TIMED_OUT")
    release.close_abandoned(clients, target, RELEASE_ID, "TIMED_OUT")

    # The champion of before the release, not the one before it.
    assert registry.champion_version() == OLD_MODEL
    assert registry.release_state().outcome == "rolled_back"


def test_an_execution_whose_release_ended_or_never_opened_changes_nothing(
    clients, target, registry
):
    # given a release promoted by its own execution, and its report
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.move_release(target, RELEASE_ID, CANARY, 100)
    release.promote(target, RELEASE_ID, "every step passed")
    release.report(clients, target, RELEASE_ID)
    promoted = registry.release_state()
    written = report_of(registry)

    # when that execution (later failing to confirm live), a rollback execution and
    # an execution refused before it opened anything all end
    for execution, status in ((RELEASE_ID, "FAILED"), ("rollback-1", "FAILED"), ("x", "ABORTED")):
        answer = release.close_abandoned(clients, target, execution, status)
        assert answer["closed"] is False, execution

    # then nothing changed: the champion stays, the report is the one written
    assert registry.release_state() == promoted
    assert registry.champion_version() == NEW_MODEL
    assert report_of(registry) == written


def test_a_release_ended_without_its_report_gets_it(clients, target, registry):
    # given a release its execution closed, and then the execution failed before
    # the report was written
    registry.open_release(RELEASE_ID, NEW_MODEL)
    release.close_release(target, RELEASE_ID, "gates failed in shadow")
    assert report_of(registry) is None

    answer = release.close_abandoned(clients, target, RELEASE_ID, "FAILED")

    assert answer["closed"] is False
    assert report_of(registry)["reason"] == "gates failed in shadow"


# --- the report ---------------------------------------------------------------------------


def score_lines(release_id: str) -> bytes:
    """A request of the release: the champion's answer served, the candidate's shadow
    declining the same customer; and a record of another release."""
    features = {"age": 40, "years_on_the_job": 5, "nb_previous_loans": 2}
    features |= {"avg_amount_loans_previous": 100.0, "flag_own_car": 1}
    common = {
        "request_id": "request-1",
        "customer_hash": "0f1e2d3c4b5a69788796a5b4",
        "snapshot_id": "snapshot-1",
        "features_as_of": datetime.now(UTC).date(),
        "features": features,
        "scored_at": datetime.now(UTC),
        "environment": "dev",
    }
    records = [
        ScoreRecord(
            **common,
            model_version=OLD_MODEL,
            default_probability=0.02,
            decision="approve",
            role=SERVED,
            release_id=release_id,
        ),
        ScoreRecord(
            **common,
            model_version=NEW_MODEL,
            default_probability=0.4,
            decision="decline",
            role=SHADOW,
            release_id=release_id,
            reasons=("short_job_tenure",),
        ),
        ScoreRecord(
            **{**common, "customer_hash": "ffffffffffffffffffffffff"},
            model_version=NEW_MODEL,
            default_probability=0.4,
            decision="decline",
            role=SHADOW,
            release_id="another-release",
        ),
    ]
    return gzip.compress("".join(f"{r.to_json()}\n" for r in records).encode())


def test_the_report_holds_the_counts_and_the_flipped_customers_of_the_release(
    clients, target, registry
):
    # given a release that ran in shadow, judged once and rolled back
    registry.open_release(RELEASE_ID, NEW_MODEL)
    requests(RELEASE_ID, *[request_counts("approve", "approve")] * 3)
    requests(RELEASE_ID, request_counts("approve", "decline"))
    check = release.check_release(clients, target, RELEASE_ID, SHADOW_STAGE)
    release.judge(target, RELEASE_ID, POLICY, stage=SHADOW_STAGE, step_index=None, check=check)
    release.close_release(target, RELEASE_ID, "gates failed in shadow")
    day = datetime.now(UTC).date().isoformat()
    boto3.client("s3").put_object(
        Bucket=CURATED_BUCKET,
        Key=f"{names.SCORING_LOG_PREFIX}date={day}/delivery-1.jsonl.gz",
        Body=score_lines(RELEASE_ID),
    )

    # when its report is written
    links = release.report(clients, target, RELEASE_ID)

    # then it sits beside the candidate, with the release's own counts and customers
    assert links["report_html"] == (
        f"{REGISTRY}/{names.PROJECT}/{NEW_MODEL}/releases/{RELEASE_ID}/report.html"
    )
    report = json.loads(
        registry.read_report(NEW_MODEL, RELEASE_ID, release_report.JSON_FILE).decode()
    )
    assert (report["outcome"], report["reason"]) == ("rolled_back", "gates failed in shadow")
    assert [entry["stage"] for entry in report["stages"]] == [SHADOW_STAGE]
    assert (report["totals"]["pairs"], report["totals"]["swaps_to_decline"]) == (4, 1)
    (flipped,) = report["swap_sample"]
    assert flipped["candidate"] == {
        "model_version": NEW_MODEL,
        "default_probability": 0.4,
        "decision": "decline",
        "reasons": ["short_job_tenure"],
    }
    html = registry.read_report(NEW_MODEL, RELEASE_ID, release_report.HTML_FILE).decode()
    assert "gates failed in shadow" in html


def request_lines(release_id: str, first: int, count: int, *, flipped: bool) -> list[str]:
    """``count`` requests of the release (customers ``first`` on), each the served
    and the shadow answer; the candidate declines where the champion approves when
    ``flipped``."""
    features = {name: 1 for name in schemas.FEATURE_NAMES}
    lines = []
    for number in range(first, first + count):
        common = {
            "request_id": f"request-{number}",
            "customer_hash": f"{number:024x}",
            "snapshot_id": "snapshot-1",
            "features_as_of": datetime.now(UTC).date(),
            "features": features,
            "scored_at": datetime.now(UTC),
            "environment": "dev",
            "release_id": release_id,
        }
        served = ScoreRecord(
            **common, model_version=OLD_MODEL, default_probability=0.02, decision="approve"
        )
        shadow = ScoreRecord(
            **common,
            model_version=NEW_MODEL,
            default_probability=0.4 if flipped else 0.03,
            decision="decline" if flipped else "approve",
            role=SHADOW,
        )
        lines += [served.to_json(), shadow.to_json()]
    return lines


def deliver_scores(key: str, lines: list[str]) -> None:
    """One Firehose object of the scoring log, today's."""
    day = datetime.now(UTC).date().isoformat()
    boto3.client("s3").put_object(
        Bucket=CURATED_BUCKET,
        Key=f"{names.SCORING_LOG_PREFIX}date={day}/{key}.jsonl.gz",
        Body=gzip.compress("".join(f"{line}\n" for line in lines).encode()),
    )


@pytest.fixture
def ended_release(target, registry) -> None:
    """A release that ran in shadow over customers the scoring log holds, and was
    rolled back: three deliveries, each with more flipped customers than the
    report's sample takes, among unflipped ones and another release's."""
    registry.open_release(RELEASE_ID, NEW_MODEL)
    requests(RELEASE_ID, *[request_counts("approve", "decline")] * 3)
    release.close_release(target, RELEASE_ID, "swap share too high")
    per_file = release_report.SAMPLE_SIZE + 10
    for delivery in range(3):
        first = delivery * 1000
        deliver_scores(
            f"delivery-{delivery}",
            request_lines("another-release", first, 50, flipped=True)
            + request_lines(RELEASE_ID, first + 100, 40, flipped=False)
            + request_lines(RELEASE_ID, first + 200, per_file, flipped=True),
        )


def test_the_reports_sample_stops_reading_once_it_is_full(clients, target, registry, ended_release):
    links = release.report(clients, target, RELEASE_ID)

    report = report_of(registry)
    # The first delivery held enough flipped customers: the others were not read.
    assert report["swap_sample_read"] == {
        "partial": False,
        "detail": f"the first {release_report.SAMPLE_SIZE} flipped customers found, "
        "in 1 file of the scoring log",
        "files": 1,
    }
    sample = report["swap_sample"]
    assert len(sample) == release_report.SAMPLE_SIZE
    assert {int(item["customer_hash"], 16) for item in sample} <= set(range(200, 230))
    assert {item["candidate"]["decision"] for item in sample} == {"decline"}
    assert report["totals"]["swaps_to_decline"] == 3  # from the metrics, whole release
    assert (
        "Partial sample"
        not in registry.read_report(NEW_MODEL, RELEASE_ID, release_report.HTML_FILE).decode()
    )
    assert links["report_json"].endswith("report.json")


def test_a_report_short_of_time_is_written_and_says_its_sample_is_partial(
    clients, target, registry, ended_release
):
    # An invocation with less time left than writing the report takes.
    release.report(clients, target, RELEASE_ID, ends_at=time.monotonic() + 1)

    report = report_of(registry)
    assert report["swap_sample"] == []
    assert report["swap_sample_read"]["partial"] is True
    assert "time ran out" in report["swap_sample_read"]["detail"]
    # The stages and counts come from the metrics, read before the log.
    assert (report["totals"]["pairs"], report["totals"]["swaps_to_decline"]) == (3, 3)
    html = registry.read_report(NEW_MODEL, RELEASE_ID, release_report.HTML_FILE).decode()
    assert "Partial sample: time ran out after 1 file of the scoring log" in html


def test_a_report_whose_scoring_log_cannot_be_read_is_written_without_its_sample(
    clients, target, registry, ended_release
):
    elsewhere = release.ReleaseTarget(
        **{**target.__dict__, "scoring_log_uri": "s3://no-such-bucket-here/scoring-log"}
    )

    release.report(clients, elsewhere, RELEASE_ID)

    report = report_of(registry)
    assert report["swap_sample"] == []
    assert report["swap_sample_read"]["partial"] is True
    assert "NoSuchBucket" in report["swap_sample_read"]["detail"]
    assert report["totals"]["pairs"] == 3


def test_a_report_waits_for_the_release_to_end_and_names_one_never_opened(
    clients, target, registry
):
    assert release.report(clients, target, RELEASE_ID) == {
        "report_json": "none",
        "report_html": f"none (release {RELEASE_ID} never opened)",
    }
    registry.open_release(RELEASE_ID, NEW_MODEL)
    with pytest.raises(InvalidInputError, match="still in shadow"):
        release.report(clients, target, RELEASE_ID)


# --- the handler --------------------------------------------------------------------------


@pytest.fixture
def handler_environment(monkeypatch, target):
    for name, value in {
        names.ENV_ENVIRONMENT: target.deployment,
        names.ENV_INFERENCE_FUNCTION_NAME: target.function_name,
        names.ENV_CANDIDATE_ALARM_PREFIX: target.alarm_prefix,
        names.ENV_REGISTRY_URI: target.registry_uri,
        names.ENV_MODEL_NAME: target.model_name,
        names.ENV_LAKE_URI: f"s3://{CURATED_BUCKET}",
    }.items():
        monkeypatch.setenv(name, value)
    handler._target.cache_clear()
    handler._clients.cache_clear()
    yield
    handler._target.cache_clear()
    handler._clients.cache_clear()


def context() -> LambdaContext:
    return LambdaContext("credit-risk-dev-release")


def test_the_handler_reads_the_scoring_log_under_the_lake(handler_environment):
    assert handler._target().scoring_log_uri == SCORING_LOG


def test_the_handler_refuses_an_unknown_action(handler_environment):
    event = json.loads((EVENTS_DIR / "release_invalid.json").read_text())

    with pytest.raises(InvalidInputError, match="invalid release event"):
        handler.lambda_handler(event, context())


def test_the_handler_judges_a_stage_as_the_state_machine_sends_it(
    aws, handler_environment, registry
):
    event = json.loads((EVENTS_DIR / "release_judge.json").read_text())
    registry.open_release(event["release_id"], NEW_MODEL)

    verdict = handler.lambda_handler(event, context())

    assert verdict["action"] == "roll_back"
    assert verdict["reason"] == (
        "3 customers scored by both models in shadow, fewer than the 5 required: "
        "no evidence to go on"
    )
    assert release_report.stages(registry, registry.release_state())[0]["requests"] == 3


@pytest.mark.parametrize(
    ("setting", "value"),
    [("wait_seconds", 90.5), ("shadow_seconds", "90"), ("wait_seconds", 0), ("max_swap_share", 2)],
)
def test_settings_the_release_could_not_follow_open_nothing(
    aws, handler_environment, registry, setting, value
):
    event = json.loads((EVENTS_DIR / "release_judge.json").read_text())
    opening = {
        "action": "open_release",
        "release_id": RELEASE_ID,
        "model_version": NEW_MODEL,
        "settings": {**event["settings"], setting: value},
        "live_refresh_seconds": 35,
        "metric_lag_seconds": names.METRIC_LAG_SECONDS,
    }

    with pytest.raises(InvalidInputError, match=setting):
        handler.lambda_handler(opening, context())

    assert registry.release_state() is None


@pytest.mark.parametrize("value", [0, 150.5, "150"])
def test_a_metric_wait_the_checks_could_not_take_opens_nothing(
    aws, handler_environment, registry, value
):
    event = json.loads((EVENTS_DIR / "release_judge.json").read_text())
    opening = {
        "action": "open_release",
        "release_id": RELEASE_ID,
        "model_version": NEW_MODEL,
        "settings": event["settings"],
        "live_refresh_seconds": 35,
        "metric_lag_seconds": value,
    }

    with pytest.raises(InvalidInputError, match="metric_lag_seconds"):
        handler.lambda_handler(opening, context())

    assert registry.release_state() is None


def test_a_service_error_reaches_the_state_machine_as_client_error(aws, handler_environment):
    # The live function is not deployed in this account: Lambda answers
    # ResourceNotFoundException, a class botocore makes for that code.
    event = {"action": "confirm_live", "model_version": OLD_MODEL, "release_id": RELEASE_ID}

    with pytest.raises(ClientError) as raised:
        handler.lambda_handler(event, context())

    assert type(raised.value) is ClientError  # the error name the Retry matches
    assert "ResourceNotFoundException" in str(raised.value)


@dataclass
class ShortContext(LambdaContext):
    """An invocation a few seconds from its timeout."""

    def get_remaining_time_in_millis(self) -> int:
        return 5_000


def test_the_report_action_reads_the_scoring_log_only_while_the_invocation_has_time(
    aws, handler_environment, registry, ended_release
):
    event = {"action": "report", "release_id": RELEASE_ID}

    handler.lambda_handler(event, ShortContext("credit-risk-dev-release"))

    read = report_of(registry)["swap_sample_read"]
    assert read["partial"] is True
    assert "time ran out" in read["detail"]


def test_the_rules_action_is_refused_for_a_status_that_ends_nothing(aws, handler_environment):
    event = {
        "action": names.ACTION_CLOSE_ABANDONED_RELEASE,
        "execution_name": RELEASE_ID,
        "status": "SUCCEEDED",
    }

    with pytest.raises(InvalidInputError, match="status"):
        handler.lambda_handler(event, context())


def test_an_execution_name_is_a_release_id_the_registry_takes():
    assert release.release_id_of("training-2024-01-01-6f1c") == "training-2024-01-01-6f1c"
    assert release.release_id_of("ingest_date=2024-02-01") == "ingest_date-2024-02-01"
    assert release.release_id_of("_manual run") == "r_manual-run"


def test_a_failed_task_ends_the_release_with_the_functions_message_only():
    document = json.dumps(
        {
            "errorMessage": "the champion is v2, not v1 as expected",
            "errorType": "ConcurrentUpdateError",
            "stackTrace": ["  File handler.py, line 1"],
        }
    )

    assert release.failure_reason("ConcurrentUpdateError", document) == (
        "ConcurrentUpdateError: the champion is v2, not v1 as expected"
    )
    assert release.failure_reason("States.Timeout", "the task timed out") == (
        "States.Timeout: the task timed out"
    )
    assert release.failure_reason("States.TaskFailed", None) == "States.TaskFailed: no cause given"


def test_a_rollback_whose_wait_could_not_be_taken_changes_nothing(
    aws, handler_environment, registry
):
    request = json.loads((EVENTS_DIR / "canary_release_rollback_input.json").read_text())
    event = {
        "action": "roll_back",
        "reason": request["rollback"]["reason"],
        "rollback_id": "rollback-1",
        "live_refresh_seconds": 35.5,
    }

    with pytest.raises(InvalidInputError, match="live_refresh_seconds"):
        handler.lambda_handler(event, context())

    assert registry.champion_version() == OLD_MODEL
