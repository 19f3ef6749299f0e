"""Publishing the released OpenAPI document (infra/publish_openapi.py) into a
versioned bucket (moto), as the release pipeline runs it after prod's smoke test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from credit_risk import __version__
from infra import publish_openapi
from tests.conftest import use_fake_aws_credentials

COMMITTED = Path(__file__).resolve().parents[3] / "openapi.json"
BUCKET = "credit-risk-api-docs"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    use_fake_aws_credentials(monkeypatch, "eu-west-1")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def _publish(document: Path, commit: str = COMMIT) -> int:
    return publish_openapi.main(
        ["--bucket", BUCKET, "--commit", commit, "--document", str(document)]
    )


def test_the_committed_document_is_published_under_its_api_version_and_as_latest(s3, capsys):
    # When the pipeline publishes the released commit's openapi.json
    assert _publish(COMMITTED) == 0

    # Then client developers find it under the API version and as the latest
    for key in (f"openapi/{__version__}/openapi.json", "openapi/latest/openapi.json"):
        stored = s3.get_object(Bucket=BUCKET, Key=key)
        assert stored["Body"].read() == COMMITTED.read_bytes()
        assert stored["ContentType"] == "application/json"
        assert stored["Metadata"] == {"commit": COMMIT, "api-version": __version__}
    assert f"s3://{BUCKET}/openapi/{__version__}/openapi.json ({COMMIT})" in capsys.readouterr().out


def test_a_second_release_of_the_same_version_keeps_the_first_document(s3, tmp_path):
    changed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    changed["info"]["description"] = "changed"
    second = tmp_path / "openapi.json"
    second.write_text(json.dumps(changed), encoding="utf-8")

    assert _publish(COMMITTED) == 0
    assert _publish(second, commit="f" * 40) == 0

    key = f"openapi/{__version__}/openapi.json"
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) == 2
    (earlier,) = [version for version in versions if not version["IsLatest"]]
    kept = s3.get_object(Bucket=BUCKET, Key=key, VersionId=earlier["VersionId"])
    assert kept["Body"].read() == COMMITTED.read_bytes()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not an OpenAPI document"),
        (json.dumps({"info": {"version": "1.0.0"}}), "not an OpenAPI document"),
        (json.dumps({"openapi": "3.1.0", "info": {"version": "../x"}}), "cannot name a folder"),
        (json.dumps({"openapi": "3.1.0", "info": {"version": "latest"}}), "cannot name a folder"),
    ],
)
def test_a_document_that_cannot_be_published_fails_the_step_and_writes_nothing(
    s3, tmp_path, capsys, content, reason
):
    document = tmp_path / "openapi.json"
    document.write_text(content, encoding="utf-8")

    assert _publish(document) == 1

    assert reason in capsys.readouterr().err
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
