"""Which model a function serves: none yet in an empty environment, then the
registry's champion, followed across promotions; a pinned version for good. Real
registries on disk and the trained model of the API tests; the refresh interval
runs on a clock the tests move."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from credit_risk.registry import CHAMPION_FILE, IntegrityError, ModelNotFoundError, Registry
from credit_risk.serving.model_source import ModelSource
from tests.integration.api.conftest import MODEL_NAME, Serving
from tests.integration.api.registries import FIRST, SECOND, promote, publish

REFRESH = 60.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """An empty registry: the environment before its first model."""
    return Registry(str(tmp_path / "registry"), MODEL_NAME)


def break_pointer(registry: Registry) -> None:
    """Makes the champion pointer unreadable: any read of it is then reported."""
    (Path(registry.root) / MODEL_NAME / CHAMPION_FILE).write_text("{not json")


def champion_source(registry: Registry, clock: Clock, errors: list[Exception]) -> ModelSource:
    return ModelSource(
        registry,
        pinned_version=None,
        refresh_seconds=REFRESH,
        clock=clock,
        on_refresh_error=errors.append,
    )


def served(source: ModelSource) -> str | None:
    model = source.current()
    return model.version if model is not None else None


# --- the source on its own ---------------------------------------------------------
def test_no_champion_starts_without_a_model(registry: Registry):
    source = champion_source(registry, Clock(), [])
    assert source.current() is None


def test_a_first_champion_is_served_once_the_interval_has_passed(
    registry: Registry, serving: Serving
):
    # Given a function started in an empty environment
    clock, errors = Clock(), []
    source = champion_source(registry, clock, errors)
    # When the first model is promoted
    promote(registry, publish(registry, serving, FIRST))
    # Then it is served from the first request after the interval, not before
    clock.advance(REFRESH - 1)
    assert served(source) is None
    clock.advance(1)
    assert served(source) == FIRST
    assert errors == []


def test_a_new_champion_is_served_after_the_interval_and_not_before(
    registry: Registry, serving: Serving
):
    # Given a function serving the champion
    promote(registry, publish(registry, serving, FIRST))
    clock, errors = Clock(), []
    source = champion_source(registry, clock, errors)
    assert served(source) == FIRST
    # When another version is promoted
    promote(registry, publish(registry, serving, SECOND))
    # Then the old one serves until the interval has passed, the new one from then on
    clock.advance(REFRESH / 2)
    assert served(source) == FIRST
    clock.advance(REFRESH / 2)
    assert served(source) == SECOND
    clock.advance(10 * REFRESH)
    assert served(source) == SECOND
    assert errors == []


def test_a_corrupt_new_champion_is_reported_and_the_old_model_keeps_serving(
    registry: Registry, serving: Serving, caplog: pytest.LogCaptureFixture
):
    # Given a function serving the champion
    promote(registry, publish(registry, serving, FIRST))
    clock, errors = Clock(), []
    source = champion_source(registry, clock, errors)
    # When a version whose model file no longer matches its sha256 is promoted
    promote(registry, publish(registry, serving, SECOND, corrupt=True))
    clock.advance(REFRESH)
    with caplog.at_level(logging.ERROR):
        still = served(source)
    # Then the model in service keeps serving, and the failure is reported and logged
    assert still == FIRST
    assert len(errors) == 1
    assert isinstance(errors[0], IntegrityError)
    assert any(
        r.levelno == logging.ERROR and "still serving " + FIRST in r.getMessage()
        for r in caplog.records
    )
    # And it is tried again once per interval, not on every request
    assert served(source) == FIRST
    assert len(errors) == 1
    clock.advance(REFRESH)
    assert served(source) == FIRST
    assert len(errors) == 2


def test_the_champion_pointer_is_read_once_per_interval(registry: Registry, serving: Serving):
    # Given a function serving the champion
    promote(registry, publish(registry, serving, FIRST))
    clock, errors = Clock(), []
    source = champion_source(registry, clock, errors)
    # When the pointer becomes unreadable
    break_pointer(registry)
    # Then requests within the interval do not read it (nothing to report)
    for _ in range(5):
        clock.advance(REFRESH / 10)
        assert served(source) == FIRST
    assert errors == []
    # And the first request after the interval does, and keeps the model in service
    clock.advance(REFRESH)
    assert served(source) == FIRST
    assert len(errors) == 1


def test_an_interval_of_zero_reads_the_pointer_on_every_request(
    registry: Registry, serving: Serving
):
    promote(registry, publish(registry, serving, FIRST))
    source = ModelSource(registry, pinned_version=None, refresh_seconds=0, clock=Clock())
    promote(registry, publish(registry, serving, SECOND))
    assert served(source) == SECOND


def test_a_pinned_version_never_reads_the_pointer(registry: Registry, serving: Serving):
    # Given a function pinned to a version that is not the champion
    promote(registry, publish(registry, serving, FIRST))
    publish(registry, serving, SECOND)
    clock, errors = Clock(), []
    source = ModelSource(
        registry,
        pinned_version=SECOND,
        refresh_seconds=0,
        clock=clock,
        on_refresh_error=errors.append,
    )
    # When the pointer becomes unreadable and time passes
    break_pointer(registry)
    for _ in range(3):
        clock.advance(10 * REFRESH)
        # Then the pinned version is served, and the pointer was never read
        assert served(source) == SECOND
    assert errors == []


def test_a_missing_or_corrupt_pinned_version_or_a_corrupt_champion_fails_the_start(
    registry: Registry, serving: Serving
):
    with pytest.raises(ModelNotFoundError):
        ModelSource(registry, pinned_version=FIRST)
    publish(registry, serving, FIRST, corrupt=True)
    with pytest.raises(IntegrityError):
        ModelSource(registry, pinned_version=FIRST)
    promote(registry, FIRST)
    with pytest.raises(IntegrityError):
        ModelSource(registry, pinned_version=None)
