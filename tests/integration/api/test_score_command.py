"""``credit-risk score`` and the refusals of ``credit-risk serve``, on the local
(SQLite) store and the API tests' registry, as a user runs them from the shell."""

from __future__ import annotations

import json

import pytest

from credit_risk import cli
from tests.integration.api.conftest import AS_OF, Serving

pytestmark = pytest.mark.usefixtures("local_deployment")


def test_score_prints_one_json_score_per_known_id_with_the_champion(capsys, serving: Serving):
    code = cli.main(["score", "5008805", "5008804"])

    out = capsys.readouterr().out
    assert code == 0
    scores = [json.loads(line) for line in out.splitlines()]
    assert [s["customer_id"] for s in scores] == ["5008805", "5008804"]
    assert {s["model_version"] for s in scores} == {serving.version}
    assert {s["features_as_of"] for s in scores} == {AS_OF.isoformat()}
    # (a look from the shell is no decision: nothing recorded, no decision id shown)
    assert not any("decision_id" in s for s in scores)


def test_score_with_a_pinned_version_uses_it(capsys, serving: Serving):
    code = cli.main(["score", "--model-version", serving.candidate_version, "5008804"])

    assert code == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == serving.candidate_version


def test_score_lists_unknown_ids_and_exits_non_zero(capsys):
    code = cli.main(["score", "5008804", "NO-SUCH-1"])

    captured = capsys.readouterr()
    assert code == 1
    assert [json.loads(line)["customer_id"] for line in captured.out.splitlines()] == ["5008804"]
    assert "unknown customer ids: NO-SUCH-1" in captured.err


@pytest.mark.parametrize("customer_id", ["", "5008804' OR '1'='1", "9" * 1_000])
def test_score_refuses_ids_the_api_refuses(capsys, customer_id):
    code = cli.main(["score", customer_id])

    captured = capsys.readouterr()
    assert code == cli.EXIT_USER_ERROR
    assert captured.out == ""
    assert captured.err.startswith("credit-risk score: error:")
    assert "Traceback" not in captured.err


def test_score_refuses_a_corrupt_model(capsys, serving: Serving):
    code = cli.main(["score", "--model-version", serving.corrupt_version, "5008804"])

    assert code == cli.EXIT_USER_ERROR
    assert "sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model-version", "20990101T000000Z-deadbeef"], "20990101T000000Z-deadbeef"),
        (["--model-version", "CORRUPT"], "sha256"),
    ],
)
def test_serve_refuses_to_start_on_bad_options(capsys, serving: Serving, arguments, message):
    versions = {"CORRUPT": serving.corrupt_version}
    arguments = [versions.get(argument, argument) for argument in arguments]

    code = cli.main(["serve", "--port", "0", "--no-scoring-log", *arguments])

    err = capsys.readouterr().err
    assert code == cli.EXIT_USER_ERROR
    assert err.startswith("credit-risk serve: error:")
    assert message in err
