"""The parts of disaster recovery that need no deployment: the active-snapshot pointer,
relocating a snapshot to the other region, the role a target must have, the bounded
wait for the target's API, and what `credit-risk dr` refuses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from moto import mock_aws

from credit_risk import active_snapshot, dr, names
from credit_risk.cli import EXIT_USER_ERROR, main
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.store.base import LoadResult
from tests.conftest import create_output_stack, use_fake_aws_credentials

PRIMARY, STANDBY = "eu-west-1", "eu-central-1"
SOURCE_URI = "s3://credit-risk-prod-curated-123456789012-eu-west-1/curated/run-7/snapshot/"
LOADED = LoadResult(
    snapshot_id="run-7", as_of=date(2024, 6, 1), row_count=1_234, previous_snapshot_id=None
)
NOW = datetime(2024, 6, 2, 3, 4, 5, 678_000, tzinfo=UTC)


# --- the pointer -----------------------------------------------------------------------


def test_a_load_is_recorded_as_the_active_snapshot_and_reads_back(tmp_path):
    # given a snapshot of two Parquet files, beside Spark's marker
    snapshot = tmp_path / "curated" / "run-7" / "snapshot"
    (snapshot / "part=a").mkdir(parents=True)
    for name in ("part-0.parquet", "part=a/part-1.parquet", "_SUCCESS"):
        (snapshot / name).write_bytes(b"x")
    # when
    written = active_snapshot.record_active_snapshot(str(tmp_path), f"{snapshot}/", LOADED, now=NOW)
    # then
    stored = json.loads((tmp_path / names.ACTIVE_SNAPSHOT_KEY).read_text())
    assert stored == {
        "snapshot_uri": f"{snapshot}/",
        "snapshot_id": "run-7",
        "as_of": "2024-06-01",
        "row_count": 1_234,
        "loaded_at": "2024-06-02T03:04:05Z",
        # what a failover waits for, every one of them
        "files": ["part-0.parquet", "part=a/part-1.parquet"],
    }
    assert active_snapshot.read_active_snapshot(str(tmp_path)) == written


def test_a_lake_without_a_pointer_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigurationError, match=r"no active-snapshot pointer at .*serving"):
        active_snapshot.read_active_snapshot(str(tmp_path))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "the file: Invalid JSON"),
        (b"[]", "the file: Input should be an object"),
        (
            json.dumps({"snapshot_uri": SOURCE_URI, "as_of": "2024-06-01"}).encode(),
            "snapshot_id: Field required",
        ),
        (
            json.dumps(
                {
                    "snapshot_uri": SOURCE_URI,
                    "snapshot_id": "run 7; drop table",
                    "as_of": "2024-06-01",
                    "row_count": 1,
                    "loaded_at": "2024-06-02T03:04:05Z",
                    "files": ["part-0.parquet"],
                }
            ).encode(),
            "snapshot_id: String should match pattern",
        ),
        (
            json.dumps(
                {
                    "snapshot_uri": SOURCE_URI,
                    "snapshot_id": "run-7",
                    "as_of": "2024-06-01",
                    "row_count": -1,
                    "loaded_at": "2024-06-02T03:04:05",
                    "files": ["part-0.parquet"],
                }
            ).encode(),
            "row_count: Input should be greater than or equal to 0; loaded_at: Input should "
            "have timezone info",
        ),
    ],
    ids=["not-json", "not-an-object", "no-id", "bad-id", "negative-rows-naive-time"],
)
def test_a_malformed_pointer_is_refused_with_what_is_wrong(tmp_path, content, problem):
    # given
    path = tmp_path / names.ACTIVE_SNAPSHOT_KEY
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    # when / then
    with pytest.raises(InvalidInputError) as refused:
        active_snapshot.read_active_snapshot(str(tmp_path))
    message = str(refused.value)
    assert message.startswith(f"{path} is not an active-snapshot pointer (")
    assert problem in message


# --- relocating a snapshot -------------------------------------------------------------


def test_a_snapshot_is_found_under_the_same_key_in_the_other_regions_bucket():
    standby = "credit-risk-prod-curated-123456789012-eu-central-1"
    assert (
        active_snapshot.relocate_snapshot_uri(SOURCE_URI, standby)
        == f"s3://{standby}/curated/run-7/snapshot/"
    )
    # A pointer already in the target's bucket stays where it is.
    assert active_snapshot.relocate_snapshot_uri(SOURCE_URI, SOURCE_URI.split("/")[2]) == SOURCE_URI


@pytest.mark.parametrize(
    ("uri", "problem"),
    [(".local/lake/curated/run-7/snapshot", "is not in S3"), ("s3://bucket/", "names a bucket")],
)
def test_a_snapshot_outside_a_bucket_folder_cannot_be_relocated(uri, problem):
    with pytest.raises(InvalidInputError, match=problem):
        active_snapshot.relocate_snapshot_uri(uri, "other-bucket")


# --- the target's role -----------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use_fake_aws_credentials(monkeypatch, PRIMARY)
    with mock_aws():
        yield


def clients(region: str, role: str | None, peer: str) -> dr.RegionClients:
    """moto's clients of ``region``, whose stacks of mx-prod hold the outputs a
    failover reads (``role`` None: a deployment without a standby)."""
    lake = {
        names.OUTPUT_CURATED_BUCKET: f"curated-{region}",
        names.OUTPUT_MODELS_BUCKET: f"models-{region}",
    }
    if role is not None:
        lake |= {names.OUTPUT_DR_ROLE: role, names.OUTPUT_DR_PEER_REGION: peer}
    stacks = {
        "DataLake": lake,
        "Api": {
            names.OUTPUT_API_URL: f"https://api.{region}.example/api/",
            names.OUTPUT_API_KEY_SECRET_ARN: f"arn:aws:secretsmanager:{region}:1:secret:k",
        },
        "Ml": {names.OUTPUT_FEATURE_LOADER: f"loader-{region}"},
    }
    found = dr.RegionClients(region)
    for unit, outputs in stacks.items():
        create_output_stack(found.cloudformation, names.stack_name("mx-prod", unit), outputs)
    return found


def request(direction: str, to: str) -> dr.RecoveryRequest:
    return dr.RecoveryRequest(
        environment="prod", market="mx", direction=direction, target_region=to
    )


@pytest.mark.usefixtures("aws")
def test_a_failover_goes_to_the_standby_and_comes_from_its_peer():
    said: list[str] = []
    target = dr.resolve_target(
        request(dr.FAILOVER, STANDBY), clients(STANDBY, names.DR_STANDBY, PRIMARY), said.append
    )
    assert (target.deployment, target.role, target.source_region) == (
        "mx-prod",
        names.DR_STANDBY,
        PRIMARY,
    )
    assert target.primary_region == PRIMARY
    assert target.lake == f"s3://curated-{STANDBY}"
    assert target.registry_uri == f"s3://models-{STANDBY}/registry"
    assert target.feature_loader == f"loader-{STANDBY}"
    assert said == [
        f"target: mx-prod in {STANDBY} (account 123456789012), the standby region; "
        f"failover from {PRIMARY}"
    ]


@pytest.mark.parametrize(
    ("direction", "to", "role", "peer", "expected"),
    [
        (
            dr.FAILOVER,
            PRIMARY,
            names.DR_PRIMARY,
            STANDBY,
            f"{PRIMARY} is the primary region of mx-prod: a failover goes to its standby "
            f"region, {STANDBY} (`credit-risk dr failback --to {PRIMARY}` comes here)",
        ),
        (
            dr.FAILBACK,
            STANDBY,
            names.DR_STANDBY,
            PRIMARY,
            f"{STANDBY} is the standby region of mx-prod: a failback goes to its primary "
            f"region, {PRIMARY} (`credit-risk dr failover --to {STANDBY}` comes here)",
        ),
    ],
)
@pytest.mark.usefixtures("aws")
def test_a_target_of_the_wrong_role_is_refused_with_the_right_one(
    direction, to, role, peer, expected
):
    with pytest.raises(InvalidInputError) as refused:
        dr.resolve_target(request(direction, to), clients(to, role, peer), print)
    assert str(refused.value) == expected


@pytest.mark.usefixtures("aws")
def test_a_deployment_without_a_standby_says_how_it_gets_one():
    with pytest.raises(ConfigurationError) as refused:
        dr.resolve_target(request(dr.FAILOVER, STANDBY), clients(STANDBY, None, ""), print)
    message = str(refused.value)
    assert "has no output DrRole, DrPeerRegion" in message
    assert "disaster_recovery is set in cdk.json" in message
    assert "`npx cdk deploy -c env=prod -c market=mx -c region=standby --all`" in message


def test_the_deploy_command_names_the_targets_side():
    assert (
        dr.RecoveryRequest("staging", dr.FAILOVER, STANDBY).deploy_command()
        == "npx cdk deploy -c env=staging -c region=standby --all"
    )
    assert (
        request(dr.FAILBACK, PRIMARY).deploy_command()
        == "npx cdk deploy -c env=prod -c market=mx --all"
    )
    # and the side it comes from (a failback's standby, whose loader exports decisions)
    assert (
        request(dr.FAILBACK, PRIMARY).deploy_command(source=True)
        == "npx cdk deploy -c env=prod -c market=mx -c region=standby --all"
    )
    with pytest.raises(InvalidInputError, match="direction 'sideways'"):
        dr.RecoveryRequest("prod", "sideways", STANDBY)


# --- waiting for the target's API ------------------------------------------------------


class Clock:
    """Time that moves only when slept through."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class RollingApi(BaseHTTPRequestHandler):
    """An API whose instances serve the previous model at first: each score request
    answers with the next of ``versions`` (the last one for ever after), and who
    asked (the synthetic-caller header) is kept."""

    versions: ClassVar[list[str]] = []
    callers: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self._answer(
            {
                "status": "ok",
                "model_version": self.versions[0],
                "store_reachable": True,
                "features_as_of": "2024-06-01",
                "snapshot_id": "run-7",
            }
        )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        type(self).callers.append(self.headers.get(names.SYNTHETIC_HEADER))
        version = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        self._answer(
            {
                "customer_id": "1234567",
                "default_probability": 0.05,
                "decision": "approve",
                "threshold": 0.2,
                "reasons": [],
                "model_version": version,
                "features_as_of": "2024-06-01",
                "decision_id": "0190a0c4-0000-7000-8000-000000000000",
            }
        )

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def rolling_api() -> Iterator[str]:
    RollingApi.versions, RollingApi.callers = ["v1", "v2"], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RollingApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_api_is_asked_again_until_it_answers_with_the_champion(rolling_api):
    # given an API whose instances still serve the previous model at first
    clock, said = Clock(), []
    # when
    result = dr.verify_api(
        request(dr.FAILOVER, STANDBY),
        rolling_api,
        "key",
        expected=({"v2"}, "run-7"),
        say=said.append,
        sleep=clock.sleep,
        clock=clock,
    )
    # then
    assert result.answer.model_version == "v2"
    # asked as the failover, whose decisions are recorded apart from the lender's
    assert RollingApi.callers == [dr.FAILOVER, dr.FAILOVER]
    assert clock.slept == [dr.POLL_SECONDS]
    assert said[0] == "api: not ready yet (attempt 1): it answers with model v1, not v2"
    assert said[1].startswith(f"api: {rolling_api} healthy (attempt 2): customer 1234567 scored")


def test_an_api_that_never_answers_stops_the_failover_once_its_wait_is_over():
    # given nothing listening on the API's port
    clock = Clock()
    slow = dr.RecoveryRequest("prod", dr.FAILOVER, STANDBY, wait_seconds=12)
    # when / then
    with pytest.raises(dr.RecoveryError) as stopped:
        dr.verify_api(
            slow,
            "http://127.0.0.1:9",
            "key",
            expected=({"v2"}, "run-7"),
            say=lambda _: None,
            sleep=clock.sleep,
            clock=clock,
        )
    message = str(stopped.value)
    assert message.startswith("the API at http://127.0.0.1:9 was not healthy within 12 s (")
    assert "health: http://127.0.0.1:9/v1/health is unreachable" in message
    assert sum(clock.slept) == 12


@pytest.mark.usefixtures("aws")
def test_without_a_health_check_on_the_probe_alarm_clients_are_told_where_to_go():
    # given Route 53 with no health check at all
    route53 = dr.RegionClients(STANDBY).route53
    target = dr.Target(
        deployment="prod",
        region=STANDBY,
        account="123456789012",
        role=names.DR_STANDBY,
        source_region=PRIMARY,
        curated_bucket="curated",
        models_bucket="models",
        api_url="https://standby.example/api/",
        api_key_secret_arn="arn",
        feature_loader="loader",
    )
    said: list[str] = []
    # when
    found = dr.switch_traffic(target, route53, "https://standby.example/api/", said.append)
    # then
    assert found == []
    assert said == [
        f"traffic: no Route 53 health check watches credit-risk-prod-probe-failures in "
        f"{PRIMARY}: point clients at https://standby.example/api/"
    ]


# --- the command -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--env", "prod", "--to", "Europe"], "argument --to: not an AWS region"),
        (
            ["--env", "prod", "--market", "MX", "--to", STANDBY],
            "argument --market: a market is 2 to 8",
        ),
        (["--env", "qa", "--to", STANDBY], "argument --env: invalid choice: 'qa'"),
        (["--env", "prod"], "the following arguments are required: --to"),
        (["--env", "prod", "--to", STANDBY, "--wait-seconds", "0"], "argument --wait-seconds"),
        (["--env", "prod", "--to", STANDBY, "--api-url", "ftp://x"], "argument --api-url"),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(capsys, arguments, error):
    with pytest.raises(SystemExit) as exited:
        main(["dr", "failover", *arguments])
    assert exited.value.code == EXIT_USER_ERROR
    errors = [
        text for text in capsys.readouterr().err.splitlines() if text.startswith("credit-risk")
    ]
    assert len(errors) == 1
    assert errors[0].startswith(f"credit-risk dr failover: error: {error}")


def test_a_target_without_stacks_says_how_to_deploy_them(monkeypatch, capsys):
    # given an account where the market's standby was never deployed
    use_fake_aws_credentials(monkeypatch, PRIMARY)
    # when
    with mock_aws():
        code = main(["dr", "failover", "--env", "prod", "--market", "mx", "--to", STANDBY])
    # then
    captured = capsys.readouterr()
    assert code == EXIT_USER_ERROR
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"credit-risk dr: error: stack CreditRisk-mx-prod-DataLake not found in {STANDBY}: "
        "deploy it first with `npx cdk deploy -c env=prod -c market=mx -c region=standby --all`"
    ]


@pytest.mark.parametrize(
    ("direction", "source_stopped", "merged", "complete"),
    [
        (dr.FAILOVER, True, None, True),
        (dr.FAILOVER, False, None, False),
        (dr.FAILBACK, True, 0, True),
        (dr.FAILBACK, True, None, False),
        (dr.FAILBACK, False, 3, False),
    ],
)
def test_a_run_is_complete_once_the_source_stopped_and_a_failback_s_decisions_merged(
    direction, source_stopped, merged, complete
):
    # (the command exits 3 otherwise: run it again)
    state = dr.RecoveryState(
        deployment="prod",
        direction=direction,
        active_region=PRIMARY,
        previous_region=STANDBY,
        snapshot_id="s",
        model_version="v",
        api_url="https://example.com",
        started_at="2026-12-03T00:00:00+00:00",
        finished_at="2026-12-03T00:00:01+00:00",
        recovery_seconds=1.0,
        source_stopped=source_stopped,
        decisions_merged=merged,
    )
    assert state.complete is complete
