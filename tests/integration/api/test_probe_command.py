"""``credit-risk probe`` against the local API server (`credit-risk serve`), as a user
runs it: a healthy API, one that refuses the key, a customer the store does not
hold, an answer that changes without a release, and one that changes with one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from credit_risk import cli, names
from credit_risk.registry import Registry
from tests.conftest import use_fake_aws_credentials
from tests.integration.api.conftest import AS_OF, EVENT_CUSTOMERS, Serve, Serving
from tests.integration.api.probe_store import SNAPSHOT_ID, private_store, rewrite_features

API_KEY = "probe-test-key"
CUSTOMER = EVENT_CUSTOMERS[0]
ENV_API_KEY = f"{names.ENV_PREFIX}API_KEY"


@pytest.fixture
def local_store(
    tmp_path: Path, serving: Serving, local_deployment: None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The local deployment on a store of its own, which a test may rewrite."""
    root = private_store(tmp_path / "local", serving)
    monkeypatch.setenv(f"{names.ENV_PREFIX}LOCAL_DIR", str(root))
    monkeypatch.delenv(ENV_API_KEY, raising=False)
    return root


@pytest.fixture
def api(local_store: Path, serve: Serve) -> str:
    """The local API on that store, asking for the client key."""
    return serve(api_key=API_KEY)


def probe(url: str, *args: str) -> int:
    return cli.main(["probe", "--url", url, "--customer-id", CUSTOMER, *args])


def printed(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str]:
    """The probe's lines on stdout (the in-process server logs there as well, as JSON)
    and its stderr."""
    out, err = capsys.readouterr()
    return [line for line in out.splitlines() if not line.startswith("{")], err


def test_a_healthy_api_passes_and_the_probe_says_what_it_checked(
    api, serving: Serving, monkeypatch, capsys
):
    monkeypatch.setenv(ENV_API_KEY, API_KEY)  # as `credit-risk serve` reads it too

    code = probe(api)

    lines, err = printed(capsys)
    assert code == 0
    assert err == ""
    assert lines[0] == f"probe OK: {api}"
    assert lines[1].split()[:2] == ["health", "ok"]
    assert lines[1].endswith(
        f"model {serving.version}, snapshot {SNAPSHOT_ID} (features as of {AS_OF})"
    )
    assert lines[2].split()[:2] == ["score", "ok"]
    assert f"customer {CUSTOMER}: " in lines[2]
    assert f"(threshold {serving.threshold:g}), model {serving.version}" in lines[2]
    assert " ms " in lines[1]
    assert " ms " in lines[2]


def test_a_key_the_api_refuses_fails_the_probe_with_the_reason(api, capsys):
    code = probe(api, "--api-key", "not-the-client-key")

    lines, err = printed(capsys)
    assert code == 1
    assert lines[0] == f"probe FAILED: {api}"
    assert (
        "credit-risk probe: health failed: answered 403 forbidden: missing or invalid API key "
        "(check the client API key)"
    ) in err
    assert "credit-risk probe: score failed: answered 403" in err
    assert "Traceback" not in err


def test_a_customer_the_store_does_not_hold_fails_the_score_not_the_health(api, capsys):
    code = cli.main(["probe", "--url", api, "--api-key", API_KEY, "--customer-id", "NO-SUCH-1"])

    lines, err = printed(capsys)
    assert code == 1
    assert lines[1].split()[:2] == ["health", "ok"]
    assert err.strip() == (
        f"credit-risk probe: score failed: customer NO-SUCH-1 is not in the active snapshot "
        f"{SNAPSHOT_ID}: probe a customer the feature store holds"
    )


def test_an_api_that_does_not_answer_fails_the_probe():
    assert probe("http://127.0.0.1:9", "--timeout", "2") == 1


def test_an_answer_that_changes_without_a_release_exits_3_once(
    api, local_store: Path, serving: Serving, tmp_path, capsys
):
    state = tmp_path / "probe" / "last-answer.json"
    args = ("--api-key", API_KEY, "--state", str(state))

    # given two probes that got the same answer
    assert probe(api, *args) == 0
    first = json.loads(state.read_text())
    assert printed(capsys)[0][3].split()[:2] == ["answer", "first"]
    assert probe(api, *args) == 0
    assert printed(capsys)[0][3].split()[:2] == ["answer", "unchanged"]
    # (the same answer again leaves the kept one as it was)
    assert json.loads(state.read_text()) == first

    # when the customer's stored features are rewritten in place (same snapshot, same date)
    rewrite_features(local_store, CUSTOMER)
    code = probe(api, *args)

    # then the probe says the answer changed with neither a new model nor new features
    lines, err = printed(capsys)
    assert code == 3
    assert lines[3].split()[:2] == ["answer", "changed"]
    assert (
        f"credit-risk probe: the answer changed with the same model {serving.version} and "
        f"snapshot {SNAPSHOT_ID}: default_probability {first['default_probability']} -> "
    ) in err
    # and the new answer is the one the next probe is compared with: one change, one alarm
    assert json.loads(state.read_text())["default_probability"] != first["default_probability"]
    assert probe(api, *args) == 0


def test_a_promotion_changes_what_is_compared_without_an_alarm(
    registry_copy: Registry, local_store: Path, serve: Serve, serving: Serving, tmp_path, capsys
):
    api = serve(api_key=API_KEY)
    args = ("--api-key", API_KEY, "--state", str(tmp_path / "last-answer.json"))
    assert probe(api, *args) == 0
    printed(capsys)

    registry_copy.promote(serving.candidate_version)
    code = probe(api, *args)

    lines, _ = printed(capsys)
    assert code == 0
    assert lines[3].split()[:2] == ["answer", "explained"]
    assert lines[3].endswith(
        f"not compared, a release or new data: model {serving.version} -> "
        f"{serving.candidate_version}"
    )


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    use_fake_aws_credentials(monkeypatch, "eu-west-1")
    with mock_aws():
        yield


def test_the_key_can_be_read_from_the_client_key_secret(api, aws, capsys):
    secret = boto3.client("secretsmanager").create_secret(
        Name="client-key",
        SecretString=json.dumps({"key_name": "x", names.API_KEY_SECRET_FIELD: API_KEY}),
    )

    assert probe(api, "--api-key-secret", secret["ARN"]) == 0
    assert printed(capsys)[0][0] == f"probe OK: {api}"


def test_a_secret_without_a_key_is_a_clear_error(aws, capsys):
    secret = boto3.client("secretsmanager").create_secret(Name="empty", SecretString="{}")

    assert probe("http://127.0.0.1:9", "--api-key-secret", secret["ARN"]) == cli.EXIT_USER_ERROR
    assert capsys.readouterr().err.strip() == (
        f"credit-risk probe: error: secret {secret['ARN']} holds no API key in its "
        f"'{names.API_KEY_SECRET_FIELD}' field"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "localhost:8080"], "not an http(s) URL of the API: 'localhost:8080'"),
        (["--url", "http://127.0.0.1:9", "--customer-id", "a b"], "customer id 'a b': String"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(args, message, capsys):
    assert cli.main(["probe", *args]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"credit-risk probe: error: {message}")


def test_a_state_file_that_is_no_probe_answer_is_refused_and_left_alone(tmp_path, capsys):
    unrelated = tmp_path / "settings.json"
    unrelated.write_text('{"theme": "dark"}')

    code = probe("http://127.0.0.1:9", "--state", str(unrelated))

    assert code == cli.EXIT_USER_ERROR
    assert f"{unrelated} does not hold a probe answer" in capsys.readouterr().err
    assert unrelated.read_text() == '{"theme": "dark"}'


@pytest.mark.parametrize(
    "args",
    [
        ["--api-key", "a", "--api-key-secret", "b"],
        ["--timeout", "0"],
        ["--timeout", "soon"],
        [],  # no --url
    ],
)
def test_malformed_options_are_usage_errors(args, capsys):
    url = [] if not args else ["--url", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["probe", *url, *args])

    assert exit_info.value.code == cli.EXIT_USER_ERROR
    assert "usage: credit-risk probe" in capsys.readouterr().err


def test_an_answer_from_before_decision_ids_is_still_a_score():
    # A code release shifts traffic gradually: the version before it answers without
    # decision_id while the probe (shipped with the new one) already runs.
    from credit_risk.probe import ScoreAnswer

    score = {
        "customer_id": "5008804",
        "default_probability": 0.1,
        "decision": "approve",
        "threshold": 0.2,
        "reasons": [],
        "model_version": "v1",
        "features_as_of": "2024-06-01",
    }
    assert ScoreAnswer.model_validate(score).decision_id is None
