"""One contract for the model registry, run against both backends: a local
directory and S3 (moto, with its conditional writes)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.registry import (
    CHAMPION_FILE,
    MODEL_FILE,
    ConcurrentUpdateError,
    IntegrityError,
    ModelNotFoundError,
    Registry,
    VersionExistsError,
)

MODEL = "credit-risk"


def _metadata(passed: bool = True) -> dict:
    return {
        "feature_names": list(schemas.FEATURE_NAMES),
        "threshold": {"value": 0.09},
        "gate": {"passed": passed, "reasons": []},
    }


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path) -> Registry:
    if request.param == "local":
        return Registry(str(tmp_path / "registry"), MODEL)
    bucket = request.getfixturevalue("bucket")
    return Registry(f"s3://{bucket}/models", MODEL)


def _overwrite(registry: Registry, version: str, name: str, data: bytes) -> None:
    """Writes behind the registry's back, as a faulty tool or an attacker would."""
    key = f"{MODEL}/{version}/{name}"
    if registry.root.startswith("s3://"):
        bucket, _, prefix = registry.root.removeprefix("s3://").partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)
    else:
        path = Path(registry.root, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_a_published_version_loads_as_a_serving_package(registry, model_bytes):
    # when publishing a version with its files
    stored = registry.publish("v1", model_bytes, _metadata(), {"model_card.md": b"# card"})

    # then its metadata records the checksums and the layout is DESIGN.md's
    assert stored["sha256"] == registry.metadata("v1")["sha256"]
    assert stored["artifacts"] == registry.metadata("v1")["artifacts"]
    assert registry.uri("v1", MODEL_FILE) == f"{registry.root}/{MODEL}/v1/model.ubj"
    assert registry.versions() == ["v1"]
    assert registry.read_file("v1", "model_card.md") == b"# card"
    # and it loads as a package that scores
    package = registry.load("v1")
    assert package.version == "v1"
    assert package.model_name == MODEL
    assert 0 < package.predict([dict.fromkeys(schemas.FEATURE_NAMES, 1)])[0] < 1


def test_a_version_is_written_once(registry, model_bytes):
    # given a published version
    registry.publish("v1", model_bytes, _metadata())

    # when writing the same version again, then it fails
    with pytest.raises(VersionExistsError):
        registry.publish("v1", b"another model", _metadata())
    # and the first one is intact
    assert registry.read_file("v1", MODEL_FILE) == model_bytes


def test_a_half_written_version_is_invisible_and_cannot_be_reused(registry, model_bytes):
    # given a writer that died after the model file, before the metadata
    _overwrite(registry, "v2", MODEL_FILE, model_bytes)

    # then the version is not listed, not loadable, and not writable again
    assert registry.versions() == []
    with pytest.raises(ModelNotFoundError):
        registry.load("v2")
    with pytest.raises(VersionExistsError):
        registry.publish("v2", model_bytes, _metadata())


def test_a_model_file_not_matching_its_checksum_is_refused(registry, model_bytes):
    # given a published model whose file is later replaced
    registry.publish("v1", model_bytes, _metadata(), {"baseline.joblib": b"audit"})
    _overwrite(registry, "v1", MODEL_FILE, model_bytes + b" ")
    _overwrite(registry, "v1", "baseline.joblib", b"tampered")

    # when loading it, then the registry refuses
    with pytest.raises(IntegrityError, match="sha256"):
        registry.load("v1")
    with pytest.raises(IntegrityError, match="sha256"):
        registry.read_file("v1", "baseline.joblib")


def test_promote_moves_the_champion_and_remembers_the_previous_one(registry, model_bytes):
    # given two versions and no champion
    registry.publish("v1", model_bytes, _metadata())
    registry.publish("v2", model_bytes, _metadata())
    assert registry.champion() is None
    with pytest.raises(ModelNotFoundError, match="no champion"):
        registry.load()

    # when promoting one then the other
    registry.promote("v1")
    record = registry.promote("v2", expected_champion="v1")

    # then the champion serves, and the pointer says what it replaced
    assert record["previous"] == "v1"
    assert registry.champion_version() == "v2"
    assert registry.load().version == "v2"


def test_promote_refuses_a_version_that_failed_the_gate_unless_forced(registry, model_bytes):
    registry.publish("v1", model_bytes, _metadata(passed=False))
    with pytest.raises(InvalidInputError, match="did not pass the evaluation gate"):
        registry.promote("v1")
    assert registry.promote("v1", force=True)["forced"] is True
    with pytest.raises(ModelNotFoundError):
        registry.promote("v9")


def test_promote_against_a_stale_champion_fails(registry, model_bytes):
    # given two operators who both saw v1 serving, and one promoted v2 already
    for version in ("v1", "v2", "v3"):
        registry.publish(version, model_bytes, _metadata())
    registry.promote("v1")
    registry.promote("v2", expected_champion="v1")

    # when the other promotes v3 believing v1 still serves, then it fails
    with pytest.raises(ConcurrentUpdateError, match="the champion is v2"):
        registry.promote("v3", expected_champion="v1")
    assert registry.champion_version() == "v2"


def test_the_champion_pointer_is_replaced_only_if_unchanged_since_read(registry, model_bytes):
    # given a writer that read the champion pointer, then lost the race to another
    registry.publish("v1", model_bytes, _metadata())
    registry.promote("v1")
    key = f"{MODEL}/{CHAMPION_FILE}"
    _, tag_read = registry._store.read(key)
    registry.promote("v1")

    # when it writes with the tag it read (S3 If-Match, or the local lock + check)
    with pytest.raises(ConcurrentUpdateError):
        registry._store.swap(key, json.dumps({"version": "v0"}).encode(), tag_read)
    # and creating a pointer that exists meanwhile fails the same way
    with pytest.raises(ConcurrentUpdateError):
        registry._store.swap(key, b"{}", None)
    assert registry.champion_version() == "v1"


def test_unknown_versions_and_bad_names_are_clear_errors(registry):
    with pytest.raises(ModelNotFoundError, match="no version 'v404'"):
        registry.metadata("v404")
    with pytest.raises(InvalidInputError, match="invalid version"):
        registry.metadata("../escape")
    with pytest.raises(InvalidInputError, match="invalid version"):
        registry.check_new_version("../escape")


def test_a_written_version_cannot_be_chosen_for_a_new_run(registry, model_bytes):
    # given a free version name, then a published one
    registry.check_new_version("v1")
    registry.publish("v1", model_bytes, _metadata())

    # then a run naming it is refused before it trains
    with pytest.raises(VersionExistsError, match="v1 of credit-risk already exists"):
        registry.check_new_version("v1")


def test_unreadable_metadata_is_an_integrity_error(registry, model_bytes):
    registry.publish("v1", model_bytes, _metadata())
    _overwrite(registry, "v1", "metadata.json", b"{truncated")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        registry.metadata("v1")


@pytest.mark.parametrize("uri", ["s3://", "s3:///models", "s3://Bad_Bucket/models"])
def test_an_s3_root_without_a_valid_bucket_is_refused(uri):
    with pytest.raises(InvalidInputError, match="valid bucket name"):
        Registry(uri, MODEL)
