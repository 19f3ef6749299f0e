"""Whatever a command trips over in its environment, the user gets one line and exit 2."""

from __future__ import annotations

from moto import mock_aws

from credit_risk.cli import EXIT_USER_ERROR, main


def test_an_invalid_setting_names_the_variable(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CREDIT_RISK_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("CREDIT_RISK_STORE_RETAINED_SNAPSHOTS", "several")

    code = main(["store", "health"])

    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("credit-risk store: error: invalid configuration: ")
    assert "CREDIT_RISK_STORE_RETAINED_SNAPSHOTS" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_aws_error_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    with mock_aws():  # no bucket exists
        code = main(["registry", "--registry", "s3://no-such-registry-bucket/models", "list"])

    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("credit-risk registry: error: ")
    assert "NoSuchBucket" in err
    assert "Traceback" not in err
