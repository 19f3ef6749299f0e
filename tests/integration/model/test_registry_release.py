"""The release record and the champion history of the registry, on both backends: a
local directory and S3 (moto, with its conditional writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.registry import (
    CANARY,
    ENDED,
    SHADOW,
    ConcurrentUpdateError,
    IntegrityError,
    ModelNotFoundError,
    Registry,
)

MODEL = "credit-risk"
V1, V2, V3, V4 = "v1", "v2", "v3", "v4"
METADATA = {
    "feature_names": list(schemas.FEATURE_NAMES),
    "threshold": {"value": 0.09},
    "gate": {"passed": True, "reasons": []},
}


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path, model_bytes) -> Registry:
    """A registry holding four versions, v1 the champion."""
    if request.param == "local":
        registry = Registry(str(tmp_path / "registry"), MODEL)
    else:
        registry = Registry(f"s3://{request.getfixturevalue('bucket')}/models", MODEL)
    for version in (V1, V2, V3, V4):
        registry.publish(version, model_bytes, METADATA)
    registry.promote(V1)
    return registry


class TestReleaseRecord:
    def test_a_release_opens_in_shadow_moves_through_the_canary_and_closes(self, registry):
        # When a release of v2 opens
        opened = registry.open_release("r1", V2)
        # Then it is in shadow, the candidate answering nobody, against the champion v1
        assert (opened.stage, opened.percent, opened.candidate_percent) == (SHADOW, 0.0, 0.0)
        assert (opened.model_version, opened.champion, opened.active) == (V2, V1, True)
        assert registry.active_release() == opened

        # When it moves to a canary step
        moved = registry.move_release("r1", CANARY, 10.0)
        # Then every reader sees the step
        assert registry.active_release() == moved
        assert (moved.stage, moved.candidate_percent, moved.started_at) == (
            CANARY,
            10.0,
            opened.started_at,
        )

        # When it closes
        closed = registry.close_release("r1", "promoted", "every step passed")
        # Then it has ended with its outcome, and no release is in progress
        assert (closed.stage, closed.outcome, closed.reason) == (
            ENDED,
            "promoted",
            "every step passed",
        )
        assert not closed.active
        assert closed.candidate_percent == 0.0
        assert registry.active_release() is None
        assert registry.release_state() == closed

    def test_one_release_at_a_time(self, registry):
        registry.open_release("r1", V2)

        with pytest.raises(ConcurrentUpdateError, match="r1 of v2 is in progress"):
            registry.open_release("r2", V3)

        assert registry.active_release().release_id == "r1"

    def test_opening_the_same_release_again_is_a_retry_that_changes_nothing(self, registry):
        opened = registry.open_release("r1", V2)
        moved = registry.move_release("r1", CANARY, 50.0)

        again = registry.open_release("r1", V2)

        assert again == moved != opened

    def test_after_a_release_ended_the_next_one_may_open(self, registry):
        registry.open_release("r1", V2)
        registry.close_release("r1", "rolled_back", "errors")

        second = registry.open_release("r2", V3)

        assert (second.release_id, second.model_version, second.stage) == ("r2", V3, SHADOW)

    def test_closing_an_ended_release_changes_nothing(self, registry):
        registry.open_release("r1", V2)
        first = registry.close_release("r1", "rolled_back", "errors")

        again = registry.close_release("r1", "promoted", "a late retry")

        assert again == first == registry.release_state()

    def test_an_ended_release_does_not_move(self, registry):
        registry.open_release("r1", V2)
        registry.close_release("r1", "rolled_back", "by hand")

        with pytest.raises(InvalidInputError, match="has ended"):
            registry.move_release("r1", CANARY, 10.0)

    def test_only_the_release_on_record_is_moved_or_closed(self, registry):
        registry.open_release("r1", V2)

        with pytest.raises(ConcurrentUpdateError, match="not the release on record"):
            registry.move_release("r0", CANARY, 10.0)
        with pytest.raises(ConcurrentUpdateError, match="not the release on record"):
            registry.close_release("r0", "rolled_back", "stale")
        assert registry.active_release().release_id == "r1"

    @pytest.mark.parametrize(
        ("stage", "percent"), [(SHADOW, 10.0), (CANARY, 101.0), (CANARY, -1.0), (ENDED, 0.0)]
    )
    def test_impossible_moves_are_refused(self, registry, stage, percent):
        registry.open_release("r1", V2)

        with pytest.raises(InvalidInputError):
            registry.move_release("r1", stage, percent)

    def test_a_release_of_an_unknown_version_or_with_a_bad_id_is_refused(self, registry):
        with pytest.raises(ModelNotFoundError):
            registry.open_release("r1", "v9")
        with pytest.raises(InvalidInputError, match="release id"):
            registry.open_release("../r1", V2)
        assert registry.release_state() is None

    def test_a_version_that_failed_its_gate_reaches_no_customer_unless_forced(
        self, registry, model_bytes
    ):
        registry.publish("failed", model_bytes, {**METADATA, "gate": {"passed": False}})
        with pytest.raises(InvalidInputError, match="did not pass the evaluation gate"):
            registry.open_release("r1", "failed")
        assert registry.release_state() is None
        assert registry.open_release("r1", "failed", force=True).model_version == "failed"

    def test_reports_are_kept_beside_the_version_per_release(self, registry):
        registry.open_release("r1", V2)

        uri = registry.write_report(V2, "r1", "report.json", b'{"outcome": "promoted"}')

        assert uri == registry.uri(V2, "releases/r1/report.json")
        assert json.loads(registry.read_report(V2, "r1", "report.json")) == {"outcome": "promoted"}
        assert registry.read_report(V2, "r2", "report.json") is None
        # A report is no version of its own
        assert registry.versions() == [V1, V2, V3, V4]


class TestRollBack:
    def test_each_rollback_steps_one_champion_further_back(self, registry):
        # Given v1 → v2 → v3 promoted in turn
        registry.promote(V2)
        registry.promote(V3)

        # When rolled back twice
        first = registry.roll_back("v3 declines too many")
        second = registry.roll_back("v2 as well")

        # Then v2 then v1 serve: never forward to the version the first rollback removed
        assert (first["version"], first["rolled_back_from"]) == (V2, V3)
        assert (second["version"], second["rolled_back_from"]) == (V1, V2)
        assert registry.champion_version() == V1
        assert registry.champion()["reason"] == "v2 as well"

    def test_a_promotion_after_a_rollback_can_be_rolled_back_in_turn(self, registry):
        registry.promote(V2)
        registry.roll_back("back to v1")
        registry.promote(V4)

        assert registry.roll_back("v4 misbehaves")["version"] == V1

    def test_the_first_champion_has_nothing_to_roll_back_to(self, registry):
        with pytest.raises(InvalidInputError, match="no earlier one to roll back to"):
            registry.roll_back("nothing before")

        assert registry.champion_version() == V1

    def test_a_registry_without_a_champion_has_nothing_to_roll_back(self, tmp_path):
        empty = Registry(str(tmp_path / "empty"), MODEL)

        with pytest.raises(InvalidInputError, match="no champion to roll back"):
            empty.roll_back("nothing at all")

    def test_a_rollback_expecting_another_champion_is_refused(self, registry):
        registry.promote(V2)

        with pytest.raises(ConcurrentUpdateError, match="not v3 as expected"):
            registry.roll_back("stale view", expected_champion=V3)

        assert registry.champion_version() == V2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("release.json", '{"release_id": "r1",'),
        ("release.json", "[]"),
        ("champion.json", "not json"),
        ("champion.json", '{"previous": "v1"}'),
    ],
)
def test_a_damaged_pointer_file_is_reported_as_such(registry, name, text):
    # Given the champion or release record damaged (a truncated copy, an edit by hand)
    registry.open_release("r1", V2)
    key = f"{MODEL}/{name}"
    if registry.root.startswith("s3://"):
        import boto3

        bucket, _, prefix = registry.root.removeprefix("s3://").partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=text.encode())
    else:
        (Path(registry.root) / key).write_text(text)
    # When it is read, then the error names the file (no JSON traceback)
    read = registry.release_state if name == "release.json" else registry.champion_version
    with pytest.raises(IntegrityError, match=f"{name}.*damaged or edited by hand"):
        read()
